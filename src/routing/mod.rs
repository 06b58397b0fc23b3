//! Routing: which targets serve a client-facing model name, and in which order.
//!
//! Order of resolution, first match wins: an exact route name or listed model; then the most
//! specific glob (`claude-*`; most literal characters wins, ties go to the earlier route); then
//! `provider/model` for a configured provider (the model part may contain `/`). Anything else is
//! an unknown model. A route's [`Strategy`] then orders its targets for each request, unless its
//! [`affinity`] does, for a session.

pub(crate) mod affinity;
mod glob;
mod strategy;
mod table;

pub(crate) use glob::{Glob, is_glob};
pub use table::{Resolved, RoutingTable};
pub(crate) use table::{Route, Target};
