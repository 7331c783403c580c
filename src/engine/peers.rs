//! Admission of new sessions per client address, so one peer cannot take a
//! route's whole session table.
//!
//! Each address (an IPv4 address, or the /64 network of an IPv6 address, which
//! one subscriber line usually owns whole) has a token bucket of handshakes and
//! a count of live sessions. A handshake takes a token and a session slot; the
//! slot is given back when the session ends. Entries whose sessions are gone and
//! whose bucket has refilled carry no information and are pruned by the
//! sweeper, so the table never holds more addresses than there were sessions
//! plus recent handshakes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

const SHARDS: usize = 16;

/// What an address is accounted under: IPv4 as is, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKey(IpAddr);

impl PeerKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                PeerKey(IpAddr::V6(bits.into()))
            }
            v4 => PeerKey(v4),
        }
    }
}

/// The per-address limits of a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerLimits {
    /// Live sessions one address may hold.
    pub max_sessions: usize,
    /// Handshakes per second one address may make, on average.
    pub handshake_rate: f64,
    /// Handshakes one address may make at once after a quiet period.
    pub handshake_burst: f64,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// The address handshakes faster than its rate; try again after this long.
    Rate(Duration),
    /// The address holds its maximum of sessions.
    Sessions,
}

#[derive(Debug)]
struct Peer {
    sessions: usize,
    tokens: f64,
    refilled: Instant,
}

impl Peer {
    fn refill(&mut self, limits: &PeerLimits, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limits.handshake_rate).min(limits.handshake_burst);
        self.refilled = now;
    }
}

/// The per-address table of one engine.
#[derive(Debug)]
pub(crate) struct Peers {
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<PeerKey, Peer>>]>,
}

impl Peers {
    pub(crate) fn new() -> Self {
        Peers {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &PeerKey) -> &Mutex<HashMap<PeerKey, Peer>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Takes a handshake token and a session slot for `key`, or says why not.
    pub(crate) fn admit(&self, key: PeerKey, limits: &PeerLimits) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut shard = self.shard(&key).lock();
        let peer = shard.entry(key).or_insert(Peer {
            sessions: 0,
            tokens: limits.handshake_burst,
            refilled: now,
        });
        peer.refill(limits, now);
        if peer.sessions >= limits.max_sessions {
            return Err(Refusal::Sessions);
        }
        if peer.tokens < 1.0 {
            let wait = (1.0 - peer.tokens) / limits.handshake_rate.max(f64::MIN_POSITIVE);
            return Err(Refusal::Rate(Duration::from_secs_f64(wait.min(3600.0))));
        }
        peer.tokens -= 1.0;
        peer.sessions += 1;
        Ok(())
    }

    /// Gives back the session slot of a session of `key` that ended.
    pub(crate) fn release(&self, key: PeerKey) {
        if let Some(peer) = self.shard(&key).lock().get_mut(&key) {
            peer.sessions = peer.sessions.saturating_sub(1);
        }
    }

    /// Drops entries with no session and a full bucket.
    pub(crate) fn prune(&self, limits: &PeerLimits) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            shard.lock().retain(|_, peer| {
                peer.refill(limits, now);
                peer.sessions > 0 || peer.tokens < limits.handshake_burst
            });
        }
    }

    /// Addresses currently tracked.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PeerLimits = PeerLimits {
        max_sessions: 3,
        handshake_rate: 2.0,
        handshake_burst: 4.0,
    };

    fn ip(s: &str) -> PeerKey {
        PeerKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_by_network_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::2"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_and_rate_are_bounded_per_address() {
        let peers = Peers::new();
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            peers.admit(a, &LIMITS).unwrap();
        }
        assert_eq!(peers.admit(a, &LIMITS), Err(Refusal::Sessions));
        assert!(
            peers.admit(ip("10.0.0.2"), &LIMITS).is_ok(),
            "others unaffected"
        );
        peers.release(a);
        // One token left of the burst of four.
        peers.admit(a, &LIMITS).unwrap();
        peers.release(a);
        match peers.admit(a, &LIMITS) {
            Err(Refusal::Rate(wait)) => assert_eq!(wait, Duration::from_millis(500)),
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        peers.admit(a, &LIMITS).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_entries_are_pruned() {
        let peers = Peers::new();
        let a = ip("10.0.0.1");
        peers.admit(a, &LIMITS).unwrap();
        peers.prune(&LIMITS);
        assert_eq!(peers.len(), 1, "a live session keeps its entry");
        peers.release(a);
        peers.prune(&LIMITS);
        assert_eq!(peers.len(), 1, "the bucket is still refilling");
        tokio::time::advance(Duration::from_secs(1)).await;
        peers.prune(&LIMITS);
        assert_eq!(peers.len(), 0);
    }
}
