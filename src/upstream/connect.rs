//! Opening a connection to a provider: resolve, TCP connect under the connect timeout (split
//! across the addresses), `TCP_NODELAY` and keep-alive probes, then TLS for `https` with ALPN
//! offering HTTP/2 and HTTP/1.1.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::Uri;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long an idle connection waits before the kernel probes it.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// A connection's byte stream.
pub(super) enum Io {
    /// `http://`.
    Plain(TcpStream),
    /// `https://` (boxed: the TLS state is large, and most pooled connections are plain).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether nothing (no data, no close) arrived on an idle connection. tokio clears a
    /// socket's readiness after a short read, so the common case reads a flag, not the socket.
    pub(super) fn is_idle_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = tokio::io::ReadBuf::new(&mut probe);
        // Pending: no event since the last read drained the socket.
        matches!(self.tcp().poll_peek(&mut cx, &mut probe), Poll::Pending)
    }

    /// Whether TLS negotiated HTTP/2.
    pub(super) fn is_h2(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(s) => s.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The URI has no host, or a scheme other than http/https.
    #[error("unsupported URI")]
    Uri,
    /// `https` on a client built without TLS.
    #[error("https is not enabled on this client")]
    NoTls,
    /// Name resolution failed or gave no address.
    #[error("resolve: {0}")]
    Resolve(std::io::Error),
    /// Every address refused, or the connect timeout passed.
    #[error("connect: {0}")]
    Tcp(std::io::Error),
    /// The TLS handshake failed.
    #[error("tls: {0}")]
    Tls(std::io::Error),
}

/// Opens connections for one client.
pub(super) struct Connector {
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl Connector {
    /// A connector for `http` and, with a TLS config, `https`. The config's ALPN list is set
    /// here: HTTP/2 first, then HTTP/1.1.
    pub(super) fn new(tls: Option<rustls::ClientConfig>, timeout: Duration) -> Self {
        let tls = tls.map(|mut c| {
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            TlsConnector::from(Arc::new(c))
        });
        Self { tls, timeout }
    }

    /// Connects to `uri`'s origin.
    pub(super) async fn connect(&self, uri: &Uri) -> Result<Io, ConnectError> {
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(ConnectError::Uri),
        };
        let host = uri.host().ok_or(ConnectError::Uri)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match (https, &self.tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls),
            (true, None) => return Err(ConnectError::NoTls),
        };
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let resolve = tokio::net::lookup_host((host, port));
                tokio::time::timeout(self.timeout, resolve)
                    .await
                    .map_err(|_| ConnectError::Resolve(std::io::ErrorKind::TimedOut.into()))?
                    .map_err(ConnectError::Resolve)?
                    .collect()
            }
        };
        let tcp = self.tcp(&addrs).await?;
        let Some(tls) = tls else { return Ok(Io::Plain(tcp)) };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| ConnectError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let handshake = tls.connect(name, tcp);
        let stream = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| ConnectError::Tls(std::io::ErrorKind::TimedOut.into()))?
            .map_err(ConnectError::Tls)?;
        Ok(Io::Tls(Box::new(stream)))
    }

    /// Tries each address in turn, each with its share of the connect timeout.
    async fn tcp(&self, addrs: &[SocketAddr]) -> Result<TcpStream, ConnectError> {
        let share = self.timeout / u32::try_from(addrs.len().max(1)).unwrap_or(u32::MAX);
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match tokio::time::timeout(share, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    stream.set_nodelay(true).map_err(ConnectError::Tcp)?;
                    let probes = socket2::TcpKeepalive::new().with_time(KEEPALIVE);
                    socket2::SockRef::from(&stream).set_tcp_keepalive(&probes).map_err(ConnectError::Tcp)?;
                    return Ok(stream);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = std::io::ErrorKind::TimedOut.into(),
            }
        }
        Err(ConnectError::Tcp(last))
    }
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
