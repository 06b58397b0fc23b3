//! Headroom: what a key's provider last said is left of its quota (requests and tokens, each with
//! its reset), so the planner rests a key before its 429, skips it for a request larger than what
//! is left, and gives a nearly-empty key less traffic.
//!
//! Readings come from every answer's headers ([`parse`]) and from the other replicas (through
//! [`crate::shared`]); the newest answer wins, by the wall-clock time (unix ms) at which a
//! replica received it. Resets are kept on the gates' clock (nanoseconds, the planner's `now`);
//! past its reset a level is stale and ignored, so no headers means no state and no effect. A level
//! sent without a reset (Azure's tokens, at times) is believed for [`UNTIMED`].
//!
//! The hot path reads one atomic when nothing is known; otherwise a short lock, never held across
//! an `.await`.

mod parse;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use parse::{Level, Reading, parse, retry_after_ms};

use super::clock::nanos;

/// How long a level without a reset is believed.
pub(crate) const UNTIMED: Duration = Duration::from_secs(1);

/// One level as kept: what is left, of how much, until when (gates' clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// What is left.
    pub remaining: u64,
    /// The window's size, when known.
    pub limit: Option<u64>,
    /// Clock reading at which it refills (and this level goes stale).
    pub reset: u64,
}

impl Window {
    fn fresh(&self, now: u64) -> bool {
        self.reset > now
    }

    /// What is left as a fraction of the limit (1 without a limit), in `[0, 1]`.
    pub fn fraction(&self) -> f64 {
        self.limit.map_or(1.0, |l| (self.remaining as f64 / l as f64).clamp(0.0, 1.0))
    }

    /// Time until it refills.
    pub fn left(&self, now: u64) -> Duration {
        Duration::from_nanos(self.reset.saturating_sub(now))
    }
}

/// A key's known quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Known {
    /// When the answer that said it arrived (unix ms): the newest wins.
    pub at_ms: u64,
    /// Requests.
    pub requests: Option<Window>,
    /// Tokens.
    pub tokens: Option<Window>,
}

/// Why a key is passed over before its 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No requests left.
    Requests,
    /// No tokens left.
    Tokens,
    /// Fewer tokens left than the request is estimated at.
    Estimate,
}

impl Skip {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Estimate => "estimate",
        }
    }
}

/// The headroom state of one key.
#[derive(Debug, Default)]
pub struct Headroom {
    /// The latest reset of what is known (gates' clock); 0: nothing known. Before taking the
    /// lock: past it, nothing is fresh.
    fresh_until: AtomicU64,
    /// A local reading waits to be shared (at most one queued per key per sync).
    dirty: AtomicBool,
    known: Mutex<Known>,
}

impl Headroom {
    /// Records an answer's reading, received at `now` (gates' clock) and `at_ms` (unix ms).
    pub fn observe(&self, now: u64, at_ms: u64, r: &Reading) {
        let window = |l: &Level| Window {
            remaining: l.remaining,
            limit: l.limit,
            reset: now.saturating_add(nanos(l.reset.unwrap_or(UNTIMED))),
        };
        self.merge(at_ms, r.requests.as_ref().map(window), r.tokens.as_ref().map(window));
    }

    /// Takes what an answer received at `at_ms` said, unless something newer is known: each level
    /// it carries replaces the one kept. Returns whether it was taken.
    pub fn merge(&self, at_ms: u64, requests: Option<Window>, tokens: Option<Window>) -> bool {
        let Ok(mut k) = self.known.lock() else { return false };
        if at_ms < k.at_ms {
            return false;
        }
        k.at_ms = at_ms;
        k.requests = requests.or(k.requests);
        k.tokens = tokens.or(k.tokens);
        let until = k.requests.iter().chain(&k.tokens).map(|w| w.reset).max().unwrap_or(0);
        self.fresh_until.store(until, Ordering::Release);
        true
    }

    /// What is known and fresh at `now` (`None`: nothing).
    pub fn known(&self, now: u64) -> Option<Known> {
        if self.fresh_until.load(Ordering::Acquire) <= now {
            return None;
        }
        let k = *self.known.lock().ok()?;
        let k = Known {
            requests: k.requests.filter(|w| w.fresh(now)),
            tokens: k.tokens.filter(|w| w.fresh(now)),
            ..k
        };
        (k.requests.is_some() || k.tokens.is_some()).then_some(k)
    }

    /// Whether the key must rest at `now` for a request of `tokens` (estimated), for how long and
    /// why: no requests left, no tokens left, or fewer than the request needs.
    pub fn rest(&self, now: u64, tokens: u64) -> Option<(Duration, Skip)> {
        let k = self.known(now)?;
        if let Some(w) = k.requests.filter(|w| w.remaining == 0) {
            return Some((w.left(now), Skip::Requests));
        }
        let w = k.tokens?;
        match w.remaining {
            0 => Some((w.left(now), Skip::Tokens)),
            left if tokens > left => Some((w.left(now), Skip::Estimate)),
            _ => None,
        }
    }

    /// What is left of the tighter level as a fraction of its limit, 1 when nothing is known.
    pub fn fraction(&self, now: u64) -> f64 {
        self.known(now)
            .map_or(1.0, |k| k.requests.iter().chain(&k.tokens).map(Window::fraction).fold(1.0, f64::min))
    }

    /// Marks a local reading to share; true when none was waiting (the caller queues one).
    pub fn mark_dirty(&self) -> bool {
        !self.dirty.swap(true, Ordering::AcqRel)
    }

    /// The sync task takes the waiting reading.
    pub fn take_dirty(&self) {
        self.dirty.store(false, Ordering::Release);
    }

    /// Forgets everything (admin reset).
    pub fn clear(&self) {
        if let Ok(mut k) = self.known.lock() {
            *k = Known::default();
        }
        self.fresh_until.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
