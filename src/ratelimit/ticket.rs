//! A request's admission, held while it runs: its token and cost charges to settle, its
//! concurrency slots to give back.

use std::sync::Arc;

use super::Limiter;
use super::counters::{CounterId, Dim, InflightId};
use super::limits::Spend;
use super::window::position;

/// A request's admission: releases its concurrency slots on drop, and settles its token and cost
/// estimates with the real usage.
#[derive(Debug)]
pub struct Ticket {
    limiter: Arc<Limiter>,
    /// Token and micro-USD counters charged, with the estimate charged to each.
    pub(super) charged: Vec<(CounterId, f64)>,
    /// Concurrency cells holding one slot for this request.
    pub(super) inflight: Vec<InflightId>,
    /// When it took its slots: how long they were held is learnt at the release (monotonic
    /// time, not the windows' wall clock).
    pub(super) held_at: Option<tokio::time::Instant>,
}

impl Ticket {
    /// A ticket that holds nothing yet.
    pub(super) fn empty(limiter: Arc<Limiter>) -> Self {
        Self { limiter, charged: Vec::new(), inflight: Vec::new(), held_at: None }
    }

    /// Corrects the estimates with what the provider reported (or refunds them:
    /// [`Spend::ZERO`]); `None`: the estimates stand. A budget's spend is counted in its metrics.
    pub fn settle(&mut self, actual: Option<Spend>) {
        let charged = std::mem::take(&mut self.charged);
        if charged.is_empty() {
            return;
        }
        let now = self.limiter.now_ms();
        let sync = self.limiter.fleet.configured;
        let amount = |id: &CounterId, estimate: f64| match (actual, id.dim) {
            (None, _) => estimate,
            (Some(a), Dim::Usd) => a.micro_usd,
            (Some(a), Dim::Tokens | Dim::Requests) => a.tokens as f64,
        };
        for (id, estimate) in &charged {
            if id.fixed {
                self.limiter.spent(&id.limit, id.dim, amount(id, *estimate));
            }
        }
        if actual.is_none() {
            return;
        }
        if let Ok(mut counters) = self.limiter.counters.lock() {
            for (id, estimate) in charged {
                let (index, _) = position(now, id.window_ms);
                // A counter swept meanwhile (idle for two windows) has nothing left to correct.
                if counters.map.contains_key(&id) {
                    let delta = amount(&id, estimate) - estimate;
                    counters.touch(&id, false, sync, now).charge(index, delta, now);
                }
            }
        }
    }

    /// Holds `cost` charged to counter `id` elsewhere (a strict limit's, in Redis), to settle with
    /// the others; a request count has nothing to settle.
    pub fn reserved(&mut self, id: CounterId, cost: f64) {
        if id.dim == Dim::Requests {
            return;
        }
        // The counter exists here from now on, so the settlement finds it to correct.
        let (now, sync) = (self.limiter.now_ms(), self.limiter.fleet.configured);
        if let Ok(mut counters) = self.limiter.counters.lock() {
            counters.touch(&id, false, sync, now);
        }
        self.charged.push((id, cost));
    }

    /// Adds another ticket's charges and slots to this one.
    pub fn merge(&mut self, mut other: Ticket) {
        self.charged.append(&mut other.charged);
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
