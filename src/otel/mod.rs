//! OpenTelemetry traces (`[observability.otlp]`, off by default): a server span per request and a
//! client span per upstream attempt (hedges included), with the GenAI semantic conventions'
//! attributes and tier1's own ([`span`]); the W3C trace context taken from the request and
//! passed on upstream ([`context`]); export over OTLP/HTTP protobuf off the request path, through
//! a bounded queue that drops and counts ([`export`]). Sampling is parent-based: a sampled
//! parent is followed, and a trace tier1 starts is kept at `sample_ratio`.
//!
//! The spans are tier1's own compact records ([`record`]), their attributes written as OTLP
//! protobuf when set, and encoded by hand ([`encode`], checked field by field against the
//! maintained `opentelemetry-proto` types): tracing every request costs 9% more instructions per
//! request than tracing off (`loadtest/profile.sh`: 79.2k against 72.6k). Through the
//! opentelemetry SDK and its OTLP exporter it cost 87% more (the SDK's span objects and attribute
//! `String`s on the request path; in the export task, a conversion of every span into prost
//! messages, cloning each attribute), and through the first records, 24% more (a pass over
//! every attribute in the export task, allocations per record). The `opentelemetry` crate stays
//! for the W3C trace context types ([`context`]).
//!
//! Never exported: prompt or completion content, request or response bodies, headers other than
//! the trace context, keys or any other secret. With the exporter off, nothing here runs: the
//! request path carries `None` and the trace context is neither read nor forwarded.

pub(crate) mod context;
mod encode;
mod export;
mod pb;
mod record;
mod span;

use std::sync::Arc;

pub(crate) use span::{AttemptSpan, Ended, Parent, Propagated, ServerSpan, Target};

use crate::config::OtlpConfig;
use crate::metrics::Metrics;

/// The tracer, when `[observability.otlp]` is on: the sampling ratio, and the buffer ended
/// spans go to.
#[derive(Debug)]
pub(crate) struct Otel {
    ratio: f64,
    buffer: Arc<export::Buffer>,
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("observability.otlp: {0}")]
pub struct BuildError(String);

/// The tracer for `config`, and the export task to run until `stop`.
pub(crate) fn start(
    config: &OtlpConfig,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(Arc<Otel>, impl Future<Output = ()> + Send + 'static), BuildError> {
    metrics.enable_otlp().map_err(|e| BuildError(e.to_string()))?;
    let configured = config.headers.iter().map(|(k, v)| {
        let value =
            http::HeaderValue::from_str(v.expose()).map_err(|e| BuildError(format!("headers.{k}: {e}")))?;
        Ok((k.clone(), value))
    });
    let exporter = export::Exporter {
        client: crate::upstream::Client::web_keeping(config.timeout, 2),
        endpoint: config.endpoint.clone(),
        headers: export::headers(configured.collect::<Result<Vec<_>, BuildError>>()?),
        head: encode::Head::new(&config.service_name, env!("CARGO_PKG_VERSION")),
    };
    let buffer = export::Buffer::new(config.max_queue, metrics);
    let task = export::run(buffer.clone(), exporter, (config.interval, config.timeout), stop);
    Ok((Arc::new(Otel { ratio: config.sample_ratio, buffer }), task))
}
