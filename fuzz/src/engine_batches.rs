//! Drives one engine with a sequence of whole batches, the way the transports
//! do, and checks invariants after every step.
//!
//! This file is the `engine_batches` fuzz target's logic and is also compiled
//! into `tests/fuzz_smoke.rs` (by path), so the seeded smoke test in `cargo test`
//! runs exactly what the fuzzer runs. It uses only the library's public API,
//! and everything it asks of the engine goes through [`Session`].
//!
//! # Input
//!
//! Lines (split on `\n`, at most [`MAX_STEPS`]). A line starting with `!` is a
//! directive; any other line is one request body or WebSocket message, in which
//! `$c0` … `$c9` are replaced by the client ids of earlier successful
//! handshakes, in order (a placeholder with no client yet stays as it is).
//!
//! | directive | effect |
//! |---|---|
//! | `!wait MS` | let MS milliseconds pass (virtual time; at most 10 minutes a line) |
//! | `!sweep` | run the expiry sweep |
//! | `!retire` | retire the engine (its route was removed) |
//! | `!retune NAME` | swap the tunables for profile NAME: `tight`, `default`, `secret`, `deny`, `zero` |
//! | `!ws N` | send the following batches on WebSocket N (0-3) |
//! | `!http` | send the following batches as HTTP requests (as at the start) |
//! | `!close N` | close WebSocket N (its client keeps its session) |
//! | `!drop` | drop every unanswered connect (their connections went away) |
//! | `!peer N` | the following requests come from address N (0-5; 0 is unknown) |
//! | `!bearer TOKEN` | the following requests carry `Authorization: Bearer TOKEN` (`!bearer` alone: none) |
//!
//! The engine starts with the `tight` profile, whose small bounds make every
//! refusal reachable within a few lines.
//!
//! # Invariants
//!
//! After each batch: the replies encode as a JSON array; there is one reply
//! per message except accepted connects; every reply states `successful`, is
//! successful exactly when it has no `error`, and echoes a non-empty string
//! `channel` and a truthy `id`; a successful subscribe or unsubscribe echoes
//! `subscription`; a successful handshake returns a client id. After every
//! step: the engine's counters agree with the replies (handshakes, refused
//! handshakes and subscriptions, publishes, disconnects, live clients), and the
//! client and subscription bounds hold. Every answered connect is a successful
//! `/meta/connect` reply followed by at most `max_queue_messages` events, and
//! every event (long-poll or WebSocket) is a JSON object on a channel its
//! client subscribed to, never a meta or service channel, without `clientId`
//! and without `ext.secret`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bayeux_edge::auth::Credentials;
use bayeux_edge::bayeux::{channel, parse_batch, Batch};
use bayeux_edge::engine::{
    ConnectWait, Ctx, Engine, EngineSettings, Item, PublishPolicy, Secret, Stats, StreamSlot,
};
use bytes::Bytes;
use serde_json::{Map, Value};

/// Most lines (batches and directives) one input may hold.
pub const MAX_STEPS: usize = 64;
/// Longest input considered; the rest is ignored.
const MAX_INPUT: usize = 64 << 10;
/// Unanswered connects kept at once; the oldest is dropped beyond this.
const MAX_PENDING: usize = 8;
/// WebSockets one input may have open.
const STREAMS: usize = 4;
/// Longest `!wait`, in milliseconds.
const MAX_WAIT_MS: u64 = 600_000;
/// The secret of the `secret` profile.
const SECRET: &str = "s3cret";
/// Handshake refusals, as the engine words them.
const HANDSHAKE_REFUSALS: [&str; 3] = [
    "503::Server at capacity",
    "429::Too many sessions",
    "429::Too many handshakes",
];

/// Runs one input. Panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    // A paused clock: time moves only with `!wait`, never with the machine.
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    else {
        return;
    };
    let entered = rt.enter();
    let mut h = Harness::new();
    for line in data.split(|b| *b == b'\n').take(MAX_STEPS) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let before = h.session.stats();
        h.expect = Expect::default();
        if let Some(directive) = line.strip_prefix(b"!") {
            h.directive(&rt, directive);
        } else if !line.iter().all(u8::is_ascii_whitespace) {
            h.batch(line);
        }
        h.settle();
        h.check_counters(&before);
    }
    // Unanswered connects hold timers of the runtime: they go first.
    drop(h);
    drop(entered);
}

/// The profiles `!retune` names, `tight` first.
fn profile(name: &[u8]) -> Option<EngineSettings> {
    let tight = EngineSettings {
        timeout: Duration::from_secs(2),
        first_connect_timeout: Duration::from_millis(500),
        max_queue_messages: 3,
        max_queue_bytes: 256,
        max_subscriptions: 3,
        max_total_subscriptions: 5,
        max_clients: 4,
        max_sessions_per_ip: 3,
        handshake_rate_per_ip: 1.0,
        handshake_burst_per_ip: 3.0,
        max_batch_messages: 16,
        max_channel_bytes: 24,
        max_channel_segments: 4,
        ..EngineSettings::default()
    };
    Some(match name {
        b"tight" => tight,
        b"default" => EngineSettings::default(),
        b"secret" => EngineSettings {
            publish: PublishPolicy::Secret(Secret::new(SECRET)),
            ..tight
        },
        b"deny" => EngineSettings {
            publish: PublishPolicy::Deny,
            ..tight
        },
        // Sessions and connects that expire the moment they start.
        b"zero" => EngineSettings {
            timeout: Duration::ZERO,
            first_connect_timeout: Duration::ZERO,
            ..tight
        },
        _ => return None,
    })
}

/// The addresses `!peer` names.
fn peer(n: u8) -> Option<IpAddr> {
    let peers: [Option<IpAddr>; 6] = [
        None,
        Some(IpAddr::from([127, 0, 0, 1])),
        Some(IpAddr::from([127, 0, 0, 2])),
        Some(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1u16])),
        Some(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1u16])),
        // The same /64 as the one before: one address for the limits.
        Some(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2u16])),
    ];
    peers.get(usize::from(n)).copied().flatten()
}

// ---------------------------------------------------------------------------
// The engine, as the transports use it. Nothing outside `Session` names an
// engine item other than `Item`, `Stats` and `EngineSettings`.

/// One engine and the connections the harness holds to it.
struct Session {
    engine: Engine,
    streams: Vec<Option<StreamSlot>>,
    pending: Vec<Pending>,
}

/// A connect still to be answered.
enum Pending {
    /// A long-poll (or a heartbeat beside a stream), awaited as HTTP does.
    Poll(Pin<Box<dyn Future<Output = Vec<Item>>>>),
    /// A connect on a WebSocket, answered once due, as the WebSocket transport does.
    Stream(ConnectWait),
}

/// Where a batch comes from.
struct Via {
    stream: Option<usize>,
    bearer: Option<String>,
    peer: Option<IpAddr>,
}

impl Session {
    fn new(settings: EngineSettings) -> Self {
        Session {
            engine: Engine::new("/fuzz", settings, Default::default()),
            streams: (0..STREAMS).map(|_| None).collect(),
            pending: Vec::new(),
        }
    }

    fn settings(&self) -> EngineSettings {
        (*self.engine.settings()).clone()
    }

    fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Processes one batch: the immediate replies and how many connects were
    /// accepted (they join the unanswered ones).
    fn process(&mut self, batch: Batch, via: &Via) -> (Vec<Item>, usize) {
        let stream = match via.stream {
            Some(n) => Some(self.streams[n].get_or_insert_with(StreamSlot::new)),
            None => None,
        };
        let on_stream = stream.is_some();
        let credentials = Credentials {
            bearer: via.bearer.as_deref(),
            forwarded: None,
        };
        let mut ctx = Ctx::http(credentials, via.peer);
        ctx.stream = stream;
        // The in-memory store never waits: one poll finishes the batch.
        let mut processing = std::pin::pin!(self.engine.process(batch, &mut ctx));
        let mut cx = Context::from_waker(Waker::noop());
        let outcome = match processing.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(outcome) => outcome,
            std::task::Poll::Pending => panic!("processing a batch on the in-memory store waited"),
        };
        let accepted = outcome.connects.len();
        for wait in outcome.connects {
            if self.pending.len() == MAX_PENDING {
                self.pending.remove(0);
            }
            self.pending.push(if on_stream {
                Pending::Stream(wait)
            } else {
                Pending::Poll(Box::pin(wait.wait()))
            });
        }
        (outcome.items, accepted)
    }

    /// Answers every connect that is due: long-polls are polled (nothing else
    /// wakes them here), WebSocket connects are finished once due.
    fn answer_due(&mut self) -> Vec<Vec<Item>> {
        let mut cx = Context::from_waker(Waker::noop());
        let now = tokio::time::Instant::now();
        let mut answers = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            match pending {
                Pending::Poll(mut wait) => match wait.as_mut().poll(&mut cx) {
                    Poll::Ready(items) => answers.push(items),
                    Poll::Pending => self.pending.push(Pending::Poll(wait)),
                },
                Pending::Stream(wait) if wait.stream_due(now) => {
                    answers.push(wait.finish_stream());
                }
                Pending::Stream(wait) => self.pending.push(Pending::Stream(wait)),
            }
        }
        answers
    }

    /// The events each open WebSocket has ready, with the client it delivers for.
    fn drain_streams(&mut self) -> Vec<(String, Vec<Bytes>)> {
        let mut out = Vec::new();
        for slot in self.streams.iter_mut().flatten() {
            let Some(id) = slot.bound().map(|c| c.id().to_owned()) else {
                continue;
            };
            let events = slot.drain();
            if !events.is_empty() {
                out.push((id, events));
            }
        }
        out
    }

    fn close_stream(&mut self, n: usize) {
        self.streams[n] = None;
    }

    fn drop_pending(&mut self) {
        self.pending.clear();
    }

    fn retune(&self, settings: EngineSettings) {
        self.engine.retune(settings);
    }

    fn sweep(&self) {
        self.engine.sweep();
    }

    fn retire(&self) {
        self.engine.retire();
    }
}

// ---------------------------------------------------------------------------
// The harness: input interpretation and the invariants.

/// Counter changes the replies of one step call for.
#[derive(Default)]
struct Expect {
    handshakes: u64,
    handshakes_refused: u64,
    subscriptions_refused: u64,
    published: u64,
    disconnected: u64,
}

struct Harness {
    session: Session,
    via: Via,
    /// Client ids of successful handshakes, in order (`$cN`).
    ids: Vec<String>,
    /// Every pattern each client ever asked for: events must match one.
    subscribed: HashMap<String, HashSet<String>>,
    expect: Expect,
    retired: bool,
    /// The largest per-client queue and subscription bounds in force so far
    /// (a retune does not trim what is already there).
    queue_cap: usize,
    per_client_cap: usize,
}

impl Harness {
    fn new() -> Self {
        let settings = profile(b"tight").unwrap_or_default();
        Harness {
            queue_cap: settings.max_queue_messages.max(1),
            per_client_cap: settings.max_subscriptions,
            session: Session::new(settings),
            via: Via {
                stream: None,
                bearer: None,
                peer: peer(1),
            },
            ids: Vec::new(),
            subscribed: HashMap::new(),
            expect: Expect::default(),
            retired: false,
        }
    }

    fn directive(&mut self, rt: &tokio::runtime::Runtime, line: &[u8]) {
        let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
        let command = words.next().unwrap_or_default();
        let arg = words.next();
        let number = arg.and_then(|a| std::str::from_utf8(a).ok()?.parse::<u64>().ok());
        match command {
            b"wait" => {
                let ms = number.unwrap_or(0).min(MAX_WAIT_MS);
                // The runtime is idle but for the harness's own timers, so the
                // paused clock jumps from timer to timer up to the end.
                rt.block_on(tokio::time::sleep(Duration::from_millis(ms)));
            }
            b"sweep" => self.session.sweep(),
            b"retire" => {
                self.session.retire();
                self.retired = true;
            }
            b"retune" => {
                if let Some(settings) = arg.and_then(profile) {
                    self.queue_cap = self.queue_cap.max(settings.max_queue_messages);
                    self.per_client_cap = self.per_client_cap.max(settings.max_subscriptions);
                    self.session.retune(settings);
                }
            }
            b"ws" => {
                if let Some(n) = number.filter(|n| *n < STREAMS as u64) {
                    self.via.stream = Some(n as usize);
                }
            }
            b"http" => self.via.stream = None,
            b"close" => {
                if let Some(n) = number.filter(|n| *n < STREAMS as u64) {
                    self.session.close_stream(n as usize);
                }
            }
            b"drop" => self.session.drop_pending(),
            b"peer" => {
                if let Some(n) = number.and_then(|n| u8::try_from(n).ok()) {
                    self.via.peer = peer(n);
                }
            }
            b"bearer" => {
                self.via.bearer = arg.map(|a| String::from_utf8_lossy(a).into_owned());
            }
            _ => {}
        }
    }

    /// `$c0` … `$c9` replaced by the ids of earlier handshakes.
    fn substitute(&self, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(line.len());
        let mut i = 0;
        while i < line.len() {
            if line[i..].starts_with(b"$c") {
                if let Some(d) = line.get(i + 2).filter(|d| d.is_ascii_digit()) {
                    if let Some(id) = self.ids.get(usize::from(d - b'0')) {
                        out.extend_from_slice(id.as_bytes());
                        i += 3;
                        continue;
                    }
                }
            }
            out.push(line[i]);
            i += 1;
        }
        out
    }

    fn batch(&mut self, line: &[u8]) {
        let body = self.substitute(line);
        let settings = self.session.settings();
        // A refused body never reaches the engine (the transport answers 400 or 413).
        let Ok(batch) = parse_batch(&body, settings.max_batch_messages) else {
            return;
        };
        let requests: Vec<Map<String, Value>> = batch.iter().flatten().cloned().collect();
        let (items, accepted) = self.session.process(batch, &self.via);

        let encoded = bayeux_edge::transport::encode(&items);
        match serde_json::from_slice::<Value>(&encoded) {
            Ok(Value::Array(list)) => assert_eq!(list.len(), items.len(), "one element per item"),
            other => panic!("replies do not encode as a JSON array: {other:?}"),
        }
        let mut replies = Vec::with_capacity(items.len());
        for item in &items {
            match item {
                Item::Reply(reply) => replies.push(reply),
                Item::Event(_) => panic!("an event among the immediate replies"),
                Item::Encoded(_) => panic!("pre-encoded replies among the engine's replies"),
            }
        }

        // Every message has its reply, in order, but accepted connects, which
        // are answered later. A refused connect fits its reply.
        let mut replies = replies.into_iter().peekable();
        let mut deferred = 0;
        for request in &requests {
            let is_connect = str_field(request, "channel") == Some("/meta/connect");
            let reply = if is_connect {
                match replies.peek() {
                    Some(reply) if refused_connect_fits(request, reply) => replies.next(),
                    _ => None,
                }
            } else {
                let reply = replies.next();
                assert!(reply.is_some(), "no reply for {request:?}");
                reply
            };
            match reply {
                Some(reply) => self.check_reply(request, reply, &settings),
                None => deferred += 1,
            }
        }
        assert!(replies.next().is_none(), "more replies than messages");
        assert_eq!(deferred, accepted, "connects without a reply");
    }

    fn check_reply(
        &mut self,
        request: &Map<String, Value>,
        reply: &Map<String, Value>,
        settings: &EngineSettings,
    ) {
        let Some(ok) = reply.get("successful").and_then(Value::as_bool) else {
            panic!("reply without `successful`: {reply:?}");
        };
        assert_eq!(ok, !reply.contains_key("error"), "{reply:?}");
        let name = str_field(request, "channel").filter(|c| !c.is_empty());
        if let Some(name) = name {
            assert_eq!(str_field(reply, "channel"), Some(name), "{reply:?}");
        }
        if truthy(request.get("id")) {
            assert_eq!(reply.get("id"), request.get("id"), "{reply:?}");
        }
        // The request's own `error` is echoed as it came.
        let asked_error = truthy(request.get("error"));
        if !asked_error {
            if let Some(error) = reply.get("error") {
                assert!(error.is_string(), "{reply:?}");
            }
        }
        let error = str_field(reply, "error").filter(|_| !asked_error);
        match name {
            Some("/meta/handshake") => {
                if ok {
                    let Some(id) = str_field(reply, "clientId") else {
                        panic!("handshake without a client id: {reply:?}");
                    };
                    assert_eq!(str_field(reply, "version"), Some("1.0"));
                    self.ids.push(id.to_owned());
                    self.expect.handshakes += 1;
                } else if error.is_some_and(|e| HANDSHAKE_REFUSALS.contains(&e)) {
                    self.expect.handshakes_refused += 1;
                }
                assert!(reply.get("advice").is_some_and(Value::is_object));
            }
            Some(meta @ ("/meta/subscribe" | "/meta/unsubscribe")) => {
                assert!(reply.contains_key("subscription"), "{reply:?}");
                if ok {
                    assert_eq!(reply.get("subscription"), request.get("subscription"));
                }
                if meta == "/meta/subscribe" {
                    self.record_subscription(request);
                    let refused = error.is_some_and(|e| {
                        (e.starts_with("403:") && e.ends_with(":Too many subscriptions"))
                            || (e.starts_with("503:") && e.ends_with(":Server at capacity"))
                    });
                    if refused {
                        self.expect.subscriptions_refused += 1;
                    }
                }
            }
            Some("/meta/disconnect") => {
                if ok {
                    assert_eq!(reply.get("clientId"), request.get("clientId"));
                    self.expect.disconnected += 1;
                }
            }
            Some("/meta/connect") => {
                assert!(!ok, "an accepted connect answered at once");
                let reconnect = reply.get("advice").and_then(|a| a.get("reconnect"));
                assert_eq!(reconnect, Some(&Value::from("handshake")), "{reply:?}");
            }
            Some(other) if channel::is_meta(other) => assert!(!ok, "{reply:?}"),
            _ => {
                if ok {
                    // A publish: to a name within the bounds, with data.
                    let channel_name = name.unwrap_or_default();
                    assert!(channel::is_name(channel_name), "{reply:?}");
                    assert!(settings.channel_bounds().admits(channel_name));
                    assert!(request.contains_key("data"));
                    self.expect.published += 1;
                }
            }
        }
    }

    /// Remembers what a subscribe asked for, granted or not (a refused list
    /// may have been granted in part).
    fn record_subscription(&mut self, request: &Map<String, Value>) {
        let Some(id) = str_field(request, "clientId") else {
            return;
        };
        let patterns: Vec<&str> = match request.get("subscription") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let set = self.subscribed.entry(id.to_owned()).or_default();
        set.extend(patterns.into_iter().map(str::to_owned));
    }

    /// Answers what is due and takes what the WebSockets have, checking both.
    fn settle(&mut self) {
        for answer in self.session.answer_due() {
            let mut items = answer.iter();
            let Some(Item::Reply(reply)) = items.next() else {
                panic!("a connect answer must start with its reply: {answer:?}");
            };
            assert_eq!(str_field(reply, "channel"), Some("/meta/connect"));
            assert_eq!(
                reply.get("successful"),
                Some(&Value::Bool(true)),
                "{reply:?}"
            );
            assert!(reply.get("advice").is_some_and(Value::is_object));
            let Some(id) = str_field(reply, "clientId") else {
                panic!("connect answer without a client id: {reply:?}");
            };
            assert!(self.ids.iter().any(|known| known == id), "unknown {id}");
            let mut events = Vec::new();
            for item in items {
                match item {
                    Item::Event(bytes) => events.push(bytes.clone()),
                    Item::Reply(r) => panic!("a second reply in a connect answer: {r:?}"),
                    Item::Encoded(_) => panic!("pre-encoded replies in a connect answer"),
                }
            }
            self.check_events(id, &events);
        }
        for (id, events) in self.session.drain_streams() {
            self.check_events(&id, &events);
        }
    }

    fn check_events(&self, id: &str, events: &[Bytes]) {
        assert!(
            events.len() <= self.queue_cap,
            "{} events for {id}, bound {}",
            events.len(),
            self.queue_cap
        );
        let subscribed = self.subscribed.get(id);
        for bytes in events {
            let event: Map<String, Value> = match serde_json::from_slice(bytes) {
                Ok(event) => event,
                Err(e) => panic!("event is not a JSON object ({e}): {bytes:?}"),
            };
            let Some(name) = str_field(&event, "channel") else {
                panic!("event without a channel: {event:?}");
            };
            assert!(channel::is_name(name), "{event:?}");
            assert!(
                !channel::is_meta(name) && !channel::is_service(name),
                "{event:?}"
            );
            assert!(!event.contains_key("clientId"), "{event:?}");
            if let Some(Value::Object(ext)) = event.get("ext") {
                assert!(!ext.contains_key("secret"), "a secret reached a subscriber");
            }
            let wanted =
                subscribed.is_some_and(|set| set.iter().any(|p| channel::matches(p, name)));
            assert!(wanted, "{id} got {name} without subscribing to it");
        }
    }

    fn check_counters(&self, before: &Stats) {
        let s = self.session.stats();
        let e = &self.expect;
        let settings = self.session.settings();
        assert_eq!(s.handshakes - before.handshakes, e.handshakes, "{s:?}");
        assert_eq!(
            s.handshakes_refused - before.handshakes_refused,
            e.handshakes_refused,
            "{s:?}"
        );
        assert_eq!(
            s.subscriptions_refused - before.subscriptions_refused,
            e.subscriptions_refused,
            "{s:?}"
        );
        assert_eq!(s.published - before.published, e.published, "{s:?}");
        assert_eq!(
            s.disconnected - before.disconnected,
            e.disconnected,
            "{s:?}"
        );
        assert!(s.expired >= before.expired && s.delivered >= before.delivered);
        assert!(
            s.dropped <= s.delivered && s.overflows <= s.dropped,
            "{s:?}"
        );
        if self.retired {
            assert_eq!(s.clients, 0, "{s:?}");
        } else {
            let live =
                i128::from(s.handshakes) - i128::from(s.expired) - i128::from(s.disconnected);
            assert_eq!(i128::from(s.clients), live, "{s:?}");
        }
        if s.clients > before.clients {
            assert!(s.clients <= settings.max_clients as u64, "{s:?}");
        }
        if s.subscriptions > before.subscriptions {
            assert!(
                s.subscriptions <= settings.max_total_subscriptions as u64,
                "{s:?}"
            );
        }
        assert!(
            s.subscriptions <= s.clients * self.per_client_cap as u64,
            "{s:?}"
        );
    }
}

/// True when `reply` can be the refusal of the connect `request`: a refused
/// connect echoes the request's truthy `id`, and its `error` is the engine's
/// own string or else the request's `error` as it came (the engine's error
/// replaces the request's when both are there).
fn refused_connect_fits(request: &Map<String, Value>, reply: &Map<String, Value>) -> bool {
    let id = request.get("id").filter(|v| truthy(Some(v)));
    let error = reply.get("error");
    str_field(reply, "channel") == Some("/meta/connect")
        && reply.get("successful") == Some(&Value::Bool(false))
        && reply.get("id") == id
        && (error.is_some_and(Value::is_string) || error == request.get("error"))
}

fn str_field<'a>(message: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    message.get(key).and_then(Value::as_str)
}

/// JavaScript truthiness, as Faye reads fields.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}
