//! Resilience state: circuit breakers, cooldowns, latency averages, in-flight counts, retry
//! budgets and concurrency limits.
//!
//! State lives in a [`Registry`] outside the config snapshot, keyed by stable identities
//! (provider name, key name, `provider/model` target, route name). A snapshot build asks the
//! registry for the state of each thing it holds and keeps the `Arc`s, so the hot path reaches its
//! state without any map lookup, and a rebuilt snapshot (a config reload) that keeps a target keeps
//! its breaker, cooldowns and averages. The hot path reads gates (atomics); outcomes feed the state
//! machines, which never hold a lock across `.await`.

mod backoff;
mod breaker;
mod budget;
pub(crate) mod clock;
mod cooldown;
mod ewma;
pub(crate) mod headroom;
mod limit;
mod rests;
mod spread;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use backoff::RetryPolicy;
pub use backoff::parse_retry_after;
pub(crate) use breaker::{Admission, Breaker, BreakerConfig, BreakerState};
pub(crate) use budget::{BudgetConfig, RetryBudget};
pub(crate) use clock::Clock;
pub(crate) use cooldown::Cooldown;
pub(crate) use ewma::Ewma;
pub(crate) use headroom::{Headroom, Skip};
pub(crate) use limit::{Limit, Permit, Shape};
pub(crate) use rests::ModelRests;
pub(crate) use spread::Spread;

use crate::tracked::Tracked;

/// State of one provider key.
#[derive(Debug, Default)]
pub struct KeyState {
    /// Rest of the whole key: refused (auth), or out of quota.
    pub cooldown: Cooldown,
    /// Rests of single models on this key (their rate limits).
    pub models: ModelRests,
    /// Requests in flight on this key.
    pub inflight: AtomicU32,
    /// What its provider last said is left of its quota.
    pub headroom: Headroom,
}

impl KeyState {
    /// Time until the key may serve `model`, if it rests now (as a whole or for that model).
    pub fn resting_for(&self, model: &str, now: u64) -> Option<Duration> {
        match (self.cooldown.remaining(now), self.models.remaining(model, now)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// [`Self::resting_for`], or the time until its quota refills when its headroom has no room
    /// for a request of `tokens` (estimated; 0: any request): the rest that comes before a 429.
    pub fn unavailable_for(&self, model: &str, now: u64, tokens: u64) -> Option<Duration> {
        let quota = self.headroom.rest(now, tokens).map(|(d, _)| d);
        match (self.resting_for(model, now), quota) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// State of one `provider/model` target.
#[derive(Debug)]
pub struct TargetState {
    /// Time to first byte (streams: to the committing chunk).
    pub ewma: Ewma,
    /// Attempts in flight.
    pub inflight: AtomicU32,
    /// Per-target breaker.
    pub breaker: Breaker,
    /// Model-scoped cooldown (an overloaded model that said when to come back).
    pub cooldown: Cooldown,
    /// Its metric handles, resolved at its first answer: looking labels up costs a hash and a
    /// lock per metric, seven times a request.
    metrics: std::sync::OnceLock<Arc<crate::metrics::TargetMetrics>>,
}

impl TargetState {
    /// A fresh target: closed breaker, no cooldown, no history.
    fn new(breaker: BreakerConfig) -> Self {
        Self {
            ewma: Ewma::default(),
            inflight: AtomicU32::new(0),
            breaker: Breaker::new(breaker),
            cooldown: Cooldown::default(),
            metrics: std::sync::OnceLock::new(),
        }
    }

    /// Whether it holds nothing a fresh one would not: not cooling, breaker closed, and no one
    /// else holds it (no attempt in flight).
    fn is_quiet(self: &Arc<Self>, now: u64) -> bool {
        Arc::strong_count(self) == 1
            && !self.cooldown.is_cooling(now)
            && self.breaker.state(now) == BreakerState::Closed
    }

    /// The metric handles of this target, labelled `provider` and `model` (the target's bounded
    /// model label, the same at every call).
    pub fn metrics(
        &self,
        all: &crate::metrics::Metrics,
        provider: &str,
        model: &str,
    ) -> &Arc<crate::metrics::TargetMetrics> {
        self.metrics.get_or_init(|| Arc::new(all.target(provider, model)))
    }
}

/// State of one provider.
#[derive(Debug)]
pub struct ProviderState {
    /// Per-provider breaker: opened by provider-scoped failures (connect errors, several models
    /// open at once, every key refused), not by one model's.
    pub breaker: Breaker,
    /// Its models whose breaker is open now.
    pub spread: Spread,
    /// Retry budget of direct `provider/model` traffic.
    pub budget: RetryBudget,
    /// Direct requests' state for models no config names.
    pub direct: DirectTargets,
}

/// Made-up direct models (`provider/anything`) with a state of their own, per provider, at most.
pub const DIRECT_MODELS: usize = 256;

/// The state of direct requests for models the config does not name, one per model name, so
/// that a 503 with `Retry-After` on `up/a` does not rest `up/b`. Bounded, as clients choose the
/// names: at most [`DIRECT_MODELS`]; when full, the quiet ones (nothing a fresh state would not
/// hold) are dropped, and if every one still holds something (cooling, breaker not closed, in
/// flight) a new name gets `None` and the caller uses the provider's shared direct state.
/// Kept per replica: these rests are not shared with other replicas.
#[derive(Debug, Default)]
pub struct DirectTargets {
    map: Mutex<HashMap<Box<str>, Arc<TargetState>>>,
}

impl DirectTargets {
    /// The state of `model`, made on first use; `None` when the map is full (see above).
    pub fn get(&self, model: &str, breaker: BreakerConfig, now: u64) -> Option<Arc<TargetState>> {
        let mut map = self.map.lock().ok()?;
        if let Some(t) = map.get(model) {
            return Some(t.clone());
        }
        if map.len() >= DIRECT_MODELS {
            map.retain(|_, t| !t.is_quiet(now));
            if map.len() >= DIRECT_MODELS {
                return None;
            }
        }
        let t = Arc::new(TargetState::new(breaker));
        map.insert(model.into(), t.clone());
        Some(t)
    }

    /// Model names holding a state now.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }
}

/// State of one route.
#[derive(Debug)]
pub struct RouteState {
    /// Round-robin position.
    pub rr: AtomicUsize,
    /// Smooth weighted round-robin current weights.
    pub swrr: Mutex<Vec<i64>>,
    /// Retry budget.
    pub budget: RetryBudget,
}

/// All runtime state, by stable identity. Touched when a snapshot is built, never per request.
/// A build runs between [`Registry::begin_build`] and [`Registry::commit_build`] (or
/// [`Registry::abort_build`] when it fails); the commit drops state that the new config no
/// longer mentions.
#[derive(Debug, Default)]
pub struct Registry {
    /// The clock every gate reads.
    pub clock: Clock,
    keys: Tracked<(String, String), KeyState>,
    targets: Tracked<(String, String), TargetState>,
    providers: Tracked<String, ProviderState>,
    routes: Tracked<String, RouteState>,
    limits: Tracked<String, Limit>,
}

impl Registry {
    /// State of a provider key.
    pub fn key(&self, provider: &str, key: &str) -> Arc<KeyState> {
        self.keys.get_or((provider.to_owned(), key.to_owned()), |_| true, KeyState::default)
    }

    /// State of a target (kept while its breaker settings stay the same).
    pub fn target(&self, provider: &str, model: &str, breaker: BreakerConfig) -> Arc<TargetState> {
        self.targets.get_or(
            (provider.to_owned(), model.to_owned()),
            |t| t.breaker.config() == breaker,
            || TargetState::new(breaker),
        )
    }

    /// State of a provider.
    pub fn provider(&self, name: &str, breaker: BreakerConfig, budget: BudgetConfig) -> Arc<ProviderState> {
        self.providers.get_or(
            name.to_owned(),
            |p| p.breaker.config() == breaker && p.budget.config() == budget,
            || ProviderState {
                breaker: Breaker::new(breaker),
                spread: Spread::default(),
                budget: RetryBudget::new(budget),
                direct: DirectTargets::default(),
            },
        )
    }

    /// State of a route with `targets` targets.
    pub fn route(&self, name: &str, targets: usize, budget: BudgetConfig) -> Arc<RouteState> {
        self.routes.get_or(
            name.to_owned(),
            |r| r.budget.config() == budget && r.swrr.lock().is_ok_and(|w| w.len() == targets),
            || RouteState {
                rr: AtomicUsize::new(0),
                swrr: Mutex::new(vec![0; targets]),
                budget: RetryBudget::new(budget),
            },
        )
    }

    /// A named concurrency limit (kept while its capacity stays the same).
    pub fn limit(&self, name: &str, shape: Shape) -> Arc<Limit> {
        self.limits.get_or(name.to_owned(), |l| l.shape() == shape, || Limit::new(shape))
    }

    /// Starts tracking which state a snapshot build uses.
    pub fn begin_build(&self) {
        self.keys.begin();
        self.targets.begin();
        self.providers.begin();
        self.routes.begin();
        self.limits.begin();
    }

    /// The new snapshot is live: drops the state of everything it no longer has.
    pub fn commit_build(&self) {
        self.keys.commit();
        self.targets.commit();
        self.providers.commit();
        self.routes.commit();
        self.limits.commit();
    }

    /// The build failed: keeps everything.
    pub fn abort_build(&self) {
        self.keys.abort();
        self.targets.abort();
        self.providers.abort();
        self.routes.abort();
        self.limits.abort();
    }

    /// The state of a key, if the current config has it (never creates).
    pub fn existing_key(&self, provider: &str, key: &str) -> Option<Arc<KeyState>> {
        self.keys.get(&(provider.to_owned(), key.to_owned()))
    }

    /// The state of a target, if the current config has it.
    pub fn existing_target(&self, provider: &str, model: &str) -> Option<Arc<TargetState>> {
        self.targets.get(&(provider.to_owned(), model.to_owned()))
    }

    /// The state of a provider, if the current config has it.
    pub fn existing_provider(&self, name: &str) -> Option<Arc<ProviderState>> {
        self.providers.get(&name.to_owned())
    }

    /// Every target's state, for the admin view and tests.
    pub fn targets(&self) -> Vec<((String, String), Arc<TargetState>)> {
        self.targets.entries()
    }

    /// Clears every breaker and cooldown (admin reset).
    pub fn reset(&self) {
        for (_, t) in self.targets.entries() {
            t.breaker.reset();
            t.cooldown.clear();
        }
        for (_, p) in self.providers.entries() {
            p.breaker.reset();
            p.spread.clear();
            p.direct.clear();
        }
        for (_, k) in self.keys.entries() {
            k.cooldown.clear();
            k.models.clear();
            k.headroom.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound (the adversarial test `made_up_direct_models_rest_on_their_own_within_a_bound`
    /// shows the old single shared state failing).
    #[test]
    fn made_up_direct_models_get_their_own_state_within_a_bound() {
        let (d, cfg, now) = (DirectTargets::default(), BreakerConfig::default(), 1);
        let a = d.get("a", cfg, now).unwrap();
        a.cooldown.cool_for(now, std::time::Duration::from_secs(60));
        assert!(!d.get("b", cfg, now).unwrap().cooldown.is_cooling(now), "b rests with a");
        assert!(Arc::ptr_eq(&a, &d.get("a", cfg, now).unwrap()));
        drop(a);
        // Many names: quiet states are dropped, the map never passes its bound, and what still
        // says something (a's cooldown) is kept.
        for i in 0..10 * DIRECT_MODELS {
            assert!(d.get(&format!("m{i}"), cfg, now).is_some());
            assert!(d.len() <= DIRECT_MODELS);
        }
        assert!(d.get("a", cfg, now).unwrap().cooldown.is_cooling(now));
        // Full of states that all say something: a new name gets none (the caller shares).
        let held: Vec<_> = (0..DIRECT_MODELS).map(|i| d.get(&format!("h{i}"), cfg, now)).collect();
        assert!(held.iter().filter(|h| h.is_some()).count() >= DIRECT_MODELS - 1);
        assert!(d.get("new", cfg, now).is_none());
        assert_eq!(d.len(), DIRECT_MODELS);
    }

    #[test]
    fn a_build_keeps_what_it_touched_and_drops_the_rest() {
        let r = Registry::default();
        let cfg = BreakerConfig::default();
        r.begin_build();
        let kept = r.target("p", "kept", cfg);
        let _gone = r.target("p", "gone", cfg);
        r.commit_build();
        kept.cooldown.cool_for(r.clock.now(), std::time::Duration::from_secs(60));
        // The next config keeps "kept" only.
        r.begin_build();
        let again = r.target("p", "kept", cfg);
        r.commit_build();
        assert!(Arc::ptr_eq(&kept, &again), "state of a kept target was replaced");
        assert!(again.cooldown.is_cooling(r.clock.now()));
        let names: Vec<String> = r.targets().into_iter().map(|((_, m), _)| m).collect();
        assert_eq!(names, ["kept"]);
        // A failed build drops nothing.
        r.begin_build();
        r.abort_build();
        assert_eq!(r.targets().len(), 1);
        // Changed breaker settings make a fresh breaker.
        r.begin_build();
        let fresh = r.target("p", "kept", BreakerConfig { failure_threshold: 9, ..cfg });
        r.commit_build();
        assert!(!Arc::ptr_eq(&kept, &fresh));
    }
}
