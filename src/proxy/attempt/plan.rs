//! The planner: which candidate and key to try next, and how long to wait first. Pure: the
//! clock's `now` comes with every call, the random source is its own, and whether a key's own
//! rate limit has room is a predicate given at creation, so it is tested without a network, a
//! limiter or a runtime. On a route with affinity, a candidate carries its session's ranking of
//! its keys ([`Affine`]): the pick follows it instead of the random one, and failover (a burned
//! key, the next candidate) works the same.

use std::time::Duration;

use std::sync::atomic::Ordering;

use super::{Candidate, Failure};
use crate::config::{RetryPolicy, Then};
use crate::error::Class;
use crate::providers::Key;
use crate::resilience::Skip;
use crate::routing::affinity::Affine;

/// Whether a key's own quota has room for this request (the limiter, in production).
pub(super) type KeyOpen<'c, 'a> = &'c (dyn Fn(&Candidate<'a>, &Key) -> bool + Sync);

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Start an attempt on `cand` with key `key` (`None`: the provider needs none).
    Start { cand: usize, key: Option<usize> },
    /// Wait this long (a backoff or a `Retry-After`), then ask again.
    Wait(Duration),
    /// Nothing is left to try.
    Done,
}

/// Walks the candidates in order: up to `policy.attempts` tries each, keys rotated on key-scoped
/// failures, blocked targets skipped.
pub(super) struct Planner<'c, 'a> {
    cands: &'c [Candidate<'a>],
    key_open: KeyOpen<'c, 'a>,
    rng: fastrand::Rng,
    /// The candidate being tried.
    pub(super) idx: usize,
    tries: u32,
    /// Keys refused in this request, by (provider index, key index, model): a model's rate
    /// limit burns the key for that model only (`Some`), a refusal or an exhausted quota for all.
    burned: Vec<(usize, usize, Option<&'a str>)>,
    wait: Duration,
    /// When the soonest skipped target or key comes back (the client's `Retry-After`).
    pub(super) soonest: Option<Duration>,
    /// The request's token estimate, against each target's `context_window`.
    tokens: u64,
    /// Candidates skipped because the request is longer than their context window.
    pub(super) outgrown: Vec<usize>,
    /// A candidate was skipped for a rest (its keys or its model cooling after a 429, an
    /// overload or a refusal) or a full limit, not for a breaker: the client is told to come back
    /// (429), not that tier1 failed.
    pub(super) resting: bool,
    /// Keys passed over for their headroom (provider index, key index, why), each once: the
    /// rests that came before a 429, for the metrics.
    pub(super) preempted: Vec<(usize, usize, Skip)>,
}

/// A provider's identity within one request's candidates: its index in the snapshot.
fn provider_id(c: &Candidate<'_>) -> usize {
    c.provider.index
}

impl<'c, 'a> Planner<'c, 'a> {
    pub(super) fn new(
        cands: &'c [Candidate<'a>],
        key_open: KeyOpen<'c, 'a>,
        rng: fastrand::Rng,
        tokens: u64,
    ) -> Self {
        Self {
            tokens,
            outgrown: Vec::new(),
            resting: false,
            preempted: Vec::new(),
            cands,
            key_open,
            rng,
            idx: 0,
            tries: 0,
            burned: Vec::new(),
            wait: Duration::ZERO,
            soonest: None,
        }
    }

    /// Keeps the soonest time something becomes available again.
    pub(super) fn note(&mut self, available_in: Option<Duration>) {
        if let Some(d) = available_in {
            self.soonest = Some(self.soonest.map_or(d, |s| s.min(d)));
        }
    }

    /// Leaves the current candidate for the next.
    pub(super) fn advance(&mut self) {
        self.idx += 1;
        self.tries = 0;
        self.wait = Duration::ZERO;
    }

    /// The next step at `now` (the gates' clock, in ms).
    pub(super) fn next(&mut self, now: u64) -> Step {
        if !self.wait.is_zero() {
            return Step::Wait(std::mem::take(&mut self.wait));
        }
        while let Some(c) = self.cands.get(self.idx) {
            if self.tries >= c.policy.attempts {
                self.advance();
                continue;
            }
            if c.context_window.is_some_and(|w| self.tokens > w) {
                self.outgrown.push(self.idx);
                self.advance();
                continue;
            }
            if let Some(left) = c.blocked(now) {
                self.note(Some(left));
                self.resting |= !c.broken(now);
                self.advance();
                continue;
            }
            match self.pick_key(c, now) {
                Some(key) => {
                    self.tries += 1;
                    return Step::Start { cand: self.idx, key };
                }
                None => {
                    self.note(c.keys_cooling(now, self.tokens));
                    self.resting = true;
                    self.advance();
                }
            }
        }
        Step::Done
    }

    /// Whether key `i` of `c`'s provider may serve this attempt: it serves the model, does not
    /// rest, was not refused in this request, and its own quota has room.
    fn usable(&self, c: &Candidate<'a>, i: usize, k: &Key, now: u64) -> bool {
        let pid = provider_id(c);
        k.serves(c.model)
            && k.state.resting_for(c.model, now).is_none()
            && k.state.headroom.rest(now, self.tokens).is_none()
            && !self.burned.iter().any(|&(p, b, m)| p == pid && b == i && m.is_none_or(|m| m == c.model))
            && (self.key_open)(c, k)
    }

    /// A usable key: `Some(None)` when the provider needs none, `None` when no key is usable.
    /// On a route with affinity the session's ranking decides ([`Self::ranked_key`]); else a
    /// weighted random pick, weights scaled by headroom (see [`headroom_weight`]).
    fn pick_key(&mut self, c: &Candidate<'a>, now: u64) -> Option<Option<usize>> {
        if c.provider.keys.is_empty() {
            return Some(None);
        }
        self.note_preempted(c, now);
        if let Some(affine) = &c.affinity {
            return self.ranked_key(c, affine, now).map(Some);
        }
        let keys = || c.provider.keys.iter().enumerate();
        let total: u64 =
            keys().filter(|&(i, k)| self.usable(c, i, k, now)).map(|(_, k)| headroom_weight(k, now)).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = self.rng.u64(..total);
        for (i, k) in keys() {
            if !self.usable(c, i, k, now) {
                continue;
            }
            let w = headroom_weight(k, now);
            if ticket < w {
                return Some(Some(i));
            }
            ticket -= w;
        }
        None
    }

    /// Notes, once each, the keys of `c` that only their headroom keeps out.
    fn note_preempted(&mut self, c: &Candidate<'a>, now: u64) {
        let pid = provider_id(c);
        for (i, k) in c.provider.keys.iter().enumerate() {
            if let Some((_, why)) = k.state.headroom.rest(now, self.tokens)
                && k.serves(c.model)
                && k.state.resting_for(c.model, now).is_none()
                && !self.preempted.iter().any(|&(p, j, _)| p == pid && j == i)
            {
                self.preempted.push((pid, i, why));
            }
        }
    }

    /// The session's key: the first usable one in its ranking with fewer requests in flight
    /// than the bound, else the first usable one (a load bound spills, it never refuses).
    fn ranked_key(&self, c: &Candidate<'a>, affine: &Affine, now: u64) -> Option<usize> {
        let mut spill = None;
        for &i in &affine.keys {
            let Some(k) = c.provider.keys.get(i) else { continue };
            if !self.usable(c, i, k, now) {
                continue;
            }
            if k.state.inflight.load(Ordering::Acquire) < affine.bound {
                return Some(i);
            }
            spill = spill.or(Some(i));
        }
        spill
    }

    /// Learns from a failed attempt on `cand` with `key`.
    pub(super) fn failed(&mut self, cand: usize, key: Option<usize>, f: &Failure, now: u64) {
        if cand != self.idx {
            // An attempt on a candidate already left behind (a hedge race): nothing to plan.
            return;
        }
        let c = &self.cands[cand];
        match f.class {
            Class::Auth | Class::RateLimited => {
                let scope = (f.class == Class::RateLimited && !f.key_wide).then_some(c.model);
                if let Some(k) = key {
                    self.burned.push((provider_id(c), k, scope));
                }
                let other_key = self.pick_key(c, now).is_some_and(|k| k.is_some());
                if other_key {
                    // Rotate keys without spending a try.
                    self.tries = self.tries.saturating_sub(1);
                } else if f.class == Class::RateLimited
                    && let Some(ra) = f.retry_after.filter(|ra| *ra <= c.policy.max_backoff)
                    && self.tries < c.policy.attempts
                {
                    // The only key comes back within the backoff ceiling: wait for it.
                    if let Some(k) = key {
                        self.burned.retain(|b| *b != (provider_id(c), k, scope));
                    }
                    self.wait = ra;
                } else {
                    self.advance();
                }
            }
            // The backoff (or Retry-After) is for trying this target again; moving on to the next
            // target starts at once.
            Class::Overloaded | Class::Server | Class::Timeout | Class::FirstToken | Class::Connect
                if self.tries >= c.policy.attempts || then(&c.policy, f.class) == Then::Next =>
            {
                self.advance();
            }
            Class::Overloaded | Class::Server | Class::Timeout | Class::FirstToken | Class::Connect => {
                match f.retry_after {
                    Some(ra) if ra > c.policy.max_backoff => self.advance(),
                    Some(ra) => self.wait = ra,
                    None => self.wait = c.policy.delay_with(self.tries, &mut self.rng),
                }
            }
            // Another target may have a larger window, or another policy; this one will not change.
            Class::InvalidRequest | Class::NotFound | Class::ContextLength | Class::ContentFilter => {
                self.advance()
            }
        }
    }

    /// An attempt on `cand` could not start: a breaker's gate, or (`resting`) a full limit.
    pub(super) fn skipped(&mut self, cand: usize, available_in: Option<Duration>, resting: bool) {
        self.note(available_in);
        self.resting |= resting;
        if cand == self.idx {
            self.advance();
        }
    }
}

/// Parts of a key's weight per unit: a key's share follows what is left of its quota, so a
/// nearly-empty key gets less traffic (and still some, until it has none).
const WEIGHT_SCALE: f64 = 1000.0;

/// A key's weight times the fraction of its quota left (1 when unknown), never under 1.
fn headroom_weight(k: &Key, now: u64) -> u64 {
    let w = f64::from(k.weight) * WEIGHT_SCALE * k.state.headroom.fraction(now);
    (w as u64).max(1)
}

/// What `policy` says follows a failure of `class` that a same-target retry could fix: a
/// timeout, a connect error, a 5xx or an overloaded answer (other classes never retry a target).
fn then(policy: &RetryPolicy, class: Class) -> Then {
    match class {
        Class::Timeout | Class::FirstToken => policy.on_timeout,
        Class::Connect => policy.on_connect,
        _ => policy.on_server,
    }
}

#[cfg(test)]
mod tests;
