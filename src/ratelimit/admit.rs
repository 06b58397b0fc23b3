//! Admission on the request path: a request against the caller limits (counters first, then
//! concurrency), a provider key against its own. Local, under two short locks, never awaiting.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Limiter;
use super::counters::{Counter, CounterId, Counters, Dim};
use super::limits::Spend;
use super::limits::{Compiled, Facts, Limits};
use super::ticket::Ticket;
use super::window::{Window, position, reset_at, wait_ms};

/// Why a request was refused.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The limit (its name; `x-tier1-limit`).
    pub limit: Arc<str>,
    /// When to come back.
    pub retry_after: Duration,
    /// Redis is down and the limit fails closed (503, not 429).
    pub unavailable: bool,
    /// A budget refused it: when its window resets (unix ms). `None`: a rate limit.
    pub resets_at_ms: Option<u64>,
}

impl Rejection {
    /// Refused for a second: Redis is down and `limit` fails closed (503).
    pub(crate) fn unavailable(limit: Arc<str>) -> Self {
        Self { limit, retry_after: Duration::from_secs(1), unavailable: true, resets_at_ms: None }
    }

    /// Refused by `limit` (429), to come back after `retry_after`.
    fn limited(limit: Arc<str>, retry_after: Duration) -> Self {
        Self { limit, retry_after, unavailable: false, resets_at_ms: None }
    }

    /// Refused by budget `limit` (429) at `now`: to come back when its fixed window resets.
    fn budget(limit: Arc<str>, window_ms: u64, now: u64) -> Self {
        let resets = reset_at(now, window_ms);
        let retry_after = Duration::from_millis(resets.saturating_sub(now).max(1000));
        Self { limit, retry_after, unavailable: false, resets_at_ms: Some(resets) }
    }

    /// Refused at `now` by the strict counter `id` of `limit`, as Redis answered: a budget until its
    /// window resets, a rate limit until its current window ends.
    pub(crate) fn strict(limit: Arc<str>, id: &CounterId, now: u64) -> Self {
        if id.fixed {
            return Self::budget(limit, id.window_ms, now);
        }
        let (_, frac) = position(now, id.window_ms);
        let wait = ((1.0 - frac) * id.window_ms as f64).ceil() as u64;
        Self::limited(limit, Duration::from_millis(wait.max(1000)))
    }

    /// Whether a budget (not a rate limit) refused it.
    pub fn is_budget(&self) -> bool {
        self.resets_at_ms.is_some()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.resets_at_ms {
            Some(at) => {
                write!(f, "budget '{}' exceeded; it resets at {} (unix seconds)", self.limit, at / 1000)
            }
            None => write!(f, "rate limit '{}' exceeded", self.limit),
        }
    }
}

/// A caller limit that applies, with the request's scope value.
type Applicable<'a> = (&'a Compiled, Arc<str>);

/// A charge to make once every counter has room: (counter, window index, amount).
type Charge = (CounterId, u64, f64);

/// One request's pass over the counters: its time and token estimate, the charges queued, and
/// the scope value each limit counts it under (its own, or the overflow bucket).
struct Pass {
    now: u64,
    spend: Spend,
    charges: Vec<Charge>,
    slots: Vec<Arc<str>>,
}

/// A counter that has no room for a request: what [`wait_ms`] needs to say when it will.
struct Full {
    window: Window,
    frac: f64,
    limit: f64,
}

impl Limiter {
    /// Admits a request against the caller limits (global, route, api_key, header), or says which
    /// limit refuses it: the async limits, or (`strict`) the strict ones counted here because Redis
    /// could not answer.
    pub fn admit(
        self: &Arc<Self>,
        limits: &Limits,
        facts: &Facts<'_>,
        strict: bool,
    ) -> Result<Ticket, Rejection> {
        let now = self.now_ms();
        let applicable: Vec<Applicable<'_>> =
            limits.caller(facts).filter(|(c, _)| c.cfg.strict == strict).collect();
        let mut ticket = Ticket::empty(self.clone());
        let Some((first, _)) = applicable.first() else { return Ok(ticket) };
        if self.fleet.down() && self.fleet.fail_closed.load(Ordering::Acquire) {
            return Err(Rejection::unavailable(first.name.clone()));
        }
        let spend = Spend { tokens: facts.tokens, micro_usd: facts.micro_usd };
        let Some(Pass { charges, slots, .. }) = self.count(&applicable, spend, now)? else {
            return Ok(ticket);
        };
        ticket.charged = charges
            .into_iter()
            .filter(|(id, ..)| id.dim != Dim::Requests)
            .map(|(id, _, c)| (id, c))
            .collect();
        // Concurrency, checked last so a refused request holds no slot.
        self.hold(&applicable, slots, now, &mut ticket)?;
        Ok(ticket)
    }

    /// Checks every counter of the applicable limits, then charges them all: nothing is charged
    /// when one refuses. `None` when the counters are unavailable (a poisoned lock admits).
    fn count(
        &self,
        applicable: &[Applicable<'_>],
        spend: Spend,
        now: u64,
    ) -> Result<Option<Pass>, Rejection> {
        let mut pass = Pass { now, spend, charges: Vec::new(), slots: Vec::with_capacity(applicable.len()) };
        let Ok(mut counters) = self.counters.lock() else { return Ok(None) };
        for (c, key) in applicable {
            let (key, overflowed) = counters.slot(c, key.clone());
            if overflowed {
                self.overflowed(&c.name);
            }
            self.check(&mut counters, c, &key, overflowed, &mut pass)?;
            pass.slots.push(key);
        }
        for (id, index, cost) in &pass.charges {
            if let Some(counter) = counters.map.get_mut(id) {
                counter.charge(*index, *cost, now);
            }
        }
        Ok(Some(pass))
    }

    /// Checks limit `c`'s counters for scope value `key` and queues their charges, or refuses.
    fn check(
        &self,
        counters: &mut Counters,
        c: &Compiled,
        key: &Arc<str>,
        overflowed: bool,
        pass: &mut Pass,
    ) -> Result<(), Rejection> {
        let (now, sync) = (pass.now, self.fleet.configured);
        let first = c.first_dim();
        for (dim, limit, cost) in c.dims(pass.spend) {
            let id = c.counter(dim, key);
            let counted = Some(dim) == first && !overflowed;
            let counter = counters.touch(&id, counted, sync, now);
            if let Some(full) = self.full(counter, &id, limit, cost, now) {
                if c.cfg.budget {
                    return Err(Rejection::budget(c.name.clone(), c.window_ms, now));
                }
                let wait = wait_ms(&full.window, full.frac, c.window_ms, full.limit, cost);
                return Err(Rejection::limited(c.name.clone(), Duration::from_millis(wait.max(1000))));
            }
            pass.charges.push((id, position(now, c.window_ms).0, cost));
        }
        Ok(())
    }

    /// Takes one slot of each concurrency limit among `applicable` (scope values in `slots`), or
    /// refuses and gives back what it took.
    fn hold(
        &self,
        applicable: &[Applicable<'_>],
        slots: Vec<Arc<str>>,
        now: u64,
        ticket: &mut Ticket,
    ) -> Result<(), Rejection> {
        let Ok(mut cells) = self.inflight.lock() else { return Ok(()) };
        for ((c, _), key) in applicable.iter().zip(slots) {
            let Some(max) = c.cfg.max_inflight else { continue };
            let (id, cell, overflowed) = cells.cell(c, key, now);
            if overflowed {
                self.overflowed(&c.name);
            }
            let others = if self.fleet.up.load(Ordering::Acquire) { cell.others } else { 0 };
            if cell.here + others >= self.max_here(max) {
                let retry_after = cells.retry_after(&c.name, max);
                cells.release(&ticket.inflight);
                ticket.inflight.clear();
                return Err(Rejection::limited(c.name.clone(), retry_after));
            }
            cell.here += 1;
            if ticket.held_at.is_none() {
                ticket.held_at = Some(tokio::time::Instant::now());
            }
            ticket.inflight.push(id);
        }
        Ok(())
    }

    /// The requests in flight this replica may hold under `max`: all of them while it can count
    /// the fleet's, its share of the last known replica count while Redis is down.
    fn max_here(&self, max: u32) -> u32 {
        if self.fleet.down() {
            (f64::from(max) / f64::from(self.fleet.replicas.load(Ordering::Acquire).max(1))).ceil() as u32
        } else {
            max
        }
    }

    /// Whether a provider key is within its own limits for `model` now (else it is skipped, like a
    /// resting key).
    pub fn key_open(&self, limits: &Limits, provider: &str, key: &str, model: &str, spend: Spend) -> bool {
        let mut applicable = limits.for_key(provider, key, model).peekable();
        if applicable.peek().is_none() {
            return true;
        }
        let now = self.now_ms();
        let sync = self.fleet.configured;
        let Ok(mut counters) = self.counters.lock() else { return true };
        let scope: Arc<str> = Arc::from(format!("{provider}/{key}").as_str());
        for c in applicable {
            let first = c.first_dim();
            for (dim, limit, cost) in c.dims(spend) {
                let id = c.counter(dim, &scope);
                let counter = counters.touch(&id, Some(dim) == first, sync, now);
                if self.full(counter, &id, limit, cost, now).is_some() {
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
        spend: Spend,
    ) -> Ticket {
        let now = self.now_ms();
        let mut ticket = Ticket::empty(self.clone());
        let scope: Arc<str> = Arc::from(format!("{provider}/{key}").as_str());
        let sync = self.fleet.configured;
        let Ok(mut counters) = self.counters.lock() else { return ticket };
        for c in limits.for_key(provider, key, model) {
            let first = c.first_dim();
            for (dim, _, cost) in c.dims(spend) {
                let id = c.counter(dim, &scope);
                counters.touch(&id, Some(dim) == first, sync, now).charge(
                    position(now, c.window_ms).0,
                    cost,
                    now,
                );
                if dim != Dim::Requests {
                    ticket.charged.push((id, cost));
                }
            }
        }
        ticket
    }

    /// The counter has no room for `cost` more under `limit` now (a zero cost always fits).
    fn full(&self, counter: &mut Counter, id: &CounterId, limit: u64, cost: f64, now: u64) -> Option<Full> {
        let (used, frac, window, fleet) = self.usage(counter, id, now);
        let limit = if fleet { limit as f64 } else { self.local_share(limit) };
        (used + cost > limit && cost > 0.0).then_some(Full { window, frac, limit })
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

    /// A counter's usage of its sliding window now, the position in the window, the window it was
    /// read from and whether that is the fleet's (a fresh fleet total plus what this replica has
    /// not had acknowledged yet) or this replica's own counts.
    fn usage(&self, c: &mut Counter, id: &CounterId, now: u64) -> (f64, f64, Window, bool) {
        let (index, frac) = position(now, id.window_ms);
        // A budget's fixed window: the previous one no longer counts at all.
        let weight = if id.fixed { 1.0 } else { frac };
        c.own.roll(index);
        let fresh = self.fleet.up.load(Ordering::Acquire)
            && now.saturating_sub(c.fleet_at) <= self.fleet.fresh_for_ms.load(Ordering::Acquire);
        if fresh {
            c.fleet.roll(index);
            let mut w = c.fleet;
            w.curr += c.pending_in(index);
            w.prev += c.pending_in(index.saturating_sub(1));
            (w.usage(weight), frac, w, true)
        } else {
            (c.own.usage(weight), frac, c.own, false)
        }
    }
}
