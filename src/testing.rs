//! What the integration tests (`tests/`), the fuzz targets (`fuzz/`) and the benches
//! (`benches/`) reach inside the crate, by the same paths as inside it
//! (`tier1::testing::config::parse` is `crate::config::parse`). Everything else is
//! `pub(crate)`: a name missing here is not used outside the crate. Not an API.

/// Config loading.
pub mod config {
    pub use crate::config::{
        Config, ConfigErrors, DEMO_TOML, Env, Format, Redactor, Secret, open_surfaces, parse,
    };
}

/// The request scan and splice; the usage object of an answer.
pub mod json {
    pub use crate::json::{Scanned, Schema, Usage, is_json, last_usage, scan};
}

/// SSE framing: the event filter of streams relayed as is.
pub mod sse {
    pub use crate::sse::Filter;
}

/// The in-process mock provider and the mock upstream server.
pub mod mock {
    pub use crate::mock::{
        Behavior, DEFAULT_REPLY, Quota, Taken, anthropic_frames, anthropic_json, aws, bedrock,
        completion_json, gemini_frames, gemini_json, responses_frames, responses_json, server, sigv4,
        stream_frames, tools, vertex,
    };
}

/// What a request is; a Bedrock stream read as SSE.
pub mod providers {
    pub use crate::providers::Operation;
    /// The AWS event-stream body of a Bedrock stream, as SSE.
    pub mod bedrock {
        pub use crate::providers::bedrock::stream::ToSse;
    }
}

/// The AWS event-stream framing.
pub mod eventstream {
    pub use crate::eventstream::{Decoder, Error, Message, Value, crc32};
}

/// The proxy's stream commit judge and its listener bounds.
pub mod proxy {
    /// The SSE commit scanner.
    pub mod sse {
        pub use crate::proxy::sse::{CommitScanner, Verdict};
    }
    /// The listeners.
    pub mod server {
        pub use crate::proxy::server::PROBE_CONNECTIONS;
    }
}

/// Rate limits.
pub mod ratelimit {
    pub use crate::ratelimit::{Facts, Fleet, Limiter, Limits, Spend, estimate_tokens, unix_ms, window};
}

/// Runtime state.
pub mod resilience {
    pub use crate::resilience::{DIRECT_MODELS, Registry, parse_retry_after};
}

/// The routing table.
pub mod routing {
    pub use crate::routing::{Resolved, RoutingTable};
}

/// Translation between provider formats.
pub mod translate {
    pub use crate::translate::{
        Dialect, EventTranslator, Sse, StreamTranslator, Translated, anthropic, bedrock, gemini, messages,
        responses, unstamped,
    };
}

/// tier1's own upstream client.
pub mod upstream {
    pub use crate::upstream::decode_answer;
}
