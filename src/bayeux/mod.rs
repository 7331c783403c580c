//! The Bayeux protocol as Faye 1.4 speaks it, with no I/O and no async runtime.
//!
//! This module owns the wire vocabulary: channel grammar and wildcard expansion
//! ([`channel`]), error strings ([`error`]), client ids ([`client_id`]) and the
//! parsing of request envelopes plus the reply skeleton ([`message`]). Everything
//! here is pure, so it is unit-tested in place and fuzzed; the engine
//! (`crate::engine`) and the transports build on it.

pub mod channel;
pub mod client_id;
pub mod error;
pub mod message;

pub use message::{parse_batch, BadRequest, Batch};

/// The protocol version every handshake reply states (Faye's `BAYEUX_VERSION`).
pub const BAYEUX_VERSION: &str = "1.0";

/// The connection types the server announces, always all six in this order.
pub const CONNECTION_TYPES: [&str; 6] = [
    "long-polling",
    "cross-origin-long-polling",
    "callback-polling",
    "websocket",
    "eventsource",
    "in-process",
];

/// The exact meta channels the server executes; any other `/meta/...` is forbidden.
pub mod meta {
    /// `/meta/handshake`
    pub const HANDSHAKE: &str = "/meta/handshake";
    /// `/meta/connect`
    pub const CONNECT: &str = "/meta/connect";
    /// `/meta/subscribe`
    pub const SUBSCRIBE: &str = "/meta/subscribe";
    /// `/meta/unsubscribe`
    pub const UNSUBSCRIBE: &str = "/meta/unsubscribe";
    /// `/meta/disconnect`
    pub const DISCONNECT: &str = "/meta/disconnect";
}
