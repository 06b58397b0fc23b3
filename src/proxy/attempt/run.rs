//! The loop: start what the planner says, race a hedge when the current attempt is slow to its
//! first byte, and end with the first answer or with every failure.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Sleep;

use super::plan::{Planner, Step};
use super::{Answered, Attempted, Candidate, Failure, Job, Trigger, exchange, outcome};
use crate::error::{AttemptRecord, Class, Exhausted};
use crate::metrics::labels::WaitKind;
use crate::proxy::timing::HedgeArm;
use crate::resilience::RetryBudget;

enum Event {
    Done(usize, Attempted),
    Hedge(Trigger),
}

type AttemptFuture<'f> = Pin<Box<dyn Future<Output = Attempted> + Send + 'f>>;

/// Attempts in flight: candidate, key, future.
type Running<'f> = Vec<(usize, Option<usize>, AttemptFuture<'f>)>;

/// How the loop may go beyond trying each candidate in turn.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extras {
    /// Start the next candidate in parallel when the current one is this slow to answer.
    pub hedge_after: Option<Duration>,
    /// When every candidate rests for less than this, wait for the first one back.
    pub wait_for_cooldown: Duration,
}

/// Tries `cands` in order until one answers; `budget` caps the extra attempts. With
/// `extras.hedge_after`, the next candidate starts in parallel when the current one is slow;
/// with `extras.wait_for_cooldown`, a request that found every candidate resting waits for the
/// first one back and plans again, instead of its 429.
pub(crate) async fn run<'a>(
    job: &'a Job<'a>,
    cands: &'a [Candidate<'a>],
    budget: &RetryBudget,
    extras: Extras,
) -> Result<Answered, Exhausted> {
    budget.on_request(job.clock.now());
    let key_open = |c: &Candidate<'a>, k: &crate::providers::Key| {
        let spend = crate::ratelimit::Spend::estimate(job.body.len(), job.scanned.max_tokens, [c.costs]);
        job.limiter.key_open(&job.live.limits, &c.provider.name, &k.name, c.model, spend)
    };
    let mut round = Round { failures: Vec::new(), refused: None, launched: 0 };
    let mut held = Duration::ZERO;
    loop {
        let mut planner = Planner::new(cands, &key_open, fastrand::Rng::new(), job.tokens);
        if let Some(answered) = round.run(job, cands, budget, &mut planner, extras.hedge_after).await {
            if !held.is_zero() {
                waits(job, "served");
            }
            return Ok(*answered);
        }
        match hold_for(job, &planner, &round, extras.wait_for_cooldown.saturating_sub(held)) {
            Some(slot) => held += slot.wait(job).await,
            None => {
                if !held.is_zero() {
                    waits(job, "unserved");
                }
                return ran_out(job, cands, &planner, round.failures, round.refused);
            }
        }
    }
}

/// What the loop keeps across its rounds (a round: one planner's walk over the candidates).
struct Round {
    failures: Vec<AttemptRecord>,
    /// The latest refusal for length or content: the client's answer if no later target answers.
    refused: Option<Box<Answered>>,
    /// Attempts started: every one after the first spends from the retry budget.
    launched: u32,
}

impl Round {
    /// Walks `planner` to an answer, or to its end (`None`).
    async fn run<'a>(
        &mut self,
        job: &'a Job<'a>,
        cands: &'a [Candidate<'a>],
        budget: &RetryBudget,
        planner: &mut Planner<'_, 'a>,
        hedge_after: Option<Duration>,
    ) -> Option<Box<Answered>> {
        let mut running: Running<'a> = Vec::new();
        let mut hedge_timer: Option<HedgeTimer<'a>> = None;
        let mut hedged: Option<Trigger> = None;
        loop {
            if running.is_empty() {
                match planner.next(job.clock.now()) {
                    Step::Done => return None,
                    Step::Wait(d) => {
                        job.during(WaitKind::Backoff, tokio::time::sleep(d)).await;
                        continue;
                    }
                    Step::Start { cand, key } => {
                        if self.launched > 0 && !budget.try_spend(job.clock.now()) {
                            tracing::debug!("retry budget exhausted");
                            return None;
                        }
                        if let Some(last) = self.failures.last() {
                            outcome::retried(job, last);
                        }
                        self.launched += 1;
                        let hedges = hedge_after.is_some();
                        let attempt = exchange::attempt(job, &cands[cand], key, hedges, None);
                        running.push((cand, key, Box::pin(attempt)));
                        hedge_timer = hedge_after.map(|d| hedge_timer_for(job, &cands[cand], d));
                    }
                }
            }
            match next_event(&mut running, &mut hedge_timer).await {
                Event::Hedge(trigger) => {
                    if let Some(timer) = hedge_timer.take() {
                        timer.arm.fired();
                    }
                    // The hedge goes to the next candidate, never waits, and spends from the
                    // budget; no other hedge follows it, so its own first-token deadline fails it.
                    planner.advance();
                    if let Step::Start { cand, key } = planner.next(job.clock.now())
                        && budget.try_spend(job.clock.now())
                    {
                        self.launched += 1;
                        hedged = Some(trigger);
                        let attempt = exchange::attempt(job, &cands[cand], key, false, Some(trigger));
                        running.push((cand, key, Box::pin(attempt)));
                    }
                }
                Event::Done(i, out) => {
                    let (cand, key, _) = running.swap_remove(i);
                    let books = Books { planner, failures: &mut self.failures, refused: &mut self.refused };
                    if let Some(answered) = ended(job, cands, books, (cand, key), out, hedged) {
                        outcome::preempted(job, &planner.preempted);
                        // Dropping `running` cancels a hedge still in flight.
                        return Some(answered);
                    }
                    if running.is_empty() {
                        hedge_timer = None;
                    }
                }
            }
        }
    }
}

/// A request held for a cooldown: one of `[resilience] max_cooldown_waiters` slots.
struct Held<'j> {
    waiters: &'j AtomicUsize,
    wait: Duration,
}

impl Held<'_> {
    /// Waits (a `cooldown` wait, not tier1's overhead), then frees the slot.
    async fn wait(self, job: &Job<'_>) -> Duration {
        job.during(WaitKind::Cooldown, tokio::time::sleep(self.wait)).await;
        self.wait
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether the request ended its round only because everything rests, for less than `left`:
/// then it holds a slot and waits for the first one back (1 ms past it: rests end on the ms).
fn hold_for<'j>(job: &Job<'j>, planner: &Planner<'_, '_>, round: &Round, left: Duration) -> Option<Held<'j>> {
    if left.is_zero() || !planner.resting || round.refused.is_some() {
        return None;
    }
    let wait = planner.soonest? + Duration::from_millis(1);
    if wait > left {
        return None;
    }
    let max = job.live.resilience.max_cooldown_waiters;
    if job.waiters.fetch_add(1, Ordering::AcqRel) >= max {
        job.waiters.fetch_sub(1, Ordering::AcqRel);
        waits(job, "full");
        return None;
    }
    Some(Held { waiters: job.waiters, wait })
}

/// Counts a request that waited for a cooldown, by how it ended.
fn waits(job: &Job<'_>, outcome: &'static str) {
    job.metrics
        .cooldown_waits_total
        .get(crate::metrics::labels::CooldownWait { route: job.route, outcome })
        .inc();
}

/// The loop ended with no answer: the provider's refusal for length if one came (no target with
/// a larger window answered), else every failure, the targets skipped for their window included.
fn ran_out(
    job: &Job<'_>,
    cands: &[Candidate<'_>],
    planner: &Planner<'_, '_>,
    mut failures: Vec<AttemptRecord>,
    refused: Option<Box<Answered>>,
) -> Result<Answered, Exhausted> {
    outcome::preempted(job, &planner.preempted);
    for &cand in &planner.outgrown {
        let c = &cands[cand];
        failures.push(AttemptRecord {
            provider: c.provider.name.clone(),
            model: c.model.to_owned(),
            key: None,
            class: Class::ContextLength,
            status: None,
        });
    }
    if let Some(mut refused) = refused {
        refused.fallback_reason = failures.first().map(|f| f.class);
        return Ok(*refused);
    }
    Err(Exhausted {
        resting: planner.resting,
        attempts: failures,
        started: job.started.load(Ordering::Acquire),
        retry_after: planner.soonest,
    })
}

/// What the loop keeps across attempts.
struct Books<'p, 'c, 'a> {
    planner: &'p mut Planner<'c, 'a>,
    failures: &'p mut Vec<AttemptRecord>,
    refused: &'p mut Option<Box<Answered>>,
}

/// Books the outcome of candidate `cand`'s attempt with `key` for the planner; the answer when
/// it ends the loop.
fn ended<'a>(
    job: &Job<'_>,
    cands: &'a [Candidate<'a>],
    Books { planner, failures, refused }: Books<'_, '_, 'a>,
    (cand, key): (usize, Option<usize>),
    out: Attempted,
    hedged: Option<Trigger>,
) -> Option<Box<Answered>> {
    match out {
        Attempted::Answered(mut answered) => {
            answered.fallback_reason = failures.first().map(|f| f.class);
            // The hedge is always the later candidate.
            let hedge = hedged.map(|trigger| (cand == planner.idx, trigger));
            outcome::answered(job, &cands[cand], failures.first(), hedge);
            return Some(answered);
        }
        Attempted::Skipped(available_in, resting) => planner.skipped(cand, available_in, resting),
        Attempted::Failed(f) => {
            failures.push(record(&cands[cand], key, &f));
            if let Some(ra) = f.retry_after {
                planner.note(Some(ra));
            }
            planner.failed(cand, key, &f, job.clock.now());
        }
        Attempted::Refused(f, answer) => {
            failures.push(record(&cands[cand], key, &f));
            planner.failed(cand, key, &f, job.clock.now());
            *refused = Some(answer);
        }
    }
    None
}

/// A primary attempt's hedge timer, and the request clock's view of it (the time the request
/// waits on the primary is a `hedge` wait if the timer fires).
struct HedgeTimer<'t> {
    sleep: Pin<Box<Sleep>>,
    trigger: Trigger,
    arm: HedgeArm<'t>,
}

/// The hedge's timer for a primary attempt on `c`: `hedge_after`, or sooner the stream's
/// first-token deadline, which then starts the hedge rather than failing the primary (it runs
/// on: the first of the two to commit answers).
fn hedge_timer_for<'t>(job: &Job<'t>, c: &Candidate<'_>, hedge_after: Duration) -> HedgeTimer<'t> {
    let (after, trigger) = match c.first_token_in(job) {
        Some(d) if job.stream && d < hedge_after => (d, Trigger::FirstToken),
        _ => (hedge_after, Trigger::HedgeAfter),
    };
    HedgeTimer { sleep: Box::pin(tokio::time::sleep(after)), trigger, arm: HedgeArm::new(job.timing) }
}

/// The first attempt to end, or the hedge timer.
async fn next_event(running: &mut Running<'_>, hedge_timer: &mut Option<HedgeTimer<'_>>) -> Event {
    poll_fn(|cx| {
        for (i, (_, _, fut)) in running.iter_mut().enumerate() {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Event::Done(i, out));
            }
        }
        if let Some(t) = hedge_timer.as_mut() {
            if t.sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Hedge(t.trigger));
            }
            t.arm.pending();
        }
        Poll::Pending
    })
    .await
}

/// A failed attempt as the client's error body lists it.
fn record(c: &Candidate<'_>, key: Option<usize>, f: &Failure) -> AttemptRecord {
    AttemptRecord {
        provider: c.provider.name.clone(),
        model: c.model.to_owned(),
        key: key.and_then(|k| c.provider.keys.get(k)).map(|k| k.name.clone()),
        class: f.class,
        status: f.status.map(|s| s.as_u16()),
    }
}
