//! What the operator's console asks of an engine besides taps: which sessions
//! a publish to a channel would reach (presence), what kind of storage the
//! engine has, and a publish made by the operator.
//!
//! These read the store through two more operations beside the ones in
//! `store`'s table: [`Store::kind`] and [`Store::local_subscribers`], the
//! sessions held in this process that a publish to a channel would be queued
//! for now (for the in-memory store, the index's `collect`). Nothing here runs
//! on the publish path.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::session::Session;
use super::store::Store;
use super::Engine;
use crate::bayeux::channel;

impl Store {
    /// The storage kind, as the console and the docs name it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// The sessions held here that a publish to the concrete channel `name`
    /// would be queued for now. For a shared store, only this process's: other
    /// nodes hold their own.
    pub(crate) fn local_subscribers(&self, name: &str) -> Vec<Arc<Session>> {
        self.local().recipients(name)
    }
}

/// Why an operator's publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorPublishError {
    /// The channel is not a concrete channel name within the route's bounds.
    #[error("not a channel name this route accepts (a name such as /123, no wildcards)")]
    InvalidChannel,
    /// `/meta/**` and `/service/**` are never delivered to subscribers.
    #[error("/meta and /service channels are never delivered to subscribers")]
    NotDelivered,
    /// The event is larger than the route's `max_message_bytes`.
    #[error("the message is larger than the route's max_message_bytes ({0} bytes)")]
    TooLarge(usize),
    /// The route was retired.
    #[error("the route is being retired")]
    Retired,
    /// A shared store could not record the event: it was not published.
    #[error("the route's storage is unavailable: the message was not published")]
    Unavailable,
}

impl Engine {
    /// The storage kind ("memory").
    pub fn kind(&self) -> &'static str {
        self.inner.store.kind()
    }

    /// The live sessions held here that a publish to the concrete channel
    /// `name` would reach now, each once. Empty for anything but a valid name.
    pub fn presence(&self, name: &str) -> Vec<Arc<Session>> {
        if !channel::is_name(name) {
            return Vec::new();
        }
        let now = Instant::now();
        let mut sessions = self.inner.store.local_subscribers(name);
        sessions.retain(|s| s.due(now).is_none());
        sessions
    }

    /// Publishes `data` on `name` as a backend's publish would, for the
    /// operator: the route's publish policy is not consulted (the operator is
    /// not one of the route's publishers), everything else is the same path,
    /// counters and taps included. Returns how many sessions it was queued for,
    /// or `None` for a shared store (each node's log reader queues it for the
    /// sessions that node holds).
    pub async fn publish_as_operator(
        &self,
        name: &str,
        data: Value,
    ) -> Result<Option<usize>, OperatorPublishError> {
        let settings = self.settings();
        if !settings.channel_bounds().admits(name) || !channel::is_name(name) {
            return Err(OperatorPublishError::InvalidChannel);
        }
        if channel::is_meta(name) || channel::is_service(name) {
            return Err(OperatorPublishError::NotDelivered);
        }
        if self.is_retired() {
            return Err(OperatorPublishError::Retired);
        }
        let mut event = Map::new();
        event.insert("channel".to_owned(), Value::String(name.to_owned()));
        event.insert("data".to_owned(), data);
        let size = serde_json::to_vec(&event).map(|v| v.len()).unwrap_or(0);
        if size > settings.max_message_bytes {
            return Err(OperatorPublishError::TooLarge(settings.max_message_bytes));
        }
        match self.publish(name, &event).await {
            Ok(_) if self.inner.store.shared().is_some() => Ok(None),
            Ok(queued) => Ok(Some(queued)),
            Err(_) => Err(OperatorPublishError::Unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bayeux::parse_batch;
    use crate::engine::{Ctx, Item, PublishPolicy, Transport};
    use crate::shutdown::Shutdown;
    use serde_json::json;

    async fn run(engine: &Engine, body: Value, peer: Option<std::net::IpAddr>) -> Vec<Value> {
        let batch = parse_batch(body.to_string().as_bytes(), 1000).unwrap();
        let out = engine
            .process(batch, &mut Ctx::http(Default::default(), peer))
            .await;
        out.items
            .into_iter()
            .map(|i| match i {
                Item::Reply(m) => Value::Object(m),
                Item::Event(b) | Item::Encoded(b) => serde_json::from_slice(&b).unwrap(),
            })
            .collect()
    }

    #[tokio::test]
    async fn presence_lists_the_sessions_a_publish_would_reach_with_their_facts() {
        let engine = Engine::new(
            "/t",
            crate::engine::EngineSettings {
                publish: PublishPolicy::Deny,
                ..Default::default()
            },
            Shutdown::default(),
        );
        let ip: std::net::IpAddr = "2001:db8::7".parse().unwrap();
        let hs = run(
            &engine,
            json!({"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}),
            Some(ip),
        )
        .await;
        let id = hs[0]["clientId"].as_str().unwrap().to_owned();
        run(
            &engine,
            json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": "/users/*"},
                   {"channel": "/meta/connect", "clientId": id, "connectionType": "callback-polling"}]),
            None,
        )
        .await;
        assert!(engine.presence("/other").is_empty());
        assert!(
            engine.presence("/users/*").is_empty(),
            "a pattern is not a channel"
        );
        let found = engine.presence("/users/123");
        assert_eq!(found.len(), 1);
        let s = &found[0];
        assert_eq!(s.id(), id);
        assert_eq!(s.client_addr(), Some(ip), "the full address, not its /64");
        assert_eq!(s.transport(), Some(Transport::CallbackPolling));
        assert!(s.since() <= std::time::SystemTime::now());

        // The operator publishes although the route's policy denies everyone.
        let n = engine
            .publish_as_operator("/users/123", json!({"hello": 1}))
            .await
            .unwrap();
        assert_eq!(n, Some(1));
        assert_eq!(s.queued(), 1);
        assert_eq!(engine.stats().delivered, 1);
        assert_eq!(
            engine.publish_as_operator("/users/*", json!(1)).await,
            Err(OperatorPublishError::InvalidChannel)
        );
        assert_eq!(
            engine.publish_as_operator("/service/x", json!(1)).await,
            Err(OperatorPublishError::NotDelivered)
        );
        assert_eq!(engine.kind(), "memory");
    }
}
