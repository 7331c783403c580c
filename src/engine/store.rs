//! Where an engine keeps its sessions, their subscriptions and their queued
//! events: the seam between the Bayeux logic (`meta`, `delivery`) and storage.
//!
//! The logic never touches a table or an index itself; it asks the store:
//!
//! | operation | what it must do |
//! |---|---|
//! | [`Store::create`] | add a new session with a fresh client id, live until `expires_at` |
//! | [`Store::find`] | the session with this id held here |
//! | [`Store::shared`] | the shared store, whose sessions can be loaded here from elsewhere (see `super::redis`) |
//! | [`Store::subscribe`] / [`Store::unsubscribe`] | change a session's subscriptions together with whatever routes publications to it |
//! | [`Store::grant`] | replace what a session's token lets it read, wherever the session is served next |
//! | [`Store::publish`] | route one serialized event; returns the sessions held here to deliver it to now |
//! | [`Store::remove`] | forget an ended session here (a shared record ends by its own expiry or a disconnect) |
//! | [`Store::sessions`] | the sessions held here (for the sweeper and retirement) |
//!
//! Sessions themselves (`session::Session`: mailbox, delivery owner,
//! subscriptions) are always local objects: a transport delivers from the
//! process it is connected to. The in-memory store ([`memory`]) is the whole
//! story for one process. A store shared by several processes keeps the same
//! local objects as the ones its clients are connected to, and adds what makes
//! them mobile: `create`, `subscribe`, `unsubscribe` and `grant` also write the shared
//! record, the engine loads a session another process created when `find`
//! has none, and `publish` appends the event to the shared log and returns
//! nothing, delivery happening in every process as it reads the log. For such
//! a store these operations are asynchronous and fallible ([`Failure`]); the
//! memory store never fails and dispatching on this enum is all it pays.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::time::Instant;

use super::memory::Memory;
use super::peers::PeerKey;
pub(crate) use super::redis::Failure;
use super::redis::Redis;
use super::session::{Session, Subscribed};
use crate::auth::SessionGrant;
use crate::config::{EngineSettings, Storage};

/// The storage of one engine.
#[derive(Debug)]
pub(crate) enum Store {
    /// Everything in this process.
    Memory(Memory),
    /// Shared with other processes through Redis.
    Redis(Box<Redis>),
}

impl Store {
    /// An empty in-memory store.
    pub(crate) fn memory() -> Store {
        Store::Memory(Memory::new())
    }

    /// The store `storage` asks for; `settings` are the engine's live tunables.
    pub(crate) fn new(
        storage: &Storage,
        settings: &Arc<ArcSwap<EngineSettings>>,
    ) -> Result<Store, String> {
        match storage {
            Storage::Memory => Ok(Store::memory()),
            Storage::Redis(target) => Ok(Store::Redis(Box::new(Redis::new(
                target.clone(),
                settings.clone(),
            )?))),
        }
    }

    /// What the store was built from.
    pub(crate) fn storage(&self) -> Storage {
        match self {
            Store::Memory(_) => Storage::Memory,
            Store::Redis(r) => Storage::Redis(r.target().clone()),
        }
    }

    /// The shared store, when sessions live beyond this process.
    pub(crate) fn shared(&self) -> Option<&Redis> {
        match self {
            Store::Memory(_) => None,
            Store::Redis(r) => Some(r),
        }
    }

    /// What this process holds: all of it for the in-memory store, this
    /// node's sessions and index for a shared one.
    pub(super) fn local(&self) -> &Memory {
        match self {
            Store::Memory(m) => m,
            Store::Redis(r) => r.local(),
        }
    }

    /// A new session admitted under `peer`.
    pub(crate) async fn create(
        &self,
        peer: Option<PeerKey>,
        expires_at: Instant,
    ) -> Result<Arc<Session>, Failure> {
        match self {
            Store::Memory(m) => Ok(m.create(peer, expires_at)),
            Store::Redis(r) => r.create(peer, expires_at).await,
        }
    }

    /// The session called `id` held here, if any (expired or not: expiry is
    /// the engine's rule).
    pub(crate) fn find(&self, id: &str) -> Option<Arc<Session>> {
        self.local().find(id)
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
            Store::Redis(r) => {
                r.subscribe(session, pattern, max_per_session, max_total)
                    .await
            }
        }
    }

    /// Replaces what `session` may read (it presented a token); a shared
    /// store records it too, so whichever process serves the session next
    /// enforces the same grants and expiry.
    pub(crate) async fn grant(
        &self,
        session: &Arc<Session>,
        grant: SessionGrant,
    ) -> Result<(), Failure> {
        if let Store::Redis(r) = self {
            r.save_grant(session, &grant).await?;
        }
        session.set_grant(grant);
        Ok(())
    }

    /// Unsubscribes `session` from `pattern`; true when it was subscribed.
    pub(crate) async fn unsubscribe(
        &self,
        session: &Arc<Session>,
        pattern: &str,
    ) -> Result<bool, Failure> {
        match self {
            Store::Memory(m) => Ok(m.unsubscribe(session, pattern)),
            Store::Redis(r) => r.unsubscribe(session, pattern).await,
        }
    }

    /// Routes one event published to the concrete channel `name`; the sessions
    /// held here that must get it now (none for a shared store, whose log
    /// reader delivers). An error means the event was not published.
    pub(crate) async fn publish(
        &self,
        name: &str,
        event: &Bytes,
    ) -> Result<Vec<Arc<Session>>, Failure> {
        match self {
            Store::Memory(m) => Ok(m.recipients(name)),
            Store::Redis(r) => r.append(name, event).await.map(|()| Vec::new()),
        }
    }

    /// Forgets `session` (already ended) and its subscriptions here.
    /// Synchronous, so a route can be retired from anywhere.
    pub(crate) fn remove(&self, session: &Arc<Session>, subscriptions: &[Arc<str>]) {
        self.local().remove(session, subscriptions)
    }

    /// Every session held here.
    pub(crate) fn sessions(&self) -> Vec<Arc<Session>> {
        self.local().sessions()
    }

    /// Live sessions held here.
    pub(crate) fn len(&self) -> usize {
        self.local().len()
    }

    /// (pattern, session) subscription pairs held here.
    pub(crate) fn subscriptions(&self) -> usize {
        self.local().subscriptions()
    }
}
