//! The recent history of every route's figures, for the console's sparklines.
//!
//! The admin listener's accept loop samples every engine route once per
//! [`SAMPLE_EVERY`] and keeps the last [`POINTS`] samples of each in a fixed
//! ring (ten minutes; a few tens of kilobytes per route). A page only reads
//! copies of these rings, so an open console costs the server one small JSON
//! answer per poll and nothing per message. A route whose engine was
//! replaced (removed and added again) starts a new ring, and a route that
//! left the table loses its ring.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::engine::{Engine, Stats};
use crate::routes::RouteTable;

/// How often every route is sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Samples kept per route (ten minutes at one per second).
pub(super) const POINTS: usize = 600;

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One sample of one route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Point {
    /// When, in Unix milliseconds.
    pub(super) at: u64,
    /// Publishes per second since the previous sample.
    pub(super) published: f64,
    /// Deliveries (events queued for a recipient) per second.
    pub(super) delivered: f64,
    /// Events dropped from full queues since the previous sample.
    pub(super) dropped: u64,
    /// Live sessions.
    pub(super) sessions: u64,
    /// Subscriptions.
    pub(super) subscriptions: u64,
    /// Open connections, all transports.
    pub(super) connections: i64,
}

impl Point {
    pub(super) fn to_json(self) -> Value {
        json!({
            "t": self.at,
            "published_per_sec": self.published,
            "delivered_per_sec": self.delivered,
            "dropped": self.dropped,
            "sessions": self.sessions,
            "subscriptions": self.subscriptions,
            "connections": self.connections,
        })
    }
}

#[derive(Debug)]
struct Series {
    prefix: Arc<str>,
    engine: Engine,
    last: Stats,
    last_at: Instant,
    points: VecDeque<Point>,
}

/// The rings of every engine route.
#[derive(Debug, Default)]
pub(super) struct History {
    series: Mutex<Vec<Series>>,
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    let per_sec = now.saturating_sub(before) as f64 / secs;
    (per_sec * 10.0).round() / 10.0
}

impl History {
    /// Takes one sample of every engine route in `table`.
    pub(super) fn sample(&self, table: &RouteTable) {
        let now = Instant::now();
        let at = unix_ms(SystemTime::now());
        // Figures are read before the lock is taken; the lock guards only the rings.
        let current: Vec<(Arc<str>, Engine, Stats)> = table
            .routes()
            .iter()
            .filter_map(|r| r.engine().map(|e| (r.prefix.clone(), e.clone(), e.stats())))
            .collect();
        let mut series = self.series.lock();
        series.retain(|s| {
            current
                .iter()
                .any(|(p, e, _)| *p == s.prefix && e.same(&s.engine))
        });
        for (prefix, engine, stats) in current {
            let Some(s) = series.iter_mut().find(|s| s.prefix == prefix) else {
                series.push(Series {
                    prefix,
                    engine,
                    last: stats,
                    last_at: now,
                    points: VecDeque::with_capacity(POINTS),
                });
                continue;
            };
            let secs = now.duration_since(s.last_at).as_secs_f64().max(0.001);
            let point = Point {
                at,
                published: rate(stats.published, s.last.published, secs),
                delivered: rate(stats.delivered, s.last.delivered, secs),
                dropped: stats.dropped.saturating_sub(s.last.dropped),
                sessions: stats.clients,
                subscriptions: stats.subscriptions,
                connections: stats.connections.iter().sum(),
            };
            if s.points.len() == POINTS {
                s.points.pop_front();
            }
            s.points.push_back(point);
            s.last = stats;
            s.last_at = now;
        }
    }

    /// The samples of `prefix` taken after `since` (Unix milliseconds).
    pub(super) fn points(&self, prefix: &str, since: u64) -> Vec<Point> {
        let series = self.series.lock();
        series
            .iter()
            .find(|s| &*s.prefix == prefix)
            .map(|s| s.points.iter().filter(|p| p.at > since).copied().collect())
            .unwrap_or_default()
    }

    /// The latest sample of `prefix`.
    pub(super) fn latest(&self, prefix: &str) -> Option<Point> {
        let series = self.series.lock();
        series
            .iter()
            .find(|s| &*s.prefix == prefix)
            .and_then(|s| s.points.back().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::shutdown::Shutdown;

    #[tokio::test(start_paused = true)]
    async fn rings_are_fixed_and_follow_the_route_table() {
        let config = Config::parse(
            "[[route]]\nprefix = \"/a\"\n[[route]]\nprefix = \"/up\"\nupstream = \"http://127.0.0.1:1/x\"\n",
            "t",
            std::path::Path::new("."),
        )
        .unwrap();
        let (table, _) = RouteTable::plan(&config, None).apply(&Shutdown::default());
        let history = History::default();
        for _ in 0..POINTS + 10 {
            history.sample(&table);
            tokio::time::advance(SAMPLE_EVERY).await;
        }
        let points = history.points("/a", 0);
        assert_eq!(points.len(), POINTS, "the ring never grows past its size");
        assert!(
            history.points("/up", 0).is_empty(),
            "upstream routes have no engine"
        );
        let last = history.latest("/a").unwrap();
        assert_eq!(history.points("/a", last.at).len(), 0);

        let empty = RouteTable::default();
        history.sample(&empty);
        assert!(
            history.latest("/a").is_none(),
            "a removed route loses its ring"
        );
    }
}
