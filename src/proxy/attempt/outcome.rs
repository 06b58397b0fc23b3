//! What an attempt's outcome teaches the router: the breakers' verdicts, a key's or a target's
//! rest, the same shared with the other replicas, and the metrics of retries, fallbacks, hedges
//! and upstream calls.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Candidate, Failure, Job, Trigger};
use crate::error::{AttemptRecord, Class};
use crate::metrics::{MODEL_OTHER, TARGET_PROVIDER, TargetMetrics, labels};
use crate::providers::{Key, Provider};
use crate::ratelimit::unix_ms;
use crate::resilience::clock::nanos;
use crate::resilience::{Admission, Breaker, BreakerState, Skip, headroom};
use crate::shared;

/// A breaker's admission of one attempt; returns a half-open trial unless an outcome was
/// recorded.
pub(super) struct Probe<'a> {
    breaker: &'a Breaker,
    trial: bool,
}

impl<'a> Probe<'a> {
    /// Admits an attempt through `breaker` at `now`, or says how long it stays closed to it.
    pub(super) fn admit(breaker: &'a Breaker, now: u64) -> Result<Self, Option<Duration>> {
        match breaker.admit(now) {
            Admission::Denied => Err(breaker.remaining(now)),
            a => Ok(Self { breaker, trial: a == Admission::Probe }),
        }
    }

    fn record(mut self, now: u64, ok: bool) -> Option<BreakerState> {
        let change = self.breaker.record(now, ok, self.trial);
        self.trial = false;
        change
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if self.trial {
            self.breaker.release_probe();
        }
    }
}

/// The provider's and the target's breakers, both admitting one attempt.
pub(super) struct Gates<'a> {
    provider: Probe<'a>,
    target: Probe<'a>,
}

impl<'a> Gates<'a> {
    /// Both breakers' admission, the provider's first.
    pub(super) fn admit(c: &'a Candidate<'a>, now: u64) -> Result<Self, Option<Duration>> {
        let provider = Probe::admit(&c.provider.state.breaker, now)?;
        let target = Probe::admit(&c.target.breaker, now)?;
        Ok(Self { provider, target })
    }

    /// Records an outcome: a success or a provider-scoped failure on both breakers; a failure of
    /// the target alone on its own breaker (and on the provider's only as the verdict of the
    /// provider's half-open trial). A target that opens while another of the provider's models is
    /// open opens the provider's too: several models failing is the provider's trouble.
    fn record(self, job: &Job<'_>, c: &Candidate<'_>, now: u64, verdict: Verdict) {
        let ok = verdict == Verdict::Healthy;
        if verdict != Verdict::TargetFailed || self.provider.trial {
            gate(job, c.provider, self.provider, TARGET_PROVIDER, now, ok);
        }
        let target = self.target.breaker;
        if gate(job, c.provider, self.target, c.model_label, now, ok) == Some(BreakerState::Open)
            && let Some(left) = target.remaining(now)
        {
            let state = &c.provider.state;
            if state.spread.opened(c.model, now.saturating_add(nanos(left)), now) >= 2 {
                trip(job, c.provider, now);
            }
        }
    }
}

/// What an outcome says about the provider and the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It answered (the caller's own faults included).
    Healthy,
    /// This target failed: a 5xx, an overload, a timeout.
    TargetFailed,
    /// The provider failed as a whole: it could not be reached.
    ProviderFailed,
}

/// A retry starts after `last` failed.
pub(super) fn retried(job: &Job<'_>, last: &AttemptRecord) {
    job.metrics
        .retries_total
        .get(labels::Retry { provider: &last.provider, reason: last.class.as_str() })
        .inc();
}

/// The loop ends with `c`'s answer: a fallback when something failed first, and which side of
/// a hedge won (`hedge`: `Some(true)` when the hedge did).
/// `hedge`: whether the hedge won, and what started it, when one ran.
pub(super) fn answered(
    job: &Job<'_>,
    c: &Candidate<'_>,
    first: Option<&AttemptRecord>,
    hedge: Option<(bool, Trigger)>,
) {
    if let Some(first) = first {
        job.metrics
            .fallbacks_total
            .get(labels::Fallback {
                route: job.route,
                from_provider: &first.provider,
                to_provider: &c.provider.name,
                reason: first.class.as_str(),
            })
            .inc();
    }
    if let Some((hedge, trigger)) = hedge {
        let w = if hedge { "hedge" } else { "primary" };
        let trigger = trigger.as_str();
        job.metrics.hedges_total.get(labels::Hedge { route: job.route, winner: w, trigger }).inc();
    }
}

/// A success: healthy breakers, the key's strikes forgiven, the latency learnt. Returns the
/// target's metrics for the answer's own (duration, tokens, cost).
#[inline]
pub(super) fn succeeded(
    job: &Job<'_>,
    c: &Candidate<'_>,
    key: Option<&Key>,
    gates: Gates<'_>,
    first: Duration,
    streaming: bool,
    now: u64,
) -> Arc<TargetMetrics> {
    c.target.ewma.observe(first);
    gates.record(job, c, now, Verdict::Healthy);
    if let Some(k) = key {
        k.state.cooldown.reset();
        k.state.models.reset(c.model, now);
    }
    let metrics = c.target.metrics(job.metrics, &c.provider.name, c.model_label);
    metrics.success.inc();
    if streaming {
        metrics.ttft.observe(first.as_secs_f64());
    }
    metrics.clone()
}

/// The caller's fault: the provider is healthy; its answer goes to the client.
pub(super) fn caller_fault(job: &Job<'_>, c: &Candidate<'_>, gates: Gates<'_>, class: Class, now: u64) {
    gates.record(job, c, now, Verdict::Healthy);
    job.metrics
        .upstream_requests_total
        .get(labels::Upstream { provider: &c.provider.name, model: c.model_label, outcome: class.as_str() })
        .inc();
}

/// A failure: counted, and the key, the target or the breakers take the blame its class puts
/// on them.
pub(super) fn failed(
    job: &Job<'_>,
    c: &Candidate<'_>,
    key: Option<&Key>,
    gates: Gates<'_>,
    f: &Failure,
    start: Instant,
    now: u64,
) {
    let (p, cfg) = (c.provider, &job.live.resilience.cooldown);
    let upstream = labels::Upstream { provider: &p.name, model: c.model_label, outcome: f.class.as_str() };
    job.metrics.upstream_requests_total.get(upstream).inc();
    job.metrics
        .upstream_duration
        .get(labels::Target { provider: &p.name, model: c.model_label })
        .observe(start.elapsed().as_secs_f64());
    let rested = |k: &Key, scope: Scope| {
        let rest = labels::KeyRest {
            provider: &p.name,
            key: &k.name,
            reason: f.class.as_str(),
            scope: scope.as_str(),
        };
        job.metrics.key_cooldowns_total.get(rest).inc();
    };
    match f.class {
        // Scoped like the provider's limits: (key, model), unless the key as a whole is out of
        // quota (or holds too many model rests). The breaker is not concerned (trials are
        // returned).
        Class::RateLimited => match key {
            Some(k) => {
                let model =
                    (!f.key_wide).then(|| k.state.models.strike(c.model, now, cfg, f.retry_after)).flatten();
                match model {
                    Some(d) => {
                        rested(k, Scope::Model);
                        share_key(job, p, k, Some(c), d);
                    }
                    None => {
                        let d = k.state.cooldown.strike(now, cfg, f.retry_after);
                        rested(k, Scope::Key);
                        share_key(job, p, k, None, d);
                    }
                }
            }
            None => {
                let d = c.target.cooldown.strike(now, cfg, f.retry_after);
                share_target(job, c, d);
            }
        },
        Class::Auth => {
            if let Some(k) = key {
                k.state.cooldown.cool_for(now, cfg.on_auth_error);
                rested(k, Scope::Key);
                share_key(job, p, k, None, cfg.on_auth_error);
                tracing::warn!(provider = %p.name, key = %k.name, "provider refused the key; cooling it");
                // Every key refused: the provider as a whole is unusable.
                if p.keys.iter().all(|k| k.state.cooldown.is_cooling(now)) {
                    trip(job, p, now);
                }
            }
        }
        Class::Overloaded | Class::Server | Class::Timeout | Class::FirstToken | Class::Connect => {
            if f.class == Class::Overloaded
                && let Some(ra) = f.retry_after
            {
                c.target.cooldown.cool_for(now, ra.min(cfg.max));
                share_target(job, c, ra.min(cfg.max));
            }
            let verdict =
                if f.class == Class::Connect { Verdict::ProviderFailed } else { Verdict::TargetFailed };
            gates.record(job, c, now, verdict);
        }
        Class::InvalidRequest | Class::NotFound | Class::ContextLength | Class::ContentFilter => {}
    }
}

/// Reads an answer's rate-limit headers into its key's headroom, and queues the key's share
/// with the other replicas unless one already waits (at most one per key per sync: the sync
/// task sends what is freshest then). Without such headers: five header lookups, nothing else.
pub(super) fn headroom(
    job: &Job<'_>,
    c: &Candidate<'_>,
    key: Option<&Key>,
    headers: &http::HeaderMap,
    now: u64,
) {
    let Some(k) = key.filter(|_| job.live.resilience.headroom) else { return };
    let wall = std::time::SystemTime::now();
    let Some(reading) = headroom::parse(headers, wall) else { return };
    let at_ms =
        wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    k.state.headroom.observe(now, at_ms, &reading);
    if k.state.headroom.mark_dirty() {
        job.shared.publish(shared::Event::headroom_pending(&c.provider.name, &k.name));
    }
}

/// Counts the keys a request passed over for their headroom (provider index, key, why).
pub(super) fn preempted(job: &Job<'_>, skips: &[(usize, usize, Skip)]) {
    for &(p, _, why) in skips {
        if let Some(p) = job.live.providers.get(p) {
            let labels = labels::Preemption { provider: &p.name, reason: why.as_str() };
            job.metrics.preemptive_skips_total.get(labels).inc();
        }
    }
}

/// Records an outcome on a breaker; returns the state it changed to.
fn gate(
    job: &Job<'_>,
    p: &Provider,
    probe: Probe<'_>,
    target: &str,
    now: u64,
    ok: bool,
) -> Option<BreakerState> {
    let breaker = probe.breaker;
    let to = probe.record(now, ok)?;
    changed(job, p, breaker, target, to, now);
    Some(to)
}

/// Opens the provider's breaker for a provider-scoped failure seen elsewhere.
fn trip(job: &Job<'_>, p: &Provider, now: u64) {
    if let Some(to) = p.state.breaker.trip(now) {
        changed(job, p, &p.state.breaker, TARGET_PROVIDER, to, now);
    }
}

/// Counts a breaker's transition, and shares an opening.
fn changed(job: &Job<'_>, p: &Provider, breaker: &Breaker, target: &str, to: BreakerState, now: u64) {
    job.metrics
        .breaker_transitions_total
        .get(labels::Transition { provider: &p.name, to: to.as_str() })
        .inc();
    // `model`, not `target`: a JSON log line already has the event's own `target` key.
    tracing::warn!(provider = %p.name, model = target, to = to.as_str(), "circuit breaker changed state");
    // A made-up direct model's state is its own and this replica's (see `DirectTargets`).
    if to == BreakerState::Open
        && target != MODEL_OTHER
        && let Some(left) = breaker.remaining(now)
    {
        job.shared.publish(shared::Event::BreakerOpen {
            provider: p.name.to_string(),
            target: target.to_owned(),
            until_ms: until(left),
        });
    }
}

/// The wall-clock end of a rest of `left`, as the other replicas read it.
fn until(left: Duration) -> u64 {
    unix_ms() + u64::try_from(left.as_millis()).unwrap_or(0)
}

/// What a key's rest covers.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The whole key.
    Key,
    /// One model on the key.
    Model,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Model => "model",
        }
    }
}

/// Shares a key's rest: of the whole key, or of `model`'s candidate on it, by its real name
/// (a direct model the config does not list included: only a provider's 429 names one, and each
/// key holds at most `KEY_MODELS` of them).
fn share_key(job: &Job<'_>, p: &Provider, k: &Key, model: Option<&Candidate<'_>>, rest: Duration) {
    job.shared.publish(shared::Event::KeyCooldown {
        provider: p.name.to_string(),
        key: k.name.to_string(),
        model: model.map(|c| c.model.to_owned()),
        until_ms: until(rest),
    });
}

fn share_target(job: &Job<'_>, c: &Candidate<'_>, rest: Duration) {
    // A made-up direct model's rest is its own and this replica's (see `DirectTargets`): sent
    // as "(direct)", it would rest every made-up model of the provider on the other replicas.
    if c.model_label == MODEL_OTHER {
        return;
    }
    job.shared.publish(shared::Event::TargetCooldown {
        provider: c.provider.name.to_string(),
        model: c.model.to_owned(),
        until_ms: until(rest),
    });
}

#[cfg(test)]
mod tests;
