//! What each outcome teaches, on a real snapshot: which state rests, which breaker records, what
//! goes to the other replicas (read off the event queue Redis would drain) and what is counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::config::{Format, parse};
use crate::json::{Schema, scan};
use crate::metrics::Metrics;
use crate::providers::Operation;
use crate::ratelimit::{Fleet, Limiter};
use crate::resilience::{Clock, Registry, RetryPolicy};
use crate::shared::{Event, Shared};
use crate::snapshot::Live;
use crate::upstream::Pools;

/// Provider `a` with one key; a breaker that opens at the second consecutive failure.
const CONFIG: &str = r#"
[redis]
url = "redis://127.0.0.1:1"

[resilience.breaker]
failure_threshold = 2

[providers.a]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
models = ["m", "n"]
[[providers.a.keys]]
name = "k"
secret = "env:K"
"#;

/// Everything a [`Job`] borrows.
struct World {
    live: Live,
    metrics: Metrics,
    limiter: Arc<Limiter>,
    shared: Shared,
    events: UnboundedReceiver<Event>,
    scanned: crate::json::Scanned,
    body: Bytes,
    id: HeaderValue,
    timing: Arc<crate::proxy::timing::Timing>,
}

fn world() -> World {
    let env: HashMap<String, String> = [("K".to_owned(), "sk-test".to_owned())].into();
    let config = parse(CONFIG, Format::Toml, &env).expect("a valid config");
    let live = Live::build(&config, &Registry::default(), &Pools::default()).expect("a snapshot");
    let fleet = Arc::new(Fleet::standalone());
    let redis = config.redis.as_ref().expect("a [redis] section");
    let (shared, events) = Shared::with_redis(fleet.clone(), redis);
    let body = Bytes::from_static(br#"{"model":"a/m","messages":[]}"#);
    World {
        scanned: scan(&body, Schema::Chat).expect("a scannable body"),
        live,
        metrics: Metrics::new().expect("metrics"),
        limiter: Arc::new(Limiter::new(fleet)),
        shared,
        events,
        body,
        id: HeaderValue::from_static("req-1"),
        timing: crate::proxy::timing::Timing::new(tokio::time::Instant::now()),
    }
}

/// No request is held for a cooldown in these tests.
static WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl World {
    fn job(&self) -> Job<'_> {
        Job {
            live: &self.live,
            operation: Operation::Chat,
            stream: false,
            force_stream: false,
            scanned: &self.scanned,
            body: &self.body,
            request_id: &self.id,
            correlation_id: None,
            clock: Clock::new(),
            started: AtomicU32::new(0),
            metrics: &self.metrics,
            route: "a/m",
            timing: &self.timing,
            limiter: &self.limiter,
            shared: &self.shared,
            tokens: 0,
            resume: None,
            waiters: &WAITERS,
            trace: None,
        }
    }

    /// `a/m`, labelled `label` (`other` is how a made-up direct model is labelled).
    fn candidate(&self, label: &'static str) -> Candidate<'_> {
        self.model("m", label)
    }

    /// `a/{model}`, labelled `label`.
    fn model(&self, model: &'static str, label: &'static str) -> Candidate<'_> {
        let provider = &self.live.providers[0];
        Candidate {
            provider,
            model,
            target: provider.target_state(model, 0),
            policy: RetryPolicy::default(),
            model_label: label,
            costs: (0.0, 0.0),
            deployment: "m",
            context_window: None,
            first_token: None,
            affinity: None,
        }
    }

    fn key(&self) -> &Key {
        &self.live.providers[0].keys[0]
    }

    /// The events queued for the other replicas so far.
    fn published(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    fn counted(&self, family: &str, labels: &[&str]) -> bool {
        let text = String::from_utf8(self.metrics.encode()).unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with(family) && labels.iter().all(|x| l.contains(x)) && !l.ends_with(" 0"))
    }
}

/// An attempt admitted through both breakers now, and failed with `f`.
fn fail(job: &Job<'_>, c: &Candidate<'_>, key: Option<&Key>, f: Failure) {
    failed(job, c, key, Gates::admit(c, NOW).expect("closed breakers admit"), &f, Instant::now(), NOW);
}

fn failure(class: Class, retry_after: Option<Duration>) -> Failure {
    Failure { class, status: None, retry_after, key_wide: false }
}

const NOW: u64 = 1_000_000_000;

#[test]
fn a_rate_limit_rests_the_model_on_the_key_and_the_fleet_hears_of_it() {
    let mut w = world();
    let (job, c) = (w.job(), w.candidate("m"));
    fail(&job, &c, Some(w.key()), failure(Class::RateLimited, Some(Duration::from_secs(7))));
    // Issue 19: a 429 on one model used to rest the whole key, stopping its other models.
    assert_eq!(w.key().state.models.remaining("m", NOW), Some(Duration::from_secs(7)));
    assert!(!w.key().state.cooldown.is_cooling(NOW), "a model's 429 rested the whole key");
    assert_eq!(w.key().state.resting_for("n", NOW), None);
    assert!(!c.target.cooldown.is_cooling(NOW), "a key's 429 rested the model on every key");
    assert_eq!(c.target.breaker.state(NOW), BreakerState::Closed);
    let labels = [r#"key="k""#, r#"reason="rate_limited""#, r#"scope="model""#];
    assert!(w.counted("tier1_key_cooldowns_total", &labels));
    drop((job, c));
    match w.published().as_slice() {
        [Event::KeyCooldown { provider, key, model, until_ms }] => {
            assert_eq!((provider.as_str(), key.as_str(), model.as_deref()), ("a", "k", Some("m")));
            let expected = unix_ms() + 7_000;
            assert!(until_ms.abs_diff(expected) < 1_000, "until {until_ms}, expected about {expected}");
        }
        other => panic!("published {other:?}"),
    }
}

#[test]
fn a_429_that_says_the_key_is_out_of_quota_rests_the_whole_key() {
    let mut w = world();
    let (job, c) = (w.job(), w.candidate("m"));
    let quota = Failure { key_wide: true, ..failure(Class::RateLimited, Some(Duration::from_secs(7))) };
    fail(&job, &c, Some(w.key()), quota);
    assert_eq!(w.key().state.cooldown.remaining(NOW), Some(Duration::from_secs(7)));
    assert_eq!(w.key().state.resting_for("n", NOW), Some(Duration::from_secs(7)));
    assert!(w.counted("tier1_key_cooldowns_total", &[r#"scope="key""#]));
    drop((job, c));
    assert!(
        matches!(w.published().as_slice(), [Event::KeyCooldown { model: None, .. }]),
        "the whole key's rest is shared as such"
    );
}

#[test]
fn an_overloaded_model_that_says_when_rests_and_counts_against_its_breaker() {
    let mut w = world();
    let (job, c) = (w.job(), w.candidate("m"));
    let overloaded = failure(Class::Overloaded, Some(Duration::from_secs(3)));
    fail(&job, &c, Some(w.key()), overloaded);
    assert_eq!(c.target.cooldown.remaining(NOW), Some(Duration::from_secs(3)));
    assert!(!w.key().state.cooldown.is_cooling(NOW), "the model's rest rested the key");
    // The second failure in a row opens the model's breaker (threshold 2), not the provider's
    // (issue 19: one model's outage refused every other model of the provider), and the fleet
    // hears of it.
    fail(&job, &c, None, failure(Class::Server, None));
    assert_eq!(c.target.breaker.state(NOW), BreakerState::Open);
    assert_eq!(c.provider.state.breaker.state(NOW), BreakerState::Closed, "one model took the provider down");
    assert!(w.counted("tier1_breaker_transitions_total", &[r#"to="open""#]));
    drop((job, c));
    let published = w.published();
    assert!(matches!(published[0], Event::TargetCooldown { ref model, .. } if model == "m"), "{published:?}");
    assert_eq!(opened(&published), ["m"], "{published:?}");
}

/// The targets whose breaker opening was shared.
fn opened(published: &[Event]) -> Vec<&str> {
    published
        .iter()
        .filter_map(|e| match e {
            Event::BreakerOpen { target, .. } => Some(target.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn several_models_failing_or_a_connect_error_is_the_providers_trouble() {
    let mut w = world();
    let job = w.job();
    let (m, n) = (w.model("m", "m"), w.model("n", "n"));
    for _ in 0..2 {
        fail(&job, &m, None, failure(Class::Timeout, None));
    }
    assert_eq!(m.provider.state.breaker.state(NOW), BreakerState::Closed);
    // A second model opening while the first is open opens the provider's breaker.
    for _ in 0..2 {
        fail(&job, &n, None, failure(Class::Server, None));
    }
    assert_eq!(n.target.breaker.state(NOW), BreakerState::Open);
    assert_eq!(n.provider.state.breaker.state(NOW), BreakerState::Open);
    drop((job, m, n));
    assert_eq!(opened(&w.published()), ["m", "n", TARGET_PROVIDER]);
    // Connect errors count against the provider at once.
    let w = world();
    let (job, c) = (w.job(), w.candidate("m"));
    for _ in 0..2 {
        fail(&job, &c, None, failure(Class::Connect, None));
    }
    assert_eq!(c.provider.state.breaker.state(NOW), BreakerState::Open);
}

#[test]
fn a_provider_whose_every_key_is_refused_opens_its_breaker() {
    let w = world();
    let (job, c) = (w.job(), w.candidate("m"));
    fail(&job, &c, Some(w.key()), failure(Class::Auth, None));
    assert!(w.key().state.cooldown.is_cooling(NOW));
    assert_eq!(c.provider.state.breaker.state(NOW), BreakerState::Open);
    assert_eq!(c.target.breaker.state(NOW), BreakerState::Closed);
}

#[test]
fn a_made_up_direct_models_rests_stay_on_this_replica() {
    let mut w = world();
    let (job, c) = (w.job(), w.candidate(MODEL_OTHER));
    for _ in 0..2 {
        let f = failure(Class::Overloaded, Some(Duration::from_secs(3)));
        fail(&job, &c, None, f);
    }
    assert!(c.target.cooldown.is_cooling(NOW));
    assert_eq!(c.target.breaker.state(NOW), BreakerState::Open);
    drop((job, c));
    // Nothing is shared.
    let published = w.published();
    assert!(published.is_empty(), "{published:?}");
}

#[test]
fn the_callers_fault_and_a_success_keep_the_provider_healthy() {
    let w = world();
    let (job, c) = (w.job(), w.candidate("m"));
    fail(&job, &c, None, failure(Class::Server, None));
    // A 400 between two server errors: the streak is broken, the breaker stays closed.
    caller_fault(&job, &c, Gates::admit(&c, NOW).expect("admitted"), Class::InvalidRequest, NOW);
    fail(&job, &c, None, failure(Class::Server, None));
    assert_eq!(c.target.breaker.state(NOW), BreakerState::Closed);
    assert!(w.counted("tier1_upstream_requests_total", &[r#"outcome="invalid_request""#]));
    // A success forgives the key's strikes: its next rest is the first length again, not double.
    let cfg = &w.live.resilience.cooldown;
    let first = w.key().state.cooldown.strike(NOW, cfg, None);
    let gates = Gates::admit(&c, NOW).expect("admitted");
    succeeded(&job, &c, Some(w.key()), gates, Duration::from_millis(5), false, NOW);
    assert_eq!(w.key().state.cooldown.strike(NOW, cfg, None), first);
    fail(&job, &c, None, failure(Class::Server, None));
    assert_eq!(c.target.breaker.state(NOW), BreakerState::Closed, "the success did not reset the streak");
}

#[test]
fn a_half_open_trial_not_recorded_is_returned() {
    let w = world();
    let (job, c) = (w.job(), w.candidate("m"));
    for _ in 0..2 {
        fail(&job, &c, None, failure(Class::Server, None));
    }
    let later = NOW + crate::resilience::clock::nanos(Duration::from_secs(3600));
    // Half-open with one trial: taken, then dropped without an outcome (the client left)...
    drop(Gates::admit(&c, later).expect("the trial"));
    // ...so the next attempt gets the trial instead of being refused.
    assert!(Gates::admit(&c, later).is_ok(), "a dropped trial was never returned");
}

#[tokio::test(start_paused = true)]
async fn an_answers_rate_limit_headers_fill_the_keys_headroom_and_queue_one_share() {
    let mut w = world();
    let (job, c) = (w.job(), w.candidate("m"));
    let now = job.clock.now();
    // No such headers: no state, nothing queued.
    headroom(&job, &c, Some(w.key()), &http::HeaderMap::new(), now);
    assert_eq!(w.key().state.headroom.known(now), None);
    let mut h = http::HeaderMap::new();
    h.insert("x-ratelimit-limit-requests", HeaderValue::from_static("10"));
    h.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
    h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("2s"));
    for _ in 0..3 {
        headroom(&job, &c, Some(w.key()), &h, now);
    }
    assert_eq!(w.key().state.headroom.rest(now, 0), Some((Duration::from_secs(2), Skip::Requests)));
    assert_eq!(w.key().state.unavailable_for("m", now, 0), Some(Duration::from_secs(2)));
    drop((job, c));
    match w.published().as_slice() {
        [Event::Headroom { provider, key, .. }] => assert_eq!((provider.as_str(), key.as_str()), ("a", "k")),
        other => panic!("three answers, one share expected: {other:?}"),
    }
}
