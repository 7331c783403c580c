//! Faye's server logic: the meta handlers and publishing, applied to one batch.
//!
//! [`Engine::process`] handles every message of a request in order and returns
//! the replies that are ready plus, for `/meta/connect`, a [`ConnectWait`] the
//! transport awaits. Replies therefore come out in completion order, as Faye
//! sends them: a held connect and its events are last. Error strings, precedence
//! ("later assignment wins") and echo rules follow PROTOCOL.md §1-§3. Storage
//! goes through the engine's store and permissions through the route's auth
//! policy; nothing here knows which transport a batch came on beyond the
//! stream slot a WebSocket lends it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::delivery::{ConnectWait, Item, Mode, Outcome, StreamSlot};
use super::peers::Refusal;
use super::session::{Session, Subscribed, Waiter};
use super::{Engine, Refused, Transport};
use crate::auth::{presented_token, Credentials, SessionGrant, SubscribePolicy};
use crate::bayeux::message::{reply_skeleton, str_field, truthy};
use crate::bayeux::{channel, error, meta, Batch, BAYEUX_VERSION, CONNECTION_TYPES};

/// The error of a connect whose session's token ran out.
pub(crate) const TOKEN_EXPIRED: &str = "401::Authentication expired";
/// The error of a handshake or subscribe whose token did not verify.
const AUTH_FAILED: &str = "403::Authentication failed";
/// Milliseconds a client whose handshake token was refused waits before the next
/// handshake. Without an interval the Faye client handshakes again at once, in a
/// loop as fast as the round trip (faye#542).
const AUTH_FAILED_INTERVAL_MS: u64 = 1000;

/// Where a batch came from.
#[derive(Debug, Default)]
pub struct Ctx<'a> {
    /// The stream the batch arrived on (WebSocket), or `None` for an HTTP request.
    pub stream: Option<&'a mut StreamSlot>,
    /// What the request presented (for a WebSocket, the upgrade request).
    pub credentials: Credentials<'a>,
    /// The client's address, for the per-address session limits.
    pub peer: Option<IpAddr>,
}

impl<'a> Ctx<'a> {
    /// Context of a plain HTTP request from `peer`.
    pub fn http(credentials: Credentials<'a>, peer: Option<IpAddr>) -> Ctx<'a> {
        Ctx {
            stream: None,
            credentials,
            peer,
        }
    }
}

/// A reply being built: the skeleton Faye copies from the request, and the
/// error, where the last one set wins (Faye assigns them in order).
struct Reply {
    map: Map<String, Value>,
    error: Option<Value>,
}

impl Reply {
    fn to(message: &Map<String, Value>) -> Reply {
        let mut map = reply_skeleton(message);
        // A request-supplied `error` is copied, as if an extension had set it.
        let error = map.remove("error");
        Reply { map, error }
    }

    fn fail(&mut self, error: String) {
        self.error = Some(Value::String(error));
    }

    fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn set(&mut self, key: &str, value: Value) {
        self.map.insert(key.to_owned(), value);
    }

    fn finish(mut self) -> Map<String, Value> {
        let ok = self.ok();
        if let Some(e) = self.error {
            self.map.insert("error".to_owned(), e);
        }
        self.map.insert("successful".to_owned(), Value::Bool(ok));
        self.map
    }
}

/// The hold a connect asks for with `advice.timeout` (milliseconds), as Faye reads it.
fn requested_hold(message: &Map<String, Value>) -> Option<Duration> {
    let advice = message.get("advice")?.as_object()?;
    let t = advice.get("timeout")?;
    let ms = match t {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse::<f64>().unwrap_or(0.0),
        _ => 0.0,
    };
    if ms.is_finite() && ms > 0.0 {
        Some(Duration::from_secs_f64((ms / 1000.0).min(86_400.0)))
    } else {
        Some(Duration::ZERO)
    }
}

impl Engine {
    /// Processes one batch. See the module docs for ordering.
    pub async fn process(&self, batch: Batch, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        // A Bayeux client sends one handshake at a time; more in one request
        // would let a single request fill the session table.
        let mut handshaken = false;
        for mut message in batch.into_iter().flatten() {
            let name = str_field(&message, "channel").map(str::to_owned);
            let reply = match name.as_deref() {
                Some(meta::HANDSHAKE) => {
                    let peer = if handshaken { Err(()) } else { Ok(ctx.peer) };
                    handshaken = true;
                    self.handshake(&message, peer).await
                }
                Some(meta::CONNECT) => match self.connect(&message, ctx).await {
                    Ok(wait) => {
                        out.connects.push(wait);
                        continue;
                    }
                    Err(reply) => reply,
                },
                Some(meta::SUBSCRIBE) => self.subscription(&message, true, &ctx.credentials).await,
                Some(meta::UNSUBSCRIBE) => {
                    self.subscription(&message, false, &ctx.credentials).await
                }
                Some(meta::DISCONNECT) => self.disconnect(&message).await,
                Some(other) if channel::is_meta(other) => {
                    let mut reply = Reply::to(&message);
                    reply.fail(error::channel_forbidden(message.get("channel")));
                    reply.finish()
                }
                _ => self.publish_message(&mut message, &ctx.credentials).await,
            };
            out.items.push(Item::Reply(reply));
        }
        out
    }

    /// The live session named by the message's `clientId`, with Faye's errors
    /// when there is none: `401:<id>:Unknown client`, then (later wins)
    /// `402:clientId:Missing required parameter` when it is missing. A shared
    /// store that cannot be asked about a session held elsewhere answers
    /// `503:<id>:Storage unavailable` instead: the session may well exist.
    async fn sender(
        &self,
        message: &Map<String, Value>,
        reply: &mut Reply,
    ) -> Option<Arc<Session>> {
        let client_id = message.get("clientId");
        let session = match client_id.and_then(Value::as_str) {
            Some(id) => match self.lookup(id).await {
                Ok(found) => found,
                Err(_) => {
                    reply.fail(error::storage_unavailable(id));
                    return None;
                }
            },
            None => None,
        };
        if session.is_none() {
            reply.fail(error::client_unknown(client_id));
        }
        if !truthy(client_id) {
            reply.fail(error::parameter_missing("clientId"));
        }
        session
    }

    /// `peer` is the client's address, or `Err` when the request already held a handshake.
    async fn handshake(
        &self,
        message: &Map<String, Value>,
        peer: Result<Option<IpAddr>, ()>,
    ) -> Map<String, Value> {
        let mut reply = Reply::to(message);
        reply.set("version", json!(BAYEUX_VERSION));
        if !truthy(message.get("version")) {
            reply.fail(error::parameter_missing("version"));
        }
        reply.set("supportedConnectionTypes", json!(CONNECTION_TYPES));
        let types = message.get("supportedConnectionTypes");
        if truthy(types) {
            let common = match types {
                Some(Value::Array(list)) => list
                    .iter()
                    .any(|t| t.as_str().is_some_and(|t| CONNECTION_TYPES.contains(&t))),
                // A string is read character by character, so it never matches.
                _ => false,
            };
            if !common {
                reply.fail(error::conntype_mismatch(types));
            }
        } else {
            reply.fail(error::parameter_missing("supportedConnectionTypes"));
        }
        // Under a `jwt` policy a token presented here grants the session's
        // channels; a bad one refuses the handshake (a missing one does not:
        // it may come with the first subscribe).
        let mut grant = None;
        // Milliseconds a refused client should wait before its next handshake.
        let mut back_off = None;
        if let (true, SubscribePolicy::Jwt(policy)) = (reply.ok(), &self.settings().subscribe) {
            if let Some(token) = presented_token(message) {
                match policy.grant(token) {
                    Ok(g) => grant = Some(g),
                    Err(e) => {
                        tracing::debug!(route = %self.name(), reason = e.label(), "handshake token refused");
                        self.count_refused_auth();
                        reply.fail(AUTH_FAILED.to_owned());
                        back_off = Some(AUTH_FAILED_INTERVAL_MS);
                    }
                }
            }
        }
        if reply.ok() {
            let created = match peer {
                Ok(peer) => self.create_session(peer).await,
                Err(()) => Err(Refused::Peer(Refusal::Rate(Duration::from_secs(5)))),
            };
            match created {
                Ok(session) => {
                    let recorded = match grant {
                        Some(g) => self.inner.store.grant(&session, g).await.is_ok(),
                        None => true,
                    };
                    if recorded {
                        reply.set("clientId", json!(session.id()));
                    } else {
                        // Without its grant the session could read nothing.
                        self.disconnect_session(&session);
                        self.count_refused_handshake();
                        reply.fail(error::STORAGE_UNAVAILABLE.to_owned());
                        back_off = Some(1000);
                    }
                }
                Err(refused) => {
                    self.count_refused_handshake();
                    let (text, wait) = match refused {
                        Refused::Capacity => ("503::Server at capacity", 5000),
                        Refused::Unavailable => (error::STORAGE_UNAVAILABLE, 1000),
                        Refused::Peer(Refusal::Sessions) => ("429::Too many sessions", 5000),
                        Refused::Peer(Refusal::Rate(wait)) => (
                            "429::Too many handshakes",
                            (wait.as_millis() as u64).max(1000),
                        ),
                    };
                    reply.fail(text.to_owned());
                    back_off = Some(wait);
                }
            }
        }
        let ok = reply.ok();
        let mut reply = reply.finish();
        let mut advice = self.advice(ok, false);
        if let Some(wait) = back_off {
            // Slow down refused clients instead of a tight retry loop.
            advice["interval"] = json!(wait);
        }
        reply.insert("advice".to_owned(), advice);
        reply
    }

    async fn connect(
        &self,
        message: &Map<String, Value>,
        ctx: &mut Ctx<'_>,
    ) -> Result<ConnectWait, Map<String, Value>> {
        let mut reply = Reply::to(message);
        let client_id = message.get("clientId");
        // A shared store that cannot be asked about this client: it may well
        // exist, so it is told to retry (keeping its id), not to handshake.
        let mut unavailable = false;
        let session = match client_id.and_then(Value::as_str) {
            Some(id) => self.connect_session(id).await.unwrap_or_else(|_| {
                unavailable = true;
                None
            }),
            None => None,
        };
        if session.is_none() {
            reply.fail(if unavailable {
                error::storage_unavailable(client_id.and_then(Value::as_str).unwrap_or(""))
            } else {
                error::client_unknown(client_id)
            });
        }
        if !truthy(client_id) {
            reply.fail(error::parameter_missing("clientId"));
        }
        let conn_type = message.get("connectionType");
        let known = conn_type
            .and_then(Value::as_str)
            .is_some_and(|t| CONNECTION_TYPES.contains(&t));
        if !known {
            reply.fail(error::conntype_mismatch(conn_type));
        }
        if !truthy(conn_type) {
            reply.fail(error::parameter_missing("connectionType"));
        }
        let eventsource = conn_type.and_then(Value::as_str) == Some("eventsource");
        if session.as_ref().is_some_and(|s| s.ended_by_token()) {
            reply.fail(TOKEN_EXPIRED.to_owned());
        }
        let session = match session {
            Some(s) if reply.ok() => s,
            _ => {
                reply.map.remove("clientId");
                let mut reply = reply.finish();
                let advice = if unavailable {
                    json!({"reconnect": "retry", "interval": 1000})
                } else {
                    self.advice(false, eventsource)
                };
                reply.insert("advice".to_owned(), advice);
                return Err(reply);
            }
        };
        // The reply is rebuilt when the connect is answered: a held connect then
        // costs a few words instead of a map of small allocations.
        let id = reply.map.remove("id");

        let expires_at = session.extend(Instant::now() + self.settings().session_lifetime());
        session.note_transport(Transport::of_connect(
            conn_type.and_then(Value::as_str),
            ctx.stream.is_some(),
        ));
        let hold = if eventsource {
            Duration::ZERO
        } else {
            requested_hold(message).unwrap_or(self.settings().timeout)
        };
        let deadline = (Instant::now() + hold).min(expires_at);
        let mode = match ctx.stream.as_deref_mut() {
            Some(slot) => Mode::Stream(slot.bind(&session).unwrap_or_default()),
            None if eventsource => Mode::Immediate,
            // A stream (EventSource, WebSocket) already delivers for this session:
            // a long-poll beside it is only a heartbeat and must not take the
            // stream's place. The Faye browser client sends exactly this while
            // its EventSource opens.
            None if session.has_stream_owner() => Mode::Heartbeat,
            None => {
                let waiter = Waiter::new(Arc::new(Notify::new()));
                session.take_ownership(waiter.clone(), false);
                Mode::Poll(waiter)
            }
        };
        Ok(ConnectWait {
            engine: self.clone(),
            session,
            id,
            eventsource,
            deadline,
            mode,
        })
    }

    async fn subscription(
        &self,
        message: &Map<String, Value>,
        subscribe: bool,
        credentials: &Credentials<'_>,
    ) -> Map<String, Value> {
        let mut reply = Reply::to(message);
        let session = self.sender(message, &mut reply).await;
        let subscription = message.get("subscription");
        if !truthy(subscription) {
            reply.fail(error::parameter_missing("subscription"));
        }
        reply.set(
            "subscription",
            match subscription {
                Some(v) if truthy(Some(v)) => v.clone(),
                _ => json!([]),
            },
        );
        let list: Vec<&Value> = match subscription {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(v) if truthy(Some(v)) => vec![v],
            _ => Vec::new(),
        };
        let settings = self.settings();
        let bounds = settings.channel_bounds();
        if let (true, true, Some(session)) = (subscribe, reply.ok(), &session) {
            self.renew_grant(session, message, &settings.subscribe, &mut reply)
                .await;
        }
        for item in list {
            if !reply.ok() {
                break;
            }
            let name = item.as_str().unwrap_or("");
            let admitted = bounds.admits(name);
            if admitted && !channel::is_subscribable(name) {
                reply.fail(error::channel_forbidden(Some(item)));
            }
            if !admitted || !channel::is_valid(name) {
                reply.fail(error::channel_invalid(Some(item)));
            }
            let Some(session) = session.as_ref().filter(|_| reply.ok()) else {
                break;
            };
            if !subscribe {
                if self.inner.store.unsubscribe(session, name).await.is_err() {
                    reply.fail(error::storage_unavailable(name));
                }
                continue;
            }
            if !self
                .may_subscribe(session, name, &settings.subscribe, credentials)
                .await
            {
                self.count_refused_auth();
                reply.fail(error::channel_forbidden(Some(item)));
                break;
            }
            let outcome = self
                .inner
                .store
                .subscribe(
                    session,
                    name,
                    settings.max_subscriptions,
                    settings.max_total_subscriptions,
                )
                .await;
            match outcome {
                Subscribed::Added | Subscribed::Already | Subscribed::Gone => {}
                Subscribed::SessionFull => {
                    self.count_refused_subscription();
                    reply.fail(format!("403:{name}:Too many subscriptions"));
                }
                Subscribed::RouteFull => {
                    self.count_refused_subscription();
                    reply.fail(format!("503:{name}:Server at capacity"));
                }
                Subscribed::Unavailable => reply.fail(error::storage_unavailable(name)),
            }
        }
        reply.finish()
    }

    /// Under a `jwt` policy, a token presented on a subscribe replaces the
    /// session's grants; one that does not verify refuses the whole message.
    async fn renew_grant(
        &self,
        session: &Arc<Session>,
        message: &Map<String, Value>,
        policy: &SubscribePolicy,
        reply: &mut Reply,
    ) {
        let (SubscribePolicy::Jwt(policy), Some(token)) = (policy, presented_token(message)) else {
            return;
        };
        match policy.grant(token) {
            Ok(grant) => {
                if self.inner.store.grant(session, grant).await.is_err() {
                    reply.fail(error::STORAGE_UNAVAILABLE.to_owned());
                }
            }
            Err(e) => {
                tracing::debug!(route = %self.name(), reason = e.label(), "subscribe token refused");
                self.count_refused_auth();
                reply.fail(AUTH_FAILED.to_owned());
            }
        }
    }

    /// What the route's subscribe policy says about `session` reading `pattern`.
    async fn may_subscribe(
        &self,
        session: &Session,
        pattern: &str,
        policy: &SubscribePolicy,
        credentials: &Credentials<'_>,
    ) -> bool {
        match policy {
            SubscribePolicy::Open => true,
            SubscribePolicy::Jwt(_) => session.grant().is_some_and(|g: Arc<SessionGrant>| {
                !g.expired(std::time::SystemTime::now()) && g.grants.covers(pattern)
            }),
            SubscribePolicy::Backend(_) => {
                policy
                    .backend_allows(session.id(), pattern, credentials.forwarded)
                    .await
            }
        }
    }

    async fn disconnect(&self, message: &Map<String, Value>) -> Map<String, Value> {
        let mut reply = Reply::to(message);
        let session = self.sender(message, &mut reply).await;
        match session {
            Some(session) if reply.ok() => {
                self.disconnect_session(&session);
                self.count_disconnect();
            }
            _ => {
                reply.map.remove("clientId");
            }
        }
        reply.finish()
    }

    async fn publish_message(
        &self,
        message: &mut Map<String, Value>,
        credentials: &Credentials<'_>,
    ) -> Map<String, Value> {
        let mut reply = Reply::to(message);
        let settings = self.settings();
        let name = str_field(message, "channel")
            .filter(|n| settings.channel_bounds().admits(n) && channel::is_name(n))
            .map(str::to_owned);
        if name.is_none() {
            reply.fail(error::channel_invalid(message.get("channel")));
        }
        if !message.contains_key("data") {
            reply.fail(error::parameter_missing("data"));
        }
        // The policy also strips credentials from the message, refused or not.
        let verdict = settings.publish.check(message, credentials);
        if let (true, Err(denied)) = (reply.ok(), verdict) {
            reply.fail(denied.0);
        }
        if let (true, Some(name)) = (reply.ok(), name) {
            message.remove("clientId");
            if self.publish(&name, message).await.is_err() {
                // Never acknowledged and then dropped: the publisher is told.
                reply.fail(error::storage_unavailable(&name));
            }
        }
        reply.finish()
    }
}
