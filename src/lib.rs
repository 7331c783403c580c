//! bayeux-edge: a Faye-compatible Bayeux server and TLS edge in one process.
//!
//! # Layout
//!
//! Ordered from the wire inwards; a module only uses the ones below it, and the
//! leaves at the end are used from anywhere.
//!
//! - [`cli`]: the command line (`serve`, `check`, `publish`, `health`) and its
//!   small HTTP client; `src/main.rs` only picks the allocator and calls it.
//! - [`server`]: start-up wiring (bind, spawn, reload) and the drain.
//! - [`reload`]: hot reload of `routes.toml` and certificates (file watch,
//!   SIGHUP), one at a time, planned then applied.
//! - [`admin`]: the admin listener: health, readiness, the metrics endpoint,
//!   and the operator's console (routes live, presence, taps, test publish).
//! - [`metrics`]: process counters and the Prometheus exposition of them and of
//!   every engine's figures.
//! - [`net`]: listeners, TLS with SNI and reloadable certificates, HTTP/1.1 and
//!   HTTP/2, connection bounds.
//! - [`gateway`]: the client-facing service: route lookup and dispatch to a
//!   transport or an upstream.
//! - [`routes`]: the live route table: lookup, the planned diff of a reload, the swap.
//! - [`upstream`]: routes forwarded to an HTTP upstream (migration from Faye).
//! - [`transport`]: WebSocket, long-polling (JSON, form, JSONP) and EventSource:
//!   how batches come in and replies and events go out.
//! - [`engine`]: one isolated pub/sub engine per route: the Bayeux logic over a
//!   storage interface (sessions, subscriptions, queues), with the in-memory
//!   store and the Redis store that lets several processes serve one route.
//! - [`bayeux`]: the protocol itself (messages, channels, errors, client ids); no I/O.
//! - Leaves: [`config`] (`routes.toml` read, validated and typed; secrets
//!   through an environment source), [`auth`] (the policies the engine
//!   consults), [`http`] (responses, CORS, the Faye bundle, connection facts),
//!   [`deadline`]
//!   (write and read deadlines on sockets), [`budget`] (the process's bound on
//!   unfinished input), [`shutdown`] (the drain signal and
//!   task tracking), [`error`] (start-up errors).
//!
//! # Data path of one message
//!
//! accept → TLS → hyper (h1/h2) → [`gateway::Gateway`] loads the route table once →
//! longest whole-segment prefix → the route's [`engine::Engine`] → transport →
//! [`bayeux::parse_batch`] → [`engine::Engine::process`] → auth policy → on
//! publish: serialize the event once, walk the subscription trie along the
//! channel's segments, collect each subscriber once, push the shared bytes into
//! every subscriber's bounded mailbox and wake its owner, then hand them to any
//! operator's tap on the channel (one relaxed load when no tap is open) → the
//! owning transport drains everything ready into one WebSocket frame, one
//! EventSource chunk, or one long-poll response.

pub mod admin;
pub mod auth;
pub mod bayeux;
pub mod budget;
pub mod cli;
pub mod config;
pub mod deadline;
pub mod engine;
pub mod error;
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
