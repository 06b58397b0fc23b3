//! Hot reload: prepare, then swap.
//!
//! A reload reads the file, validates it, and builds the complete new [`Live`] snapshot off the
//! hot path (providers whose connection settings did not change keep their pools; breakers,
//! cooldowns and latency averages are kept by name in the registry), then does one
//! `ArcSwap::store`. Requests in flight finish on the snapshot they loaded. Any error keeps the
//! last good snapshot, logs every problem with its key path, and shows in `/admin/config`.
//!
//! Triggers: the file watcher (content hash polled every `[reload] poll_interval`; reading through
//! the path follows a Kubernetes ConfigMap's atomically re-pointed symlink), SIGHUP, and
//! `POST /admin/reload`. Triggers that arrive while a reload runs are served by the next run, so
//! a burst of them costs one reload; a file whose content did not change swaps nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::{self, Config, Env, Format};
use crate::metrics::Metrics;
use crate::resilience::Registry;
use crate::snapshot::Snapshot;

/// Where the config came from.
#[derive(Clone)]
pub struct Source {
    /// The file (followed through symlinks on every read).
    pub path: PathBuf,
    /// Where `env:` secrets are read from.
    pub env: Arc<dyn Env + Send + Sync>,
    /// Addresses the command line set over the file's, applied to every version of it, so a
    /// reload neither moves them nor warns that they need a restart.
    pub overrides: Overrides,
}

/// Listener addresses given on the command line or in the environment (`--listen`,
/// `--probe-listen`): a deployment decides them whatever config file is mounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen` / `TIER1_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--probe-listen` / `TIER1_PROBE_LISTEN`.
    pub probe_listen: Option<SocketAddr>,
}

impl Overrides {
    /// Sets the overridden addresses in `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(a) = self.listen {
            config.server.listen = a;
        }
        if let Some(a) = self.probe_listen {
            config.server.probe_listen = Some(a);
        }
    }
}

/// The result of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A new snapshot is live.
    Applied {
        /// Content hash of the new config.
        hash: String,
    },
    /// The file did not change.
    Unchanged {
        /// Content hash of the config.
        hash: String,
    },
    /// The file is invalid; the old snapshot stays.
    Failed {
        /// Every problem, with its key path.
        errors: Vec<String>,
    },
    /// tier1 runs on its built-in config: there is no file to reload.
    NoFile,
}

impl Outcome {
    /// The `result` label of `tier1_config_reloads_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Applied { .. } => "ok",
            Self::Unchanged { .. } => "unchanged",
            Self::Failed { .. } | Self::NoFile => "error",
        }
    }
}

/// What `/admin/config` reports.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    /// The active config's text.
    pub text: String,
    /// Its format.
    pub format: Format,
    /// Its content hash.
    pub hash: String,
    /// When it went live.
    pub loaded_at: SystemTime,
    /// Problems of the last failed reload, until a reload succeeds.
    pub last_error: Option<Vec<String>>,
    /// The hash of a file that failed, so the watcher does not retry it every tick.
    failed_hash: Option<String>,
    /// Settings that need a restart, as the file had them at start.
    restart_only: String,
}

/// What a reload writes to: the snapshot it swaps, the registry the new snapshot's state comes
/// from, the metrics it counts in.
pub(crate) struct Target<'a> {
    /// The live snapshot.
    pub live: &'a Snapshot,
    /// Runtime state by stable identity.
    pub registry: &'a Registry,
    /// Reload and config metrics.
    pub metrics: &'a Metrics,
}

/// Whatever holds a [`Target`]: the running tier1's state, for the reload triggers (the admin
/// route, SIGHUP, the file watcher).
pub(crate) trait Reloadable: Send + Sync {
    /// The reload's target.
    fn target(&self) -> Target<'_>;
}

/// Runs reloads, one at a time.
pub(crate) struct Reloader {
    source: Option<Source>,
    status: Mutex<Status>,
    /// Triggers received so far.
    requested: AtomicU64,
    /// Serialises runs; holds the number of triggers the last run covered, and its outcome.
    run: tokio::sync::Mutex<(u64, Outcome)>,
    /// The addresses the listeners are bound to (main, separate admin), for the open-surface
    /// check: a reload cannot move them, and `--listen` may differ from the file.
    bound: std::sync::OnceLock<(SocketAddr, Option<SocketAddr>)>,
}

/// FNV-1a 64 of the config text, as 16 hex digits: a stable version id for logs and metrics.
pub(crate) fn hash(text: &str) -> String {
    let h =
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{h:016x}")
}

fn restart_only(c: &Config) -> String {
    let s = &c.server;
    let tls = s.tls.as_ref().map(|t| (&t.cert, &t.key, &t.client_ca, t.reload_interval));
    format!(
        "listen={} admin_listen={:?} probe_listen={:?} header_timeout={:?} max_connections={} max_inflight={:?} \
         max_header_bytes={} max_headers={} http2_max_concurrent_streams={} http2_idle_timeout={:?} reuse_port={} tls={tls:?}",
        s.listen,
        s.admin_listen,
        s.probe_listen,
        s.header_timeout,
        s.max_connections,
        s.max_inflight,
        s.max_header_bytes,
        s.max_headers,
        s.http2_max_concurrent_streams,
        s.http2_idle_timeout,
        s.reuse_port,
    )
}

impl Reloader {
    /// A reloader for a config loaded from `text`.
    pub(crate) fn new(source: Option<Source>, text: String, config: &Config) -> Self {
        let format = source.as_ref().map_or(Format::Toml, |s| Format::from_path(&s.path));
        let status = Status {
            hash: hash(&text),
            text,
            format,
            loaded_at: SystemTime::now(),
            last_error: None,
            failed_hash: None,
            restart_only: restart_only(config),
        };
        Self {
            source,
            status: Mutex::new(status),
            requested: AtomicU64::new(0),
            run: tokio::sync::Mutex::new((0, Outcome::NoFile)),
            bound: std::sync::OnceLock::new(),
        }
    }

    /// Records the bound listener addresses (once, at start).
    pub(crate) fn set_bound(&self, listen: SocketAddr, admin_listen: Option<SocketAddr>) {
        let _ = self.bound.set((listen, admin_listen));
    }

    /// The active config's status.
    pub(crate) fn status(&self) -> Option<Status> {
        self.status.lock().ok().map(|s| s.clone())
    }

    /// The config file, if any.
    pub(crate) fn source(&self) -> Option<&Source> {
        self.source.as_ref()
    }

    /// Reloads now (or joins a reload that starts after this call) and returns its outcome.
    pub(crate) async fn reload(&self, to: &dyn Reloadable) -> Outcome {
        let state = &to.target();
        let mine = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut run = self.run.lock().await;
        if run.0 >= mine {
            // A run that started after this trigger already covered it.
            return run.1.clone();
        }
        run.0 = self.requested.load(Ordering::Acquire);
        let outcome = self.reload_once(state);
        state.metrics.reloaded(outcome.label());
        run.1 = outcome.clone();
        outcome
    }

    fn reload_once(&self, state: &Target<'_>) -> Outcome {
        let Some(source) = &self.source else {
            tracing::warn!("reload requested, but tier1 runs on its built-in config: nothing to reload");
            return Outcome::NoFile;
        };
        let text = match std::fs::read_to_string(&source.path) {
            Ok(t) => t,
            Err(e) => {
                return self.failed(state, None, vec![format!("cannot read {}: {e}", source.path.display())]);
            }
        };
        let new_hash = hash(&text);
        if self.status.lock().is_ok_and(|s| s.hash == new_hash) {
            return Outcome::Unchanged { hash: new_hash };
        }
        let format = Format::from_path(&source.path);
        let mut config = match config::parse(&text, format, source.env.as_ref()) {
            Ok(c) => c,
            Err(errors) => {
                return self.failed(
                    state,
                    Some(new_hash),
                    errors.0.iter().map(ToString::to_string).collect(),
                );
            }
        };
        source.overrides.apply(&mut config);
        // An open API or admin surface on the bound addresses is refused like any invalid file:
        // the last good config (and its keys) stays.
        let bound = self.bound.get().copied().unwrap_or((config.server.listen, config.server.admin_listen));
        let open = config::open_surfaces(&config.server, bound.0, bound.1);
        if !open.is_empty() {
            return self.failed(state, Some(new_hash), open.iter().map(ToString::to_string).collect());
        }
        if let Err(e) = state.live.rebuild(&config, state.registry) {
            return self.failed(state, Some(new_hash), vec![e.to_string()]);
        }
        state.metrics.config_loaded(&new_hash);
        state.metrics.limits_configured(config.limits.iter().map(|l| &l.name));
        state.metrics.budgets_configured(&config.budgets);
        if let Ok(mut s) = self.status.lock() {
            let restart = restart_only(&config);
            if restart != s.restart_only {
                tracing::warn!(was = %s.restart_only, now = %restart, "these settings change only on restart; the rest is applied");
            }
            *s = Status {
                text,
                format,
                hash: new_hash.clone(),
                loaded_at: SystemTime::now(),
                last_error: None,
                failed_hash: None,
                restart_only: s.restart_only.clone(),
            };
        }
        crate::warn_if_open(&config.server, bound);
        tracing::info!(hash = %new_hash, "config reloaded");
        Outcome::Applied { hash: new_hash }
    }

    /// Records a refused reload. Errors may quote values from the file (a serde "invalid type:
    /// string ..." does), so the running config's secrets are redacted from them first.
    fn failed(&self, state: &Target<'_>, hash: Option<String>, errors: Vec<String>) -> Outcome {
        let live = state.live.load();
        let errors: Vec<String> = errors
            .iter()
            .map(|e| String::from_utf8_lossy(&live.redactor.redact(e.as_bytes())).into_owned())
            .collect();
        for e in &errors {
            tracing::error!(problem = %e, "config reload refused; the previous config stays active");
        }
        if let Ok(mut s) = self.status.lock() {
            s.last_error = Some(errors.clone());
            s.failed_hash = hash;
        }
        Outcome::Failed { errors }
    }

    /// Whether the file's current content differs from the active config and from the last
    /// refused one.
    fn file_changed(&self) -> bool {
        let Some(source) = &self.source else { return false };
        let Ok(text) = std::fs::read_to_string(&source.path) else { return false };
        let h = hash(&text);
        self.status.lock().is_ok_and(|s| s.hash != h && s.failed_hash.as_deref() != Some(h.as_str()))
    }

    /// Polls the file every `[reload] poll_interval` (read from the live snapshot, so a reload can
    /// change it) until `stop` turns true.
    pub(crate) async fn watch<R: Reloadable + 'static>(
        self: Arc<Self>,
        state: Arc<R>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let interval = state.target().live.load().reload.poll_interval;
            if interval.is_zero() {
                // Watching is off; wait for a stop (a reload through another trigger may turn it on,
                // checked again every minute).
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(60)) => continue,
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(interval) => {}
            }
            if self.file_changed() {
                self.reload(state.as_ref()).await;
            }
        }
    }
}
