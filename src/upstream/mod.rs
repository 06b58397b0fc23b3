//! The upstream HTTP client: its own small pool over tokio and rustls (ring), with the web PKI
//! roots built in plus an optional per-provider CA bundle. HTTP/1.1 exchanges run on the
//! request's task ([`h1`]); HTTP/2, when TLS negotiates it, goes through hyper's connection.

mod connect;
mod h1;
mod pool;
mod pools;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::config::ProviderConfig;
pub(crate) use connect::ConnectError;
use connect::Connector;
#[doc(hidden)]
pub use h1::decode as decode_answer;
use pool::{Checkout, Dial, Origin, Shared};
pub(crate) use pools::Pools;

/// A provider's client: cheap to clone, and clones share the pool.
#[derive(Clone)]
pub(crate) struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// Why an exchange failed before the answer's head arrived.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No connection could be opened (resolve, TCP connect, TLS or HTTP/2 handshake).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection broke, or the answer was not HTTP.
    #[error("request failed: {0}")]
    Failed(String),
}

impl Client {
    /// A client over `connector`, keeping at most `max_idle` idle HTTP/1.1 connections per
    /// origin, each for at most `idle_timeout`.
    fn new(connector: Connector, max_idle: usize, idle_timeout: Duration) -> Self {
        Self::with_h2_streams(connector, max_idle, idle_timeout, pool::H2_STREAMS)
    }

    fn with_h2_streams(
        connector: Connector,
        max_idle: usize,
        idle_timeout: Duration,
        streams: usize,
    ) -> Self {
        Self { shared: Arc::new(Shared::new(connector, max_idle, idle_timeout, streams)) }
    }

    /// A plain-HTTP client that keeps no idle connection (the command line's health checks).
    pub(crate) fn plain(connect_timeout: Duration) -> Self {
        Self::new(Connector::new(None, connect_timeout), 0, Duration::ZERO)
    }

    /// A client for `http` and `https` (the web PKI roots, no client certificate) that keeps no
    /// idle connection: tier1's own background fetches (the front's manifest). Without a usable
    /// TLS setup it is [`Self::plain`], and `https` fails to connect.
    pub(crate) fn web(connect_timeout: Duration) -> Self {
        Self::web_keeping(connect_timeout, 0)
    }

    /// [`Self::web`] keeping up to `max_idle` idle connections per origin for 90 s (the OTLP
    /// exporter's, which posts every few seconds).
    pub(crate) fn web_keeping(connect_timeout: Duration, max_idle: usize) -> Self {
        let idle = if max_idle == 0 { Duration::ZERO } else { Duration::from_secs(90) };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        match rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
        {
            Ok(b) => {
                let tls = b.with_root_certificates(roots).with_no_client_auth();
                Self::new(Connector::new(Some(tls), connect_timeout), max_idle, idle)
            }
            Err(_) => Self::new(Connector::new(None, connect_timeout), max_idle, idle),
        }
    }

    /// Sends `req` (absolute URI) and waits for the answer's head.
    ///
    /// A request goes again only where the provider cannot have begun on it: one that held a
    /// request and then closed must not get it twice (it may be a paid one). A pooled HTTP/1.1
    /// connection the provider closed while idle fails while the request is written or just after
    /// ([`h1::Error::unread`]): the request goes again, at most twice on pooled connections, then
    /// on a new one. An HTTP/2 stream the provider refused or did not process ([`unprocessed`])
    /// goes again once, on whichever connection the pool gives next.
    pub(crate) async fn send(&self, req: Request<Bytes>) -> Result<Response<Body>, Error> {
        let (parts, body) = req.into_parts();
        let (mut stale, mut refused) = (0, false);
        loop {
            match self.connection(&parts.uri, stale < 2).await? {
                Connection::H2(sender, stream) => match h2(sender, stream, &parts, &body).await {
                    Err(e) if !refused && unprocessed(&e).is_some() => {
                        tracing::debug!(error = %e, "HTTP/2 stream not processed upstream: sent again");
                        refused = true;
                    }
                    other => return other.map_err(failed),
                },
                Connection::H1(conn, reused) => {
                    match h1::send(conn, &parts, &body, Arc::downgrade(&self.shared)).await {
                        Err(e) if reused && e.unread() => stale += 1,
                        other => return other.map(|r| r.map(Body::H1)).map_err(failed),
                    }
                }
            }
        }
    }

    /// A connection for `uri`: a shared HTTP/2 one, an idle HTTP/1.1 one (when `pooled`), or a
    /// new one.
    async fn connection(&self, uri: &http::Uri, pooled: bool) -> Result<Connection, Error> {
        let dial = loop {
            match self.shared.checkout(uri) {
                Some(Checkout::H2(sender, stream)) => return Ok(Connection::H2(sender, stream)),
                Some(Checkout::H1(conn)) if pooled => return Ok(Connection::H1(conn, true)),
                Some(Checkout::H1(_)) | None => {}
            }
            match self.shared.dial(uri) {
                Dial::Alone => break None,
                Dial::First(guard) => break Some(guard),
                Dial::Wait(done) => {
                    let woken = done.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    if self.shared.dialing(uri) {
                        woken.await;
                    }
                }
            }
        };
        let io = self.shared.connector.connect(uri).await?;
        let origin = Arc::new(Origin::of(uri));
        let (host, port) = (uri.host().unwrap_or_default(), uri.port_u16());
        tracing::debug!(host, port, h2 = io.is_h2(), "upstream connection opened");
        if !io.is_h2() {
            return Ok(Connection::H1(h1::Conn::new(io, origin), false));
        }
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| ConnectError::Tls(std::io::Error::other(e)))?;
        tokio::spawn(conn);
        let stream = self.shared.put_h2(origin, sender.clone());
        if let Some(dial) = dial {
            dial.h2();
        }
        Ok(Connection::H2(sender, stream))
    }
}

/// What a request is sent on.
enum Connection {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>, pool::Stream),
    /// With whether it was reused from the pool.
    H1(h1::Conn, bool),
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Failed(e.to_string())
}

/// How the provider says it did not process an HTTP/2 request (RFC 9113 8.7), so that sending
/// it again cannot make it twice.
#[derive(Debug, PartialEq, Eq)]
enum Unprocessed {
    /// It reset the stream with `REFUSED_STREAM`; the connection may take others.
    Refused,
    /// The connection takes no new stream: it closed before the request left hyper, or the
    /// provider's GOAWAY named a last stream below this one.
    Gone,
}

/// Whether (and how) `e` says the provider did not process the request. h2 gives a remote
/// GOAWAY error exactly to the streams above the GOAWAY's last stream and to those opened after
/// it; a stream the provider took and then lost ends in a broken pipe or another reset, and is
/// not sent again.
fn unprocessed(e: &hyper::Error) -> Option<Unprocessed> {
    if e.is_canceled() || e.is_closed() {
        return Some(Unprocessed::Gone);
    }
    let h2 = std::error::Error::source(e)?.downcast_ref::<h2::Error>()?;
    match (h2.is_remote(), h2.is_go_away(), h2.reason()) {
        (true, true, _) => Some(Unprocessed::Gone),
        (true, false, Some(h2::Reason::REFUSED_STREAM)) if h2.is_reset() => Some(Unprocessed::Refused),
        _ => None,
    }
}

/// Sends one request on an HTTP/2 connection. `parts` are cloned (a few reference counts and the
/// header map) because hyper takes the request and a refused one may go again. A connection
/// found going away is retired from the pool at once, so that the request sent again (and any
/// other) does not meet it before hyper's sender reports it closed.
async fn h2(
    mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    stream: pool::Stream,
    parts: &http::request::Parts,
    body: &Bytes,
) -> Result<Response<Body>, hyper::Error> {
    let req = Request::from_parts(parts.clone(), Full::new(body.clone()));
    let sent = match sender.ready().await {
        Ok(()) => sender.send_request(req).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(resp) => Ok(resp.map(|b| Body::H2(b, stream))),
        Err(e) => {
            if unprocessed(&e) == Some(Unprocessed::Gone) {
                stream.retire();
            }
            Err(e)
        }
    }
}

/// An answer's body.
pub(crate) enum Body {
    /// Read from an HTTP/1.1 connection by whoever polls it.
    H1(h1::Body),
    /// From hyper's HTTP/2 connection, holding its place there until dropped.
    H2(Incoming, #[expect(dead_code, reason = "never read: held for its drop")] pool::Stream),
}

/// Why a body stopped early (the source error, not formatted unless someone displays it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Reading or decoding an HTTP/1.1 body.
    #[error("upstream body failed: {0}")]
    H1(#[from] h1::Error),
    /// hyper's HTTP/2 stream.
    #[error("upstream body failed: {0}")]
    H2(#[from] hyper::Error),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::H1(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
            Self::H2(b, _) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::H1(b) => b.is_end_stream(),
            Self::H2(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::H1(b) => b.size_hint(),
            Self::H2(b, _) => b.size_hint(),
        }
    }
}

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
fn settings(p: &ProviderConfig) -> String {
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
fn build(p: &ProviderConfig) -> Result<Client, BuildError> {
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
    Ok(Client::new(Connector::new(Some(tls), p.connect_timeout), p.max_idle_connections, p.pool_idle_timeout))
}

#[cfg(test)]
mod tests;
