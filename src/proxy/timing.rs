//! Where a request's time to its response head goes: tier1's own work, or a wait of one
//! [`WaitKind`]. [`Timed`] wraps the request's future and measures every gap between two of its
//! polls (the time it was not running); the await points mark what they wait on
//! ([`Timing::during`]), and the gap goes to the last mark set before the future returned
//! `Pending`. A gap ends at the first wake of the request's task, as its waker sees it: from
//! there to the next poll the task sat in the runtime's run queue (`scheduler`). What is left of
//! the time to the head is tier1's own work, the request's polls (`tier1_overhead_seconds`).
//!
//! A hedge's timer marks the time the request waits for its primary as provisional: it becomes a
//! `hedge` wait when the hedge starts, an `upstream` wait when the timer ends without one
//! ([`HedgeArm`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::labels::WaitKind;

/// Slots: one per [`WaitKind`], then the provisional hedge wait.
const SLOTS: usize = WaitKind::ALL.len() + 1;
/// The slot of the time waited for a primary while its hedge's timer runs.
const ARMED: u8 = WaitKind::ALL.len() as u8;
/// No wake since the last poll.
const UNWOKEN: u64 = u64::MAX;

/// One request's clock, shared by its future's wrapper ([`Timed`]), its waker and its await
/// points.
pub(crate) struct Timing {
    origin: Instant,
    /// Nanoseconds since `origin` of the first wake since the last poll ([`UNWOKEN`]: none).
    woken: AtomicU64,
    /// What the request waits on now: the slot its next gap goes to.
    mark: AtomicU8,
    /// Nanoseconds waited, per slot.
    waited: [AtomicU64; SLOTS],
    /// The task's own waker, which the request's waker wakes.
    task: Mutex<Option<Waker>>,
}

impl Timing {
    /// A clock for a request that started at `origin`.
    pub(crate) fn new(origin: Instant) -> Arc<Self> {
        Arc::new(Self {
            origin,
            woken: AtomicU64::new(UNWOKEN),
            mark: AtomicU8::new(WaitKind::Other as u8),
            waited: std::array::from_fn(|_| AtomicU64::new(0)),
            task: Mutex::new(None),
        })
    }

    fn now(&self) -> u64 {
        crate::resilience::clock::nanos(self.origin.elapsed())
    }

    /// `fut`, whose pending time is a wait of `kind`.
    pub(crate) fn during<F: Future>(&self, kind: WaitKind, fut: F) -> During<'_, F> {
        During { inner: fut, timing: self, kind: kind as u8 }
    }

    /// Marks the time from now on (to the next poll) as waiting for a primary while its hedge's
    /// timer runs, when the request waits on an upstream.
    pub(crate) fn arm(&self) {
        let upstream = WaitKind::Upstream as u8;
        let _ = self.mark.compare_exchange(upstream, ARMED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Moves the provisional hedge wait to `kind`.
    fn settle_armed(&self, kind: WaitKind) {
        let armed = self.waited[usize::from(ARMED)].swap(0, Ordering::Relaxed);
        self.waited[kind as usize].fetch_add(armed, Ordering::Relaxed);
    }

    /// Every wait so far, by kind.
    pub(crate) fn waits(&self) -> Waits {
        let mut out = [Duration::ZERO; WaitKind::ALL.len()];
        for (slot, d) in out.iter_mut().enumerate() {
            *d = Duration::from_nanos(self.waited[slot].load(Ordering::Relaxed));
        }
        // The request ended with a hedge's timer running: it waited on its primary.
        let armed = self.waited[usize::from(ARMED)].load(Ordering::Relaxed);
        out[WaitKind::Upstream as usize] += Duration::from_nanos(armed);
        Waits(out)
    }

    /// Books the gap from `since` (when the future returned `Pending`) to `now` (its next poll).
    fn gap(&self, since: u64, woken: u64, now: u64) {
        let woke = if woken == UNWOKEN { now } else { woken.clamp(since, now) };
        let slot = usize::from(self.mark.load(Ordering::Relaxed)).min(SLOTS - 1);
        self.waited[slot].fetch_add(woke - since, Ordering::Relaxed);
        self.waited[WaitKind::Scheduler as usize].fetch_add(now - woke, Ordering::Relaxed);
    }

    /// Keeps the waker of the task that polls the request.
    fn register(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !task.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }
}

impl Wake for Timing {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let now = self.now();
        let _ = self.woken.compare_exchange(UNWOKEN, now, Ordering::Relaxed, Ordering::Relaxed);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

/// A request's waits, by kind (index: `WaitKind as usize`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waits(pub [Duration; WaitKind::ALL.len()]);

impl Waits {
    /// The wait of `kind`.
    pub(crate) fn of(&self, kind: WaitKind) -> Duration {
        self.0[kind as usize]
    }

    /// All of them.
    pub(crate) fn total(&self) -> Duration {
        self.0.iter().sum()
    }
}

pin_project_lite::pin_project! {
    /// A request's future, its gaps booked on its [`Timing`].
    pub(crate) struct Timed<F> {
        #[pin]
        inner: F,
        timing: Arc<Timing>,
        waker: Waker,
        // When it last returned `Pending`.
        pending_since: Option<u64>,
    }
}

impl<F> Timed<F> {
    /// `inner`, timed on `timing`.
    pub(crate) fn new(timing: Arc<Timing>, inner: F) -> Self {
        let waker = Waker::from(timing.clone());
        Self { inner, timing, waker, pending_since: None }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let timing = &**this.timing;
        let woken = timing.woken.swap(UNWOKEN, Ordering::Relaxed);
        if let Some(since) = this.pending_since.take() {
            timing.gap(since, woken, timing.now());
        }
        timing.register(cx.waker());
        timing.mark.store(WaitKind::Other as u8, Ordering::Relaxed);
        let out = this.inner.poll(&mut Context::from_waker(this.waker));
        if out.is_pending() {
            *this.pending_since = Some(timing.now());
        }
        out
    }
}

pin_project_lite::pin_project! {
    /// A future whose pending time is a wait of one kind ([`Timing::during`]).
    pub(crate) struct During<'t, F> {
        #[pin]
        inner: F,
        timing: &'t Timing,
        kind: u8,
    }
}

impl<F: Future> Future for During<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let before = this.timing.mark.swap(*this.kind, Ordering::Relaxed);
        let out = this.inner.poll(cx);
        if out.is_ready() {
            this.timing.mark.store(before, Ordering::Relaxed);
        }
        out
    }
}

/// A hedge's timer as the request's clock sees it: the time it runs while the request waits on
/// its primary is a `hedge` wait if the hedge starts ([`Self::fired`]), else an `upstream` one.
pub(crate) struct HedgeArm<'t> {
    timing: &'t Timing,
}

impl<'t> HedgeArm<'t> {
    /// The timer started.
    pub(crate) fn new(timing: &'t Timing) -> Self {
        Self { timing }
    }

    /// The timer is still running: the wait from now on is provisional.
    pub(crate) fn pending(&self) {
        self.timing.arm();
    }

    /// The hedge started: the request waited this long for it.
    pub(crate) fn fired(self) {
        self.timing.settle_armed(WaitKind::Hedge);
    }
}

impl Drop for HedgeArm<'_> {
    fn drop(&mut self) {
        self.timing.settle_armed(WaitKind::Upstream);
    }
}

#[cfg(test)]
mod tests;
