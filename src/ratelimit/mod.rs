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

pub mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tokio::sync::watch;

use crate::config::{LimitConfig, Scope};
use crate::routing::Glob;
use window::{Window, position, wait_ms};

/// The scope value a new key past its limit's `max_keys` is counted under: one bucket shared by
/// every such key. `~` never appears in a sanitised header value, so no client can name it.
pub const OVERFLOW_KEY: &str = "~overflow";

/// How often idle counters and concurrency cells are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch: windows are aligned on wall time, so replicas agree on them.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Requests.
    Requests,
    /// Tokens.
    Tokens,
}

impl Dim {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "req",
            Self::Tokens => "tok",
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
}

impl CounterId {
    /// The Redis key of window `index` (hash-tagged on the prefix: one cluster slot).
    pub fn redis_key(&self, prefix: &str, index: u64) -> String {
        format!(
            "{{{prefix}}}:rl:{}:{}:{}:{}:{index}",
            self.limit,
            self.dim.as_str(),
            self.window_ms,
            self.key
        )
    }
}

#[derive(Debug, Default)]
struct Counter {
    /// This replica's own counts.
    own: Window,
    /// The fleet's totals at the last sync.
    fleet: Window,
    /// When `fleet` was last refreshed (unix ms; 0: never).
    fleet_at: u64,
    /// Counted here, not yet sent: (window index, amount).
    pending: Vec<(u64, f64)>,
    /// Sent in the batch under way.
    sent: Vec<(u64, f64)>,
    /// Last use: charged or checked (unix ms), for eviction and for the sync's freshness tail.
    used_at: u64,
    /// Counts as one of its limit's keys (the first dimension of a scope value, not the overflow
    /// bucket).
    counted: bool,
    /// In the sync list.
    listed: bool,
}

impl Counter {
    fn pending_in(&self, index: u64) -> f64 {
        self.pending.iter().chain(&self.sent).filter(|(i, _)| *i == index).map(|(_, a)| a).sum()
    }

    fn charge(&mut self, index: u64, amount: f64, now: u64) {
        self.own.roll(index);
        self.own.curr += amount;
        match self.pending.iter_mut().find(|(i, _)| *i == index) {
            Some(p) => p.1 += amount,
            None => self.pending.push((index, amount)),
        }
        self.used_at = now;
    }
}

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

    fn down(&self) -> bool {
        self.configured && !self.up.load(Ordering::Acquire)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The limit (its name; `x-tier1-limit`).
    pub limit: Arc<str>,
    /// When to come back.
    pub retry_after: Duration,
    /// Redis is down and the limit fails closed (503, not 429).
    pub unavailable: bool,
}

/// What a request is, for the limits.
pub struct Facts<'a> {
    /// Route name (or `direct`).
    pub route: &'a str,
    /// Client-facing model name.
    pub model: &'a str,
    /// Index of the inbound API key used.
    pub api_key: Option<usize>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Estimated tokens.
    pub tokens: u64,
}

/// One request's estimate, in tokens: prompt bytes / 4 plus the requested output ceiling.
/// Saturating: a client's `max_tokens` near `u64::MAX` must not wrap to a tiny estimate that
/// passes every token limit.
pub fn estimate_tokens(body_len: usize, max_tokens: Option<u64>) -> u64 {
    (body_len as u64 / 4).saturating_add(max_tokens.unwrap_or(0))
}

/// The limits a snapshot applies, compiled.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    limits: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    cfg: LimitConfig,
    name: Arc<str>,
    models: Vec<Glob>,
    window_ms: u64,
}

impl Limits {
    /// Compiles the config's limits.
    pub fn new(limits: &[LimitConfig]) -> Self {
        let limits = limits
            .iter()
            .map(|l| Compiled {
                cfg: l.clone(),
                name: Arc::from(l.name.as_str()),
                models: l.models.iter().map(|m| Glob::new(m)).collect(),
                window_ms: u64::try_from(l.per.as_millis()).unwrap_or(60_000).max(1),
            })
            .collect();
        Self { limits }
    }

    /// Whether any limit exists.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// The strict limits that apply to a request, as (name, counter, limit, cost) per dimension.
    pub fn strict(&self, facts: &Facts<'_>) -> Vec<(Arc<str>, CounterId, u64, f64)> {
        self.caller(facts)
            .filter(|(c, _)| c.cfg.strict)
            .flat_map(|(c, key)| {
                c.dims(facts.tokens).map(move |(dim, limit, cost)| {
                    let id =
                        CounterId { limit: c.name.clone(), dim, window_ms: c.window_ms, key: key.clone() };
                    (c.name.clone(), id, limit, cost)
                })
            })
            .collect()
    }

    fn caller<'a>(&'a self, facts: &'a Facts<'_>) -> impl Iterator<Item = (&'a Compiled, Arc<str>)> + 'a {
        self.limits.iter().filter(|c| c.applies(facts.route, facts.model)).filter_map(move |c| {
            let key = match &c.cfg.scope {
                Scope::Global => Arc::from("all"),
                Scope::Route => Arc::from(facts.route),
                Scope::ApiKey => {
                    Arc::from(facts.api_key.map_or_else(|| "none".to_owned(), |i| format!("key{i}")).as_str())
                }
                Scope::Header(h) => Arc::from(scope_value(facts.headers.get(h)).as_str()),
                Scope::ProviderKey => return None,
            };
            Some((c, key))
        })
    }

    fn for_key<'a>(
        &'a self,
        provider: &'a str,
        key: &'a str,
        model: &'a str,
    ) -> impl Iterator<Item = &'a Compiled> + 'a {
        self.limits.iter().filter(move |c| {
            c.cfg.scope == Scope::ProviderKey
                && c.cfg.key.as_ref().is_none_or(|(p, k)| p == provider && k == key)
                && c.models_match(model)
        })
    }
}

impl Compiled {
    fn models_match(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|g| g.matches(model))
    }

    fn applies(&self, route: &str, model: &str) -> bool {
        self.models_match(model) && (self.cfg.routes.is_empty() || self.cfg.routes.iter().any(|r| r == route))
    }

    fn dims(&self, tokens: u64) -> impl Iterator<Item = (Dim, u64, f64)> + '_ {
        let req = self.cfg.requests.map(|l| (Dim::Requests, l, 1.0));
        let tok = self.cfg.tokens.map(|l| (Dim::Tokens, l, tokens as f64));
        req.into_iter().chain(tok)
    }
}

/// A header value as a scope key: short token-like values as they are; anything else hashed, so a
/// key is bounded and never carries odd bytes into Redis. A missing header is one shared bucket.
fn scope_value(v: Option<&http::HeaderValue>) -> String {
    let Some(v) = v else { return "_missing".to_owned() };
    let b = v.as_bytes();
    if !b.is_empty()
        && b.len() <= 64
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return String::from_utf8_lossy(b).into_owned();
    }
    let h = b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, c| (h ^ u64::from(*c)).wrapping_mul(0x100_0000_01b3));
    format!("h{h:016x}")
}

/// Scope values of one limit.
#[derive(Debug, Default)]
struct KeyCount {
    n: usize,
    /// Overflowing since the count was last under the cap (for one warning per episode).
    overflowing: bool,
}

/// The counters, with their count per limit and (with Redis) the list the next sync sends.
#[derive(Debug, Default)]
struct Counters {
    map: HashMap<CounterId, Counter>,
    keys: HashMap<Arc<str>, KeyCount>,
    /// Counters with something to sync: charged or checked lately, or with deltas unsent.
    sync: Vec<CounterId>,
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
    fn slot(&mut self, c: &Compiled, key: Arc<str>) -> (Arc<str>, bool) {
        let Some((dim, ..)) = c.dims(0).next() else { return (key, false) };
        if !over_cap(&mut self.keys, &c.name, c.cfg.max_keys) {
            return (key, false);
        }
        let id = CounterId { limit: c.name.clone(), dim, window_ms: c.window_ms, key: key.clone() };
        if self.map.contains_key(&id) { (key, false) } else { (Arc::from(OVERFLOW_KEY), true) }
    }

    /// The counter of `id`, created if new (one of its limit's keys when `counted`), marked used
    /// at `now` and, when `sync`, listed for the next sync.
    fn touch(&mut self, id: &CounterId, counted: bool, sync: bool, now: u64) -> &mut Counter {
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

/// The concurrency cells, with their count per limit.
#[derive(Debug, Default)]
struct Inflights {
    map: HashMap<InflightId, Inflight>,
    keys: HashMap<Arc<str>, KeyCount>,
}

impl Inflights {
    /// Drops the cells without requests, unused for [`INFLIGHT_KEEP_MS`].
    fn expire(&mut self, now: u64) {
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

/// Counters and concurrency, shared by every snapshot (they survive reloads by name).
#[derive(Debug)]
pub struct Limiter {
    counters: Mutex<Counters>,
    inflight: Mutex<Inflights>,
    /// The fleet view the sync task maintains.
    pub fleet: Arc<Fleet>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// A concurrency cell: (limit name, scope value).
pub type InflightId = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
struct Inflight {
    here: u32,
    /// The other replicas' counts at the last sync.
    others: u32,
    /// Last use (unix ms): a cell outlives its requests for a while, so that the sync keeps
    /// reporting this replica's count and learning the others' between short requests.
    used_at: u64,
}

/// How long a concurrency cell is kept (and synced) after its last use.
const INFLIGHT_KEEP_MS: u64 = 10_000;

/// A request's admission: releases its concurrency slots on drop, and settles its token
/// estimate with the real usage.
#[derive(Debug)]
pub struct Ticket {
    limiter: Arc<Limiter>,
    tokens: Vec<(CounterId, f64)>,
    inflight: Vec<InflightId>,
}

impl Ticket {
    /// Corrects the token estimate with what the provider reported (or refunds it: `Some(0)`).
    pub fn settle(&mut self, actual: Option<u64>) {
        let Some(actual) = actual else { return };
        let now = unix_ms();
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
        self.inflight.append(&mut other.inflight);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.inflight.is_empty() {
            return;
        }
        if let Ok(mut cells) = self.limiter.inflight.lock() {
            for id in &self.inflight {
                if let Some(i) = cells.map.get_mut(id) {
                    i.here = i.here.saturating_sub(1);
                }
            }
        }
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
    /// An empty limiter.
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self { counters: Mutex::default(), inflight: Mutex::default(), fleet, metrics: None }
    }

    /// Counts overflows in, and exports key counts to, `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
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

    /// The share of `limit` this replica may use on its own counts, when there is no fresh fleet
    /// view: the whole limit without Redis, `limit / replicas` when Redis is down.
    fn local_share(&self, limit: u64) -> f64 {
        if self.fleet.configured {
            limit as f64 / f64::from(self.fleet.replicas.load(Ordering::Acquire).max(1))
        } else {
            limit as f64
        }
    }

    fn usage(&self, c: &mut Counter, id: &CounterId, now: u64) -> (f64, f64, Window, f64) {
        let (index, frac) = position(now, id.window_ms);
        c.own.roll(index);
        let fresh = self.fleet.up.load(Ordering::Acquire)
            && now.saturating_sub(c.fleet_at) <= self.fleet.fresh_for_ms.load(Ordering::Acquire);
        if fresh {
            c.fleet.roll(index);
            let mut w = c.fleet;
            w.curr += c.pending_in(index);
            w.prev += c.pending_in(index.saturating_sub(1));
            (w.usage(frac), frac, w, 1.0)
        } else {
            (c.own.usage(frac), frac, c.own, 0.0)
        }
    }

    /// Admits a request against the caller limits (global, route, api_key, header), or says which
    /// limit refuses it: the async limits, or (`strict`) the strict ones counted here because Redis
    /// could not answer.
    pub fn admit(
        self: &Arc<Self>,
        limits: &Limits,
        facts: &Facts<'_>,
        strict: bool,
    ) -> Result<Ticket, Rejection> {
        let now = unix_ms();
        let applicable: Vec<(&Compiled, Arc<str>)> =
            limits.caller(facts).filter(|(c, _)| c.cfg.strict == strict).collect();
        let mut ticket = Ticket { limiter: self.clone(), tokens: Vec::new(), inflight: Vec::new() };
        if applicable.is_empty() {
            return Ok(ticket);
        }
        if self.fleet.down() && self.fleet.fail_closed.load(Ordering::Acquire) {
            let first = &applicable[0].0.name;
            return Err(Rejection {
                limit: first.clone(),
                retry_after: Duration::from_secs(1),
                unavailable: true,
            });
        }
        let mut charges: Vec<(CounterId, u64, f64)> = Vec::new();
        // The scope value each limit counts this request under (its own, or the overflow bucket).
        let mut slots: Vec<Arc<str>> = Vec::with_capacity(applicable.len());
        let sync = self.fleet.configured;
        {
            let Ok(mut counters) = self.counters.lock() else { return Ok(ticket) };
            for (c, key) in &applicable {
                let (key, overflowed) = counters.slot(c, key.clone());
                if overflowed {
                    self.overflowed(&c.name);
                }
                let first = c.dims(0).next().map(|d| d.0);
                for (dim, limit, cost) in c.dims(facts.tokens) {
                    let id =
                        CounterId { limit: c.name.clone(), dim, window_ms: c.window_ms, key: key.clone() };
                    let counted = Some(dim) == first && !overflowed;
                    let counter = counters.touch(&id, counted, sync, now);
                    let (used, frac, w, fleet) = self.usage(counter, &id, now);
                    let limit_here = if fleet > 0.0 { limit as f64 } else { self.local_share(limit) };
                    if used + cost > limit_here && cost > 0.0 {
                        let wait = wait_ms(&w, frac, c.window_ms, limit_here, cost);
                        return Err(Rejection {
                            limit: c.name.clone(),
                            retry_after: Duration::from_millis(wait.max(1000)),
                            unavailable: false,
                        });
                    }
                    charges.push((id, position(now, c.window_ms).0, cost));
                }
                slots.push(key);
            }
            for (id, index, cost) in &charges {
                if let Some(counter) = counters.map.get_mut(id) {
                    counter.charge(*index, *cost, now);
                }
            }
        }
        ticket.tokens =
            charges.into_iter().filter(|(id, ..)| id.dim == Dim::Tokens).map(|(id, _, c)| (id, c)).collect();
        // Concurrency, checked last so a refused request holds no slot.
        let Ok(mut guard) = self.inflight.lock() else { return Ok(ticket) };
        let Inflights { map: inflight, keys } = &mut *guard;
        for ((c, _), key) in applicable.iter().zip(slots) {
            if let Some(max) = c.cfg.max_inflight {
                let mut id = (c.name.clone(), key);
                if &*id.1 != OVERFLOW_KEY
                    && !inflight.contains_key(&id)
                    && over_cap(keys, &c.name, c.cfg.max_keys)
                {
                    self.overflowed(&c.name);
                    id.1 = Arc::from(OVERFLOW_KEY);
                }
                let cell = inflight.entry(id.clone()).or_insert_with(|| {
                    if &*id.1 != OVERFLOW_KEY {
                        keys.entry(id.0.clone()).or_default().n += 1;
                    }
                    Inflight::default()
                });
                cell.used_at = now;
                let others = if self.fleet.up.load(Ordering::Acquire) { cell.others } else { 0 };
                let max_here = if self.fleet.down() {
                    (f64::from(max) / f64::from(self.fleet.replicas.load(Ordering::Acquire).max(1))).ceil()
                        as u32
                } else {
                    max
                };
                if cell.here + others >= max_here {
                    // Release what this request took so far.
                    for taken in &ticket.inflight {
                        if let Some(t) = inflight.get_mut(taken) {
                            t.here = t.here.saturating_sub(1);
                        }
                    }
                    ticket.inflight.clear();
                    return Err(Rejection {
                        limit: c.name.clone(),
                        retry_after: Duration::from_secs(1),
                        unavailable: false,
                    });
                }
                cell.here += 1;
                ticket.inflight.push(id);
            }
        }
        Ok(ticket)
    }

    /// Whether a provider key is within its own limits for `model` now (else it is skipped, like a
    /// resting key).
    pub fn key_open(&self, limits: &Limits, provider: &str, key: &str, model: &str, tokens: u64) -> bool {
        let mut applicable = limits.for_key(provider, key, model).peekable();
        if applicable.peek().is_none() {
            return true;
        }
        let now = unix_ms();
        let sync = self.fleet.configured;
        let Ok(mut counters) = self.counters.lock() else { return true };
        let scope: Arc<str> = Arc::from(format!("{provider}/{key}").as_str());
        for c in applicable {
            let first = c.dims(0).next().map(|d| d.0);
            for (dim, limit, cost) in c.dims(tokens) {
                let id = CounterId { limit: c.name.clone(), dim, window_ms: c.window_ms, key: scope.clone() };
                let counter = counters.touch(&id, Some(dim) == first, sync, now);
                let (used, _, _, fleet) = self.usage(counter, &id, now);
                let limit_here = if fleet > 0.0 { limit as f64 } else { self.local_share(limit) };
                if used + cost > limit_here && cost > 0.0 {
                    return false;
                }
            }
        }
        true
    }

    /// Charges a provider key's limits for one attempt.
    pub fn charge_key(
        self: &Arc<Self>,
        limits: &Limits,
        provider: &str,
        key: &str,
        model: &str,
        tokens: u64,
    ) -> Ticket {
        let now = unix_ms();
        let mut ticket = Ticket { limiter: self.clone(), tokens: Vec::new(), inflight: Vec::new() };
        let scope: Arc<str> = Arc::from(format!("{provider}/{key}").as_str());
        let sync = self.fleet.configured;
        let Ok(mut counters) = self.counters.lock() else { return ticket };
        for c in limits.for_key(provider, key, model) {
            let first = c.dims(0).next().map(|d| d.0);
            for (dim, _, cost) in c.dims(tokens) {
                let id = CounterId { limit: c.name.clone(), dim, window_ms: c.window_ms, key: scope.clone() };
                counters.touch(&id, Some(dim) == first, sync, now).charge(
                    position(now, c.window_ms).0,
                    cost,
                    now,
                );
                if dim == Dim::Tokens {
                    ticket.tokens.push((id, cost));
                }
            }
        }
        ticket
    }

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

/// Sweeps the limiter every [`SWEEP_EVERY`] until `stop`.
pub async fn sweeper(limiter: Arc<Limiter>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        limiter.sweep(unix_ms());
    }
}

#[cfg(test)]
mod tests;
