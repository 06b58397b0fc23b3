//! The immutable routing table, built once per config snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use super::glob::{Glob, is_glob};
use crate::config::Config;

/// Index of a route in [`RoutingTable::routes`].
pub type RouteId = usize;

/// A route: a name and its targets in order.
#[derive(Debug, Clone)]
pub struct Route {
    /// The configured name (a bounded metric label).
    pub name: Arc<str>,
    /// Targets in order; the first is tried first.
    pub targets: Vec<Target>,
}

/// One target: a provider and the model name it is sent.
#[derive(Debug, Clone)]
pub struct Target {
    /// Index into the snapshot's providers.
    pub provider: usize,
    /// Upstream model name.
    pub model: Arc<str>,
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
    /// Builds the table from a validated config.
    pub fn new(config: &Config) -> Self {
        let mut exact = HashMap::new();
        let mut globs = Vec::new();
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
                    .map(|t| Target { provider: t.provider, model: Arc::from(t.model.as_str()) })
                    .collect();
                Route { name: Arc::from(r.name.as_str()), targets }
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

    /// All routes, in config order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}
