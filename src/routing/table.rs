//! The immutable routing table, built once per config snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::affinity::RouteAffinity;
use super::glob::{Glob, is_glob};
use super::strategy::Strategy;
use crate::config::Config;
use crate::resilience::{Registry, RetryPolicy, RouteState, TargetState};

/// Index of a route in [`RoutingTable::routes`].
pub(super) type RouteId = usize;

/// A route: a name, its targets, and how to use them.
#[derive(Debug, Clone)]
pub struct Route {
    /// The configured name (a bounded metric label).
    pub name: Arc<str>,
    /// Targets in config order.
    pub targets: Vec<Target>,
    /// How targets are ordered per request.
    pub strategy: Strategy,
    /// Tries per target and backoff.
    pub retry: RetryPolicy,
    /// Parallel attempt after this long without a first byte.
    pub hedge_after: Option<Duration>,
    /// Continue a broken committed stream elsewhere.
    pub stream_resume: bool,
    /// The first-token deadline of its targets, over their providers' own.
    pub first_token_timeout: Option<crate::config::FirstTokenTimeout>,
    /// How long a request whose every candidate rests may wait for one (zero: never).
    pub wait_for_cooldown: Duration,
    /// Prompt-cache affinity: its session source, load bound and choices (`None`: off).
    pub(crate) affinity: Option<Arc<RouteAffinity>>,
    /// Round-robin position, weights, retry budget.
    pub state: Arc<RouteState>,
}

/// One target: a provider and the model name it is sent.
#[derive(Debug, Clone)]
pub struct Target {
    /// Index into the snapshot's providers.
    pub provider: usize,
    /// Upstream model name.
    pub model: Arc<str>,
    /// Weight for the `weighted` strategy.
    pub weight: u32,
    /// USD per million input tokens.
    pub input_cost: f64,
    /// USD per million output tokens.
    pub output_cost: f64,
    /// Azure deployment (default: the model).
    pub deployment: Arc<str>,
    /// Context window in tokens, if configured.
    pub context_window: Option<u64>,
    /// Breaker, cooldown, latency, in-flight count.
    pub state: Arc<TargetState>,
}

impl Target {
    /// Ordering key of the `cost` strategy.
    pub fn cost(&self) -> f64 {
        self.input_cost + self.output_cost
    }
}

/// What a model name resolved to.
#[derive(Debug, Clone, Copy)]
pub enum Resolved<'a> {
    /// A configured route.
    Route(&'a Route),
    /// `provider/model`: that provider, with the model part as written by the client.
    Direct {
        /// Index of the provider.
        provider: usize,
        /// Upstream model name (the part after the first `/`).
        model: &'a str,
    },
}

/// Model name → route or provider.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    routes: Vec<Route>,
    exact: HashMap<Box<str>, RouteId>,
    /// Most specific first; ties keep config order (the sort is stable).
    globs: Vec<(Glob, RouteId)>,
    providers: HashMap<Box<str>, usize>,
}

impl RoutingTable {
    /// Builds the table from a validated config, taking each target's state from `registry`.
    pub fn new(config: &Config, registry: &Registry) -> Self {
        let mut exact = HashMap::new();
        let mut globs = Vec::new();
        let breaker = config.resilience.breaker;
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(id, r)| {
                exact.entry(Box::from(r.name.as_str())).or_insert(id);
                for m in &r.models {
                    if is_glob(m) {
                        globs.push((Glob::new(m), id));
                    } else {
                        exact.entry(Box::from(m.as_str())).or_insert(id);
                    }
                }
                let targets = r
                    .targets
                    .iter()
                    .map(|t| {
                        let provider = config.providers.get(t.provider).map_or("", |p| p.name.as_str());
                        Target {
                            provider: t.provider,
                            model: Arc::from(t.model.as_str()),
                            weight: t.weight,
                            input_cost: t.input_cost,
                            output_cost: t.output_cost,
                            deployment: Arc::from(t.deployment.as_deref().unwrap_or(&t.model)),
                            context_window: t.context_window,
                            state: registry.target(provider, &t.model, breaker),
                        }
                    })
                    .collect::<Vec<_>>();
                Route {
                    name: Arc::from(r.name.as_str()),
                    state: registry.route(&r.name, targets.len(), config.resilience.retry_budget),
                    targets,
                    strategy: r.strategy,
                    retry: r.retry,
                    hedge_after: r.hedge_after,
                    stream_resume: r.stream_resume,
                    first_token_timeout: r.first_token_timeout,
                    wait_for_cooldown: r.wait_for_cooldown,
                    affinity: r.affinity.as_ref().map(|a| Arc::new(RouteAffinity::new(config, id, a))),
                }
            })
            .collect();
        globs.sort_by_key(|(g, _)| std::cmp::Reverse(g.specificity()));
        let providers =
            config.providers.iter().enumerate().map(|(i, p)| (Box::from(p.name.as_str()), i)).collect();
        Self { routes, exact, globs, providers }
    }

    /// Resolves a client-facing model name.
    pub fn resolve<'a>(&'a self, model: &'a str) -> Option<Resolved<'a>> {
        if let Some(&id) = self.exact.get(model) {
            return self.routes.get(id).map(Resolved::Route);
        }
        if let Some((_, id)) = self.globs.iter().find(|(g, _)| g.matches(model)) {
            return self.routes.get(*id).map(Resolved::Route);
        }
        let (provider, rest) = model.split_once('/')?;
        let &provider = self.providers.get(provider)?;
        (!rest.is_empty()).then_some(Resolved::Direct { provider, model: rest })
    }

    /// The index of the provider named `name`.
    pub fn provider(&self, name: &str) -> Option<usize> {
        self.providers.get(name).copied()
    }

    /// All routes, in config order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}
