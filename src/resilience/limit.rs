//! Concurrency limits: a fixed `max_inflight`, or (`concurrency = "adaptive"`) one that follows
//! the provider's capacity; either way, how long a slot is held, for an honest `Retry-After`.
//!
//! **Adaptive** is AIMD in the spirit of Netflix's concurrency-limits and TCP: it starts at `min`
//! and, until its first overload, grows by one per answer while in use (a slow start: doubling
//! per round trip); then by one per limit's worth of answers; it shrinks by a quarter on an overload
//! (the provider's 429, 503 or 529) or when the time to the first byte passes twice its
//! baseline (the provider queues the requests: more would only wait longer). Only an attempt that
//! started after the last shrink can shrink it again: the overloads of the crowd that was in
//! flight then are one signal, not one each. Between `min` and `max` always.
//!
//! **Shedding.** When every slot is taken, the next one frees in about the mean hold time
//! divided by the slots (holders end at spread times): that, rounded up to whole seconds, is the
//! `Retry-After` of a shed answer, not a constant. One stream that holds the only slot for
//! minutes says minutes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::Ewma;

pub(crate) use crate::config::{Adaptive, Concurrency as Shape};

/// A time-to-first-byte this many times the baseline means the provider queues.
const TOLERANCE: f64 = 2.0;
/// The share of the limit kept on a shrink.
const BACKOFF: f64 = 0.75;
/// How fast the baseline forgets a low sample (it follows a lower one at once).
const BASELINE_DRIFT: f64 = 0.01;

/// The adaptive state: the limit as a real number, the baseline latency, the last shrink.
#[derive(Debug)]
struct Aimd {
    bounds: Adaptive,
    limit: f64,
    baseline: f64,
    shrunk_at: Option<Instant>,
}

impl Aimd {
    fn new(bounds: Adaptive) -> Self {
        Self { bounds, limit: f64::from(bounds.min), baseline: 0.0, shrunk_at: None }
    }

    /// An answer after `latency` (to its first byte) with `in_use` slots taken (its own among
    /// them: it learns before it lets go), of an attempt that started at `started`.
    fn answered(&mut self, latency: Duration, in_use: u32, started: Instant, now: Instant) {
        let l = latency.as_secs_f64();
        if self.baseline == 0.0 || l < self.baseline {
            self.baseline = l;
        } else {
            self.baseline += BASELINE_DRIFT * (l - self.baseline);
        }
        if l > TOLERANCE * self.baseline {
            self.shrink(started, now);
        } else if in_use >= self.current() {
            // Only a limit in use learns that it could be higher: fast until the first overload.
            let step = if self.shrunk_at.is_none() { 1.0 } else { 1.0 / self.limit.max(1.0) };
            self.limit = (self.limit + step).min(f64::from(self.bounds.max));
        }
    }

    /// An overload answer, or a latency past the tolerance, of an attempt started at `started`.
    fn shrink(&mut self, started: Instant, now: Instant) {
        if self.shrunk_at.is_some_and(|at| started <= at) {
            return;
        }
        self.shrunk_at = Some(now);
        self.limit = (self.limit * BACKOFF).max(f64::from(self.bounds.min));
    }

    fn current(&self) -> u32 {
        (self.limit.floor() as u32).clamp(self.bounds.min, self.bounds.max)
    }
}

/// A concurrency limit with a short queue; permits release on drop.
#[derive(Debug)]
pub struct Limit {
    sem: Arc<Semaphore>,
    shape: Shape,
    /// The current capacity (the fixed one, or where the adaptive limit is now).
    capacity: AtomicU32,
    /// Permits to retire as holders release them (an adaptive limit that shrank below its
    /// holders).
    debt: AtomicU32,
    /// How long a slot stays held.
    hold: Ewma,
    aimd: Option<Mutex<Aimd>>,
}

/// One slot of a [`Limit`]; its hold time is learnt when it is dropped.
#[derive(Debug)]
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    limit: Arc<Limit>,
    since: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limit.hold.observe(self.since.elapsed());
        if let Some(p) = self.permit.take() {
            // A shrunk limit retires this permit instead of handing it to the next holder.
            let retire = self
                .limit
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_ok();
            if retire {
                p.forget();
            }
        }
    }
}

impl Permit {
    /// Its limit learns from the answer of the attempt that held it: it came after `latency`
    /// to its first byte.
    pub fn answered(&self, latency: Duration) {
        let in_use = self.limit.in_use();
        let since = self.since;
        self.limit.adapt(|a, now| a.answered(latency, in_use, since, now));
    }

    /// Its limit learns that the attempt that held it met an overload (429, 503, 529).
    pub fn overloaded(&self) {
        let since = self.since;
        self.limit.adapt(|a, now| a.shrink(since, now));
    }
}

impl Limit {
    /// A limit of the given shape (an adaptive one starts at its `min`).
    pub fn new(shape: Shape) -> Self {
        let (capacity, aimd) = match shape {
            Shape::Fixed(n) => (n, None),
            Shape::Adaptive(a) => (a.min, Some(Mutex::new(Aimd::new(a)))),
        };
        Self {
            sem: Arc::new(Semaphore::new(capacity as usize)),
            shape,
            capacity: AtomicU32::new(capacity),
            debt: AtomicU32::new(0),
            hold: Ewma::default(),
            aimd,
        }
    }

    /// Its shape, as configured.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Its capacity now.
    pub fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Acquire)
    }

    /// Holders now.
    pub fn in_use(&self) -> u32 {
        let free = u32::try_from(self.sem.available_permits()).unwrap_or(u32::MAX);
        (self.capacity() + self.debt.load(Ordering::Acquire)).saturating_sub(free)
    }

    /// A permit now, if one is free.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let p = self.sem.clone().try_acquire_owned().ok()?;
        Some(Permit { permit: Some(p), limit: Arc::clone(self), since: Instant::now() })
    }

    /// A permit, waiting up to `queue` for one.
    pub async fn acquire(self: &Arc<Self>, queue: Duration) -> Option<Permit> {
        if let Some(p) = self.try_acquire() {
            return Some(p);
        }
        if queue.is_zero() {
            return None;
        }
        let p = tokio::time::timeout(queue, self.sem.clone().acquire_owned()).await.ok()?.ok()?;
        Some(Permit { permit: Some(p), limit: Arc::clone(self), since: Instant::now() })
    }

    /// When a slot is likely free again: the mean hold over the slots, in whole seconds (at
    /// least 1, at most `ceiling`).
    pub fn retry_after(&self, ceiling: Duration) -> Duration {
        let per_slot = self.hold.get() / f64::from(self.capacity().max(1));
        Duration::from_secs((per_slot.ceil() as u64).max(1)).min(ceiling.max(Duration::from_secs(1)))
    }

    fn adapt(&self, learn: impl FnOnce(&mut Aimd, Instant)) {
        let Some(aimd) = &self.aimd else { return };
        let target = {
            let Ok(mut a) = aimd.lock() else { return };
            learn(&mut a, Instant::now());
            a.current()
        };
        self.resize(target);
    }

    /// Moves the capacity to `target`: new permits, or a debt its holders pay back.
    fn resize(&self, target: u32) {
        let Ok(old) = self.capacity.fetch_update(Ordering::AcqRel, Ordering::Acquire, |_| Some(target))
        else {
            return;
        };
        if target > old {
            let mut grow = target - old;
            // A debt not yet paid is cancelled first.
            while grow > 0 {
                match self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)) {
                    Ok(_) => grow -= 1,
                    Err(_) => break,
                }
            }
            self.sem.add_permits(grow as usize);
        } else if target < old {
            let shrink = (old - target) as usize;
            let forgotten = self.sem.forget_permits(shrink);
            self.debt.fetch_add((shrink - forgotten) as u32, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(100);

    fn adaptive(min: u32, max: u32) -> Arc<Limit> {
        Arc::new(Limit::new(Shape::Adaptive(Adaptive { min, max })))
    }

    /// Takes every free slot of `l` into `held`, then the last one answers after `latency`.
    fn saturated(l: &Arc<Limit>, held: &mut Vec<Permit>, latency: Duration) {
        while let Some(p) = l.try_acquire() {
            held.push(p);
        }
        held.last().unwrap().answered(latency);
    }

    /// A new attempt (started now) meets an overload.
    fn overload(l: &Arc<Limit>, held: &mut Vec<Permit>) {
        let p = l.try_acquire().unwrap_or_else(|| held.pop().unwrap());
        p.overloaded();
    }

    #[tokio::test(start_paused = true)]
    async fn it_starts_at_min_and_grows_by_one_per_answer_until_an_overload() {
        let l = adaptive(2, 64);
        assert_eq!(l.capacity(), 2);
        let mut held = Vec::new();
        for _ in 0..10 {
            saturated(&l, &mut held, RTT);
        }
        assert_eq!(l.capacity(), 12);
        overload(&l, &mut held);
        assert_eq!(l.capacity(), 9);
        // Past the first overload: one per limit's worth of answers.
        drop(held);
        let mut held = Vec::new();
        for _ in 0..9 {
            saturated(&l, &mut held, RTT);
        }
        assert_eq!(l.capacity(), 9);
        saturated(&l, &mut held, RTT);
        saturated(&l, &mut held, RTT);
        assert_eq!(l.capacity(), 10);
        assert_eq!(l.in_use() as usize, held.len());
    }

    #[tokio::test(start_paused = true)]
    async fn only_an_attempt_started_after_the_last_shrink_shrinks_it_again() {
        let l = adaptive(2, 16);
        let mut held = Vec::new();
        for _ in 0..14 {
            saturated(&l, &mut held, RTT);
        }
        assert_eq!(l.capacity(), 16);
        tokio::time::advance(RTT).await;
        held.pop().unwrap().overloaded();
        assert_eq!(l.capacity(), 12);
        // The rest of that crowd started before the shrink: one signal, not fifteen.
        for p in held.drain(..) {
            p.overloaded();
        }
        assert_eq!(l.capacity(), 12);
        for _ in 0..20 {
            tokio::time::advance(Duration::from_millis(1)).await;
            overload(&l, &mut held);
        }
        assert_eq!(l.capacity(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limit_does_not_grow() {
        let l = adaptive(2, 100);
        for _ in 0..50 {
            l.try_acquire().unwrap().answered(RTT);
        }
        assert_eq!(l.capacity(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_latency_past_twice_the_baseline_shrinks_it() {
        let l = adaptive(1, 40);
        let mut held = Vec::new();
        for _ in 0..20 {
            saturated(&l, &mut held, RTT);
        }
        assert_eq!(l.capacity(), 21);
        drop(held);
        tokio::time::advance(RTT).await;
        l.try_acquire().unwrap().answered(Duration::from_millis(150));
        assert_eq!(l.capacity(), 21);
        l.try_acquire().unwrap().answered(Duration::from_millis(250));
        assert_eq!(l.capacity(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shrink_below_the_holders_retires_their_permits_as_they_end() {
        let l = adaptive(1, 4);
        let mut held = Vec::new();
        for _ in 0..3 {
            saturated(&l, &mut held, RTT);
        }
        while let Some(p) = l.try_acquire() {
            held.push(p);
        }
        assert_eq!((l.capacity(), l.in_use()), (4, 4));
        tokio::time::advance(RTT).await;
        held[0].overloaded();
        assert_eq!((l.capacity(), l.in_use()), (3, 4));
        drop(held);
        // One permit retired: three are free, not four.
        let again: Vec<Permit> = std::iter::from_fn(|| l.try_acquire()).collect();
        assert_eq!(again.len(), 3);
        assert_eq!(l.in_use(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_the_mean_hold_over_the_slots() {
        let l = Arc::new(Limit::new(Shape::Fixed(1)));
        let p = l.try_acquire().unwrap();
        // Nothing learnt yet: a second.
        assert_eq!(l.retry_after(Duration::from_secs(300)), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(90)).await;
        drop(p);
        // One stream held the only slot for 90 s: come back in 90 s, not 1.
        assert_eq!(l.retry_after(Duration::from_secs(300)), Duration::from_secs(90));
        assert_eq!(l.retry_after(Duration::from_secs(60)), Duration::from_secs(60));
        let four = Arc::new(Limit::new(Shape::Fixed(4)));
        let p = four.try_acquire().unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        drop(p);
        assert_eq!(four.retry_after(Duration::from_secs(300)), Duration::from_secs(3));
    }
}
