//! Expiry: idle counters and concurrency cells are dropped, so state follows the traffic, not the
//! number of scope values ever seen.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Limiter;
use super::counters::Counters;
use super::window::position;

/// How often idle counters and concurrency cells are dropped.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Limiter {
    /// Drops the counters unused for two windows (their counts are 0 by then, and so is what they
    /// would still send), unsendable deltas of older windows, and idle concurrency cells.
    pub fn sweep(&self, now: u64) {
        if let Ok(mut guard) = self.counters.lock() {
            let Counters { map, keys, sync } = &mut *guard;
            let before = map.len();
            map.retain(|id, c| {
                let (index, _) = position(now, id.window_ms);
                // Redis reads the current and previous windows only (while Redis is down, deltas
                // of older ones would pile up for nothing).
                c.pending.retain(|(i, _)| i.saturating_add(1) >= index);
                let idle = now.saturating_sub(c.used_at) > 2 * id.window_ms;
                if idle
                    && c.counted
                    && let Some(k) = keys.get_mut(&id.limit)
                {
                    k.n = k.n.saturating_sub(1);
                }
                !idle
            });
            keys.retain(|_, k| k.n > 0);
            if map.len() < before {
                sync.retain(|id| map.contains_key(id));
            }
        }
        if let Ok(mut cells) = self.inflight.lock() {
            cells.expire(now);
        }
    }
}

/// Sweeps the limiter every [`SWEEP_EVERY`] (on tokio's clock) at the time its wall clock reads,
/// until `stop`.
pub(crate) async fn sweeper(limiter: Arc<Limiter>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        limiter.sweep(limiter.now_ms());
    }
}
