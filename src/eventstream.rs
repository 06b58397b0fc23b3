//! The AWS event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock's
//! `converse-stream` answers: binary messages, each
//!
//! ```text
//! total length (u32) | headers length (u32) | prelude CRC32 (u32, of the 8 bytes before)
//! headers (headers length bytes) | payload | message CRC32 (u32, of everything before it)
//! ```
//!
//! all integers big-endian, a header being `name length (u8) | name | type (u8) | value`. The
//! [`Decoder`] takes the bytes as they arrive, split anywhere, and gives whole messages out; it
//! checks both CRCs and refuses a message longer than its bound before buffering it, so a
//! broken or hostile upstream costs at most the bound. A leaf: it knows nothing of requests.

/// The prelude: total length, headers length, prelude CRC.
const PRELUDE: usize = 12;
/// The message CRC that ends a message.
const TRAILER: usize = 4;
/// The smallest message: a prelude and a CRC, no headers, no payload.
const MIN_MESSAGE: usize = PRELUDE + TRAILER;

/// Why a stream cannot be decoded further (every error is final: the framing is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The prelude's CRC does not match its lengths.
    #[error("event-stream prelude CRC mismatch")]
    PreludeCrc,
    /// The message's CRC does not match its bytes.
    #[error("event-stream message CRC mismatch")]
    MessageCrc,
    /// A message longer than the bound (its announced total length).
    #[error("event-stream message of {0} bytes over the bound")]
    TooLarge(usize),
    /// Lengths that do not add up, or headers that do not parse.
    #[error("malformed event-stream message")]
    Malformed,
}

/// A header's value, by its wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Types 0 (true) and 1 (false).
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6: u16 length, bytes.
    Bytes(Vec<u8>),
    /// Type 7: u16 length, UTF-8.
    String(String),
    /// Type 8: milliseconds since the epoch.
    Timestamp(i64),
    /// Type 9: 16 bytes.
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its headers, in wire order.
    pub headers: Vec<(String, Value)>,
    /// Its payload (Bedrock's: one JSON object).
    pub payload: Vec<u8>,
}

impl Message {
    /// The string value of header `name` (`:event-type`, `:message-type`, ...).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The message's encoding: the framing [`Decoder`] reads (for the tests, the fuzz seeds and
    /// the mock upstream).
    pub fn encode(&self) -> Vec<u8> {
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            // Names are at most 255 bytes: a longer one is cut (only the mock and tests encode).
            let name = &name.as_bytes()[..name.len().min(255)];
            headers.push(name.len() as u8);
            headers.extend_from_slice(name);
            encode_value(value, &mut headers);
        }
        let total = PRELUDE + headers.len() + self.payload.len() + TRAILER;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32(&out).to_be_bytes());
        out.extend_from_slice(&headers);
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&crc32(&out).to_be_bytes());
        out
    }
}

fn encode_value(value: &Value, out: &mut Vec<u8>) {
    let short = |out: &mut Vec<u8>, b: &[u8]| {
        let b = &b[..b.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    };
    match value {
        Value::Bool(true) => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Byte(v) => out.extend([2, v.to_be_bytes()[0]]),
        Value::Short(v) => {
            out.push(3);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::Int(v) => {
            out.push(4);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::Long(v) => {
            out.push(5);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::Bytes(b) => {
            out.push(6);
            short(out, b);
        }
        Value::String(s) => {
            out.push(7);
            short(out, s.as_bytes());
        }
        Value::Timestamp(v) => {
            out.push(8);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::Uuid(u) => {
            out.push(9);
            out.extend_from_slice(u);
        }
    }
}

/// Messages out of bytes as they arrive. Holds at most one unfinished message (and never more
/// than the bound of it); the bytes of finished messages are dropped once per chunk.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next message starts in `buf`.
    start: usize,
    /// The longest message taken (total length).
    max: usize,
    /// The error that stopped the stream, once one did.
    failed: Option<Error>,
}

impl Decoder {
    /// A decoder that takes messages of at most `max` bytes (at least the 16 of an empty one).
    pub fn new(max: usize) -> Self {
        Self { buf: Vec::new(), start: 0, max: max.max(MIN_MESSAGE), failed: None }
    }

    /// Takes the next chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Whether bytes of an unfinished message are held (at the stream's end: it was cut).
    pub fn partial(&self) -> bool {
        self.failed.is_none() && self.buf.len() > self.start
    }

    /// The next whole message, `Ok(None)` until more bytes come; after an error, that error
    /// again (the framing is lost for good).
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.take() {
            Err(e) => {
                self.failed = Some(e);
                self.buf = Vec::new();
                self.start = 0;
                Err(e)
            }
            ok => ok,
        }
    }

    fn take(&mut self) -> Result<Option<Message>, Error> {
        let b = &self.buf[self.start..];
        if b.len() < PRELUDE {
            return Ok(None);
        }
        let total = be32(&b[0..4]);
        let headers_len = be32(&b[4..8]);
        if crc32(&b[..8]) as usize != be32(&b[8..12]) {
            return Err(Error::PreludeCrc);
        }
        if total > self.max {
            return Err(Error::TooLarge(total));
        }
        if total < MIN_MESSAGE || headers_len > total - MIN_MESSAGE {
            return Err(Error::Malformed);
        }
        if b.len() < total {
            return Ok(None);
        }
        let (body, crc) = b[..total].split_at(total - TRAILER);
        if crc32(body) as usize != be32(crc) {
            return Err(Error::MessageCrc);
        }
        let headers = parse_headers(&body[PRELUDE..PRELUDE + headers_len])?;
        let payload = body[PRELUDE + headers_len..].to_vec();
        self.start += total;
        Ok(Some(Message { headers, payload }))
    }
}

/// A big-endian u32 of 4 bytes, as a length.
fn be32(b: &[u8]) -> usize {
    b.iter().fold(0usize, |n, &x| (n << 8) | usize::from(x))
}

/// The headers block: `name length (u8) | name | type (u8) | value`, repeated.
fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, Value)>, Error> {
    let mut headers = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        let (name, rest) = split(rest, usize::from(len))?;
        let name = std::str::from_utf8(name).map_err(|_| Error::Malformed)?.to_owned();
        let (&kind, rest) = rest.split_first().ok_or(Error::Malformed)?;
        let (value, rest) = parse_value(kind, rest)?;
        headers.push((name, value));
        b = rest;
    }
    Ok(headers)
}

fn split(b: &[u8], n: usize) -> Result<(&[u8], &[u8]), Error> {
    if b.len() < n { Err(Error::Malformed) } else { Ok(b.split_at(n)) }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<([u8; N], &[u8]), Error> {
    let (v, rest) = split(b, N)?;
    let mut a = [0; N];
    a.copy_from_slice(v);
    Ok((a, rest))
}

fn parse_value(kind: u8, b: &[u8]) -> Result<(Value, &[u8]), Error> {
    Ok(match kind {
        0 => (Value::Bool(true), b),
        1 => (Value::Bool(false), b),
        2 => fixed::<1>(b).map(|(v, r)| (Value::Byte(i8::from_be_bytes(v)), r))?,
        3 => fixed::<2>(b).map(|(v, r)| (Value::Short(i16::from_be_bytes(v)), r))?,
        4 => fixed::<4>(b).map(|(v, r)| (Value::Int(i32::from_be_bytes(v)), r))?,
        5 => fixed::<8>(b).map(|(v, r)| (Value::Long(i64::from_be_bytes(v)), r))?,
        6 | 7 => {
            let (len, rest) = fixed::<2>(b)?;
            let (v, rest) = split(rest, usize::from(u16::from_be_bytes(len)))?;
            let value = if kind == 6 {
                Value::Bytes(v.to_vec())
            } else {
                Value::String(std::str::from_utf8(v).map_err(|_| Error::Malformed)?.to_owned())
            };
            (value, rest)
        }
        8 => fixed::<8>(b).map(|(v, r)| (Value::Timestamp(i64::from_be_bytes(v)), r))?,
        9 => fixed::<16>(b).map(|(v, r)| (Value::Uuid(v), r))?,
        _ => return Err(Error::Malformed),
    })
}

/// CRC-32 (IEEE 802.3, the zlib one), as the framing uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests;
