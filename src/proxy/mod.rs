//! The inbound side: accept loop and drain ([`server`]), endpoint dispatch ([`handler`]), the
//! request's context and record ([`ctx`]), the forwarding steps ([`forward`]) and the attempt
//! loop ([`attempt`]), the relay ([`relay`]), what the client sees of errors ([`respond`]),
//! headers and bodies.

pub(crate) mod affinity;
pub(crate) mod attempt;
pub(crate) mod body;
pub(crate) mod ctx;
pub(crate) mod forward;
pub(crate) mod handler;
pub(crate) mod headers;
pub(crate) mod relay;
pub(crate) mod respond;
pub(crate) mod server;
pub(crate) mod sse;
pub(crate) mod timing;
