//! The inbound side: accept loop and drain ([`server`]), endpoint dispatch and the single error
//! mapping site ([`handler`]), the forwarding steps ([`forward`]), headers and bodies.

pub mod attempt;
pub mod body;
pub mod ctx;
pub mod forward;
pub mod handler;
pub mod headers;
pub mod relay;
pub mod respond;
pub mod server;
pub mod sse;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::metrics::Metrics;
use crate::resilience::Registry;
use crate::snapshot::Snapshot;

/// State shared by every connection.
pub struct AppState {
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
    /// Replica ids alive at the last heartbeat.
    pub fleet_members: std::sync::Mutex<Vec<String>>,
    /// `server.max_inflight`: API requests in flight (a permit lasts to the end of the response).
    pub inflight_limit: Option<Arc<tokio::sync::Semaphore>>,
    /// The main listener's TLS config, rotated live (`None`: plain HTTP).
    pub tls: Option<Arc<crate::tls::Acceptor>>,
}
