//! Metrics from one explicit [`prometheus::Registry`], built at start-up and passed in state (no
//! global registry). Labels are bounded: configured route, provider, key and model names, fixed
//! endpoint names, classifications and status classes. A model a client made up is never a label
//! (`model="other"`), and an unrouted request is `route="unmatched"`. Gauges of state (breakers,
//! available keys, process figures) are refreshed when `/metrics` is scraped.

mod families;
pub(crate) mod labels;
mod process;

use prometheus::core::Collector;
use prometheus::{
    Counter, CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, TextEncoder,
};

#[cfg(test)]
pub(crate) use families::Described;
use families::Registered;
pub(crate) use labels::Family;
use labels::{LabelSet, Vector};
use process::ProcessMetrics;

/// Route label for `provider/model` requests.
pub(crate) const ROUTE_DIRECT: &str = "direct";
/// Route label when no route was matched (unknown model, or refused before routing).
pub(crate) const ROUTE_UNMATCHED: &str = "unmatched";
/// Model label of a direct request for a model not configured anywhere.
pub(crate) const MODEL_OTHER: &str = "other";
/// Model (`target` in the deprecated `tier1_breaker_state`) of a provider-wide breaker.
pub(crate) const TARGET_PROVIDER: &str = "*";
/// The states of `tier1_breaker_status`, one series each.
pub(crate) const BREAKER_STATES: [&str; 3] = ["closed", "half_open", "open"];
/// Reason label of a stream event dropped because its `data:` is not JSON (the one reason so
/// far: the label leaves room for others, such as an event over a size cap).
pub(crate) const DROPPED_INVALID_JSON: &str = "invalid_json";

const LATENCY: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
const OVERHEAD: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];
/// Waits: from the scheduler's microseconds to an upstream's minutes.
const WAITS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
const GAPS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Every metric tier1 exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registered,
    /// `tier1_requests_total{route, endpoint, code, status_class}` (`status_class` deprecated).
    pub(crate) requests_total: Family<labels::Requests, IntCounterVec>,
    /// `tier1_request_duration_seconds{route, endpoint, stream}`: to the end of the response body.
    pub(crate) request_duration: Family<labels::Durations, HistogramVec>,
    /// `tier1_overhead_seconds{endpoint}`: time to the response head minus every wait
    /// (`waits`): tier1's own work.
    pub(crate) overhead: Family<labels::Endpoints, HistogramVec>,
    /// `tier1_wait_seconds{kind}`: the rest of the time to the response head, by what the request
    /// waited on; one series per [`labels::WaitKind`], resolved once (index: `kind as usize`).
    pub(crate) waits: [Histogram; labels::WaitKind::ALL.len()],
    /// `tier1_upstream_requests_total{provider, model, outcome}`.
    pub(crate) upstream_requests_total: Family<labels::Upstreams, IntCounterVec>,
    /// `tier1_upstream_duration_seconds{provider, model}`: one attempt, to its last byte.
    pub(crate) upstream_duration: Family<labels::Targets, HistogramVec>,
    /// `tier1_time_to_first_token_seconds{provider, model}`: streams, to the committing chunk.
    pub(crate) ttft: Family<labels::Targets, HistogramVec>,
    /// `tier1_inter_token_seconds{provider, model}`: gaps between relayed stream chunks.
    pub(crate) inter_token: Family<labels::Targets, HistogramVec>,
    /// `tier1_fallbacks_total{route, from_provider, to_provider, reason}`.
    pub(crate) fallbacks_total: Family<labels::Fallbacks, IntCounterVec>,
    /// `tier1_retries_total{provider, reason}`: attempts started after a failure of `provider`.
    pub(crate) retries_total: Family<labels::Retries, IntCounterVec>,
    /// `tier1_stream_events_dropped_total{provider, reason}`: events of a committed stream left
    /// out, not relayed (`reason="invalid_json"`: a `data:` that is not JSON).
    pub(crate) stream_events_dropped_total: Family<labels::StreamDrops, IntCounterVec>,
    /// `tier1_cooldown_waits_total{route, outcome}`: requests held for a cooldown
    /// (`wait_for_cooldown`): `served` or `unserved` after the wait, `full` when every waiting slot
    /// was taken.
    pub(crate) cooldown_waits_total: Family<labels::CooldownWaits, IntCounterVec>,
    /// `tier1_hedges_total{route, winner, trigger}`: hedged requests, by which attempt won and what
    /// started the hedge (`hedge_after`, or the primary's `first_token` deadline).
    pub(crate) hedges_total: Family<labels::Hedges, IntCounterVec>,
    /// `tier1_stream_resumes_total{route, outcome}`: committed streams that broke on a
    /// `stream_resume` route, continued elsewhere (`resumed`) or not (`failed`).
    pub(crate) stream_resumes_total: Family<labels::Resumes, IntCounterVec>,
    /// `tier1_breaker_state{provider, target}`: 0 closed, 1 half-open, 2 open. Deprecated for
    /// `tier1_breaker_status`; removed in the next release.
    pub(crate) breaker_state: Family<labels::Breakers, IntGaugeVec>,
    /// `tier1_breaker_status{provider, model, state}`: 1 for the breaker's state, 0 for the others.
    pub(crate) breaker_status: Family<labels::BreakerStates, IntGaugeVec>,
    /// `tier1_breaker_transitions_total{provider, to}`.
    pub(crate) breaker_transitions_total: Family<labels::Transitions, IntCounterVec>,
    /// `tier1_key_cooldowns_total{provider, key, reason, scope}`.
    pub(crate) key_cooldowns_total: Family<labels::KeyRests, IntCounterVec>,
    /// `tier1_concurrency_limit{provider, key}`: a concurrency limit's capacity now (an adaptive
    /// one moves; `key` `*` is the provider's own).
    pub(crate) concurrency_limit: Family<labels::KeyLimits, IntGaugeVec>,
    /// `tier1_key_headroom{provider, key, kind}`: what its provider last said is left of a key's
    /// quota, as a fraction of the limit (refreshed at scrape; fresh levels with a limit only).
    pub(crate) key_headroom: Family<labels::KeyHeadrooms, GaugeVec>,
    /// `tier1_preemptive_skips_total{provider, reason}`: keys passed over for their headroom
    /// before a 429 (once per key per request).
    pub(crate) preemptive_skips_total: Family<labels::Preemptions, IntCounterVec>,
    /// `tier1_keys_available{provider}`.
    pub(crate) keys_available: Family<labels::Providers, IntGaugeVec>,
    /// `tier1_inflight_requests`.
    pub(crate) inflight: IntGauge,
    /// `tier1_queue_wait_seconds`: waits for a provider or key concurrency slot.
    pub(crate) queue_wait: Histogram,
    /// `tier1_tokens_total{provider, model, direction}`.
    pub(crate) tokens_total: Family<labels::TokenCounts, IntCounterVec>,
    /// `tier1_cached_tokens_total{provider, model}`: input tokens the provider served from its
    /// prompt cache (the hit ratio of a target is this over its input tokens).
    pub(crate) cached_tokens_total: Family<labels::Targets, IntCounterVec>,
    /// `tier1_affinity_moves_total{route, reason}`: sessions sent elsewhere than their top choice.
    pub(crate) affinity_moves_total: Family<labels::AffinityMoves, IntCounterVec>,
    /// `tier1_cost_usd_total{provider, model}`.
    pub(crate) cost_usd_total: Family<labels::Targets, CounterVec>,
    /// `tier1_ratelimit_rejections_total{limit}`.
    pub(crate) ratelimit_rejections_total: Family<labels::Limits, IntCounterVec>,
    /// `tier1_ratelimit_keys{limit}`: distinct scope values a limit counts now (refreshed at scrape).
    pub(crate) ratelimit_keys: Family<labels::Limits, IntGaugeVec>,
    /// `tier1_ratelimit_keys_overflow_total{limit}`: requests with a new scope value past the
    /// limit's `max_keys`, counted in its shared overflow bucket.
    pub(crate) ratelimit_keys_overflow_total: Family<labels::Limits, IntCounterVec>,
    /// `tier1_budget_rejections_total{budget}`: requests refused by a budget.
    pub(crate) budget_rejections_total: Family<labels::Budgets, IntCounterVec>,
    /// `tier1_budget_spent_usd_total{budget}`: USD charged to a budget, settled (this replica).
    pub(crate) budget_spent_usd_total: Family<labels::Budgets, CounterVec>,
    /// `tier1_budget_spent_tokens_total{budget}`: tokens charged to a budget, settled.
    pub(crate) budget_spent_tokens_total: Family<labels::Budgets, IntCounterVec>,
    /// `tier1_redis_up`: 1 when the last sync with Redis succeeded (0 also without Redis).
    pub(crate) redis_up: IntGauge,
    /// `tier1_redis_sync_seconds`: one sync batch.
    pub(crate) redis_sync_seconds: Histogram,
    /// `tier1_redis_errors_total{op}`.
    pub(crate) redis_errors_total: Family<labels::RedisOps, IntCounterVec>,
    /// `tier1_config_reloads_total{result}`: ok, unchanged, error.
    pub(crate) config_reloads_total: Family<labels::Results, IntCounterVec>,
    /// `tier1_config_last_reload_timestamp_seconds`.
    pub(crate) config_last_reload: Gauge,
    /// `tier1_config_last_reload_successful`: 0 after a reload that failed, until one succeeds.
    pub(crate) config_last_reload_successful: IntGauge,
    /// `tier1_config_info{hash}`: value 1, one series, the active config's hash.
    pub(crate) config_info: Family<labels::Hashes, IntGaugeVec>,
    /// `tier1_tls_handshake_failures_total`: inbound handshakes refused or timed out.
    pub(crate) tls_handshake_failures: IntCounter,
    /// `tier1_tls_reloads_total{result}`: certificate rotations picked up (ok) or refused (error).
    pub(crate) tls_reloads_total: Family<labels::Results, IntCounterVec>,
    /// `tier1_manifest_age_seconds`: since the front's manifest was last fetched or confirmed
    /// (refreshed at scrape; registered only with `[front] manifest_url`).
    pub(crate) manifest_age_seconds: Gauge,
    /// `tier1_manifest_fetch_errors_total{reason}`: manifest fetches that kept the last good copy.
    pub(crate) manifest_fetch_errors_total: Family<labels::ManifestErrors, IntCounterVec>,
    /// `tier1_otlp_spans_exported_total`: spans the collector accepted (registered only with
    /// `[observability.otlp]`).
    pub(crate) otlp_spans_exported_total: IntCounter,
    /// `tier1_otlp_spans_dropped_total{reason}`: spans not exported (queue full, export failed).
    pub(crate) otlp_spans_dropped_total: Family<labels::OtlpDrops, IntCounterVec>,
    /// `tier1_log_lines_dropped_total`: access lines the writer's full queue refused (or a
    /// failed write lost); brought up to the writer's count at each scrape.
    log_lines_dropped: IntCounter,
    /// Orders the scrapes' updates of `log_lines_dropped`.
    log_sync: std::sync::Arc<std::sync::Mutex<()>>,
    process: ProcessMetrics,
}

/// Registers `metric` in `registry` and gives it back: the one list of metrics is their
/// construction in [`Metrics::new`].
fn on<C: Collector + Clone + 'static>(registry: &Registered, metric: C) -> prometheus::Result<C> {
    registry.register(&metric)?;
    Ok(metric)
}

/// [`on`] for a family.
fn family<L: LabelSet, V: Vector>(
    registry: &Registered,
    f: prometheus::Result<Family<L, V>>,
) -> prometheus::Result<Family<L, V>> {
    let f = f?;
    registry.register(f.vector())?;
    Ok(f)
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registered::default();
        let r = &registry;
        let build_info = family(
            r,
            Family::<labels::Versions, _>::gauge(
                "tier1_build_info",
                "Build information (value 1): the version, and the git revision built (unknown without one).",
            ),
        )?;
        let revision = env!("TIER1_REVISION");
        build_info.get(labels::Version { version: env!("CARGO_PKG_VERSION"), revision }).set(1);
        let waits = family(
            r,
            Family::<labels::Waits, _>::histogram(
                "tier1_wait_seconds",
                "Time to the response head spent waiting, by what on (body, limit, queue, upstream, hedge, backoff, cooldown, scheduler, other); with tier1_overhead_seconds it adds up to the time to the head.",
                WAITS,
            ),
        )?;
        let m = Self {
            waits: labels::WaitKind::ALL.map(|k| waits.get(labels::Wait { kind: k.as_str() })),
            requests_total: family(
                r,
                Family::counter(
                    "tier1_requests_total",
                    "API requests answered, by code (what the client got: ok, rate_limited, overloaded, no_target, timeout, upstream_error, unauthorized, invalid, not_found, too_large). status_class is deprecated: use code; it goes in the next release.",
                ),
            )?,
            request_duration: family(
                r,
                Family::histogram(
                    "tier1_request_duration_seconds",
                    "Time from request to the end of the response body.",
                    LATENCY,
                ),
            )?,
            overhead: family(
                r,
                Family::histogram(
                    "tier1_overhead_seconds",
                    "Router overhead: tier1's own work to the response head (its polls of the request), without any wait (tier1_wait_seconds).",
                    OVERHEAD,
                ),
            )?,
            upstream_requests_total: family(
                r,
                Family::counter(
                    "tier1_upstream_requests_total",
                    "Upstream attempts, by outcome (success or failure classification).",
                ),
            )?,
            upstream_duration: family(
                r,
                Family::histogram(
                    "tier1_upstream_duration_seconds",
                    "One upstream attempt, from send to its last byte.",
                    LATENCY,
                ),
            )?,
            ttft: family(
                r,
                Family::histogram(
                    "tier1_time_to_first_token_seconds",
                    "Streams: from send to the first chunk with content.",
                    LATENCY,
                ),
            )?,
            inter_token: family(
                r,
                Family::histogram("tier1_inter_token_seconds", "Streams: gaps between relayed chunks.", GAPS),
            )?,
            fallbacks_total: family(
                r,
                Family::counter(
                    "tier1_fallbacks_total",
                    "Requests answered by another attempt after a failure.",
                ),
            )?,
            retries_total: family(
                r,
                Family::counter(
                    "tier1_retries_total",
                    "Attempts started after a failed attempt, by the failed provider and its classification.",
                ),
            )?,
            stream_events_dropped_total: family(
                r,
                Family::counter(
                    "tier1_stream_events_dropped_total",
                    "Events of a committed stream left out, not relayed, by provider and reason (invalid_json: a data line that is neither JSON nor [DONE]; before the commit such an event fails the attempt instead).",
                ),
            )?,
            hedges_total: family(
                r,
                Family::counter(
                    "tier1_hedges_total",
                    "Hedged requests, by the attempt that won and what started the hedge.",
                ),
            )?,
            cooldown_waits_total: family(
                r,
                Family::counter(
                    "tier1_cooldown_waits_total",
                    "Requests held for a cooldown (wait_for_cooldown), by route and outcome (served, unserved, full).",
                ),
            )?,
            stream_resumes_total: family(
                r,
                Family::counter(
                    "tier1_stream_resumes_total",
                    "Broken committed streams on stream_resume routes: continued elsewhere (resumed) or not (failed).",
                ),
            )?,
            breaker_state: family(
                r,
                Family::gauge(
                    "tier1_breaker_state",
                    "Deprecated, removed in the next release: use tier1_breaker_status. Circuit breakers: 0 closed, 1 half-open, 2 open (target * is the provider-wide breaker).",
                ),
            )?,
            breaker_status: family(
                r,
                Family::gauge(
                    "tier1_breaker_status",
                    "Circuit breakers: 1 for the state each is in (closed, half_open, open), 0 for the others (model * is the provider-wide breaker).",
                ),
            )?,
            breaker_transitions_total: family(
                r,
                Family::counter(
                    "tier1_breaker_transitions_total",
                    "Circuit breaker transitions, by new state.",
                ),
            )?,
            key_cooldowns_total: family(
                r,
                Family::counter(
                    "tier1_key_cooldowns_total",
                    "Provider keys put to rest, by key (its configured name), reason and scope (the whole key, or one model on it).",
                ),
            )?,
            key_headroom: family(
                r,
                Family::float_gauge(
                    "tier1_key_headroom",
                    "What a key's provider last said is left of its quota (remaining / limit, 0 to 1), by kind (requests, tokens); fresh levels with a limit only.",
                ),
            )?,
            preemptive_skips_total: family(
                r,
                Family::counter(
                    "tier1_preemptive_skips_total",
                    "Keys passed over before a 429 for their headroom, once per key per request, by reason (requests, tokens: none left; estimate: fewer tokens left than the request's estimate).",
                ),
            )?,
            keys_available: family(
                r,
                Family::gauge(
                    "tier1_keys_available",
                    "Provider keys not resting (providers with keys only).",
                ),
            )?,
            concurrency_limit: family(
                r,
                Family::gauge(
                    "tier1_concurrency_limit",
                    "Concurrency limits' capacity now (adaptive ones move), by provider and key (* for the provider's own).",
                ),
            )?,
            inflight: on(r, IntGauge::new("tier1_inflight_requests", "API requests being served now.")?)?,
            queue_wait: on(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tier1_queue_wait_seconds",
                        "Waits for a provider or key concurrency slot.",
                    )
                    .buckets(OVERHEAD.to_vec()),
                )?,
            )?,
            tokens_total: family(
                r,
                Family::counter(
                    "tier1_tokens_total",
                    "Tokens reported by providers, by direction (input, output).",
                ),
            )?,
            cached_tokens_total: family(
                r,
                Family::counter(
                    "tier1_cached_tokens_total",
                    "Input tokens providers reported read from their prompt cache (part of tier1_tokens_total's input).",
                ),
            )?,
            affinity_moves_total: family(
                r,
                Family::counter(
                    "tier1_affinity_moves_total",
                    "Sessions of an affinity route sent elsewhere than their top choice, by why (resting, open, over_load).",
                ),
            )?,
            cost_usd_total: family(
                r,
                Family::float_counter(
                    "tier1_cost_usd_total",
                    "Cost in USD from the targets' input_cost and output_cost (USD per million tokens).",
                ),
            )?,
            ratelimit_rejections_total: family(
                r,
                Family::counter(
                    "tier1_ratelimit_rejections_total",
                    "Requests refused by a rate limit, by limit name.",
                ),
            )?,
            ratelimit_keys: family(
                r,
                Family::gauge(
                    "tier1_ratelimit_keys",
                    "Distinct scope values a rate limit counts now (idle ones expire after two windows).",
                ),
            )?,
            ratelimit_keys_overflow_total: family(
                r,
                Family::counter(
                    "tier1_ratelimit_keys_overflow_total",
                    "Requests with a new scope value past max_keys, counted in the limit's overflow bucket.",
                ),
            )?,
            budget_rejections_total: family(
                r,
                Family::counter(
                    "tier1_budget_rejections_total",
                    "Requests refused by a budget, by budget name.",
                ),
            )?,
            budget_spent_usd_total: family(
                r,
                Family::float_counter(
                    "tier1_budget_spent_usd_total",
                    "USD charged to a budget by this replica (settled with the reported usage; sum over replicas for the fleet), by budget name.",
                ),
            )?,
            budget_spent_tokens_total: family(
                r,
                Family::counter(
                    "tier1_budget_spent_tokens_total",
                    "Tokens charged to a budget by this replica (settled with the reported usage; sum over replicas for the fleet), by budget name.",
                ),
            )?,
            config_reloads_total: family(
                r,
                Family::counter(
                    "tier1_config_reloads_total",
                    "Config reloads, by result (ok, unchanged, error).",
                ),
            )?,
            config_last_reload: on(
                r,
                Gauge::new(
                    "tier1_config_last_reload_timestamp_seconds",
                    "Unix time at which the active config went live.",
                )?,
            )?,
            config_last_reload_successful: on(
                r,
                IntGauge::new(
                    "tier1_config_last_reload_successful",
                    "1 when the last config reload succeeded or found the file unchanged (and at start), 0 when it failed: the previous config stays.",
                )?,
            )?,
            config_info: family(r, Family::gauge("tier1_config_info", "The active config (value 1)."))?,
            // Registered only with Redis (enable_redis) or a TLS listener (enable_tls).
            redis_up: IntGauge::new(
                "tier1_redis_up",
                "1 when the last sync with Redis succeeded (replicas with [redis] only, as every tier1_redis_ family).",
            )?,
            redis_sync_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "tier1_redis_sync_seconds",
                    "One Redis sync batch (counters, fleet totals).",
                )
                .buckets(OVERHEAD.to_vec()),
            )?,
            redis_errors_total: Family::counter(
                "tier1_redis_errors_total",
                "Failed Redis operations, by operation (connect, sync, publish, heartbeat, strict).",
            )?,
            tls_handshake_failures: IntCounter::new(
                "tier1_tls_handshake_failures_total",
                "Inbound TLS handshakes that failed, were refused (mTLS) or timed out (TLS listeners only).",
            )?,
            tls_reloads_total: Family::counter(
                "tier1_tls_reloads_total",
                "Listener certificate rotations, by result (ok, error: the old certificate stays; TLS listeners only).",
            )?,
            manifest_age_seconds: Gauge::new(
                "tier1_manifest_age_seconds",
                "Seconds since the front's provider manifest was last fetched or confirmed (-1: never; with [front] manifest_url only, as the fetch errors).",
            )?,
            manifest_fetch_errors_total: Family::counter(
                "tier1_manifest_fetch_errors_total",
                "Failed fetches of the front's provider manifest, by reason (status, invalid, timeout, connect, too_large); the last good copy stays.",
            )?,
            otlp_spans_exported_total: IntCounter::new(
                "tier1_otlp_spans_exported_total",
                "Spans sent to the OTLP collector and accepted.",
            )?,
            otlp_spans_dropped_total: Family::counter(
                "tier1_otlp_spans_dropped_total",
                "Spans not exported, by reason (queue_full: the export queue was full; export_failed: the collector refused, failed or timed out).",
            )?,
            log_lines_dropped: on(
                r,
                IntCounter::new(
                    "tier1_log_lines_dropped_total",
                    "Access-log lines dropped because the writer's queue was full (stdout stalled) or the write failed; a request never waits for its line.",
                )?,
            )?,
            log_sync: std::sync::Arc::default(),
            process: ProcessMetrics::new(r)?,
            registry,
        };
        for result in ["ok", "unchanged", "error"] {
            m.config_reloads_total.get(labels::Outcome { result });
        }
        m.config_last_reload_successful.set(1);
        Ok(m)
    }

    /// Registers the Redis metrics: only a replica configured for Redis exports them, so "Redis
    /// down" never fires for a standalone sidecar.
    pub fn enable_redis(&self) -> Result<(), prometheus::Error> {
        for op in ["connect", "sync", "publish", "heartbeat", "strict"] {
            self.redis_errors_total.get(labels::RedisOp { op });
        }
        self.registry.register(&self.redis_up)?;
        self.registry.register(&self.redis_sync_seconds)?;
        self.registry.register(self.redis_errors_total.vector())
    }

    /// Registers the OTLP exporter's metrics: only a replica exporting traces has them.
    pub(crate) fn enable_otlp(&self) -> Result<(), prometheus::Error> {
        for reason in ["queue_full", "export_failed"] {
            self.otlp_spans_dropped_total.get(labels::OtlpDrop { reason });
        }
        self.registry.register(&self.otlp_spans_exported_total)?;
        self.registry.register(self.otlp_spans_dropped_total.vector())
    }

    /// Registers the TLS metrics: only a TLS listener exports them.
    pub fn enable_tls(&self) -> Result<(), prometheus::Error> {
        for result in ["ok", "error"] {
            self.tls_reloads_total.get(labels::Outcome { result });
        }
        self.registry.register(&self.tls_handshake_failures)?;
        self.registry.register(self.tls_reloads_total.vector())
    }

    /// Registers the manifest metrics, with a series at 0 for each of `reasons`: only a replica
    /// configured with `[front] manifest_url` exports them.
    pub(crate) fn enable_manifest(&self, reasons: &[&str]) -> Result<(), prometheus::Error> {
        for reason in reasons {
            self.manifest_fetch_errors_total.get(labels::ManifestError { reason });
        }
        self.manifest_age_seconds.set(-1.0);
        self.registry.register(&self.manifest_age_seconds)?;
        self.registry.register(self.manifest_fetch_errors_total.vector())
    }

    /// Creates the rejection and overflow series of every configured limit (at 0), so dashboards
    /// see them.
    pub fn limits_configured(&self, names: impl Iterator<Item = impl AsRef<str>>) {
        for n in names {
            let limit = labels::Limit { limit: n.as_ref() };
            self.ratelimit_rejections_total.get(limit);
            self.ratelimit_keys_overflow_total.get(limit);
        }
    }

    /// Makes each budget's series exist at 0 from the start, so rates work before the first
    /// refusal.
    pub fn budgets_configured(&self, budgets: &[crate::config::LimitConfig]) {
        for b in budgets {
            let budget = labels::Budget { budget: &b.name };
            self.budget_rejections_total.get(budget);
            if b.micro_usd.is_some() {
                self.budget_spent_usd_total.get(budget);
            }
            if b.tokens.is_some() {
                self.budget_spent_tokens_total.get(budget);
            }
        }
    }

    /// Records that the config with `hash` went live.
    pub fn config_loaded(&self, hash: &str) {
        self.config_info.vector().reset();
        self.config_info.get(labels::Hash { hash }).set(1);
        self.config_last_reload.set(unix_now());
    }

    /// Counts a config reload by its `result` (ok, unchanged, error) and sets
    /// `tier1_config_last_reload_successful` from it.
    pub(crate) fn reloaded(&self, result: &str) {
        self.config_reloads_total.get(labels::Outcome { result }).inc();
        self.config_last_reload_successful.set(i64::from(result != "error"));
    }

    /// Every family registered so far: name, type, help and label names, in registration order
    /// (the README's metrics table lists them).
    #[cfg(test)]
    pub(crate) fn families(&self) -> Vec<Described> {
        self.registry.families()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        self.process.refresh();
        self.refresh_log_drops(crate::access::dropped());
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec only fails on a metric family with no metrics, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Metrics {
    /// Brings `tier1_log_lines_dropped_total` up to `dropped`, the writer's own count.
    fn refresh_log_drops(&self, dropped: u64) {
        let _order = self.log_sync.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let had = self.log_lines_dropped.get();
        if dropped > had {
            self.log_lines_dropped.inc_by(dropped - had);
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `2xx`, `4xx`... for a status.
pub(crate) fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Handles for one `provider/model` pair, resolved once per attempt.
#[derive(Debug, Clone)]
pub struct TargetMetrics {
    /// `tier1_upstream_duration_seconds`.
    pub(crate) duration: Histogram,
    /// `tier1_inter_token_seconds`.
    pub(crate) inter_token: Histogram,
    /// `tier1_tokens_total{direction="input"}`.
    pub(crate) tokens_in: IntCounter,
    /// `tier1_tokens_total{direction="output"}`.
    pub(crate) tokens_out: IntCounter,
    /// `tier1_cached_tokens_total`.
    pub(crate) tokens_cached: IntCounter,
    /// `tier1_cost_usd_total`.
    pub(crate) cost: Counter,
    /// `tier1_upstream_requests_total{outcome="success"}`.
    pub(crate) success: IntCounter,
    /// `tier1_ttft_seconds`.
    pub(crate) ttft: Histogram,
    /// `tier1_stream_events_dropped_total{reason="invalid_json"}` (provider only: the family
    /// has no model label).
    pub(crate) events_dropped: IntCounter,
}

impl TargetMetrics {
    /// A provider's reported usage: tokens in and out, and their cost at `costs` (USD per
    /// million input and output tokens). The one place the cost is computed.
    pub fn usage(&self, input: u64, output: u64, costs: (f64, f64)) {
        self.tokens_in.inc_by(input);
        self.tokens_out.inc_by(output);
        let cost = (input as f64 * costs.0 + output as f64 * costs.1) / 1_000_000.0;
        if cost > 0.0 {
            self.cost.inc_by(cost);
        }
    }
}

impl Metrics {
    /// The per-target handles for `provider` and a bounded `model` label.
    pub fn target(&self, provider: &str, model: &str) -> TargetMetrics {
        let pm = labels::Target { provider, model };
        let tokens = |direction| self.tokens_total.get(labels::Tokens { provider, model, direction });
        TargetMetrics {
            duration: self.upstream_duration.get(pm),
            inter_token: self.inter_token.get(pm),
            tokens_in: tokens("input"),
            tokens_out: tokens("output"),
            tokens_cached: self.cached_tokens_total.get(pm),
            cost: self.cost_usd_total.get(pm),
            success: self.upstream_requests_total.get(labels::Upstream {
                provider,
                model,
                outcome: "success",
            }),
            ttft: self.ttft.get(pm),
            events_dropped: self
                .stream_events_dropped_total
                .get(labels::StreamDrop { provider, reason: DROPPED_INVALID_JSON }),
        }
    }
}

#[cfg(test)]
mod tests;
