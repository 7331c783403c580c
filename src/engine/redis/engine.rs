//! The engine's side of the Redis store: loading a client another node
//! served (with its replay), the connect-time resync, cursors handed to Redis,
//! and the two background tasks of a Redis route: the log reader, and the
//! maintenance task (reconnect, cursor flushes, the sweep).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use futures_util::StreamExt;

use super::log::{announced, entries, format_id, Entry};
use super::{Failure, Redis, Touched, UNSTARTED};
use crate::bayeux::channel;
use crate::engine::session::Session;
use crate::engine::{Engine, Inner, Tally};

/// Entries per `XRANGE` of a replay or a catch-up.
const READ_COUNT: usize = 1000;

/// How long the log may be quiet before the reader checks that it did not
/// miss anything (one command).
const QUIET_CHECK: Duration = Duration::from_secs(1);

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
        if let Some(grant) = record.grant {
            session.set_grant(grant);
        }
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

    /// Dispatches the log after `from` up to its current end; returns the last
    /// position read. Bounded: the log is.
    async fn catch_up(&self, redis: &Redis, from: u128) -> Result<u128, Failure> {
        let mut read = from;
        let max_reads = self.settings().redis_stream_max_len / READ_COUNT + 4;
        if read != 0 && redis.log_start_after(read).await? {
            // The log's first entry is after where this node stopped: what
            // was trimmed in between may have mattered.
            redis.gaps.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(route = %self.inner.name, stopped_at = %format_id(read), "the log was trimmed past where this node stopped reading: events may be missing");
        }
        for _ in 0..max_reads {
            let (batch, last) = entries(redis.read_after(read, READ_COUNT).await?);
            let Some(last) = last else { break };
            self.dispatch(redis, &batch, last);
            read = last;
            if batch.len() < READ_COUNT {
                break;
            }
        }
        Ok(read)
    }

    /// Hands log entries to the local sessions whose subscriptions match, then
    /// moves the reader's position, all under the reader's lock (see `install`).
    fn dispatch(&self, redis: &Redis, batch: &[Entry], end: u128) {
        let limits = self.settings().queue_limits();
        let mut tally = Tally::default();
        {
            let mut position = redis.position.lock();
            for entry in batch.iter().filter(|e| e.pos > *position) {
                // Every node reads every entry, so a tap here sees the route's
                // publishes from all nodes.
                self.inner.taps.offer(&entry.channel, &entry.event);
                for session in redis.local.recipients(&entry.channel) {
                    let offered = session.offer_at(&entry.event, limits, entry.pos);
                    self.note(&mut tally, &session, offered);
                }
            }
            *position = (*position).max(end);
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

/// The log reader of one route on this node. It subscribes to the route's
/// announcements (each publish's script announces its entry, so a node
/// learns of every publish without a command of its own), then catches up
/// with `XRANGE` from where it stopped (at first, from the log's end), and
/// from then on dispatches announced entries in order. Entries it already
/// dispatched are skipped, so the catch-up and the announcements overlap
/// safely. When the log has been quiet for [`QUIET_CHECK`] it compares its
/// position with the log's end (one command), so a connection that died
/// silently, or announcements lost with it, are noticed and caught up.
async fn read_log(weak: Weak<Inner>) {
    let mut last: Option<u128> = None;
    let mut wait = BACKOFF_MIN;
    loop {
        let Some(engine) = live(&weak) else { return };
        let Some(redis) = engine.inner.store.shared() else {
            return;
        };
        let timeout = engine.settings().redis_timeout;
        let channel = redis.keys.notify.clone();
        let client = redis.link.client().clone();
        drop(engine);
        let subscribed = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        })
        .await;
        let Some(engine) = live(&weak) else { return };
        let Some(redis) = engine.inner.store.shared() else {
            return;
        };
        let pubsub = match subscribed {
            Ok(Ok(p)) => Some(p),
            Ok(Err(e)) => {
                redis.link.failed(&e);
                None
            }
            Err(_) => None,
        };
        // Subscribed first, so nothing announced from now on is missed; then
        // whatever was appended while this node was not listening.
        let caught_up = match (&pubsub, last) {
            (None, _) => false,
            (Some(_), None) => match redis.log_end().await {
                Ok(end) => {
                    *redis.position.lock() = end;
                    last = Some(end);
                    true
                }
                Err(_) => false,
            },
            (Some(_), Some(from)) => match engine.catch_up(redis, from).await {
                Ok(end) => {
                    last = Some(end);
                    true
                }
                Err(_) => false,
            },
        };
        let Some(pubsub) = pubsub.filter(|_| caught_up) else {
            redis.reading.store(false, Ordering::Relaxed);
            drop(engine);
            tokio::time::sleep(wait).await;
            wait = backoff(wait);
            continue;
        };
        wait = BACKOFF_MIN;
        redis.reading.store(true, Ordering::Relaxed);
        drop(engine);
        let mut stream = pubsub.into_on_message();
        loop {
            let next = tokio::time::timeout(QUIET_CHECK, stream.next()).await;
            let Some(engine) = live(&weak) else { return };
            let Some(redis) = engine.inner.store.shared() else {
                return;
            };
            match next {
                Ok(Some(msg)) => {
                    if let Some(entry) = announced(msg.get_payload_bytes()) {
                        let pos = entry.pos;
                        engine.dispatch(redis, std::slice::from_ref(&entry), pos);
                        last = Some(last.unwrap_or(0).max(pos));
                    }
                }
                // The connection ended: reconnect and catch up.
                Ok(None) => break,
                Err(_) => {
                    // Quiet: is the log really where this node is?
                    let position = *redis.position.lock();
                    match redis.log_end().await {
                        Ok(end) if end > position => {
                            // Usually an announcement still on its way; possibly a
                            // dead connection. Subscribing again and catching up is
                            // right either way.
                            tracing::debug!(route = %engine.inner.name, "log ahead of announcements; subscribing again");
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        }
        if let Some(engine) = live(&weak) {
            if let Some(redis) = engine.inner.store.shared() {
                redis.reading.store(false, Ordering::Relaxed);
            }
        }
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
    let mut first = true;
    loop {
        let period = match live(&weak) {
            Some(engine) => engine.settings().redis_cursor_flush,
            None => return,
        };
        // The first round connects at once.
        if !std::mem::take(&mut first) {
            tokio::time::sleep(period).await;
        }
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
