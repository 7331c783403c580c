//! Process-wide counters and the Prometheus text exposition.
//!
//! Per-route figures live in each engine (`engine::Stats`); the counters here
//! belong to the process (TLS failures, reloads, request latency), with a
//! short history of reload outcomes the operator's console lists (kept here,
//! beside the reload counters, so the admin listener reads it without
//! reaching up to `reload`). Rendering is
//! a table of metric families, each a name, a type, a help line and how to read
//! its value, so adding a metric is one row. Plain atomics and a hand-written
//! exposition: a few dozen lines, no registry needed.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::engine::{RedisStats, Stats, Transport};

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0,
];

/// Reload outcomes kept for the console, newest first.
pub const RELOAD_HISTORY: usize = 20;

/// One reload, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    /// When it ran, by the wall clock.
    pub at: SystemTime,
    /// True when it was applied, false when the file was rejected.
    pub ok: bool,
    /// What it changed, or why the file was rejected (file, line and key).
    pub detail: String,
}

/// Process-wide counters that do not belong to one route.
#[derive(Debug, Default)]
pub struct Metrics {
    tls_failures: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    reload_log: Mutex<VecDeque<ReloadRecord>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One per-route family: one sample per route, labelled `route`.
struct RouteFamily {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&Stats) -> u64,
}

const ROUTE_FAMILIES: &[RouteFamily] = &[
    RouteFamily {
        name: "bayeux_edge_sessions",
        kind: Kind::Gauge,
        help: "Live Bayeux sessions.",
        value: |s| s.clients,
    },
    RouteFamily {
        name: "bayeux_edge_subscriptions",
        kind: Kind::Gauge,
        help: "Channel subscriptions.",
        value: |s| s.subscriptions,
    },
    RouteFamily {
        name: "bayeux_edge_handshakes_total",
        kind: Kind::Counter,
        help: "Successful handshakes.",
        value: |s| s.handshakes,
    },
    RouteFamily {
        name: "bayeux_edge_messages_published_total",
        kind: Kind::Counter,
        help: "Accepted publishes.",
        value: |s| s.published,
    },
    RouteFamily {
        name: "bayeux_edge_messages_delivered_total",
        kind: Kind::Counter,
        help: "Events queued for recipients.",
        value: |s| s.delivered,
    },
    RouteFamily {
        name: "bayeux_edge_messages_dropped_total",
        kind: Kind::Counter,
        help: "Events dropped from full client queues.",
        value: |s| s.dropped,
    },
    RouteFamily {
        name: "bayeux_edge_queue_overflows_total",
        kind: Kind::Counter,
        help: "Times a client queue overflowed.",
        value: |s| s.overflows,
    },
    RouteFamily {
        name: "bayeux_edge_handshakes_refused_total",
        kind: Kind::Counter,
        help:
            "Handshakes refused (route full, an address over its limits, several in one request).",
        value: |s| s.handshakes_refused,
    },
    RouteFamily {
        name: "bayeux_edge_subscriptions_refused_total",
        kind: Kind::Counter,
        help: "Subscriptions refused by the per-client or per-route bound.",
        value: |s| s.subscriptions_refused,
    },
    RouteFamily {
        name: "bayeux_edge_batches_refused_total",
        kind: Kind::Counter,
        help: "Requests or WebSocket messages refused for holding too many messages.",
        value: |s| s.batches_refused,
    },
    RouteFamily {
        name: "bayeux_edge_auth_refusals_total",
        kind: Kind::Counter,
        help: "Handshakes and subscriptions refused by the route's subscribe policy.",
        value: |s| s.auth_refused,
    },
    RouteFamily {
        name: "bayeux_edge_tracked_addresses",
        kind: Kind::Gauge,
        help: "Client addresses tracked for the per-address limits.",
        value: |s| s.peers,
    },
    RouteFamily {
        name: "bayeux_edge_sessions_expired_total",
        kind: Kind::Counter,
        help: "Sessions removed by expiry.",
        value: |s| s.expired,
    },
];

/// One family of Redis routes: one sample per Redis route, labelled `route`.
struct RedisFamily {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&RedisStats) -> u64,
}

const REDIS_FAMILIES: &[RedisFamily] = &[
    RedisFamily {
        name: "bayeux_edge_redis_up",
        kind: Kind::Gauge,
        help: "1 while the route's Redis is reachable and its log is being read.",
        value: |r| u64::from(r.up),
    },
    RedisFamily {
        name: "bayeux_edge_redis_errors_total",
        kind: Kind::Counter,
        help: "Failed Redis commands and connection attempts.",
        value: |r| r.errors,
    },
    RedisFamily {
        name: "bayeux_edge_redis_replay_gaps_total",
        kind: Kind::Counter,
        help: "Clients (or this node's log reader) resumed from a position the trimmed log no longer held.",
        value: |r| r.replay_gaps,
    },
];

/// One process-wide family with a single unlabelled sample.
struct ProcessFamily {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&Metrics, bool) -> u64,
}

const PROCESS_FAMILIES: &[ProcessFamily] = &[
    ProcessFamily {
        name: "bayeux_edge_tls_handshake_failures_total",
        kind: Kind::Counter,
        help: "Failed or timed-out TLS handshakes.",
        value: |m, _| m.tls_failures.load(Ordering::Relaxed),
    },
    ProcessFamily {
        name: "bayeux_edge_write_timeouts_total",
        kind: Kind::Counter,
        help: "Connections closed because the peer stopped reading.",
        value: |_, _| crate::deadline::write_timeouts(),
    },
    ProcessFamily {
        name: "bayeux_edge_websocket_read_timeouts_total",
        kind: Kind::Counter,
        help: "WebSockets closed for silence or an unfinished message.",
        value: |_, _| crate::deadline::read_timeouts(),
    },
    ProcessFamily {
        name: "bayeux_edge_incoming_refused_total",
        kind: Kind::Counter,
        help: "Request bodies and WebSocket messages refused because max_incoming_bytes of unfinished input was held.",
        value: |_, _| crate::budget::refused(),
    },
    ProcessFamily {
        name: "bayeux_edge_draining",
        kind: Kind::Gauge,
        help: "1 while the server drains.",
        value: |_, draining| u64::from(draining),
    },
];

fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.name());
}

impl Metrics {
    /// Counts a failed or timed-out TLS handshake.
    pub fn tls_failure(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload by result and keeps it, with `detail` (what changed or
    /// why it was rejected), among the last [`RELOAD_HISTORY`].
    pub fn reload(&self, ok: bool, detail: String) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
        let mut log = self.reload_log.lock();
        if log.len() >= RELOAD_HISTORY {
            log.pop_back();
        }
        log.push_front(ReloadRecord {
            at: SystemTime::now(),
            ok,
            detail,
        });
    }

    /// The last reloads, newest first.
    pub fn reloads(&self) -> Vec<ReloadRecord> {
        self.reload_log.lock().iter().cloned().collect()
    }

    /// Records one request's duration (held long-polls included).
    pub fn observe_request(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Renders every metric in the Prometheus text format, given each engine
    /// route's prefix and figures.
    pub fn render(&self, routes: &[(String, Stats)], draining: bool) -> String {
        let mut out = String::with_capacity(4096);
        for f in ROUTE_FAMILIES {
            header(&mut out, f.name, f.kind, f.help);
            for (route, s) in routes {
                let _ = writeln!(out, "{}{{route=\"{route}\"}} {}", f.name, (f.value)(s));
            }
        }
        let name = "bayeux_edge_connections";
        header(
            &mut out,
            name,
            Kind::Gauge,
            "Open client connections by transport.",
        );
        for (route, s) in routes {
            for t in Transport::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{route}\",transport=\"{}\"}} {}",
                    t.name(),
                    s.connections[t as usize]
                );
            }
        }
        self.render_redis(&mut out, routes);
        let name = "bayeux_edge_reloads_total";
        header(
            &mut out,
            name,
            Kind::Counter,
            "Route table reloads by result.",
        );
        for (result, counter) in [("ok", &self.reloads_ok), ("error", &self.reloads_failed)] {
            let _ = writeln!(
                out,
                "{name}{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        for f in PROCESS_FAMILIES {
            header(&mut out, f.name, f.kind, f.help);
            let _ = writeln!(out, "{} {}", f.name, (f.value)(self, draining));
        }
        self.render_latency(&mut out);
        out
    }

    /// Families of Redis routes only (a memory route has no Redis to be down).
    fn render_redis(&self, out: &mut String, routes: &[(String, Stats)]) {
        for f in REDIS_FAMILIES {
            header(out, f.name, f.kind, f.help);
            for (route, s) in routes {
                if let Some(r) = &s.redis {
                    let _ = writeln!(out, "{}{{route=\"{route}\"}} {}", f.name, (f.value)(r));
                }
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        let name = "bayeux_edge_request_duration_seconds";
        let help = "Client request duration, held long-polls included.";
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_samples() {
        let m = Metrics::default();
        m.observe_request(Duration::from_millis(3));
        m.reload(false, "routes.toml:3: bad".to_owned());
        let stats = Stats {
            clients: 2,
            ..Stats::default()
        };
        let text = m.render(&[("/a".to_owned(), stats)], true);
        assert!(text.contains("bayeux_edge_sessions{route=\"/a\"} 2\n"));
        assert!(text.contains("bayeux_edge_reloads_total{result=\"error\"} 1\n"));
        for i in 0..RELOAD_HISTORY {
            m.reload(true, format!("reload {i}"));
        }
        let log = m.reloads();
        assert_eq!(log.len(), RELOAD_HISTORY, "the history is bounded");
        assert_eq!(log[0].detail, format!("reload {}", RELOAD_HISTORY - 1));
        assert!(
            log.iter().all(|r| r.ok),
            "the oldest (rejected) one left first"
        );
        assert!(text.contains("bayeux_edge_draining 1\n"));
        assert!(text.contains("bayeux_edge_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        for f in ROUTE_FAMILIES {
            assert!(text.contains(&format!("# TYPE {} {}", f.name, f.kind.name())));
        }
    }
}
