//! The inbound side: accept loop and drain ([`server`]), endpoint dispatch ([`handler`]), the
//! request's context and record ([`ctx`]), the forwarding steps ([`forward`]) and the attempt
//! loop ([`attempt`]), the relay ([`relay`]), what the client sees of errors ([`respond`]),
//! headers and bodies.

pub mod attempt;
pub mod body;
pub mod ctx;
pub mod forward;
pub mod handler;
pub mod headers;
pub mod relay;
pub mod respond;
pub mod server;
pub mod sse;
