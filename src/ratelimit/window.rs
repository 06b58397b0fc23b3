//! The sliding-window counter, sans-io (`now` is passed in): two adjacent fixed windows, the
//! previous one weighted by how much of it still overlaps the sliding window. Cheap (two numbers
//! per key), mergeable across replicas (they add), and within a few percent of an exact log.

/// Counts in the current fixed window and the one before it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Window {
    /// Index of the current fixed window (`unix_ms / window_ms`).
    pub index: u64,
    /// Count in window `index`.
    pub curr: f64,
    /// Count in window `index - 1`.
    pub prev: f64,
}

impl Window {
    /// Moves to window `index` (never backwards).
    pub fn roll(&mut self, index: u64) {
        if index <= self.index {
            return;
        }
        self.prev = if index == self.index + 1 { self.curr } else { 0.0 };
        self.curr = 0.0;
        self.index = index;
    }

    /// Usage of the sliding window that ends `frac` (0..1) into the current fixed window.
    pub fn usage(&self, frac: f64) -> f64 {
        self.prev * (1.0 - frac) + self.curr
    }
}

/// Window index and the fraction elapsed in it.
pub fn position(now_ms: u64, window_ms: u64) -> (u64, f64) {
    let w = window_ms.max(1);
    (now_ms / w, (now_ms % w) as f64 / w as f64)
}

/// When the fixed window that holds `now_ms` ends (unix ms): the next multiple of `window_ms`
/// since the epoch, the same on every replica.
pub fn reset_at(now_ms: u64, window_ms: u64) -> u64 {
    let w = window_ms.max(1);
    (now_ms / w).saturating_add(1).saturating_mul(w)
}

/// Time until a sliding window over `w` has room for `cost` more under `limit` (the previous
/// window's weight decays linearly; without one, the current window must end).
pub fn wait_ms(w: &Window, frac: f64, window_ms: u64, limit: f64, cost: f64) -> u64 {
    let over = w.usage(frac) + cost - limit;
    if over <= 0.0 {
        return 0;
    }
    let rest_of_window = ((1.0 - frac) * window_ms as f64).ceil() as u64;
    if w.prev > 0.0 && over <= w.prev * (1.0 - frac) {
        // The previous window's share shrinks by prev/window_ms per millisecond.
        return (over / w.prev * window_ms as f64).ceil() as u64;
    }
    rest_of_window.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides_and_decays() {
        let mut w = Window { index: 10, curr: 60.0, prev: 0.0 };
        assert_eq!(w.usage(0.5), 60.0);
        w.roll(11);
        assert_eq!((w.prev, w.curr), (60.0, 0.0));
        assert_eq!(w.usage(0.25), 45.0);
        w.roll(13);
        assert_eq!((w.prev, w.curr), (0.0, 0.0));
        w.roll(12);
        assert_eq!(w.index, 13, "never backwards");
    }

    #[test]
    fn waits_until_there_is_room() {
        let w = Window { index: 1, curr: 0.0, prev: 100.0 };
        // At 50% into the window the previous one counts 50; room for 1 more under 50 comes
        // when its share drops to 49: 1% of the window later.
        assert_eq!(wait_ms(&w, 0.5, 1000, 50.0, 1.0), 10);
        let w = Window { index: 1, curr: 100.0, prev: 0.0 };
        assert_eq!(wait_ms(&w, 0.25, 1000, 100.0, 1.0), 750);
        assert_eq!(wait_ms(&w, 0.25, 1000, 200.0, 1.0), 0);
        assert_eq!(position(12_345, 1000), (12, 0.345));
    }

    #[test]
    fn fixed_windows_reset_on_multiples_of_their_length_since_the_epoch() {
        const DAY: u64 = 86_400_000;
        // 2026-01-01T00:00:00Z is a whole number of days: a daily budget resets at midnight UTC.
        let midnight = 1_767_225_600_000;
        assert_eq!(reset_at(midnight, DAY), midnight + DAY, "at the boundary: the next one");
        assert_eq!(reset_at(midnight + 1, DAY), midnight + DAY);
        assert_eq!(reset_at(midnight + DAY - 1, DAY), midnight + DAY);
        // 30 days: 1_767_225_600_000 / 2_592_000_000 = 681.79.., so the window ends at 682 × 30d.
        assert_eq!(reset_at(midnight, 30 * DAY), 682 * 30 * DAY);
        assert_eq!(reset_at(u64::MAX, DAY), u64::MAX, "saturates");
    }
}
