//! State kept across config snapshots by stable identity, for as long as the config mentions it:
//! a snapshot build marks what it uses, and once the new snapshot is live, what it did not use is
//! dropped. The runtime state ([`crate::resilience::Registry`]) and the connection pools
//! ([`crate::upstream::Pools`]) are both kept this way. Touched by snapshot builds, never per
//! request.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// A map of state by identity that remembers which identities the current snapshot build used,
/// so that what a new config no longer mentions can be dropped once the new snapshot is live.
#[derive(Debug)]
pub(crate) struct Tracked<K, V> {
    map: Mutex<HashMap<K, Arc<V>>>,
    touched: Mutex<Option<HashSet<K>>>,
}

impl<K, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Self { map: Mutex::new(HashMap::new()), touched: Mutex::new(None) }
    }
}

impl<K: Hash + Eq + Clone, V> Tracked<K, V> {
    /// The state of `key`: kept while `still_fits`, else made anew.
    pub(crate) fn get_or(&self, key: K, still_fits: impl Fn(&V) -> bool, make: impl FnOnce() -> V) -> Arc<V> {
        match self.try_get_or(key, still_fits, || Ok::<V, Infallible>(make())) {
            Ok(v) => v,
        }
    }

    /// [`Self::get_or`] with a `make` that can fail; a failure keeps what was there.
    pub(crate) fn try_get_or<E>(
        &self,
        key: K,
        still_fits: impl Fn(&V) -> bool,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Ok(mut t) = self.touched.lock()
            && let Some(t) = t.as_mut()
        {
            t.insert(key.clone());
        }
        let Ok(mut m) = self.map.lock() else { return make().map(Arc::new) };
        match m.get(&key) {
            Some(v) if still_fits(v) => Ok(v.clone()),
            _ => {
                let v = Arc::new(make()?);
                m.insert(key, v.clone());
                Ok(v)
            }
        }
    }

    /// The state of `key`, if there is one (never creates).
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        self.map.lock().ok().and_then(|m| m.get(key).cloned())
    }

    /// A snapshot build starts: from now on, note which keys it uses.
    pub(crate) fn begin(&self) {
        if let Ok(mut t) = self.touched.lock() {
            *t = Some(HashSet::new());
        }
    }

    /// The build's snapshot is live: drops every entry the build did not touch.
    pub(crate) fn commit(&self) {
        let touched = self.touched.lock().ok().and_then(|mut t| t.take());
        if let (Some(touched), Ok(mut m)) = (touched, self.map.lock()) {
            m.retain(|k, _| touched.contains(k));
        }
    }

    /// The build failed: keeps everything.
    pub(crate) fn abort(&self) {
        if let Ok(mut t) = self.touched.lock() {
            *t = None;
        }
    }

    /// Every entry now.
    pub(crate) fn entries(&self) -> Vec<(K, Arc<V>)> {
        self.map.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Tracked;

    #[test]
    fn a_failed_make_keeps_what_was_there_and_a_commit_drops_the_untouched() {
        let t: Tracked<&str, u32> = Tracked::default();
        t.begin();
        let a = t.get_or("a", |_| true, || 1);
        t.get_or("b", |_| true, || 2);
        t.commit();
        assert_eq!(t.entries().len(), 2);
        // The next build touches only "a", and a failing remake of it keeps the old one.
        t.begin();
        let kept = t.try_get_or("a", |v| *v == 9, || Err::<u32, ()>(()));
        assert_eq!(kept, Err(()));
        assert!(std::sync::Arc::ptr_eq(&a, &t.get(&"a").unwrap_or_default()));
        t.commit();
        let keys: Vec<_> = t.entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a"]);
        // An aborted build drops nothing.
        t.begin();
        t.abort();
        t.commit();
        assert_eq!(t.entries().len(), 1);
    }
}
