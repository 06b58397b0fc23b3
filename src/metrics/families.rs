//! The one registry, and (in tests) what was registered in it: each family's name, type, help
//! and label names, in registration order. The README's metrics table is checked against this
//! list (a family with no series yet is left out of a scrape, so a scrape cannot be the list).

#[cfg(test)]
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
#[cfg(test)]
use prometheus::proto::MetricType;

/// One registered metric family.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    /// Its name.
    pub(crate) name: String,
    /// `counter`, `gauge` or `histogram`.
    pub(crate) kind: &'static str,
    /// Its HELP text.
    pub(crate) help: String,
    /// Its label names, in order.
    pub(crate) labels: Vec<String>,
}

/// A [`prometheus::Registry`] that keeps the list of what it holds.
#[derive(Debug, Clone, Default)]
pub(super) struct Registered {
    registry: prometheus::Registry,
    #[cfg(test)]
    families: Arc<Mutex<Vec<Described>>>,
}

impl Registered {
    /// Registers `c` (a handle: the registry keeps a clone) and lists its families.
    pub(super) fn register<C: Collector + Clone + 'static>(&self, c: &C) -> prometheus::Result<()> {
        #[cfg(test)]
        let described = describe(c);
        self.registry.register(Box::new(c.clone()))?;
        #[cfg(test)]
        if let Ok(mut families) = self.families.lock() {
            families.extend(described);
        }
        Ok(())
    }

    /// Every series now, by family.
    pub(super) fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }

    /// The families registered so far.
    #[cfg(test)]
    pub(super) fn families(&self) -> Vec<Described> {
        self.families.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
fn describe(c: &dyn Collector) -> Vec<Described> {
    // The type is in what the collector collects (an empty family keeps its type).
    let collected = c.collect();
    c.desc()
        .into_iter()
        .map(|d| Described {
            name: d.fq_name.clone(),
            kind: collected
                .iter()
                .find(|mf| mf.name() == d.fq_name)
                .map_or("untyped", |mf| kind(mf.get_field_type())),
            help: d.help.clone(),
            labels: d.variable_labels.clone(),
        })
        .collect()
}

#[cfg(test)]
fn kind(t: MetricType) -> &'static str {
    match t {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "untyped",
    }
}
