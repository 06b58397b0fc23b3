//! TLS material: PEM loading shared by the listener and the upstream clients, the listener's
//! server config (HTTP/2 by ALPN, optional client certificates), and its rotation without a
//! restart: a watcher re-reads the files when their content changes and swaps the config that
//! new handshakes use; connections already open keep theirs.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::metrics::Metrics;

/// Why TLS material could not be used. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no valid PEM.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the material (unsupported key, key not matching the certificate, ...).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA bundle cannot verify client certificates.
    #[error("client_ca: {0}")]
    ClientCa(String),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File { path: path.to_owned(), message: message.to_string() }
}

/// The ring provider, the only one tier1 builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file; an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, format!("no usable private key: {e}")))
}

/// A certificate chain with its key, checked to belong together (a rotation that has written the
/// new certificate but not yet the new key is refused rather than served).
pub fn certified_key(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let signing = provider().key_provider.load_private_key(key.clone_key())?;
    CertifiedKey::new(certs.clone(), signing).keys_match()?;
    Ok((certs, key))
}

/// A hash of the files' contents (an unreadable file hashes as its error), to notice rotation
/// whether the file was rewritten in place or swapped through a symlink.
pub fn fingerprint<'a>(paths: impl IntoIterator<Item = &'a Path>) -> u64 {
    let mut h = DefaultHasher::new();
    for path in paths {
        match std::fs::read(path) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

/// The listener's server config: the certificate, client verification when `client_ca` is set,
/// and ALPN offering h2 then http/1.1.
pub fn server_config(tls: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let (certs, key) = certified_key(&tls.cert, &tls.key)?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, format!("invalid CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The listener's current server config, replaced when the files rotate.
pub struct Acceptor {
    files: TlsConfig,
    current: ArcSwap<ServerConfig>,
    seen: AtomicU64,
}

impl Acceptor {
    /// Loads the files once; an error here stops the start.
    pub fn new(files: TlsConfig) -> Result<Self, TlsError> {
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
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Re-reads the files if their content changed: `None` when unchanged, otherwise whether the
    /// new material went live. Invalid material leaves the old config serving; it is tried again
    /// at the next change.
    pub fn refresh(&self) -> Option<Result<(), TlsError>> {
        let now = fingerprint(Self::paths(&self.files));
        if self.seen.swap(now, Ordering::AcqRel) == now {
            return None;
        }
        Some(server_config(&self.files).map(|c| self.current.store(Arc::new(c))))
    }

    /// Checks for rotation every `reload_interval` until `stop` resolves.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
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
                    metrics.tls_reloads_total.with_label_values(&["ok"]).inc();
                    tracing::info!(cert = %self.files.cert.display(), "tls: rotated certificate is live");
                }
                Some(Err(e)) => {
                    metrics.tls_reloads_total.with_label_values(&["error"]).inc();
                    tracing::warn!(error = %e, "tls: rotated files refused, the previous certificate stays");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
