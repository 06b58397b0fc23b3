//! Readiness is a bounded poll on a condition, never a sleep in the hope that it holds.

use std::future::Future;
use std::time::Duration;

/// How often a condition is checked again.
const EVERY: Duration = Duration::from_millis(10);

/// Polls `check` every 10 ms until it holds or `limit` passes; returns the time it took.
pub async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Whether `check` came to hold within `limit` (polled as [`within`] does).
pub async fn wait_until<F, Fut>(limit: Duration, check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(limit, check).await.is_some()
}
