//! The access log's writer: one line per request, formatted by the request's task into a reused
//! buffer ([`line`]) and copied into a bounded queue that one thread writes out, many lines per
//! `write`. A request never waits for stdout: when the queue is full (stdout stalled: a pipe
//! nobody reads, a slow log collector), the line is dropped and counted
//! (`tier1_log_lines_dropped_total`). A graceful stop writes every queued line ([`shutdown`]).
//!
//! Not `tracing-appender`'s non-blocking writer: it sends each line as its own `Vec` (an
//! allocation and a channel message per request) and writes them one `write_all` at a time, so
//! batching would need a `BufWriter` around stdout, and its drop count is its own counter. Here
//! the queue is one byte buffer (bounded in bytes, swapped whole with the writer's: no allocation
//! once both have grown), the writer wakes only when it sleeps with nothing to write, and it
//! lingers [`LINGER`] before each write to gather a batch.
//!
//! Without [`install`] (the library in tests, or a log filter that leaves `tier1::access` out) the
//! line goes through `tracing` as before.

pub(crate) mod line;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// How many bytes of lines wait for the writer at most (about 10,000 lines): beyond, lines are
/// dropped. The writer's own buffer, swapped with it, holds as much again while it writes.
const CAPACITY: usize = 4 << 20;

/// How long the writer waits after waking before it takes the queued lines: under load, one
/// `write` carries some milliseconds of lines instead of one or two.
const LINGER: Duration = Duration::from_millis(5);

/// The access lines' format, as `[log] format` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, as tracing-subscriber's flattened JSON format.
    Json,
    /// tracing-subscriber's full text format.
    Text,
}

/// The process's access-log writer, once [`install`]ed.
static INSTALLED: OnceLock<(Sink, Format)> = OnceLock::new();

/// Lines dropped by the installed writer (0 without one).
pub(crate) fn dropped() -> u64 {
    INSTALLED.get().map_or(0, |(s, _)| s.dropped())
}

/// The installed writer and its format, if any.
pub(crate) fn installed() -> Option<&'static (Sink, Format)> {
    INSTALLED.get()
}

/// Starts the access-log writer thread on stdout, in `format`. Returns false when it could not
/// start (no thread) or one is installed already: lines then go through `tracing`.
pub fn install(format: Format) -> bool {
    if INSTALLED.get().is_some() {
        return false;
    }
    match Sink::start(Box::new(std::io::stdout()), CAPACITY, LINGER) {
        Ok(sink) => INSTALLED.set((sink, format)).is_ok(),
        Err(_) => false,
    }
}

/// Writes every queued line and stops the writer thread: for a graceful stop, once the server
/// has drained. Lines logged after it are dropped (and counted).
pub fn shutdown() {
    if let Some((sink, _)) = INSTALLED.get() {
        sink.close(CLOSE_WAIT);
    }
}

/// How long a graceful stop waits for the queued lines to be written: a stdout that stalls
/// must not hold the process forever.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A bounded queue of lines and the thread that writes them to `out`.
pub(crate) struct Sink {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer (a line for an idle writer, or the close).
    wake: Condvar,
    /// Wakes [`Sink::close`] once the writer is done.
    done: Condvar,
    dropped: AtomicU64,
    capacity: usize,
}

struct Queue {
    /// Whole lines, each ending in `\n`, not yet taken by the writer.
    pending: Vec<u8>,
    /// The writer waits for a line (and must be woken).
    idle: bool,
    /// No more lines will be written once `pending` is out.
    closed: bool,
    /// The writer has written its last batch and stopped.
    finished: bool,
}

/// A poisoned lock still holds whole lines: a thread panicked elsewhere, never mid-copy.
fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sink {
    /// Starts the writer thread: at most `capacity` bytes queued, `linger` between a wake-up and
    /// the write.
    pub(crate) fn start(
        out: Box<dyn Write + Send>,
        capacity: usize,
        linger: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { pending: Vec::new(), idle: false, closed: false, finished: false }),
            wake: Condvar::new(),
            done: Condvar::new(),
            dropped: AtomicU64::new(0),
            capacity,
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new().name("tier1-access-log".into()).spawn(move || writer.run(out, linger))?;
        Ok(Self { shared })
    }

    /// Queues `line` (whole, ending in `\n`) unless the queue is full or closed: then drops and
    /// counts it. Never waits for the writer. True when queued.
    pub(crate) fn push(&self, line: &[u8]) -> bool {
        let wake = {
            let mut q = lock(&self.shared.queue);
            if q.closed || q.pending.len() + line.len() > self.shared.capacity {
                drop(q);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            q.pending.extend_from_slice(line);
            std::mem::replace(&mut q.idle, false)
        };
        if wake {
            self.shared.wake.notify_one();
        }
        true
    }

    /// Lines dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes out every queued line, then stops the thread: waits for it, at most `wait` (a
    /// stalled stdout). True when every line is out.
    pub(crate) fn close(&self, wait: Duration) -> bool {
        let mut q = lock(&self.shared.queue);
        q.closed = true;
        self.shared.wake.notify_one();
        let (q, _) = self
            .shared
            .done
            .wait_timeout_while(q, wait, |q| !q.finished)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.finished
    }
}

impl Shared {
    /// The writer: waits for lines, lingers to gather more, swaps the queue with its own buffer
    /// and writes it in one `write_all`; until closed and empty.
    fn run(&self, mut out: Box<dyn Write + Send>, linger: Duration) {
        let mut batch = Vec::new();
        loop {
            let mut q = lock(&self.queue);
            while q.pending.is_empty() && !q.closed {
                q.idle = true;
                q = self.wake.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if !q.closed && !linger.is_zero() {
                drop(q);
                std::thread::sleep(linger);
                q = lock(&self.queue);
            }
            std::mem::swap(&mut q.pending, &mut batch);
            if q.closed && batch.is_empty() {
                q.finished = true;
                drop(q);
                self.done.notify_all();
                return;
            }
            drop(q);
            // A failed write (stdout closed) loses the batch, counted; the next one is tried again.
            if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                let lost = memchr::memchr_iter(b'\n', &batch).count() as u64;
                self.dropped.fetch_add(lost, Ordering::Relaxed);
            }
            batch.clear();
        }
    }
}
