//! `[observability]`: the OTLP exporter's endpoint (an `http` or `https` URL with a host), its
//! sampling ratio, headers (secrets), deadlines and queue.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::super::raw::{RawObservability, RawOtlp};
use super::super::{ObservabilityConfig, OtlpConfig};
use super::{Env, Problems, positive, resolve};

/// Where OTLP/HTTP receives traces, below the collector's base URL.
const TRACES_PATH: &str = "/v1/traces";

pub(super) fn observability(raw: &RawObservability, env: &dyn Env, p: &mut Problems) -> ObservabilityConfig {
    ObservabilityConfig {
        server_timing: raw.server_timing.unwrap_or(true),
        otlp: raw.otlp.as_ref().and_then(|o| otlp(o, env, p)),
    }
}

fn otlp(raw: &RawOtlp, env: &dyn Env, p: &mut Problems) -> Option<OtlpConfig> {
    const AT: &str = "observability.otlp";
    let endpoint = match raw.endpoint.as_deref() {
        None => {
            p.push(
                format!("{AT}.endpoint"),
                "is required (the collector's OTLP/HTTP URL, e.g. http://collector:4318)",
            );
            None
        }
        Some(e) => endpoint(e, p),
    };
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        p.push(format!("{AT}.sample_ratio"), "must be between 0 and 1");
    }
    let service_name = raw.service_name.clone().unwrap_or_else(|| "tier1".to_owned());
    if service_name.is_empty() {
        p.push(format!("{AT}.service_name"), "must not be empty");
    }
    let headers = raw
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let at = format!("{AT}.headers.{name}");
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                p.push(at, "invalid header name");
                return None;
            };
            let secret = resolve(value, env).map_err(|e| p.push(at.clone(), e)).ok()?;
            if HeaderValue::from_str(secret.expose()).is_err() {
                p.push(at, "invalid header value");
                return None;
            }
            Some((name, secret))
        })
        .collect();
    let timeout = positive(p, &format!("{AT}.timeout"), raw.timeout.as_deref(), Duration::from_secs(10));
    let interval = positive(p, &format!("{AT}.interval"), raw.interval.as_deref(), Duration::from_secs(2));
    let max_queue = raw.max_queue.unwrap_or(4096);
    if max_queue == 0 {
        p.push(format!("{AT}.max_queue"), "must be at least 1");
    }
    Some(OtlpConfig {
        endpoint: endpoint?,
        sample_ratio,
        service_name,
        headers,
        timeout,
        interval,
        max_queue,
    })
}

/// The traces URL of a collector's base URL (a URL already ending in `/v1/traces` is kept).
fn endpoint(raw: &str, p: &mut Problems) -> Option<Uri> {
    const AT: &str = "observability.otlp.endpoint";
    let base = raw.trim_end_matches('/');
    let url = if base.ends_with(TRACES_PATH) { base.to_owned() } else { format!("{base}{TRACES_PATH}") };
    match url.parse::<Uri>() {
        Ok(u)
            if matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some_and(|h| !h.is_empty())
                && u.query().is_none() =>
        {
            if u.authority().is_some_and(|a| a.as_str().contains('@')) {
                p.push(AT, "must not carry credentials: send them as a header (observability.otlp.headers)");
                return None;
            }
            Some(u)
        }
        Ok(_) => {
            p.push(AT, format!("{raw:?} is not an http:// or https:// URL with a host (and no query)"));
            None
        }
        Err(e) => {
            p.push(AT, format!("invalid URL {raw:?}: {e}"));
            None
        }
    }
}
