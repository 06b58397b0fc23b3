//! The state the limiter keeps: one counter per (limit, dimension, window, scope value), one
//! concurrency cell per (limit, scope value), and per limit the count of distinct scope values
//! that bounds both (`max_keys`).

use std::collections::HashMap;
use std::sync::Arc;

use super::limits::Compiled;
use super::window::Window;

/// The scope value a new key past its limit's `max_keys` is counted under: one bucket shared by
/// every such key. `~` never appears in a sanitised header value, so no client can name it.
pub(super) const OVERFLOW_KEY: &str = "~overflow";

/// How long a concurrency cell is kept (and synced) after its last use.
const INFLIGHT_KEEP_MS: u64 = 10_000;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Requests.
    Requests,
    /// Tokens.
    Tokens,
    /// Micro-USD (budgets).
    Usd,
}

impl Dim {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "req",
            Self::Tokens => "tok",
            Self::Usd => "usd",
        }
    }
}

/// One counter's identity: limit, dimension, window length, scope value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterId {
    /// Limit name.
    pub limit: Arc<str>,
    /// Requests or tokens.
    pub dim: Dim,
    /// Window length.
    pub window_ms: u64,
    /// Scope value (sanitised).
    pub key: Arc<str>,
    /// A budget's counter: a fixed window (the previous one does not count), its own Redis keys.
    pub fixed: bool,
}

impl CounterId {
    /// The Redis key of window `index` (hash-tagged on the prefix: one cluster slot).
    pub fn redis_key(&self, prefix: &str, index: u64) -> String {
        format!(
            "{{{prefix}}}:{}:{}:{}:{}:{}:{index}",
            if self.fixed { "bg" } else { "rl" },
            self.limit,
            self.dim.as_str(),
            self.window_ms,
            self.key
        )
    }
}

#[derive(Debug, Default)]
pub(super) struct Counter {
    /// This replica's own counts.
    pub(super) own: Window,
    /// The fleet's totals at the last sync.
    pub(super) fleet: Window,
    /// When `fleet` was last refreshed (unix ms; 0: never).
    pub(super) fleet_at: u64,
    /// Counted here, not yet sent: (window index, amount).
    pub(super) pending: Vec<(u64, f64)>,
    /// Sent in the batch under way.
    pub(super) sent: Vec<(u64, f64)>,
    /// Last use: charged or checked (unix ms), for eviction and for the sync's freshness tail.
    pub(super) used_at: u64,
    /// Counts as one of its limit's keys (the first dimension of a scope value, not the overflow
    /// bucket).
    pub(super) counted: bool,
    /// In the sync list.
    pub(super) listed: bool,
}

impl Counter {
    /// What this replica counted in window `index` and has not had acknowledged by Redis yet.
    pub(super) fn pending_in(&self, index: u64) -> f64 {
        self.pending.iter().chain(&self.sent).filter(|(i, _)| *i == index).map(|(_, a)| a).sum()
    }

    /// Counts `amount` in window `index`, to be sent at the next sync.
    pub(super) fn charge(&mut self, index: u64, amount: f64, now: u64) {
        self.own.roll(index);
        self.own.curr += amount;
        match self.pending.iter_mut().find(|(i, _)| *i == index) {
            Some(p) => p.1 += amount,
            None => self.pending.push((index, amount)),
        }
        self.used_at = now;
    }
}

/// Scope values of one limit.
#[derive(Debug, Default)]
pub(super) struct KeyCount {
    pub(super) n: usize,
    /// Overflowing since the count was last under the cap (for one warning per episode).
    overflowing: bool,
}

/// The counters, with their count per limit and (with Redis) the list the next sync sends.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) map: HashMap<CounterId, Counter>,
    pub(super) keys: HashMap<Arc<str>, KeyCount>,
    /// Counters with something to sync: charged or checked lately, or with deltas unsent.
    pub(super) sync: Vec<CounterId>,
}

/// Whether limit `name` at `count` keys takes a new one; warns once when it starts overflowing.
fn over_cap(keys: &mut HashMap<Arc<str>, KeyCount>, name: &Arc<str>, max_keys: usize) -> bool {
    let Some(k) = keys.get_mut(name) else { return max_keys == 0 };
    if k.n < max_keys {
        k.overflowing = false;
        return false;
    }
    if !k.overflowing {
        k.overflowing = true;
        tracing::warn!(
            limit = %name,
            max_keys,
            "rate limit has max_keys distinct values: new ones share its overflow bucket"
        );
    }
    true
}

impl Counters {
    /// The scope value `key` is counted under for limit `c`: its own, or for a new value past
    /// `max_keys`, the overflow bucket (true: overflowed).
    pub(super) fn slot(&mut self, c: &Compiled, key: Arc<str>) -> (Arc<str>, bool) {
        let Some(dim) = c.first_dim() else { return (key, false) };
        if !over_cap(&mut self.keys, &c.name, c.cfg.max_keys) {
            return (key, false);
        }
        let id = c.counter(dim, &key);
        if self.map.contains_key(&id) { (key, false) } else { (Arc::from(OVERFLOW_KEY), true) }
    }

    /// The counter of `id`, created if new (one of its limit's keys when `counted`), marked used
    /// at `now` and, when `sync`, listed for the next sync.
    pub(super) fn touch(&mut self, id: &CounterId, counted: bool, sync: bool, now: u64) -> &mut Counter {
        let Self { map, keys, sync: list } = self;
        let c = map.entry(id.clone()).or_insert_with(|| {
            if counted {
                keys.entry(id.limit.clone()).or_default().n += 1;
            }
            Counter { counted, ..Counter::default() }
        });
        c.used_at = now;
        if sync && !c.listed {
            c.listed = true;
            list.push(id.clone());
        }
        c
    }
}

/// A concurrency cell: (limit name, scope value).
pub(super) type InflightId = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
pub(super) struct Inflight {
    pub(super) here: u32,
    /// The other replicas' counts at the last sync.
    pub(super) others: u32,
    /// Last use (unix ms): a cell outlives its requests for a while, so that the sync keeps
    /// reporting this replica's count and learning the others' between short requests.
    used_at: u64,
}

/// The concurrency cells, with their count per limit.
#[derive(Debug, Default)]
pub(super) struct Inflights {
    pub(super) map: HashMap<InflightId, Inflight>,
    pub(super) keys: HashMap<Arc<str>, KeyCount>,
    /// How long a slot of each limit stays held: an EWMA in ms, by limit name (bounded by the
    /// config; a limit taken out of it leaves one number behind until a restart).
    holds: HashMap<Arc<str>, f64>,
}

/// Weight of a new hold time in its limit's average.
const HOLD_ALPHA: f64 = 0.3;

impl Inflights {
    /// The cell scope value `key` is held under for limit `c`, created if new and marked used at
    /// `now`: its own, or for a new value past `max_keys`, the overflow cell (true: overflowed).
    pub(super) fn cell(
        &mut self,
        c: &Compiled,
        key: Arc<str>,
        now: u64,
    ) -> (InflightId, &mut Inflight, bool) {
        let Self { map, keys, .. } = self;
        let mut id = (c.name.clone(), key);
        let mut overflowed = false;
        if &*id.1 != OVERFLOW_KEY && !map.contains_key(&id) && over_cap(keys, &c.name, c.cfg.max_keys) {
            overflowed = true;
            id.1 = Arc::from(OVERFLOW_KEY);
        }
        let cell = map.entry(id.clone()).or_insert_with(|| {
            if &*id.1 != OVERFLOW_KEY {
                keys.entry(id.0.clone()).or_default().n += 1;
            }
            Inflight::default()
        });
        cell.used_at = now;
        (id, cell, overflowed)
    }

    /// Gives back one slot of each cell in `ids`.
    pub(super) fn release(&mut self, ids: &[InflightId]) {
        for id in ids {
            if let Some(i) = self.map.get_mut(id) {
                i.here = i.here.saturating_sub(1);
            }
        }
    }

    /// Learns that the slots of `ids` were held `ms`.
    pub(super) fn held(&mut self, ids: &[InflightId], ms: u64) {
        for (limit, _) in ids {
            let sample = ms as f64;
            match self.holds.get_mut(limit) {
                Some(avg) => *avg += HOLD_ALPHA * (sample - *avg),
                None => {
                    self.holds.insert(limit.clone(), sample);
                }
            }
        }
    }

    /// When a slot of `limit` (with `max` slots) is likely free: its mean hold over its slots,
    /// in whole seconds, at least 1 (the same rule as the providers' concurrency limits).
    pub(super) fn retry_after(&self, limit: &str, max: u32) -> std::time::Duration {
        let avg_ms = self.holds.get(limit).copied().unwrap_or(0.0);
        let secs = (avg_ms / 1000.0 / f64::from(max.max(1))).ceil() as u64;
        std::time::Duration::from_secs(secs.max(1))
    }

    /// Drops the cells without requests, unused for [`INFLIGHT_KEEP_MS`].
    pub(super) fn expire(&mut self, now: u64) {
        let keys = &mut self.keys;
        self.map.retain(|id, i| {
            let keep = i.here > 0 || now.saturating_sub(i.used_at) < INFLIGHT_KEEP_MS;
            if !keep
                && &*id.1 != OVERFLOW_KEY
                && let Some(k) = keys.get_mut(&id.0)
            {
                k.n = k.n.saturating_sub(1);
            }
            keep
        });
        keys.retain(|_, k| k.n > 0);
    }
}
