//! Metrics from one explicit [`prometheus::Registry`], built at start-up and passed in state (no
//! global registry). Labels are bounded: configured route names, `direct`, `unmatched`, fixed
//! endpoint names and status classes; never a client-supplied string.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Route label for `provider/model` requests.
pub const ROUTE_DIRECT: &str = "direct";
/// Route label when no route was matched (unknown model, or refused before routing).
pub const ROUTE_UNMATCHED: &str = "unmatched";

/// Every metric tier1 exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `tier1_requests_total{route, endpoint, status_class}`.
    pub requests_total: IntCounterVec,
    /// `tier1_request_duration_seconds{route, endpoint, stream}`: to the end of the response body.
    pub request_duration: HistogramVec,
    /// `tier1_inflight_requests`.
    pub inflight: IntGauge,
    /// `tier1_config_reloads_total{result}`: ok, unchanged, error.
    pub config_reloads_total: IntCounterVec,
    /// `tier1_config_last_reload_timestamp_seconds`.
    pub config_last_reload: Gauge,
    /// `tier1_config_info{hash}`: value 1, one series, the active config's hash.
    pub config_info: IntGaugeVec,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new("tier1_requests_total", "API requests answered, by route, endpoint and status class."),
            &["route", "endpoint", "status_class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "tier1_request_duration_seconds",
                "Time from request to the end of the response body.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                300.0,
            ]),
            &["route", "endpoint", "stream"],
        )?;
        let inflight = IntGauge::new("tier1_inflight_requests", "API requests being served now.")?;
        let build_info =
            IntGaugeVec::new(Opts::new("tier1_build_info", "Build information (value 1)."), &["version"])?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(requests_total.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(build_info))?;
        let config_reloads_total = IntCounterVec::new(
            Opts::new("tier1_config_reloads_total", "Config reloads, by result (ok, unchanged, error)."),
            &["result"],
        )?;
        let config_last_reload = Gauge::new(
            "tier1_config_last_reload_timestamp_seconds",
            "Unix time at which the active config went live.",
        )?;
        let config_info =
            IntGaugeVec::new(Opts::new("tier1_config_info", "The active config (value 1)."), &["hash"])?;
        for result in ["ok", "unchanged", "error"] {
            config_reloads_total.with_label_values(&[result]);
        }
        registry.register(Box::new(config_reloads_total.clone()))?;
        registry.register(Box::new(config_last_reload.clone()))?;
        registry.register(Box::new(config_info.clone()))?;
        Ok(Self {
            registry,
            requests_total,
            request_duration,
            inflight,
            config_reloads_total,
            config_last_reload,
            config_info,
        })
    }

    /// Records that the config with `hash` went live.
    pub fn config_loaded(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.config_last_reload.set(now);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec only fails on a metric family with no metrics, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// `2xx`, `4xx`... for a status.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
