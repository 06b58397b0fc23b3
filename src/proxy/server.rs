//! The accept loop and graceful shutdown.
//!
//! Shutdown, in order: the signal arrives → `/readyz` answers 503 at once → connections are
//! still accepted for `server.shutdown_delay` (lame duck, so a balancer's health check notices
//! first) → the listener closes → in-flight requests and streams finish, up to
//! `server.drain_timeout` → return.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::AppState;
use super::handler::{Listener, handle};
use crate::config::ServerConfig;

/// HTTP/2 pings on an idle connection, so a vanished peer's streams are reclaimed.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// What every connection of one listener is served with, fixed when it starts listening.
struct Setup {
    builder: Builder<TokioExecutor>,
    /// The main listener's TLS; `None` for plain HTTP and for the admin listener.
    tls: Option<Arc<crate::tls::Acceptor>>,
    /// The TLS handshake's deadline: the header deadline, as for a plain request head.
    handshake_timeout: Duration,
}

/// The connection builder with the listener's limits. The header deadline also closes an idle
/// keep-alive connection: hyper starts it again when a connection waits for its next request.
fn builder(server: &ServerConfig) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_buf_size(server.max_header_bytes)
        .max_headers(server.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(server.http2_max_concurrent_streams)
        // Rapid-reset and error-reset floods close the connection (hyper's h2 counts both).
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE);
    builder
}

/// Serves `listener` until `shutdown` resolves, then drains. Connection limits and the header
/// deadline are fixed at start (they live in hyper's connection builder); the shutdown delay and
/// drain deadline are read from the config live when shutdown begins. The main listener speaks
/// TLS when `state.tls` is set; the admin listener stays plain for probes and scrapes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    kind: Listener,
    shutdown: impl Future<Output = ()>,
) {
    let server = state.live.load().server.clone();
    let setup = Arc::new(Setup {
        builder: builder(&server),
        tls: match kind {
            Listener::Main => state.tls.clone(),
            Listener::Admin => None,
        },
        handshake_timeout: server.header_timeout,
    });
    let graceful = GracefulShutdown::new();
    // server.max_connections: a permit per open connection; with none left, accepting pauses (the
    // kernel's backlog holds new connections) until a connection closes.
    let slots = Arc::new(tokio::sync::Semaphore::new(server.max_connections));

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
    match tokio::time::timeout(server.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("shutdown: drained"),
        Err(_) => tracing::warn!("shutdown: drain timeout reached, closing remaining connections"),
    }
}

async fn accept(
    accepted: std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
    setup: &Arc<Setup>,
    graceful: &GracefulShutdown,
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
    let (setup, watcher, state) = (setup.clone(), graceful.watcher(), state.clone());
    tokio::spawn(async move {
        let Some(tls) = &setup.tls else {
            return connection(stream, peer, &setup.builder, watcher, state, kind, slot).await;
        };
        // The handshake runs in the connection's own task, under the header deadline, so a slow
        // or silent client holds only its own connection slot.
        let handshake = tokio_rustls::TlsAcceptor::from(tls.current()).accept(stream);
        match tokio::time::timeout(setup.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => connection(stream, peer, &setup.builder, watcher, state, kind, slot).await,
            Ok(Err(e)) => {
                state.metrics.tls_handshake_failures.inc();
                tracing::debug!(%peer, error = %e, "tls handshake failed");
            }
            Err(_) => {
                state.metrics.tls_handshake_failures.inc();
                tracing::debug!(%peer, "tls handshake timed out");
            }
        }
    });
}

/// Serves one connection (plain or TLS) to its end, then frees its slot.
async fn connection<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: I,
    peer: std::net::SocketAddr,
    builder: &Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    state: Arc<AppState>,
    kind: Listener,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    // The request's future is boxed: it is large, and inline it would sit in every connection's
    // task for the connection's whole life (a stream's, too, after its head was sent).
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        Box::pin(async move { Ok::<_, Infallible>(handle(state, req, peer, kind).await) })
    });
    if let Err(e) = watcher.watch(builder.serve_connection(TokioIo::new(io), service).into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    drop(slot);
}
