//! Strategies: each turns a route into an ordered attempt plan. The first entry is tried first;
//! the rest are the fallbacks. Targets that are unhealthy now (breaker open, cooling, no key) are
//! moved behind the healthy ones, in the same relative order, so a plan never starts on a target
//! known to be down.

use std::sync::atomic::Ordering;

use super::table::{Route, Target};

pub(super) use crate::config::Strategy;

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
            Self::LeastLatency => {
                idx.sort_by(|&a, &b| t[a].state.ewma.get().total_cmp(&t[b].state.ewma.get()))
            }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::config::{Format, parse};
    use crate::resilience::Registry;
    use crate::routing::RoutingTable;

    fn table(strategy: &str, targets: &str) -> (RoutingTable, Registry) {
        let text = format!(
            "[providers.p]\nkind = \"mock\"\n[[routes]]\nname = \"r\"\nstrategy = \"{strategy}\"\ntargets = [{targets}]\n"
        );
        let config = parse(&text, Format::Toml, &HashMap::<String, String>::new()).unwrap();
        let registry = Registry::default();
        (RoutingTable::new(&config, &registry), registry)
    }

    fn three() -> &'static str {
        r#"{ provider = "p", model = "a", weight = 3, input_cost = 5.0 }, { provider = "p", model = "b", weight = 1, input_cost = 1.0 }, { provider = "p", model = "c", input_cost = 2.0 }"#
    }

    fn firsts(t: &RoutingTable, n: usize, healthy: impl Fn(&Target) -> bool + Copy) -> Vec<String> {
        let r = &t.routes()[0];
        (0..n).map(|_| r.targets[r.strategy.order(r, healthy)[0]].model.to_string()).collect()
    }

    #[test]
    fn smooth_weighted_interleaves_exactly_by_weight() {
        let (t, _) = table(
            "weighted",
            r#"{ provider = "p", model = "a", weight = 3 }, { provider = "p", model = "b", weight = 1 }"#,
        );
        let picks = firsts(&t, 8, |_| true);
        assert_eq!(picks, ["a", "a", "b", "a", "a", "a", "b", "a"]);
        // An unhealthy target gets nothing, and is last in the plan.
        let picks = firsts(&t, 4, |x| &*x.model != "a");
        assert_eq!(picks, ["b", "b", "b", "b"]);
        let r = &t.routes()[0];
        assert_eq!(r.strategy.order(r, |x| &*x.model != "a"), [1, 0]);
    }

    #[test]
    fn priority_round_robin_and_cost() {
        let (t, _) = table("priority", three());
        assert_eq!(firsts(&t, 3, |_| true), ["a", "a", "a"]);
        assert_eq!(firsts(&t, 2, |x| &*x.model != "a"), ["b", "b"]);
        let (t, _) = table("round_robin", three());
        assert_eq!(firsts(&t, 4, |_| true), ["a", "b", "c", "a"]);
        let (t, _) = table("cost", three());
        let r = &t.routes()[0];
        assert_eq!(r.strategy.order(r, |_| true), [1, 2, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn least_latency_and_least_used_read_live_state() {
        let (t, _) = table("least_latency", three());
        let r = &t.routes()[0];
        // Unknown latencies (0) go first, to be learned.
        r.targets[0].state.ewma.observe(Duration::from_millis(300));
        r.targets[1].state.ewma.observe(Duration::from_millis(100));
        assert_eq!(r.strategy.order(r, |_| true), [2, 1, 0]);
        r.targets[2].state.ewma.observe(Duration::from_millis(200));
        assert_eq!(r.strategy.order(r, |_| true), [1, 2, 0]);
        let (t, _) = table("least_used", three());
        let r = &t.routes()[0];
        r.targets[0].state.inflight.store(5, Ordering::Relaxed);
        r.targets[1].state.inflight.store(2, Ordering::Relaxed);
        assert_eq!(r.strategy.order(r, |_| true), [2, 1, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn p2c_prefers_the_less_loaded_of_two() {
        let (t, _) = table("p2c", r#"{ provider = "p", model = "a" }, { provider = "p", model = "b" }"#);
        let r = &t.routes()[0];
        r.targets[0].state.ewma.observe(Duration::from_millis(100));
        r.targets[1].state.ewma.observe(Duration::from_millis(100));
        r.targets[0].state.inflight.store(9, Ordering::Relaxed);
        // With two targets both are always drawn: the less loaded one wins every time.
        assert!(firsts(&t, 50, |_| true).iter().all(|m| m == "b"));
        // Latency counts too: b is now 20x slower, a 10x busier.
        r.targets[1].state.ewma.observe(Duration::from_secs(10));
        assert!(firsts(&t, 50, |_| true).iter().all(|m| m == "a"));
        // Among three, the busiest is never first.
        let (t, _) = table("p2c", three());
        let r = &t.routes()[0];
        for (i, load) in [(0, 1), (1, 2), (2, 50)] {
            r.targets[i].state.inflight.store(load, Ordering::Relaxed);
        }
        assert!(firsts(&t, 100, |_| true).iter().all(|m| m != "c"));
    }
}
