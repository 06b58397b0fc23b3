//! Idle connections of one client. HTTP/1.1 connections are taken out for an exchange and put
//! back by their body when it ends cleanly, most recent first (the warmest socket); an HTTP/2
//! connection stays in the pool and is shared. The lock is held for a few pointer moves, never
//! across an `.await`. A sweeper task, started with the first idle connection, closes those idle
//! past the timeout or closed by the provider, and stops when the client is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;

use super::connect::Connector;
use super::h1::Conn;

/// A scheme and authority: what a pooled connection can serve.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Origin {
    https: bool,
    authority: Box<str>,
}

impl Origin {
    /// `uri`'s origin.
    pub(super) fn of(uri: &Uri) -> Self {
        Self { https: is_https(uri), authority: uri.authority().map_or("", |a| a.as_str()).into() }
    }

    /// Whether `uri` is on this origin (no allocation: this runs per request).
    pub(super) fn serves(&self, uri: &Uri) -> bool {
        self.https == is_https(uri) && uri.authority().is_some_and(|a| a.as_str() == &*self.authority)
    }
}

fn is_https(uri: &Uri) -> bool {
    uri.scheme_str() == Some("https")
}

/// Requests in flight on one HTTP/2 connection before another is opened. RFC 9113 (5.1.2)
/// recommends that servers allow at least 100 concurrent streams: past that, a request would
/// queue inside the connection instead of going out.
pub(super) const H2_STREAMS: usize = 100;

/// A pooled HTTP/2 connection.
pub(super) struct H2 {
    pub origin: Arc<Origin>,
    pub sender: SendRequest<Full<Bytes>>,
    /// Requests in flight on it (their bodies included), and whether it is going away.
    load: Arc<Load>,
    /// Sweeper tick of its last use.
    last: u64,
}

/// What the requests on one HTTP/2 connection share.
struct Load {
    streams: AtomicUsize,
    /// The provider said it takes no new stream (GOAWAY), or the connection closed: no request
    /// is given it, even before hyper's sender reports it closed.
    gone: AtomicBool,
}

/// One request's place on an HTTP/2 connection, given back when its answer's body is dropped.
pub(crate) struct Stream(Arc<Load>);

impl Stream {
    /// Its connection takes no new request (the provider sent GOAWAY, or it closed).
    pub(super) fn retire(&self) {
        self.0.gone.store(true, Ordering::Relaxed);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

struct IdleH1 {
    conn: Conn,
    /// Sweeper tick when it went idle.
    since: u64,
}

#[derive(Default)]
struct Idle {
    h1: Vec<IdleH1>,
    h2: Vec<H2>,
    dials: Vec<Dialing>,
}

/// What is known of connecting to an `https` origin: whether requests open connections on their
/// own (it answered HTTP/1.1, or the last attempt failed), and whether a connection that may
/// turn out HTTP/2 is being opened (the others wait for it).
struct Dialing {
    origin: Arc<Origin>,
    alone: bool,
    busy: bool,
    done: Arc<tokio::sync::Notify>,
}

/// Whether a request that found no idle connection opens one.
pub(super) enum Dial {
    /// Yes, without telling anyone: plain HTTP, or see [`Dialing`].
    Alone,
    /// Yes, and requests arriving meanwhile wait for it: it may be HTTP/2, to be shared.
    First(DialGuard),
    /// No: another request is opening one; wait, then look in the pool again.
    Wait(Arc<tokio::sync::Notify>),
}

/// Held while opening a connection others wait for. However it ends (done, failed, or the
/// request cancelled), it wakes them; unless it ended in HTTP/2, they then connect on their own
/// (one at a time after a failure would make the last wait for every timeout in turn).
pub(super) struct DialGuard {
    shared: Arc<Shared>,
    origin: Arc<Origin>,
    h2: bool,
}

impl DialGuard {
    /// The connection is HTTP/2 and in the pool.
    pub(super) fn h2(mut self) {
        self.h2 = true;
    }
}

impl Drop for DialGuard {
    fn drop(&mut self) {
        let done = self.shared.idle.lock().ok().and_then(|mut idle| {
            let d = idle.dials.iter_mut().find(|d| d.origin == self.origin)?;
            d.busy = false;
            d.alone = !self.h2;
            Some(d.done.clone())
        });
        if let Some(done) = done {
            done.notify_waiters();
        }
    }
}

/// What a checkout found.
pub(super) enum Checkout {
    H1(Conn),
    H2(SendRequest<Full<Bytes>>, Stream),
}

/// The state one client's clones share.
pub(super) struct Shared {
    pub connector: Connector,
    idle: Mutex<Idle>,
    max_idle: usize,
    /// Requests in flight per HTTP/2 connection ([`H2_STREAMS`]; fewer in tests).
    h2_streams: usize,
    /// How often the sweeper runs, and how many of its ticks make the idle timeout.
    every: Duration,
    idle_ticks: u64,
    tick: AtomicU64,
    sweeping: AtomicBool,
}

impl Shared {
    pub(super) fn new(
        connector: Connector,
        max_idle: usize,
        idle_timeout: Duration,
        h2_streams: usize,
    ) -> Self {
        let every = (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let idle_ticks = idle_timeout.as_nanos().div_ceil(every.as_nanos().max(1));
        Self {
            connector,
            idle: Mutex::default(),
            max_idle,
            h2_streams,
            every,
            idle_ticks: u64::try_from(idle_ticks).unwrap_or(u64::MAX),
            tick: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
        }
    }

    /// An open idle connection to `uri`'s origin: a shared HTTP/2 one, else the most recent
    /// HTTP/1.1 one. Closed or expired ones met on the way are dropped.
    pub(super) fn checkout(&self, uri: &Uri) -> Option<Checkout> {
        let now = self.tick.load(Ordering::Relaxed);
        let mut stale = Vec::new();
        let found = {
            let Ok(mut idle) = self.idle.lock() else { return None };
            let h2 = idle.h2.iter_mut().find(|c| {
                c.origin.serves(uri)
                    && !c.load.gone.load(Ordering::Relaxed)
                    && !c.sender.is_closed()
                    && c.load.streams.load(Ordering::Relaxed) < self.h2_streams
            });
            if let Some(c) = h2 {
                c.last = now;
                c.load.streams.fetch_add(1, Ordering::Relaxed);
                return Some(Checkout::H2(c.sender.clone(), Stream(c.load.clone())));
            }
            loop {
                let Some(at) = idle.h1.iter().rposition(|c| c.conn.origin.serves(uri)) else { break None };
                let c = idle.h1.remove(at);
                if now - c.since <= self.idle_ticks && c.conn.is_idle_open() {
                    break Some(Checkout::H1(c.conn));
                }
                stale.push(c);
            }
        };
        drop(stale);
        found
    }

    /// Whether to open a connection to `uri`'s origin now. The first connection to an `https`
    /// origin (and each new one while it speaks HTTP/2) is opened by one request at a time, so a
    /// burst shares one HTTP/2 connection instead of opening one each.
    pub(super) fn dial(self: &Arc<Self>, uri: &Uri) -> Dial {
        if !is_https(uri) {
            return Dial::Alone;
        }
        let Ok(mut idle) = self.idle.lock() else { return Dial::Alone };
        let at = match idle.dials.iter().position(|d| d.origin.serves(uri)) {
            Some(at) => at,
            None => {
                let done = Arc::new(tokio::sync::Notify::new());
                let origin = Arc::new(Origin::of(uri));
                idle.dials.push(Dialing { origin, alone: false, busy: false, done });
                idle.dials.len() - 1
            }
        };
        let d = &mut idle.dials[at];
        match (d.alone, d.busy) {
            (true, _) => Dial::Alone,
            (false, true) => Dial::Wait(d.done.clone()),
            (false, false) => {
                d.busy = true;
                Dial::First(DialGuard { shared: self.clone(), origin: d.origin.clone(), h2: false })
            }
        }
    }

    /// Whether a dial to `uri`'s origin is still under way (checked after registering to wait,
    /// so that a dial ending in between is not waited for).
    pub(super) fn dialing(&self, uri: &Uri) -> bool {
        self.idle.lock().is_ok_and(|idle| idle.dials.iter().any(|d| d.origin.serves(uri) && d.busy))
    }

    /// Puts an HTTP/1.1 connection back after a clean exchange (or closes it: pool full).
    pub(super) fn put(self: &Arc<Self>, conn: Conn) {
        let since = self.tick.load(Ordering::Relaxed);
        let refused = {
            let Ok(mut idle) = self.idle.lock() else { return };
            if idle.h1.iter().filter(|c| c.conn.origin == conn.origin).count() < self.max_idle {
                idle.h1.push(IdleH1 { conn, since });
                None
            } else {
                Some(conn)
            }
        };
        if refused.is_none() && !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self), self.every));
        }
        drop(refused);
    }

    /// Shares a new HTTP/2 connection, with one request (the caller's) already on it. Closed
    /// ones leave at the next sweep, when their last request has ended.
    pub(super) fn put_h2(self: &Arc<Self>, origin: Arc<Origin>, sender: SendRequest<Full<Bytes>>) -> Stream {
        let last = self.tick.load(Ordering::Relaxed);
        let load = Arc::new(Load { streams: AtomicUsize::new(1), gone: AtomicBool::new(false) });
        if let Ok(mut idle) = self.idle.lock() {
            // It speaks HTTP/2 again: new connections are opened one at a time again.
            if let Some(d) = idle.dials.iter_mut().find(|d| d.origin == origin) {
                d.alone = false;
            }
            idle.h2.push(H2 { origin, sender, load: load.clone(), last });
        }
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self), self.every));
        }
        Stream(load)
    }

    /// One sweep: the tick advances, and expired or closed connections leave the pool.
    fn sweep(&self) {
        let now = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        let (h1, h2) = {
            let Ok(mut idle) = self.idle.lock() else { return };
            let (keep, h1) = std::mem::take(&mut idle.h1)
                .into_iter()
                .partition(|c| now - c.since <= self.idle_ticks && c.conn.is_idle_open());
            idle.h1 = keep;
            let (keep, h2) = std::mem::take(&mut idle.h2).into_iter().partition(|c| {
                let busy = c.load.streams.load(Ordering::Relaxed) > 0;
                (busy || now - c.last <= self.idle_ticks)
                    && !c.sender.is_closed()
                    && !c.load.gone.load(Ordering::Relaxed)
            });
            idle.h2 = keep;
            (h1, h2)
        };
        // Closed outside the lock.
        drop::<(Vec<IdleH1>, Vec<H2>)>((h1, h2));
    }

    #[cfg(test)]
    pub(super) fn idle_h1(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.h1.len())
    }
}

async fn sweep(shared: Weak<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        shared.sweep();
    }
}
