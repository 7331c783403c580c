//! bayeux-edge: a Faye-compatible Bayeux server and TLS edge in one process.
//!
//! # Layout
//!
//! - [`bayeux`]: the protocol itself (messages, channels, errors, client ids); no I/O.
//! - [`engine`]: one isolated pub/sub engine per route: sessions, subscriptions,
//!   bounded mailboxes, the meta handlers and publishing.
//! - [`transport`]: WebSocket, long-polling (JSON, form, JSONP) and EventSource.
//! - [`http`]: the gateway service: route lookup, dispatch, CORS, the client bundle.
//! - [`routes`]: `routes.toml` parsing and validation, the swappable route table.
//! - [`net`]: listeners, TLS with SNI and reloadable certificates, HTTP/1.1 and HTTP/2.
//! - [`deadline`]: write and read deadlines on sockets (peers that stop reading,
//!   WebSockets that go silent or never finish a message).
//! - [`upstream`]: routes forwarded to an HTTP upstream (migration from Faye).
//! - [`admin`]: health, readiness and Prometheus metrics.
//! - [`reload`]: hot reload of `routes.toml` and certificates (file watch, SIGHUP).
//! - [`server`]: start-up wiring and the drain; [`shutdown`]: the drain signal.
//!
//! # Data path of one message
//!
//! accept → TLS → hyper (h1/h2) → [`http::Gateway`] loads the route table once →
//! longest whole-segment prefix → the route's [`engine::Engine`] → transport →
//! [`bayeux::parse_batch`] → [`engine::Engine::process`] → on publish: expand the
//! channel into its wildcard keys, collect each subscriber once, serialize the
//! event once, push the shared bytes into every subscriber's bounded mailbox and
//! wake its owner → the owning transport drains everything ready into one
//! WebSocket frame, one EventSource chunk, or one long-poll response.

pub mod admin;
pub mod bayeux;
pub mod deadline;
pub mod engine;
pub mod error;
pub mod fuzzing;
pub mod http;
pub mod net;
pub mod reload;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod transport;
pub mod upstream;

pub use error::Error;
pub use server::Server;

/// The repository's `routes.toml`, used when no configuration file is given.
pub const DEFAULT_ROUTES: &str = include_str!("../routes.toml");
