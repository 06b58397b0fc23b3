//! A cooldown: "do not use this until T". Set by outcomes (a 429 on a key, an auth failure, an
//! overloaded model); read on the hot path with one atomic load.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::clock::nanos;

pub(super) use crate::config::CooldownConfig;

/// One cooldown gate.
#[derive(Debug, Default)]
pub struct Cooldown {
    /// Clock reading until which it cools; 0: not cooling.
    until: AtomicU64,
    /// Consecutive strikes without a success, for the doubling.
    strikes: AtomicU32,
}

impl Cooldown {
    /// Whether it is cooling at `now`.
    pub fn is_cooling(&self, now: u64) -> bool {
        self.until.load(Ordering::Acquire) > now
    }

    /// Time left, if cooling.
    pub fn remaining(&self, now: u64) -> Option<Duration> {
        let until = self.until.load(Ordering::Acquire);
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Cools for exactly `d` from `now` (never shortens a longer cooldown).
    pub fn cool_for(&self, now: u64, d: Duration) {
        self.until.fetch_max(now.saturating_add(nanos(d)), Ordering::AcqRel);
    }

    /// A rate-limit strike: cools for `retry_after` when the provider said (capped at `max`),
    /// else for `default` doubled per consecutive strike, up to `max`. Returns the duration.
    pub fn strike(&self, now: u64, cfg: &CooldownConfig, retry_after: Option<Duration>) -> Duration {
        let strikes = self.strikes.fetch_add(1, Ordering::AcqRel);
        let d = match retry_after {
            Some(ra) => ra,
            None => cfg.default.saturating_mul(1u32 << strikes.min(16)),
        }
        .min(cfg.max);
        self.cool_for(now, d);
        d
    }

    /// A success: the doubling starts over.
    pub fn reset(&self) {
        if self.strikes.load(Ordering::Relaxed) != 0 {
            self.strikes.store(0, Ordering::Relaxed);
        }
    }

    /// Clears the cooldown (admin reset).
    pub fn clear(&self) {
        self.until.store(0, Ordering::Release);
        self.strikes.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::super::clock::Clock;
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_then_expires() {
        let clock = Clock::new();
        let c = Cooldown::default();
        let cfg = CooldownConfig::default();
        assert!(!c.is_cooling(clock.now()));
        assert_eq!(c.strike(clock.now(), &cfg, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert!(c.is_cooling(clock.now()));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(c.is_cooling(clock.now()));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!c.is_cooling(clock.now()));
    }

    #[tokio::test(start_paused = true)]
    async fn doubles_without_retry_after_up_to_max() {
        let clock = Clock::new();
        let c = Cooldown::default();
        let cfg = CooldownConfig {
            default: Duration::from_secs(5),
            max: Duration::from_secs(15),
            ..Default::default()
        };
        let now = clock.now();
        assert_eq!(c.strike(now, &cfg, None), Duration::from_secs(5));
        assert_eq!(c.strike(now, &cfg, None), Duration::from_secs(10));
        assert_eq!(c.strike(now, &cfg, None), Duration::from_secs(15));
        assert_eq!(c.strike(now, &cfg, Some(Duration::from_secs(60))), Duration::from_secs(15));
        c.reset();
        c.clear();
        assert_eq!(c.strike(now, &cfg, None), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn never_shortens() {
        let clock = Clock::new();
        let c = Cooldown::default();
        c.cool_for(clock.now(), Duration::from_secs(10));
        c.cool_for(clock.now(), Duration::from_secs(1));
        assert_eq!(c.remaining(clock.now()), Some(Duration::from_secs(10)));
    }
}
