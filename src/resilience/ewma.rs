//! Exponentially weighted moving average of a latency, lock-free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Weight of a new sample.
const ALPHA: f64 = 0.3;

/// An EWMA of seconds; 0 means "no sample yet".
#[derive(Debug, Default)]
pub struct Ewma(AtomicU64);

impl Ewma {
    /// Adds a sample.
    pub fn observe(&self, sample: Duration) {
        let s = sample.as_secs_f64().max(1e-9);
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
            let old = f64::from_bits(bits);
            let new = if old == 0.0 { s } else { old + ALPHA * (s - old) };
            Some(new.to_bits())
        });
    }

    /// The average in seconds (0 before the first sample).
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_then_moves_toward_new_ones() {
        let e = Ewma::default();
        assert_eq!(e.get(), 0.0);
        e.observe(Duration::from_millis(100));
        assert!((e.get() - 0.1).abs() < 1e-9);
        e.observe(Duration::from_millis(200));
        assert!((e.get() - 0.13).abs() < 1e-9);
        for _ in 0..50 {
            e.observe(Duration::from_millis(200));
        }
        assert!((e.get() - 0.2).abs() < 1e-3);
    }
}
