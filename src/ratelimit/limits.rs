//! Which limits apply to a request or a provider key, and the scope value each counts it under.

use std::sync::Arc;

use http::HeaderMap;

use super::counters::{CounterId, Dim};
use crate::config::{LimitConfig, Scope};
use crate::routing::Glob;

/// What a request is, for the limits.
pub struct Facts<'a> {
    /// Route name (or `direct`).
    pub route: &'a str,
    /// Client-facing model name.
    pub model: &'a str,
    /// Index of the inbound API key used.
    pub api_key: Option<usize>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Estimated tokens.
    pub tokens: u64,
    /// Estimated cost, in micro-USD (for budgets; [`Spend::estimate`]).
    pub micro_usd: f64,
}

/// What a request spends: tokens, and their cost in micro-USD. An estimate at admission, the
/// provider's reported usage at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    /// Input plus output tokens.
    pub tokens: u64,
    /// Cost in micro-USD.
    pub micro_usd: f64,
}

impl Spend {
    /// Nothing spent: what an error refunds to.
    pub const ZERO: Self = Self { tokens: 0, micro_usd: 0.0 };

    /// The cost of `input` and `output` tokens at `costs` (USD per million input and output
    /// tokens, which is micro-USD per token).
    pub fn priced(input: u64, output: u64, costs: (f64, f64)) -> f64 {
        input as f64 * costs.0 + output as f64 * costs.1
    }

    /// A request's estimate before it is sent: prompt bytes / 4 input tokens and `max_tokens`
    /// output tokens ([`estimate_tokens`]), priced at the most expensive of `costs` (any candidate
    /// may end up answering, after a failover).
    pub fn estimate(
        body_len: usize,
        max_tokens: Option<u64>,
        costs: impl IntoIterator<Item = (f64, f64)>,
    ) -> Self {
        let input = body_len as u64 / 4;
        let output = max_tokens.unwrap_or(0);
        let micro_usd = costs.into_iter().map(|c| Self::priced(input, output, c)).fold(0.0, f64::max);
        Self { tokens: estimate_tokens(body_len, max_tokens), micro_usd }
    }
}

/// One request's estimate, in tokens: prompt bytes / 4 plus the requested output ceiling.
/// Saturating: a client's `max_tokens` near `u64::MAX` must not wrap to a tiny estimate that
/// passes every token limit.
pub fn estimate_tokens(body_len: usize, max_tokens: Option<u64>) -> u64 {
    (body_len as u64 / 4).saturating_add(max_tokens.unwrap_or(0))
}

/// The limits a snapshot applies, compiled.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    limits: Vec<Compiled>,
}

/// One limit, with its name, model globs and window length ready for the request path.
#[derive(Debug, Clone)]
pub(super) struct Compiled {
    pub(super) cfg: LimitConfig,
    pub(super) name: Arc<str>,
    models: Vec<Glob>,
    pub(super) window_ms: u64,
}

impl Limits {
    /// Compiles the config's limits.
    pub fn new(limits: &[LimitConfig]) -> Self {
        let limits = limits
            .iter()
            .map(|l| Compiled {
                cfg: l.clone(),
                name: Arc::from(l.name.as_str()),
                models: l.models.iter().map(|m| Glob::new(m)).collect(),
                window_ms: u64::try_from(l.per.as_millis()).unwrap_or(60_000).max(1),
            })
            .collect();
        Self { limits }
    }

    /// Adds the config's budgets: limits in micro-USD and/or tokens over fixed windows.
    #[must_use]
    pub fn with_budgets(mut self, budgets: &[LimitConfig]) -> Self {
        self.limits.extend(Self::new(budgets).limits);
        self
    }

    /// Whether any limit exists.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// The strict limits that apply to a request, as (name, counter, limit, cost) per dimension.
    pub fn strict(&self, facts: &Facts<'_>) -> Vec<(Arc<str>, CounterId, u64, f64)> {
        let spend = Spend { tokens: facts.tokens, micro_usd: facts.micro_usd };
        self.caller(facts)
            .filter(|(c, _)| c.cfg.strict)
            .flat_map(move |(c, key)| {
                c.dims(spend)
                    .map(move |(dim, limit, cost)| (c.name.clone(), c.counter(dim, &key), limit, cost))
            })
            .collect()
    }

    /// The caller limits (every scope but provider keys) that apply to a request, each with the
    /// request's scope value.
    pub(super) fn caller<'a>(
        &'a self,
        facts: &'a Facts<'_>,
    ) -> impl Iterator<Item = (&'a Compiled, Arc<str>)> + 'a {
        self.limits.iter().filter(|c| c.applies(facts.route, facts.model)).filter_map(move |c| {
            let key = match &c.cfg.scope {
                Scope::Global => Arc::from("all"),
                Scope::Route => Arc::from(facts.route),
                Scope::ApiKey => {
                    Arc::from(facts.api_key.map_or_else(|| "none".to_owned(), |i| format!("key{i}")).as_str())
                }
                Scope::Header(h) => Arc::from(scope_value(facts.headers.get(h)).as_str()),
                Scope::ProviderKey => return None,
            };
            Some((c, key))
        })
    }

    /// The limits of provider key `provider`/`key` that apply to `model`.
    pub(super) fn for_key<'a>(
        &'a self,
        provider: &'a str,
        key: &'a str,
        model: &'a str,
    ) -> impl Iterator<Item = &'a Compiled> + 'a {
        self.limits.iter().filter(move |c| {
            c.cfg.scope == Scope::ProviderKey
                && c.cfg.key.as_ref().is_none_or(|(p, k)| p == provider && k == key)
                && c.models_match(model)
        })
    }
}

impl Compiled {
    fn models_match(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|g| g.matches(model))
    }

    fn applies(&self, route: &str, model: &str) -> bool {
        self.models_match(model) && (self.cfg.routes.is_empty() || self.cfg.routes.iter().any(|r| r == route))
    }

    /// The dimensions this limit counts, as (dimension, limit, cost of a request spending
    /// `spend`).
    pub(super) fn dims(&self, spend: Spend) -> impl Iterator<Item = (Dim, u64, f64)> + '_ {
        let req = self.cfg.requests.map(|l| (Dim::Requests, l, 1.0));
        let tok = self.cfg.tokens.map(|l| (Dim::Tokens, l, spend.tokens as f64));
        let usd = self.cfg.micro_usd.map(|l| (Dim::Usd, l, spend.micro_usd));
        req.into_iter().chain(tok).chain(usd)
    }

    /// The first dimension this limit counts: the one whose counter stands for the scope value
    /// among the limit's keys.
    pub(super) fn first_dim(&self) -> Option<Dim> {
        self.dims(Spend::ZERO).next().map(|d| d.0)
    }

    /// The counter of dimension `dim` for scope value `key`.
    pub(super) fn counter(&self, dim: Dim, key: &Arc<str>) -> CounterId {
        CounterId {
            limit: self.name.clone(),
            dim,
            window_ms: self.window_ms,
            key: key.clone(),
            fixed: self.cfg.budget,
        }
    }
}

/// A header value as a scope key: short token-like values as they are; anything else hashed, so a
/// key is bounded and never carries odd bytes into Redis. A missing header is one shared bucket.
pub(super) fn scope_value(v: Option<&http::HeaderValue>) -> String {
    let Some(v) = v else { return "_missing".to_owned() };
    let b = v.as_bytes();
    if !b.is_empty()
        && b.len() <= 64
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return String::from_utf8_lossy(b).into_owned();
    }
    let h = b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, c| (h ^ u64::from(*c)).wrapping_mul(0x100_0000_01b3));
    format!("h{h:016x}")
}
