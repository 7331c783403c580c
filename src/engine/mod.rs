//! One isolated publish/subscribe engine per route.
//!
//! An [`Engine`] is a cheap-clone handle to everything one environment owns: its
//! sessions, subscriptions, mailboxes, tunables and counters. Nothing is shared
//! between engines, so a client id from one route is unknown to every other and
//! a message never crosses routes. Tunables sit behind an `ArcSwap` so a reload
//! can retune a live engine without touching its sessions.
//!
//! # Layout
//!
//! - `meta`: the Bayeux logic, `Engine::process`: handshake, connect,
//!   subscribe, unsubscribe, disconnect, publish.
//! - `delivery`: what transports get back: reply items, held connects
//!   ([`ConnectWait`]) and a stream's delivery binding ([`StreamSlot`]).
//! - `session`: one session's state behind one lock (mailbox, delivery
//!   owner, subscriptions, expiry) and the invariants its methods keep.
//! - `store`: **the storage interface** the logic calls (create, find,
//!   subscribe, unsubscribe, publish, remove). `memory` is the in-process
//!   store; `redis` is the store shared by several processes through Redis
//!   (see its module header for the design). `subscriptions` is the channel
//!   index both use.
//! - `peers`: admission of new sessions per client address.
//! - `tap` and `inspect`: what the operator's console reads: taps on the
//!   publish path (free when none is open), presence, an operator's publish.
//!
//! Session lifetime follows Faye's memory engine: a session's clock is reset at
//! handshake and at the start of each `/meta/connect`, and it is destroyed
//! `2 × timeout` after the last reset (`first_connect_timeout` before its first
//! connect). Expiry is checked whenever a session is looked up (so it is exact)
//! and by a sweeper task (so memory is reclaimed for sessions nobody asks
//! about). The engine holds the process's drain signal, so the connect replies
//! it builds carry drain advice without the transports editing them.

mod delivery;
mod inspect;
mod memory;
mod meta;
mod peers;
mod redis;
mod session;
mod store;
mod subscriptions;
mod tap;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

pub use crate::auth::{PublishPolicy, Secret};
pub use crate::config::{EngineSettings, Storage};
pub use delivery::{ConnectWait, Item, Outcome, StreamSlot};
pub use inspect::OperatorPublishError;
pub use meta::Ctx;
pub use peers::{PeerKey, PeerLimits, Refusal};
pub use session::{Session, StreamDrain, Waiter};
pub use tap::{Tap, TapRefused, MAX_TAPS, TAP_BYTES, TAP_MESSAGES};

use crate::bayeux::channel;
use crate::shutdown::Shutdown;
use peers::Peers;
use session::{Offered, QueueLimits};
use store::Store;
use tap::Taps;

impl EngineSettings {
    /// The per-address admission limits.
    pub fn peer_limits(&self) -> PeerLimits {
        PeerLimits {
            max_sessions: self.max_sessions_per_ip,
            handshake_rate: self.handshake_rate_per_ip,
            handshake_burst: self.handshake_burst_per_ip,
        }
    }

    fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            max_messages: self.max_queue_messages.max(1),
            max_bytes: self.max_queue_bytes.max(1),
        }
    }
}

/// Monotonic counters of one engine, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Successful handshakes.
    pub handshakes: AtomicU64,
    /// Handshakes refused: route at capacity, an address over its limits, or
    /// more than one handshake in a request.
    pub handshakes_refused: AtomicU64,
    /// Subscriptions refused by the per-client or per-route bound.
    pub subscriptions_refused: AtomicU64,
    /// Requests and WebSocket messages refused for holding too many messages.
    pub batches_refused: AtomicU64,
    /// Handshakes and subscriptions refused by the route's subscribe policy.
    pub auth_refused: AtomicU64,
    /// Accepted publishes (from clients and backends).
    pub published: AtomicU64,
    /// Events queued for a recipient.
    pub delivered: AtomicU64,
    /// Events dropped from a full mailbox.
    pub dropped: AtomicU64,
    /// Times an event pushed a mailbox past its bound.
    pub overflows: AtomicU64,
    /// Clients removed by expiry.
    pub expired: AtomicU64,
    /// Clients removed by `/meta/disconnect`.
    pub disconnected: AtomicU64,
    /// Open connections by transport, indexed by [`Transport`].
    pub connections: [AtomicI64; 4],
}

/// Transports counted in the per-route connection gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket sessions.
    WebSocket = 0,
    /// EventSource streams.
    EventSource = 1,
    /// Held long-polls (POST JSON or form).
    LongPolling = 2,
    /// Held JSONP polls.
    CallbackPolling = 3,
}

impl Transport {
    /// Every transport, in gauge order.
    pub const ALL: [Transport; 4] = [
        Transport::WebSocket,
        Transport::EventSource,
        Transport::LongPolling,
        Transport::CallbackPolling,
    ];

    /// The Bayeux connection type name.
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::EventSource => "eventsource",
            Transport::LongPolling => "long-polling",
            Transport::CallbackPolling => "callback-polling",
        }
    }

    /// The transport of a `/meta/connect` with this `connectionType`, arriving
    /// on a stream (WebSocket) or not.
    pub fn of_connect(connection_type: Option<&str>, on_stream: bool) -> Transport {
        match connection_type {
            _ if on_stream => Transport::WebSocket,
            Some("eventsource") => Transport::EventSource,
            Some("callback-polling") => Transport::CallbackPolling,
            _ => Transport::LongPolling,
        }
    }
}

/// Counts one open connection for as long as it lives.
#[derive(Debug)]
pub struct ConnectionGauge {
    engine: Engine,
    transport: Transport,
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.engine.inner.counters.connections[self.transport as usize]
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot of an engine's gauges and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live sessions.
    pub clients: u64,
    /// (channel, client) subscription pairs.
    pub subscriptions: u64,
    /// Successful handshakes.
    pub handshakes: u64,
    /// Refused handshakes.
    pub handshakes_refused: u64,
    /// Refused subscriptions.
    pub subscriptions_refused: u64,
    /// Refused oversized batches.
    pub batches_refused: u64,
    /// Handshakes and subscriptions the subscribe policy refused.
    pub auth_refused: u64,
    /// Client addresses tracked for admission.
    pub peers: u64,
    /// Accepted publishes.
    pub published: u64,
    /// Events queued for recipients.
    pub delivered: u64,
    /// Events dropped by mailbox overflow.
    pub dropped: u64,
    /// Overflow occurrences.
    pub overflows: u64,
    /// Sessions expired.
    pub expired: u64,
    /// Sessions ended by disconnect.
    pub disconnected: u64,
    /// Open connections by transport, in [`Transport::ALL`] order.
    pub connections: [i64; 4],
    /// Redis routes: whether Redis is reachable and the log read, Redis
    /// failures, and replays that found the log no longer covered a client.
    pub redis: Option<RedisStats>,
}

/// The Redis figures of a route (see [`Stats::redis`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Redis reachable and the route's log being read.
    pub up: bool,
    /// Failed Redis commands and connection attempts.
    pub errors: u64,
    /// Clients resumed from a position the log no longer held.
    pub replay_gaps: u64,
}

/// Why a handshake did not create a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Refused {
    /// The route is at `max_clients`, or retired.
    Capacity,
    /// The client's address is over one of its limits.
    Peer(Refusal),
    /// The shared store could not record the session (Redis unreachable).
    Unavailable,
}

/// Offers counted locally before they reach the shared counters.
#[derive(Debug, Default)]
struct Tally {
    delivered: u64,
    dropped: u64,
    overflows: u64,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    settings: Arc<ArcSwap<EngineSettings>>,
    store: Store,
    peers: Peers,
    counters: Counters,
    retired: AtomicBool,
    drain: Shutdown,
    taps: Taps,
}

/// Handle to one route's engine. Cloning is cheap (one `Arc`).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// A new, empty engine. `name` labels logs and metrics (the route prefix);
    /// `drain` is the process's drain signal.
    pub fn new(name: &str, settings: EngineSettings, drain: Shutdown) -> Self {
        Self::build(
            name,
            Arc::new(ArcSwap::from_pointee(settings)),
            Store::memory(),
            drain,
        )
    }

    /// A new, empty engine keeping its sessions in `storage` (nothing is
    /// connected until [`Engine::spawn_sweeper`]). Fails only for a Redis URL
    /// the client cannot use.
    pub fn with_storage(
        name: &str,
        settings: EngineSettings,
        storage: &Storage,
        drain: Shutdown,
    ) -> Result<Self, String> {
        let settings = Arc::new(ArcSwap::from_pointee(settings));
        let store = Store::new(storage, &settings)?;
        Ok(Self::build(name, settings, store, drain))
    }

    fn build(
        name: &str,
        settings: Arc<ArcSwap<EngineSettings>>,
        store: Store,
        drain: Shutdown,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                name: Arc::from(name),
                settings,
                store,
                peers: Peers::new(),
                counters: Counters::default(),
                retired: AtomicBool::new(false),
                drain,
                taps: Taps::default(),
            }),
        }
    }

    /// Where the engine keeps its sessions.
    pub fn storage(&self) -> Storage {
        self.inner.store.storage()
    }

    /// The name given at creation (the route prefix).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current tunables.
    pub fn settings(&self) -> Arc<EngineSettings> {
        self.inner.settings.load_full()
    }

    /// Replaces the tunables in place; sessions, subscriptions and queues stay.
    pub fn retune(&self, settings: EngineSettings) {
        self.inner.settings.store(Arc::new(settings));
    }

    /// True when both handles point at the same engine.
    pub fn same(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Starts the background sweeper that destroys expired sessions (and, for
    /// a Redis route, the log reader and the Redis maintenance task). They stop
    /// by themselves when the engine is dropped or retired.
    pub fn spawn_sweeper(&self) {
        if self.inner.store.shared().is_some() {
            self.spawn_shared_tasks();
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let period = match weak.upgrade() {
                    Some(inner) => {
                        let t = inner.settings.load().timeout;
                        (t / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
                    }
                    None => return,
                };
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                if engine.is_retired() {
                    return;
                }
                engine.sweep();
            }
        });
    }

    /// Destroys every session whose lifetime has passed. Returns how many.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut expired = 0;
        for session in self.inner.store.sessions() {
            if self.end_if_due(&session, now) {
                expired += 1;
            }
        }
        self.inner
            .peers
            .prune(&self.inner.settings.load().peer_limits());
        expired
    }

    /// Ends every session (their held connects are answered and streams told)
    /// and marks the engine retired. Used when a route is removed or replaced.
    pub fn retire(&self) {
        self.inner.retired.store(true, Ordering::SeqCst);
        for session in self.inner.store.sessions() {
            self.destroy(&session);
        }
        self.inner.taps.close();
    }

    /// True once [`Engine::retire`] ran.
    pub fn is_retired(&self) -> bool {
        self.inner.retired.load(Ordering::SeqCst)
    }

    /// Gauges and counters right now.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            clients: self.inner.store.len() as u64,
            subscriptions: self.inner.store.subscriptions() as u64,
            handshakes: c.handshakes.load(Ordering::Relaxed),
            handshakes_refused: c.handshakes_refused.load(Ordering::Relaxed),
            subscriptions_refused: c.subscriptions_refused.load(Ordering::Relaxed),
            batches_refused: c.batches_refused.load(Ordering::Relaxed),
            auth_refused: c.auth_refused.load(Ordering::Relaxed),
            peers: self.inner.peers.len() as u64,
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            overflows: c.overflows.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            disconnected: c.disconnected.load(Ordering::Relaxed),
            connections: std::array::from_fn(|i| c.connections[i].load(Ordering::Relaxed)),
            redis: self.inner.store.shared().map(|r| {
                let (up, errors, replay_gaps) = r.figures();
                RedisStats {
                    up,
                    errors,
                    replay_gaps,
                }
            }),
        }
    }

    /// Creates a session for a client at `peer` (when known), or says why not.
    /// A new session must connect within `first_connect_timeout`.
    async fn create_session(&self, peer: Option<IpAddr>) -> Result<Arc<Session>, Refused> {
        let settings = self.inner.settings.load();
        if self.is_retired() || self.inner.store.len() >= settings.max_clients {
            return Err(Refused::Capacity);
        }
        let key = peer.map(PeerKey::of);
        if let Some(key) = key {
            self.inner
                .peers
                .admit(key, &settings.peer_limits())
                .map_err(Refused::Peer)?;
        }
        let wait = settings
            .first_connect_timeout
            .min(settings.session_lifetime());
        let created = self.inner.store.create(key, Instant::now() + wait).await;
        let session = match created {
            Ok(session) => session,
            Err(_) => {
                if let Some(key) = key {
                    self.inner.peers.release(key);
                }
                return Err(Refused::Unavailable);
            }
        };
        if let Some(ip) = peer {
            session.set_client_addr(ip);
        }
        self.inner
            .counters
            .handshakes
            .fetch_add(1, Ordering::Relaxed);
        Ok(session)
    }

    /// The live session with this id. An expired session is destroyed here, so
    /// expiry is exact even between sweeps.
    pub async fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.lookup(id).await.ok().flatten()
    }

    /// As [`Engine::session`], but says when a shared store could not be asked
    /// about a session this process does not hold.
    pub(crate) async fn lookup(&self, id: &str) -> Result<Option<Arc<Session>>, store::Failure> {
        if let Some(session) = self.inner.store.find(id) {
            if !self.expire_if_due(&session) {
                return Ok(Some(session));
            }
        }
        match self.inner.store.shared() {
            None => Ok(None),
            Some(shared) => self.load_shared(shared, id).await,
        }
    }

    /// Destroys the session if it ended, its lifetime passed or its token ran
    /// out; true if it is gone.
    pub(crate) fn expire_if_due(&self, session: &Arc<Session>) -> bool {
        self.end_if_due(session, Instant::now())
    }

    fn end_if_due(&self, session: &Arc<Session>, now: Instant) -> bool {
        let Some(due) = session.due(now) else {
            return false;
        };
        if session.is_alive() {
            if due == session::Due::Token {
                session.note_token_expired();
            }
            self.destroy(session);
            self.inner.counters.expired.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Ends a session: subscriptions, queue and id go; its delivery owner is woken.
    pub(crate) fn destroy(&self, session: &Arc<Session>) {
        let Some(ended) = session.end() else {
            return;
        };
        self.inner.store.remove(session, &ended.subscriptions);
        if let Some(key) = session.peer() {
            self.inner.peers.release(key);
        }
        if let Some(owner) = ended.owner {
            owner.notify_one();
        }
    }

    /// Routes a published message (already validated, `clientId` removed) to every
    /// subscriber once. The event is serialized a single time; each recipient's
    /// mailbox holds a reference-counted pointer to the same bytes, and so does
    /// any tap watching the channel. Returns how many sessions it was queued for
    /// here (none for a shared store, whose log reader delivers and feeds taps).
    /// An error means the event was not published (a shared store could not
    /// append it) and must be reported to the publisher.
    pub(crate) async fn publish(
        &self,
        channel_name: &str,
        event: &Map<String, Value>,
    ) -> Result<usize, store::Failure> {
        // Service channels are request/response with the server: never fanned out
        // to remote subscribers, not even to `/**` (a deliberate deviation from Faye).
        if channel::is_service(channel_name) {
            self.count_published();
            return Ok(0);
        }
        let bytes = match serde_json::to_vec(event) {
            Ok(v) => Bytes::from(v),
            Err(_) => return Ok(0),
        };
        let recipients = self.inner.store.publish(channel_name, &bytes).await?;
        self.count_published();
        if !recipients.is_empty() {
            self.deliver(&recipients, &bytes);
        }
        if self.inner.store.shared().is_none() {
            self.inner.taps.offer(channel_name, &bytes);
        }
        Ok(recipients.len())
    }

    fn count_published(&self) {
        self.inner
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
    }

    fn deliver(&self, recipients: &[Arc<Session>], bytes: &Bytes) {
        let limits = self.inner.settings.load().queue_limits();
        let mut tally = Tally::default();
        for session in recipients {
            self.note(&mut tally, session, session.offer(bytes, limits));
        }
        self.settle(tally);
    }

    /// Adds one offer to `tally`, warns about a client not reading, and ends
    /// a session whose token ran out.
    fn note(&self, tally: &mut Tally, session: &Arc<Session>, offered: Offered) {
        if offered.token_expired {
            self.end_if_due(session, Instant::now());
        }
        tally.delivered += u64::from(offered.delivered);
        if offered.dropped > 0 {
            tally.dropped += offered.dropped;
            tally.overflows += 1;
        }
        if let Some(count) = offered.report {
            // At most one line per session per period, however many publishes overflow it.
            tracing::warn!(
                route = %self.inner.name,
                client_id = %session.id(),
                dropped = count,
                "client not reading: oldest queued events dropped"
            );
        }
    }

    /// Adds a tally of offers to the counters.
    fn settle(&self, tally: Tally) {
        let c = &self.inner.counters;
        c.delivered.fetch_add(tally.delivered, Ordering::Relaxed);
        if tally.dropped > 0 {
            c.dropped.fetch_add(tally.dropped, Ordering::Relaxed);
            c.overflows.fetch_add(tally.overflows, Ordering::Relaxed);
        }
    }

    /// The advice of a handshake or connect reply: `handshake` after a failure,
    /// else `retry` with the route's interval and timeout (for EventSource the
    /// interval carries the timeout, as Faye sends it).
    fn advice(&self, ok: bool, eventsource: bool) -> Value {
        if !ok {
            return json!({"reconnect": "handshake"});
        }
        let s = self.settings();
        let timeout = s.timeout.as_millis() as u64;
        if eventsource {
            json!({"reconnect": "retry", "interval": timeout, "timeout": 0})
        } else {
            json!({"reconnect": "retry", "interval": s.interval.as_millis() as u64, "timeout": timeout})
        }
    }

    /// The advice of a connect being answered now: as [`Engine::advice`], but
    /// `handshake` once the route is retired, and while the server drains a
    /// `retry` after a spread-out interval, so clients come back to another
    /// instance over time instead of all at once.
    fn connect_advice(&self, eventsource: bool) -> Value {
        if self.is_retired() {
            return json!({"reconnect": "handshake"});
        }
        let mut advice = self.advice(true, eventsource);
        if self.inner.drain.is_draining() {
            advice["interval"] = json!(self.inner.drain.drain_jitter().as_millis() as u64);
        }
        advice
    }

    /// Counts an open connection of `transport` until the guard is dropped.
    pub fn gauge(&self, transport: Transport) -> ConnectionGauge {
        self.inner.counters.connections[transport as usize].fetch_add(1, Ordering::Relaxed);
        ConnectionGauge {
            engine: self.clone(),
            transport,
        }
    }

    /// Counts a request or WebSocket message refused for holding too many messages.
    pub fn count_refused_batch(&self) {
        self.inner
            .counters
            .batches_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    fn count_refused_handshake(&self) {
        self.inner
            .counters
            .handshakes_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    fn count_refused_subscription(&self) {
        self.inner
            .counters
            .subscriptions_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    fn count_refused_auth(&self) {
        self.inner
            .counters
            .auth_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    fn count_disconnect(&self) {
        self.inner
            .counters
            .disconnected
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bayeux::parse_batch;
    use serde_json::json;

    fn engine(settings: EngineSettings) -> Engine {
        Engine::new("/t", settings, Shutdown::default())
    }

    async fn run(engine: &Engine, body: serde_json::Value, bearer: Option<&str>) -> Vec<Value> {
        let batch = parse_batch(body.to_string().as_bytes(), 1000).unwrap();
        let credentials = crate::auth::Credentials {
            bearer,
            forwarded: None,
        };
        let out = engine
            .process(batch, &mut Ctx::http(credentials, None))
            .await;
        out.items
            .into_iter()
            .map(|i| match i {
                Item::Reply(m) => Value::Object(m),
                Item::Event(b) | Item::Encoded(b) => serde_json::from_slice(&b).unwrap(),
            })
            .collect()
    }

    async fn handshake(engine: &Engine) -> Arc<Session> {
        let hs = run(
            engine,
            json!({"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}),
            None,
        )
        .await;
        let id = hs[0]["clientId"].as_str().unwrap().to_owned();
        engine.session(&id).await.unwrap()
    }

    async fn subscriber(engine: &Engine, channel: &str) -> Arc<Session> {
        let session = handshake(engine).await;
        let reply = run(
            engine,
            json!({"channel": "/meta/subscribe", "clientId": session.id(), "subscription": channel}),
            None,
        )
        .await;
        assert_eq!(reply[0]["successful"], true);
        session
    }

    #[tokio::test]
    async fn the_publish_policy_is_consulted_and_the_secret_never_delivered() {
        let engine = engine(EngineSettings {
            publish: PublishPolicy::Secret(Secret::new("s3cret")),
            ..EngineSettings::default()
        });
        let sub = subscriber(&engine, "/a").await;
        let r = run(&engine, json!({"channel": "/a", "data": 1}), None).await;
        assert_eq!(r[0]["error"], "403::Authentication required");
        let r = run(
            &engine,
            json!({"channel": "/a", "data": 2, "ext": {"secret": "s3cret", "keep": 1}}),
            None,
        )
        .await;
        assert_eq!(r[0]["successful"], true);
        let r = run(&engine, json!({"channel": "/a", "data": 3}), Some("s3cret")).await;
        assert_eq!(r[0]["successful"], true);
        let events: Vec<Value> = sub
            .drain_unowned()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        assert_eq!(
            events,
            vec![
                json!({"channel": "/a", "data": 2, "ext": {"keep": 1}}),
                json!({"channel": "/a", "data": 3})
            ]
        );
    }

    #[tokio::test]
    async fn deny_policy_refuses_every_publish() {
        let engine = engine(EngineSettings {
            publish: PublishPolicy::Deny,
            ..EngineSettings::default()
        });
        let r = run(
            &engine,
            json!({"channel": "/a", "data": 1}),
            Some("anything"),
        )
        .await;
        assert_eq!(r[0]["error"], "403:/a:Forbidden channel");
    }
}
