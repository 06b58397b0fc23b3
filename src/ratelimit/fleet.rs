//! The limiter's side of the Redis sync ([`crate::shared`] runs the task): the fleet view, and the
//! batch a sync sends and applies. Sans-io: the task passes `now` in.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::Limiter;
use super::counters::{CounterId, Counters, InflightId};
use super::window::{Window, position};

/// The fleet as the sync task last saw it.
#[derive(Debug)]
pub struct Fleet {
    /// Redis is configured.
    pub configured: bool,
    /// The last sync succeeded.
    pub up: AtomicBool,
    /// Replicas alive at the last heartbeat (at least 1).
    pub replicas: AtomicU32,
    /// Refuse limited requests while Redis is down.
    pub fail_closed: AtomicBool,
    /// How old a fleet view may be and still count (unix ms).
    pub fresh_for_ms: AtomicU64,
}

impl Fleet {
    /// No Redis: every replica on its own.
    pub fn standalone() -> Self {
        Self {
            configured: false,
            up: AtomicBool::new(false),
            replicas: AtomicU32::new(1),
            fail_closed: AtomicBool::new(false),
            fresh_for_ms: AtomicU64::new(1000),
        }
    }

    /// With Redis (down until the first sync).
    pub fn shared(fail_closed: bool, sync_interval: Duration) -> Self {
        let fresh = u64::try_from((sync_interval * 5).as_millis()).unwrap_or(u64::MAX).max(250);
        Self {
            configured: true,
            up: AtomicBool::new(false),
            replicas: AtomicU32::new(1),
            fail_closed: AtomicBool::new(fail_closed),
            fresh_for_ms: AtomicU64::new(fresh),
        }
    }

    /// Redis is configured and the last sync failed.
    pub(super) fn down(&self) -> bool {
        self.configured && !self.up.load(Ordering::Acquire)
    }
}

/// One counter's entry in a sync batch.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// The counter.
    pub id: CounterId,
    /// Window sent.
    pub index: u64,
    /// Amount added since the last sync (0: read only).
    pub delta: f64,
}

/// One concurrency count in a sync batch.
#[derive(Debug, Clone)]
pub struct InflightItem {
    /// (limit, scope value).
    pub id: InflightId,
    /// Requests in flight on this replica.
    pub here: u32,
}

impl Limiter {
    /// Takes the sync batch: the listed counters, each with what it counted since the last sync
    /// (or 0, to refresh its fleet total). A counter leaves the list once it has nothing to send
    /// and was last used longer ago than the fleet view stays fresh: an idle replica sends nothing.
    pub fn take_batch(&self, now: u64) -> (Vec<BatchItem>, Vec<InflightItem>) {
        let mut items = Vec::new();
        let fresh_for = self.fleet.fresh_for_ms.load(Ordering::Acquire);
        if let Ok(mut guard) = self.counters.lock() {
            let Counters { map, sync, .. } = &mut *guard;
            sync.retain(|id| {
                let Some(c) = map.get_mut(id) else { return false };
                c.listed =
                    !c.pending.is_empty() || !c.sent.is_empty() || now.saturating_sub(c.used_at) <= fresh_for;
                c.listed
            });
            for id in sync.iter() {
                let Some(c) = map.get_mut(id) else { continue };
                let (index, _) = position(now, id.window_ms);
                c.sent = std::mem::take(&mut c.pending);
                let mut sent_current = false;
                for (i, amount) in &c.sent {
                    sent_current |= *i == index;
                    items.push(BatchItem { id: id.clone(), index: *i, delta: *amount });
                }
                if !sent_current {
                    items.push(BatchItem { id: id.clone(), index, delta: 0.0 });
                }
            }
        }
        let inflight = self
            .inflight
            .lock()
            .map(|mut cells| {
                cells.expire(now);
                cells.map.iter().map(|(id, i)| InflightItem { id: id.clone(), here: i.here }).collect()
            })
            .unwrap_or_default();
        (items, inflight)
    }

    /// Applies a batch's answer: fleet totals (current, previous) per item, other replicas'
    /// concurrency per inflight item.
    pub fn apply_batch(
        &self,
        items: &[BatchItem],
        totals: &[(f64, f64)],
        inflight: &[InflightItem],
        others: &[u32],
        now: u64,
    ) {
        if let Ok(mut counters) = self.counters.lock() {
            for (item, (curr, prev)) in items.iter().zip(totals) {
                if let Some(c) = counters.map.get_mut(&item.id) {
                    let (index, _) = position(now, item.id.window_ms);
                    if item.index == index {
                        c.fleet = Window { index, curr: *curr, prev: *prev };
                        c.fleet_at = now;
                    }
                    c.sent.retain(|(i, _)| *i != item.index);
                }
            }
        }
        if let Ok(mut cells) = self.inflight.lock() {
            for (item, n) in inflight.iter().zip(others) {
                if let Some(i) = cells.map.get_mut(&item.id) {
                    i.others = *n;
                }
            }
        }
    }

    /// A failed sync: what was sent goes back to pending, to be sent again.
    pub fn restore_batch(&self) {
        if let Ok(mut guard) = self.counters.lock() {
            let Counters { map, sync, .. } = &mut *guard;
            // Only listed counters have anything sent.
            for id in sync.iter() {
                let Some(c) = map.get_mut(id) else { continue };
                let sent = std::mem::take(&mut c.sent);
                for (i, a) in sent {
                    match c.pending.iter_mut().find(|(p, _)| *p == i) {
                        Some(p) => p.1 += a,
                        None => c.pending.push((i, a)),
                    }
                }
            }
        }
    }
}
