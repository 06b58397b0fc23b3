//! A key's rests for single models. Providers rate-limit per model (OpenAI's and Anthropic's
//! limits, Gemini's quotas, Azure's deployments), so a 429 on one model rests (key, model) and
//! the key keeps serving its other models; only a 429 that says the key itself is out of quota
//! rests the whole key (its [`super::Cooldown`]).
//!
//! Read on the hot path for every usable key: one atomic load while nothing rests, a short lock
//! (never across `.await`) only while something does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cooldown::{Cooldown, CooldownConfig};

/// Models of one key with a rest of their own, at most; past it a model's 429 rests the key.
pub(super) const KEY_MODELS: usize = 64;

/// One key's per-model rests.
#[derive(Debug, Default)]
pub struct ModelRests {
    /// The latest end of any rest (clock nanoseconds): while `now` is past it nothing rests, and
    /// the map is not looked at.
    latest: AtomicU64,
    map: Mutex<HashMap<Box<str>, Cooldown>>,
}

impl ModelRests {
    /// Time left on `model`'s rest, if it rests at `now`.
    pub fn remaining(&self, model: &str, now: u64) -> Option<Duration> {
        if self.latest.load(Ordering::Acquire) <= now {
            return None;
        }
        self.map.lock().ok()?.get(model)?.remaining(now)
    }

    /// A rate-limit strike on `model` (see [`Cooldown::strike`]); `None` when the key already
    /// holds [`KEY_MODELS`] rests and the caller must rest the key instead.
    pub fn strike(
        &self,
        model: &str,
        now: u64,
        cfg: &CooldownConfig,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        self.with(model, now, |c| c.strike(now, cfg, retry_after))
    }

    /// Rests `model` for `d` (another replica's rest).
    pub fn cool_for(&self, model: &str, now: u64, d: Duration) {
        let _ = self.with(model, now, |c| {
            c.cool_for(now, d);
            d
        });
    }

    fn with(&self, model: &str, now: u64, f: impl FnOnce(&Cooldown) -> Duration) -> Option<Duration> {
        let mut map = self.map.lock().ok()?;
        if !map.contains_key(model) && map.len() >= KEY_MODELS {
            map.retain(|_, c| c.is_cooling(now));
            if map.len() >= KEY_MODELS {
                return None;
            }
        }
        let d = f(map.entry(model.into()).or_default());
        let until = now.saturating_add(super::clock::nanos(d));
        self.latest.fetch_max(until, Ordering::AcqRel);
        Some(d)
    }

    /// A success on `model`: its strikes start over. Free while no model of the key ever rested.
    pub fn reset(&self, model: &str, now: u64) {
        if self.latest.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            // An answer after the rest ended forgives it entirely.
            if map.get(model).is_some_and(|c| !c.is_cooling(now)) {
                map.remove(model);
            }
            if map.is_empty() {
                self.latest.store(0, Ordering::Release);
            }
        }
    }

    /// The models resting at `now`, with the time left (the admin view).
    pub fn resting(&self, now: u64) -> Vec<(String, Duration)> {
        let Ok(map) = self.map.lock() else { return Vec::new() };
        let mut out: Vec<_> =
            map.iter().filter_map(|(m, c)| Some((m.to_string(), c.remaining(now)?))).collect();
        out.sort();
        out
    }

    /// Clears every rest (admin reset).
    pub fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
            self.latest.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_models_rest_leaves_the_keys_other_models_alone() {
        let (r, cfg) = (ModelRests::default(), CooldownConfig::default());
        assert_eq!(r.strike("a", S, &cfg, Some(Duration::from_secs(7))), Some(Duration::from_secs(7)));
        assert_eq!(r.remaining("a", S), Some(Duration::from_secs(7)));
        assert_eq!(r.remaining("b", S), None);
        assert_eq!(r.remaining("a", 8 * S + 1), None);
        assert_eq!(r.resting(S), [("a".to_owned(), Duration::from_secs(7))]);
        // Strikes double per model, and a success after the rest starts them over.
        let first = r.strike("b", S, &cfg, None).unwrap();
        assert_eq!(r.strike("b", S, &cfg, None), Some(first * 2));
        r.reset("b", 100 * S);
        assert_eq!(r.strike("b", 100 * S, &cfg, None), Some(first));
    }

    #[test]
    fn bounded_and_the_caller_rests_the_key_past_the_bound() {
        let (r, cfg) = (ModelRests::default(), CooldownConfig::default());
        for i in 0..KEY_MODELS {
            assert!(r.strike(&format!("m{i}"), S, &cfg, None).is_some());
        }
        assert_eq!(r.strike("one-more", S, &cfg, None), None);
        // Once the rests end, room is made.
        assert!(r.strike("one-more", 3600 * S, &cfg, None).is_some());
        r.clear();
        assert!(r.resting(3600 * S).is_empty());
    }
}
