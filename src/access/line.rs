//! One access-log line, written by hand into a buffer the thread reuses: the same keys, order and
//! escaping as tracing-subscriber's formats gave it (its flattened JSON, or its full text
//! format), without a `tracing` event, a `serde_json::Value` or an allocation per field.

use std::cell::RefCell;
use std::io::Write;

use super::Format;

/// What one access line says. `None` fields are left out, as `tracing` leaves out a `None`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub request_id: &'a str,
    pub route: &'a str,
    pub endpoint: &'a str,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub attempts: u32,
    pub fallback_reason: Option<&'a str>,
    pub status: u16,
    pub stream: bool,
    pub broken: bool,
    pub duration_ms: f64,
    pub ttft_ms: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub token_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
}

/// The target of the access lines.
pub(crate) const TARGET: &str = "tier1::access";

/// A field's value.
enum Value<'a> {
    Str(&'a str),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Entry<'_> {
    /// Writes the line: to the installed writer when there is one, else as a `tracing` event.
    pub(crate) fn log(&self) {
        let Some((sink, format)) = super::installed() else {
            return self.event();
        };
        thread_local! {
            static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
        }
        LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                self.write(*format, &mut buf);
                sink.push(&buf);
            }
            // Only re-entered from within `write`, which never logs: a fresh buffer then.
            Err(_) => {
                let mut buf = Vec::new();
                self.write(*format, &mut buf);
                sink.push(&buf);
            }
        });
    }

    /// The line in `format`, with the current time, ending in `\n`, appended to `out`.
    pub(crate) fn write(&self, format: Format, out: &mut Vec<u8>) {
        let mut time = FmtVec(out);
        match format {
            Format::Json => {
                out_str(time.0, "{\"timestamp\":\"");
                timestamp(&mut time);
                out_str(time.0, "\",\"level\":\"INFO\",\"message\":\"request\"");
                let out = time.0;
                self.fields(|name, value| {
                    out.extend_from_slice(b",\"");
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b"\":");
                    json_value(out, &value);
                });
                out_str(out, ",\"target\":\"tier1::access\"}\n");
            }
            Format::Text => {
                timestamp(&mut time);
                let out = time.0;
                out_str(out, "  INFO tier1::access: request");
                self.fields(|name, value| {
                    out.push(b' ');
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'=');
                    text_value(out, &value);
                });
                out.push(b'\n');
            }
        }
    }

    /// Each present field, in the order the line has them.
    fn fields(&self, mut f: impl FnMut(&'static str, Value<'_>)) {
        let mut opt = |name, v: Option<Value<'_>>| {
            if let Some(v) = v {
                f(name, v);
            }
        };
        opt("request_id", Some(Value::Str(self.request_id)));
        opt("route", Some(Value::Str(self.route)));
        opt("endpoint", Some(Value::Str(self.endpoint)));
        opt("provider", self.provider.map(Value::Str));
        opt("model", self.model.map(Value::Str));
        opt("attempts", Some(Value::U64(u64::from(self.attempts))));
        opt("fallback_reason", self.fallback_reason.map(Value::Str));
        opt("status", Some(Value::U64(u64::from(self.status))));
        opt("stream", Some(Value::Bool(self.stream)));
        opt("broken", Some(Value::Bool(self.broken)));
        opt("duration_ms", Some(Value::F64(self.duration_ms)));
        opt("ttft_ms", self.ttft_ms.map(Value::F64));
        opt("tokens_in", self.tokens_in.map(Value::U64));
        opt("tokens_out", self.tokens_out.map(Value::U64));
        opt("token_id", self.token_id.map(Value::Str));
        opt("client_ip", self.client_ip.map(Value::Str));
    }

    /// The line as a `tracing` event (the layers format it): without an installed writer.
    pub(crate) fn event(&self) {
        tracing::info!(
            target: TARGET,
            request_id = self.request_id,
            route = self.route,
            endpoint = self.endpoint,
            provider = self.provider,
            model = self.model,
            attempts = self.attempts,
            fallback_reason = self.fallback_reason,
            status = self.status,
            stream = self.stream,
            broken = self.broken,
            duration_ms = self.duration_ms,
            ttft_ms = self.ttft_ms,
            tokens_in = self.tokens_in,
            tokens_out = self.tokens_out,
            token_id = self.token_id,
            client_ip = self.client_ip,
            "request"
        );
    }
}

fn out_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// The time as tracing-subscriber writes it (RFC 3339, UTC, microseconds:
/// `2026-12-06T21:22:48.640914Z`). The part up to the second is formatted once a second per
/// thread (it was a third of the line's cost), the microseconds each time.
fn timestamp(out: &mut FmtVec<'_>) {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;
    thread_local! {
        /// The second last formatted, and the line's time up to it, dot included.
        static SECOND: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let cached = SECOND.with(|cell| {
        let Ok(mut cell) = cell.try_borrow_mut() else { return false };
        let (second, prefix) = &mut *cell;
        if *second != since.as_secs() {
            prefix.clear();
            let _ =
                tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut FmtVec(prefix)));
            // Keep `…:48.`: the microseconds follow. A prefix of another shape is not cached.
            match prefix.iter().rposition(|&b| b == b'.') {
                Some(dot) if prefix.len() == dot + 8 => prefix.truncate(dot + 1),
                _ => return false,
            }
            *second = since.as_secs();
        }
        out.0.extend_from_slice(prefix);
        true
    });
    if !cached {
        let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(out));
        return;
    }
    let mut micros = since.subsec_micros();
    let mut digits = *b"000000Z";
    for d in digits[..6].iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.0.extend_from_slice(&digits);
}

/// `fmt::Write` into a byte buffer.
struct FmtVec<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for FmtVec<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A value as serde_json writes it (tracing-serde's encoding): strings escaped, non-finite
/// floats as `null`. Writing into a `Vec` cannot fail.
fn json_value(out: &mut Vec<u8>, v: &Value<'_>) {
    let _ = match v {
        Value::Str(s) => serde_json::to_writer(&mut *out, s),
        Value::U64(n) => serde_json::to_writer(&mut *out, n),
        Value::F64(x) => serde_json::to_writer(&mut *out, x),
        Value::Bool(b) => serde_json::to_writer(&mut *out, b),
    };
}

/// A value as tracing-subscriber's text format writes it: `Debug` (strings quoted and escaped).
fn text_value(out: &mut Vec<u8>, v: &Value<'_>) {
    let _ = match v {
        // Printable ASCII without a quote or a backslash is its own `Debug` inside quotes.
        Value::Str(s) if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') => {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
            Ok(())
        }
        Value::Str(s) => write!(out, "{s:?}"),
        Value::U64(n) => serde_json::to_writer(&mut *out, n).map_err(std::io::Error::from),
        Value::F64(x) => write!(out, "{x:?}"),
        Value::Bool(b) => write!(out, "{b}"),
    };
}
