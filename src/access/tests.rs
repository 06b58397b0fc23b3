use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::line::Entry;
use super::{Format, Sink};

/// What a test writer received: the bytes, and how many batches (one `flush` each).
#[derive(Clone, Default)]
struct Received(Arc<Mutex<(Vec<u8>, usize)>>);

impl Received {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().0.clone()
    }
    fn batches(&self) -> usize {
        self.0.lock().unwrap().1
    }
}

/// A writer that takes at most `chunk` bytes a call (as a pipe may), pausing `pause` each call,
/// and, when `gate` is given, blocks in its first write until told to go on (a stalled stdout).
struct TestWriter {
    got: Received,
    chunk: usize,
    pause: Duration,
    gate: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

impl TestWriter {
    fn new(got: &Received, chunk: usize) -> Self {
        Self { got: got.clone(), chunk, pause: Duration::ZERO, gate: None }
    }
}

impl Write for TestWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((entered, go)) = self.gate.take() {
            entered.send(()).unwrap();
            let _ = go.recv();
        }
        std::thread::sleep(self.pause);
        let n = buf.len().min(self.chunk);
        self.got.0.lock().unwrap().0.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.got.0.lock().unwrap().1 += 1;
        Ok(())
    }
}

fn line(tag: &str, len: usize) -> Vec<u8> {
    let mut l = format!("{tag}:");
    while l.len() < len - 1 {
        l.push('x');
    }
    l.push('\n');
    l.into_bytes()
}

/// A stalled writer (blocked in its write): lines queue up to the capacity, the rest are
/// dropped and counted at once, never waiting; once it goes on, the queued lines come out whole.
#[test]
fn a_stalled_writer_drops_and_counts_and_never_blocks_a_push() {
    let got = Received::default();
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let writer = TestWriter { gate: Some((entered_tx, go_rx)), ..TestWriter::new(&got, usize::MAX) };
    let sink = Sink::start(Box::new(writer), 1000, Duration::ZERO).unwrap();
    assert!(sink.push(&line("first", 100)));
    entered.recv_timeout(Duration::from_secs(10)).expect("the writer takes the first line");
    // The writer is stuck holding the first line: ten more fit, ten do not.
    let pushed: Vec<bool> = (0..20).map(|i| sink.push(&line(&format!("l{i}"), 100))).collect();
    assert_eq!(pushed, [vec![true; 10], vec![false; 10]].concat());
    assert_eq!(sink.dropped(), 10);
    go.send(()).unwrap();
    assert!(sink.close(Duration::from_secs(10)), "the queued lines go out once the writer moves");
    let want: Vec<u8> = std::iter::once(line("first", 100))
        .chain((0..10).map(|i| line(&format!("l{i}"), 100)))
        .flatten()
        .collect();
    assert_eq!(String::from_utf8(got.bytes()).unwrap(), String::from_utf8(want).unwrap());
    assert!(!sink.push(&line("late", 10)), "closed: a later line is dropped");
    assert_eq!(sink.dropped(), 11);
}

/// A graceful stop whose stdout never moves gives up after its wait instead of holding the
/// process.
#[test]
fn closing_over_a_stalled_writer_is_bounded() {
    let got = Received::default();
    let (entered_tx, entered) = mpsc::channel();
    let (_go, go_rx) = mpsc::channel::<()>();
    let writer = TestWriter { gate: Some((entered_tx, go_rx)), ..TestWriter::new(&got, usize::MAX) };
    let sink = Sink::start(Box::new(writer), 1000, Duration::ZERO).unwrap();
    assert!(sink.push(&line("first", 100)));
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(!sink.close(Duration::from_millis(50)));
}

/// Eight threads logging at once through a writer that takes 4 KiB a call: every line comes
/// out whole, once, in each thread's order, many lines a batch.
#[test]
fn lines_from_many_threads_come_out_whole_and_batched() {
    const THREADS: usize = 8;
    const LINES: usize = 2000;
    let got = Received::default();
    let sink = Arc::new(
        Sink::start(Box::new(TestWriter::new(&got, 4096)), 64 << 20, Duration::from_millis(2)).unwrap(),
    );
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                for i in 0..LINES {
                    // Lengths from 20 to 419 bytes, the length written in the line.
                    let len = 20 + (i * 37 + t * 11) % 400;
                    assert!(sink.push(&line(&format!("{t}.{i}.{len}"), len)));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(sink.close(Duration::from_secs(10)));
    assert_eq!(sink.dropped(), 0);
    let text = String::from_utf8(got.bytes()).unwrap();
    let mut next = [0usize; THREADS];
    for l in text.lines() {
        let (tag, pad) = l.split_once(':').unwrap_or_else(|| panic!("a broken line: {l:?}"));
        let mut parts = tag.split('.').map(|p| p.parse::<usize>().unwrap());
        let (t, i, len) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(l.len() + 1, len, "a line cut or mixed with another: {l:?}");
        assert!(pad.bytes().all(|b| b == b'x'), "{l:?}");
        assert_eq!(i, next[t], "thread {t}'s lines out of order");
        next[t] += 1;
    }
    assert_eq!(next, [LINES; THREADS], "every line, once");
    assert!(got.batches() * 20 <= THREADS * LINES, "{} batches for {} lines", got.batches(), THREADS * LINES);
}

/// Closing writes every queued line first, however slow the writer.
#[test]
fn close_writes_every_queued_line() {
    let got = Received::default();
    let writer = TestWriter { pause: Duration::from_millis(1), ..TestWriter::new(&got, 64) };
    let sink = Sink::start(Box::new(writer), 1 << 20, Duration::from_millis(50)).unwrap();
    for i in 0..100 {
        assert!(sink.push(&line(&format!("l{i}"), 80)));
    }
    assert!(sink.close(Duration::from_secs(30)));
    let want: Vec<u8> = (0..100).flat_map(|i| line(&format!("l{i}"), 80)).collect();
    assert_eq!(got.bytes().len(), want.len());
    assert_eq!(got.bytes(), want);
}

/// A failed write (stdout closed) counts its lines as dropped.
#[test]
fn a_failed_write_counts_its_lines() {
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::start(Box::new(Closed), 1 << 20, Duration::from_millis(20)).unwrap();
    for i in 0..5 {
        assert!(sink.push(&line(&format!("l{i}"), 50)));
    }
    assert!(sink.close(Duration::from_secs(10)));
    assert_eq!(sink.dropped(), 5);
}

/// What tracing-subscriber wrote for `entry` as an event, through the layer `main` builds.
fn through_tracing(entry: &Entry<'_>, json: bool) -> String {
    use tracing_subscriber::layer::SubscriberExt;
    let got = Received::default();
    let sink = got.clone();
    let make = move || TestWriter::new(&sink, usize::MAX);
    let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(make);
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if json {
        Box::new(
            tracing_subscriber::registry().with(layer.json().flatten_event(true).with_current_span(false)),
        )
    } else {
        Box::new(tracing_subscriber::registry().with(layer))
    };
    tracing::subscriber::with_default(subscriber, || entry.event());
    String::from_utf8(got.bytes()).unwrap()
}

/// The line without its timestamp (the two are written microseconds apart).
fn untimed(line: &str, json: bool) -> String {
    if json {
        let start = line.find("\"timestamp\":\"").unwrap() + 13;
        let end = start + line[start..].find('"').unwrap();
        format!("{}{}", &line[..start], &line[end..])
    } else {
        line.split_once(' ').unwrap().1.to_owned()
    }
}

fn entries() -> Vec<Entry<'static>> {
    let full = Entry {
        request_id: "req-1",
        route: "chat",
        endpoint: "chat",
        provider: Some("openai"),
        model: Some("gpt-4o"),
        attempts: 2,
        fallback_reason: Some("server_error"),
        status: 200,
        stream: true,
        broken: false,
        duration_ms: 12.345678,
        ttft_ms: Some(1.0),
        tokens_in: Some(12),
        tokens_out: Some(u64::MAX),
        token_id: Some("tok"),
        client_ip: Some("10.0.0.1"),
    };
    let sparse = Entry {
        request_id: "",
        route: "unmatched",
        provider: None,
        model: None,
        fallback_reason: None,
        status: 404,
        stream: false,
        broken: true,
        duration_ms: 0.000_01,
        ttft_ms: None,
        tokens_in: None,
        tokens_out: None,
        token_id: None,
        client_ip: None,
        ..full
    };
    let hostile = Entry {
        request_id: "a\"b\\c\td",
        route: "ré\u{7f}\u{1}\n\u{200b}x",
        model: Some("{\"k\":1}"),
        token_id: Some("' ="),
        duration_ms: 1e21,
        ttft_ms: Some(123_456_789.125),
        ..full
    };
    vec![full, sparse, hostile]
}

/// The hand-written lines are the ones tracing-subscriber wrote: the same keys, in the same
/// order, the same escaping and number formats, in both formats; the JSON ones parse.
#[test]
fn lines_are_what_tracing_subscriber_wrote() {
    for entry in entries() {
        for (json, format) in [(true, Format::Json), (false, Format::Text)] {
            let theirs = through_tracing(&entry, json);
            let mut mine = Vec::new();
            entry.write(format, &mut mine);
            let mine = String::from_utf8(mine).unwrap();
            assert!(mine.ends_with('\n') && mine.matches('\n').count() == 1, "{mine:?}");
            assert_eq!(untimed(&mine, json), untimed(&theirs, json), "{format:?}");
            if json {
                let v: serde_json::Value = serde_json::from_str(&mine).unwrap();
                assert_eq!(v["request_id"], entry.request_id);
            }
        }
    }
}

/// The timestamp is tracing-subscriber's: RFC 3339 in UTC, to the microsecond.
#[test]
fn the_timestamp_is_rfc3339_to_the_microsecond() {
    let mut out = Vec::new();
    entries()[0].write(Format::Text, &mut out);
    let text = String::from_utf8(out).unwrap();
    let ts = text.split(' ').next().unwrap();
    assert_eq!(ts.len(), 27, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.', "{ts}");
}

/// The cached part of the timestamp (up to the second) never lags: each line's time lies between
/// tracing-subscriber's just before and just after, across a change of second.
#[test]
fn the_timestamp_is_the_time_of_the_line_across_seconds() {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;
    let theirs = || {
        let mut s = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut s)).unwrap();
        humantime::parse_rfc3339(&s).unwrap()
    };
    // Wall-clock time is what is under test: at most 1.5 s of it, for one change of second.
    let end = std::time::SystemTime::now() + std::time::Duration::from_millis(1500);
    let mut seconds = std::collections::BTreeSet::new();
    while seconds.len() < 2 && std::time::SystemTime::now() < end {
        let before = theirs();
        let mut out = Vec::new();
        entries()[0].write(Format::Text, &mut out);
        let after = theirs();
        let text = String::from_utf8(out).unwrap();
        let ours = humantime::parse_rfc3339(text.split(' ').next().unwrap()).unwrap();
        assert!(before <= ours && ours <= after, "{before:?} {ours:?} {after:?}");
        seconds.insert(ours.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    }
    assert_eq!(seconds.len(), 2, "a change of second was seen");
}
