//! `[[routes]]`: names, the models each serves (an exact name served twice is an error), targets
//! and their weights, costs and deployments, the strategy, retry, hedging and affinity.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::{Problems, first_token, positive, retry, secs};
use crate::config::raw::{RawAffinity, RawRoute, RawTarget};
use crate::config::{Affinity, ResilienceConfig, RouteConfig, SessionFrom, Strategy, TargetConfig};

pub(super) fn routes(
    raw: &[RawRoute],
    providers: &BTreeMap<&str, usize>,
    resilience: &ResilienceConfig,
    p: &mut Problems,
) -> Vec<RouteConfig> {
    let mut route_names = HashSet::new();
    let mut exact_models: BTreeMap<String, String> = BTreeMap::new();
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("routes[{i}]");
            let name = r.name.clone().unwrap_or_default();
            if name.is_empty() {
                p.push(format!("{at}.name"), "missing");
            } else if !route_names.insert(name.clone()) {
                p.push(format!("{at}.name"), format!("duplicate route name {name:?}"));
            }
            models(&at, &name, &r.models, &mut exact_models, p);
            if r.targets.is_empty() {
                p.push(format!("{at}.targets"), "a route needs at least one target");
            }
            let targets = r
                .targets
                .iter()
                .enumerate()
                .filter_map(|(j, t)| target(&format!("{at}.targets[{j}]"), t, providers, p))
                .collect();
            let strategy = match r.strategy.as_deref() {
                None => Strategy::Priority,
                Some(s) => Strategy::parse(s).unwrap_or_else(|| {
                    p.push(format!("{at}.strategy"), format!("unknown strategy {s:?} ({})", Strategy::NAMES));
                    Strategy::Priority
                }),
            };
            let retry = retry(r.retry.as_ref(), &format!("{at}.retry"), &resilience.default_retry, p);
            let hedge_after =
                r.hedge_after.as_deref().map(|h| positive(p, &format!("{at}.hedge_after"), Some(h), secs(1)));
            let stream_resume = r.stream_resume.unwrap_or(false);
            // A route's own deadline for its targets' first tokens; each attempt still stops at
            // its provider's `request_timeout`.
            let first_token_timeout =
                r.first_token_timeout.as_ref().map(|f| first_token(p, &at, f, secs(120), Duration::MAX));
            let wait_for_cooldown = p.duration(
                &format!("{at}.wait_for_cooldown"),
                r.wait_for_cooldown.as_deref(),
                resilience.wait_for_cooldown,
            );
            let affinity = r.affinity.as_ref().map(|a| affinity(&format!("{at}.affinity"), a, p));
            RouteConfig {
                name,
                models: r.models.clone(),
                targets,
                strategy,
                retry,
                hedge_after,
                stream_resume,
                first_token_timeout,
                wait_for_cooldown,
                affinity,
            }
        })
        .collect()
}

/// Messages after the system prompt hashed by `session = "prompt"` when not set: the first user
/// message is in every turn of a conversation from its first, the later ones are not.
const PROMPT_MESSAGES: usize = 1;

/// The bounded-load factor when not set.
const LOAD_BOUND: f64 = 1.25;

/// A route's `affinity`: a known session source (a `header:NAME` must be a valid header name),
/// `messages` only with `prompt`, and a load bound of at least 1.
fn affinity(at: &str, a: &RawAffinity, p: &mut Problems) -> Affinity {
    let messages = a.messages.unwrap_or(PROMPT_MESSAGES);
    let session = match a.session.as_deref() {
        None => {
            p.push(format!("{at}.session"), "missing (session, prompt or header:NAME)");
            SessionFrom::Session
        }
        Some("session") => SessionFrom::Session,
        Some("prompt") => SessionFrom::Prompt { messages },
        Some(s) => match s.strip_prefix("header:").map(http::HeaderName::try_from) {
            Some(Ok(name)) => SessionFrom::Header(name),
            Some(Err(_)) => {
                p.push(format!("{at}.session"), format!("{s:?} is not a valid header name"));
                SessionFrom::Session
            }
            None => {
                p.push(
                    format!("{at}.session"),
                    format!("unknown source {s:?} (session, prompt or header:NAME)"),
                );
                SessionFrom::Session
            }
        },
    };
    if a.messages.is_some() && !matches!(session, SessionFrom::Prompt { .. }) {
        p.push(format!("{at}.messages"), "only with session = \"prompt\"");
    }
    let load_bound = a.load_bound.unwrap_or(LOAD_BOUND);
    if !(load_bound >= 1.0 && load_bound.is_finite()) {
        p.push(format!("{at}.load_bound"), "must be a number >= 1");
    }
    Affinity { session, load_bound: if load_bound.is_finite() { load_bound.max(1.0) } else { LOAD_BOUND } }
}

/// A route's `models`: not empty, and an exact name served by one route only (`exact_models`:
/// the names seen so far, and their route).
fn models(
    at: &str,
    name: &str,
    models: &[String],
    exact_models: &mut BTreeMap<String, String>,
    p: &mut Problems,
) {
    for (j, m) in models.iter().enumerate() {
        if m.is_empty() {
            p.push(format!("{at}.models[{j}]"), "empty model name");
        } else if crate::config::is_glob(m) {
            continue;
        } else if let Some(other) = exact_models.insert(m.clone(), name.to_owned())
            && other != name
        {
            p.push(format!("{at}.models[{j}]"), format!("model {m:?} is already served by route {other:?}"));
        }
    }
}

/// One target: a known provider, a model, a weight of at least 1, costs >= 0 and a path-safe
/// deployment name.
fn target(
    tp: &str,
    t: &RawTarget,
    providers: &BTreeMap<&str, usize>,
    p: &mut Problems,
) -> Option<TargetConfig> {
    let model = t.model.clone().unwrap_or_default();
    if model.is_empty() {
        p.push(format!("{tp}.model"), "missing");
    }
    match t.provider.as_deref() {
        None => {
            p.push(format!("{tp}.provider"), "missing");
            None
        }
        Some(pn) => match providers.get(pn) {
            Some(&provider) => {
                if t.weight == Some(0) {
                    p.push(format!("{tp}.weight"), "must be at least 1");
                }
                let mut cost = |c: Option<f64>, f: &str| match c {
                    Some(v) if !(v >= 0.0 && v.is_finite()) => {
                        p.push(format!("{tp}.{f}"), "must be a cost >= 0");
                        0.0
                    }
                    v => v.unwrap_or(0.0),
                };
                let input_cost = cost(t.input_cost, "input_cost");
                let output_cost = cost(t.output_cost, "output_cost");
                let deployment = t.deployment.clone();
                if deployment.as_deref().is_some_and(|d| {
                    d.is_empty()
                        || !d.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                }) {
                    p.push(format!("{tp}.deployment"), "use letters, digits, '-', '_' and '.'");
                }
                Some(TargetConfig {
                    provider,
                    model,
                    weight: t.weight.unwrap_or(1).max(1),
                    input_cost,
                    output_cost,
                    deployment,
                    context_window: match t.context_window {
                        Some(0) => {
                            p.push(format!("{tp}.context_window"), "must be at least 1 token");
                            None
                        }
                        w => w,
                    },
                })
            }
            None => {
                p.push(format!("{tp}.provider"), format!("unknown provider {pn:?}"));
                None
            }
        },
    }
}
