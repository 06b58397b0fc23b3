//! The retry budget: extra attempts (retries, fallbacks and hedges alike) may be at most `ratio`
//! of requests over a sliding `window`, plus a floor of `min_per_second` so a quiet route can still
//! retry. When every target fails, this caps the load tier1 adds at `1 + ratio` times the traffic,
//! instead of multiplying it by the number of attempts: no retry storm.

use std::sync::Mutex;

pub(crate) use crate::config::BudgetConfig;

const BUCKETS: usize = 10;

#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    /// Which slot of time this bucket holds (clock / bucket width).
    slot: u64,
    requests: u32,
    retries: u32,
}

/// A sliding-window retry budget (ten buckets).
#[derive(Debug)]
pub struct RetryBudget {
    cfg: BudgetConfig,
    buckets: Mutex<[Bucket; BUCKETS]>,
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(cfg: BudgetConfig) -> Self {
        Self { cfg, buckets: Mutex::new([Bucket::default(); BUCKETS]) }
    }

    /// Its settings.
    pub fn config(&self) -> BudgetConfig {
        self.cfg
    }

    fn width(&self) -> u64 {
        (super::clock::nanos(self.cfg.window) / BUCKETS as u64).max(1)
    }

    /// Counts one request at `now`.
    pub fn on_request(&self, now: u64) {
        let slot = now / self.width();
        if let Ok(mut b) = self.buckets.lock() {
            current(&mut b, slot).requests += 1;
        }
    }

    /// Takes one extra attempt from the budget, if there is one.
    pub fn try_spend(&self, now: u64) -> bool {
        let slot = now / self.width();
        let Ok(mut b) = self.buckets.lock() else { return false };
        let (requests, retries) = b
            .iter()
            .filter(|x| x.slot + BUCKETS as u64 > slot)
            .fold((0u64, 0u64), |(r, t), x| (r + u64::from(x.requests), t + u64::from(x.retries)));
        let allowed =
            self.cfg.ratio * requests as f64 + self.cfg.min_per_second * self.cfg.window.as_secs_f64();
        if (retries as f64) < allowed {
            current(&mut b, slot).retries += 1;
            true
        } else {
            false
        }
    }
}

fn current(b: &mut [Bucket; BUCKETS], slot: u64) -> &mut Bucket {
    let i = (slot % BUCKETS as u64) as usize;
    if b[i].slot != slot {
        b[i] = Bucket { slot, requests: 0, retries: 0 };
    }
    &mut b[i]
}

#[cfg(test)]
mod tests {
    use super::super::clock::Clock;
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn caps_retries_at_ratio_plus_floor() {
        let clock = Clock::new();
        let cfg = BudgetConfig { ratio: 0.2, min_per_second: 1.0, window: Duration::from_secs(10) };
        let b = RetryBudget::new(cfg);
        for _ in 0..100 {
            b.on_request(clock.now());
        }
        let granted = (0..1000).filter(|_| b.try_spend(clock.now())).count();
        // 20% of 100 requests + 1/s floor over 10 s.
        assert_eq!(granted, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn window_slides() {
        let clock = Clock::new();
        let cfg = BudgetConfig { ratio: 0.0, min_per_second: 0.5, window: Duration::from_secs(10) };
        let b = RetryBudget::new(cfg);
        assert_eq!((0..100).filter(|_| b.try_spend(clock.now())).count(), 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!b.try_spend(clock.now()));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!((0..100).filter(|_| b.try_spend(clock.now())).count(), 5);
    }
}
