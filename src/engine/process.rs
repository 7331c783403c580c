//! Faye's server logic: the meta handlers and publishing, applied to one batch.
//!
//! [`Engine::process`] handles every message of a request in order and returns
//! the replies that are ready plus, for `/meta/connect`, a [`ConnectWait`] the
//! transport awaits. Replies therefore come out in completion order, as Faye
//! sends them: a held connect and its events are last. Error strings, precedence
//! ("later assignment wins") and echo rules follow PROTOCOL.md §1-§3.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{Client, Owner, Waiter};
use super::{Engine, Full, Refusal, Refused};
use crate::auth::Credentials;
use crate::bayeux::message::{finish, reply_skeleton, str_field, truthy};
use crate::bayeux::{channel, error, meta, Batch, BAYEUX_VERSION, CONNECTION_TYPES};

/// Grace period after a held long-poll is woken, so events published in the
/// same instant (Faye uses a zero-delay timer) ride in one reply.
const COALESCE: Duration = Duration::from_millis(1);

/// One element of a reply array: a reply built here, or an event serialized once
/// at publish time and shared by every recipient.
#[derive(Debug, Clone)]
pub enum Item {
    /// A reply message.
    Reply(Map<String, Value>),
    /// A delivered event (or replies encoded earlier): JSON written verbatim
    /// as one or more comma-separated array elements.
    Event(Bytes),
}

/// Everything one request produced right away, plus the connects still to finish.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Replies ready now, in completion order.
    pub items: Vec<Item>,
    /// `/meta/connect` messages that complete later (held or not), in request order.
    pub connects: Vec<ConnectWait>,
}

/// The delivery binding of one WebSocket or EventSource stream: which client it
/// serves, and the wake-up it registered with that client.
#[derive(Debug)]
pub struct StreamSlot {
    notify: Arc<Notify>,
    bound: Option<(Arc<Client>, u64)>,
}

impl Default for StreamSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamSlot {
    /// An unbound slot.
    pub fn new() -> Self {
        StreamSlot {
            notify: Arc::new(Notify::new()),
            bound: None,
        }
    }

    /// Woken whenever the bound client has events, is superseded, or goes away.
    pub fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }

    /// The client this stream delivers for, if any.
    pub fn bound(&self) -> Option<&Arc<Client>> {
        self.bound.as_ref().map(|(c, _)| c)
    }

    /// Makes this stream the delivery owner of `client` (a no-op if it already is).
    pub fn bind(&mut self, client: &Arc<Client>) -> bool {
        if let Some((current, generation)) = &self.bound {
            if Arc::ptr_eq(current, client) && current.owns(*generation) {
                return true;
            }
        }
        self.unbind();
        let waiter = Waiter::new(self.notify.clone());
        let generation = waiter.generation();
        if client.take_ownership(waiter, true) {
            self.bound = Some((client.clone(), generation));
            true
        } else {
            false
        }
    }

    /// Takes the events ready for the bound client. Unbinds when the client went
    /// away or another connect took over.
    pub fn drain(&mut self) -> Vec<Bytes> {
        let Some((client, generation)) = &self.bound else {
            return Vec::new();
        };
        match client.drain_stream(*generation) {
            super::StreamDrain::Events(events) => events,
            super::StreamDrain::Superseded | super::StreamDrain::Gone => {
                self.bound = None;
                Vec::new()
            }
        }
    }

    /// Gives delivery back (socket closed): later events queue for the next connect.
    pub fn unbind(&mut self) {
        if let Some((client, generation)) = self.bound.take() {
            client.release(generation);
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.unbind();
    }
}

/// Where a batch came from.
#[derive(Debug)]
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

#[derive(Debug)]
enum Mode {
    /// Answer at once with whatever is queued and nobody else owns.
    Immediate,
    /// A held long-poll owning delivery with this generation.
    Poll(Waiter),
    /// A connect on a bound stream: only a timer; events go to the stream.
    Stream(u64),
    /// An HTTP connect beside a stream that owns delivery: only a timer.
    Heartbeat,
}

/// A `/meta/connect` that has been accepted and must be answered later.
#[derive(Debug)]
pub struct ConnectWait {
    engine: Engine,
    client: Arc<Client>,
    /// The request's `id`, echoed when truthy.
    id: Option<Value>,
    /// The request asked for `connectionType: "eventsource"` (advice differs).
    eventsource: bool,
    deadline: Instant,
    mode: Mode,
}

impl ConnectWait {
    /// When the connect is answered at the latest.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The client it belongs to.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Answers the connect as soon as it should be: at once when events are
    /// queued, when woken by a publish (after a short coalescing pause), when
    /// superseded by a newer connect, when the client goes away, or at the
    /// deadline. If this future is dropped first (the HTTP connection closed),
    /// queued events stay in the mailbox for the next connect.
    pub async fn wait(self) -> Vec<Item> {
        self.wait_until(std::future::pending::<()>()).await
    }

    /// Like [`ConnectWait::wait`], but answers early (with whatever is queued)
    /// when `stop` completes, e.g. when the server starts draining.
    pub async fn wait_until<F: std::future::Future>(mut self, stop: F) -> Vec<Item> {
        tokio::pin!(stop);
        let waiter = match &self.mode {
            Mode::Poll(w) => w.clone(),
            Mode::Immediate => {
                let events = self.client.drain_unowned();
                return self.answer(events);
            }
            Mode::Stream(_) | Mode::Heartbeat => {
                tokio::select! {
                    _ = tokio::time::sleep_until(self.deadline) => {}
                    _ = &mut stop => {}
                }
                self.engine.expire_if_due(&self.client);
                return self.answer(Vec::new());
            }
        };
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.client.state.lock();
                if !st.alive {
                    drop(st);
                    return self.answer(Vec::new());
                }
                let owns = matches!(&st.owner, Owner::Poll(w) if w.generation == waiter.generation);
                if !owns {
                    drop(st);
                    return self.answer(Vec::new());
                }
                if !st.queue.is_empty() {
                    st.queued_bytes = 0;
                    let events: Vec<Bytes> = st.queue.drain(..).collect();
                    st.owner = Owner::None;
                    drop(st);
                    return self.answer(events);
                }
            }
            if Instant::now() >= self.deadline {
                self.client.release(waiter.generation);
                if self.engine.expire_if_due(&self.client) {
                    return self.answer(Vec::new());
                }
                let events = self.client.drain_unowned();
                return self.answer(events);
            }
            tokio::select! {
                _ = &mut notified => tokio::time::sleep(COALESCE).await,
                _ = tokio::time::sleep_until(self.deadline) => {}
                _ = &mut stop => {
                    self.client.release(waiter.generation);
                    let events = self.client.drain_unowned();
                    return self.answer(events);
                }
            }
        }
    }

    /// For a stream connect: true once it should be answered (deadline reached,
    /// client gone, or the stream no longer owns delivery).
    pub fn stream_due(&self, now: Instant) -> bool {
        match &self.mode {
            Mode::Stream(generation) => now >= self.deadline || !self.client.owns(*generation),
            _ => true,
        }
    }

    /// Answers a stream connect (the events themselves went over the stream).
    pub fn finish_stream(mut self) -> Vec<Item> {
        if Instant::now() >= self.deadline {
            self.engine.expire_if_due(&self.client);
        }
        self.answer(Vec::new())
    }

    fn answer(&mut self, events: Vec<Bytes>) -> Vec<Item> {
        let mut items = Vec::with_capacity(1 + events.len());
        let mut reply = Map::new();
        if let Some(id) = self.id.take() {
            reply.insert("id".to_owned(), id);
        }
        reply.insert("clientId".to_owned(), json!(&*self.client.id));
        reply.insert("channel".to_owned(), json!(meta::CONNECT));
        reply.insert("successful".to_owned(), Value::Bool(true));
        let advice = if self.engine.is_retired() {
            // The route was removed or replaced: tell the client to start over.
            json!({"reconnect": "handshake"})
        } else {
            advice(&self.engine, true, self.eventsource)
        };
        reply.insert("advice".to_owned(), advice);
        items.push(Item::Reply(reply));
        items.extend(events.into_iter().map(Item::Event));
        if let Mode::Poll(w) = &self.mode {
            self.client.release(w.generation);
        }
        self.mode = Mode::Immediate;
        items
    }
}

impl Drop for ConnectWait {
    fn drop(&mut self) {
        if let Mode::Poll(w) = &self.mode {
            self.client.release(w.generation);
        }
    }
}

/// Rewrites the advice of every connect reply in `items` to "retry after
/// `interval`": used while draining so clients come back spread over time, to
/// another instance, instead of all at once.
pub fn advise_retry_after(items: &mut [Item], interval: Duration) {
    for item in items {
        if let Item::Reply(reply) = item {
            let is_connect = reply.get("channel").and_then(Value::as_str) == Some(meta::CONNECT);
            if is_connect {
                if let Some(Value::Object(advice)) = reply.get_mut("advice") {
                    if advice.get("reconnect").and_then(Value::as_str) == Some("retry") {
                        advice.insert("interval".to_owned(), json!(interval.as_millis() as u64));
                    }
                }
            }
        }
    }
}

fn advice(engine: &Engine, ok: bool, eventsource: bool) -> Value {
    if !ok {
        return json!({"reconnect": "handshake"});
    }
    let s = engine.settings();
    let timeout = s.timeout.as_millis() as u64;
    if eventsource {
        json!({"reconnect": "retry", "interval": timeout, "timeout": 0})
    } else {
        json!({"reconnect": "retry", "interval": s.interval.as_millis() as u64, "timeout": timeout})
    }
}

fn set_error(reply: &mut Map<String, Value>, err: String) {
    reply.insert("error".to_owned(), Value::String(err));
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
    pub fn process(&self, batch: Batch, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        // A Bayeux client sends one handshake at a time; more in one request
        // would let a single request fill the session table.
        let mut handshaken = false;
        for message in batch.into_iter().flatten() {
            let channel_name = str_field(&message, "channel").map(str::to_owned);
            match channel_name.as_deref() {
                Some(name) if channel::is_meta(name) => match name {
                    meta::HANDSHAKE => {
                        let peer = if handshaken { Err(()) } else { Ok(ctx.peer) };
                        handshaken = true;
                        out.items.push(Item::Reply(self.handshake(&message, peer)));
                    }
                    meta::CONNECT => match self.connect(&message, ctx) {
                        Ok(wait) => out.connects.push(wait),
                        Err(reply) => out.items.push(Item::Reply(reply)),
                    },
                    meta::SUBSCRIBE => out
                        .items
                        .push(Item::Reply(self.subscription(&message, true))),
                    meta::UNSUBSCRIBE => out
                        .items
                        .push(Item::Reply(self.subscription(&message, false))),
                    meta::DISCONNECT => out.items.push(Item::Reply(self.disconnect(&message))),
                    _ => {
                        let mut reply = reply_skeleton(&message);
                        set_error(&mut reply, error::channel_forbidden(message.get("channel")));
                        finish(&mut reply);
                        out.items.push(Item::Reply(reply));
                    }
                },
                _ => out
                    .items
                    .push(Item::Reply(self.publish_message(message, &ctx.credentials))),
            }
        }
        out
    }

    /// `peer` is the client's address, or `Err` when the request already held a handshake.
    fn handshake(
        &self,
        message: &Map<String, Value>,
        peer: Result<Option<IpAddr>, ()>,
    ) -> Map<String, Value> {
        let mut reply = reply_skeleton(message);
        reply.insert("version".to_owned(), json!(BAYEUX_VERSION));
        if !truthy(message.get("version")) {
            set_error(&mut reply, error::parameter_missing("version"));
        }
        reply.insert(
            "supportedConnectionTypes".to_owned(),
            json!(CONNECTION_TYPES),
        );
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
                set_error(&mut reply, error::conntype_mismatch(types));
            }
        } else {
            set_error(
                &mut reply,
                error::parameter_missing("supportedConnectionTypes"),
            );
        }
        // Milliseconds a refused client should wait before its next handshake.
        let mut back_off = None;
        if !reply.contains_key("error") {
            let created = match peer {
                Ok(peer) => self.create_client(peer),
                Err(()) => Err(Refused::Peer(Refusal::Rate(Duration::from_secs(5)))),
            };
            match created {
                Ok(client) => {
                    reply.insert("clientId".to_owned(), json!(&*client.id));
                }
                Err(refused) => {
                    self.count_refused_handshake();
                    let (error, wait) = match refused {
                        Refused::Capacity => ("503::Server at capacity", 5000),
                        Refused::Peer(Refusal::Sessions) => ("429::Too many sessions", 5000),
                        Refused::Peer(Refusal::Rate(wait)) => (
                            "429::Too many handshakes",
                            (wait.as_millis() as u64).max(1000),
                        ),
                    };
                    set_error(&mut reply, error.to_owned());
                    back_off = Some(wait);
                }
            }
        }
        let ok = finish(&mut reply);
        let mut adv = advice(self, ok, false);
        if let Some(wait) = back_off {
            // Slow down refused clients instead of a tight retry loop.
            adv["interval"] = json!(wait);
        }
        reply.insert("advice".to_owned(), adv);
        reply
    }

    fn connect(
        &self,
        message: &Map<String, Value>,
        ctx: &mut Ctx<'_>,
    ) -> Result<ConnectWait, Map<String, Value>> {
        let mut reply = reply_skeleton(message);
        let client_id = message.get("clientId");
        let client = client_id
            .and_then(Value::as_str)
            .and_then(|id| self.client(id));
        if client.is_none() {
            set_error(&mut reply, error::client_unknown(client_id));
        }
        if !truthy(client_id) {
            set_error(&mut reply, error::parameter_missing("clientId"));
        }
        let conn_type = message.get("connectionType");
        let known = conn_type
            .and_then(Value::as_str)
            .is_some_and(|t| CONNECTION_TYPES.contains(&t));
        if !known {
            set_error(&mut reply, error::conntype_mismatch(conn_type));
        }
        if !truthy(conn_type) {
            set_error(&mut reply, error::parameter_missing("connectionType"));
        }
        let eventsource = conn_type.and_then(Value::as_str) == Some("eventsource");
        let client = match client {
            Some(c) if !reply.contains_key("error") => c,
            _ => {
                reply.remove("clientId");
                finish(&mut reply);
                reply.insert("advice".to_owned(), advice(self, false, eventsource));
                return Err(reply);
            }
        };
        // The reply is rebuilt when the connect is answered: a held connect then
        // costs a few words instead of a map of small allocations.
        let id = reply.remove("id");

        let expires_at = self.ping(&client);
        let hold = if eventsource {
            Duration::ZERO
        } else {
            requested_hold(message).unwrap_or(self.settings().timeout)
        };
        let deadline = (Instant::now() + hold).min(expires_at);
        let mode = match ctx.stream.as_deref_mut() {
            Some(slot) => {
                slot.bind(&client);
                let generation = slot.bound.as_ref().map(|(_, g)| *g).unwrap_or_default();
                Mode::Stream(generation)
            }
            None if eventsource => Mode::Immediate,
            // A stream (EventSource, WebSocket) already delivers for this client:
            // a long-poll beside it is only a heartbeat and must not take the
            // stream's place. The Faye browser client sends exactly this while
            // its EventSource opens.
            None if client.has_stream_owner() => Mode::Heartbeat,
            None => {
                let waiter = Waiter::new(Arc::new(Notify::new()));
                client.take_ownership(waiter.clone(), false);
                Mode::Poll(waiter)
            }
        };
        Ok(ConnectWait {
            engine: self.clone(),
            client,
            id,
            eventsource,
            deadline,
            mode,
        })
    }

    fn subscription(&self, message: &Map<String, Value>, subscribe: bool) -> Map<String, Value> {
        let mut reply = reply_skeleton(message);
        let client_id = message.get("clientId");
        let client = client_id
            .and_then(Value::as_str)
            .and_then(|id| self.client(id));
        if client.is_none() {
            set_error(&mut reply, error::client_unknown(client_id));
        }
        if !truthy(client_id) {
            set_error(&mut reply, error::parameter_missing("clientId"));
        }
        let subscription = message.get("subscription");
        if !truthy(subscription) {
            set_error(&mut reply, error::parameter_missing("subscription"));
        }
        reply.insert(
            "subscription".to_owned(),
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
        let bounds = self.settings().channel_bounds();
        for item in list {
            if reply.contains_key("error") {
                break;
            }
            let name = item.as_str().unwrap_or("");
            let admitted = bounds.admits(name);
            if admitted && !channel::is_subscribable(name) {
                set_error(&mut reply, error::channel_forbidden(Some(item)));
            }
            if !admitted || !channel::is_valid(name) {
                set_error(&mut reply, error::channel_invalid(Some(item)));
            }
            if reply.contains_key("error") {
                break;
            }
            if let Some(client) = &client {
                if subscribe {
                    match self.subscribe(client, name) {
                        Ok(_) => {}
                        Err(Full::Client) => {
                            set_error(&mut reply, format!("403:{name}:Too many subscriptions"))
                        }
                        Err(Full::Route) => {
                            set_error(&mut reply, format!("503:{name}:Server at capacity"))
                        }
                    }
                } else {
                    self.unsubscribe(client, name);
                }
            }
        }
        finish(&mut reply);
        reply
    }

    fn disconnect(&self, message: &Map<String, Value>) -> Map<String, Value> {
        let mut reply = reply_skeleton(message);
        let client_id = message.get("clientId");
        let client = client_id
            .and_then(Value::as_str)
            .and_then(|id| self.client(id));
        if client.is_none() {
            set_error(&mut reply, error::client_unknown(client_id));
        }
        if !truthy(client_id) {
            set_error(&mut reply, error::parameter_missing("clientId"));
        }
        if finish(&mut reply) {
            if let Some(client) = client {
                self.destroy(&client);
                self.count_disconnect();
            }
        } else {
            reply.remove("clientId");
        }
        reply
    }

    fn publish_message(
        &self,
        mut message: Map<String, Value>,
        credentials: &Credentials<'_>,
    ) -> Map<String, Value> {
        let mut reply = reply_skeleton(&message);
        let name = str_field(&message, "channel").map(str::to_owned);
        let bounds = self.settings().channel_bounds();
        let valid = name
            .as_deref()
            .is_some_and(|n| bounds.admits(n) && channel::is_name(n));
        if !valid {
            set_error(&mut reply, error::channel_invalid(message.get("channel")));
        }
        if !message.contains_key("data") {
            set_error(&mut reply, error::parameter_missing("data"));
        }
        // The policy also strips credentials from the message, refused or not.
        let verdict = self.settings().publish.check(&mut message, credentials);
        if let (false, Err(denied)) = (reply.contains_key("error"), verdict) {
            set_error(&mut reply, denied.0);
        }
        if finish(&mut reply) {
            if let Some(name) = name {
                message.remove("clientId");
                self.publish(&name, &message);
            }
        }
        reply
    }
}
