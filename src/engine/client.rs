//! Per-client state: liveness, subscriptions, the bounded mailbox of pending
//! events, and who currently owns delivery.
//!
//! Exactly one transport owns a client's delivery at a time: a held long-poll
//! (`Owner::Poll`) or a bound WebSocket/EventSource stream (`Owner::Stream`).
//! The newest `/meta/connect` takes ownership; the previous owner is woken and
//! finds its generation superseded (a superseded long-poll is answered at once,
//! empty). Events are only removed from the mailbox by the current owner, at the
//! moment it writes them out, so an owner that goes away (a closed HTTP
//! connection, a dropped socket) leaves its events queued for the next connect.
//!
//! Mailbox overflow policy: the mailbox is bounded by message count and bytes;
//! when a new event does not fit, the oldest events are dropped to make room
//! (a slow or absent client loses its oldest notifications first) and the loss
//! is counted in the engine's `dropped` metric. An event bigger than the byte
//! budget is still accepted into an empty mailbox, so a legal message is never
//! undeliverable.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::peers::PeerKey;

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A stuck client's drops are logged at most this often, with their count.
const OVERFLOW_REPORT_EVERY: Duration = Duration::from_secs(10);

/// A wake-up handle registered by whichever transport owns delivery.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub(crate) generation: u64,
    pub(crate) notify: Arc<Notify>,
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
}

#[derive(Debug, Default)]
pub(crate) enum Owner {
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

#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) alive: bool,
    pub(crate) expires_at: Instant,
    pub(crate) queue: VecDeque<Bytes>,
    pub(crate) queued_bytes: usize,
    pub(crate) subscriptions: HashSet<Arc<str>>,
    pub(crate) owner: Owner,
    /// Events dropped since the last log line about this client, and when that was.
    pub(crate) unreported_drops: u64,
    pub(crate) last_drop_report: Option<Instant>,
}

/// One Bayeux session.
#[derive(Debug)]
pub struct Client {
    pub(crate) id: Arc<str>,
    pub(crate) serial: u64,
    /// The address the session was admitted under, given back when it ends.
    pub(crate) peer: Option<PeerKey>,
    pub(crate) state: Mutex<ClientState>,
}

/// Limits applied when an event is queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: usize,
}

/// What happened when one event was offered to a client.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Offered {
    pub(crate) delivered: bool,
    pub(crate) dropped: u64,
    /// Drops to log now for this client (the rate limit of the warning allows it).
    pub(crate) report: Option<u64>,
}

impl Client {
    pub(crate) fn new(
        id: Arc<str>,
        serial: u64,
        peer: Option<PeerKey>,
        expires_at: Instant,
    ) -> Self {
        Client {
            id,
            serial,
            peer,
            state: Mutex::new(ClientState {
                alive: true,
                expires_at,
                queue: VecDeque::new(),
                queued_bytes: 0,
                subscriptions: HashSet::new(),
                owner: Owner::None,
                unreported_drops: 0,
                last_drop_report: None,
            }),
        }
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// False once the client was disconnected, expired or retired.
    pub fn is_alive(&self) -> bool {
        self.state.lock().alive
    }

    /// Queues one serialized event and wakes the delivery owner.
    pub(crate) fn offer(&self, event: &Bytes, limits: QueueLimits) -> Offered {
        let mut out = Offered::default();
        let notify = {
            let mut st = self.state.lock();
            if !st.alive {
                return out;
            }
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
        };
        if let Some(n) = notify {
            n.notify_one();
        }
        out
    }

    /// Makes `waiter` the delivery owner as a held long-poll or a stream, waking
    /// the previous owner so it notices it was superseded.
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
        if st.owner.waiter().map(|w| w.generation) == Some(generation) {
            st.owner = Owner::None;
        }
    }

    /// True when a WebSocket or EventSource stream owns delivery.
    pub(crate) fn has_stream_owner(&self) -> bool {
        matches!(self.state.lock().owner, Owner::Stream(_))
    }

    /// True if `generation` owns delivery.
    pub(crate) fn owns(&self, generation: u64) -> bool {
        self.state.lock().owner.waiter().map(|w| w.generation) == Some(generation)
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
        st.queued_bytes = 0;
        StreamDrain::Events(st.queue.drain(..).collect())
    }

    /// Takes every queued event when nobody owns delivery (a connect that is
    /// answered at once, e.g. an EventSource heartbeat connect with no stream open).
    pub(crate) fn drain_unowned(&self) -> Vec<Bytes> {
        let mut st = self.state.lock();
        if !st.alive || !matches!(st.owner, Owner::None) {
            return Vec::new();
        }
        st.queued_bytes = 0;
        st.queue.drain(..).collect()
    }

    /// Number of queued events (for tests and metrics).
    pub fn queued(&self) -> usize {
        self.state.lock().queue.len()
    }
}
