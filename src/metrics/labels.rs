//! Typed labels. Each metric family's labels are the fields of one struct, declared once in
//! [`labels!`]: the field names are the Prometheus label names (registration reads them), and a
//! call site fills the struct by name, so a label can be neither swapped nor forgotten. Values
//! are bounded names (routes, providers, keys, models, limits from the config) or fixed words.

use std::marker::PhantomData;

use prometheus::core::Collector;
use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

/// A labelled metric vector of the `prometheus` crate.
pub(crate) trait Vector: Collector + Clone + 'static {
    /// One series.
    type Metric;
    /// The series with these label values, in the family's order.
    fn with(&self, values: &[&str]) -> Self::Metric;
}

macro_rules! vector {
    ($($vec:ty => $metric:ty),* $(,)?) => {$(
        impl Vector for $vec {
            type Metric = $metric;
            fn with(&self, values: &[&str]) -> $metric {
                self.with_label_values(values)
            }
        }
    )*};
}

vector! {
    IntCounterVec => prometheus::IntCounter,
    CounterVec => prometheus::Counter,
    HistogramVec => prometheus::Histogram,
    IntGaugeVec => prometheus::IntGauge,
    GaugeVec => prometheus::Gauge,
}

/// The label names of a family, and how one set of values resolves to a series.
pub(crate) trait LabelSet {
    /// The values, borrowed for one call.
    type Of<'a>;
    /// The label names, in order.
    const NAMES: &'static [&'static str];
    /// The series of `vector` with `labels`.
    fn resolve<V: Vector>(vector: &V, labels: &Self::Of<'_>) -> V::Metric;
}

/// A metric family whose labels are the set `L`.
#[derive(Debug, Clone)]
pub(crate) struct Family<L, V> {
    vector: V,
    labels: PhantomData<fn() -> L>,
}

impl<L: LabelSet, V: Vector> Family<L, V> {
    /// The series with `labels`.
    pub(crate) fn get(&self, labels: L::Of<'_>) -> V::Metric {
        L::resolve(&self.vector, &labels)
    }

    /// The vector, to register or reset it.
    pub(crate) fn vector(&self) -> &V {
        &self.vector
    }
}

impl<L: LabelSet> Family<L, IntCounterVec> {
    /// A counter family.
    pub(crate) fn counter(name: &str, help: &str) -> prometheus::Result<Self> {
        Ok(Self { vector: IntCounterVec::new(Opts::new(name, help), L::NAMES)?, labels: PhantomData })
    }
}

impl<L: LabelSet> Family<L, CounterVec> {
    /// A float counter family.
    pub(crate) fn float_counter(name: &str, help: &str) -> prometheus::Result<Self> {
        Ok(Self { vector: CounterVec::new(Opts::new(name, help), L::NAMES)?, labels: PhantomData })
    }
}

impl<L: LabelSet> Family<L, IntGaugeVec> {
    /// A gauge family.
    pub(crate) fn gauge(name: &str, help: &str) -> prometheus::Result<Self> {
        Ok(Self { vector: IntGaugeVec::new(Opts::new(name, help), L::NAMES)?, labels: PhantomData })
    }
}

impl<L: LabelSet> Family<L, GaugeVec> {
    /// A float gauge family.
    pub(crate) fn float_gauge(name: &str, help: &str) -> prometheus::Result<Self> {
        Ok(Self { vector: GaugeVec::new(Opts::new(name, help), L::NAMES)?, labels: PhantomData })
    }
}

impl<L: LabelSet> Family<L, HistogramVec> {
    /// A histogram family with `buckets`.
    pub(crate) fn histogram(name: &str, help: &str, buckets: &[f64]) -> prometheus::Result<Self> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        Ok(Self { vector: HistogramVec::new(opts, L::NAMES)?, labels: PhantomData })
    }
}

/// Declares label sets: `Set => Values { field: Type, .. }` makes the struct `Values<'a>` of
/// label values and the set `Set` whose names are the field names, in order.
macro_rules! labels {
    ($($(#[$doc:meta])* $set:ident => $values:ident { $($field:ident: $ty:ty),+ $(,)? })*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        #[allow(missing_docs)]
        pub(crate) struct $values<'a> {
            $(pub(crate) $field: $ty,)+
        }

        #[doc = concat!("The label names of [`", stringify!($values), "`].")]
        #[derive(Debug, Clone, Copy)]
        pub(crate) enum $set {}

        impl LabelSet for $set {
            type Of<'a> = $values<'a>;
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];
            fn resolve<V: Vector>(vector: &V, labels: &$values<'_>) -> V::Metric {
                vector.with(&[$(labels.$field),+])
            }
        }
    )*};
}

labels! {
    /// `tier1_requests_total`.
    Requests => Request { route: &'a str, endpoint: &'a str, code: &'a str, status_class: &'a str }
    /// `tier1_request_duration_seconds`.
    Durations => Duration { route: &'a str, endpoint: &'a str, stream: &'a str }
    /// `tier1_overhead_seconds`.
    Endpoints => Endpoint { endpoint: &'a str }
    /// `tier1_upstream_requests_total`.
    Upstreams => Upstream { provider: &'a str, model: &'a str, outcome: &'a str }
    /// Per-target families: upstream duration, time to first token, inter-token gaps, cost.
    Targets => Target { provider: &'a str, model: &'a str }
    /// `tier1_tokens_total`.
    TokenCounts => Tokens { provider: &'a str, model: &'a str, direction: &'a str }
    /// `tier1_affinity_moves_total`.
    AffinityMoves => AffinityMove { route: &'a str, reason: &'a str }
    /// `tier1_fallbacks_total`.
    Fallbacks => Fallback { route: &'a str, from_provider: &'a str, to_provider: &'a str, reason: &'a str }
    /// `tier1_retries_total`.
    Retries => Retry { provider: &'a str, reason: &'a str }
    /// `tier1_stream_events_dropped_total`.
    StreamDrops => StreamDrop { provider: &'a str, reason: &'a str }
    /// `tier1_hedges_total`.
    Hedges => Hedge { route: &'a str, winner: &'a str, trigger: &'a str }
    /// `tier1_cooldown_waits_total`.
    CooldownWaits => CooldownWait { route: &'a str, outcome: &'a str }
    /// `tier1_stream_resumes_total`.
    Resumes => Resume { route: &'a str, outcome: &'a str }
    /// `tier1_breaker_state` (deprecated: `target` is what `model` is everywhere else).
    Breakers => Breaker { provider: &'a str, target: &'a str }
    /// `tier1_breaker_status`.
    BreakerStates => BreakerStatus { provider: &'a str, model: &'a str, state: &'a str }
    /// `tier1_breaker_transitions_total`.
    Transitions => Transition { provider: &'a str, to: &'a str }
    /// `tier1_key_cooldowns_total`.
    KeyRests => KeyRest { provider: &'a str, key: &'a str, reason: &'a str, scope: &'a str }
    /// `tier1_concurrency_limit` (`key` `*`: the provider's own limit).
    KeyLimits => KeyLimit { provider: &'a str, key: &'a str }
    /// `tier1_key_headroom` (`kind`: requests, tokens).
    KeyHeadrooms => KeyHeadroom { provider: &'a str, key: &'a str, kind: &'a str }
    /// `tier1_preemptive_skips_total` (`reason`: requests, tokens, estimate).
    Preemptions => Preemption { provider: &'a str, reason: &'a str }
    /// `tier1_keys_available`.
    Providers => Provider { provider: &'a str }
    /// The rate-limit families.
    Limits => Limit { limit: &'a str }
    /// The budget families.
    Budgets => Budget { budget: &'a str }
    /// `tier1_redis_errors_total`.
    RedisOps => RedisOp { op: &'a str }
    /// Reload families.
    Results => Outcome { result: &'a str }
    /// `tier1_config_info`.
    Hashes => Hash { hash: &'a str }
    /// `tier1_manifest_fetch_errors_total`.
    ManifestErrors => ManifestError { reason: &'a str }
    /// `tier1_otlp_spans_dropped_total` (`reason`: queue_full, export_failed).
    OtlpDrops => OtlpDrop { reason: &'a str }
    /// `tier1_build_info`.
    Versions => Version { version: &'a str, revision: &'a str }
    /// `tier1_wait_seconds` (`kind`: a [`WaitKind`]).
    Waits => Wait { kind: &'a str }
}

/// What a request waited on before its response head (`tier1_wait_seconds{kind}`): everything
/// of its time to the head that is not tier1's own work (`tier1_overhead_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitKind {
    /// Reading the client's request body.
    Body,
    /// A strict rate limit's round trip to Redis.
    Limit,
    /// A provider's or key's concurrency slot (`queue_timeout`).
    Queue,
    /// An upstream's answer: the send (connect included) to the head, and what tier1 reads of the
    /// body before it answers (a stream to its commit point, a translated answer whole).
    Upstream,
    /// A hedged request's primary, before the hedge started (at most `hedge_after`).
    Hedge,
    /// A backoff, or a `Retry-After`, before trying a target again.
    Backoff,
    /// Every candidate resting (`wait_for_cooldown`).
    Cooldown,
    /// Woken, in the runtime's run queue until polled again.
    Scheduler,
    /// Any other await (none is known: time here is a wait not yet named).
    Other,
}

impl WaitKind {
    /// Every kind, in slot order (`kind as usize`).
    pub(crate) const ALL: [Self; 9] = [
        Self::Body,
        Self::Limit,
        Self::Queue,
        Self::Upstream,
        Self::Hedge,
        Self::Backoff,
        Self::Cooldown,
        Self::Scheduler,
        Self::Other,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Body => "body",
            Self::Limit => "limit",
            Self::Queue => "queue",
            Self::Upstream => "upstream",
            Self::Hedge => "hedge",
            Self::Backoff => "backoff",
            Self::Cooldown => "cooldown",
            Self::Scheduler => "scheduler",
            Self::Other => "other",
        }
    }
}
