//! What the transports get back from the engine: reply items, held connects,
//! and the delivery binding of a stream.
//!
//! A `/meta/connect` is answered later than the rest of its batch: as a
//! [`ConnectWait`] a long-poll awaits, or as one a stream (WebSocket) holds
//! while its events are pushed through a [`StreamSlot`]. Either way the connect
//! reply is built when it is answered, by the engine, with the advice that is
//! right at that moment (`retry` with a spread-out interval while the server
//! drains, `handshake` once the route is retired), so transports write replies
//! without editing them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::session::{PollState, Session, StreamDrain, Waiter};
use super::Engine;
use crate::bayeux::meta;

/// Grace period after a held long-poll is woken, so events published in the
/// same instant (Faye uses a zero-delay timer) ride in one reply.
const COALESCE: Duration = Duration::from_millis(1);

/// One element of a reply array.
#[derive(Debug, Clone)]
pub enum Item {
    /// A reply built by the engine.
    Reply(Map<String, Value>),
    /// A delivered event, serialized once at publish time and shared by every
    /// recipient: one JSON object, written verbatim.
    Event(Bytes),
    /// Replies already encoded (a transport that holds them for a while keeps
    /// bytes, not maps): comma-separated array elements, written verbatim.
    Encoded(Bytes),
}

/// Everything one request produced right away, plus the connects still to finish.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Replies ready now, in completion order.
    pub items: Vec<Item>,
    /// `/meta/connect` messages that complete later (held or not), in request order.
    pub connects: Vec<ConnectWait>,
}

/// The delivery binding of one WebSocket or EventSource stream: which session
/// it serves, and the wake-up it registered with that session.
#[derive(Debug)]
pub struct StreamSlot {
    notify: Arc<Notify>,
    bound: Option<(Arc<Session>, u64)>,
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

    /// Woken whenever the bound session has events, is superseded, or goes away.
    pub fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }

    /// The session this stream delivers for, if any.
    pub fn bound(&self) -> Option<&Arc<Session>> {
        self.bound.as_ref().map(|(c, _)| c)
    }

    /// Makes this stream the delivery owner of `session` (a no-op if it already
    /// is); the generation it owns with, or `None` when the session ended.
    pub fn bind(&mut self, session: &Arc<Session>) -> Option<u64> {
        if let Some((current, generation)) = &self.bound {
            if Arc::ptr_eq(current, session) && current.owns(*generation) {
                return Some(*generation);
            }
        }
        self.unbind();
        let waiter = Waiter::new(self.notify.clone());
        let generation = waiter.generation();
        if session.take_ownership(waiter, true) {
            self.bound = Some((session.clone(), generation));
            Some(generation)
        } else {
            None
        }
    }

    /// Takes the events ready for the bound session. Unbinds when the session
    /// went away or another connect took over.
    pub fn drain(&mut self) -> Vec<Bytes> {
        let Some((session, generation)) = &self.bound else {
            return Vec::new();
        };
        match session.drain_stream(*generation) {
            StreamDrain::Events(events) => events,
            StreamDrain::Superseded | StreamDrain::Gone => {
                self.bound = None;
                Vec::new()
            }
        }
    }

    /// Gives delivery back (socket closed): later events queue for the next connect.
    pub fn unbind(&mut self) {
        if let Some((session, generation)) = self.bound.take() {
            session.release(generation);
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.unbind();
    }
}

/// How a held connect waits.
#[derive(Debug)]
pub(super) enum Mode {
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
    pub(super) engine: Engine,
    pub(super) session: Arc<Session>,
    /// The request's `id`, echoed when truthy.
    pub(super) id: Option<Value>,
    /// The request asked for `connectionType: "eventsource"` (advice differs).
    pub(super) eventsource: bool,
    pub(super) deadline: Instant,
    pub(super) mode: Mode,
}

impl ConnectWait {
    /// When the connect is answered at the latest.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The session it belongs to.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Answers the connect as soon as it should be: at once when events are
    /// queued, when woken by a publish (after a short coalescing pause), when
    /// superseded by a newer connect, when the session goes away, when the
    /// server starts draining, or at the deadline. If this future is dropped
    /// first (the HTTP connection closed), queued events stay in the mailbox
    /// for the next connect.
    pub async fn wait(mut self) -> Vec<Item> {
        let items = self.wait_inner().await;
        // A shared store learns what this answer hands out before it leaves,
        // so the client's next connect resumes right after it on any node.
        if items.len() > 1 && self.engine.is_shared() {
            self.engine.checkpoint(&self.session).await;
        }
        items
    }

    async fn wait_inner(&mut self) -> Vec<Item> {
        let drain = self.engine.inner.drain.clone();
        let stop = drain.draining();
        tokio::pin!(stop);
        let waiter = match &self.mode {
            Mode::Poll(w) => w.clone(),
            Mode::Immediate => {
                let events = self.session.drain_unowned();
                return self.answer(events);
            }
            Mode::Stream(_) | Mode::Heartbeat => {
                tokio::select! {
                    _ = tokio::time::sleep_until(self.deadline) => {}
                    _ = &mut stop => {}
                }
                self.engine.expire_if_due(&self.session);
                return self.answer(Vec::new());
            }
        };
        loop {
            let notified = waiter.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.session.poll(waiter.generation()) {
                PollState::Gone | PollState::Superseded => return self.answer(Vec::new()),
                PollState::Ready(events) => return self.answer(events),
                PollState::Empty => {}
            }
            if Instant::now() >= self.deadline {
                self.session.release(waiter.generation());
                if self.engine.expire_if_due(&self.session) {
                    return self.answer(Vec::new());
                }
                let events = self.session.drain_unowned();
                return self.answer(events);
            }
            tokio::select! {
                _ = &mut notified => tokio::time::sleep(COALESCE).await,
                _ = tokio::time::sleep_until(self.deadline) => {}
                _ = &mut stop => {
                    self.session.release(waiter.generation());
                    let events = self.session.drain_unowned();
                    return self.answer(events);
                }
            }
        }
    }

    /// For a stream connect: true once it should be answered (deadline reached,
    /// session gone, or the stream no longer owns delivery).
    pub fn stream_due(&self, now: Instant) -> bool {
        match &self.mode {
            Mode::Stream(generation) => now >= self.deadline || !self.session.owns(*generation),
            _ => true,
        }
    }

    /// Answers a stream connect (the events themselves went over the stream).
    pub fn finish_stream(mut self) -> Vec<Item> {
        if Instant::now() >= self.deadline {
            self.engine.expire_if_due(&self.session);
        }
        self.answer(Vec::new())
    }

    fn answer(&mut self, events: Vec<Bytes>) -> Vec<Item> {
        let mut items = Vec::with_capacity(1 + events.len());
        let mut reply = Map::new();
        if let Some(id) = self.id.take() {
            reply.insert("id".to_owned(), id);
        }
        if self.session.ended_by_token() {
            // The token's time is up: the client must handshake with a fresh one.
            reply.insert("channel".to_owned(), json!(meta::CONNECT));
            reply.insert("successful".to_owned(), Value::Bool(false));
            reply.insert("error".to_owned(), json!(super::meta::TOKEN_EXPIRED));
            reply.insert("advice".to_owned(), json!({"reconnect": "handshake"}));
            if let Mode::Poll(w) = &self.mode {
                self.session.release(w.generation());
            }
            self.mode = Mode::Immediate;
            return vec![Item::Reply(reply)];
        }
        reply.insert("clientId".to_owned(), json!(self.session.id()));
        reply.insert("channel".to_owned(), json!(meta::CONNECT));
        reply.insert("successful".to_owned(), Value::Bool(true));
        reply.insert(
            "advice".to_owned(),
            self.engine.connect_advice(self.eventsource),
        );
        items.push(Item::Reply(reply));
        items.extend(events.into_iter().map(Item::Event));
        if let Mode::Poll(w) = &self.mode {
            self.session.release(w.generation());
        }
        self.mode = Mode::Immediate;
        items
    }
}

impl Drop for ConnectWait {
    fn drop(&mut self) {
        if let Mode::Poll(w) = &self.mode {
            self.session.release(w.generation());
        }
    }
}
