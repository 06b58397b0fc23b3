//! `[providers.<name>]`: the kind and its base URL rule, keys, headers, timeouts and files.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::{Problems, first_token, positive, secs};
use crate::config::raw::{RawConcurrency, RawKey, RawProvider};
use crate::config::secret::{Env, resolve};
use crate::config::{Adaptive, Behavior, Concurrency, KeyConfig, ProviderConfig, ProviderKind};
use crate::providers::{anthropic, azure, bedrock};

mod aws;
mod google;

/// A provider name must not contain `/`, since `provider/model` splits on the first one.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(super) fn provider(name: &str, rp: &RawProvider, env: &dyn Env, p: &mut Problems) -> ProviderConfig {
    let at = format!("providers.{name}");
    if !valid_name(name) {
        p.push(&at, "provider names use only letters, digits, '-', '_' and '.'");
    }
    let kind = kind(&at, rp.kind.as_deref(), p);
    let Place { region, project, location, base_url } = place(&at, kind, rp, p);
    let mut keys = keys(&at, &rp.keys, env, p);
    aws::credentials(&at, (kind.spec().signed(), region.as_deref()), rp, &mut keys, env, p);
    google::credentials(&at, kind, rp, &mut keys, env, p);
    let headers = headers(&at, &rp.headers, env, p);
    let mock = rp.mock.as_ref().map_or_else(Behavior::default, |m| m.validate(&format!("{at}.mock"), p));
    if rp.mock.is_some() && !kind.in_process() {
        p.push(format!("{at}.mock"), "only a kind = \"mock\" provider takes mock settings");
    }
    let concurrency = concurrency(p, &at, rp.max_inflight, rp.concurrency.as_ref());
    let request_timeout =
        positive(p, &format!("{at}.request_timeout"), rp.request_timeout.as_deref(), secs(600));
    let first_byte = rp.first_byte_timeout.as_deref();
    let first_token_timeout =
        rp.first_token_timeout.as_ref().map(|f| first_token(p, &at, f, request_timeout, request_timeout));
    ProviderConfig {
        name: name.to_owned(),
        kind,
        base_url,
        connect_timeout: positive(
            p,
            &format!("{at}.connect_timeout"),
            rp.connect_timeout.as_deref(),
            secs(2),
        ),
        request_timeout,
        concurrency,
        queue_timeout: p.duration(
            &format!("{at}.queue_timeout"),
            rp.queue_timeout.as_deref(),
            Duration::ZERO,
        ),
        first_byte_timeout: positive(p, &format!("{at}.first_byte_timeout"), first_byte, request_timeout)
            .min(request_timeout),
        first_token_timeout,
        idle_timeout: positive(p, &format!("{at}.idle_timeout"), rp.idle_timeout.as_deref(), secs(120)),
        max_event_bytes: rp.max_event_bytes.unwrap_or(1024 * 1024).max(1024),
        anthropic_version: rp
            .anthropic_version
            .clone()
            .unwrap_or_else(|| anthropic::DEFAULT_VERSION.to_owned()),
        default_max_tokens: rp.default_max_tokens.unwrap_or(4096).max(1),
        prefill: rp.prefill.unwrap_or(false),
        api_version: rp.api_version.clone().unwrap_or_else(|| azure::DEFAULT_API_VERSION.to_owned()),
        region,
        project,
        location,
        pool_idle_timeout: p.duration(
            &format!("{at}.pool_idle_timeout"),
            rp.pool_idle_timeout.as_deref(),
            secs(90),
        ),
        max_idle_connections: rp.max_idle_connections.unwrap_or(64),
        ca_file: rp.ca_file.as_ref().map(PathBuf::from),
        client_cert: match (&rp.client_cert, &rp.client_key) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => {
                p.push(format!("{at}.client_cert"), "client_cert and client_key go together");
                None
            }
        },
        headers,
        models: rp.models.clone(),
        keys,
        mock,
    }
}

/// Where a provider is: its region (`bedrock`), project and location (`vertex`), and its base
/// URL.
struct Place {
    region: Option<String>,
    project: Option<String>,
    location: Option<String>,
    base_url: Option<Uri>,
}

fn place(at: &str, kind: ProviderKind, rp: &RawProvider, p: &mut Problems) -> Place {
    let region = region(at, kind, rp.region.as_deref(), p);
    let (project, location) = google::place(at, kind, rp, p);
    // The kind's rule: a default, required, regional, located, or (in process) refused.
    let base_url = match kind.base_url(rp.base_url.as_deref(), region.as_deref().or(location.as_deref())) {
        Ok(raw) => raw.and_then(|raw| base_url(&format!("{at}.base_url"), &raw, p)),
        Err(message) => {
            p.push(format!("{at}.base_url"), message);
            None
        }
    };
    Place { region, project, location, base_url }
}

/// `region`: required by a regional kind (a valid host label), refused by the others.
fn region(at: &str, kind: ProviderKind, raw: Option<&str>, p: &mut Problems) -> Option<String> {
    let regional = matches!(kind.spec().base_url(), crate::providers::BaseUrl::Regional(_));
    match raw {
        None if regional => {
            p.push(
                format!("{at}.region"),
                format!("missing (a {} provider signs for a region, e.g. \"us-east-1\")", kind.as_str()),
            );
            None
        }
        None => None,
        Some(_) if !regional => {
            p.push(format!("{at}.region"), format!("a {} provider takes no region", kind.as_str()));
            None
        }
        Some(r) if bedrock::valid_region(r) => Some(r.to_owned()),
        Some(r) => {
            p.push(format!("{at}.region"), format!("{r:?} is not a region name (like \"us-east-1\")"));
            None
        }
    }
}

/// `kind`: one the registry knows.
fn kind(at: &str, raw: Option<&str>, p: &mut Problems) -> ProviderKind {
    match raw {
        Some(name) => ProviderKind::parse(name).unwrap_or_else(|| {
            let want = ProviderKind::names();
            p.push(format!("{at}.kind"), format!("unknown provider kind {name:?} (want {want})"));
            ProviderKind::default()
        }),
        None => {
            p.push(format!("{at}.kind"), "missing (openai or mock)");
            ProviderKind::default()
        }
    }
}

/// `keys`: unique names, resolved secrets, weights and limits of at least 1.
fn keys(at: &str, raw: &[RawKey], env: &dyn Env, p: &mut Problems) -> Vec<KeyConfig> {
    let mut key_names = HashSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(i, k)| {
            let kp = format!("{at}.keys[{i}]");
            let name = k.name.clone().unwrap_or_else(|| format!("key{i}"));
            if !key_names.insert(name.clone()) {
                p.push(format!("{kp}.name"), format!("duplicate key name {name:?}"));
            }
            let Some(secret_ref) = k.secret.as_deref() else {
                p.push(format!("{kp}.secret"), "missing");
                return None;
            };
            match resolve(secret_ref, env) {
                Ok(secret) => {
                    if k.weight == Some(0) {
                        p.push(format!("{kp}.weight"), "must be at least 1");
                    }
                    let concurrency = concurrency(p, &kp, k.max_inflight, k.concurrency.as_ref());
                    Some(KeyConfig {
                        name,
                        secret,
                        weight: k.weight.unwrap_or(1).max(1),
                        models: k.models.clone(),
                        concurrency,
                        rpm: k.rpm,
                        tpm: k.tpm,
                        access_key_id: aws::access_key_id(&kp, k, env, p),
                        session_token: aws::session_token(&kp, k, env, p),
                        aws: None,
                        google: None,
                    })
                }
                Err(e) => {
                    p.push(format!("{kp}.secret"), e);
                    None
                }
            }
        })
        .collect()
}

/// `headers`: valid names and values; those from `env:`/`file:` references are secrets.
fn headers(
    at: &str,
    raw: &std::collections::BTreeMap<String, String>,
    env: &dyn Env,
    p: &mut Problems,
) -> Vec<(HeaderName, HeaderValue)> {
    raw.iter()
        .filter_map(|(hn, hv)| {
            let hp = format!("{at}.headers.{hn}");
            let Ok(name) = HeaderName::from_bytes(hn.as_bytes()) else {
                p.push(hp, "invalid header name");
                return None;
            };
            let value = resolve(hv, env).map_err(|e| p.push(hp.clone(), e)).ok()?;
            let Ok(mut value) = HeaderValue::from_str(value.expose()) else {
                p.push(hp, "invalid header value");
                return None;
            };
            // Values from env:/file: references are secrets (redacted, never logged); literals are not.
            value.set_sensitive(hv.starts_with("env:") || hv.starts_with("file:"));
            Some((name, value))
        })
        .collect()
}

fn base_url(path: &str, raw: &str, p: &mut Problems) -> Option<Uri> {
    let trimmed = raw.trim_end_matches('/');
    let uri: Uri = match trimmed.parse() {
        Ok(u) => u,
        Err(e) => {
            p.push(path, format!("invalid URL {raw:?}: {e}"));
            return None;
        }
    };
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) if uri.query().is_none() => Some(uri),
        _ => {
            p.push(path, format!("invalid URL {raw:?}: want http(s)://host[:port][/path] without a query"));
            None
        }
    }
}

/// The concurrency limit at `at`: `max_inflight` (at least 1), or `concurrency = "adaptive"`
/// between `min` (default 1) and `max` (default `max_inflight`, else 256).
fn concurrency(
    p: &mut Problems,
    at: &str,
    max_inflight: Option<u32>,
    raw: Option<&RawConcurrency>,
) -> Option<Concurrency> {
    if max_inflight == Some(0) {
        p.push(format!("{at}.max_inflight"), "must be at least 1");
    }
    let fixed = max_inflight.map(|n| Concurrency::Fixed(n.max(1)));
    let (mode, min, max) = match raw {
        None => return fixed,
        Some(RawConcurrency::Mode(m)) => (Some(m.as_str()), None, None),
        Some(RawConcurrency::Table(t)) => (t.mode.as_deref(), t.min, t.max),
    };
    match mode.unwrap_or("adaptive") {
        "fixed" => fixed,
        "adaptive" => {
            let min = min.unwrap_or(1);
            let max = max.or(max_inflight).unwrap_or(256);
            if min == 0 || max < min {
                p.push(format!("{at}.concurrency"), "needs 1 <= min <= max");
            }
            Some(Concurrency::Adaptive(Adaptive { min: min.max(1), max: max.max(min).max(1) }))
        }
        other => {
            p.push(format!("{at}.concurrency"), format!("unknown mode {other:?} (adaptive or fixed)"));
            fixed
        }
    }
}
