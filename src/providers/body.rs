//! The body of an upstream answer: from the network, or from the in-process mock.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::mock::MockBody;
use crate::upstream;

/// An upstream response body: from the network, or from the in-process mock.
pub(crate) enum UpstreamBody {
    /// From a provider.
    Http(upstream::Body),
    /// From the mock provider.
    Mock(MockBody),
    /// From a provider answering in the AWS event-stream framing, read as SSE.
    Events(Box<super::bedrock::stream::Transcoded<upstream::Body>>),
}

/// Why an upstream body stopped early.
#[derive(Debug, thiserror::Error)]
#[error("upstream body failed")]
pub(crate) struct BodyFailed;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        match self.get_mut() {
            Self::Http(b) => Pin::new(b).poll_frame(cx).map_err(|_| BodyFailed),
            Self::Mock(b) => Pin::new(b).poll_frame(cx).map_err(|_| BodyFailed),
            Self::Events(b) => Pin::new(b.as_mut()).poll_frame(cx).map_err(|_| BodyFailed),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http(b) => b.is_end_stream(),
            Self::Mock(b) => b.is_end_stream(),
            Self::Events(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Http(b) => b.size_hint(),
            Self::Mock(b) => b.size_hint(),
            Self::Events(b) => b.size_hint(),
        }
    }
}
