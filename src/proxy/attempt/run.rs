//! The loop: start what the planner says, race a hedge when the current attempt is slow to its
//! first byte, and end with the first answer or with every failure.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::plan::{Planner, Step};
use super::{Answered, Attempted, Candidate, Failure, Job, exchange, outcome};
use crate::error::{AttemptRecord, Class, Exhausted};
use crate::resilience::RetryBudget;

enum Event {
    Done(usize, Attempted),
    Hedge,
}

type AttemptFuture<'f> = Pin<Box<dyn Future<Output = Attempted> + Send + 'f>>;

/// Attempts in flight: candidate, key, future.
type Running<'f> = Vec<(usize, Option<usize>, AttemptFuture<'f>)>;

/// Tries `cands` in order until one answers; `budget` caps the extra attempts; `hedge_after`
/// starts the next candidate in parallel when the current one is slow to its first byte.
pub(crate) async fn run<'a>(
    job: &'a Job<'a>,
    cands: &'a [Candidate<'a>],
    budget: &RetryBudget,
    hedge_after: Option<Duration>,
) -> Result<Answered, Exhausted> {
    budget.on_request(job.clock.now());
    let key_open = |c: &Candidate<'a>, k: &crate::providers::Key| {
        let spend = crate::ratelimit::Spend::estimate(job.body.len(), job.scanned.max_tokens, [c.costs]);
        job.limiter.key_open(&job.live.limits, &c.provider.name, &k.name, c.model, spend)
    };
    let mut planner = Planner::new(cands, &key_open, fastrand::Rng::new(), job.tokens);
    let mut failures: Vec<AttemptRecord> = Vec::new();
    // The latest refusal for length or content: the client's answer if no later target answers.
    let mut refused: Option<Box<Answered>> = None;
    let mut running: Running<'a> = Vec::new();
    let mut hedge_timer: Option<Pin<Box<Sleep>>> = None;
    let mut launched = 0u32;
    let mut hedged = false;
    loop {
        if running.is_empty() {
            match planner.next(job.clock.now()) {
                Step::Done => break,
                Step::Wait(d) => {
                    let since = Instant::now();
                    tokio::time::sleep(d).await;
                    job.waited(since);
                    continue;
                }
                Step::Start { cand, key } => {
                    if launched > 0 && !budget.try_spend(job.clock.now()) {
                        tracing::debug!("retry budget exhausted");
                        break;
                    }
                    if let Some(last) = failures.last() {
                        outcome::retried(job, last);
                    }
                    launched += 1;
                    running.push((cand, key, Box::pin(exchange::attempt(job, &cands[cand], key))));
                    hedge_timer = hedge_after.map(|d| Box::pin(tokio::time::sleep(d)));
                }
            }
        }
        match next_event(&mut running, &mut hedge_timer).await {
            Event::Hedge => {
                hedge_timer = None;
                // The hedge goes to the next candidate, never waits, and spends from the budget.
                planner.advance();
                if let Step::Start { cand, key } = planner.next(job.clock.now())
                    && budget.try_spend(job.clock.now())
                {
                    launched += 1;
                    hedged = true;
                    running.push((cand, key, Box::pin(exchange::attempt(job, &cands[cand], key))));
                }
            }
            Event::Done(i, out) => {
                let (cand, key, _) = running.swap_remove(i);
                let books = Books { planner: &mut planner, failures: &mut failures, refused: &mut refused };
                if let Some(answered) = ended(job, cands, books, (cand, key), out, hedged) {
                    // Dropping `running` cancels a hedge still in flight.
                    return Ok(*answered);
                }
                if running.is_empty() {
                    hedge_timer = None;
                }
            }
        }
    }
    ran_out(job, cands, &planner, failures, refused)
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
    hedged: bool,
) -> Option<Box<Answered>> {
    match out {
        Attempted::Answered(mut answered) => {
            answered.fallback_reason = failures.first().map(|f| f.class);
            // The hedge is always the later candidate.
            let hedge = hedged.then_some(cand == planner.idx);
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

/// The first attempt to end, or the hedge timer.
async fn next_event(running: &mut Running<'_>, hedge_timer: &mut Option<Pin<Box<Sleep>>>) -> Event {
    poll_fn(|cx| {
        for (i, (_, _, fut)) in running.iter_mut().enumerate() {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Event::Done(i, out));
            }
        }
        if let Some(t) = hedge_timer.as_mut()
            && t.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Event::Hedge);
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
