//! The refresher under paused tokio time, with a source that counts its fetches, answers from a
//! script and can be held mid-fetch.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::RwLock;
use tokio::time::{Duration, Instant, sleep};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

/// What the fake source did and will do.
struct Log {
    /// When the test began.
    t0: Instant,
    /// When each fetch began, as seconds since `t0`.
    fetched: Mutex<Vec<u64>>,
    /// Each next fetch's answer: valid for so long, or a failure (`None`); empty: an hour.
    script: Mutex<VecDeque<Option<Duration>>>,
    /// A fetch waits for a read lock: a test holding the write lock holds fetches mid-way.
    gate: RwLock<()>,
}

impl Log {
    fn new(script: impl IntoIterator<Item = Option<Duration>>) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            fetched: Mutex::default(),
            script: Mutex::new(script.into_iter().collect()),
            gate: RwLock::new(()),
        })
    }

    fn fetched(&self) -> Vec<u64> {
        self.fetched.lock().unwrap().clone()
    }
}

struct Fake {
    id: &'static str,
    log: Arc<Log>,
}

impl Source for Fake {
    type Value = String;
    type Error = &'static str;

    fn identity(&self) -> String {
        self.id.to_owned()
    }

    async fn fetch(&self, _client: &upstream::Client) -> Result<Fetched<String>, &'static str> {
        let n = {
            let mut fetched = self.log.fetched.lock().unwrap();
            fetched.push(self.log.t0.elapsed().as_secs());
            fetched.len()
        };
        let answer = self.log.script.lock().unwrap().pop_front().unwrap_or(Some(HOUR));
        let _held = self.log.gate.read().await;
        match answer {
            Some(valid_for) => Ok(Fetched { value: format!("minted-{}-{n}", self.id), valid_for }),
            None => Err("refused"),
        }
    }

    fn secrets(value: &String) -> Vec<Secret> {
        vec![Secret::new(value.as_str())]
    }
}

fn client() -> upstream::Client {
    upstream::Client::plain(Duration::from_secs(1))
}

/// A mint of the test's own: another test's paused clock never prunes it.
fn mint() -> &'static Mint {
    Box::leak(Box::default())
}

fn start_fake(id: &'static str, log: &Arc<Log>, mint: &'static Mint) -> Arc<Current<String>> {
    start_minting(Fake { id, log: log.clone() }, client(), mint)
}

fn value(c: &Current<String>) -> Option<String> {
    c.get().map(|v| (*v).clone())
}

/// Lets time run to `at` seconds since the test began (the refresh task runs meanwhile).
async fn until(log: &Log, at: u64) {
    tokio::time::sleep_until(log.t0 + Duration::from_secs(at)).await;
}

#[tokio::test(start_paused = true)]
async fn the_value_is_fetched_at_once_then_five_minutes_before_it_expires() {
    let log = Log::new([]);
    let current = start_fake("early", &log, mint());
    assert_eq!(value(&current), None, "nothing before the first fetch answered");
    until(&log, 1).await;
    assert_eq!(value(&current).as_deref(), Some("minted-early-1"));
    // Valid for an hour: fetched again at 55 minutes, not at the expiry.
    until(&log, 3299).await;
    assert_eq!(log.fetched(), [0]);
    until(&log, 3301).await;
    assert_eq!(log.fetched(), [0, 3300]);
    assert_eq!(value(&current).as_deref(), Some("minted-early-2"));
    until(&log, 6601).await;
    assert_eq!(log.fetched(), [0, 3300, 6600]);
    // A lifetime shorter than the margin: again after 10 s, not in a loop.
    let short = Log::new([Some(Duration::from_secs(60))]);
    let _c = start_fake("short", &short, mint());
    until(&short, 11).await;
    assert_eq!(short.fetched(), [0, 10]);
}

#[tokio::test(start_paused = true)]
async fn one_fetch_whatever_the_readers_and_across_a_reload() {
    let (log, other) = (Log::new([]), Log::new([]));
    let current = start_fake("shared", &log, mint());
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let c = current.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                for _ in 0..600 {
                    seen += usize::from(c.get().is_some());
                    sleep(Duration::from_secs(1)).await;
                }
                seen
            })
        })
        .collect();
    for r in readers {
        assert!(r.await.unwrap() >= 599);
    }
    assert_eq!(log.fetched(), [0], "readers never fetch");
    // A reloaded snapshot with the same source takes the running task and its value.
    let reloaded = start_fake("shared", &other, mint());
    assert!(Arc::ptr_eq(&current, &reloaded));
    assert_eq!(value(&reloaded).as_deref(), Some("minted-shared-1"));
    until(&log, 3301).await;
    assert_eq!((log.fetched(), other.fetched()), (vec![0, 3300], vec![]));
    // Another identity is another task.
    let apart = start_fake("apart", &other, mint());
    assert!(!Arc::ptr_eq(&current, &apart));
    until(&log, 3302).await;
    assert_eq!(other.fetched(), [3301]);
    // The task ends with the last holder: no fetch after it wakes up.
    drop((current, reloaded));
    until(&log, 20_000).await;
    assert_eq!(log.fetched(), [0, 3300]);
    // Started anew, it fetches anew.
    let again = start_fake("shared", &log, mint());
    until(&log, 20_001).await;
    assert_eq!(log.fetched(), [0, 3300, 20_000]);
    assert_eq!(value(&again).as_deref(), Some("minted-shared-3"));
}

#[tokio::test(start_paused = true)]
async fn a_failure_keeps_the_last_value_and_backs_off_up_to_a_minute() {
    let ten_minutes = Some(Duration::from_secs(600));
    let log = Log::new([ten_minutes, None, None, None, None, None, None, None, None, ten_minutes]);
    let current = start_fake("backoff", &log, mint());
    until(&log, 299).await;
    assert_eq!(value(&current).as_deref(), Some("minted-backoff-1"));
    for at in [300, 301, 303, 307, 315, 331, 363, 423] {
        until(&log, at).await;
        assert_eq!(value(&current).as_deref(), Some("minted-backoff-1"), "at {at} s");
    }
    until(&log, 484).await;
    // 1 s, 2 s, 4 s ... doubling, then at most 60 s; the value kept until one came.
    assert_eq!(log.fetched(), [0, 300, 301, 303, 307, 315, 331, 363, 423, 483]);
    assert_eq!(value(&current).as_deref(), Some("minted-backoff-10"));
    // Back to the regular schedule: 5 minutes before the new value expires.
    until(&log, 784).await;
    assert_eq!(log.fetched().last(), Some(&783));
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_across_the_expiry_read_the_old_value_until_the_new_one_lands() {
    let log = Log::new([Some(Duration::from_secs(600))]);
    let current = start_fake("flight", &log, mint());
    until(&log, 1).await;
    // The next fetch (at 300 s) is held until well past the old value's expiry (600 s).
    let gate = log.gate.write().await;
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let c = current.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..900 {
                    seen.push(c.get().map(|v| (*v).clone()));
                    sleep(Duration::from_secs(1)).await;
                }
                seen
            })
        })
        .collect();
    until(&log, 700).await;
    assert_eq!(log.fetched(), [0, 300], "one fetch in flight, none beside it");
    drop(gate);
    for r in readers {
        let seen = r.await.unwrap();
        let old = seen.iter().take_while(|v| v.as_deref() == Some("minted-flight-1")).count();
        assert!(old >= 698, "the old value read until the new one landed: {old}");
        assert!(seen[old..].iter().all(|v| v.as_deref() == Some("minted-flight-2")), "{:?}", &seen[old..]);
        assert!(old < seen.len(), "the new value read once it landed");
    }
    assert_eq!(log.fetched(), [0, 300]);
}

#[tokio::test(start_paused = true)]
async fn minted_secrets_are_redacted_from_when_they_land_until_they_expire() {
    let mint = mint();
    let before = mint.redactor([Secret::new("configured-key")]);
    let ten_minutes = Some(Duration::from_secs(600));
    let log = Log::new([ten_minutes, ten_minutes, ten_minutes]);
    let _current = start_fake("redact", &log, mint);
    until(&log, 1).await;
    let after = mint.redactor([]);
    let text = "minted-redact-1 minted-redact-2 minted-redact-3 configured-key";
    let redacted =
        |r: &crate::config::Redactor| String::from_utf8(r.redact(text.as_bytes()).into_owned()).unwrap();
    let mask = "[redacted*****]";
    assert_eq!(redacted(&before), format!("{mask} minted-redact-2 minted-redact-3 [redacted****]"));
    assert_eq!(redacted(&after), format!("{mask} minted-redact-2 minted-redact-3 configured-key"));
    // The next credentials join; the previous stay until they expire (600 s).
    until(&log, 301).await;
    assert_eq!(redacted(&after), format!("{mask} {mask} minted-redact-3 configured-key"));
    until(&log, 601).await;
    assert_eq!(log.fetched(), [0, 300, 600]);
    assert_eq!(redacted(&after), format!("minted-redact-1 {mask} {mask} configured-key"));
}
