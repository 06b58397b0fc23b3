//! The one immutable snapshot a request uses from start to end ([`Live`]), behind one `ArcSwap`
//! ([`Snapshot`]). Everything derived from config lives here: routing table, providers with
//! their connection pools, inbound keys, the redactor and the pre-rendered `/v1/models` body.
//! This module is the only place that touches the `ArcSwap`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::config::{Config, FrontConfig, Redactor, ReloadConfig, ResilienceConfig, Secret, ServerConfig};
use crate::providers::{self, Provider};
use crate::resilience::Registry;
use crate::routing::{RoutingTable, is_glob};
use crate::upstream::Pools;

/// Everything a request needs from config.
pub(crate) struct Live {
    /// `[server]` settings.
    pub server: ServerConfig,
    /// Model name → route or provider.
    pub table: RoutingTable,
    /// Providers, indexed as in the config.
    pub providers: Vec<Provider>,
    /// Inbound bearer tokens (empty: open).
    pub api_keys: Vec<Secret>,
    /// Scrubs configured secrets from passed-through bodies.
    pub redactor: Redactor,
    /// The `/v1/models` answer, rendered once.
    pub models_body: Bytes,
    /// Breaker, cooldown, budget and default retry settings.
    pub resilience: ResilienceConfig,
    /// How config changes are picked up.
    pub reload: ReloadConfig,
    /// Fraction of successful requests in the access log.
    pub log_sample: f64,
    /// `[observability] server_timing`: `Server-Timing` on proxied answers.
    pub server_timing: bool,
    /// Rate limits.
    pub limits: crate::ratelimit::Limits,
    /// `[front]`: where the manifest task fetches from, read before each fetch.
    pub front: FrontConfig,
}

impl Live {
    /// Builds a snapshot; runtime state comes from (and stays in) `registry`, each provider's
    /// client from `pools`.
    pub(crate) fn build(
        config: &Config,
        registry: &Registry,
        pools: &Pools,
    ) -> Result<Self, providers::BuildError> {
        let providers = config
            .providers
            .iter()
            .map(|p| Provider::build(p, config, registry, pools))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            server: config.server.clone(),
            resilience: config.resilience.clone(),
            reload: config.reload.clone(),
            front: config.front.clone(),
            log_sample: config.log.sample,
            server_timing: config.observability.server_timing,
            limits: crate::ratelimit::Limits::new(&config.limits).with_budgets(&config.budgets),
            table: RoutingTable::new(config, registry),
            providers,
            api_keys: config.server.api_keys.clone(),
            redactor: Redactor::new(config.secrets()),
            models_body: models_body(config),
        })
    }
}

/// Every model a client may ask for, in OpenAI list shape: route names and their literal model
/// names, then `provider/model` for every target and every provider catalog entry.
fn models_body(config: &Config) -> Bytes {
    let created =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut seen = std::collections::HashSet::new();
    let mut data = Vec::new();
    let mut add = |id: String, owner: &str| {
        if seen.insert(id.clone()) {
            data.push(
                serde_json::json!({"id": id, "object": "model", "created": created, "owned_by": owner}),
            );
        }
    };
    for r in &config.routes {
        let owner = r
            .targets
            .first()
            .and_then(|t| config.providers.get(t.provider))
            .map_or("tier1", |p| p.name.as_str());
        add(r.name.clone(), owner);
        for m in r.models.iter().filter(|m| !is_glob(m)) {
            add(m.clone(), owner);
        }
    }
    for r in &config.routes {
        for t in &r.targets {
            if let Some(p) = config.providers.get(t.provider) {
                add(format!("{}/{}", p.name, t.model), &p.name);
            }
        }
    }
    for p in &config.providers {
        for m in &p.models {
            add(format!("{}/{m}", p.name), &p.name);
        }
    }
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}

/// The swappable holder of the current [`Live`], and the connection pools its snapshots share.
pub(crate) struct Snapshot {
    live: ArcSwap<Live>,
    pools: Pools,
}

impl Snapshot {
    /// The first snapshot, of `config`, with its runtime state registered in `registry`.
    pub(crate) fn build(config: &Config, registry: &Registry) -> Result<Self, providers::BuildError> {
        let pools = Pools::default();
        let live = prepare(config, registry, &pools)?;
        let snapshot = Self { live: ArcSwap::from_pointee(live), pools };
        commit(registry, &snapshot.pools);
        Ok(snapshot)
    }

    /// Swaps in a snapshot of `config` (a reload). A config that cannot be built leaves the
    /// running snapshot, `registry` and the pools as they were.
    pub(crate) fn rebuild(&self, config: &Config, registry: &Registry) -> Result<(), providers::BuildError> {
        let live = prepare(config, registry, &self.pools)?;
        self.live.store(Arc::new(live));
        // Only now may state the old snapshot held and the new one does not be dropped.
        commit(registry, &self.pools);
        Ok(())
    }

    /// The current snapshot; a request calls this once and keeps the `Arc` to its end.
    pub(crate) fn load(&self) -> Arc<Live> {
        self.live.load_full()
    }
}

/// Builds a snapshot of `config` within a registry and pools build, aborted if the snapshot
/// fails.
fn prepare(config: &Config, registry: &Registry, pools: &Pools) -> Result<Live, providers::BuildError> {
    registry.begin_build();
    pools.begin_build();
    Live::build(config, registry, pools).inspect_err(|_| {
        registry.abort_build();
        pools.abort_build();
    })
}

/// The prepared snapshot is live: drops the state and pools it no longer uses.
fn commit(registry: &Registry, pools: &Pools) {
    registry.commit_build();
    pools.commit_build();
}
