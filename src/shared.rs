//! Shared state across replicas through Redis, off the request path.
//!
//! One background task per replica ([`run`]) does, every `redis.sync_interval`: flush the rate
//! limit deltas and read the fleet totals in one atomic Lua script per batch; report this
//! replica's in-flight counts and read the others'. Every second: heartbeat
//! `{prefix}:replicas:{id}` (with a TTL) and count the fleet, and reconcile shared cooldowns and
//! breaker openings from `{prefix}:state`. When a replica rests a key or model or opens a
//! breaker, the request path queues an [`Event`] (never waits); the task writes it to
//! `{prefix}:state` with its expiry time and publishes it, and every other replica applies it
//! within milliseconds through its subscription ([`subscribe`]), or at the next reconciliation if
//! the message was missed. A replica that starts or reconnects loads the current state.
//!
//! Redis down: the task keeps trying (the connection manager reconnects by itself),
//! `tier1_redis_up` is 0, one warning per outage is logged, and the limiter falls back to its
//! local rule (see [`crate::ratelimit`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::config::RedisConfig;
use crate::ratelimit::{Fleet, unix_ms};

/// A state change another replica must apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A provider key rests until `until_ms`: for one model, or as a whole.
    KeyCooldown {
        /// Provider name.
        provider: String,
        /// Key name.
        key: String,
        /// The model that rests on it; none: the whole key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Unix ms.
        until_ms: u64,
    },
    /// A (provider, model) target rests.
    TargetCooldown {
        /// Provider name.
        provider: String,
        /// Model.
        model: String,
        /// Unix ms.
        until_ms: u64,
    },
    /// A breaker opened (`target` `*`: the provider-wide one).
    BreakerOpen {
        /// Provider name.
        provider: String,
        /// Model, or `*`.
        target: String,
        /// Unix ms.
        until_ms: u64,
    },
    /// What a key's provider last said is left of its quota. Queued by the request path empty
    /// ([`Event::headroom_pending`]); the sync task fills it with the key's freshest state just
    /// before sending.
    Headroom {
        /// Provider name.
        provider: String,
        /// Key name.
        key: String,
        /// When the answer arrived at the replica that read it (unix ms): the newest wins.
        at_ms: u64,
        /// Its levels.
        levels: Levels,
    },
}

/// A key's headroom levels on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Levels {
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Level>,
    /// Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Level>,
}

/// One headroom level on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Level {
    /// What is left.
    pub remaining: u64,
    /// Of how much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// When it refills (unix ms).
    pub reset_ms: u64,
}

impl Event {
    /// The field of `{prefix}:state` that holds this state.
    fn field(&self) -> String {
        match self {
            Self::KeyCooldown { provider, key, model: None, .. } => format!("key\u{1f}{provider}\u{1f}{key}"),
            Self::KeyCooldown { provider, key, model: Some(m), .. } => {
                format!("key\u{1f}{provider}\u{1f}{key}\u{1f}{m}")
            }
            Self::TargetCooldown { provider, model, .. } => format!("target\u{1f}{provider}\u{1f}{model}"),
            Self::BreakerOpen { provider, target, .. } => format!("breaker\u{1f}{provider}\u{1f}{target}"),
            Self::Headroom { provider, key, .. } => format!("{provider}\u{1f}{key}"),
        }
    }

    fn until(&self) -> u64 {
        match self {
            Self::KeyCooldown { until_ms, .. }
            | Self::TargetCooldown { until_ms, .. }
            | Self::BreakerOpen { until_ms, .. } => *until_ms,
            Self::Headroom { levels, .. } => {
                levels.requests.iter().chain(&levels.tokens).map(|l| l.reset_ms).max().unwrap_or(0)
            }
        }
    }

    /// A key's headroom to share, filled in by the sync task.
    pub(crate) fn headroom_pending(provider: &str, key: &str) -> Self {
        Self::Headroom {
            provider: provider.to_owned(),
            key: key.to_owned(),
            at_ms: 0,
            levels: Levels::default(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: Event,
}

/// The request path's handle on shared state.
pub(crate) struct Shared {
    /// The fleet view (also held by the limiter).
    pub fleet: Arc<Fleet>,
    /// This replica's id.
    pub replica: String,
    events: Option<mpsc::UnboundedSender<Event>>,
    conn: std::sync::Mutex<Option<Conn>>,
    prefix: String,
    timeout: Duration,
    /// Replica ids alive at the last heartbeat (for `/admin/state`).
    pub members: std::sync::Mutex<Vec<String>>,
}

/// What the Redis tasks need of the running tier1, and nothing more.
#[derive(Clone)]
pub(crate) struct Handles {
    /// Redis and sync metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// This replica's shared-state handle.
    pub shared: Arc<Shared>,
    /// The rate-limit counters synced with the fleet.
    pub ratelimit: Arc<crate::ratelimit::Limiter>,
    /// Where shared cooldowns and breaker openings land.
    pub registry: Arc<crate::resilience::Registry>,
}

impl Shared {
    /// No Redis: events go nowhere.
    pub(crate) fn standalone(fleet: Arc<Fleet>) -> Self {
        Self {
            fleet,
            replica: replica_id(),
            events: None,
            conn: std::sync::Mutex::new(None),
            prefix: String::new(),
            timeout: Duration::from_secs(1),
            members: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// With Redis: returns the handle and the receiving end of its event queue, for [`run`].
    pub(crate) fn with_redis(fleet: Arc<Fleet>, cfg: &RedisConfig) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Self {
            fleet,
            replica: replica_id(),
            events: Some(tx),
            conn: std::sync::Mutex::new(None),
            prefix: cfg.key_prefix.clone(),
            timeout: cfg.timeout,
            members: std::sync::Mutex::new(Vec::new()),
        };
        (shared, rx)
    }

    /// Queues a state change for the other replicas (never waits).
    pub(crate) fn publish(&self, event: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    fn connection(&self) -> Option<Conn> {
        self.conn.lock().ok().and_then(|c| c.clone())
    }

    /// Strict mode: one atomic check-and-add of `cost` against `limit` in the sliding window of
    /// `counter` at `now` (unix ms, the limiter's clock). `None` when Redis cannot answer (the
    /// caller applies the failure rule).
    pub(crate) async fn strict(
        &self,
        counter: &crate::ratelimit::CounterId,
        limit: u64,
        cost: f64,
        now: u64,
    ) -> Option<bool> {
        let mut conn = self.connection()?;
        let (index, frac) = crate::ratelimit::window::position(now, counter.window_ms);
        // A budget's fixed window: the previous one weighs nothing.
        let frac = if counter.fixed { 1.0 } else { frac };
        let mut call = STRICT.prepare_invoke();
        call.key(counter.redis_key(&self.prefix, index))
            .key(counter.redis_key(&self.prefix, index.saturating_sub(1)))
            .arg(limit as f64)
            .arg(cost)
            .arg(frac)
            .arg(counter.window_ms * 2);
        match tokio::time::timeout(self.timeout, call.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(admitted)) => Some(admitted == 1),
            _ => None,
        }
    }
}

fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}-{:08x}", host.trim(), std::process::id(), fastrand::u32(..))
}

/// A single node (through the reconnecting connection manager) or a cluster.
#[derive(Clone)]
enum Conn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The certificates of `[redis]`, as the redis crate takes them.
fn certificates(tls: &crate::config::RedisTls) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: tls
            .client
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() }),
        root_cert: tls.ca.clone(),
    }
}

/// A client for `[redis]`'s URL, with its certificates when it has some.
fn client(cfg: &RedisConfig) -> redis::RedisResult<redis::Client> {
    match &cfg.tls {
        Some(tls) => redis::Client::build_with_tls(cfg.url.expose(), certificates(tls)),
        None => redis::Client::open(cfg.url.expose()),
    }
}

async fn connect(cfg: &RedisConfig) -> redis::RedisResult<Conn> {
    if cfg.cluster {
        let mut builder = redis::cluster::ClusterClient::builder(vec![cfg.url.expose()])
            .connection_timeout(cfg.timeout)
            .response_timeout(cfg.timeout);
        if let Some(tls) = &cfg.tls {
            builder = builder.certs(certificates(tls));
        }
        return Ok(Conn::Cluster(builder.build()?.get_async_connection().await?));
    }
    let client = client(cfg)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.timeout))
        .set_response_timeout(Some(cfg.timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(Conn::Single(redis::aio::ConnectionManager::new_with_config(client, config).await?))
}

/// Flushes deltas, reads totals: per counter (current key, previous key) and (delta, ttl); then per
/// concurrency hash this replica's count; returns (current, previous) per counter and the other
/// replicas' concurrency sum per hash. Entries older than 3 s are dead replicas': ignored.
static BATCH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local replica, now, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out, a = {}, 4
for i = 1, n do
  local delta, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local curr
  if delta ~= 0 then
    curr = redis.call('INCRBYFLOAT', KEYS[2 * i - 1], delta)
    redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
  else
    curr = redis.call('GET', KEYS[2 * i - 1]) or '0'
  end
  out[#out + 1] = tostring(curr)
  out[#out + 1] = tostring(redis.call('GET', KEYS[2 * i]) or '0')
end
for i = 2 * n + 1, #KEYS do
  redis.call('HSET', KEYS[i], replica, ARGV[a] .. ':' .. now)
  a = a + 1
  redis.call('PEXPIRE', KEYS[i], 10000)
  local total, all = 0, redis.call('HGETALL', KEYS[i])
  for j = 1, #all, 2 do
    local count, at = string.match(all[j + 1], '(%d+):(%d+)')
    if all[j] ~= replica and count and now - tonumber(at) < 3000 then total = total + tonumber(count) end
  end
  out[#out + 1] = tostring(total)
end
return out
",
    )
});

/// Strict mode: check and add in one step.
static STRICT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local curr = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local limit, cost, frac, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if prev * (1 - frac) + curr + cost > limit then return 0 end
redis.call('INCRBYFLOAT', KEYS[1], cost)
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
",
    )
});

/// Events kept while Redis cannot take them (the newest win: an outage must not grow memory).
const MAX_QUEUED: usize = 10_000;

/// The sync task: runs until `stop`.
pub(crate) async fn run(
    state: Handles,
    cfg: RedisConfig,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let fleet = state.shared.fleet.clone();
    let prefix = cfg.key_prefix.clone();
    let mut conn: Option<Conn> = None;
    let mut warned = false;
    let mut last_beat = 0u64;
    let mut queued: Vec<Event> = Vec::new();
    loop {
        if conn.is_none() {
            match tokio::time::timeout(cfg.timeout * 2, connect(&cfg)).await {
                Ok(Ok(c)) => {
                    if let Ok(mut slot) = state.shared.conn.lock() {
                        *slot = Some(c.clone());
                    }
                    conn = Some(c);
                    last_beat = 0;
                }
                _ => outage(&state, &fleet, &mut warned, "connect"),
            }
        }
        while let Ok(e) = events.try_recv() {
            queued.push(e);
        }
        if queued.len() > MAX_QUEUED {
            queued.drain(..queued.len() - MAX_QUEUED);
        }
        if let Some(c) = conn.as_mut() {
            let started = tokio::time::Instant::now();
            match sync(&state, c, &prefix).await {
                Ok(()) => {
                    state.metrics.redis_sync_seconds.observe(started.elapsed().as_secs_f64());
                    if !fleet.up.swap(true, Ordering::AcqRel) {
                        state.metrics.redis_up.set(1);
                        if warned {
                            tracing::info!("redis is back: shared limits and state resume");
                        }
                        warned = false;
                    }
                }
                Err(_) => outage(&state, &fleet, &mut warned, "sync"),
            }
            if !queued.is_empty() && fleet.up.load(Ordering::Acquire) {
                queued.retain_mut(|e| refresh(&state, e));
                match share(c, &prefix, &state.shared.replica, &queued).await {
                    Ok(()) => queued.clear(),
                    Err(_) => outage(&state, &fleet, &mut warned, "publish"),
                }
            }
            let now = unix_ms();
            if now.saturating_sub(last_beat) >= 1000 && fleet.up.load(Ordering::Acquire) {
                match heartbeat(&state, c, &prefix).await {
                    Ok(()) => last_beat = now,
                    Err(_) => outage(&state, &fleet, &mut warned, "heartbeat"),
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(cfg.sync_interval) => {}
        }
    }
}

fn outage(state: &Handles, fleet: &Fleet, warned: &mut bool, op: &'static str) {
    state.metrics.redis_errors_total.get(crate::metrics::labels::RedisOp { op }).inc();
    state.ratelimit.restore_batch();
    if fleet.up.swap(false, Ordering::AcqRel) || !*warned {
        state.metrics.redis_up.set(0);
        if !*warned {
            tracing::warn!(
                op,
                "redis unavailable: limits hold per replica, cooldowns stay local, until it returns"
            );
            *warned = true;
        }
    }
}

async fn sync(state: &Handles, conn: &mut Conn, prefix: &str) -> redis::RedisResult<()> {
    let now = state.ratelimit.now_ms();
    let (items, inflight) = state.ratelimit.take_batch(now);
    if items.is_empty() && inflight.is_empty() {
        // Nothing to count: still check that Redis answers, to track its health.
        let _: String = redis::cmd("PING").query_async(conn).await?;
        return Ok(());
    }
    let mut call = BATCH.prepare_invoke();
    call.arg(&state.shared.replica).arg(now).arg(items.len());
    for item in &items {
        call.key(item.id.redis_key(prefix, item.index))
            .key(item.id.redis_key(prefix, item.index.saturating_sub(1)));
        call.arg(item.delta).arg(item.id.window_ms * 2);
    }
    for i in &inflight {
        call.key(format!("{{{prefix}}}:if:{}:{}", i.id.0, i.id.1)).arg(i.here);
    }
    let out: Vec<String> = match call.invoke_async(conn).await {
        Ok(out) => out,
        Err(e) => {
            state.ratelimit.restore_batch();
            return Err(e);
        }
    };
    let num = |s: &String| s.parse::<f64>().unwrap_or(0.0);
    let totals: Vec<(f64, f64)> =
        out.chunks(2).take(items.len()).map(|p| (num(&p[0]), p.get(1).map_or(0.0, num))).collect();
    let others: Vec<u32> = out.iter().skip(2 * items.len()).map(|s| num(s) as u32).collect();
    state.ratelimit.apply_batch(&items, &totals, &inflight, &others, now);
    Ok(())
}

/// Keeps a key's headroom in `{prefix}:headroom` unless a newer answer's is there: field
/// `provider\x1fkey`, value `AT_MS LEVELS_JSON`.
const NEWER_HEADROOM: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local at = cur and tonumber(string.match(cur, '^(%d+)'))
if at and at > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
";

/// Fills a queued headroom event with its key's freshest state (what is known when the sync
/// sends, not when the first answer queued it) and lets the key queue the next; false when
/// nothing fresh is left to share. Other events pass as they are.
fn refresh(state: &Handles, e: &mut Event) -> bool {
    let Event::Headroom { provider, key, at_ms, levels } = e else { return true };
    let Some(k) = state.registry.existing_key(provider, key) else { return false };
    k.headroom.take_dirty();
    let now = state.registry.clock.now();
    let Some(known) = k.headroom.known(now) else { return false };
    let unix = unix_ms();
    let wire = |w: crate::resilience::headroom::Window| Level {
        remaining: w.remaining,
        limit: w.limit,
        reset_ms: unix.saturating_add(u64::try_from(w.left(now).as_millis()).unwrap_or(u64::MAX)),
    };
    *at_ms = known.at_ms;
    *levels = Levels { requests: known.requests.map(wire), tokens: known.tokens.map(wire) };
    true
}

/// Writes events to `{prefix}:state` (headroom to `{prefix}:headroom`, newest answer wins) and
/// publishes them.
async fn share(conn: &mut Conn, prefix: &str, replica: &str, events: &[Event]) -> redis::RedisResult<()> {
    let hash = format!("{{{prefix}}}:state");
    let headroom = format!("{{{prefix}}}:headroom");
    let channel = format!("{{{prefix}}}:events");
    let mut pipe = redis::pipe();
    let (mut latest, mut latest_headroom) = (0, 0);
    for e in events {
        if let Event::Headroom { at_ms, levels, .. } = e {
            let value = serde_json::to_string(levels).unwrap_or_default();
            pipe.cmd("EVAL").arg(NEWER_HEADROOM).arg(1).arg(&headroom).arg(e.field()).arg(at_ms).arg(value);
            pipe.ignore();
            latest_headroom = latest_headroom.max(e.until());
        } else {
            pipe.hset(&hash, e.field(), e.until()).ignore();
            latest = latest.max(e.until());
        }
        let payload = serde_json::to_string(&Envelope { origin: replica.to_owned(), event: e.clone() })
            .unwrap_or_default();
        pipe.publish(&channel, payload).ignore();
    }
    for (hash, latest) in [(&hash, latest), (&headroom, latest_headroom)] {
        if latest > 0 {
            let ttl = latest.saturating_sub(unix_ms()).max(1000);
            pipe.cmd("PEXPIRE").arg(hash).arg(ttl).arg("GT").ignore();
            pipe.cmd("PEXPIRE").arg(hash).arg(ttl).arg("NX").ignore();
        }
    }
    pipe.query_async::<()>(conn).await
}

/// What the heartbeat reads: the fleet, `{prefix}:state` (field, until) and `{prefix}:headroom`.
type Reconciled = (Vec<String>, Vec<(String, u64)>, Vec<(String, String)>);

/// Heartbeat, fleet count, and reconciliation of shared state.
async fn heartbeat(state: &Handles, conn: &mut Conn, prefix: &str) -> redis::RedisResult<()> {
    let now = unix_ms();
    let me = &state.shared.replica;
    let fleet_key = format!("{{{prefix}}}:replicas");
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(format!("{{{prefix}}}:replicas:{me}")).arg(now).arg("PX").arg(3000).ignore();
    pipe.zadd(&fleet_key, me, now).ignore();
    pipe.cmd("ZREMRANGEBYSCORE").arg(&fleet_key).arg("-inf").arg(now.saturating_sub(3000)).ignore();
    pipe.pexpire(&fleet_key, 10_000).ignore();
    pipe.zrange(&fleet_key, 0, -1);
    pipe.hgetall(format!("{{{prefix}}}:state"));
    pipe.hgetall(format!("{{{prefix}}}:headroom"));
    let (members, entries, headroom): Reconciled = pipe.query_async(conn).await?;
    state
        .shared
        .fleet
        .replicas
        .store(u32::try_from(members.len().max(1)).unwrap_or(u32::MAX), Ordering::Release);
    if let Ok(mut m) = state.shared.members.lock() {
        *m = members;
    }
    let mut stale = Vec::new();
    for (field, until) in entries {
        if until <= now {
            stale.push(field);
            continue;
        }
        if let Some(event) = parse_field(&field, until) {
            apply(state, &event);
        }
    }
    if !stale.is_empty() {
        let _: () =
            redis::cmd("HDEL").arg(format!("{{{prefix}}}:state")).arg(stale).query_async(conn).await?;
    }
    let mut stale = Vec::new();
    for (field, value) in headroom {
        match parse_headroom(&field, &value) {
            Some(event) if event.until() > now => apply(state, &event),
            _ => stale.push(field),
        }
    }
    if !stale.is_empty() {
        let _: () =
            redis::cmd("HDEL").arg(format!("{{{prefix}}}:headroom")).arg(stale).query_async(conn).await?;
    }
    Ok(())
}

/// A `{prefix}:headroom` entry (see [`NEWER_HEADROOM`]).
fn parse_headroom(field: &str, value: &str) -> Option<Event> {
    let (provider, key) = field.split_once('\u{1f}')?;
    let (at, levels) = value.split_once(' ')?;
    Some(Event::Headroom {
        provider: provider.to_owned(),
        key: key.to_owned(),
        at_ms: at.parse().ok()?,
        levels: serde_json::from_str(levels).ok()?,
    })
}

fn parse_field(field: &str, until_ms: u64) -> Option<Event> {
    let mut parts = field.split('\u{1f}');
    let (kind, provider, name) = (parts.next()?, parts.next()?.to_owned(), parts.next()?.to_owned());
    Some(match kind {
        "key" => Event::KeyCooldown { provider, key: name, model: parts.next().map(str::to_owned), until_ms },
        "target" => Event::TargetCooldown { provider, model: name, until_ms },
        "breaker" => Event::BreakerOpen { provider, target: name, until_ms },
        _ => return None,
    })
}

/// Applies another replica's state change to this replica's registry.
pub(crate) fn apply(state: &Handles, event: &Event) {
    let remaining = Duration::from_millis(event.until().saturating_sub(unix_ms()));
    if remaining.is_zero() {
        return;
    }
    let now = state.registry.clock.now();
    match event {
        Event::KeyCooldown { provider, key, model, .. } => {
            if let Some(k) = state.registry.existing_key(provider, key) {
                match model {
                    Some(m) => k.models.cool_for(m, now, remaining),
                    None => k.cooldown.cool_for(now, remaining),
                }
            }
        }
        Event::TargetCooldown { provider, model, .. } => {
            if let Some(t) = state.registry.existing_target(provider, model) {
                t.cooldown.cool_for(now, remaining);
            }
        }
        Event::Headroom { provider, key, at_ms, levels } => {
            if let Some(k) = state.registry.existing_key(provider, key) {
                let unix = unix_ms();
                let local = |l: &Level| {
                    (l.reset_ms > unix).then(|| crate::resilience::headroom::Window {
                        remaining: l.remaining,
                        limit: l.limit,
                        reset: now.saturating_add(l.reset_ms.saturating_sub(unix).saturating_mul(1_000_000)),
                    })
                };
                k.headroom.merge(
                    *at_ms,
                    levels.requests.as_ref().and_then(local),
                    levels.tokens.as_ref().and_then(local),
                );
            }
        }
        Event::BreakerOpen { provider, target, .. } => {
            if target == crate::metrics::TARGET_PROVIDER {
                if let Some(p) = state.registry.existing_provider(provider) {
                    p.breaker.force_open(now, remaining);
                }
            } else if let Some(t) = state.registry.existing_target(provider, target) {
                t.breaker.force_open(now, remaining);
            }
        }
    }
}

/// One subscription session: returns when the connection is lost.
async fn listen(state: &Handles, cfg: &RedisConfig, channel: &str) -> Option<()> {
    let client = client(cfg).ok()?;
    let mut pubsub = tokio::time::timeout(cfg.timeout, client.get_async_pubsub()).await.ok()?.ok()?;
    pubsub.subscribe(channel).await.ok()?;
    let mut stream = pubsub.into_on_message();
    loop {
        let next =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx));
        let msg = next.await?;
        let Ok(payload) = msg.get_payload::<String>() else { continue };
        let Ok(env) = serde_json::from_str::<Envelope>(&payload) else { continue };
        if env.origin != state.shared.replica {
            apply(state, &env.event);
        }
    }
}

/// The subscription: applies other replicas' events as they are published; reconnects by itself.
pub(crate) async fn subscribe(state: Handles, cfg: RedisConfig, mut stop: watch::Receiver<bool>) {
    let channel = format!("{{{}}}:events", cfg.key_prefix);
    loop {
        let session = listen(&state, &cfg, &channel);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = session => {}
        }
        // Lost the subscription (Redis down or restarted): retry; reconciliation covers the gap.
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_fields_and_json() {
        let e = Event::BreakerOpen { provider: "p".into(), target: "gpt-4o".into(), until_ms: 42 };
        assert_eq!(parse_field(&e.field(), 42), Some(e.clone()));
        let env = Envelope { origin: "r1".into(), event: e.clone() };
        let back: Envelope = serde_json::from_str(&serde_json::to_string(&env).unwrap()).unwrap();
        assert_eq!(back.event, e);
        let k = Event::KeyCooldown {
            provider: "p".into(),
            key: "with|odd:chars".into(),
            model: None,
            until_ms: 7,
        };
        assert_eq!(parse_field(&k.field(), 7), Some(k));
        let m = Event::KeyCooldown {
            provider: "p".into(),
            key: "k".into(),
            model: Some("gpt-4o".into()),
            until_ms: 7,
        };
        assert_eq!(parse_field(&m.field(), 7), Some(m));
    }

    #[test]
    fn headroom_round_trips_through_its_hash_entry_and_json() {
        let levels = Levels {
            requests: Some(Level { remaining: 0, limit: Some(60), reset_ms: 9_000 }),
            tokens: Some(Level { remaining: 12, limit: None, reset_ms: 4_000 }),
        };
        let e = Event::Headroom { provider: "p".into(), key: "k 1".into(), at_ms: 1_234, levels };
        assert_eq!(e.until(), 9_000, "stale once every level is");
        let value = format!("1234 {}", serde_json::to_string(&levels).unwrap());
        assert_eq!(parse_headroom(&e.field(), &value), Some(e.clone()));
        assert_eq!(parse_headroom(&e.field(), "x {}"), None);
        let env = Envelope { origin: "r1".into(), event: e.clone() };
        let back: Envelope = serde_json::from_str(&serde_json::to_string(&env).unwrap()).unwrap();
        assert_eq!(back.event, e);
        let pending = Event::headroom_pending("p", "k");
        assert_eq!(pending.until(), 0);
    }
}
