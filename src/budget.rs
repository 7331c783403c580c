//! The process's bound on input received but not yet usable: request bodies
//! being read and WebSocket messages whose last byte has not arrived.
//!
//! Each connection's share is already bounded (`max_message_bytes`, and the
//! body and message timeouts), but many connections each holding an unfinished
//! megabyte add up past any task's memory: 200 WebSockets with an unfinished
//! 1 MiB message held about 600 MB. [`IncomingBudget`] caps the sum; a request
//! or message that would pass it is refused (`503`, or WebSocket close `1013`)
//! and counted, and everyone else keeps being served.
//!
//! What is counted is bytes received; the buffers holding an unfinished
//! WebSocket message take three to four times that while they grow (the
//! frame's read buffer, then the message being assembled), which the default
//! and the README's memory arithmetic allow for.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Requests and WebSocket messages refused because the budget was spent,
/// since the process started.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Bytes of unfinished input allowed at once across the process.
#[derive(Debug)]
pub struct IncomingBudget {
    limit: usize,
    used: AtomicUsize,
}

impl Default for IncomingBudget {
    /// No bound (tests and tools that build a gateway by hand).
    fn default() -> Self {
        IncomingBudget {
            limit: usize::MAX,
            used: AtomicUsize::new(0),
        }
    }
}

impl IncomingBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(IncomingBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// An empty share for one request or one WebSocket.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            held: 0,
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One request's or one WebSocket's unfinished input; given back when
/// released or dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<IncomingBudget>,
    held: usize,
}

impl Charge {
    /// Counts `n` more bytes; false (and nothing counted) when that would
    /// pass the budget.
    pub fn add(&mut self, n: usize) -> bool {
        let budget = &self.budget;
        let before = budget.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > budget.limit {
            budget.used.fetch_sub(n, Ordering::Relaxed);
            REFUSED.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.held += n;
        true
    }

    /// The input became usable (or was dropped): give its bytes back.
    pub fn release(&mut self) {
        if self.held > 0 {
            self.budget.used.fetch_sub(self.held, Ordering::Relaxed);
            self.held = 0;
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_limit_and_are_given_back() {
        let budget = IncomingBudget::new(100);
        let mut a = budget.charge();
        let mut b = budget.charge();
        assert!(a.add(60));
        assert!(!b.add(41), "past the limit");
        assert!(b.add(40));
        assert_eq!(budget.used(), 100);
        a.release();
        assert_eq!(budget.used(), 40);
        assert!(a.add(60));
        drop(b);
        assert_eq!(budget.used(), 60);
        drop(a);
        assert_eq!(budget.used(), 0);
    }
}
