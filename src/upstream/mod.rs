//! The upstream HTTP client: hyper-util's pooled client over rustls (ring), with the web PKI
//! roots built in plus an optional per-provider CA bundle, HTTP/1.1 keep-alive, and HTTP/2 where
//! the server offers it through ALPN.

use std::path::PathBuf;
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
    /// The client certificate or its key could not be loaded.
    #[error("providers.{provider}.client_cert: {message}")]
    ClientCert {
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
/// connections) is reused across reloads while this stays the same. The CA bundle and client
/// certificate are included by content, so rotating a file rebuilds the client at the next reload.
pub fn settings(p: &ProviderConfig) -> String {
    let files = p.ca_file.iter().chain(p.client_cert.iter().flat_map(|(c, k)| [c, k]));
    let paths: Vec<_> = files.clone().map(|f| f.display().to_string()).collect();
    let content = crate::tls::fingerprint(files.map(PathBuf::as_path));
    format!(
        "{:?}|{:?}|{:?}|{}|{paths:?}#{content:016x}",
        p.base_url.as_ref().map(ToString::to_string),
        p.connect_timeout,
        p.pool_idle_timeout,
        p.max_idle_connections,
    )
}

/// Builds the client for one provider.
pub fn build(p: &ProviderConfig) -> Result<HttpClient, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &p.ca_file {
        let err = |message: String| BuildError::CaFile { provider: p.name.clone(), message };
        for cert in crate::tls::load_certs(path).map_err(|e| err(e.to_string()))? {
            roots.add(cert).map_err(|e| err(format!("invalid certificate in {}: {e}", path.display())))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| BuildError::Tls { provider: p.name.clone(), source })?
        .with_root_certificates(roots);
    let tls = match &p.client_cert {
        None => tls.with_no_client_auth(),
        Some((cert, key)) => {
            let (certs, key) = crate::tls::certified_key(cert, key)
                .map_err(|e| BuildError::ClientCert { provider: p.name.clone(), message: e.to_string() })?;
            tls.with_client_auth_cert(certs, key)
                .map_err(|source| BuildError::Tls { provider: p.name.clone(), source })?
        }
    };
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
