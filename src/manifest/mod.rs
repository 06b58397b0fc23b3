//! The front's provider manifest as a catalog source (opt-in: `[front] manifest_url`).
//!
//! OmniRoute publishes its providers at `GET /api/v1/provider-plugin-manifest` ([`shape`]) and
//! names it in `X-OmniRoute-Provider-Manifest-Url` ([`Manifest::learn`]: opt-in, for a trusted
//! front). A background task ([`fetch`]) keeps the last good copy here; the request path reads it
//! with one atomic load ([`Manifest::load`]), no lock, no await. The copy lives outside the
//! config snapshot, so a reload neither drops nor waits for it.
//!
//! What a manifest may do, and nothing more:
//! - **map** the front's names onto configured providers: `P/M`, where `P` is an entry's `alias`
//!   or `id`, is routed as `provider/M` to the configured tier1 provider named as the entry's
//!   `id` (or else its `alias`), when `M` is one of the entry's `models[].id` (with or without the
//!   `P/` prefix) or the entry has `passthroughModels`. tier1's own names (routes and
//!   `provider/model`) come first: the manifest only answers names tier1 does not know.
//! - **refuse**: a provider whose entry says `sidecar.eligible: false` (by id or alias, matched
//!   against tier1's provider names) is not tried; a request left with no candidate gets 404
//!   `provider_not_eligible`.
//!
//! It never adds a provider, a host or a credential: entries naming no configured provider map
//! nothing, and `endpoints`/`auth` are not read.

mod fetch;
mod shape;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

pub(crate) use fetch::watch;

/// One checked manifest, indexed.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Entry id and alias → index in `entries`.
    names: HashMap<Box<str>, usize>,
    entries: Vec<Entry>,
    /// Ids and aliases of the entries not eligible for a sidecar.
    ineligible: HashSet<Box<str>>,
}

/// One provider of the manifest, as far as tier1 reads it.
#[derive(Debug)]
struct Entry {
    id: Box<str>,
    alias: Option<Box<str>>,
    models: HashSet<Box<str>>,
    passthrough: bool,
}

impl Catalog {
    /// The configured provider and upstream model the front's `model` stands for, if any:
    /// `configured` says whether tier1 has a provider of that name.
    pub(crate) fn map<'m>(
        &self,
        model: &'m str,
        configured: impl Fn(&str) -> bool,
    ) -> Option<(&str, &'m str)> {
        let (prefix, rest) = model.split_once('/')?;
        let entry = self.entries.get(*self.names.get(prefix)?)?;
        let listed = entry.models.contains(rest) || entry.models.contains(model);
        if rest.is_empty() || !(listed || entry.passthrough) {
            return None;
        }
        let provider = std::iter::once(&entry.id).chain(entry.alias.as_ref()).find(|n| configured(n))?;
        Some((provider, rest))
    }

    /// Whether the manifest marks tier1's provider `name` not eligible.
    pub(crate) fn ineligible(&self, name: &str) -> bool {
        self.ineligible.contains(name)
    }

    /// The front's names for the models it maps onto configured, eligible providers
    /// (`alias/model`, else `id/model`), each with the provider that serves it: what
    /// `GET /v1/models` adds for the front's model sync. Sorted, for a stable list.
    pub(crate) fn model_ids(&self, configured: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut ids = Vec::new();
        for e in &self.entries {
            let names = || std::iter::once(&e.id).chain(e.alias.as_ref());
            let Some(provider) = names().find(|n| configured(n)) else { continue };
            if names().any(|n| self.ineligible(n)) {
                continue;
            }
            let prefix = e.alias.as_ref().unwrap_or(&e.id);
            ids.extend(e.models.iter().map(|m| (format!("{prefix}/{m}"), provider.to_string())));
        }
        ids.sort();
        ids
    }
}

/// `body` (the snapshot's `GET /v1/models` list) with the front's names from `catalog` added
/// after tier1's own, each once.
pub(crate) fn models_body(
    body: &bytes::Bytes,
    catalog: &Catalog,
    configured: impl Fn(&str) -> bool,
) -> bytes::Bytes {
    let Ok(mut list) = serde_json::from_slice::<serde_json::Value>(body) else { return body.clone() };
    let Some(data) = list.get_mut("data").and_then(serde_json::Value::as_array_mut) else {
        return body.clone();
    };
    let created = data.first().map_or(serde_json::Value::from(0), |m| m["created"].clone());
    let known: HashSet<String> = data.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect();
    for (id, owner) in catalog.model_ids(configured) {
        if !known.contains(&id) {
            data.push(
                serde_json::json!({"id": id, "object": "model", "created": created, "owned_by": owner}),
            );
        }
    }
    serde_json::to_vec(&list).map_or_else(|_| body.clone(), bytes::Bytes::from)
}

/// The front's header naming its manifest (`[front] manifest_from_header`).
pub(crate) const X_OMNIROUTE_PROVIDER_MANIFEST_URL: &str = "x-omniroute-provider-manifest-url";

/// The last good manifest, when it was last confirmed, and the URL learned from the front.
#[derive(Debug)]
pub(crate) struct Manifest {
    current: ArcSwapOption<Catalog>,
    /// The first valid URL an authenticated request named (kept to the end of the process).
    learned: std::sync::OnceLock<http::Uri>,
    /// Wakes the fetch task when a URL is learned.
    wake: tokio::sync::Notify,
    born: tokio::time::Instant,
    /// Milliseconds after `born` of the last good fetch (a 304 counts); `u64::MAX`: none yet.
    good_ms: AtomicU64,
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            learned: std::sync::OnceLock::new(),
            wake: tokio::sync::Notify::new(),
            born: tokio::time::Instant::now(),
            good_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl Manifest {
    /// The current copy (`None`: no manifest, or none fetched yet): one atomic load.
    pub(crate) fn load(&self) -> arc_swap::Guard<Option<std::sync::Arc<Catalog>>> {
        self.current.load()
    }

    /// With `manifest_from_header` and no `manifest_url`: learns the URL from the first
    /// authenticated request that names a valid one (`headers` of a request past the API key
    /// check). Once learned, one atomic load and nothing else.
    pub(crate) fn learn(&self, front: &crate::config::FrontConfig, headers: &http::HeaderMap) {
        if !front.manifest_from_header || front.manifest_url.is_some() || self.learned.get().is_some() {
            return;
        }
        let Some(uri) = headers
            .get(X_OMNIROUTE_PROVIDER_MANIFEST_URL)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<http::Uri>().ok())
            .filter(crate::config::is_fetchable)
        else {
            return;
        };
        if self.learned.set(uri).is_ok() {
            tracing::info!("learned the front's provider manifest URL from its request header");
            self.wake.notify_one();
        }
    }

    /// The URL to fetch: the configured one, else the learned one (when allowed).
    fn url(&self, front: &crate::config::FrontConfig) -> Option<http::Uri> {
        front
            .manifest_url
            .clone()
            .or_else(|| front.manifest_from_header.then(|| self.learned.get().cloned())?)
    }

    /// Replaces the copy (`None`: manifest turned off).
    fn store(&self, catalog: Option<Catalog>) {
        if catalog.is_none() {
            self.good_ms.store(u64::MAX, Ordering::Release);
        }
        self.current.store(catalog.map(std::sync::Arc::new));
    }

    /// The copy was just fetched or confirmed.
    fn confirmed(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.good_ms.store(ms, Ordering::Release);
    }

    /// Seconds since the last good fetch; `None` before the first.
    pub(crate) fn age(&self) -> Option<f64> {
        let good = self.good_ms.load(Ordering::Acquire);
        (good != u64::MAX).then(|| {
            let now = self.born.elapsed().as_millis() as f64;
            ((now - good as f64) / 1000.0).max(0.0)
        })
    }
}

#[cfg(test)]
mod tests;
