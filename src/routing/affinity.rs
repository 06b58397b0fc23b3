//! Prompt-cache affinity with no shared state: rendezvous (highest random weight) hashing with
//! bounded loads over a route's choices, one per (target, key).
//!
//! Every replica ranks a session's choices the same way with no coordination: a choice's score
//! is a fixed, seeded 64-bit hash of the session key and the choice's identity (provider name,
//! model, key name), never a per-process random state, weighted by the key's and the target's
//! weights. The session goes to the first choice of its own ranking that is free: not resting
//! (a cooldown or a 429's rest), not behind an open breaker, and under its load bound
//! `ceil(load_bound × (in flight on the route's choices + 1) / available choices)` ("consistent
//! hashing with bounded loads", Mirrokni, Thorup and Zadimoghaddam, 2016). A choice that becomes
//! unavailable moves only the sessions it ranked first; the others keep theirs.
//!
//! Pure: the states and loads are given, so the ranking and the pick are tested without a
//! network. Non-goals: exact agreement under load (each replica sees its own in-flight counts,
//! so spills differ between replicas; with no load they agree).

use crate::config::{Affinity, Config};

/// One (target, key) pair of a route a session may go to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    /// Index of the target in the route.
    pub(crate) target: usize,
    /// Index of the key in the target's provider (`None`: the provider needs none).
    pub(crate) key: Option<usize>,
    /// Hash of the choice's identity: provider name, model, key name.
    id: u64,
    /// The key's weight times the target's.
    weight: f64,
}

/// A route's affinity: its config, and its choices (keys that serve the target's model).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteAffinity {
    /// Where the session key comes from, and the load bound.
    pub(crate) config: Affinity,
    /// Every (target, key) pair, in target then key order.
    pub(crate) choices: Vec<Choice>,
}

impl RouteAffinity {
    /// The choices of `config.routes[route]`: each target with each key of its provider that
    /// serves the target's model (one keyless choice for a provider without keys).
    pub(crate) fn new(config: &Config, route: usize, affinity: &Affinity) -> Self {
        let mut choices = Vec::new();
        for (t, target) in config.routes.get(route).map_or(&[][..], |r| &r.targets).iter().enumerate() {
            let Some(p) = config.providers.get(target.provider) else { continue };
            let weight = f64::from(target.weight.max(1));
            if p.keys.is_empty() {
                let id = identity(&p.name, &target.model, "");
                choices.push(Choice { target: t, key: None, id, weight });
            }
            for (k, key) in p.keys.iter().enumerate() {
                let serves = key.models.is_empty()
                    || key.models.iter().any(|m| super::Glob::new(m).matches(&target.model));
                if serves {
                    let id = identity(&p.name, &target.model, &key.name);
                    let weight = weight * f64::from(key.weight.max(1));
                    choices.push(Choice { target: t, key: Some(k), id, weight });
                }
            }
        }
        Self { config: affinity.clone(), choices }
    }
}

/// What keeps a choice from taking a session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum State {
    /// Available and under its load bound.
    Free,
    /// Available, but at or over its load bound.
    OverLoad,
    /// Its key or model rests (a cooldown, a 429's rest, a refusal).
    Resting,
    /// A breaker (the target's or the provider's) is open.
    Open,
}

/// Why a session left the top choice of its ranking: the label of `tier1_affinity_moves_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// The top choice rests.
    Resting,
    /// The top choice's breaker is open.
    Open,
    /// The top choice is over its load bound.
    OverLoad,
}

impl Move {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Resting => "resting",
            Self::Open => "open",
            Self::OverLoad => "over_load",
        }
    }
}

/// What the planner needs of one candidate's affinity: its keys in the session's ranking, and
/// the in-flight count under which a key takes the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Affine {
    /// Key indices of the candidate's provider, best first.
    pub(crate) keys: Vec<usize>,
    /// A key with fewer requests in flight than this takes the session; else the next one.
    pub(crate) bound: u32,
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const K3: u64 = 0x1656_67b1_9e37_79f9;

/// The session hash's seed: fixed, so that every replica and every release agree.
pub(crate) const SEED: u64 = 0x7469_6572_315f_6166;

/// A 64-bit finalizer (MurmurHash3's fmix64): every input bit flips about half the output bits.
#[inline]
pub(crate) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A stable streaming hash of byte strings, eight bytes a step (no allocation): the same bytes
/// give the same value in every process. Each part is length-prefixed, so `("ab", "c")` and
/// `("a", "bc")` differ.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hasher(u64);

impl Default for Hasher {
    fn default() -> Self {
        Self(SEED)
    }
}

impl Hasher {
    /// Adds one part.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let mut h = self.step(bytes.len() as u64 ^ K3);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = Self(h).step(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            h = Self(h).step(u64::from_le_bytes(w));
        }
        self.0 = h;
    }

    #[inline]
    fn step(self, word: u64) -> u64 {
        (self.0 ^ word.wrapping_mul(K1)).rotate_left(31).wrapping_mul(K2).wrapping_add(K3)
    }

    /// The hash of the parts so far.
    pub(crate) fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// The hash of one byte string.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h = Hasher::default();
    h.write(bytes);
    h.finish()
}

/// A choice's identity: its provider, model and key names (empty for no key).
fn identity(provider: &str, model: &str, key: &str) -> u64 {
    let mut h = Hasher::default();
    for part in [provider, model, key] {
        h.write(part.as_bytes());
    }
    h.finish()
}

/// A choice's weighted rendezvous score for `session`: `weight / -ln(u)` with `u` the pair's
/// hash mapped into (0, 1) (weighted rendezvous hashing: each choice is first for a share of
/// the sessions proportional to its weight).
fn score(session: u64, c: &Choice) -> f64 {
    let h = mix(session ^ c.id);
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    c.weight / -u.ln()
}

/// The session's ranking of `choices`: their indices, best first. A pure function of the
/// session hash and the choices' identities and weights.
pub(crate) fn rank(session: u64, choices: &[Choice]) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> =
        choices.iter().enumerate().map(|(i, c)| (score(session, c), i)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// The in-flight count under which a choice takes a session: `ceil(factor × (total + 1) / n)`,
/// with `total` the requests in flight on the `n` available choices (at least 1).
pub(crate) fn bound(factor: f64, total: u64, n: usize) -> u32 {
    let b = (factor * (total + 1) as f64 / n.max(1) as f64).ceil();
    if b >= f64::from(u32::MAX) { u32::MAX } else { (b as u32).max(1) }
}

/// The choice a session goes to, given each choice's state (indices into the choices, as
/// `ranked` holds them): the first free one in the ranking, else the first over its load bound
/// (a load bound spills, it never refuses); `None` when every choice rests or is open. With it,
/// why the session left its top choice, if it did.
pub(crate) fn pick(ranked: &[usize], state: impl Fn(usize) -> State) -> (Option<usize>, Option<Move>) {
    let Some(&top) = ranked.first() else { return (None, None) };
    let mut spill = None;
    let mut chosen = None;
    for &i in ranked {
        match state(i) {
            State::Free => {
                chosen = Some(i);
                break;
            }
            State::OverLoad if spill.is_none() => spill = Some(i),
            _ => {}
        }
    }
    let chosen = chosen.or(spill);
    let moved = match state(top) {
        _ if chosen.is_none_or(|c| c == top) => None,
        State::Free => None,
        State::OverLoad => Some(Move::OverLoad),
        State::Resting => Some(Move::Resting),
        State::Open => Some(Move::Open),
    };
    (chosen, moved)
}

/// The route's targets in the session's order, each with its keys best first: a target ranks
/// by its best choice, free choices before those over their bound, and those before the ones
/// resting or open (then by the ranking); a target with no choice comes last.
pub(crate) fn order(
    choices: &[Choice],
    ranked: &[usize],
    state: impl Fn(usize) -> State,
    targets: usize,
) -> Vec<(usize, Vec<usize>)> {
    // (class, position in the ranking) of each target's best choice.
    let mut best: Vec<(State, usize)> = vec![(State::Open, usize::MAX); targets];
    let mut keys: Vec<Vec<usize>> = vec![Vec::new(); targets];
    for (pos, &i) in ranked.iter().enumerate() {
        let Some(c) = choices.get(i) else { continue };
        let (Some(b), Some(k)) = (best.get_mut(c.target), keys.get_mut(c.target)) else { continue };
        *b = (*b).min((state(i).min(State::Resting), pos));
        k.extend(c.key);
    }
    let mut idx: Vec<usize> = (0..targets).collect();
    idx.sort_by_key(|&t| best[t]);
    idx.into_iter().map(|t| (t, std::mem::take(&mut keys[t]))).collect()
}

#[cfg(test)]
mod tests;
