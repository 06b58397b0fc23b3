//! Rate limits: requests, tokens and concurrency per scope (global, route, provider key, inbound
//! API key, or a header such as the front's `x-relay-token-id`).
//!
//! **Decisions are local and immediate.** Each replica counts in sliding windows and admits a
//! request when the window's usage plus its estimate fits. With Redis, usage is the fleet's
//! total as last synced plus what this replica counted since: the sync task flushes deltas and
//! refreshes totals every `redis.sync_interval` in one atomic script per batch, off the request
//! path. The fleet can overshoot a limit by at most about `replicas × rate × sync_interval`
//! (what the other replicas admitted since the last sync). `mode = "strict"` instead makes one
//! atomic Redis call per request: exact, at the cost of a round trip.
//!
//! **Redis failure**, `on_failure = "local"` (default): each replica enforces `limit / last known
//! replica count` on its own counts, and sync resumes by itself when Redis returns. `"closed"`:
//! limited requests are refused with 503 while Redis is down.
//!
//! Tokens are pre-charged at an estimate (prompt bytes / 4 + `max_tokens`) and settled with the
//! provider's reported usage when the response ends.
//!
//! **Budgets** (`[[budgets]]`) are limits too: counters in micro-USD ([`Spend`], priced from the
//! targets' costs) and/or tokens, over *fixed* windows aligned on unix-epoch multiples of `per`
//! (the previous window weighs nothing; every replica agrees on the reset). They reserve and settle
//! like the token limits, sync the same way (their own Redis keys, `{prefix}:bg:…`), and refuse with
//! a [`Rejection`] that carries the reset time.
//!
//! **Bounded state.** A scope such as `header:x-relay-token-id` takes whatever values clients
//! send, so the state per limit is bounded twice. Idle counters expire: a sweep every second
//! ([`sweeper`], with or without Redis) drops those unused for two windows (their counts are 0 by
//! then), and concurrency cells idle for 10 s. And each limit counts at most `max_keys` (default
//! 100 000) distinct values on their own: a *new* value past the cap is counted in the limit's one
//! shared overflow bucket ([`OVERFLOW_KEY`]), still limited at the limit's rate, and counted in
//! `tier1_ratelimit_keys_overflow_total{limit}` (a warning is logged when a limit starts to
//! overflow). So values already known keep their own quota, a flood of made-up values shares one
//! quota (neither refused outright nor unlimited), and memory stays at about `max_keys` entries
//! per limit. `tier1_ratelimit_keys{limit}` shows the current count.
//!
//! **The sync sends only what changed.** A counter joins the next sync batch when it is charged
//! or checked, and stays in the batches while it has deltas to send or was used within the
//! fleet view's freshness (5 × `sync_interval`), so a counter in use always has a fresh fleet
//! total; then it leaves them (used again later, it decides on the local rule until the next
//! sync refreshes it, as a new key does). An idle replica sends no batch at all (a `PING` keeps
//! the health check), and a batch's size follows the traffic of the last few syncs, not the
//! number of keys. Redis keys expire two windows after their last write.
//!
//! **Time** is wall time in unix ms, so replicas agree on window boundaries. The limiter reads it
//! from the [`WallClock`] it is built with: the system clock in production; in tests, one that
//! follows tokio's clock from a fixed epoch, so windows, expiry and the [`sweeper`] run under
//! paused time. The sync's functions take `now` from the caller.
//!
//! **Files.** `limits` (which limits apply, scope values), `counters` (the counters, concurrency
//! cells and key caps), `admit` (the request path: [`Limiter::admit`], provider keys),
//! `ticket` (settling and releasing), `fleet` (the fleet view and the sync batches), `sweep`
//! (expiry), `window` (the sliding-window arithmetic) and `clock`.

pub mod window;

mod admit;
mod clock;
mod counters;
mod fleet;
mod limits;
mod sweep;
mod ticket;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) use admit::Rejection;
pub(crate) use clock::WallClock;
pub use clock::unix_ms;
pub(crate) use counters::CounterId;
use counters::{Counters, Inflights};
pub use fleet::Fleet;
pub use limits::{Facts, Limits, Spend, estimate_tokens};
pub(crate) use sweep::sweeper;
pub(crate) use ticket::Ticket;

/// Counters and concurrency, shared by every snapshot (they survive reloads by name).
#[derive(Debug)]
pub struct Limiter {
    counters: Mutex<Counters>,
    inflight: Mutex<Inflights>,
    /// The fleet view the sync task maintains.
    pub fleet: Arc<Fleet>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    clock: WallClock,
}

impl Limiter {
    /// An empty limiter on the system clock.
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self {
            counters: Mutex::default(),
            inflight: Mutex::default(),
            fleet,
            metrics: None,
            clock: WallClock::System,
        }
    }

    /// Counts overflows in, and exports key counts to, `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reads the time from `clock` (tests: [`WallClock::tokio`]).
    #[must_use]
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Now, in unix ms, on the limiter's clock: what its windows, expiry and sync are aligned on.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Counts what budget `budget` was charged in the end (`dim`: micro-USD or tokens).
    fn spent(&self, budget: &str, dim: counters::Dim, amount: f64) {
        let Some(m) = &self.metrics else { return };
        let label = crate::metrics::labels::Budget { budget };
        match dim {
            counters::Dim::Usd => m.budget_spent_usd_total.get(label).inc_by(amount.max(0.0) / 1e6),
            counters::Dim::Tokens | counters::Dim::Requests => {
                m.budget_spent_tokens_total.get(label).inc_by(amount.max(0.0) as u64);
            }
        }
    }

    fn overflowed(&self, limit: &str) {
        if let Some(m) = &self.metrics {
            m.ratelimit_keys_overflow_total.get(crate::metrics::labels::Limit { limit }).inc();
        }
    }

    /// Distinct scope values per limit name (counters; concurrency cells when a limit has only
    /// `max_inflight`).
    pub fn key_counts(&self) -> Vec<(Arc<str>, usize)> {
        let mut out: HashMap<Arc<str>, usize> = HashMap::new();
        if let Ok(c) = self.counters.lock() {
            out.extend(c.keys.iter().map(|(k, n)| (k.clone(), n.n)));
        }
        if let Ok(i) = self.inflight.lock() {
            for (k, n) in &i.keys {
                let e = out.entry(k.clone()).or_default();
                *e = (*e).max(n.n);
            }
        }
        out.into_iter().collect()
    }

    /// Sets `tier1_ratelimit_keys{limit}`, right before a scrape.
    pub fn refresh_gauges(&self) {
        let Some(m) = &self.metrics else { return };
        m.ratelimit_keys.vector().reset();
        for (limit, n) in self.key_counts() {
            m.ratelimit_keys
                .get(crate::metrics::labels::Limit { limit: &limit })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests;
