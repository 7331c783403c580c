//! The in-memory store: the session table and the subscription index of one
//! engine, in this process.
//!
//! The table is split into shards by client id, each behind its own lock, so
//! handshakes and lookups rarely meet; the index is the segment trie of
//! [`super::subscriptions`]. Both hold `Arc<Session>`s; a session's own lock
//! guards its state (see [`super::session`] for the lock order).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::peers::PeerKey;
use super::session::{Session, Subscribed};
use super::subscriptions::Index;
use crate::bayeux::client_id;

const SHARDS: usize = 32;

type Shard = Mutex<HashMap<Arc<str>, Arc<Session>>>;

/// Sessions and subscriptions held in this process.
#[derive(Debug)]
pub(crate) struct Memory {
    hasher: RandomState,
    shards: Box<[Shard]>,
    count: AtomicUsize,
    next_serial: AtomicU64,
    index: Index,
}

impl Memory {
    pub(crate) fn new() -> Self {
        Memory {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            count: AtomicUsize::new(0),
            next_serial: AtomicU64::new(1),
            index: Index::new(),
        }
    }

    fn shard(&self, id: &str) -> &Shard {
        let h = self.hasher.hash_one(id) as usize;
        &self.shards[h % SHARDS]
    }

    pub(crate) fn create(&self, peer: Option<PeerKey>, expires_at: Instant) -> Arc<Session> {
        loop {
            let id: Arc<str> = Arc::from(client_id::generate());
            let mut shard = self.shard(&id).lock();
            if shard.contains_key(&id) {
                continue;
            }
            let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
            let session = Arc::new(Session::new(id.clone(), serial, peer, expires_at));
            shard.insert(id, session.clone());
            self.count.fetch_add(1, Ordering::Relaxed);
            return session;
        }
    }

    /// Adds a session created elsewhere (a shared store's) under its own id;
    /// `None` if a session of that id is held already.
    pub(crate) fn insert_new(
        &self,
        id: Arc<str>,
        peer: Option<PeerKey>,
        expires_at: Instant,
    ) -> Option<Arc<Session>> {
        let mut shard = self.shard(&id).lock();
        if shard.contains_key(&id) {
            return None;
        }
        let session = Arc::new(Session::new(id.clone(), self.serial(), peer, expires_at));
        shard.insert(id, session.clone());
        self.count.fetch_add(1, Ordering::Relaxed);
        Some(session)
    }

    /// Holds `session` unless a live session of its id is held already;
    /// returns the held one. (The shard lock is never held while a session's
    /// lock is taken, so a held copy is looked at between two shard locks.)
    pub(crate) fn insert(&self, session: Arc<Session>) -> Arc<Session> {
        let id: Arc<str> = Arc::from(session.id());
        for _ in 0..4 {
            let held = self.shard(&id).lock().get(&id).cloned();
            if let Some(h) = &held {
                if h.is_alive() {
                    return h.clone();
                }
            }
            let mut shard = self.shard(&id).lock();
            match (&held, shard.get(&id)) {
                (None, None) => {
                    self.count.fetch_add(1, Ordering::Relaxed);
                }
                // An ended copy whose removal is still under way: replace it.
                (Some(h), Some(now)) if Arc::ptr_eq(h, now) => {}
                _ => continue,
            }
            shard.insert(id, session.clone());
            return session;
        }
        // Four races lost in a row: take the place anyway.
        if self.shard(&id).lock().insert(id, session.clone()).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        session
    }

    /// A fresh engine-wide serial for a session built outside this table.
    pub(crate) fn serial(&self) -> u64 {
        self.next_serial.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn find(&self, id: &str) -> Option<Arc<Session>> {
        self.shard(id).lock().get(id).cloned()
    }

    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        pattern: &str,
        max_per_session: usize,
        max_total: usize,
    ) -> Subscribed {
        session.subscribe(pattern, max_per_session, |key| {
            // Read without a lock: concurrent subscribes may pass it together,
            // so the bound can be exceeded by at most the number of threads.
            if self.index.len() >= max_total {
                return false;
            }
            self.index.insert(key, session);
            true
        })
    }

    pub(crate) fn unsubscribe(&self, session: &Arc<Session>, pattern: &str) -> bool {
        session.unsubscribe(pattern, |key| {
            self.index.remove(key, session.serial());
        })
    }

    pub(crate) fn recipients(&self, name: &str) -> Vec<Arc<Session>> {
        self.index.collect(name)
    }

    pub(crate) fn remove(&self, session: &Arc<Session>, subscriptions: &[Arc<str>]) {
        for key in subscriptions {
            self.index.remove(key, session.serial());
        }
        // Only this very session: a shared store may hold a newer copy of the
        // same client by now.
        let mut shard = self.shard(session.id()).lock();
        if shard
            .get(session.id())
            .is_some_and(|held| Arc::ptr_eq(held, session))
        {
            shard.remove(session.id());
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn sessions(&self) -> Vec<Arc<Session>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            all.extend(shard.lock().values().cloned());
        }
        all
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn subscriptions(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::time::Duration;

    /// A subscribe and an unsubscribe of one channel by one session, racing
    /// on two threads, must leave the session's set and the index agreeing:
    /// once the round ends with a subscribe, a publish reaches the session.
    /// (When the unsubscribe removed from the set, let go of the session's
    /// lock and only then removed from the index, a subscribe in between was
    /// undone in the index but not in the set, and re-subscribing was a no-op.)
    #[test]
    fn racing_subscribe_and_unsubscribe_leave_set_and_index_agreeing() {
        const ROUNDS: usize = 20_000;
        let memory = Arc::new(Memory::new());
        let session = memory.create(None, Instant::now() + Duration::from_secs(3600));
        let start = Arc::new(Barrier::new(3));
        let done = Arc::new(Barrier::new(3));
        let racer = |subscribe: bool| {
            let (memory, session) = (memory.clone(), session.clone());
            let (start, done) = (start.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    start.wait();
                    if subscribe {
                        memory.subscribe(&session, "/race", 10, 1000);
                    } else {
                        memory.unsubscribe(&session, "/race");
                    }
                    done.wait();
                }
            })
        };
        let threads = [racer(true), racer(false)];
        let mut lost = Vec::new();
        for round in 0..ROUNDS {
            start.wait();
            done.wait();
            memory.subscribe(&session, "/race", 10, 1000);
            if memory.recipients("/race").is_empty() {
                lost.push(round);
                // Repair so later rounds test afresh.
                memory.index.insert(&Arc::from("/race"), &session);
            }
            memory.unsubscribe(&session, "/race");
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            lost.is_empty(),
            "the subscription was lost in {} of {ROUNDS} rounds (first: {:?})",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }
}
