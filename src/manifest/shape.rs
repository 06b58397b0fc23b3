//! The front's manifest as it is published (OmniRoute's `open-sse/config/providerPluginManifest.ts`,
//! served at `GET /api/v1/provider-plugin-manifest`), and its check into a [`Catalog`].
//!
//! ```json
//! {"schemaVersion": 1, "generatedFrom": "open-sse/config/providers",
//!  "providers": [{"id": "openai", "alias": "oa", "format": "openai", "executor": "default",
//!                 "auth": {"type": "apikey", "header": "authorization", "prefix": "Bearer "},
//!                 "endpoints": {"baseUrl": "https://api.openai.com/v1"},
//!                 "capabilities": [], "passthroughModels": false,
//!                 "models": [{"id": "gpt-4o", "name": "GPT-4o"}],
//!                 "sidecar": {"eligible": true, "reasons": []}}]}
//! ```
//!
//! Only `schemaVersion`, `id`, `alias`, `models[].id`, `passthroughModels` and
//! `sidecar.eligible` are read. `auth`, `endpoints` (every base URL) and the rest are not even
//! decoded: a manifest cannot give tier1 a host or a credential.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::{Catalog, Entry};

/// The one schema version understood.
pub(super) const SCHEMA_VERSION: u64 = 1;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    schema_version: u64,
    providers: Vec<WireProvider>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireProvider {
    id: String,
    alias: Option<String>,
    #[serde(default)]
    models: Vec<WireModel>,
    #[serde(default)]
    passthrough_models: bool,
    /// Absent (fronts before the sidecar field): eligible.
    sidecar: Option<WireSidecar>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
}

#[derive(Deserialize)]
struct WireSidecar {
    eligible: bool,
}

/// Why a manifest body was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Invalid {
    /// Not JSON of the manifest's shape.
    #[error("not a provider manifest: {0}")]
    Shape(#[from] serde_json::Error),
    /// Another schema version.
    #[error("schemaVersion {0} (only {SCHEMA_VERSION} is understood)")]
    Version(u64),
    /// A provider without an id.
    #[error("providers[{0}] has an empty id")]
    EmptyId(usize),
}

/// Checks a manifest body and indexes it by provider id and alias.
pub(crate) fn parse(body: &[u8]) -> Result<Catalog, Invalid> {
    let wire: Wire = serde_json::from_slice(body)?;
    if wire.schema_version != SCHEMA_VERSION {
        return Err(Invalid::Version(wire.schema_version));
    }
    let mut names = HashMap::new();
    let mut ineligible = HashSet::new();
    let mut entries = Vec::with_capacity(wire.providers.len());
    for (i, p) in wire.providers.into_iter().enumerate() {
        if p.id.is_empty() {
            return Err(Invalid::EmptyId(i));
        }
        let alias = p.alias.filter(|a| !a.is_empty() && *a != p.id).map(String::into_boxed_str);
        let eligible = p.sidecar.is_none_or(|s| s.eligible);
        let id: Box<str> = p.id.into();
        for name in std::iter::once(&id).chain(alias.as_ref()) {
            // The first entry to claim a name keeps it.
            names.entry(name.clone()).or_insert(entries.len());
            if !eligible {
                ineligible.insert(name.clone());
            }
        }
        let models = p.models.into_iter().map(|m| m.id.into_boxed_str()).collect();
        entries.push(Entry { id, alias, models, passthrough: p.passthrough_models });
    }
    Ok(Catalog { names, entries, ineligible })
}
