//! bayeux-edge: a Faye-compatible Bayeux server and TLS edge in one process.
//!
//! # Layout
//!
//! - [`bayeux`]: the protocol itself (messages, channels, errors, client ids); no I/O.
//! - [`engine`]: one isolated pub/sub engine per route: sessions, subscriptions,
//!   bounded mailboxes, the meta handlers and publishing.
//! - [`transport`]: WebSocket, long-polling (JSON, form, JSONP) and EventSource.
//! - [`gateway`]: the client-facing service: route lookup and dispatch to a
//!   transport or an upstream.
//! - [`http`]: HTTP building blocks every handler shares: responses, CORS, the
//!   Faye browser bundle, connection facts.
//! - [`config`]: `routes.toml` read, validated and typed (process settings,
//!   listeners, TLS files, route tunables); secrets through an environment source.
//! - [`auth`]: the publish (and subscribe) policies the engine consults.
//! - [`routes`]: the live route table: lookup, the planned diff of a reload, the swap.
//! - [`net`]: listeners, TLS with SNI and reloadable certificates, HTTP/1.1 and HTTP/2.
//! - [`deadline`]: write and read deadlines on sockets (peers that stop reading,
//!   WebSockets that go silent or never finish a message).
//! - [`upstream`]: routes forwarded to an HTTP upstream (migration from Faye).
//! - [`admin`]: the admin listener: health, readiness, the metrics endpoint.
//! - [`metrics`]: process-wide counters and the Prometheus exposition.
//! - [`reload`]: hot reload of `routes.toml` and certificates (file watch, SIGHUP).
//! - [`server`]: start-up wiring and the drain; [`shutdown`]: the drain signal.
//! - [`cli`]: the command line (`serve`, `check`, `publish`, `health`) and its
//!   small HTTP client.
//!
//! # Data path of one message
//!
//! accept → TLS → hyper (h1/h2) → [`gateway::Gateway`] loads the route table once →
//! longest whole-segment prefix → the route's [`engine::Engine`] → transport →
//! [`bayeux::parse_batch`] → [`engine::Engine::process`] → on publish: expand the
//! channel into its wildcard keys, collect each subscriber once, serialize the
//! event once, push the shared bytes into every subscriber's bounded mailbox and
//! wake its owner → the owning transport drains everything ready into one
//! WebSocket frame, one EventSource chunk, or one long-poll response.

pub mod admin;
pub mod auth;
pub mod bayeux;
pub mod cli;
pub mod config;
pub mod deadline;
pub mod engine;
pub mod error;
pub mod fuzzing;
pub mod gateway;
pub mod http;
pub mod metrics;
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
