//! Time as `u64` nanoseconds since a base instant, so deadlines fit in atomics. Built on
//! `tokio::time::Instant`, so paused-time tests drive it.

use std::time::Duration;

use tokio::time::Instant;

/// A monotonic clock with an atomic-friendly representation.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// Starts the clock now.
    pub fn new() -> Self {
        // Never 0 for "now", so 0 can mean "unset" in atomics.
        Self { base: Instant::now() - Duration::from_nanos(1) }
    }

    /// Nanoseconds since the base.
    pub fn now(&self) -> u64 {
        nanos(self.base.elapsed())
    }

    /// The `Instant` of a clock reading.
    pub fn instant(&self, at: u64) -> Instant {
        self.base + Duration::from_nanos(at)
    }
}

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
