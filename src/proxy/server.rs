//! The accept loop, the deadline of every connection state, and graceful shutdown.
//!
//! Shutdown, in order: the signal arrives → `/readyz` answers 503 at once → connections are
//! still accepted for `server.shutdown_delay` (lame duck, so a balancer's health check notices
//! first) → the listener closes → in-flight requests and streams finish, up to
//! `server.drain_timeout` → return.
//!
//! Deadlines, so no connection holds its `server.max_connections` slot for free: counted from the
//! accept, the TLS handshake, the HTTP version detection and an HTTP/2 connection's first stream
//! must all come within `server.header_timeout`; each HTTP/1.1 head, and the idle time between
//! requests, get hyper's header timer (the same value); an HTTP/2 connection with no open stream
//! for `server.http2_idle_timeout` gets GOAWAY, whether it answers pings or not.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::body::{Body, BodyError};
use super::handler::{Listener, handle};
use crate::config::ServerConfig;
use crate::state::AppState;

/// HTTP/2 pings on an idle connection, so a vanished peer's streams are reclaimed.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// The HTTP/2 client preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every connection of one listener is served with, fixed when it starts listening.
///
/// The version is detected here, not by hyper-util's auto builder, whose detection has no
/// deadline (a socket that sent nothing, `P`, or 23 bytes of the preface was held forever):
/// knowing the protocol up front also lets HTTP/2 alone carry the stream count its idle timer
/// needs, while HTTP/1.1 is served exactly as before.
struct Setup {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// The main listener's TLS; `None` for plain HTTP and for the admin listener.
    tls: Option<Arc<crate::tls::Acceptor>>,
    /// From the accept: the TLS handshake, the version detection and an HTTP/2 connection's first
    /// stream must all come by then (hyper's HTTP/1.1 header timer then bounds each head).
    header_timeout: Duration,
    /// An HTTP/2 connection with no open stream this long gets GOAWAY.
    http2_idle_timeout: Duration,
}

impl Setup {
    /// The connection builders with the listener's limits. The header deadline also closes an
    /// idle keep-alive connection: hyper starts it again when a connection waits for its next
    /// request.
    fn new(server: &ServerConfig, tls: Option<Arc<crate::tls::Acceptor>>) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(server.header_timeout)
            .max_buf_size(server.max_header_bytes)
            .max_headers(server.max_headers)
            .keep_alive(true);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(server.http2_max_concurrent_streams)
            // Rapid-reset and error-reset floods close the connection (hyper's h2 counts both).
            .max_pending_accept_reset_streams(Some(64))
            .max_local_error_reset_streams(Some(256))
            .keep_alive_interval(H2_KEEPALIVE)
            .keep_alive_timeout(H2_KEEPALIVE);
        Self {
            http1,
            http2,
            tls,
            header_timeout: server.header_timeout,
            http2_idle_timeout: server.http2_idle_timeout,
        }
    }
}

/// Open connections the probe listener holds at most (`server.max_connections` when lower).
pub const PROBE_CONNECTIONS: usize = 64;

/// Serves `listener` until `shutdown` resolves, then drains. Connection limits and the header
/// deadline are fixed at start (they live in hyper's connection builder); the shutdown delay and
/// drain deadline are read from the config live when shutdown begins. The main listener speaks
/// TLS when `state.tls` is set; the admin listener stays plain for probes and scrapes.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    kind: Listener,
    shutdown: impl Future<Output = ()>,
) {
    let server = state.live.load().server.clone();
    let tls = match kind {
        Listener::Main => state.tls.clone(),
        Listener::Admin | Listener::Probe => None,
    };
    let setup = Arc::new(Setup::new(&server, tls));
    // The drain signal: every connection task holds a receiver; draining is done when all are
    // dropped (hyper-util's GracefulShutdown cannot be used: its watch takes the connection,
    // and the HTTP/2 idle timer must be able to shut it down gracefully too).
    let (graceful, _) = watch::channel(());
    // server.max_connections: a permit per open connection; with none left, accepting pauses (the
    // kernel's backlog holds new connections) until a connection closes.
    // The probe listener answers a kubelet and a scraper, a handful of connections, on an address
    // the pod network reaches: its own small bound, so a neighbour that floods it cannot take the
    // file descriptors the API needs.
    let limit = match kind {
        Listener::Probe => server.max_connections.min(PROBE_CONNECTIONS),
        Listener::Main | Listener::Admin => server.max_connections,
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(limit));

    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accept(accepted, &setup, &graceful, &state, kind, slot).await,
        }
    }

    let server = state.live.load().server.clone();
    state.draining.store(true, Ordering::Release);
    tracing::info!(delay = ?server.shutdown_delay, "shutdown: not ready; still accepting during the delay");
    let lame_duck = tokio::time::sleep(server.shutdown_delay);
    tokio::pin!(lame_duck);
    loop {
        let slot = tokio::select! {
            () = &mut lame_duck => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        tokio::select! {
            () = &mut lame_duck => break,
            accepted = listener.accept() => accept(accepted, &setup, &graceful, &state, kind, slot).await,
        }
    }
    drop(listener);
    tracing::info!(timeout = ?server.drain_timeout, "shutdown: listener closed, draining in-flight requests");
    graceful.send_replace(());
    match tokio::time::timeout(server.drain_timeout, graceful.closed()).await {
        Ok(()) => tracing::info!("shutdown: drained"),
        Err(_) => tracing::warn!("shutdown: drain timeout reached, closing remaining connections"),
    }
}

async fn accept(
    accepted: std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
    setup: &Arc<Setup>,
    graceful: &watch::Sender<()>,
    state: &Arc<AppState>,
    kind: Listener,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let (stream, peer) = match accepted {
        Ok(accepted) => accepted,
        Err(e) => {
            // Usually out of file descriptors: back off instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + setup.header_timeout;
    let (setup, stop, state) = (setup.clone(), graceful.subscribe(), state.clone());
    tokio::spawn(async move {
        let conn = Conn { setup: &setup, state, peer, kind, stop, deadline };
        match &setup.tls {
            None => conn.serve(stream).await,
            Some(tls) => {
                // The handshake runs in the connection's own task, under the header deadline, so
                // a slow or silent client holds only its own connection slot.
                let handshake = tokio_rustls::TlsAcceptor::from(tls.current()).accept(stream);
                match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(Ok(stream)) => conn.serve(stream).await,
                    Ok(Err(e)) => {
                        conn.state.metrics.tls_handshake_failures.inc();
                        tracing::debug!(%peer, error = %e, "tls handshake failed");
                    }
                    Err(_) => {
                        conn.state.metrics.tls_handshake_failures.inc();
                        tracing::debug!(%peer, "tls handshake timed out");
                    }
                }
            }
        }
        // The slot is freed however the connection ended, deadlines included.
        drop(slot);
    });
}

/// One accepted connection, plain or TLS, before its protocol is known.
struct Conn<'a> {
    setup: &'a Setup,
    state: Arc<AppState>,
    peer: std::net::SocketAddr,
    kind: Listener,
    /// Changes when the listener drains.
    stop: watch::Receiver<()>,
    /// The header deadline, counted from the accept.
    deadline: Instant,
}

impl Conn<'_> {
    /// Detects the HTTP version by the header deadline, then serves the connection to its end.
    async fn serve<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, mut io: I) {
        let (h2, prefix) = match tokio::time::timeout_at(self.deadline, detect(&mut io)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return tracing::debug!(peer = %self.peer, error = %e, "no request"),
            Err(_) => return tracing::debug!(peer = %self.peer, "no HTTP version by the header deadline"),
        };
        let io = TokioIo::new(Rewind { prefix, io });
        let ended = if h2 { self.http2(io).await } else { self.http1(io).await };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }

    /// HTTP/1.1: hyper's header timer bounds each head and the idle time between requests.
    async fn http1<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self,
        io: TokioIo<Rewind<I>>,
    ) -> hyper::Result<()> {
        let Self { setup, state, peer, kind, mut stop, .. } = self;
        // The request's future is boxed: it is large, and inline it would sit in every
        // connection's task for the connection's whole life (a stream's, too, after its head).
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            Box::pin(async move { Ok::<_, Infallible>(handle(state, req, peer, kind).await) })
        });
        let conn = setup.http1.serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            biased;
            ended = conn.as_mut() => ended,
            _ = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }

    /// HTTP/2: the first stream must open by the header deadline; after that, a connection with
    /// no open stream for `http2_idle_timeout` gets GOAWAY. Pings do not count as activity (hyper
    /// answers them without a stream), so a peer cannot hold its slot by pinging.
    async fn http2<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self,
        io: TokioIo<Rewind<I>>,
    ) -> hyper::Result<()> {
        let Self { setup, state, peer, kind, mut stop, deadline } = self;
        let streams = Arc::new(Streams::default());
        let counted = streams.clone();
        let service = hyper::service::service_fn(move |req| {
            // Counted from the request until its response body is sent or dropped.
            let open = OpenStream::new(&counted);
            let state = state.clone();
            Box::pin(async move {
                let response = handle(state, req, peer, kind).await;
                Ok::<_, Infallible>(response.map(|body| Counted { body, _open: open }))
            })
        });
        let conn = setup.http2.serve_connection(io, service);
        tokio::pin!(conn);
        let idle = tokio::time::sleep_until(deadline);
        tokio::pin!(idle);
        let mut armed = true;
        let idled = loop {
            tokio::select! {
                biased;
                ended = conn.as_mut() => return ended,
                _ = stop.changed() => break false,
                () = streams.idle.notified() => {
                    if streams.none_open() {
                        idle.as_mut().reset(Instant::now() + setup.http2_idle_timeout);
                        armed = true;
                    }
                }
                () = idle.as_mut(), if armed => {
                    if streams.none_open() {
                        break true;
                    }
                    armed = false;
                }
            }
        };
        // GOAWAY: streams already open finish (a drain is bounded by its own deadline).
        conn.as_mut().graceful_shutdown();
        if !idled {
            return conn.await;
        }
        // hyper closes once the peer acknowledges the GOAWAY's ping; one that never does is
        // dropped while it still has no open stream.
        loop {
            tokio::select! {
                biased;
                ended = conn.as_mut() => return ended,
                () = tokio::time::sleep(setup.header_timeout) => {
                    if streams.none_open() {
                        tracing::debug!(%peer, "idle HTTP/2 connection did not close after GOAWAY");
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Reads until the first bytes differ from the HTTP/2 preface (HTTP/1.1) or are all of it
/// (HTTP/2); returns whether it is HTTP/2 and the bytes read, to be read again. One read in the
/// usual case, once per connection.
async fn detect<I: AsyncRead + Unpin>(io: &mut I) -> std::io::Result<(bool, Prefix)> {
    let mut prefix = Prefix { bytes: [0; 24], start: 0, end: 0 };
    while prefix.end < H2_PREFACE.len() {
        let read = io.read(&mut prefix.bytes[prefix.end..]).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let was = prefix.end;
        prefix.end += read;
        if prefix.bytes[was..prefix.end] != H2_PREFACE[was..prefix.end] {
            return Ok((false, prefix));
        }
    }
    Ok((true, prefix))
}

/// The bytes the version detection read.
struct Prefix {
    bytes: [u8; 24],
    start: usize,
    end: usize,
}

/// A connection's IO with the detection's bytes put back in front: a read gives them first,
/// then reads the socket. After them, a read costs one comparison; writes pass straight on.
struct Rewind<I> {
    prefix: Prefix,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let prefix = &mut this.prefix;
        if prefix.start < prefix.end {
            let rest = &prefix.bytes[prefix.start..prefix.end];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            prefix.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An HTTP/2 connection's open streams, for its idle timer.
#[derive(Default)]
struct Streams {
    open: AtomicUsize,
    /// Notified when the last open stream ends.
    idle: Notify,
}

impl Streams {
    fn none_open(&self) -> bool {
        self.open.load(Ordering::Relaxed) == 0
    }
}

/// One open stream; dropping it ends it.
struct OpenStream(Arc<Streams>);

impl OpenStream {
    fn new(streams: &Arc<Streams>) -> Self {
        streams.open.fetch_add(1, Ordering::Relaxed);
        Self(streams.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// An HTTP/2 response body that keeps its stream counted open until hyper has sent or dropped it.
struct Counted {
    body: Body,
    _open: OpenStream,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn detected(chunks: &[&[u8]]) -> std::io::Result<(bool, Vec<u8>)> {
        let mut mock = tokio_test_reader(chunks);
        let (h2, prefix) = detect(&mut mock).await?;
        let mut io = Rewind { prefix, io: mock };
        let mut all = Vec::new();
        io.read_to_end(&mut all).await?;
        Ok((h2, all))
    }

    /// A reader that returns `chunks` one read each.
    fn tokio_test_reader(chunks: &[&[u8]]) -> impl AsyncRead + Unpin {
        let (client, mut server) = tokio::io::duplex(64);
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in chunks {
                let _ = server.write_all(&c).await;
                tokio::task::yield_now().await;
            }
        });
        client
    }

    #[tokio::test]
    async fn detection_puts_back_every_byte_it_read() {
        let head = b"POST /v1 HTTP/1.1\r\nhost: x\r\n\r\n".as_slice();
        assert_eq!(detected(&[head]).await.unwrap(), (false, head.to_vec()));
        assert_eq!(detected(&[b"P", b"R", b"X rest"]).await.unwrap(), (false, b"PRX rest".to_vec()));
        let h2 = [H2_PREFACE.as_slice(), b"\0\0\0\x04"].concat();
        assert_eq!(detected(&[&h2[..5], &h2[5..]]).await.unwrap(), (true, h2.clone()));
        assert!(detected(&[&H2_PREFACE[..23]]).await.is_err(), "EOF before the version is known");
    }
}
