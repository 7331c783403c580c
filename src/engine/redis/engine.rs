//! The engine's side of the Redis store: loading a client another node
//! served (with its replay), the connect-time resync, cursors handed to Redis,
//! and the two background tasks of a Redis route: the log reader, and the
//! maintenance task (reconnect, cursor flushes, the sweep).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::Value;
use tokio::time::Instant;

use super::log::{entries, format_id, read_reply, Entry};
use super::{Failure, Redis, Touched, UNSTARTED};
use crate::bayeux::channel;
use crate::engine::session::Session;
use crate::engine::{Engine, Inner, Tally};

/// Entries per `XRANGE` of a replay and per `XREAD` of the reader.
const READ_COUNT: usize = 1000;

/// How long the reader's `XREAD` blocks when the log is quiet.
const READ_BLOCK: Duration = Duration::from_secs(1);

/// Pause after a read that returned entries, so a busy log is read in batches:
/// at most one read per window per node, whatever the publish rate.
const READ_BATCH_WINDOW: Duration = Duration::from_millis(5);

/// Attempts of a replay to catch up with the reader before giving up (the
/// client gets a `503` with `retry` advice and comes back).
const CATCH_UP_ROUNDS: usize = 8;

/// Reconnect back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often one node (whichever takes the lock) sweeps cursors of expired sessions.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Bounded sweep: at most this many steps of 500 cursors per pass.
const SWEEP_STEPS: usize = 2000;

impl Engine {
    /// Loads a client this node does not hold from Redis: its record, a
    /// replay of the log after its cursor (filtered by its subscriptions,
    /// into its bounded mailbox), then local indexing for live delivery.
    /// `Ok(None)` when Redis does not know it.
    pub(crate) async fn load_shared(
        &self,
        redis: &Redis,
        id: &str,
    ) -> Result<Option<Arc<Session>>, Failure> {
        let Some(record) = redis.load_record(id).await? else {
            return Ok(None);
        };
        let settings = self.settings();
        let limits = settings.queue_limits();
        let mut subscriptions = record.subscriptions;
        subscriptions.truncate(settings.max_subscriptions);
        if let Some(first) = record.first {
            if record.cursor != 0 && first > record.cursor {
                redis.gaps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    route = %self.inner.name,
                    client_id = %id,
                    cursor = %format_id(record.cursor),
                    log_starts_at = %format_id(first),
                    "client resumed from a position the log no longer holds: events may be missing"
                );
            }
        }
        let session = Arc::new(Session::new(
            Arc::from(id),
            redis.local.serial(),
            None,
            Instant::now() + settings.session_lifetime(),
        ));
        session.start_at(record.cursor);
        let mut read = record.cursor;
        // Each log read is bounded, and so is the log: the loop ends.
        let max_reads = settings.redis_stream_max_len / READ_COUNT + 4;
        let mut tally = Tally::default();
        for _ in 0..CATCH_UP_ROUNDS {
            for _ in 0..max_reads {
                let (batch, last) = entries(redis.read_after(read, READ_COUNT).await?);
                for entry in &batch {
                    let wanted = subscriptions.iter().any(|(p, since)| {
                        entry.pos > *since && channel::matches(p, &entry.channel)
                    });
                    if wanted {
                        let offered = session.offer_at(&entry.event, limits, entry.pos);
                        self.note(&mut tally, &session, offered);
                    }
                }
                match last {
                    Some(last) => {
                        read = last;
                        session.skip_to(last);
                    }
                    None => break,
                }
                if batch.len() < READ_COUNT {
                    break;
                }
            }
            if let Some(held) = redis.install(
                session.clone(),
                read,
                &subscriptions,
                settings.max_subscriptions,
                settings.max_total_subscriptions,
            ) {
                self.settle(tally);
                return Ok(Some(held));
            }
            if *redis.position.lock() == UNSTARTED {
                // The reader has not found the log's end yet (start-up).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(Failure::Down)
    }

    /// The session of a `/meta/connect`. For a Redis route a session held here
    /// is checked against Redis (one script: TTL refreshed, cursor saved): if
    /// it ended cluster-wide it ends here; if another node served it since,
    /// this copy is stale and is reloaded. While Redis is unreachable a session
    /// held here is served from local state.
    pub(crate) async fn connect_session(&self, id: &str) -> Result<Option<Arc<Session>>, Failure> {
        let Some(redis) = self.inner.store.shared() else {
            return self.lookup(id).await;
        };
        if let Some(session) = self.inner.store.find(id) {
            if !self.expire_if_due(&session) {
                match redis.touch(&session).await {
                    Ok(Touched::Current) | Err(_) => return Ok(Some(session)),
                    Ok(Touched::Gone) => {
                        self.destroy(&session);
                        return Ok(None);
                    }
                    Ok(Touched::Moved) => self.destroy(&session),
                }
            }
        }
        self.load_shared(redis, id).await
    }

    /// Ends a session for `/meta/disconnect`: here, and for a Redis route in
    /// Redis too (in the background: the reply does not wait, and if Redis is
    /// unreachable the record expires by itself).
    pub(crate) fn disconnect_session(&self, session: &Arc<Session>) {
        self.destroy(session);
        if self.inner.store.shared().is_none() {
            return;
        }
        let inner = self.inner.clone();
        let id = session.id().to_owned();
        tokio::spawn(async move {
            if let Some(redis) = inner.store.shared() {
                let _ = redis.end_shared(&id).await;
            }
        });
    }

    /// True for a route whose sessions are shared with other processes.
    pub fn is_shared(&self) -> bool {
        self.inner.store.shared().is_some()
    }

    /// Redis routes: whether the route can serve (Redis reachable, log read);
    /// `None` for a memory route.
    pub fn storage_ready(&self) -> Option<bool> {
        self.inner.store.shared().map(Redis::is_ready)
    }

    /// Saves the delivery cursor of `session` now, for a Redis route (a no-op
    /// otherwise): called once a long-poll took its events and before they
    /// are written, and when a stream closes or drains, so the client's next
    /// request, wherever it lands, resumes after exactly what it got.
    pub async fn checkpoint(&self, session: &Session) {
        let Some(redis) = self.inner.store.shared() else {
            return;
        };
        let cursor = redis.cursor_of(session);
        let _ = redis
            .save_cursors(&[(Arc::from(session.id()), cursor)])
            .await;
    }

    /// Saves the cursor of every session held here that this node still
    /// serves (drain), a bounded batch per command.
    pub async fn checkpoint_all(&self) {
        let Some(redis) = self.inner.store.shared() else {
            return;
        };
        let sessions = self.inner.store.sessions();
        for chunk in sessions.chunks(READ_COUNT) {
            let cursors: Vec<_> = chunk
                .iter()
                .filter(|s| s.is_alive())
                .map(|s| (Arc::from(s.id()), redis.cursor_of(s)))
                .collect();
            if redis.save_cursors_if_mine(&cursors).await.is_err() {
                return;
            }
        }
    }

    pub(crate) fn spawn_shared_tasks(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(read_log(weak.clone()));
        tokio::spawn(maintain(weak));
    }

    /// Hands log entries to the local sessions whose subscriptions match, then
    /// moves the reader's position, all under the reader's lock (see `install`).
    fn dispatch(&self, redis: &Redis, batch: &[Entry], end: u128) {
        let limits = self.settings().queue_limits();
        let mut tally = Tally::default();
        {
            let mut position = redis.position.lock();
            for entry in batch {
                for session in redis.local.recipients(&entry.channel) {
                    let offered = session.offer_at(&entry.event, limits, entry.pos);
                    self.note(&mut tally, &session, offered);
                }
            }
            *position = end;
        }
        self.settle(tally);
    }
}

fn live(weak: &Weak<Inner>) -> Option<Engine> {
    let inner = weak.upgrade()?;
    let engine = Engine { inner };
    (!engine.is_retired()).then_some(engine)
}

fn backoff(current: Duration) -> Duration {
    (current * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
}

/// The log reader of one route on this node: reads the log from where it
/// left off (at first, from its end) on a connection of its own, since a
/// blocking read holds its connection, and dispatches to local sessions.
async fn read_log(weak: Weak<Inner>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut last: Option<u128> = None;
    let mut wait = BACKOFF_MIN;
    loop {
        let Some(engine) = live(&weak) else { return };
        let Some(redis) = engine.inner.store.shared() else {
            return;
        };
        let timeout = engine.settings().redis_timeout;
        let key = redis.keys.log.clone();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match redis.link.open(timeout).await {
                Ok(c) => {
                    conn = Some(c);
                    match conn.as_mut() {
                        Some(c) => {
                            // Fresh connection: where does the log start? If it
                            // starts after where this node stopped, it was trimmed
                            // past entries this node never read.
                            match first_and_last(c, &key, timeout).await {
                                Ok((first, end)) => match last {
                                    None => {
                                        let start = end.unwrap_or(0);
                                        last = Some(start);
                                        *redis.position.lock() = start;
                                    }
                                    Some(stopped) => {
                                        if first.is_some_and(|f| stopped != 0 && f > stopped) {
                                            redis.gaps.fetch_add(1, Ordering::Relaxed);
                                            tracing::warn!(route = %engine.inner.name, "the log was trimmed past where this node stopped reading: events may be missing");
                                        }
                                    }
                                },
                                Err(e) => {
                                    redis.link.failed(&e);
                                    redis.reading.store(false, Ordering::Relaxed);
                                    conn = None;
                                    drop(engine);
                                    tokio::time::sleep(wait).await;
                                    wait = backoff(wait);
                                    continue;
                                }
                            }
                            redis.reading.store(true, Ordering::Relaxed);
                            c
                        }
                        None => continue,
                    }
                }
                Err(e) => {
                    redis.link.failed(&e);
                    redis.reading.store(false, Ordering::Relaxed);
                    drop(engine);
                    tokio::time::sleep(wait).await;
                    wait = backoff(wait);
                    continue;
                }
            },
        };
        let from = format_id(last.unwrap_or(0));
        let mut read = ::redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&key)
            .arg(&from);
        // Not holding the engine while blocked: a removed route goes away.
        drop(engine);
        let reply = tokio::time::timeout(READ_BLOCK + timeout, read.query_async::<Value>(c)).await;
        let Some(engine) = live(&weak) else { return };
        let Some(redis) = engine.inner.store.shared() else {
            return;
        };
        match reply {
            Ok(Ok(v)) => {
                wait = BACKOFF_MIN;
                redis.reading.store(true, Ordering::Relaxed);
                let (batch, end) = read_reply(v);
                if let Some(end) = end {
                    engine.dispatch(redis, &batch, end);
                    last = Some(end);
                    drop(engine);
                    tokio::time::sleep(READ_BATCH_WINDOW).await;
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis log read failed");
                redis.link.failed(&e);
                redis.reading.store(false, Ordering::Relaxed);
                conn = None;
                drop(engine);
                tokio::time::sleep(wait).await;
                wait = backoff(wait);
            }
            Err(_) => {
                redis.reading.store(false, Ordering::Relaxed);
                conn = None;
                drop(engine);
                tokio::time::sleep(wait).await;
                wait = backoff(wait);
            }
        }
    }
}

/// The log's first and last positions (`None` when it is empty).
async fn first_and_last(
    c: &mut MultiplexedConnection,
    key: &str,
    timeout: Duration,
) -> ::redis::RedisResult<(Option<u128>, Option<u128>)> {
    let work = async {
        let (first, last): (Value, Value) = ::redis::pipe()
            .cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(c)
            .await?;
        Ok((entries(first).1, entries(last).1))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(::redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis timed out",
        ))),
    }
}

/// Reconnects the command link when it is down (with back-off), flushes the
/// cursors of streaming clients that got events since the last flush (one
/// command), and sweeps now and then.
async fn maintain(weak: Weak<Inner>) {
    let mut next_connect = Instant::now();
    let mut wait = BACKOFF_MIN;
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let mut retry: Vec<Arc<Session>> = Vec::new();
    loop {
        let period = match live(&weak) {
            Some(engine) => engine.settings().redis_cursor_flush,
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(engine) = live(&weak) else { return };
        let Some(redis) = engine.inner.store.shared() else {
            return;
        };
        let timeout = engine.settings().redis_timeout;
        if !redis.link.is_up() {
            if Instant::now() < next_connect {
                continue;
            }
            if !redis.link.reconnect(timeout).await {
                next_connect = Instant::now() + wait;
                wait = backoff(wait);
                continue;
            }
            wait = BACKOFF_MIN;
        }
        let mut flush: Vec<Arc<Session>> = std::mem::take(&mut retry);
        flush.retain(|s| s.is_alive());
        flush.extend(
            engine
                .inner
                .store
                .sessions()
                .into_iter()
                .filter(|s| s.take_unsaved()),
        );
        for chunk in flush.chunks(READ_COUNT) {
            let cursors: Vec<_> = chunk
                .iter()
                .map(|s| (Arc::from(s.id()), redis.cursor_of(s)))
                .collect();
            if redis.save_cursors(&cursors).await.is_err() {
                retry.extend(chunk.iter().cloned());
            }
        }
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + SWEEP_EVERY;
            let _ = redis
                .sweep(SWEEP_EVERY - Duration::from_secs(5), SWEEP_STEPS)
                .await;
        }
    }
}
