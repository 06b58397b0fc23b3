//! Reading an upstream answer before it is the client's: a stream up to its commit point, the
//! first bytes of a body, or a whole body within a bound; and what its headers say of it.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::time::Instant;

use super::MAX_HELD;
use crate::error::Class;
use crate::providers::UpstreamBody;
use crate::proxy::sse::{CommitScanner, Verdict};

/// Whether the answer carries a content coding. tier1 asks for `accept-encoding: identity`
/// (src/providers), as it reads bodies: usage and commit points, translation, redaction of the
/// error bodies it passes on. A provider that encodes anyway is passed through only where tier1
/// relays the body untouched (a native, non-streamed success: the coding goes on with the body,
/// usage is then not read and the token estimate stands); anywhere tier1 must read the body (a
/// stream, a translated answer, a caller-fault error body) the answer is a broken one
/// (`Class::Server`), tried elsewhere like any, never relayed as bytes the client cannot decode.
pub(super) fn encoded(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',').any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
        })
    })
}

pub(super) fn is_sse(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// Reads a stream up to its commit point (see [`CommitScanner`]): the held bytes and the rest.
/// Each read waits until the first event's deadline (`first_byte`), then `idle` past the last,
/// never past `total`, nor past `first_token` (the commit point's own deadline, when set).
pub(super) async fn precommit(
    mut body: UpstreamBody,
    first_byte: Instant,
    idle: Duration,
    (total, first_token): (Instant, Option<Instant>),
) -> Result<(Bytes, UpstreamBody), Class> {
    let mut scanner = CommitScanner::default();
    let mut held = BytesMut::new();
    let by = |deadline: Instant| first_token.map_or(deadline, |f| deadline.min(f));
    // The first-token deadline is a class of its own when it is the one that passed.
    let late = |deadline: Instant| {
        if first_token.is_some_and(|f| f <= deadline) { Class::FirstToken } else { Class::Timeout }
    };
    let mut deadline = by(first_byte);
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(late(deadline)),
            Ok(None | Some(Err(_))) => return Err(Class::Server),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        held.extend_from_slice(&data);
        match scanner.feed(&data) {
            Verdict::Commit => return Ok((held.freeze(), body)),
            Verdict::Error(class) => return Err(class),
            // A provider that talks at length without committing is relayed as it is.
            Verdict::Pending if held.len() >= MAX_HELD => return Ok((held.freeze(), body)),
            Verdict::Pending if scanner.events() > 0 => deadline = by((Instant::now() + idle).min(total)),
            Verdict::Pending => {}
        }
    }
}

/// Reads the first data frame of an answer before `deadline`: the frame (empty for an empty
/// body) and the rest.
pub(super) async fn first_frame(
    mut body: UpstreamBody,
    deadline: Instant,
) -> Result<(Bytes, UpstreamBody), Class> {
    if http_body::Body::is_end_stream(&body) {
        return Ok((Bytes::new(), body));
    }
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Class::Timeout),
            Ok(Some(Err(_))) => return Err(Class::Server),
            Ok(None) => return Ok((Bytes::new(), body)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok((data, body));
                }
            }
        }
    }
}

/// Reads at most [`MAX_HELD`] bytes of a body before `deadline`.
pub(super) async fn read_bounded(mut body: UpstreamBody, deadline: Instant) -> Bytes {
    let mut buf = Vec::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let room = MAX_HELD.saturating_sub(buf.len());
                buf.extend_from_slice(&data[..data.len().min(room)]);
                if buf.len() >= MAX_HELD {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read).await;
    Bytes::from(buf)
}
