//! Counters shared by subscribers, publishers and the scenario driver.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

/// Highest latency the histogram tracks (ns); larger values saturate.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// State shared by every task of a run.
pub struct Shared {
    epoch: Instant,
    /// Events received that carried a benchmark stamp.
    pub received: AtomicU64,
    /// Received per subscriber index.
    pub per_sub: Vec<AtomicU64>,
    /// Expected per subscriber index (only used when targets differ, as in `users`).
    pub expected: Vec<AtomicU64>,
    /// Latency from publish to receipt, ns.
    pub hist: Mutex<Histogram<u64>>,
    /// Time of the latest receipt, ns since the epoch.
    pub last_rx_ns: AtomicU64,
    /// Events without a stamp (other traffic).
    pub foreign: AtomicU64,
    /// Subscribers whose subscription is confirmed.
    pub ready: AtomicUsize,
    /// Subscribers that stopped with an error.
    pub failed: AtomicUsize,
    /// Error count and the first error text.
    pub errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Publish requests started.
    pub sent: AtomicU64,
    /// Publish requests acknowledged as successful.
    pub acked: AtomicU64,
    /// Publish requests that failed.
    pub publish_errors: AtomicU64,
    /// Deliveries each publication causes (S for fan-out, 1 for users).
    fanout_factor: u64,
    /// Publications allowed in flight (sent but not yet received everywhere).
    window: u64,
    waiting: AtomicBool,
    wake: Notify,
}

impl Shared {
    /// New state for `subs` subscribers.
    pub fn new(subs: usize, fanout_factor: u64, window: u64) -> Result<Shared, String> {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
            .map_err(|e| format!("histogram: {e}"))?;
        Ok(Shared {
            epoch: Instant::now(),
            received: AtomicU64::new(0),
            per_sub: (0..subs).map(|_| AtomicU64::new(0)).collect(),
            expected: (0..subs).map(|_| AtomicU64::new(0)).collect(),
            hist: Mutex::new(hist),
            last_rx_ns: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            fanout_factor: fanout_factor.max(1),
            window: window.max(1),
            waiting: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// Nanoseconds since the run epoch (the clock stamped into messages).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The run epoch.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Records the stamped events of one frame for subscriber `sub`.
    pub fn delivered(&self, sub: usize, stamps: &[u64]) {
        if stamps.is_empty() {
            return;
        }
        let now = self.now_ns();
        if let Ok(mut h) = self.hist.lock() {
            for &t in stamps {
                h.saturating_record(now.saturating_sub(t).max(1));
            }
        }
        let n = stamps.len() as u64;
        if let Some(c) = self.per_sub.get(sub) {
            c.fetch_add(n, Relaxed);
        }
        let total = self.received.fetch_add(n, Relaxed) + n;
        self.last_rx_ns.fetch_max(now, Relaxed);
        if self.waiting.load(Relaxed) {
            let in_flight = self
                .sent
                .load(Relaxed)
                .saturating_mul(self.fanout_factor)
                .saturating_sub(total);
            // Wake the publishers as soon as one more publication fits.
            if in_flight + self.fanout_factor <= self.window * self.fanout_factor {
                self.waiting.store(false, Relaxed);
                self.wake.notify_waiters();
            }
        }
    }

    /// Counts an error; keeps the first message.
    pub fn error(&self, msg: String) {
        self.errors.fetch_add(1, Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            if first.is_none() {
                *first = Some(msg);
            }
        }
    }

    /// The first error seen, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|f| f.clone())
    }

    /// Waits until fewer than `window` publications are in flight, or until `deadline`.
    /// Returns false if the deadline passed.
    pub async fn window_room(&self, deadline: Instant) -> bool {
        loop {
            let in_flight = || {
                self.sent
                    .load(Relaxed)
                    .saturating_mul(self.fanout_factor)
                    .saturating_sub(self.received.load(Relaxed))
            };
            if in_flight() < self.window * self.fanout_factor {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.waiting.store(true, Relaxed);
            if in_flight() < self.window * self.fanout_factor {
                continue;
            }
            // The timeout is a safety net against lost wake-ups (e.g. lost messages).
            let nap = (deadline - now).min(Duration::from_millis(20));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    /// Losses and surplus over all subscribers, given per-subscriber expectations.
    pub fn loss(&self, expected: impl Fn(usize) -> u64) -> (u64, u64) {
        let mut lost = 0;
        let mut extra = 0;
        for (i, got) in self.per_sub.iter().enumerate() {
            let got = got.load(Relaxed);
            let want = expected(i);
            lost += want.saturating_sub(got);
            extra += got.saturating_sub(want);
        }
        (lost, extra)
    }
}

/// Latency percentiles in microseconds.
#[derive(serde::Serialize, Clone, Copy, Default)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// Summarises a histogram of nanoseconds.
    pub fn from_hist(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        Latency {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: (h.mean() / 100.0).round() / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn window_blocks_until_deliveries_arrive() {
        let shared = std::sync::Arc::new(Shared::new(2, 2, 2).unwrap());
        shared.sent.store(2, Relaxed); // 4 deliveries outstanding: window full
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(
            !shared.window_room(soon).await,
            "no room without deliveries"
        );
        let s = shared.clone();
        let waiter =
            tokio::spawn(
                async move { s.window_room(Instant::now() + Duration::from_secs(5)).await },
            );
        tokio::time::sleep(Duration::from_millis(10)).await;
        shared.delivered(0, &[1]);
        shared.delivered(1, &[1]);
        assert!(waiter.await.unwrap());
        assert_eq!(shared.received.load(Relaxed), 2);
    }

    #[test]
    fn loss_and_duplicates_per_subscriber() {
        let shared = Shared::new(3, 3, 1).unwrap();
        shared.delivered(0, &[1, 2]);
        shared.delivered(1, &[1, 2, 3, 4]);
        assert_eq!(shared.loss(|_| 3), (1 + 3, 1));
        let h = shared.hist.lock().unwrap();
        assert_eq!(Latency::from_hist(&h).count, 6);
    }
}
