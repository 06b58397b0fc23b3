//! OpenTelemetry traces (`[observability.otlp]`, off by default): a server span per request and a
//! client span per upstream attempt (hedges included), with the GenAI semantic conventions'
//! attributes and tier1's own ([`span`]); the W3C trace context taken from the request and
//! passed on upstream ([`context`]); export over OTLP/HTTP protobuf off the request path, through
//! a bounded queue that drops and counts ([`export`]). Sampling is parent-based: a sampled
//! parent is followed, and a trace tier1 starts is kept at `sample_ratio`.
//!
//! Never exported: prompt or completion content, request or response bodies, headers other than
//! the trace context, keys or any other secret. With the exporter off, nothing here runs: the
//! request path carries `None` and the trace context is neither read nor forwarded.

pub(crate) mod context;
mod export;
mod span;

use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

pub(crate) use span::{AttemptSpan, Ended, Parent, Propagated, ServerSpan, Target};

use crate::config::OtlpConfig;
use crate::metrics::Metrics;

/// The tracer, when `[observability.otlp]` is on.
#[derive(Debug)]
pub(crate) struct Otel {
    tracer: SdkTracer,
    /// Keeps the tracer's pipeline alive.
    _provider: SdkTracerProvider,
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
    let headers =
        config.headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.expose().to_owned())).collect();
    let transport = export::Transport(crate::upstream::Client::web_keeping(config.timeout, 2));
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(transport)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(config.endpoint.to_string())
        .with_timeout(config.timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| BuildError(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
    let buffer = export::Buffer::new(config.max_queue, metrics);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(export::Queue(buffer.clone()))
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("tier1");
    let task = export::run(buffer, exporter, (config.interval, config.timeout), stop);
    Ok((Arc::new(Otel { tracer, _provider: provider }), task))
}
