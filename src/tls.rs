//! The listener's TLS: its server config (HTTP/2 by ALPN, optional client certificates), and its
//! rotation without a restart: a watcher re-reads the files when their content changes and swaps
//! the config that new handshakes use; connections already open keep theirs. PEM loading is
//! [`crate::pem`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use crate::config::TlsConfig;
use crate::metrics::Metrics;

pub(crate) use crate::pem::{TlsError, certified_key, fingerprint, load_certs, provider};

/// The listener's server config (see [`crate::pem::server_config`]).
pub(crate) fn server_config(tls: &TlsConfig) -> Result<ServerConfig, TlsError> {
    crate::pem::server_config(&tls.cert, &tls.key, tls.client_ca.as_deref())
}

/// The listener's current server config, replaced when the files rotate.
pub(crate) struct Acceptor {
    files: TlsConfig,
    current: ArcSwap<ServerConfig>,
    seen: AtomicU64,
}

impl Acceptor {
    /// Loads the files once; an error here stops the start.
    pub(crate) fn new(files: TlsConfig) -> Result<Self, TlsError> {
        let seen = fingerprint(Self::paths(&files));
        let current = ArcSwap::from_pointee(server_config(&files)?);
        Ok(Self { files, current, seen: AtomicU64::new(seen) })
    }

    fn paths(files: &TlsConfig) -> impl Iterator<Item = &Path> {
        [Some(files.cert.as_path()), Some(files.key.as_path()), files.client_ca.as_deref()]
            .into_iter()
            .flatten()
    }

    /// The config for the next handshake.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Re-reads the files if their content changed: `None` when unchanged, otherwise whether the
    /// new material went live. Invalid material leaves the old config serving; it is tried again
    /// at the next change.
    pub(crate) fn refresh(&self) -> Option<Result<(), TlsError>> {
        let now = fingerprint(Self::paths(&self.files));
        if self.seen.swap(now, Ordering::AcqRel) == now {
            return None;
        }
        Some(server_config(&self.files).map(|c| self.current.store(Arc::new(c))))
    }

    /// Checks for rotation every `reload_interval` until `stop` resolves.
    pub(crate) async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
        if self.files.reload_interval.is_zero() {
            return;
        }
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.files.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            match self.refresh() {
                None => {}
                Some(Ok(())) => {
                    metrics.tls_reloads_total.get(crate::metrics::labels::Outcome { result: "ok" }).inc();
                    tracing::info!(cert = %self.files.cert.display(), "tls: rotated certificate is live");
                }
                Some(Err(e)) => {
                    metrics.tls_reloads_total.get(crate::metrics::labels::Outcome { result: "error" }).inc();
                    tracing::warn!(error = %e, "tls: rotated files refused, the previous certificate stays");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
    }

    fn files(cert: &str, key: &str) -> TlsConfig {
        TlsConfig {
            cert: fixture(cert),
            key: fixture(key),
            client_ca: None,
            reload_interval: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        assert!(server_config(&files("server-a.pem", "server-a-key.pem")).is_ok());
        let e = server_config(&files("server-a.pem", "server-b-key.pem")).unwrap_err();
        assert!(matches!(e, TlsError::Rustls(_)), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_never_its_content() {
        let e = server_config(&files("server-a-key.pem", "server-a-key.pem")).unwrap_err().to_string();
        assert!(e.contains("server-a-key.pem"), "{e}");
        assert!(!e.contains("PRIVATE KEY"), "{e}");
        let e = server_config(&files("missing.pem", "server-a-key.pem")).unwrap_err().to_string();
        assert!(e.contains("missing.pem") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn refresh_swaps_only_on_a_valid_change() {
        let dir = std::env::temp_dir().join(format!("tier1-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = |from: &str, to: &str| std::fs::copy(fixture(from), dir.join(to)).unwrap();
        copy("server-a.pem", "cert.pem");
        copy("server-a-key.pem", "key.pem");
        let files = TlsConfig {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            client_ca: None,
            reload_interval: std::time::Duration::from_secs(1),
        };
        let acceptor = Acceptor::new(files).unwrap();
        let first = acceptor.current();
        assert!(acceptor.refresh().is_none(), "unchanged files are not reloaded");
        // Half a rotation: the new certificate with the old key is refused, the old config stays.
        copy("server-b.pem", "cert.pem");
        assert!(matches!(acceptor.refresh(), Some(Err(_))));
        assert!(Arc::ptr_eq(&first, &acceptor.current()));
        copy("server-b-key.pem", "key.pem");
        assert!(matches!(acceptor.refresh(), Some(Ok(()))));
        assert!(!Arc::ptr_eq(&first, &acceptor.current()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
