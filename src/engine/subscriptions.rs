//! The channel → subscribers index of one engine.
//!
//! Keys are the exact strings clients subscribed to (names and patterns); a
//! publication looks up the handful of keys `bayeux::channel::expand` yields, so
//! wildcard routing costs a few hash lookups whatever the number of patterns.
//! The index is split into shards, each behind its own read-write lock, so
//! publishes to different channels never contend and a publish only takes read
//! locks. Lock order: a client's state lock may be held while taking a shard
//! lock (subscribe), never the other way round.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use parking_lot::RwLock;

use super::client::Client;

const SHARDS: usize = 16;

type Subscribers = HashMap<u64, Arc<Client>>;
type Shard = RwLock<HashMap<Arc<str>, Subscribers>>;

#[derive(Debug)]
pub(crate) struct Index {
    hasher: RandomState,
    shards: Box<[Shard]>,
}

impl Index {
    pub(crate) fn new() -> Self {
        Index {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % SHARDS]
    }

    pub(crate) fn insert(&self, key: &Arc<str>, client: &Arc<Client>) {
        self.shard(key)
            .write()
            .entry(key.clone())
            .or_default()
            .insert(client.serial, client.clone());
    }

    pub(crate) fn remove(&self, key: &str, serial: u64) {
        let mut shard = self.shard(key).write();
        if let Some(set) = shard.get_mut(key) {
            set.remove(&serial);
            if set.is_empty() {
                shard.remove(key);
            }
        }
    }

    /// Every distinct client subscribed to any of `keys`.
    pub(crate) fn collect(&self, keys: &[String]) -> Vec<Arc<Client>> {
        let mut out: Vec<Arc<Client>> = Vec::new();
        let mut sources = 0;
        for key in keys {
            let shard = self.shard(key).read();
            if let Some(set) = shard.get(key.as_str()) {
                if !set.is_empty() {
                    sources += 1;
                    out.extend(set.values().cloned());
                }
            }
        }
        if sources > 1 {
            // A client with several matching subscriptions gets one copy.
            out.sort_unstable_by_key(|c| c.serial);
            out.dedup_by_key(|c| c.serial);
        }
        out
    }

    /// Number of (channel, client) pairs, for metrics.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().values().map(HashMap::len).sum::<usize>())
            .sum()
    }
}
