//! HTTP/1.1 to a provider, on the request's own task: the request is written and the answer read
//! straight from the socket, with no connection task, dispatch channel or body channel between
//! them (hyper's client needs all three; with hyper-util's pool they cost 17% of tier1's
//! instructions per request and 9 KB per open stream). A connection goes back to its pool when
//! its body ends cleanly;
//! dropped early, it is closed, which is what stops the provider's work on a cancelled request.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt;

use super::connect::Io;
use super::pool::{Origin, Shared};

/// The longest response head read before giving up (hyper's default is 400 KB; providers send
/// under 2 KB).
const MAX_HEAD: usize = 64 * 1024;
/// Response headers parsed at most.
const MAX_HEADERS: usize = 100;
/// Bytes reserved for reading an answer's head: a chat completion usually arrives whole in it,
/// and a stream's first events after the head use the rest (so an open stream holds little).
const HEAD_READ: usize = 4 * 1024;
/// Bytes reserved per read of a body that is longer.
const BODY_READ: usize = 8 * 1024;
/// Bytes reserved per read of a chunked body (streams: events of a few hundred bytes).
const CHUNKED_READ: usize = 2 * 1024;
/// The longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4 * 1024;
/// How soon after a request was written a close with no byte of answer still means the provider
/// never read it. A reused connection the provider closed while it was idle, just before the
/// request arrived, closes within about one round trip of the write (the FIN or RST was already
/// on its way, or answers the request's first segment): 250 ms covers a round trip across
/// continents. A close later than that may come from a provider that read the request and
/// worked on it (one held a request 15 s before closing): sending it again could make a
/// second paid request, so it is an error instead.
pub(super) const UNREAD_WINDOW: Duration = Duration::from_millis(250);

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection closed (or broke) before any byte of the answer arrived.
    #[error("connection closed before the answer")]
    Closed(Unanswered),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The answer is not valid HTTP/1.x.
    #[error("invalid answer: {0}")]
    Invalid(&'static str),
}

/// When a connection closed with no byte of the answer: what the provider may have read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// While the request was being written: the provider cannot have all of it.
    Writing,
    /// This long after the request was written whole.
    After(Duration),
}

impl Error {
    /// Whether the provider can be taken not to have read the request, so that sending it again
    /// cannot make it twice: the connection failed while the request was being written, or
    /// closed within [`UNREAD_WINDOW`] of the write with no byte of an answer.
    pub(super) fn unread(&self) -> bool {
        match self {
            Self::Closed(Unanswered::Writing) => true,
            Self::Closed(Unanswered::After(after)) => *after <= UNREAD_WINDOW,
            _ => false,
        }
    }
}

/// One HTTP/1.1 connection and its read buffer.
pub(super) struct Conn {
    io: Io,
    buf: BytesMut,
    /// Where it goes.
    pub origin: Arc<Origin>,
}

impl Conn {
    /// A new connection.
    pub(super) fn new(io: Io, origin: Arc<Origin>) -> Self {
        Self { io, buf: BytesMut::new(), origin }
    }

    /// Whether an idle connection can carry another request: nothing arrived while it was idle
    /// (neither data nor the peer's close). Reads tokio's readiness, so it costs no system call.
    pub(super) fn is_idle_open(&self) -> bool {
        self.buf.is_empty() && self.io.is_idle_open()
    }
}

/// Writes `parts` and `body` on `conn` and reads the answer's head.
pub(super) async fn send(
    mut conn: Conn,
    parts: &Parts,
    body: &Bytes,
    pool: Weak<Shared>,
) -> Result<Response<Body>, Error> {
    let head = encode_head(parts, body.len());
    // A failed write means the provider did not get the whole request: it cannot have begun on
    // it, so a stale pooled connection may be replaced and the request sent again.
    write_all(&mut conn.io, &head, body).await.map_err(|_| Error::Closed(Unanswered::Writing))?;
    // tokio's clock, so that tests with paused time control the window.
    let written = tokio::time::Instant::now();
    // Whether any byte of an answer arrived (a consumed 1xx leaves the buffer empty again).
    let mut answered = false;
    let (head, framing, reusable) = loop {
        match parse(&mut conn.buf)? {
            Some(Parsed::Interim) => continue,
            Some(Parsed::Final(resp, framing, reusable)) => break (resp, framing, reusable),
            None if conn.buf.len() > MAX_HEAD => return Err(Error::Invalid("response head too large")),
            None => match read(&mut conn).await {
                Ok(0) | Err(_) if !answered => {
                    return Err(Error::Closed(Unanswered::After(written.elapsed())));
                }
                Ok(0) => return Err(Error::Invalid("head cut short")),
                Ok(_) => answered = true,
                Err(e) => return Err(e.into()),
            },
        }
    };
    let reusable = reusable && parts.headers.get(CONNECTION).is_none_or(|v| !has_token(v, "close"));
    let state = State::from(framing);
    if matches!(state, State::Chunked(_)) && conn.buf.len() < CHUNKED_READ {
        // A stream: what arrived with the head moves to a small buffer of its own, so the head's
        // buffer is freed once the head has been relayed rather than held for the stream's life.
        let mut small = BytesMut::with_capacity(CHUNKED_READ);
        small.extend_from_slice(&conn.buf);
        conn.buf = small;
    }
    let mut body = Body { conn: Some(conn), state, reusable, pool };
    if matches!(body.state, State::Done) {
        body.finish();
    }
    Ok(head.map(|()| body))
}

fn encode_head(parts: &Parts, len: usize) -> Vec<u8> {
    // Room for a request's usual head with the trace context (about 300 bytes without).
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Host is the URI's host and port: never its user-info part, should a base URL carry one.
    if !parts.headers.contains_key(HOST)
        && let Some(host) = parts.uri.host()
    {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        if let Some(port) = parts.uri.port() {
            out.push(b':');
            out.extend_from_slice(port.as_str().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if len > 0 || !matches!(parts.method, Method::GET | Method::HEAD) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa(len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn itoa(mut n: usize) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().map(|&d| char::from(d)).collect()
}

/// Head and body in as few writes as the socket allows (one `writev` for a small request).
async fn write_all(io: &mut Io, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() {
        let n = io.write_vectored(&[IoSlice::new(head), IoSlice::new(body)]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    io.write_all(body).await?;
    io.flush().await
}

async fn read(conn: &mut Conn) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| poll_read(&mut conn.io, &mut conn.buf, HEAD_READ, cx)).await
}

/// Reads into `buf`, with room for `size` bytes made first when less than a quarter is left. An
/// empty buffer is replaced rather than grown: `reserve` on a buffer whose earlier bytes are still
/// shared allocates at least the first allocation's size again.
fn poll_read(
    io: &mut Io,
    buf: &mut BytesMut,
    size: usize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() - buf.len() < size / 4 {
        if buf.is_empty() {
            *buf = BytesMut::with_capacity(size);
        } else {
            buf.reserve(size);
        }
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// How an answer's body is delimited.
enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes.
    Eof,
}

enum Parsed {
    /// A 1xx answer, consumed; the real one follows.
    Interim,
    /// The answer's head, its framing, and whether the connection may be reused after it.
    Final(Response<()>, Framing, bool),
}

/// Parses one answer head from the front of `buf`, consuming it; `None` when more is needed.
/// Room for 32 headers covers providers' answers (20 to 25 headers) and is cheap to zero; an
/// answer with more is parsed again with room for [`MAX_HEADERS`].
fn parse(buf: &mut BytesMut) -> Result<Option<Parsed>, Error> {
    match parse_with::<32>(buf) {
        Err(Error::Invalid(TOO_MANY)) => parse_with::<MAX_HEADERS>(buf),
        other => other,
    }
}

const TOO_MANY: &str = "too many headers";

fn parse_with<const N: usize>(buf: &mut BytesMut) -> Result<Option<Parsed>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; N];
    let mut raw = httparse::Response::new(&mut slots);
    let len = match raw.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Err(Error::Invalid("response head too large")),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Invalid(TOO_MANY)),
        Err(_) => return Err(Error::Invalid("malformed head")),
    };
    let code = raw.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("status code"))?;
    if status.is_informational() {
        if code == 101 {
            return Err(Error::Invalid("protocol switch"));
        }
        buf.advance(len);
        return Ok(Some(Parsed::Interim));
    }
    let http10 = raw.version == Some(0);
    // Where each name and value sits in the head, so that values can be cut from the same
    // buffer once it is frozen: no copy per header.
    // The head is at most MAX_HEAD (64 KiB) bytes, so u16 offsets do, and the array stays small
    // (zeroing arrays sized for 100 headers was 4% of a request's instructions).
    let base = buf.as_ptr() as usize;
    let at = |p: &[u8]| (u16::try_from(p.as_ptr() as usize - base), u16::try_from(p.len()));
    let mut spans = [(0u16, 0u16, 0u16, 0u16); N];
    let count = raw.headers.len();
    for (span, h) in spans.iter_mut().zip(raw.headers.iter()) {
        let (Ok(name), Ok(name_len)) = at(h.name.as_bytes()) else { return Err(Error::Invalid("head")) };
        let (Ok(value), Ok(value_len)) = at(h.value) else { return Err(Error::Invalid("head")) };
        *span = (name, name_len, value, value_len);
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(name, name_len, value, value_len) in &spans[..count] {
        let name = usize::from(name)..usize::from(name) + usize::from(name_len);
        let value = usize::from(value)..usize::from(value) + usize::from(value_len);
        let name = HeaderName::from_bytes(&head[name]).map_err(|_| Error::Invalid("header name"))?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value)).map_err(|_| Error::Invalid("header value"))?;
        headers.append(name, value);
    }
    let keep_alive = match headers.get(CONNECTION) {
        Some(v) if has_token(v, "close") => false,
        Some(v) if has_token(v, "keep-alive") => true,
        _ => !http10,
    };
    let chunked = headers.contains_key(TRANSFER_ENCODING);
    let framing = if code == 204 || code == 304 {
        Framing::Empty
    } else if chunked {
        transfer_coding(&headers, http10)?;
        Framing::Chunked
    } else {
        let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
        match lengths.next() {
            None => Framing::Eof,
            Some(first) => {
                let n = content_length(first)?;
                if lengths.any(|v| content_length(v).ok() != Some(n)) {
                    return Err(Error::Invalid("conflicting content-length"));
                }
                Framing::Length(n)
            }
        }
    };
    // Transfer-Encoding overrides a Content-Length, but the sender's framing is suspect: the
    // connection is closed after the answer (RFC 9112 §6.3), and the length (every line of it)
    // is removed, so that nothing downstream frames the body by it.
    let smuggled = chunked && headers.remove(CONTENT_LENGTH).is_some();
    let reusable = keep_alive && !smuggled && !matches!(framing, Framing::Eof);
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = if http10 { Version::HTTP_10 } else { Version::HTTP_11 };
    *resp.headers_mut() = headers;
    Ok(Some(Parsed::Final(resp, framing, reusable)))
}

/// Checks an answer's transfer codings across all its Transfer-Encoding lines (RFC 9112 §6.1):
/// exactly one, `chunked`. tier1 sends no TE header, so a provider may apply no other coding,
/// and tier1 decodes none; chunked twice, chunked not last (a body to the close in the RFC, but
/// from a provider a sign of a broken one) and a transfer coding in an HTTP/1.0 answer are
/// refused like any broken answer.
fn transfer_coding(headers: &HeaderMap, http10: bool) -> Result<(), Error> {
    if http10 {
        return Err(Error::Invalid("transfer-encoding in an HTTP/1.0 answer"));
    }
    let mut codings = 0usize;
    for line in headers.get_all(TRANSFER_ENCODING) {
        let line = line.to_str().map_err(|_| Error::Invalid("transfer-encoding"))?;
        for coding in line.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            codings += 1;
            if codings > 1 || !coding.eq_ignore_ascii_case("chunked") {
                return Err(Error::Invalid("transfer coding other than one chunked"));
            }
        }
    }
    if codings == 0 {
        return Err(Error::Invalid("transfer-encoding"));
    }
    Ok(())
}

fn content_length(v: &HeaderValue) -> Result<u64, Error> {
    let s = v.to_str().map_err(|_| Error::Invalid("content-length"))?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid("content-length"));
    }
    s.parse().map_err(|_| Error::Invalid("content-length"))
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// An HTTP/1.1 answer's body, read from the connection as the relay polls it.
pub(crate) struct Body {
    conn: Option<Conn>,
    state: State,
    reusable: bool,
    pool: Weak<Shared>,
}

enum State {
    Length(u64),
    Chunked(Chunked),
    Eof,
    Done,
}

impl From<Framing> for State {
    fn from(framing: Framing) -> Self {
        match framing {
            Framing::Length(0) | Framing::Empty => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked(Chunked::Size),
            Framing::Eof => Self::Eof,
        }
    }
}

impl State {
    /// The body's next piece from `buf`, or what it needs: no I/O here, so the socket body and
    /// [`decode`] share it.
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        Ok(match self {
            Self::Done | Self::Length(0) => Step::End,
            Self::Length(_) | Self::Eof if buf.is_empty() => Step::More,
            Self::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                Step::Data(buf.split_to(n).freeze())
            }
            Self::Eof => Step::Data(buf.split().freeze()),
            Self::Chunked(dec) => dec.step(buf)?,
        })
    }
}

/// Decodes one answer arriving in `pieces`, in memory: the status and the body, or why the
/// bytes are not a valid answer. The fuzz target `upstream_answer` checks that any split of the
/// same bytes decodes the same.
pub fn decode<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Result<(u16, Vec<u8>), Error> {
    let mut pieces = pieces.into_iter();
    let mut buf = BytesMut::new();
    let mut more = |buf: &mut BytesMut| pieces.next().map(|p| buf.extend_from_slice(p)).is_some();
    let (status, mut state) = loop {
        match parse(&mut buf)? {
            Some(Parsed::Interim) => {}
            Some(Parsed::Final(head, framing, _)) => break (head.status().as_u16(), State::from(framing)),
            None if buf.len() > MAX_HEAD => return Err(Error::Invalid("response head too large")),
            None if !more(&mut buf) => return Err(Error::Invalid("head cut short")),
            None => {}
        }
    };
    let mut body = Vec::new();
    loop {
        match state.step(&mut buf)? {
            Step::Data(data) => body.extend_from_slice(&data),
            Step::End => return Ok((status, body)),
            Step::More if more(&mut buf) => {}
            Step::More if matches!(state, State::Eof) => return Ok((status, body)),
            Step::More => return Err(Error::Invalid("body cut short")),
        }
    }
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// One step of the chunked decoder over `buf`.
enum Step {
    /// Data to hand out.
    Data(Bytes),
    /// More bytes are needed.
    More,
    /// The body ended.
    End,
}

impl Chunked {
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        loop {
            match *self {
                Self::Size => {
                    let Some(line) = take_line(buf)? else { return Ok(Step::More) };
                    let digits = line[..].split(|&b| b == b';').next().unwrap_or_default();
                    let digits = digits.trim_ascii();
                    if digits.is_empty() || digits.len() > 16 {
                        return Err(Error::Invalid("chunk size"));
                    }
                    let size = digits.iter().try_fold(0u64, |n, &b| {
                        let d = char::from(b).to_digit(16).ok_or(Error::Invalid("chunk size"))?;
                        Ok::<_, Error>(n << 4 | u64::from(d))
                    })?;
                    *self = if size == 0 { Self::Trailers } else { Self::Data(size) };
                }
                Self::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    *self = if left == 0 { Self::DataEnd } else { Self::Data(left) };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                Self::DataEnd => {
                    let Some(line) = take_line(buf)? else { return Ok(Step::More) };
                    if !line.is_empty() {
                        return Err(Error::Invalid("chunk without its CRLF"));
                    }
                    *self = Self::Size;
                }
                Self::Trailers => {
                    let Some(line) = take_line(buf)? else { return Ok(Step::More) };
                    if line.is_empty() {
                        return Ok(Step::End);
                    }
                }
            }
        }
    }
}

/// Takes one CRLF- (or LF-) terminated line from the front of `buf`, without its end.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
    match buf.iter().position(|&b| b == b'\n') {
        // The same limit whether the line arrived whole or in pieces.
        Some(i) if i > MAX_LINE => Err(Error::Invalid("line too long")),
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(Error::Invalid("line too long")),
        None => Ok(None),
    }
}

impl Body {
    /// The body broke: the connection is closed and the body ends with `e`.
    fn fail(&mut self, e: Error) -> Error {
        self.conn = None;
        self.state = State::Done;
        e
    }

    /// The body ended cleanly: the connection goes back to the pool if it may be reused.
    fn finish(&mut self) {
        self.state = State::Done;
        let Some(conn) = self.conn.take() else { return };
        if self.reusable
            && conn.buf.is_empty()
            && let Some(pool) = self.pool.upgrade()
        {
            pool.put(conn);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            let step = match this.state.step(&mut conn.buf) {
                Ok(step) => step,
                Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
            };
            match step {
                Step::Data(data) => {
                    if matches!(this.state, State::Length(0)) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::More => {}
            }
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            let size = if matches!(this.state, State::Chunked(_)) { CHUNKED_READ } else { BODY_READ };
            match ready!(poll_read(&mut conn.io, &mut conn.buf, size, cx)) {
                Ok(0) if matches!(this.state, State::Eof) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(this.fail(Error::Invalid("body cut short"))))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(this.fail(e.into())))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
