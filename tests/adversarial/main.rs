//! The adversarial suite (issue "Hostile clients, broken providers"): tier1 attacked as a hostile
//! client and a broken provider would, over real sockets on 127.0.0.1:0, each test bounded in
//! time and count. Every test shows the resource returned or the request refused: a connection
//! closed by its deadline, a permit released, a 400 given, memory bounded, a secret absent, or a
//! body relayed byte for byte.
//!
//! One module per concern, so each can grow on its own:
//! - [`framing`]: the relay's framing matrix (upstream framing × stream or not × native or
//!   translated × delivery split), byte for byte.
//! - [`relay`]: deadlines that fire whatever the client reads, provider event size, echoed keys.
//! - [`conn`]: every connection state on a deadline.
//! - [`input`]: request-level fallbacks, JSON nesting, provider headers, the smaller bounds.
//! - [`ratelimit`]: rate-limit state that one header cannot grow without bound.
//! - [`open`]: no API or admin surface open by accident.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

#[path = "../common/mod.rs"]
mod common;

mod conn;
mod framing;
mod input;
mod open;
mod provider;
mod ratelimit;
mod relay;
