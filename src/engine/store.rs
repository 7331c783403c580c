//! Where an engine keeps its sessions, their subscriptions and their queued
//! events: the seam between the Bayeux logic (`meta`, `delivery`) and storage.
//!
//! The logic never touches a table or an index itself; it asks the store:
//!
//! | operation | what it must do |
//! |---|---|
//! | [`Store::create`] | add a new session with a fresh client id, live until `expires_at` |
//! | [`Store::find`] | the session with this id, wherever it was created |
//! | [`Store::subscribe`] / [`Store::unsubscribe`] | change a session's subscriptions together with whatever routes publications to it |
//! | [`Store::publish`] | route one serialized event; returns the sessions held here to deliver it to now |
//! | [`Store::remove`] | forget an ended session everywhere |
//! | [`Store::sessions`] | the sessions held here (for the sweeper and retirement) |
//!
//! Sessions themselves (`session::Session`: mailbox, delivery owner,
//! subscriptions) are always local objects: a transport delivers from the
//! process it is connected to. The in-memory store ([`memory`]) is the whole
//! story for one process. A store shared by several processes keeps the same
//! local objects as the ones its clients are connected to, and adds what makes
//! them mobile: `create`, `subscribe`, `unsubscribe` and `remove` also write the
//! shared record, `find` loads a session another process created, and `publish`
//! appends the event to the shared log and returns nothing, delivery happening
//! in every process as it reads the log. For such a store these operations are
//! asynchronous and fallible, which is why the logic already awaits them.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::memory::Memory;
use super::peers::PeerKey;
use super::session::{Session, Subscribed};

/// The storage of one engine.
#[derive(Debug)]
pub(crate) enum Store {
    /// Everything in this process.
    Memory(Memory),
}

impl Store {
    /// An empty in-memory store.
    pub(crate) fn memory() -> Store {
        Store::Memory(Memory::new())
    }

    /// A new session admitted under `peer`.
    pub(crate) async fn create(&self, peer: Option<PeerKey>, expires_at: Instant) -> Arc<Session> {
        match self {
            Store::Memory(m) => m.create(peer, expires_at),
        }
    }

    /// The session called `id`, if it exists (expired or not: expiry is the
    /// engine's rule).
    pub(crate) async fn find(&self, id: &str) -> Option<Arc<Session>> {
        match self {
            Store::Memory(m) => m.find(id),
        }
    }

    /// Subscribes `session` to `pattern` within the per-session and per-route bounds.
    pub(crate) async fn subscribe(
        &self,
        session: &Arc<Session>,
        pattern: &str,
        max_per_session: usize,
        max_total: usize,
    ) -> Subscribed {
        match self {
            Store::Memory(m) => m.subscribe(session, pattern, max_per_session, max_total),
        }
    }

    /// Unsubscribes `session` from `pattern`; true when it was subscribed.
    pub(crate) async fn unsubscribe(&self, session: &Arc<Session>, pattern: &str) -> bool {
        match self {
            Store::Memory(m) => m.unsubscribe(session, pattern),
        }
    }

    /// Routes one event published to the concrete channel `name`; the sessions
    /// held here that must get it now.
    pub(crate) async fn publish(&self, name: &str, _event: &Bytes) -> Vec<Arc<Session>> {
        match self {
            Store::Memory(m) => m.recipients(name),
        }
    }

    /// Forgets `session` (already ended) and its subscriptions. Synchronous, so
    /// a route can be retired from anywhere; a shared store removes its shared
    /// record in the background.
    pub(crate) fn remove(&self, session: &Arc<Session>, subscriptions: &[Arc<str>]) {
        match self {
            Store::Memory(m) => m.remove(session, subscriptions),
        }
    }

    /// Every session held here.
    pub(crate) fn sessions(&self) -> Vec<Arc<Session>> {
        match self {
            Store::Memory(m) => m.sessions(),
        }
    }

    /// Live sessions held here.
    pub(crate) fn len(&self) -> usize {
        match self {
            Store::Memory(m) => m.len(),
        }
    }

    /// (pattern, session) subscription pairs held here.
    pub(crate) fn subscriptions(&self) -> usize {
        match self {
            Store::Memory(m) => m.subscriptions(),
        }
    }
}
