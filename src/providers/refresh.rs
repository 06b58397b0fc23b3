//! Short-lived credentials kept fresh in the background: STS session credentials (a web
//! identity, container or instance credentials), an OAuth access token. A [`Source`] fetches
//! one value and says how long it is valid; [`start`] runs one task per source that fetches it
//! at once, then again [`EARLY`] (5 minutes) before it expires, and after a failure with a
//! backoff of 1 s doubling up to 60 s while the last value is kept. Never on the request path:
//! a request reads what is there ([`Current::get`], one atomic load) and, before the first
//! fetch answered, finds nothing (and fails over like any failed attempt). One task per
//! source, so never two fetches at once. A reloaded snapshot with the same source (same
//! [`Source::identity`]) takes over the running task and its value instead of starting over
//! without one; the task ends with the last snapshot holding it. Each value's secrets join the
//! redaction set ([`Mint`]) before any request can use them, and stay there
//! until they expire.
//!
//! The schedule runs on tokio's clock (paused in tests); a source gives a lifetime, not a wall
//! clock time.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

use crate::config::{Mint, Secret};
use crate::upstream;

/// How long before the expiry a value is fetched anew.
pub(crate) const EARLY: Duration = Duration::from_secs(300);
/// The shortest wait between two fetches that answered.
const SHORTEST: Duration = Duration::from_secs(10);
/// The longest backoff after failed fetches.
const LONGEST_BACKOFF: Duration = Duration::from_secs(60);

/// One value fetched: the value, and how long from now it is valid.
pub(crate) struct Fetched<T> {
    /// The credentials or token.
    pub value: T,
    /// How long from now it may be used.
    pub valid_for: Duration,
}

/// Where short-lived credentials come from.
pub(crate) trait Source: Send + Sync + 'static {
    /// What is fetched (read by every request, so kept behind an `Arc`).
    type Value: Send + Sync + 'static;
    /// Why a fetch failed: logged, so it never holds a secret.
    type Error: std::fmt::Display + Send;

    /// What identifies the source: a reloaded snapshot with a source of the same type and
    /// identity takes over the running task. Logged, so it never holds a secret.
    fn identity(&self) -> String;

    /// One fetch through `client`, bounded in time by the source.
    fn fetch(
        &self,
        client: &upstream::Client,
    ) -> impl Future<Output = Result<Fetched<Self::Value>, Self::Error>> + Send;

    /// The secrets in `value`, for the redaction of relayed answers.
    fn secrets(value: &Self::Value) -> Vec<Secret>;
}

/// A source's value as its task last fetched it.
pub(crate) struct Current<T>(ArcSwapOption<T>);

impl<T> Default for Current<T> {
    fn default() -> Self {
        Self(ArcSwapOption::empty())
    }
}

impl<T> Current<T> {
    /// The value now, if a fetch has answered yet.
    pub(crate) fn get(&self) -> Option<Arc<T>> {
        self.0.load_full()
    }
}

/// The running tasks' values, by source type and identity.
type Running = Mutex<HashMap<(TypeId, String), Weak<dyn Any + Send + Sync>>>;
static RUNNING: OnceLock<Running> = OnceLock::new();

/// Keeps `source`'s value fresh through `client`: the running task of the same source if there
/// is one (a reload), else a new one (when there is a runtime to run on: a snapshot built only
/// to be checked starts nothing).
pub(crate) fn start<S: Source>(source: S, client: upstream::Client) -> Arc<Current<S::Value>> {
    start_minting(source, client, Mint::global())
}

/// [`start`], the secrets minted into `mint`.
fn start_minting<S: Source>(
    source: S,
    client: upstream::Client,
    mint: &'static Mint,
) -> Arc<Current<S::Value>> {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return Arc::new(Current::default()) };
    let id = (TypeId::of::<S>(), source.identity());
    let mut running = match RUNNING.get_or_init(Running::default).lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    running.retain(|_, c| c.strong_count() > 0);
    if let Some(current) = running.get(&id).and_then(Weak::upgrade)
        && let Ok(current) = current.downcast::<Current<S::Value>>()
    {
        return current;
    }
    let current = Arc::new(Current::default());
    let any: Arc<dyn Any + Send + Sync> = current.clone();
    running.insert(id, Arc::downgrade(&any));
    rt.spawn(refresh(Arc::downgrade(&current), source, client, mint));
    current
}

/// The wait after `failures` (at least one) failed fetches in a row: 1 s, 2 s, 4 s, ... up to
/// 60 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(LONGEST_BACKOFF)
}

/// The task: fetch, publish, wait; ends when no snapshot holds `current` any more.
async fn refresh<S: Source>(
    current: Weak<Current<S::Value>>,
    source: S,
    client: upstream::Client,
    mint: &'static Mint,
) {
    let mut failures = 0u32;
    loop {
        if current.strong_count() == 0 {
            return;
        }
        let wait = match source.fetch(&client).await {
            Ok(Fetched { value, valid_for }) => {
                let Some(c) = current.upgrade() else { return };
                // Redacted before any request can be signed with it.
                mint.add(S::secrets(&value), Instant::now() + valid_for);
                c.0.store(Some(Arc::new(value)));
                failures = 0;
                valid_for.saturating_sub(EARLY).max(SHORTEST)
            }
            Err(e) => {
                tracing::warn!(source = %source.identity(), error = %e, "credentials not refreshed");
                failures = failures.saturating_add(1);
                backoff(failures)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;
