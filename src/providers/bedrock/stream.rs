//! A Bedrock stream as SSE: the event-stream body decoded ([`crate::eventstream`]) and each
//! message written as one SSE event, `event: {type}` and `data: {"{type}": payload}` (the shape
//! the AWS SDKs give a `ConverseStreamOutput`), so the commit judge, the event cap and the
//! stream translators read it like any other stream. An exception or error message becomes
//! `data: {"error": {"type", "message"}}`, which the judge classifies before the commit
//! (`ThrottlingException` as a rate limit, `ServiceUnavailableException` as an overload) and
//! the translator passes on in the client's shape after it. A CRC mismatch, an oversized or a
//! truncated message ends the body with an error: the stream broke.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::{Value, json};

use crate::eventstream::{Decoder, Message};

/// The content type of an event-stream answer.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// Why the stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// The framing broke (CRC, size, truncation).
    #[error(transparent)]
    Framing(#[from] crate::eventstream::Error),
    /// The stream ended inside a message.
    #[error("event stream cut inside a message")]
    Truncated,
    /// The body under it failed.
    #[error("upstream body failed")]
    Body,
}

/// One message as an SSE event.
pub(crate) fn sse_of(m: &Message) -> Vec<u8> {
    let kind = m.header(":message-type").unwrap_or("event");
    let (name, data) = match kind {
        "event" => {
            let event = m.header(":event-type").unwrap_or("unknown");
            // JSON's only raw line ends are whitespace: as spaces they keep the event one line.
            let payload: Vec<u8> =
                m.payload.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect();
            let payload = if payload.iter().all(u8::is_ascii_whitespace) { b"{}".to_vec() } else { payload };
            let name = json!(event).to_string();
            let mut data = format!("{{{name}:").into_bytes();
            data.extend_from_slice(&payload);
            data.push(b'}');
            (event, data)
        }
        _ => {
            let payload: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            let exception = m.header(":exception-type").or_else(|| m.header(":error-code")).unwrap_or("error");
            let message = payload
                .get("message")
                .or_else(|| payload.get("Message"))
                .and_then(Value::as_str)
                .or_else(|| m.header(":error-message"))
                .unwrap_or("upstream stream error");
            let data = json!({"error": {"type": exception, "message": message}}).to_string().into_bytes();
            ("error", data)
        }
    };
    // The event name is the upstream's: only a safe one goes on the `event:` line.
    let name = if name.bytes().all(|b| b.is_ascii_alphanumeric()) { name } else { "unknown" };
    let mut out = format!("event: {name}\ndata: ").into_bytes();
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\n\n");
    out
}

/// The event-stream decoder with what it has made of the bytes so far: SSE bytes out, and the
/// error that ended it, if one did. The pure part of [`Transcoded`], for tests and the fuzz
/// target.
#[derive(Debug)]
pub struct ToSse {
    decoder: Decoder,
    failed: Option<crate::eventstream::Error>,
}

impl ToSse {
    /// A transcoder taking messages up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { decoder: Decoder::new(max), failed: None }
    }

    /// SSE for the next chunk (possibly none): every whole message up to the end or an error.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.decoder.push(chunk);
        let mut out = Vec::new();
        while self.failed.is_none() {
            match self.decoder.next_message() {
                Ok(Some(m)) => out.extend(sse_of(&m)),
                Ok(None) => break,
                Err(e) => self.failed = Some(e),
            }
        }
        out
    }

    /// The error that ended the stream (then nothing more comes out).
    pub fn failed(&self) -> Option<crate::eventstream::Error> {
        self.failed
    }

    /// Whether the stream may end here: no message was cut and none failed.
    pub fn at_boundary(&self) -> bool {
        self.failed.is_none() && !self.decoder.partial()
    }
}

pin_project_lite::pin_project! {
    /// A body in the event-stream framing, read as SSE.
    pub(crate) struct Transcoded<B> {
        #[pin]
        inner: B,
        sse: ToSse,
        ended: bool,
    }
}

impl<B> Transcoded<B> {
    /// Reads `inner` as event-stream messages of at most `max` bytes.
    pub(crate) fn new(inner: B, max: usize) -> Self {
        Self { inner, sse: ToSse::new(max), ended: false }
    }
}

impl<B: Body<Data = Bytes>> Body for Transcoded<B> {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if let Some(e) = this.sse.failed() {
            *this.ended = true;
            return Poll::Ready(Some(Err(e.into())));
        }
        loop {
            let frame = match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    *this.ended = true;
                    return Poll::Ready((!this.sse.at_boundary()).then_some(Err(StreamError::Truncated)));
                }
                Poll::Ready(Some(Err(_))) => {
                    *this.ended = true;
                    return Poll::Ready(Some(Err(StreamError::Body)));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            let out = this.sse.feed(&data);
            if !out.is_empty() {
                // An error after these messages comes with the next poll.
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
            if let Some(e) = this.sse.failed() {
                *this.ended = true;
                return Poll::Ready(Some(Err(e.into())));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventstream::Value as H;

    fn event(kind: &str, payload: &str) -> Message {
        Message {
            headers: vec![
                (":event-type".into(), H::String(kind.into())),
                (":content-type".into(), H::String("application/json".into())),
                (":message-type".into(), H::String("event".into())),
            ],
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn events_become_sse_with_the_payload_under_the_event_type() {
        let m = event("contentBlockDelta", "{\"contentBlockIndex\":0,\n\"delta\":{\"text\":\"a\\nb\"}}");
        assert_eq!(
            String::from_utf8(sse_of(&m)).unwrap(),
            "event: contentBlockDelta\ndata: {\"contentBlockDelta\":{\"contentBlockIndex\":0, \"delta\":{\"text\":\"a\\nb\"}}}\n\n"
        );
        let m = Message {
            headers: vec![
                (":message-type".into(), H::String("exception".into())),
                (":exception-type".into(), H::String("throttlingException".into())),
            ],
            payload: br#"{"message":"Too many requests, please wait before trying again."}"#.to_vec(),
        };
        assert_eq!(
            String::from_utf8(sse_of(&m)).unwrap(),
            "event: error\ndata: {\"error\":{\"message\":\"Too many requests, please wait before trying again.\",\"type\":\"throttlingException\"}}\n\n"
        );
        let m = Message {
            headers: vec![
                (":message-type".into(), H::String("error".into())),
                (":error-code".into(), H::String("InternalFailure".into())),
                (":error-message".into(), H::String("boom".into())),
            ],
            payload: Vec::new(),
        };
        assert!(String::from_utf8(sse_of(&m)).unwrap().contains(r#"{"error":{"message":"boom","type":"InternalFailure"}}"#));
        // An event type that would break the SSE line is not written as is.
        let m = event("a\nb", "{}");
        assert!(String::from_utf8(sse_of(&m)).unwrap().starts_with("event: unknown\ndata: {\"a\\nb\":{}}"));
    }

    #[tokio::test]
    async fn a_body_is_transcoded_and_a_cut_or_broken_one_fails() {
        use http_body_util::BodyExt;
        let stream: Vec<u8> = [event("messageStart", r#"{"role":"assistant"}"#), event("messageStop", "{}")]
            .iter()
            .flat_map(Message::encode)
            .collect();
        let body = |bytes: Vec<u8>| {
            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
                bytes.chunks(5).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
            Transcoded::new(http_body_util::StreamBody::new(futures_util_stream(frames)), 1024)
        };
        let out = body(stream.clone()).collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "event: messageStart\ndata: {\"messageStart\":{\"role\":\"assistant\"}}\n\nevent: messageStop\ndata: {\"messageStop\":{}}\n\n"
        );
        assert!(matches!(body(stream[..stream.len() - 3].to_vec()).collect().await, Err(StreamError::Truncated)));
        let mut bad = stream;
        bad[20] ^= 1;
        assert!(matches!(body(bad).collect().await, Err(StreamError::Framing(_))));
    }

    /// A stream of ready items.
    fn futures_util_stream<T: Send + Unpin + 'static>(items: Vec<T>) -> impl futures_core::Stream<Item = T> {
        Ready(items.into_iter())
    }

    struct Ready<I>(I);

    impl<I: Iterator + Unpin> futures_core::Stream for Ready<I> {
        type Item = I::Item;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
            Poll::Ready(self.0.next())
        }
    }
}
