//! The one mock upstream of the harness. By default it is tier1's own mock (the server behind
//! `tier1 mock-upstream`: behaviour per model or key, fault injection, stream counters); for
//! byte-exact checks it answers fixed bytes instead ([`MockUpstream::fixed`]). Either way every
//! request is recorded and counted in [`Stats`], so tests assert the calls, not only statuses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tier1::testing::mock::server::{MockStats, RecordedRequest, StatsSnapshot};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

pub use tier1::testing::mock::server::MockConfig;
pub use tier1::testing::mock::{Behavior, DEFAULT_REPLY};

/// A behaviour that fails with `status` (every request).
pub fn fails(status: u16) -> Behavior {
    Behavior { status: Some(StatusCode::from_u16(status).unwrap()), ..Behavior::default() }
}

/// What a fixed upstream answers, to every request.
#[derive(Clone)]
pub struct Fixed {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// Body frames, sent one by one with `gap` between them.
    pub chunks: Vec<Bytes>,
    pub gap: Duration,
}

impl Fixed {
    /// A 200 `application/json` answer of exactly `body`.
    pub fn json(body: &str) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            chunks: vec![Bytes::from(body.to_owned())],
            gap: Duration::ZERO,
        }
    }
}

/// A running mock upstream on `127.0.0.1:0`; stops when dropped.
pub struct MockUpstream {
    pub addr: SocketAddr,
    /// What it received, and its counters.
    pub stats: Stats,
    _running: Running,
}

enum Running {
    Mock(tier1::testing::mock::server::MockUpstream),
    Fixed(oneshot::Sender<()>),
}

impl MockUpstream {
    /// tier1's mock serving `config`.
    pub async fn start(config: MockConfig) -> std::io::Result<Self> {
        let mock = tier1::testing::mock::server::MockUpstream::start(config).await?;
        let stats = Stats::Mock(mock.stats.clone());
        Ok(Self { addr: mock.addr, stats, _running: Running::Mock(mock) })
    }

    /// An upstream answering every request with exactly `fixed`.
    pub async fn fixed(fixed: Fixed) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(FixedLog::default());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve_fixed(listener, fixed, log.clone(), stopped));
        Self { addr, stats: Stats::Fixed(log), _running: Running::Fixed(stop) }
    }

    /// `http://ADDR`, to use as a provider's `base_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The requests a mock upstream received and its counters (for fixed answers: requests and
/// connections; the stream counters stay 0).
pub enum Stats {
    Mock(Arc<MockStats>),
    Fixed(Arc<FixedLog>),
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        match self {
            Self::Mock(s) => s.snapshot(),
            Self::Fixed(l) => *l.counts.borrow(),
        }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        match self {
            Self::Mock(s) => s.requests(),
            Self::Fixed(l) => l.requests.lock().unwrap().clone(),
        }
    }

    /// Takes `model` down (every request answered `status`), or back up with `None` (tier1's
    /// mock only).
    pub fn set_down(&self, model: &str, status: Option<u16>) {
        match self {
            Self::Mock(s) => s.set_down(model, status.map(|s| StatusCode::from_u16(s).unwrap())),
            Self::Fixed(_) => panic!("a fixed upstream has no models to take down"),
        }
    }

    /// Requests whose JSON body names `model`.
    pub fn calls_for(&self, model: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|v| v["model"] == model)
            })
            .count()
    }

    /// Waits until `cond` holds, or `timeout` passes; returns the last snapshot either way.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        cond: impl Fn(&StatsSnapshot) -> bool,
    ) -> Result<StatsSnapshot, StatsSnapshot> {
        let log = match self {
            Self::Mock(s) => return s.wait_until(timeout, cond).await,
            Self::Fixed(l) => l,
        };
        let mut rx = log.counts.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let snap = *rx.borrow_and_update();
            if cond(&snap) {
                return Ok(snap);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                let snap = *rx.borrow();
                return if cond(&snap) { Ok(snap) } else { Err(snap) };
            }
        }
    }
}

/// A fixed upstream's record.
pub struct FixedLog {
    requests: Mutex<Vec<RecordedRequest>>,
    counts: watch::Sender<StatsSnapshot>,
}

impl Default for FixedLog {
    fn default() -> Self {
        Self { requests: Mutex::new(Vec::new()), counts: watch::channel(StatsSnapshot::default()).0 }
    }
}

async fn serve_fixed(
    listener: TcpListener,
    fixed: Fixed,
    log: Arc<FixedLog>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => a.unwrap(),
            _ = &mut stopped => return,
        };
        log.counts.send_modify(|c| c.connections_opened += 1);
        let (fixed, log) = (fixed.clone(), log.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn({
                let log = log.clone();
                move |req: Request<Incoming>| answer(fixed.clone(), log.clone(), req)
            });
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            log.counts.send_modify(|c| c.connections_closed += 1);
        });
    }
}

async fn answer(
    fixed: Fixed,
    log: Arc<FixedLog>,
    req: Request<Incoming>,
) -> Result<Response<ChunkBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    log.requests.lock().unwrap().push(RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), ToString::to_string),
        headers: parts.headers,
        body,
    });
    log.counts.send_modify(|c| c.requests += 1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for c in fixed.chunks {
            if tx.send(c).await.is_err() {
                return;
            }
            // The scenario's pace between frames, not a wait for readiness.
            tokio::time::sleep(fixed.gap).await;
        }
    });
    let mut resp = Response::new(ChunkBody(rx));
    *resp.status_mut() = StatusCode::from_u16(fixed.status).unwrap();
    for (k, v) in &fixed.headers {
        resp.headers_mut().append(*k, v.parse().unwrap());
    }
    Ok(resp)
}

struct ChunkBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}
