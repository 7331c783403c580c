//! The channel → subscribers index of one engine: a trie of channel segments.
//!
//! A subscription is a channel name (`/a/b`) or a pattern ending in `*` (one
//! more segment) or `**` (one or more). Each is stored at the trie node of its
//! literal segments, in one of three sets: `/a/b` in the exact set of node
//! `a/b`, `/a/b/*` in its one-level set, `/a/b/**` in its deep set; `/*` and
//! `/**` belong to the root. A publication to `/s1/…/sn` walks its segments once
//! from the root, taking every deep set on the way, the one-level set of the
//! last segment's parent and the exact set of the last segment. Each segment is
//! hashed once and no key is built, so matching costs time linear in the name's
//! length and allocates only the recipient list, however many patterns exist.
//!
//! Subscriptions reach the index validated and within the route's bound on
//! segments, so the trie's depth (and the recursion that prunes it) is small.
//!
//! The trie is split by first segment into shards, each behind its own
//! read-write lock, and the root's two sets have their own; publishes to
//! different channels rarely meet and a publish takes read locks only. Lock
//! order: a client's state lock may be held while taking an index lock (the
//! client module subscribes under its lock), never the other way round.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::session::Session;

const SHARDS: usize = 16;

/// Hashes client serials, which the engine assigns (never a peer), so a
/// multiplicative mix is enough and the maps carry no per-map random keys.
#[derive(Default)]
struct SerialHasher(u64);

impl Hasher for SerialHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Subscribers = HashMap<u64, Arc<Session>, BuildHasherDefault<SerialHasher>>;

/// Trie nodes by segment.
type Children = HashMap<Box<str>, Node>;

/// Which set of a node a subscription lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/a/b`
    Exact,
    /// `/a/b/*`
    One,
    /// `/a/b/**`
    Deep,
}

/// Splits a valid name or pattern into its literal segments and its kind.
fn parse(pattern: &str) -> (impl Iterator<Item = &str>, Kind) {
    let rest = pattern.strip_prefix('/').unwrap_or(pattern);
    let (literal, kind) = if let Some(base) = rest.strip_suffix("**") {
        (base, Kind::Deep)
    } else if let Some(base) = rest.strip_suffix('*') {
        (base, Kind::One)
    } else {
        (rest, Kind::Exact)
    };
    let literal = literal.strip_suffix('/').unwrap_or(literal);
    let segments = literal.split('/').filter(|s| !s.is_empty());
    (segments, kind)
}

/// One trie node. Channel names are by far the most common subscriptions, so
/// the exact set is inline; wildcard sets and children are boxed until a node
/// has some, which keeps the many leaf nodes small.
#[derive(Debug, Default)]
struct Node {
    children: Option<Box<Children>>,
    exact: Subscribers,
    one: Option<Box<Subscribers>>,
    deep: Option<Box<Subscribers>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.one.is_none()
            && self.deep.is_none()
            && self.children.is_none()
    }

    fn set(&self, kind: Kind) -> Option<&Subscribers> {
        match kind {
            Kind::Exact => Some(&self.exact),
            Kind::One => self.one.as_deref(),
            Kind::Deep => self.deep.as_deref(),
        }
    }

    fn set_mut(&mut self, kind: Kind) -> &mut Subscribers {
        match kind {
            Kind::Exact => &mut self.exact,
            Kind::One => self.one.get_or_insert_with(Box::default),
            Kind::Deep => self.deep.get_or_insert_with(Box::default),
        }
    }

    /// Removes `serial` from the `kind` set, freeing a wildcard set left empty.
    fn remove(&mut self, kind: Kind, serial: u64) -> bool {
        let slot = match kind {
            Kind::Exact => return self.exact.remove(&serial).is_some(),
            Kind::One => &mut self.one,
            Kind::Deep => &mut self.deep,
        };
        let removed = slot
            .as_mut()
            .is_some_and(|set| set.remove(&serial).is_some());
        if slot.as_ref().is_some_and(|set| set.is_empty()) {
            *slot = None;
        }
        removed
    }

    fn child(&self, segment: &str) -> Option<&Node> {
        self.children.as_ref()?.get(segment)
    }

    fn child_mut(&mut self, segment: &str) -> &mut Node {
        self.children
            .get_or_insert_with(Box::default)
            .entry(Box::from(segment))
            .or_default()
    }
}

/// Removes `serial` from the `kind` set of the node at `path` below `children`,
/// pruning nodes left empty. True when something was removed.
fn remove_below(children: &mut Children, path: &[&str], kind: Kind, serial: u64) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let Some(node) = children.get_mut(*first) else {
        return false;
    };
    let removed = if rest.is_empty() {
        node.remove(kind, serial)
    } else {
        let removed = node
            .children
            .as_mut()
            .is_some_and(|c| remove_below(c, rest, kind, serial));
        if node.children.as_ref().is_some_and(|c| c.is_empty()) {
            node.children = None;
        }
        removed
    };
    if node.is_empty() {
        children.remove(*first);
    }
    removed
}

#[derive(Debug)]
pub(crate) struct Index {
    hasher: RandomState,
    /// `/*` and `/**` (its children are the shards below).
    root: RwLock<Node>,
    /// Trie nodes of first segments, by shard.
    shards: Box<[RwLock<Children>]>,
    /// (pattern, client) pairs, for metrics and the route's bound.
    len: AtomicUsize,
}

impl Index {
    pub(crate) fn new() -> Self {
        Index {
            hasher: RandomState::new(),
            root: RwLock::new(Node::default()),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, first: &str) -> &RwLock<Children> {
        let h = self.hasher.hash_one(first) as usize;
        &self.shards[h % SHARDS]
    }

    /// Adds `client` under `pattern` (a valid name or pattern). True when it
    /// was not there yet.
    pub(crate) fn insert(&self, pattern: &str, client: &Arc<Session>) -> bool {
        let (mut segments, kind) = parse(pattern);
        let added = match segments.next() {
            None => self
                .root
                .write()
                .set_mut(kind)
                .insert(client.serial(), client.clone())
                .is_none(),
            Some(first) => {
                let mut shard = self.shard(first).write();
                let mut node = shard.entry(Box::from(first)).or_default();
                for segment in segments {
                    node = node.child_mut(segment);
                }
                node.set_mut(kind)
                    .insert(client.serial(), client.clone())
                    .is_none()
            }
        };
        if added {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        added
    }

    /// Removes the client with `serial` from under `pattern`. True when it was there.
    pub(crate) fn remove(&self, pattern: &str, serial: u64) -> bool {
        let (segments, kind) = parse(pattern);
        let path: Vec<&str> = segments.collect();
        let removed = match path.first() {
            None => self.root.write().remove(kind, serial),
            Some(first) => {
                let mut shard = self.shard(first).write();
                remove_below(&mut shard, &path, kind, serial)
            }
        };
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Every distinct client subscribed to a pattern that matches the concrete
    /// channel `name`, in one pass over its segments.
    pub(crate) fn collect(&self, name: &str) -> Vec<Arc<Session>> {
        let mut out: Vec<Arc<Session>> = Vec::new();
        let Some(rest) = name.strip_prefix('/') else {
            return out;
        };
        let mut sources = 0usize;
        let mut take = |set: Option<&Subscribers>| {
            if let Some(set) = set.filter(|s| !s.is_empty()) {
                sources += 1;
                out.extend(set.values().cloned());
            }
        };
        let count = rest.bytes().filter(|b| *b == b'/').count() + 1;
        {
            let root = self.root.read();
            take(root.set(Kind::Deep));
            if count == 1 {
                take(root.set(Kind::One));
            }
        }
        let mut segments = rest.split('/');
        if let Some(first) = segments.next() {
            let shard = self.shard(first).read();
            let mut node = shard.get(first);
            let mut depth = 1;
            while let Some(n) = node {
                if depth == count {
                    take(n.set(Kind::Exact));
                } else {
                    take(n.set(Kind::Deep));
                    if depth + 1 == count {
                        take(n.set(Kind::One));
                    }
                }
                node = segments.next().and_then(|s| n.child(s));
                depth += 1;
            }
        }
        if sources > 1 {
            // A client with several matching subscriptions gets one copy.
            out.sort_unstable_by_key(|c| c.serial());
            out.dedup_by_key(|c| c.serial());
        }
        out
    }

    /// Number of (pattern, client) pairs.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bayeux::channel;
    use tokio::time::Instant;

    fn client(serial: u64) -> Arc<Session> {
        Arc::new(Session::new(
            Arc::from(format!("c{serial}")),
            serial,
            None,
            Instant::now(),
        ))
    }

    fn serials(index: &Index, name: &str) -> Vec<u64> {
        let mut v: Vec<u64> = index.collect(name).iter().map(|c| c.serial()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn collect_agrees_with_matches() {
        let patterns = [
            "/*", "/**", "/a", "/a/*", "/a/**", "/a/b", "/a/b/*", "/a/b/**", "/b/*", "/a/b/c",
            "/a/c/**",
        ];
        let names = [
            "/a", "/a/b", "/a/b/c", "/b", "/b/x", "/a/c/d/e", "/c", "/a/b/c/d",
        ];
        let index = Index::new();
        let clients: Vec<Arc<Session>> = (0..patterns.len() as u64).map(client).collect();
        for (p, c) in patterns.iter().zip(&clients) {
            assert!(index.insert(p, c));
            assert!(!index.insert(p, c), "second insert of {p} is a no-op");
        }
        assert_eq!(index.len(), patterns.len());
        for name in names {
            let expected: Vec<u64> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| channel::matches(p, name))
                .map(|(i, _)| i as u64)
                .collect();
            assert_eq!(serials(&index, name), expected, "{name}");
        }
    }

    #[test]
    fn one_copy_per_client_and_removal_prunes() {
        let index = Index::new();
        let c = client(7);
        for p in ["/a/**", "/a/b", "/**"] {
            index.insert(p, &c);
        }
        assert_eq!(serials(&index, "/a/b"), [7]);
        assert!(index.remove("/a/b", 7));
        assert!(!index.remove("/a/b", 7));
        assert!(index.remove("/a/**", 7));
        assert!(index.remove("/**", 7));
        assert_eq!(index.len(), 0);
        assert!(serials(&index, "/a/b").is_empty());
        for shard in index.shards.iter() {
            assert!(shard.read().is_empty(), "empty nodes are pruned");
        }
    }

    #[test]
    fn long_names_cost_one_pass() {
        // 100 000 segments: one key per prefix would be ~10 GB of strings.
        let name = "/a".repeat(100_000);
        let index = Index::new();
        index.insert("/a/a/**", &client(1));
        index.insert("/a/a/a", &client(2));
        assert_eq!(serials(&index, &name), [1]);
    }
}
