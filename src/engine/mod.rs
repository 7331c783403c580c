//! One isolated publish/subscribe engine per route.
//!
//! An [`Engine`] is a cheap-clone handle to everything one environment owns: its
//! client table, subscription index, mailboxes, tunables and counters. Nothing
//! is shared between engines, so a client id from one route is unknown to every
//! other and a message never crosses routes. Tunables sit behind an `ArcSwap` so a
//! reload can retune a live engine without touching its clients.
//!
//! Session lifetime follows Faye's memory engine: a client's clock is reset at
//! handshake and at the start of each `/meta/connect`, and the client is
//! destroyed `2 × timeout` after the last reset. Expiry is checked whenever a
//! client is looked up (so it is exact) and by a sweeper task (so memory is
//! reclaimed even for clients nobody asks about).

mod client;
mod peers;
mod process;
mod subscriptions;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::time::Instant;

pub use crate::auth::{PublishPolicy, Secret};
pub use crate::config::EngineSettings;
pub use client::{Client, StreamDrain, Waiter};
pub use peers::{PeerKey, PeerLimits, Refusal};
pub use process::{advise_retry_after, ConnectWait, Ctx, Item, Outcome, StreamSlot};

use crate::bayeux::{channel, client_id};
use client::QueueLimits;
use peers::Peers;
use subscriptions::Index;

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
}

/// Why a handshake did not create a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Refused {
    /// The route is at `max_clients`, or retired.
    Capacity,
    /// The client's address is over one of its limits.
    Peer(Refusal),
}

/// Which bound a refused subscription hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The client's `max_subscriptions`.
    Client,
    /// The route's `max_total_subscriptions`.
    Route,
}

const CLIENT_SHARDS: usize = 32;

type ClientShard = Mutex<HashMap<Arc<str>, Arc<Client>>>;

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    settings: ArcSwap<EngineSettings>,
    hasher: RandomState,
    clients: Box<[ClientShard]>,
    client_count: AtomicUsize,
    next_serial: AtomicU64,
    index: Index,
    peers: Peers,
    counters: Counters,
    retired: AtomicBool,
}

/// Handle to one route's engine. Cloning is cheap (one `Arc`).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// A new, empty engine. `name` labels logs and metrics (the route prefix).
    pub fn new(name: &str, settings: EngineSettings) -> Self {
        Engine {
            inner: Arc::new(Inner {
                name: Arc::from(name),
                settings: ArcSwap::from_pointee(settings),
                hasher: RandomState::new(),
                clients: (0..CLIENT_SHARDS)
                    .map(|_| Mutex::new(HashMap::new()))
                    .collect(),
                client_count: AtomicUsize::new(0),
                next_serial: AtomicU64::new(1),
                index: Index::new(),
                peers: Peers::new(),
                counters: Counters::default(),
                retired: AtomicBool::new(false),
            }),
        }
    }

    /// The name given at creation (the route prefix).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current tunables.
    pub fn settings(&self) -> Arc<EngineSettings> {
        self.inner.settings.load_full()
    }

    /// Replaces the tunables in place; clients, subscriptions and queues stay.
    pub fn retune(&self, settings: EngineSettings) {
        self.inner.settings.store(Arc::new(settings));
    }

    /// True when both handles point at the same engine.
    pub fn same(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Starts the background sweeper that destroys expired sessions. It stops by
    /// itself when the engine is dropped or retired.
    pub fn spawn_sweeper(&self) {
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
        let mut expired = Vec::new();
        for shard in self.inner.clients.iter() {
            let shard = shard.lock();
            for client in shard.values() {
                if client.state.lock().expires_at <= now {
                    expired.push(client.clone());
                }
            }
        }
        for client in &expired {
            self.destroy(client);
            self.inner.counters.expired.fetch_add(1, Ordering::Relaxed);
        }
        self.inner
            .peers
            .prune(&self.inner.settings.load().peer_limits());
        expired.len()
    }

    /// Ends every session (their held connects are answered and streams told)
    /// and marks the engine retired. Used when a route is removed or replaced.
    pub fn retire(&self) {
        self.inner.retired.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for shard in self.inner.clients.iter() {
            all.extend(shard.lock().values().cloned());
        }
        for client in &all {
            self.destroy(client);
        }
    }

    /// True once [`Engine::retire`] ran.
    pub fn is_retired(&self) -> bool {
        self.inner.retired.load(Ordering::SeqCst)
    }

    /// Gauges and counters right now.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            clients: self.inner.client_count.load(Ordering::Relaxed) as u64,
            subscriptions: self.inner.index.len() as u64,
            handshakes: c.handshakes.load(Ordering::Relaxed),
            handshakes_refused: c.handshakes_refused.load(Ordering::Relaxed),
            subscriptions_refused: c.subscriptions_refused.load(Ordering::Relaxed),
            batches_refused: c.batches_refused.load(Ordering::Relaxed),
            peers: self.inner.peers.len() as u64,
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            overflows: c.overflows.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            disconnected: c.disconnected.load(Ordering::Relaxed),
            connections: std::array::from_fn(|i| c.connections[i].load(Ordering::Relaxed)),
        }
    }

    fn shard(&self, id: &str) -> &ClientShard {
        let h = self.inner.hasher.hash_one(id) as usize;
        &self.inner.clients[h % CLIENT_SHARDS]
    }

    /// Creates a session for a client at `peer` (when known), or says why not.
    /// A new session must connect within `first_connect_timeout`.
    pub(crate) fn create_client(&self, peer: Option<IpAddr>) -> Result<Arc<Client>, Refused> {
        let settings = self.inner.settings.load();
        if self.is_retired()
            || self.inner.client_count.load(Ordering::Relaxed) >= settings.max_clients
        {
            return Err(Refused::Capacity);
        }
        let peer = peer.map(PeerKey::of);
        if let Some(key) = peer {
            self.inner
                .peers
                .admit(key, &settings.peer_limits())
                .map_err(Refused::Peer)?;
        }
        let wait = settings
            .first_connect_timeout
            .min(settings.session_lifetime());
        let expires_at = Instant::now() + wait;
        loop {
            let id: Arc<str> = Arc::from(client_id::generate());
            let mut shard = self.shard(&id).lock();
            if shard.contains_key(&id) {
                continue;
            }
            let serial = self.inner.next_serial.fetch_add(1, Ordering::Relaxed);
            let client = Arc::new(Client::new(id.clone(), serial, peer, expires_at));
            shard.insert(id, client.clone());
            self.inner.client_count.fetch_add(1, Ordering::Relaxed);
            self.inner
                .counters
                .handshakes
                .fetch_add(1, Ordering::Relaxed);
            return Ok(client);
        }
    }

    /// The live session with this id. An expired session is destroyed here, so
    /// expiry is exact even between sweeps.
    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        let client = self.shard(id).lock().get(id).cloned()?;
        let expired = {
            let st = client.state.lock();
            if !st.alive {
                return None;
            }
            st.expires_at <= Instant::now()
        };
        if expired {
            self.destroy(&client);
            self.inner.counters.expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(client)
    }

    /// Resets the session clock (handshake and start of each connect).
    pub(crate) fn ping(&self, client: &Client) -> Instant {
        let lifetime = self.inner.settings.load().session_lifetime();
        let mut st = client.state.lock();
        st.expires_at = Instant::now() + lifetime;
        st.expires_at
    }

    /// Destroys the session if its lifetime has passed; true if it is gone.
    pub(crate) fn expire_if_due(&self, client: &Arc<Client>) -> bool {
        let due = {
            let st = client.state.lock();
            !st.alive || st.expires_at <= Instant::now()
        };
        if due && client.is_alive() {
            self.destroy(client);
            self.inner.counters.expired.fetch_add(1, Ordering::Relaxed);
        }
        due
    }

    /// Removes a session: subscriptions, queue and id; wakes its owner.
    pub(crate) fn destroy(&self, client: &Arc<Client>) {
        let (subs, owner) = {
            let mut st = client.state.lock();
            if !st.alive {
                return;
            }
            st.alive = false;
            st.queue.clear();
            st.queued_bytes = 0;
            (
                std::mem::take(&mut st.subscriptions),
                std::mem::take(&mut st.owner),
            )
        };
        for key in &subs {
            self.inner.index.remove(key, client.serial);
        }
        if self.shard(&client.id).lock().remove(&client.id).is_some() {
            self.inner.client_count.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(key) = client.peer {
            self.inner.peers.release(key);
        }
        if let client::Owner::Poll(w) | client::Owner::Stream(w) = owner {
            w.notify.notify_one();
        }
    }

    /// Adds a subscription; returns false when the client is gone. Re-subscribing
    /// is a no-op. Refused when the client or the route holds its maximum.
    pub(crate) fn subscribe(&self, client: &Arc<Client>, pattern: &str) -> Result<bool, Full> {
        let settings = self.inner.settings.load();
        let mut st = client.state.lock();
        if !st.alive {
            return Ok(false);
        }
        if st.subscriptions.contains(pattern) {
            return Ok(true);
        }
        let full = if st.subscriptions.len() >= settings.max_subscriptions {
            Some(Full::Client)
        } else if self.inner.index.len() >= settings.max_total_subscriptions {
            // Checked without a lock: concurrent subscribes may pass it together,
            // so the bound can be exceeded by at most the number of threads.
            Some(Full::Route)
        } else {
            None
        };
        if let Some(full) = full {
            self.inner
                .counters
                .subscriptions_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(full);
        }
        let key: Arc<str> = Arc::from(pattern);
        st.subscriptions.insert(key.clone());
        // Inserted under the client lock so a concurrent destroy cannot leave a stale entry.
        self.inner.index.insert(&key, client);
        Ok(true)
    }

    /// Removes a subscription if present.
    pub(crate) fn unsubscribe(&self, client: &Arc<Client>, pattern: &str) {
        let removed = client.state.lock().subscriptions.remove(pattern);
        if removed {
            self.inner.index.remove(pattern, client.serial);
        }
    }

    /// Routes a published message (already validated, `clientId` removed) to every
    /// subscriber once. The event is serialized a single time; each recipient's
    /// mailbox holds a reference-counted pointer to the same bytes.
    pub(crate) fn publish(&self, channel_name: &str, event: &Map<String, Value>) {
        self.inner
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        // Service channels are request/response with the server: never fanned out
        // to remote subscribers, not even to `/**` (a deliberate deviation from Faye).
        if channel::is_service(channel_name) {
            return;
        }
        let recipients = self.inner.index.collect(channel_name);
        if recipients.is_empty() {
            return;
        }
        let bytes = match serde_json::to_vec(event) {
            Ok(v) => Bytes::from(v),
            Err(_) => return,
        };
        self.deliver(&recipients, &bytes);
    }

    fn deliver(&self, recipients: &[Arc<Client>], bytes: &Bytes) {
        let limits = self.inner.settings.load().queue_limits();
        let (mut delivered, mut dropped, mut overflows) = (0u64, 0u64, 0u64);
        for client in recipients {
            let offered = client.offer(bytes, limits);
            delivered += u64::from(offered.delivered);
            if offered.dropped > 0 {
                dropped += offered.dropped;
                overflows += 1;
            }
            if let Some(count) = offered.report {
                // At most one line per client per period, however many publishes overflow it.
                tracing::warn!(
                    route = %self.inner.name,
                    client_id = %client.id,
                    dropped = count,
                    "client not reading: oldest queued events dropped"
                );
            }
        }
        let c = &self.inner.counters;
        c.delivered.fetch_add(delivered, Ordering::Relaxed);
        if dropped > 0 {
            c.dropped.fetch_add(dropped, Ordering::Relaxed);
            c.overflows.fetch_add(overflows, Ordering::Relaxed);
        }
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

    pub(crate) fn count_refused_handshake(&self) {
        self.inner
            .counters
            .handshakes_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_disconnect(&self) {
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

    fn run(engine: &Engine, body: serde_json::Value, bearer: Option<&str>) -> Vec<Value> {
        let batch = parse_batch(body.to_string().as_bytes(), 1000).unwrap();
        let credentials = crate::auth::Credentials { bearer };
        let out = engine.process(batch, &mut Ctx::http(credentials, None));
        out.items
            .into_iter()
            .map(|i| match i {
                Item::Reply(m) => Value::Object(m),
                Item::Event(b) => serde_json::from_slice(&b).unwrap(),
            })
            .collect()
    }

    fn subscriber(engine: &Engine, channel: &str) -> Arc<Client> {
        let hs = run(
            engine,
            json!({"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}),
            None,
        );
        let id = hs[0]["clientId"].as_str().unwrap().to_owned();
        run(
            engine,
            json!({"channel": "/meta/subscribe", "clientId": id, "subscription": channel}),
            None,
        );
        engine.client(&id).unwrap()
    }

    #[tokio::test]
    async fn the_publish_policy_is_consulted_and_the_secret_never_delivered() {
        let settings = EngineSettings {
            publish: PublishPolicy::Secret(Secret::new("s3cret")),
            ..EngineSettings::default()
        };
        let engine = Engine::new("/t", settings);
        let sub = subscriber(&engine, "/a");
        let r = run(&engine, json!({"channel": "/a", "data": 1}), None);
        assert_eq!(r[0]["error"], "403::Authentication required");
        let r = run(
            &engine,
            json!({"channel": "/a", "data": 2, "ext": {"secret": "s3cret", "keep": 1}}),
            None,
        );
        assert_eq!(r[0]["successful"], true);
        let r = run(&engine, json!({"channel": "/a", "data": 3}), Some("s3cret"));
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
        let settings = EngineSettings {
            publish: PublishPolicy::Deny,
            ..EngineSettings::default()
        };
        let engine = Engine::new("/t", settings);
        let r = run(
            &engine,
            json!({"channel": "/a", "data": 1}),
            Some("anything"),
        );
        assert_eq!(r[0]["error"], "403:/a:Forbidden channel");
    }
}
