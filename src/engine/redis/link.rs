//! The connection of one Redis engine to its Redis, and how it fails.
//!
//! Commands share one multiplexed connection (pipelined on one socket). What
//! this adds to the client crate is the failure policy the engine needs:
//! - **Fail fast while down.** After a connection-level failure the connection
//!   is dropped and the link is *down*: commands fail at once instead of
//!   queueing behind a reconnect, so nothing grows while Redis is away, and
//!   the maintenance task reconnects with back-off ([`Link::reconnect`]).
//! - **Bounded in flight.** At most [`MAX_IN_FLIGHT`] commands wait for Redis
//!   at once; a command beyond that fails at once (counted) rather than waiting.
//! - **A deadline on every command**, from the route's `redis_timeout`; a
//!   command past it fails, and [`TIMEOUTS_BEFORE_DOWN`] in a row mark the
//!   link down.
//!
//! Server errors (a script error, out of memory) fail the one command but do
//! not mark the link down. Every failure is counted for `/metrics`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// Commands waiting for Redis at once, per route and node.
pub(crate) const MAX_IN_FLIGHT: usize = 1024;

/// Commands timing out in a row before the link counts as down: one slow
/// command (a long replay read on a loaded server) must not refuse every
/// publish for a reconnect's time.
const TIMEOUTS_BEFORE_DOWN: u32 = 3;

/// Why a Redis operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Redis is unreachable (down, timed out, or too many commands waiting).
    Down,
    /// Redis answered with an error.
    Refused,
}

/// The link to one Redis.
#[derive(Debug)]
pub(crate) struct Link {
    client: Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    permits: Arc<Semaphore>,
    errors: AtomicU64,
    timeouts: AtomicU32,
}

/// True for errors that say the connection, not the command, failed.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

impl Link {
    /// A link that is down until [`Link::reconnect`] succeeds.
    pub(crate) fn new(client: Client) -> Self {
        Link {
            client,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            errors: AtomicU64::new(0),
            timeouts: AtomicU32::new(0),
        }
    }

    /// The client (for connections of other kinds: pub/sub).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// True while the last attempt to reach Redis succeeded.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Redis failures so far (commands that failed, reconnects that failed).
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Counts a failure seen elsewhere (the log reader's own connection);
    /// a connection-level one marks the link down so commands fail fast.
    pub(crate) fn failed(&self, e: &RedisError) -> Failure {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if is_connection_error(e) {
            self.mark_down();
            Failure::Down
        } else {
            Failure::Refused
        }
    }

    fn mark_down(&self) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!("redis unreachable: refusing publishes and handshakes until it is back");
        }
        self.conn.lock().take();
    }

    /// A new connection, for commands or for the log reader.
    pub(crate) async fn open(&self, timeout: Duration) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None)
            .set_concurrency_limit(MAX_IN_FLIGHT);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Connects when down (one attempt, checked with `PING`); true when up.
    pub(crate) async fn reconnect(&self, timeout: Duration) -> bool {
        if self.is_up() && self.conn.lock().is_some() {
            return true;
        }
        let attempt = async {
            let mut conn = self.open(timeout).await?;
            ::redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .map(|()| conn)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(conn)) => {
                self.timeouts.store(0, Ordering::Relaxed);
                *self.conn.lock() = Some(conn);
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis reachable");
                }
                true
            }
            Ok(Err(e)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "redis reconnect failed");
                false
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Runs one command (or script, or pipeline) with the deadline `timeout`.
    pub(crate) async fn run<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T, Failure>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(conn) = self.conn.lock().clone() else {
            return Err(Failure::Down);
        };
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return Err(Failure::Down);
        };
        match tokio::time::timeout(timeout, f(conn)).await {
            Ok(Ok(v)) => {
                self.timeouts.store(0, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis command failed");
                Err(self.failed(&e))
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_BEFORE_DOWN {
                    self.mark_down();
                }
                Err(Failure::Down)
            }
        }
    }
}
