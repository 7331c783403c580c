//! The tunables of one route's engine, with their defaults. Defaults follow
//! Faye where Faye has one and are bounded where Faye is not; each is
//! documented on its field and in the README's `routes.toml` reference.

use std::time::Duration;

use crate::auth::{OriginPolicy, PublishPolicy, SubscribePolicy};
use crate::bayeux::channel;

/// Tunables of one engine. Defaults follow Faye where Faye has one and are
/// bounded where Faye is not.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// How long a `/meta/connect` is held (`advice.timeout`). Faye's default: 60 s.
    pub timeout: Duration,
    /// `advice.interval`: how long clients wait between connects. Default 0.
    pub interval: Duration,
    /// Largest accepted HTTP request body or WebSocket message, in bytes. Default 1 MiB.
    pub max_message_bytes: usize,
    /// Most events queued for one client before the oldest are dropped. Default 1000.
    pub max_queue_messages: usize,
    /// Most bytes queued for one client before the oldest are dropped. Default 4 MiB.
    pub max_queue_bytes: usize,
    /// Most subscriptions one client may hold. Default 100.
    pub max_subscriptions: usize,
    /// Most subscriptions in this engine, all clients together; further
    /// subscribes are refused with `503 Server at capacity`. Default 250 000.
    pub max_total_subscriptions: usize,
    /// Most live clients in this engine; further handshakes are refused. Default 100 000.
    pub max_clients: usize,
    /// Most live sessions one client address may hold (IPv6 by /64). Default 1000.
    pub max_sessions_per_ip: usize,
    /// Handshakes per second one client address may make on average. Default 50.
    pub handshake_rate_per_ip: f64,
    /// Handshakes one client address may make at once after a quiet spell. Default 500.
    pub handshake_burst_per_ip: f64,
    /// How long a session may wait for its first `/meta/connect` before it
    /// expires (Faye clients connect right after the handshake). Default 30 s,
    /// and never longer than the session lifetime.
    pub first_connect_timeout: Duration,
    /// Most messages in one request or WebSocket message. Default 1000.
    pub max_batch_messages: usize,
    /// Longest channel name or pattern, in bytes. Default 256.
    pub max_channel_bytes: usize,
    /// Most segments in a channel name or pattern. Default 16.
    pub max_channel_segments: usize,
    /// WebSocket ping interval; `None` (the default) sends none, like Faye without `ping`.
    pub ws_ping: Option<Duration>,
    /// EventSource keep-alive comment interval. Default 10 s, as Faye.
    pub eventsource_ping: Duration,
    /// Who may publish. Default: anyone.
    pub publish: PublishPolicy,
    /// Who may subscribe to what. Default: anyone, to anything (as Faye).
    pub subscribe: SubscribePolicy,
    /// Which web origins may use the route from a browser. Default: any (as Faye).
    pub origins: OriginPolicy,
    /// Redis routes: entries kept in the route's publish log (`XADD … MAXLEN ~`).
    /// A client away for longer than the log covers gets what remains, and the
    /// gap is counted. Default 10 000.
    pub redis_stream_max_len: usize,
    /// Redis routes: time allowed for one Redis command before it counts as a
    /// failure. Default 1 s.
    pub redis_timeout: Duration,
    /// Redis routes: how often the delivery cursors of streaming clients
    /// (WebSocket, EventSource) are written, in one command per node. Default 250 ms.
    pub redis_cursor_flush: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            timeout: Duration::from_secs(60),
            interval: Duration::ZERO,
            max_message_bytes: 1 << 20,
            max_queue_messages: 1000,
            max_queue_bytes: 4 << 20,
            max_subscriptions: 100,
            max_total_subscriptions: 250_000,
            max_clients: 100_000,
            max_sessions_per_ip: 1000,
            handshake_rate_per_ip: 50.0,
            handshake_burst_per_ip: 500.0,
            first_connect_timeout: Duration::from_secs(30),
            max_batch_messages: 1000,
            max_channel_bytes: 256,
            max_channel_segments: 16,
            ws_ping: None,
            eventsource_ping: Duration::from_secs(10),
            publish: PublishPolicy::Open,
            subscribe: SubscribePolicy::Open,
            origins: OriginPolicy::Any,
            redis_stream_max_len: 10_000,
            redis_timeout: Duration::from_secs(1),
            redis_cursor_flush: Duration::from_millis(250),
        }
    }
}

impl EngineSettings {
    /// How long a session lives without a connect: twice the timeout.
    pub fn session_lifetime(&self) -> Duration {
        self.timeout * 2
    }

    /// The bounds channel names and patterns must keep.
    pub fn channel_bounds(&self) -> channel::Bounds {
        channel::Bounds {
            max_bytes: self.max_channel_bytes,
            max_segments: self.max_channel_segments,
        }
    }
}
