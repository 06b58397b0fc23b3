//! Which of a provider's models have an open breaker: one model failing is that model's
//! trouble (its breaker opens, the provider's others keep serving); several failing at once is
//! the provider's, and opens the provider-wide breaker.

use std::sync::Mutex;

/// Models remembered at most; a provider with more open at once is down by any measure.
const REMEMBERED: usize = 16;

/// The models whose breaker is open, each with the end of its opening (clock nanoseconds).
#[derive(Debug, Default)]
pub struct Spread {
    open: Mutex<Vec<(Box<str>, u64)>>,
}

impl Spread {
    /// `model`'s breaker opened until `until`; returns how many distinct models are open now.
    pub fn opened(&self, model: &str, until: u64, now: u64) -> usize {
        let Ok(mut open) = self.open.lock() else { return 1 };
        open.retain(|(m, u)| *u > now && &**m != model);
        if open.len() >= REMEMBERED {
            open.sort_unstable_by_key(|(_, u)| std::cmp::Reverse(*u));
            open.truncate(REMEMBERED - 1);
        }
        open.push((model.into(), until));
        open.len()
    }

    /// Forgets every opening (admin reset).
    pub fn clear(&self) {
        if let Ok(mut open) = self.open.lock() {
            open.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_models_open_now() {
        let s = Spread::default();
        assert_eq!(s.opened("a", 100, 0), 1);
        assert_eq!(s.opened("a", 150, 10), 1, "the same model twice is one");
        assert_eq!(s.opened("b", 200, 20), 2);
        assert_eq!(s.opened("c", 300, 160), 2, "a's opening ended at 150");
        for i in 0..100 {
            assert!(s.opened(&format!("m{i}"), 1_000, 170) <= REMEMBERED);
        }
    }
}
