//! Strategies: each turns a route into an ordered attempt plan. The first entry is tried first;
//! the rest are the fallbacks. Targets that are unhealthy now (breaker open, cooling, no key) are
//! moved behind the healthy ones, in the same relative order, so a plan never starts on a target
//! known to be down.

use std::sync::atomic::Ordering;

use super::table::{Route, Target};

/// How a route orders its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Config order: the first healthy target, then the next.
    #[default]
    Priority,
    /// Smooth weighted round robin by `weight` for the first pick; then config order.
    Weighted,
    /// Rotating start position.
    RoundRobin,
    /// Lowest EWMA time to first byte first (targets with no sample yet go first, to learn).
    LeastLatency,
    /// Power of two choices on EWMA latency × (in-flight + 1).
    P2c,
    /// Fewest attempts in flight first.
    LeastUsed,
    /// Cheapest `input_cost + output_cost` first.
    Cost,
}

impl Strategy {
    /// Accepted spellings, for error messages.
    pub const NAMES: &'static str = "priority, weighted, round_robin, least_latency, p2c, least_used, cost";

    /// Parses a config value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "priority" => Self::Priority,
            "weighted" => Self::Weighted,
            "round_robin" => Self::RoundRobin,
            "least_latency" => Self::LeastLatency,
            "p2c" => Self::P2c,
            "least_used" => Self::LeastUsed,
            "cost" => Self::Cost,
            _ => return None,
        })
    }

    /// The plan for one request: target indices, healthy first.
    pub fn order(self, route: &Route, healthy: impl Fn(&Target) -> bool) -> Vec<usize> {
        let t = &route.targets;
        let up: Vec<bool> = t.iter().map(&healthy).collect();
        let mut idx: Vec<usize> = (0..t.len()).collect();
        match self {
            Self::Priority => {}
            Self::RoundRobin if !t.is_empty() => {
                let start = route.state.rr.fetch_add(1, Ordering::Relaxed) % t.len();
                idx.rotate_left(start);
            }
            Self::RoundRobin => {}
            Self::Weighted => {
                if let Some(first) = smooth_weighted(route, &up) {
                    idx.retain(|&i| i != first);
                    idx.insert(0, first);
                }
            }
            Self::LeastLatency => idx.sort_by(|&a, &b| t[a].state.ewma.get().total_cmp(&t[b].state.ewma.get())),
            Self::LeastUsed => idx.sort_by_key(|&i| t[i].state.inflight.load(Ordering::Relaxed)),
            Self::Cost => idx.sort_by(|&a, &b| t[a].cost().total_cmp(&t[b].cost())),
            Self::P2c => {
                let healthy: Vec<usize> = idx.iter().copied().filter(|&i| up[i]).collect();
                if healthy.len() >= 2 {
                    let a = healthy[fastrand::usize(..healthy.len())];
                    let mut b = healthy[fastrand::usize(..healthy.len() - 1)];
                    if b == a {
                        b = healthy[healthy.len() - 1];
                    }
                    let load = |i: usize| {
                        let s = &t[i].state;
                        s.ewma.get().max(1e-3) * f64::from(s.inflight.load(Ordering::Relaxed) + 1)
                    };
                    let first = if load(a) <= load(b) { a } else { b };
                    idx.retain(|&i| i != first);
                    idx.insert(0, first);
                }
            }
        }
        // Stable partition: healthy targets keep the strategy's order, ahead of the others.
        idx.sort_by_key(|&i| !up[i]);
        idx
    }
}

/// nginx's smooth weighted round robin over the healthy targets: each pick adds every weight to
/// its running value, takes the largest, and subtracts the total from it. Spreads picks evenly
/// (3:1 gives a a b a, not a a a b) and exactly by weight over any full cycle.
fn smooth_weighted(route: &Route, up: &[bool]) -> Option<usize> {
    let mut current = route.state.swrr.lock().ok()?;
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for (i, target) in route.targets.iter().enumerate() {
        if !up[i] {
            continue;
        }
        let w = i64::from(target.weight);
        current[i] += w;
        total += w;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] -= total;
    Some(b)
}
