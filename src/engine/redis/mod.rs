//! The Redis store: several bayeux-edge processes ("nodes") serve one route,
//! and any node serves any request of any client.
//!
//! # Design: one log per route, one cursor per session
//!
//! Of the two designs weighed for this (a shared log with per-session cursors,
//! or Redis pub/sub with a home node per session and a hand-off on every move),
//! this is the log: a client's mobility then needs no protocol between nodes,
//! only Redis, and a node that dies takes nothing with it that Redis does not
//! also hold. The price is a replay scan when a client moves, bounded by the
//! log's length.
//!
//! Keys, under the route's namespace `ns` (default `bayeux-edge:{prefix}:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `ns log` | stream | every publish: `c` = channel, `m` = the event's JSON, serialized once; trimmed to about `redis_stream_max_len` entries |
//! | `ns s:{clientId}` | hash | the session: `node` (which node serves it now) and one field `s:{pattern}` per subscription, valued with the log position at which it was made; under a `jwt` subscribe policy `g`, what the session's token grants and until when (so every node enforces the same grants and expiry); expires `2 × timeout` after the last handshake or connect (`PEXPIRE`) |
//! | `ns cursors` | hash | per clientId, the log position up to which the client was handed everything it should get |
//! | `ns sweep` | string | the sweeper's lock (`SET NX PX`) |
//! | `ns notify` | pub/sub channel | each publish's entry (`{id}\n{channel}\n{event}`), announced to every node |
//!
//! Commands per operation:
//!
//! | operation | Redis commands |
//! |---|---|
//! | publish | **one script** (`EVALSHA`: `XADD … MAXLEN ~ N` and `PUBLISH` of the entry, atomically, so announcements come in log order), whatever the recipients or nodes |
//! | delivery | none: each node is subscribed to the route's announcements and hands each entry to its *local* sessions whose subscriptions match, through the same local index and bounded mailbox as the memory store; after a reconnect it catches up with `XRANGE` from the last position it dispatched, and after a second without announcements it compares its position with the log's end (one command) |
//! | handshake | one script: create the session hash, set its TTL, set its cursor to the log's end |
//! | connect | one script (`touch`): refresh the TTL, save the cursor, and say whether another node served the client since |
//! | long-poll answer with events | one `HSET` of the cursor, before the answer is written |
//! | WebSocket / EventSource delivery | one `HSET` per node per `redis_cursor_flush` (250 ms) for all its sessions that got events, plus one at close and at drain |
//! | subscribe / unsubscribe | one script / one `HDEL` (plus one script recording the grant when a subscribe presents a token) |
//! | a client reaching a node that does not hold it | one script (load: session, cursor, log start) and `XRANGE` reads of the log after the cursor, 1000 entries per read |
//! | disconnect | `DEL` + `HDEL` |
//! | cleanup | the session hash expires in Redis itself; one node at a time (lock) sweeps the cursors of expired sessions once a minute |
//!
//! # Exactly once
//!
//! Every entry has a position (its stream id) and the log's order is the
//! publish order everywhere: a node's own publishes reach its subscribers
//! through its reader too, and announcements leave Redis in log order (the
//! append and the announcement are one script). Why announcements rather
//! than each node reading the log: a blocking read is one command per node
//! per wake-up, so at modest publish rates the cost per publish grows with
//! the nodes; an announcement reaches every node for the one command of the
//! publish. The log stays the source of truth for replays and catch-ups. A session holds `seen`, the newest position offered
//! to it; an entry at or below it is never queued again, so the replay of a
//! moving client and the live reader, which may both offer one entry, queue
//! it once. A client loaded on a node is indexed for live delivery only once
//! its replay has read the log at least as far as the node's reader has
//! dispatched (checked under the reader's lock, repeated a few times on a busy
//! log), so nothing falls between the two. The cursor saved in Redis never
//! passes an event not yet handed to a transport: it is the position of the
//! last event handed out, or, when nothing is queued, the reader's position.
//! It is written before a long-poll answer leaves, and for streams at close and
//! drain, so a client that moves (or is moved by a drain) resumes exactly
//! after what it got. A connect on a node whose local copy is stale (the
//! session's `node` names another node) throws the copy away and reloads it,
//! so a client that comes back never gets again what another node delivered.
//!
//! Not exactly once, and by how much:
//! - `kill -9` of a node (or its network) with WebSocket/EventSource clients:
//!   events handed out after the node's last cursor flush (at most
//!   `redis_cursor_flush`, 250 ms, plus one Redis round trip) are delivered
//!   again by the node the client reconnects to; events queued on the dead node
//!   but not yet handed out are replayed, not lost. Everything published after
//!   the client reconnected is delivered.
//! - A WebSocket that drops (not a drain) and reconnects elsewhere before the
//!   old node noticed the close may likewise get the last flush window again.
//! - A long-poll whose HTTP connection dies while its answer is written loses
//!   that answer's events, as with the memory store.
//! - An EventSource stream on one node with its heartbeat connects reaching
//!   another: the other node serves those connects too, so events can be
//!   delivered by both.
//! - A client away for longer than the log covers (`redis_stream_max_len`
//!   entries on the whole route) gets what the log still holds; the gap is
//!   counted (`bayeux_edge_redis_replay_gaps_total`) and logged, never silent.
//! - Mailbox bounds apply to replays too: the oldest events beyond them are
//!   dropped and counted, as in memory.
//!
//! # Bounds
//!
//! The log is trimmed to about `redis_stream_max_len` entries; a session's
//! hash holds at most `max_subscriptions` subscriptions (checked in the
//! subscribe script too); a replay lands in the session's bounded mailbox;
//! at most [`link::MAX_IN_FLIGHT`] commands wait for Redis per route and node,
//! and none while Redis is unreachable; announcements a node has not read yet
//! are bounded by Redis's own output-buffer limit for subscribers, past which
//! Redis closes the connection and the node catches up from the log.
//!
//! # Lifetimes
//!
//! A session is removed cluster-wide by Redis itself when its hash expires
//! (Faye's rule: `2 × timeout` after its last connect), which happens exactly
//! once whatever the number of nodes; `/meta/disconnect` deletes it. Nodes
//! keep local copies of the sessions they served, which expire locally on the
//! same rule and never delete the shared record: a client that moved on is
//! alive elsewhere. What the hash expiry leaves behind (the session's entry in
//! `cursors`) is swept by one node at a time under a lock, in bounded steps.
//!
//! # When Redis is unreachable
//!
//! Publishes, handshakes, subscribes and loads of clients this node does not
//! hold get `503:…:Storage unavailable`, never an acknowledgement followed by
//! silence. Connects of sessions held here are answered from local state
//! (heartbeats), so connected clients stay connected and keep their
//! subscriptions; a connect for a client this node does not hold gets the error
//! with `reconnect: retry` advice, so the client keeps its id and tries again.
//! Commands fail fast while the link is down (nothing queues), `/readyz`
//! answers 503 naming the route, and `/metrics` has the route's Redis state and
//! error count. The link reconnects with back-off; the reader subscribes
//! again and catches up from the last position it dispatched, so entries
//! published meanwhile through other nodes are delivered. A publish whose
//! reply was lost (Redis died after appending, or the reply timed out) is
//! reported as refused though it may still be delivered: a publisher that
//! retries may then deliver twice. A Redis that lost its data (restarted without persistence)
//! has lost its sessions: their clients are told to handshake again.

mod engine;
mod link;
mod log;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ::redis::{Client, Script, Value};
use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::memory::Memory;
use super::peers::PeerKey;
use super::session::{Session, Subscribed};
use crate::auth::{Grants, SessionGrant};
use crate::bayeux::client_id;
use crate::config::{EngineSettings, RedisTarget};
pub(crate) use link::Failure;
use link::Link;
use log::{format_id, pos_of, text_of};

/// A publish: appends the event to the log and announces it, entry and all,
/// on the route's pub/sub channel, atomically, so every node receives the
/// entries in log order without a read of its own.
const APPEND: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'c', ARGV[2], 'm', ARGV[3])
redis.call('PUBLISH', ARGV[4], id .. '\n' .. ARGV[2] .. '\n' .. ARGV[3])
return id
";

/// Creates a session: its hash (with the serving node and TTL) and its cursor
/// at the log's current end. Nil when the id is taken.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local pos = '0-0'
if #last > 0 then pos = last[1][1] end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], pos)
return pos
";

/// Loads a session onto this node: marks it served here, refreshes its TTL,
/// and returns its cursor, the log's first position and the hash. Nil when it
/// does not exist.
const LOAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or '0-0'
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
local f = ''
if #first > 0 then f = first[1][1] end
return {cur, f, redis.call('HGETALL', KEYS[1])}
";

/// A connect: 0 when the session is gone, 2 when another node served it since
/// (this node's copy is stale), else 1 after refreshing the TTL and saving the
/// cursor.
const TOUCH: &str = r"
local n = redis.call('HGET', KEYS[1], 'node')
if not n then return 0 end
if n ~= ARGV[2] then return 2 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return 1
";

/// Adds a subscription (field, value = the log's end) unless the session is
/// gone (0) or holds its maximum (-1); 1 when it is there.
const SUBSCRIBE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
local other = 1 + redis.call('HEXISTS', KEYS[1], 'g')
if redis.call('HLEN', KEYS[1]) - other >= tonumber(ARGV[2]) then return -1 end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local pos = '0-0'
if #last > 0 then pos = last[1][1] end
redis.call('HSET', KEYS[1], ARGV[1], pos)
return 1
";

/// Records what the session's token grants (field `g`) unless the session
/// is gone (0), so a node that loads it later enforces the same grants and
/// the same expiry.
const GRANT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'g', ARGV[1])
return 1
";

/// Saves cursors of the sessions this node still serves (`node` is this
/// one): a drain must not overwrite what the node a client moved to saved.
const SAVE_MINE: &str = r"
for i = 3, #ARGV, 2 do
  if redis.call('HGET', ARGV[1] .. ARGV[i], 'node') == ARGV[2] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
";

/// One bounded step of the sweep: drops the cursors of sessions whose hash
/// expired; returns the next scan cursor (`0` when done).
const SWEEP: &str = r"
local r = redis.call('HSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
for i = 1, #r[2], 2 do
  local id = r[2][i]
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then redis.call('HDEL', KEYS[1], id) end
end
return r[1]
";

/// Key names of one route.
#[derive(Debug)]
struct Keys {
    log: String,
    /// The pub/sub channel announcing new entries (not a key).
    notify: String,
    cursors: String,
    sweep: String,
    session_prefix: String,
}

impl Keys {
    fn new(ns: &str) -> Self {
        Keys {
            log: format!("{ns}log"),
            notify: format!("{ns}notify"),
            cursors: format!("{ns}cursors"),
            sweep: format!("{ns}sweep"),
            session_prefix: format!("{ns}s:"),
        }
    }

    fn session(&self, id: &str) -> String {
        format!("{}{id}", self.session_prefix)
    }
}

#[derive(Debug)]
struct Scripts {
    append: Script,
    create: Script,
    load: Script,
    touch: Script,
    subscribe: Script,
    grant: Script,
    save_mine: Script,
    sweep: Script,
}

/// What a connect learned about a session held here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Touched {
    /// This node serves it; its TTL was refreshed.
    Current,
    /// It ended cluster-wide (expired or disconnected).
    Gone,
    /// Another node served it since: the local copy is stale.
    Moved,
}

/// A session as stored in Redis, before it is held here.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) cursor: u128,
    /// The log's first position, when it has entries.
    pub(crate) first: Option<u128>,
    /// Subscriptions and the log position each was made at.
    pub(crate) subscriptions: Vec<(String, u128)>,
    /// What the session's token grants, if it presented one.
    pub(crate) grant: Option<SessionGrant>,
}

/// The session hash's field holding its grant.
const GRANT_FIELD: &str = "g";

/// Subscription fields in a session hash start with this.
const SUB_FIELD: &str = "s:";

/// The reader has not read the log's end yet.
const UNSTARTED: u128 = u128::MAX;

/// The Redis store of one route on this node.
#[derive(Debug)]
pub(crate) struct Redis {
    target: RedisTarget,
    /// The sessions held here and the local subscription index.
    local: Memory,
    link: Link,
    /// This node, as recorded in the sessions it serves.
    node: String,
    keys: Keys,
    scripts: Scripts,
    /// The reader's lock, holding the position up to which every log entry
    /// was offered to the local sessions ([`UNSTARTED`] before the first read).
    position: Mutex<u128>,
    /// True while the reader's connection works.
    reading: AtomicBool,
    gaps: AtomicU64,
    settings: Arc<ArcSwap<EngineSettings>>,
}

impl Redis {
    /// A store for `target`; nothing is connected until the engine's
    /// background tasks start.
    pub(crate) fn new(
        target: RedisTarget,
        settings: Arc<ArcSwap<EngineSettings>>,
    ) -> Result<Redis, String> {
        let client = match &target.ca_pem {
            None => Client::open(target.url.as_str()),
            Some(pem) => Client::build_with_tls(
                target.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
        .map_err(|e| format!("{}: unusable Redis URL ({:?})", target.url_env, e.kind()))?;
        let node = {
            let id = client_id::generate();
            id[..12].to_owned()
        };
        Ok(Redis {
            keys: Keys::new(&target.namespace),
            target,
            local: Memory::new(),
            link: Link::new(client),
            node,
            scripts: Scripts {
                append: Script::new(APPEND),
                create: Script::new(CREATE),
                load: Script::new(LOAD),
                touch: Script::new(TOUCH),
                subscribe: Script::new(SUBSCRIBE),
                grant: Script::new(GRANT),
                save_mine: Script::new(SAVE_MINE),
                sweep: Script::new(SWEEP),
            },
            position: Mutex::new(UNSTARTED),
            reading: AtomicBool::new(false),
            gaps: AtomicU64::new(0),
            settings,
        })
    }

    /// The target this store was built for (a reload compares it).
    pub(crate) fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The sessions held here.
    pub(crate) fn local(&self) -> &Memory {
        &self.local
    }

    fn command_timeout(&self) -> Duration {
        self.settings.load().redis_timeout
    }

    fn ttl_ms(&self) -> u64 {
        self.settings.load().session_lifetime().as_millis() as u64
    }

    /// True when the route can serve: Redis reachable and the log being read.
    pub(crate) fn is_ready(&self) -> bool {
        self.link.is_up() && self.reading.load(Ordering::Relaxed) && self.started()
    }

    fn started(&self) -> bool {
        *self.position.lock() != UNSTARTED
    }

    /// Figures for `/metrics`: (up, errors, replay gaps).
    pub(crate) fn figures(&self) -> (bool, u64, u64) {
        (
            self.is_ready(),
            self.link.errors(),
            self.gaps.load(Ordering::Relaxed),
        )
    }

    /// The cursor to save for `session` now (see [`Session::cursor`]).
    pub(crate) fn cursor_of(&self, session: &Session) -> u128 {
        let reader = *self.position.lock();
        session.cursor(if reader == UNSTARTED { 0 } else { reader })
    }

    /// Handshake: a new session in Redis and here.
    pub(crate) async fn create(
        &self,
        peer: Option<PeerKey>,
        expires_at: Instant,
    ) -> Result<Arc<Session>, Failure> {
        // A session created before the reader knows where the log ends could
        // miss what is published in between.
        if !self.started() {
            return Err(Failure::Down);
        }
        let (timeout, ttl) = (self.command_timeout(), self.ttl_ms());
        for _ in 0..4 {
            let id = client_id::generate();
            let key = self.keys.session(&id);
            let (key_ref, id_ref) = (&key, &id);
            let reply: Value = self
                .link
                .run(timeout, |mut c| async move {
                    self.scripts
                        .create
                        .key(key_ref)
                        .key(&self.keys.cursors)
                        .key(&self.keys.log)
                        .arg(id_ref)
                        .arg(&self.node)
                        .arg(ttl)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            let Some(pos) = pos_of(&reply) else {
                continue;
            };
            if let Some(session) = self
                .local
                .insert_new(Arc::from(id.as_str()), peer, expires_at)
            {
                session.start_at(pos);
                return Ok(session);
            }
        }
        Err(Failure::Refused)
    }

    /// Reads a session's record and marks it served by this node. `None` when
    /// it does not exist (or the id cannot be one).
    pub(crate) async fn load_record(&self, id: &str) -> Result<Option<Record>, Failure> {
        if !plausible_id(id) {
            return Ok(None);
        }
        let key = self.keys.session(id);
        let (timeout, ttl) = (self.command_timeout(), self.ttl_ms());
        let reply: Value = self
            .link
            .run(timeout, |mut c| async move {
                self.scripts
                    .load
                    .key(&key)
                    .key(&self.keys.cursors)
                    .key(&self.keys.log)
                    .arg(id)
                    .arg(&self.node)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let Value::Array(mut parts) = reply else {
            return Ok(None);
        };
        if parts.len() != 3 {
            return Err(Failure::Refused);
        }
        let hash = parts.pop();
        let first = parts.pop().as_ref().and_then(pos_of);
        let cursor = parts.pop().as_ref().and_then(pos_of).unwrap_or(0);
        let mut subscriptions = Vec::new();
        let mut grant = None;
        if let Some(Value::Array(fields)) = hash {
            let mut it = fields.iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if text_of(k).as_deref() == Some(GRANT_FIELD) {
                    grant = text_of(v).as_deref().and_then(decode_grant);
                } else if let Some(pattern) =
                    text_of(k).and_then(|k| k.strip_prefix(SUB_FIELD).map(str::to_owned))
                {
                    subscriptions.push((pattern, pos_of(v).unwrap_or(0)));
                }
            }
        }
        Ok(Some(Record {
            cursor,
            first,
            subscriptions,
            grant,
        }))
    }

    /// Up to `count` log entries after `from`.
    pub(crate) async fn read_after(&self, from: u128, count: usize) -> Result<Value, Failure> {
        let start = format!("({}", format_id(from));
        self.link
            .run(self.command_timeout(), |mut c| async move {
                ::redis::cmd("XRANGE")
                    .arg(&self.keys.log)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut c)
                    .await
            })
            .await
    }

    /// Installs a loaded session once the replay read the log up to `read`:
    /// only when the reader has not dispatched past it (else `None`: read
    /// more and try again). Returns the session held here under that id (an
    /// earlier copy wins over `session`, which is then dropped unused).
    pub(crate) fn install(
        &self,
        session: Arc<Session>,
        read: u128,
        subscriptions: &[(String, u128)],
        max_per_session: usize,
        max_total: usize,
    ) -> Option<Arc<Session>> {
        let position = self.position.lock();
        if *position == UNSTARTED || *position > read {
            return None;
        }
        let held = self.local.insert(session.clone());
        if Arc::ptr_eq(&held, &session) {
            for (pattern, _) in subscriptions {
                self.local
                    .subscribe(&held, pattern, max_per_session, max_total);
            }
        }
        drop(position);
        Some(held)
    }

    /// Connect: refreshes the session's TTL and saves its cursor.
    pub(crate) async fn touch(&self, session: &Session) -> Result<Touched, Failure> {
        let key = self.keys.session(session.id());
        let cursor = format_id(self.cursor_of(session));
        let (timeout, ttl) = (self.command_timeout(), self.ttl_ms());
        let answer: i64 = self
            .link
            .run(timeout, |mut c| async move {
                self.scripts
                    .touch
                    .key(&key)
                    .key(&self.keys.cursors)
                    .arg(session.id())
                    .arg(&self.node)
                    .arg(ttl)
                    .arg(&cursor)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match answer {
            0 => Touched::Gone,
            2 => Touched::Moved,
            _ => Touched::Current,
        })
    }

    /// Subscribes here and in Redis; a Redis failure undoes the local part.
    pub(crate) async fn subscribe(
        &self,
        session: &Arc<Session>,
        pattern: &str,
        max_per_session: usize,
        max_total: usize,
    ) -> Subscribed {
        let local = self
            .local
            .subscribe(session, pattern, max_per_session, max_total);
        if !matches!(local, Subscribed::Added | Subscribed::Already) {
            return local;
        }
        let key = self.keys.session(session.id());
        let field = format!("{SUB_FIELD}{pattern}");
        let answer: Result<i64, Failure> = self
            .link
            .run(self.command_timeout(), |mut c| async move {
                self.scripts
                    .subscribe
                    .key(&key)
                    .key(&self.keys.log)
                    .arg(&field)
                    .arg(max_per_session)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        let outcome = match answer {
            Ok(1) => return local,
            Ok(0) => Subscribed::Gone,
            Ok(_) => Subscribed::SessionFull,
            Err(_) => Subscribed::Unavailable,
        };
        if local == Subscribed::Added {
            self.local.unsubscribe(session, pattern);
        }
        outcome
    }

    /// Records `grant` as the session's in Redis; false when the session is
    /// gone there.
    pub(crate) async fn save_grant(
        &self,
        session: &Session,
        grant: &SessionGrant,
    ) -> Result<bool, Failure> {
        let key = self.keys.session(session.id());
        let value = encode_grant(grant);
        let answer: i64 = self
            .link
            .run(self.command_timeout(), |mut c| async move {
                self.scripts
                    .grant
                    .key(&key)
                    .arg(&value)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(answer == 1)
    }

    /// Unsubscribes here and in Redis.
    pub(crate) async fn unsubscribe(
        &self,
        session: &Arc<Session>,
        pattern: &str,
    ) -> Result<bool, Failure> {
        let key = self.keys.session(session.id());
        let field = format!("{SUB_FIELD}{pattern}");
        self.link
            .run(self.command_timeout(), |mut c| async move {
                ::redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&field)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(self.local.unsubscribe(session, pattern))
    }

    /// Appends one event to the log and announces it: the single command
    /// (one script) of a publish.
    pub(crate) async fn append(&self, channel: &str, event: &Bytes) -> Result<(), Failure> {
        let settings = self.settings.load();
        let max_len = settings.redis_stream_max_len;
        self.link
            .run(settings.redis_timeout, |mut c| async move {
                self.scripts
                    .append
                    .key(&self.keys.log)
                    .arg(max_len)
                    .arg(channel)
                    .arg(&event[..])
                    .arg(&self.keys.notify)
                    .invoke_async::<Value>(&mut c)
                    .await
            })
            .await
            .map(|_| ())
    }

    /// True when the log's first entry is after `pos` (it was trimmed past it).
    pub(crate) async fn log_start_after(&self, pos: u128) -> Result<bool, Failure> {
        let reply: Value = self
            .link
            .run(self.command_timeout(), |mut c| async move {
                ::redis::cmd("XRANGE")
                    .arg(&self.keys.log)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(log::entries(reply).1.is_some_and(|first| first > pos))
    }

    /// The last position of the log (`0` when empty).
    pub(crate) async fn log_end(&self) -> Result<u128, Failure> {
        let reply: Value = self
            .link
            .run(self.command_timeout(), |mut c| async move {
                ::redis::cmd("XREVRANGE")
                    .arg(&self.keys.log)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(log::entries(reply).1.unwrap_or(0))
    }

    /// Saves cursors, all in one command.
    pub(crate) async fn save_cursors(&self, cursors: &[(Arc<str>, u128)]) -> Result<(), Failure> {
        if cursors.is_empty() {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("HSET");
        cmd.arg(&self.keys.cursors);
        for (id, pos) in cursors {
            cmd.arg(&**id).arg(format_id(*pos));
        }
        let cmd = &cmd;
        self.link
            .run(self.command_timeout(), |mut c| async move {
                cmd.query_async::<i64>(&mut c).await
            })
            .await
            .map(|_| ())
    }

    /// Saves the cursors of those of `cursors` this node still serves (drain).
    pub(crate) async fn save_cursors_if_mine(
        &self,
        cursors: &[(Arc<str>, u128)],
    ) -> Result<(), Failure> {
        if cursors.is_empty() {
            return Ok(());
        }
        let mut invocation = self.scripts.save_mine.prepare_invoke();
        invocation
            .key(&self.keys.cursors)
            .arg(&self.keys.session_prefix)
            .arg(&self.node);
        for (id, pos) in cursors {
            invocation.arg(&**id).arg(format_id(*pos));
        }
        let invocation = &invocation;
        self.link
            .run(self.command_timeout(), |mut c| async move {
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await
            .map(|_| ())
    }

    /// Ends a session cluster-wide (`/meta/disconnect`).
    pub(crate) async fn end_shared(&self, id: &str) -> Result<(), Failure> {
        let key = self.keys.session(id);
        self.link
            .run(self.command_timeout(), |mut c| async move {
                ::redis::pipe()
                    .cmd("DEL")
                    .arg(&key)
                    .ignore()
                    .cmd("HDEL")
                    .arg(&self.keys.cursors)
                    .arg(id)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    /// One sweep of the cursors of expired sessions, if this node wins the
    /// lock; bounded to `max_steps` steps of 500 cursors.
    pub(crate) async fn sweep(&self, lock_for: Duration, max_steps: usize) -> Result<(), Failure> {
        let timeout = self.command_timeout();
        let won: Option<String> = self
            .link
            .run(timeout, |mut c| async move {
                ::redis::cmd("SET")
                    .arg(&self.keys.sweep)
                    .arg(&self.node)
                    .arg("NX")
                    .arg("PX")
                    .arg(lock_for.as_millis() as u64)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if won.is_none() {
            return Ok(());
        }
        let mut scan = "0".to_owned();
        for _ in 0..max_steps {
            let arg = scan.clone();
            let next: String = self
                .link
                .run(timeout, |mut c| async move {
                    self.scripts
                        .sweep
                        .key(&self.keys.cursors)
                        .arg(&self.keys.session_prefix)
                        .arg(&arg)
                        .arg(500)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            if next == "0" {
                break;
            }
            scan = next;
        }
        Ok(())
    }
}

/// True when `id` could be a client id this server generated: anything else
/// is unknown without asking Redis.
fn plausible_id(id: &str) -> bool {
    id.len() == client_id::CLIENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// A grant as stored in a session hash: `{"u": <valid until, ms since the
/// epoch>, "p": [<patterns>]}`.
fn encode_grant(grant: &SessionGrant) -> String {
    let until = grant
        .valid_until
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let patterns: Vec<&str> = grant.grants.iter().collect();
    serde_json::json!({ "u": until, "p": patterns }).to_string()
}

/// The grant [`encode_grant`] stored; `None` for anything else. Patterns
/// are checked again on the way in, as from a token.
fn decode_grant(text: &str) -> Option<SessionGrant> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let until = value.get("u")?.as_u64()?;
    let patterns = value.get("p")?.as_array()?;
    Some(SessionGrant {
        grants: Grants::from_patterns(patterns.iter().filter_map(|p| p.as_str())),
        valid_until: UNIX_EPOCH + Duration::from_millis(until),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_survives_its_stored_form() {
        let grant = SessionGrant {
            grants: Grants::from_patterns(["/12345", "/team/7/**"]),
            valid_until: UNIX_EPOCH + Duration::from_millis(1_900_000_000_123),
        };
        assert_eq!(decode_grant(&encode_grant(&grant)), Some(grant));
        assert_eq!(decode_grant("{\"u\":1}"), None);
        assert_eq!(decode_grant("not json"), None);
    }
}
