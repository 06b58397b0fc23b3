use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::*;

/// Sleeps `d`, marked as a wait of `kind`.
async fn work(timing: &Timing, kind: WaitKind, d: Duration) {
    timing.during(kind, sleep(d)).await;
}

#[tokio::test(start_paused = true)]
async fn each_gap_goes_to_the_kind_it_waited_on() {
    let timing = Timing::new(Instant::now());
    let t = timing.clone();
    Timed::new(timing.clone(), async move {
        work(&t, WaitKind::Body, Duration::from_millis(3)).await;
        work(&t, WaitKind::Backoff, Duration::from_millis(40)).await;
        work(&t, WaitKind::Upstream, Duration::from_millis(250)).await;
        // An unmarked await is a wait too, of no known kind.
        sleep(Duration::from_millis(7)).await;
    })
    .await;
    let w = timing.waits();
    assert_eq!(w.of(WaitKind::Body), Duration::from_millis(3));
    assert_eq!(w.of(WaitKind::Backoff), Duration::from_millis(40));
    assert_eq!(w.of(WaitKind::Upstream), Duration::from_millis(250));
    assert_eq!(w.of(WaitKind::Other), Duration::from_millis(7));
    assert_eq!(w.of(WaitKind::Scheduler), Duration::ZERO);
    assert_eq!(w.total(), Duration::from_millis(300));
}

/// A nested mark is the wait while the inner future pends; the outer one's again after it.
#[tokio::test(start_paused = true)]
async fn the_innermost_pending_mark_wins_and_the_outer_comes_back() {
    let timing = Timing::new(Instant::now());
    let t = timing.clone();
    Timed::new(timing.clone(), async move {
        t.during(WaitKind::Upstream, async {
            work(&t, WaitKind::Queue, Duration::from_millis(10)).await;
            sleep(Duration::from_millis(20)).await;
        })
        .await;
    })
    .await;
    let w = timing.waits();
    assert_eq!(
        (w.of(WaitKind::Queue), w.of(WaitKind::Upstream)),
        (Duration::from_millis(10), Duration::from_millis(20))
    );
}

/// A hedge's timer: the wait for the primary is a `hedge` wait once the hedge starts, an
/// `upstream` one when the timer ends unfired.
#[tokio::test(start_paused = true)]
async fn an_armed_wait_is_a_hedge_only_if_the_hedge_fires() {
    for fired in [true, false] {
        let timing = Timing::new(Instant::now());
        let t = timing.clone();
        Timed::new(timing.clone(), async move {
            let arm = HedgeArm::new(&t);
            // Armed: the primary pends while the timer runs.
            let mut primary = Box::pin(t.during(WaitKind::Upstream, sleep(Duration::from_millis(20))));
            std::future::poll_fn(|cx| match primary.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(()),
                Poll::Pending => {
                    arm.pending();
                    Poll::Pending
                }
            })
            .await;
            if fired {
                arm.fired();
            } else {
                drop(arm);
            }
            // After the hedge started: plain upstream waits.
            work(&t, WaitKind::Upstream, Duration::from_millis(5)).await;
        })
        .await;
        let w = timing.waits();
        let (hedge, upstream) = if fired { (20, 5) } else { (0, 25) };
        assert_eq!(w.of(WaitKind::Hedge), Duration::from_millis(hedge), "fired: {fired}");
        assert_eq!(w.of(WaitKind::Upstream), Duration::from_millis(upstream), "fired: {fired}");
    }
}

/// From a wake to the next poll, the request sat in the run queue: a `scheduler` wait.
#[tokio::test(start_paused = true)]
async fn the_time_from_a_wake_to_the_poll_is_the_schedulers() {
    let timing = Timing::new(Instant::now());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let t = timing.clone();
    let request = tokio::spawn(Timed::new(timing.clone(), async move {
        let _ = t.during(WaitKind::Upstream, rx).await;
    }));
    sleep(Duration::from_millis(30)).await;
    // Woken now, but the runtime (one thread) runs this task on for 4 ms more first.
    tx.send(()).unwrap();
    tokio::time::advance(Duration::from_millis(4)).await;
    request.await.unwrap();
    let w = timing.waits();
    assert_eq!(w.of(WaitKind::Upstream), Duration::from_millis(30));
    assert_eq!(w.of(WaitKind::Scheduler), Duration::from_millis(4));
}
