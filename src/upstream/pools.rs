//! Every provider's pooled client, kept across config snapshots while what it is built from
//! stays the same, so a reload keeps the warm connections (see [`crate::tracked`]).

use super::{BuildError, Client, build, settings};
use crate::config::ProviderConfig;
use crate::tracked::Tracked;

/// A provider's client and the rendering of the settings it was built from.
#[derive(Debug)]
struct Pool {
    settings: String,
    client: Client,
}

/// The pools, by provider name. Owned by [`crate::snapshot::Snapshot`], outside any one snapshot.
#[derive(Debug, Default)]
pub(crate) struct Pools(Tracked<String, Pool>);

impl Pools {
    /// The client of `p`: the one built for the same settings before, else a new one.
    pub(crate) fn client(&self, p: &ProviderConfig) -> Result<Client, BuildError> {
        let wanted = settings(p);
        let fits = |pool: &Pool| pool.settings == wanted;
        let pool = self
            .0
            .try_get_or(p.name.clone(), fits, || Ok(Pool { client: build(p)?, settings: wanted.clone() }))?;
        Ok(pool.client.clone())
    }

    /// A snapshot build starts.
    pub(crate) fn begin_build(&self) {
        self.0.begin();
    }

    /// The new snapshot is live: drops the pools of providers it no longer has (or rebuilt).
    pub(crate) fn commit_build(&self) {
        self.0.commit();
    }

    /// The build failed: keeps every pool.
    pub(crate) fn abort_build(&self) {
        self.0.abort();
    }
}
