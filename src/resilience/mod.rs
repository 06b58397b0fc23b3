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
pub mod clock;
mod cooldown;
mod ewma;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use backoff::{RetryPolicy, parse_retry_after};
pub use breaker::{Admission, Breaker, BreakerConfig, BreakerState};
pub use budget::{BudgetConfig, RetryBudget};
pub use clock::Clock;
pub use cooldown::{Cooldown, CooldownConfig};
pub use ewma::Ewma;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// State of one provider key.
#[derive(Debug, Default)]
pub struct KeyState {
    /// Rate-limit / auth cooldown.
    pub cooldown: Cooldown,
    /// Requests in flight on this key.
    pub inflight: AtomicU32,
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
}

/// State of one provider.
#[derive(Debug)]
pub struct ProviderState {
    /// Per-provider breaker.
    pub breaker: Breaker,
    /// Retry budget of direct `provider/model` traffic.
    pub budget: RetryBudget,
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

/// A concurrency limit with a short queue; permits release on drop.
#[derive(Debug)]
pub struct Limit {
    sem: Arc<Semaphore>,
    capacity: u32,
}

impl Limit {
    /// A limit of `capacity` concurrent holders.
    pub fn new(capacity: u32) -> Self {
        Self { sem: Arc::new(Semaphore::new(capacity as usize)), capacity }
    }

    /// Its capacity.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Holders now.
    pub fn in_use(&self) -> u32 {
        self.capacity.saturating_sub(u32::try_from(self.sem.available_permits()).unwrap_or(u32::MAX))
    }

    /// A permit, waiting up to `queue` for one.
    pub async fn acquire(&self, queue: Duration) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Some(p);
        }
        if queue.is_zero() {
            return None;
        }
        tokio::time::timeout(queue, self.sem.clone().acquire_owned()).await.ok()?.ok()
    }
}

/// All resilience state, by stable identity. Touched when a snapshot is built, never per request.
#[derive(Debug, Default)]
pub struct Registry {
    /// The clock every gate reads.
    pub clock: Clock,
    keys: Mutex<HashMap<(String, String), Arc<KeyState>>>,
    targets: Mutex<HashMap<(String, String), Arc<TargetState>>>,
    providers: Mutex<HashMap<String, Arc<ProviderState>>>,
    routes: Mutex<HashMap<String, Arc<RouteState>>>,
    limits: Mutex<HashMap<String, Arc<Limit>>>,
}

impl Registry {
    /// State of a provider key.
    pub fn key(&self, provider: &str, key: &str) -> Arc<KeyState> {
        get_or(&self.keys, (provider.to_owned(), key.to_owned()), |_| true, KeyState::default)
    }

    /// State of a target (kept while its breaker settings stay the same).
    pub fn target(&self, provider: &str, model: &str, breaker: BreakerConfig) -> Arc<TargetState> {
        get_or(
            &self.targets,
            (provider.to_owned(), model.to_owned()),
            |t: &TargetState| t.breaker.config() == breaker,
            || TargetState {
                ewma: Ewma::default(),
                inflight: AtomicU32::new(0),
                breaker: Breaker::new(breaker),
                cooldown: Cooldown::default(),
            },
        )
    }

    /// State of a provider.
    pub fn provider(&self, name: &str, breaker: BreakerConfig, budget: BudgetConfig) -> Arc<ProviderState> {
        get_or(
            &self.providers,
            name.to_owned(),
            |p: &ProviderState| p.breaker.config() == breaker,
            || ProviderState { breaker: Breaker::new(breaker), budget: RetryBudget::new(budget) },
        )
    }

    /// State of a route with `targets` targets.
    pub fn route(&self, name: &str, targets: usize, budget: BudgetConfig) -> Arc<RouteState> {
        get_or(
            &self.routes,
            name.to_owned(),
            |r: &RouteState| r.swrr.lock().is_ok_and(|w| w.len() == targets),
            || RouteState {
                rr: AtomicUsize::new(0),
                swrr: Mutex::new(vec![0; targets]),
                budget: RetryBudget::new(budget),
            },
        )
    }

    /// A named concurrency limit (kept while its capacity stays the same).
    pub fn limit(&self, name: &str, capacity: u32) -> Arc<Limit> {
        get_or(&self.limits, name.to_owned(), |l: &Limit| l.capacity == capacity, || Limit::new(capacity))
    }

    /// Every breaker's and cooldown's identity, for the admin view.
    pub fn targets(&self) -> Vec<((String, String), Arc<TargetState>)> {
        self.targets
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Clears every breaker and cooldown (admin reset).
    pub fn reset(&self) {
        if let Ok(m) = self.targets.lock() {
            for t in m.values() {
                t.breaker.reset();
                t.cooldown.clear();
            }
        }
        if let Ok(m) = self.providers.lock() {
            m.values().for_each(|p| p.breaker.reset());
        }
        if let Ok(m) = self.keys.lock() {
            m.values().for_each(|k| k.cooldown.clear());
        }
    }
}

fn get_or<K: std::hash::Hash + Eq, V>(
    map: &Mutex<HashMap<K, Arc<V>>>,
    key: K,
    still_fits: impl Fn(&V) -> bool,
    make: impl FnOnce() -> V,
) -> Arc<V> {
    let Ok(mut m) = map.lock() else { return Arc::new(make()) };
    match m.get(&key) {
        Some(v) if still_fits(v) => v.clone(),
        _ => {
            let v = Arc::new(make());
            m.insert(key, v.clone());
            v
        }
    }
}
