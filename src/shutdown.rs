//! Drain and task tracking.
//!
//! [`Shutdown`] is a cheap-clone handle shared by the listeners, every
//! connection and every upgraded session. `drain()` flips it once: readiness
//! fails, accept loops stop, held long-polls are answered and WebSocket
//! sessions send reconnect advice and a 1001 close. `wait()` then waits for
//! every tracked task, bounded by the grace period. Sessions upgraded out of
//! hyper are invisible to hyper's own graceful shutdown, which is why they are
//! spawned through [`Shutdown::spawn`].

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// Shared drain signal plus the set of tasks that must end before exit.
#[derive(Debug, Clone)]
pub struct Shutdown {
    draining: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new(Duration::from_secs(20))
    }
}

impl Shutdown {
    /// A handle that is not draining; `grace` bounds the drain.
    pub fn new(grace: Duration) -> Self {
        Shutdown {
            draining: CancellationToken::new(),
            tracker: TaskTracker::new(),
            grace,
        }
    }

    /// The drain grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A reconnect delay for one client during this drain (see [`Shutdown::jitter`]).
    pub fn drain_jitter(&self) -> Duration {
        Self::jitter(self.grace)
    }

    /// Starts the drain (idempotent).
    pub fn drain(&self) {
        self.draining.cancel();
    }

    /// True once the drain started.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Completes when the drain starts.
    pub fn draining(&self) -> WaitForCancellationFuture<'_> {
        self.draining.cancelled()
    }

    /// An owned token that completes when the drain starts.
    pub fn token(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// A reconnect delay for one client during the drain: uniformly spread over
    /// a quarter of `grace`, capped at 5 s, so clients do not all come back in
    /// the same instant. A quarter, because Faye clients keep the interval for
    /// their next handshake too: the new instance's `401` advice carries none,
    /// so a client waits it twice before it is served again.
    pub fn jitter(grace: Duration) -> Duration {
        let span = (grace / 4).min(Duration::from_secs(5));
        span.mul_f64(fastrand::f64())
    }

    /// Spawns a task that the drain waits for.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Number of tracked tasks still running.
    pub fn tasks(&self) -> usize {
        self.tracker.len()
    }

    /// Waits for every tracked task, at most `grace`. True if all ended in time.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
