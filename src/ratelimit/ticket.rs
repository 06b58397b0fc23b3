//! A request's admission, held while it runs: its token charges to settle, its concurrency slots
//! to give back.

use std::sync::Arc;

use super::Limiter;
use super::counters::{CounterId, InflightId};
use super::window::position;

/// A request's admission: releases its concurrency slots on drop, and settles its token
/// estimate with the real usage.
#[derive(Debug)]
pub struct Ticket {
    limiter: Arc<Limiter>,
    /// Token counters charged, with the estimate charged to each.
    pub(super) tokens: Vec<(CounterId, f64)>,
    /// Concurrency cells holding one slot for this request.
    pub(super) inflight: Vec<InflightId>,
    /// When it took its slots: how long they were held is learnt at the release (monotonic
    /// time, not the windows' wall clock).
    pub(super) held_at: Option<tokio::time::Instant>,
}

impl Ticket {
    /// A ticket that holds nothing yet.
    pub(super) fn empty(limiter: Arc<Limiter>) -> Self {
        Self { limiter, tokens: Vec::new(), inflight: Vec::new(), held_at: None }
    }

    /// Corrects the token estimate with what the provider reported (or refunds it: `Some(0)`).
    pub fn settle(&mut self, actual: Option<u64>) {
        let Some(actual) = actual else { return };
        let now = self.limiter.now_ms();
        let tokens = std::mem::take(&mut self.tokens);
        let sync = self.limiter.fleet.configured;
        if let Ok(mut counters) = self.limiter.counters.lock() {
            for (id, estimate) in tokens {
                let (index, _) = position(now, id.window_ms);
                // A counter swept meanwhile (idle for two windows) has nothing left to correct.
                if counters.map.contains_key(&id) {
                    counters.touch(&id, false, sync, now).charge(index, actual as f64 - estimate, now);
                }
            }
        }
    }

    /// Adds another ticket's charges and slots to this one.
    pub fn merge(&mut self, mut other: Ticket) {
        self.tokens.append(&mut other.tokens);
        self.held_at = match (self.held_at, other.held_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.inflight.append(&mut other.inflight);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.inflight.is_empty() {
            return;
        }
        let held = self.held_at.map_or(0, |at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX));
        if let Ok(mut cells) = self.limiter.inflight.lock() {
            cells.release(&self.inflight);
            cells.held(&self.inflight, held);
        }
    }
}
