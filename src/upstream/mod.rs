//! The upstream HTTP client: hyper-util's pooled client over rustls (ring), with the web PKI
//! roots built in plus an optional per-provider CA bundle, HTTP/1.1 keep-alive, and HTTP/2 where
//! the server offers it through ALPN.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::ProviderConfig;

/// The pooled client type every HTTP provider uses.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The CA bundle could not be read or parsed.
    #[error("providers.{provider}.ca_file: {message}")]
    CaFile {
        /// Provider name.
        provider: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("providers.{provider}: TLS setup failed: {source}")]
    Tls {
        /// Provider name.
        provider: String,
        /// The rustls error.
        source: rustls::Error,
    },
}

/// Everything a provider's client is built from, rendered as one string: a client (and its warm
/// connections) is reused across reloads while this stays the same. The CA bundle is included by
/// content, so rotating the file rebuilds the client.
pub fn settings(p: &ProviderConfig) -> String {
    let ca = p.ca_file.as_ref().map(|f| {
        let bytes = std::fs::read(f).unwrap_or_default();
        let hash = bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        format!("{}#{hash:016x}", f.display())
    });
    format!(
        "{:?}|{:?}|{:?}|{}|{:?}",
        p.base_url.as_ref().map(ToString::to_string),
        p.connect_timeout,
        p.pool_idle_timeout,
        p.max_idle_connections,
        ca
    )
}

/// Builds the client for one provider.
pub fn build(p: &ProviderConfig) -> Result<HttpClient, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &p.ca_file {
        use rustls_pki_types::pem::PemObject;
        let err = |message: String| BuildError::CaFile { provider: p.name.clone(), message };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| err(format!("invalid PEM in {}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| err(format!("invalid certificate in {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(err(format!("no certificate in {}", path.display())));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|source| BuildError::Tls { provider: p.name.clone(), source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(p.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(30)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(p.pool_idle_timeout)
        .pool_max_idle_per_host(p.max_idle_connections)
        .build(https))
}
