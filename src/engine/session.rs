//! One Bayeux session held by this process: liveness, expiry, subscriptions,
//! the bounded mailbox of pending events, and who currently owns delivery.
//!
//! The state sits behind one lock and is private to this module; the methods
//! below are the only way to change it, and each keeps the session's
//! invariants:
//! - **Mailbox bounds.** The mailbox is bounded by message count and bytes;
//!   when a new event does not fit, the oldest are dropped to make room (a slow
//!   or absent client loses its oldest notifications first) and the loss is
//!   reported to the caller for counting. An event bigger than the byte budget
//!   is still accepted into an empty mailbox, so a legal message is never
//!   undeliverable.
//! - **One owner.** Exactly one transport owns delivery at a time: a held
//!   long-poll or a bound WebSocket/EventSource stream, named by a generation.
//!   The newest `/meta/connect` takes ownership and wakes the previous owner,
//!   which finds itself superseded. Events leave the mailbox only to the
//!   current owner, at the moment it writes them, so an owner that goes away
//!   leaves them queued for the next connect.
//! - **Subscriptions with the index.** The subscription set changes only
//!   together with the engine's index: the caller passes the index update,
//!   which runs under this lock, so a concurrent subscribe and unsubscribe of
//!   one channel cannot leave the two disagreeing.
//! - **Dead is final.** An ended session accepts no event, owner or subscription.
//!
//! Lock order: a session's lock may be held while an index shard's lock is
//! taken (subscribe, unsubscribe), never the other way round; the session
//! table's shard lock is released before a session's lock is taken.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::peers::PeerKey;
use super::Transport;
use crate::auth::SessionGrant;

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A stuck client's drops are reported at most this often, with their count.
const OVERFLOW_REPORT_EVERY: Duration = Duration::from_secs(10);

/// A wake-up handle registered by whichever transport owns delivery.
#[derive(Debug, Clone)]
pub struct Waiter {
    generation: u64,
    notify: Arc<Notify>,
}

impl Waiter {
    /// A new waiter with a process-unique generation.
    pub fn new(notify: Arc<Notify>) -> Self {
        Waiter {
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            notify,
        }
    }

    /// The generation that identifies this registration.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The wake-up this waiter registered.
    pub(crate) fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }
}

#[derive(Debug, Default)]
enum Owner {
    #[default]
    None,
    Poll(Waiter),
    Stream(Waiter),
}

impl Owner {
    fn waiter(&self) -> Option<&Waiter> {
        match self {
            Owner::None => None,
            Owner::Poll(w) | Owner::Stream(w) => Some(w),
        }
    }

    fn generation(&self) -> Option<u64> {
        self.waiter().map(|w| w.generation)
    }
}

/// Outcome of a stream owner's attempt to drain the mailbox.
#[derive(Debug)]
pub enum StreamDrain {
    /// Events to write, oldest first (may be empty).
    Events(Vec<Bytes>),
    /// Another connect took over delivery; the stream should stop serving this client.
    Superseded,
    /// The client is gone (disconnect, expiry, retired route).
    Gone,
}

/// What a held long-poll finds when it looks at its session.
#[derive(Debug)]
pub(crate) enum PollState {
    /// The session ended.
    Gone,
    /// A newer connect owns delivery.
    Superseded,
    /// Events were queued: they are taken, and ownership is given up.
    Ready(Vec<Bytes>),
    /// Nothing yet.
    Empty,
}

/// Limits applied when an event is queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: usize,
}

/// What happened when one event was offered to a session.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Offered {
    pub(crate) delivered: bool,
    pub(crate) dropped: u64,
    /// Drops to log now for this session (the warning's rate limit allows it).
    pub(crate) report: Option<u64>,
    /// The session's token ran out: nothing was queued, and it must end.
    pub(crate) token_expired: bool,
}

/// The result of asking a session to add a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subscribed {
    /// Added (the index update ran).
    Added,
    /// It was there already; nothing changed.
    Already,
    /// The session holds its maximum.
    SessionFull,
    /// The index refused it (the route holds its maximum).
    RouteFull,
    /// The session ended.
    Gone,
    /// The shared store could not record it (Redis unreachable).
    Unavailable,
}

/// What an ended session leaves to clean up outside its lock.
#[derive(Debug)]
pub(crate) struct Ended {
    /// Its subscriptions, to remove from the index.
    pub(crate) subscriptions: Vec<Arc<str>>,
    /// Its delivery owner, to wake so it notices.
    pub(crate) owner: Option<Arc<Notify>>,
}

#[derive(Debug)]
struct State {
    alive: bool,
    expires_at: Instant,
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    subscriptions: HashSet<Arc<str>>,
    owner: Owner,
    /// Events dropped since the last report about this session, and when that was.
    unreported_drops: u64,
    last_drop_report: Option<Instant>,
    /// Shared stores only (see `super::redis`): the log position of the newest
    /// event offered or skipped past, the one of the newest event handed to a
    /// transport, and whether that moved since the position was last saved.
    /// A memory session leaves them at zero.
    seen: u128,
    handed: u128,
    unsaved: bool,
    /// What a token lets this session read (`jwt` subscribe policy only).
    grant: Option<Arc<SessionGrant>>,
    /// The session ended because its token's time was up.
    token_expired: bool,
}

/// Why a session is due to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Ended already, or its lifetime passed.
    Lifetime,
    /// The token that granted its subscriptions ran out.
    Token,
}

/// One Bayeux session.
#[derive(Debug)]
pub struct Session {
    id: Arc<str>,
    serial: u64,
    peer: Option<PeerKey>,
    state: Mutex<State>,
    // Facts shown to the operator, outside the lock: set at creation, written
    // once (the address) or with a relaxed store per connect (the transport),
    // and read only by the console.
    /// Wall-clock time of the handshake.
    since: SystemTime,
    /// The client's full address.
    addr: OnceLock<IpAddr>,
    /// 0 before the first connect, else 1 + the index in [`Transport::ALL`].
    transport: AtomicU8,
}

impl Session {
    /// A live session that expires at `expires_at` unless extended.
    pub(crate) fn new(
        id: Arc<str>,
        serial: u64,
        peer: Option<PeerKey>,
        expires_at: Instant,
    ) -> Self {
        Session {
            id,
            serial,
            peer,
            state: Mutex::new(State {
                alive: true,
                expires_at,
                queue: VecDeque::new(),
                queued_bytes: 0,
                subscriptions: HashSet::new(),
                owner: Owner::None,
                unreported_drops: 0,
                last_drop_report: None,
                grant: None,
                token_expired: false,
                seen: 0,
                handed: 0,
                unsaved: false,
            }),
            since: SystemTime::now(),
            addr: OnceLock::new(),
            transport: AtomicU8::new(0),
        }
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// An engine-wide number naming this session in the index.
    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }

    /// The address the session was admitted under.
    pub(crate) fn peer(&self) -> Option<PeerKey> {
        self.peer
    }

    /// When the session was created (its handshake), by the wall clock.
    pub fn since(&self) -> SystemTime {
        self.since
    }

    /// The client's full address (admission keeps only its key), when known.
    pub fn client_addr(&self) -> Option<IpAddr> {
        self.addr.get().copied()
    }

    /// Records the client's address; the first one recorded stays.
    pub(crate) fn set_client_addr(&self, ip: IpAddr) {
        let _ = self.addr.set(ip);
    }

    /// The transport of the latest `/meta/connect`, if there was one.
    pub fn transport(&self) -> Option<Transport> {
        let n = self.transport.load(Ordering::Relaxed);
        Transport::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    /// Records the transport of a `/meta/connect`.
    pub(crate) fn note_transport(&self, transport: Transport) {
        self.transport.store(transport as u8 + 1, Ordering::Relaxed);
    }

    /// False once the session was disconnected, expired or retired.
    pub fn is_alive(&self) -> bool {
        self.state.lock().alive
    }

    /// Whether the session must end now: it ended already or outlived its
    /// lifetime at `now`, or its token ran out.
    pub(crate) fn due(&self, now: Instant) -> Option<Due> {
        let st = self.state.lock();
        if !st.alive || st.expires_at <= now {
            return Some(Due::Lifetime);
        }
        let token_out = st
            .grant
            .as_ref()
            .is_some_and(|g| g.expired(SystemTime::now()));
        token_out.then_some(Due::Token)
    }

    /// What the session's token grants, if it presented one.
    pub(crate) fn grant(&self) -> Option<Arc<SessionGrant>> {
        self.state.lock().grant.clone()
    }

    /// Replaces what the session may read (a token was presented).
    pub(crate) fn set_grant(&self, grant: SessionGrant) {
        self.state.lock().grant = Some(Arc::new(grant));
    }

    /// Marks that the session ends because its token ran out, so its held
    /// connect is answered with an error telling it to handshake again.
    pub(crate) fn note_token_expired(&self) {
        self.state.lock().token_expired = true;
    }

    /// True when the session ended because its token ran out.
    pub(crate) fn ended_by_token(&self) -> bool {
        self.state.lock().token_expired
    }

    /// Moves the expiry to `until` (a handshake or a connect started); returns it.
    pub(crate) fn extend(&self, until: Instant) -> Instant {
        self.state.lock().expires_at = until;
        until
    }

    /// Queues one serialized event and wakes the delivery owner.
    pub(crate) fn offer(&self, event: &Bytes, limits: QueueLimits) -> Offered {
        self.offer_inner(event, limits, None)
    }

    /// Shared stores: queues the event at log position `pos`, unless the
    /// session already has it (a replay and the live log reader may both
    /// offer one event: the position decides, so it is queued once).
    pub(crate) fn offer_at(&self, event: &Bytes, limits: QueueLimits, pos: u128) -> Offered {
        self.offer_inner(event, limits, Some(pos))
    }

    fn offer_inner(&self, event: &Bytes, limits: QueueLimits, pos: Option<u128>) -> Offered {
        let mut out = Offered::default();
        let notify = {
            let mut st = self.state.lock();
            if !st.alive {
                return out;
            }
            if let Some(pos) = pos {
                if pos <= st.seen {
                    return out;
                }
                st.seen = pos;
            }
            // A session stops receiving the moment its token runs out, not at
            // its next connect or the next sweep.
            if Self::token_out(&st) {
                out.token_expired = true;
                return out;
            }
            Self::enqueue(&mut st, event, limits, &mut out)
        };
        if let Some(n) = notify {
            n.notify_one();
        }
        out
    }

    /// Shared stores: the session starts at log position `pos` (its saved
    /// cursor): everything up to it was handed out before.
    pub(crate) fn start_at(&self, pos: u128) {
        let mut st = self.state.lock();
        st.seen = pos;
        st.handed = pos;
    }

    /// Shared stores: nothing up to `pos` is still to be offered (a replay read
    /// the log that far).
    pub(crate) fn skip_to(&self, pos: u128) {
        let mut st = self.state.lock();
        st.seen = st.seen.max(pos);
    }

    /// Shared stores: the position to save as this session's delivery cursor,
    /// given that the log reader has offered every entry up to `reader` (read
    /// before this call). With nothing queued, everything offered was handed
    /// out (or dropped and counted), so the cursor may move past `reader` too;
    /// otherwise it stays at the last event handed to a transport.
    pub(crate) fn cursor(&self, reader: u128) -> u128 {
        let mut st = self.state.lock();
        st.unsaved = false;
        if st.queue.is_empty() {
            st.seen.max(reader).max(st.handed)
        } else {
            st.handed
        }
    }

    /// Shared stores: true (once) when events were handed out since the cursor
    /// was last taken with [`Session::cursor`].
    pub(crate) fn take_unsaved(&self) -> bool {
        std::mem::take(&mut self.state.lock().unsaved)
    }

    /// True when the token that granted the session's subscriptions ran out.
    fn token_out(st: &State) -> bool {
        st.grant
            .as_ref()
            .is_some_and(|g| g.expired(SystemTime::now()))
    }

    fn enqueue(
        st: &mut State,
        event: &Bytes,
        limits: QueueLimits,
        out: &mut Offered,
    ) -> Option<Arc<Notify>> {
        while !st.queue.is_empty()
            && (st.queue.len() >= limits.max_messages
                || st.queued_bytes + event.len() > limits.max_bytes)
        {
            if let Some(old) = st.queue.pop_front() {
                st.queued_bytes -= old.len();
                out.dropped += 1;
            }
        }
        st.queued_bytes += event.len();
        st.queue.push_back(event.clone());
        out.delivered = true;
        if out.dropped > 0 {
            st.unreported_drops += out.dropped;
            let now = Instant::now();
            let due = st
                .last_drop_report
                .is_none_or(|t| now.duration_since(t) >= OVERFLOW_REPORT_EVERY);
            if due {
                out.report = Some(std::mem::take(&mut st.unreported_drops));
                st.last_drop_report = Some(now);
            }
        }
        st.owner.waiter().map(|w| w.notify.clone())
    }

    /// Makes `waiter` the delivery owner as a held long-poll or a stream, waking
    /// the previous owner so it notices it was superseded. False when the
    /// session ended.
    pub(crate) fn take_ownership(&self, waiter: Waiter, stream: bool) -> bool {
        let previous = {
            let mut st = self.state.lock();
            if !st.alive {
                return false;
            }
            let new = if stream {
                Owner::Stream(waiter)
            } else {
                Owner::Poll(waiter)
            };
            std::mem::replace(&mut st.owner, new)
        };
        if let Some(w) = previous.waiter() {
            w.notify.notify_one();
        }
        true
    }

    /// Gives up ownership if `generation` still owns delivery. When events are
    /// still queued they simply wait for the next connect.
    pub(crate) fn release(&self, generation: u64) {
        let mut st = self.state.lock();
        if st.owner.generation() == Some(generation) {
            st.owner = Owner::None;
        }
    }

    /// True when a WebSocket or EventSource stream owns delivery.
    pub(crate) fn has_stream_owner(&self) -> bool {
        matches!(self.state.lock().owner, Owner::Stream(_))
    }

    /// True if `generation` owns delivery.
    pub(crate) fn owns(&self, generation: u64) -> bool {
        self.state.lock().owner.generation() == Some(generation)
    }

    /// Takes every queued event for the stream owner `generation`.
    pub fn drain_stream(&self, generation: u64) -> StreamDrain {
        let mut st = self.state.lock();
        if !st.alive {
            return StreamDrain::Gone;
        }
        match &st.owner {
            Owner::Stream(w) if w.generation == generation => {}
            _ => return StreamDrain::Superseded,
        }
        Self::handing_out(&mut st);
        StreamDrain::Events(st.queue.drain(..).collect())
    }

    /// For the held long-poll `generation`: takes the queued events (giving up
    /// ownership, since the poll is answered with them) or says why not.
    pub(crate) fn poll(&self, generation: u64) -> PollState {
        let mut st = self.state.lock();
        if !st.alive {
            return PollState::Gone;
        }
        match &st.owner {
            Owner::Poll(w) if w.generation == generation => {}
            _ => return PollState::Superseded,
        }
        if st.queue.is_empty() {
            return PollState::Empty;
        }
        Self::handing_out(&mut st);
        st.owner = Owner::None;
        PollState::Ready(st.queue.drain(..).collect())
    }

    /// Takes every queued event when nobody owns delivery (a connect that is
    /// answered at once, e.g. an EventSource heartbeat connect with no stream open).
    pub(crate) fn drain_unowned(&self) -> Vec<Bytes> {
        let mut st = self.state.lock();
        if !st.alive || !matches!(st.owner, Owner::None) {
            return Vec::new();
        }
        Self::handing_out(&mut st);
        st.queue.drain(..).collect()
    }

    /// The whole queue is about to be handed to a transport.
    fn handing_out(st: &mut State) {
        st.queued_bytes = 0;
        if !st.queue.is_empty() {
            st.handed = st.seen;
            st.unsaved = true;
        }
    }

    /// Adds `pattern` unless present or the session holds `max`; `index` adds
    /// it to the engine's index, under this session's lock, or returns false
    /// to refuse it.
    pub(crate) fn subscribe(
        &self,
        pattern: &str,
        max: usize,
        index: impl FnOnce(&Arc<str>) -> bool,
    ) -> Subscribed {
        let mut st = self.state.lock();
        if !st.alive {
            return Subscribed::Gone;
        }
        if st.subscriptions.contains(pattern) {
            return Subscribed::Already;
        }
        if st.subscriptions.len() >= max {
            return Subscribed::SessionFull;
        }
        let key: Arc<str> = Arc::from(pattern);
        if !index(&key) {
            return Subscribed::RouteFull;
        }
        st.subscriptions.insert(key);
        Subscribed::Added
    }

    /// Removes `pattern` if present; `index` removes it from the engine's
    /// index, under this session's lock. True when it was there.
    pub(crate) fn unsubscribe(&self, pattern: &str, index: impl FnOnce(&str)) -> bool {
        let mut st = self.state.lock();
        if !st.subscriptions.remove(pattern) {
            return false;
        }
        index(pattern);
        true
    }

    /// Ends the session: it accepts nothing more and its queue is freed. The
    /// first caller gets what must be cleaned up; later callers get `None`.
    pub(crate) fn end(&self) -> Option<Ended> {
        let mut st = self.state.lock();
        if !st.alive {
            return None;
        }
        st.alive = false;
        st.queue.clear();
        st.queued_bytes = 0;
        let subscriptions = st.subscriptions.drain().collect();
        let owner = std::mem::take(&mut st.owner)
            .waiter()
            .map(|w| w.notify.clone());
        Some(Ended {
            subscriptions,
            owner,
        })
    }

    /// Number of queued events.
    pub fn queued(&self) -> usize {
        self.state.lock().queue.len()
    }
}
