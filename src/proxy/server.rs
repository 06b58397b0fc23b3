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
use tokio::net::TcpListener;

use super::AppState;
use super::handler::{Listener, handle};

/// Largest request head (request line plus headers) accepted; beyond it hyper answers 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `listener` until `shutdown` resolves, then drains. The header deadline is fixed at
/// start (it lives in hyper's connection builder); the shutdown delay and drain deadline are read
/// from the config live when shutdown begins.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    kind: Listener,
    shutdown: impl Future<Output = ()>,
) {
    let server = state.live.load().server.clone();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEAD_BYTES as u32);
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
            accepted = listener.accept() => accept(accepted, &builder, &graceful, &state, kind, slot).await,
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
            accepted = listener.accept() => accept(accepted, &builder, &graceful, &state, kind, slot).await,
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
    builder: &Builder<TokioExecutor>,
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
    let state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, req, peer, kind).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(slot);
    });
}
