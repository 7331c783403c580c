//! HTTP building blocks shared by every handler: the response body type and
//! constructors, Faye's CORS headers, the Faye browser bundle, the facts about
//! the connection a request arrived on.
//!
//! This module depends on nothing else in the crate, so the transports, the
//! upstream proxy, the admin listener and the gateway can all use it without
//! reaching back up the stack.

pub mod cors;
pub mod response;
pub mod static_client;

use std::net::SocketAddr;
use std::sync::Arc;

pub use response::Body;

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// True on a TLS listener.
    pub tls: bool,
    /// The listener's connection slot. A WebSocket keeps a share of it for its
    /// whole life, so upgraded sockets count against `max_connections` too.
    pub slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}
