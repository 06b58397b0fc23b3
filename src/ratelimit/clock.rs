//! The wall clock the limiter reads. Windows are aligned on wall time (unix ms), so replicas agree
//! on them through Redis; so the clock is wall time, not a monotonic `Instant`. A limiter is built
//! with one, so tests can run windows, expiry and the sweeper under paused tokio time.

use std::time::SystemTime;

use tokio::time::Instant;

/// Milliseconds since the Unix epoch, as the system clock says.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// Where the limiter's "now" comes from. An enum, not a trait object: the request path pays one
/// branch per reading, no dynamic call.
#[derive(Debug, Clone, Copy, Default)]
pub enum WallClock {
    /// The system clock ([`unix_ms`]).
    #[default]
    System,
    /// `epoch_ms` plus how far tokio's clock moved since `base`: under
    /// `#[tokio::test(start_paused = true)]` time only moves with `time::advance` or a sleep, and
    /// the limiter's windows move with it.
    Tokio {
        /// The tokio instant that reads as `epoch_ms`.
        base: Instant,
        /// Unix ms at `base`.
        epoch_ms: u64,
    },
}

impl WallClock {
    /// A clock that reads `epoch_ms` now and then follows tokio's clock (for tests).
    pub fn tokio(epoch_ms: u64) -> Self {
        Self::Tokio { base: Instant::now(), epoch_ms }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            Self::System => unix_ms(),
            Self::Tokio { base, epoch_ms } => {
                epoch_ms.saturating_add(u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_only_with_tokio_time() {
        let clock = WallClock::tokio(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        tokio::time::advance(Duration::from_millis(1_499)).await;
        assert_eq!(clock.now_ms(), 2_499);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(clock.now_ms(), 62_499);
    }

    #[test]
    fn the_system_clock_is_unix_time() {
        // 2020-09-13 and later: a real wall clock, not time since boot.
        assert!(WallClock::System.now_ms() > 1_600_000_000_000);
    }
}
