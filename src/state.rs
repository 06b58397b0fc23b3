//! The state every connection and background task shares, built once at start ([`crate::serve`]).
//! Background tasks take narrow handles on it, not the whole: the reloader a
//! [`crate::reload::Reloadable`], the Redis tasks a [`crate::shared::Handles`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::metrics::Metrics;
use crate::resilience::Registry;
use crate::snapshot::Snapshot;

/// State shared by every connection.
pub(crate) struct AppState {
    /// The current config snapshot.
    pub live: Snapshot,
    /// The metrics registry and handles.
    pub metrics: Arc<Metrics>,
    /// Set at the start of shutdown: `/readyz` turns 503.
    pub draining: AtomicBool,
    /// Breakers, cooldowns and the rest of the runtime state, by stable identity.
    pub registry: Arc<Registry>,
    /// Config reloads.
    pub reloader: Arc<crate::reload::Reloader>,
    /// Whether a separate admin listener runs (then the main one does not serve admin routes).
    pub separate_admin: bool,
    /// Rate-limit counters (outside the snapshot: they survive reloads).
    pub ratelimit: Arc<crate::ratelimit::Limiter>,
    /// Shared state across replicas.
    pub shared: Arc<crate::shared::Shared>,
    /// `server.max_inflight`: API requests in flight (a permit lasts to the end of the response).
    pub inflight_limit: Option<Arc<crate::resilience::Limit>>,
    /// The main listener's TLS config, rotated live (`None`: plain HTTP).
    pub tls: Option<Arc<crate::tls::Acceptor>>,
    /// The front's provider manifest, last good copy (outside the snapshot: reloads keep it).
    pub manifest: Arc<crate::manifest::Manifest>,
    /// Requests held for a cooldown now (`[resilience] wait_for_cooldown`), against
    /// `max_cooldown_waiters`.
    pub cooldown_waiters: std::sync::atomic::AtomicUsize,
    /// The tracer, with `[observability.otlp]` (`None`: traces off, nothing on the request path).
    pub otel: Option<Arc<crate::otel::Otel>>,
}

impl crate::reload::Reloadable for AppState {
    fn target(&self) -> crate::reload::Target<'_> {
        crate::reload::Target { live: &self.live, registry: &self.registry, metrics: &self.metrics }
    }
}

impl AppState {
    /// The Redis tasks' handle.
    pub(crate) fn shared_handles(&self) -> crate::shared::Handles {
        crate::shared::Handles {
            metrics: self.metrics.clone(),
            shared: self.shared.clone(),
            ratelimit: self.ratelimit.clone(),
            registry: self.registry.clone(),
        }
    }
}
