//! Run results: one JSON line and a short text summary.

use serde::Serialize;

use crate::clients::{Protocol, PublishVia};
use crate::metrics::Latency;

/// Generator CPU share above which the generator, not the server, likely limits the run.
pub const SATURATED: f64 = 0.90;

/// Server resource use over the measured phase.
#[derive(Serialize, Clone, Default)]
pub struct ServerUse {
    /// PID read.
    pub pid: Option<u32>,
    /// CPU seconds (user + system) spent in the measured phase.
    pub cpu_s: Option<f64>,
    /// RSS at the start of the measured phase, KiB.
    pub rss_start_kib: Option<u64>,
    /// RSS at the end of the measured phase, KiB.
    pub rss_end_kib: Option<u64>,
}

/// The generator's own resource use.
#[derive(Serialize, Clone, Default)]
pub struct GeneratorUse {
    /// CPU seconds of this process in the measured phase.
    pub cpu_s: f64,
    /// Wall time of the measured phase.
    pub wall_s: f64,
    /// cpu_s / wall_s per runtime thread.
    pub utilization: f64,
    /// True when utilization is high enough that the generator may be the bottleneck.
    pub saturated: bool,
    /// Runtime worker threads.
    pub threads: usize,
}

/// Connection set-up and memory figures of the `idle` scenario.
#[derive(Serialize, Clone, Default)]
pub struct IdleFigures {
    /// Connections fully set up (handshake, subscribe, connect outstanding).
    pub connections: usize,
    /// Time to set them all up.
    pub setup_s: f64,
    /// Connections set up per second.
    pub connections_per_s: f64,
    /// Server CPU spent on set-up, per connection, microseconds.
    pub server_cpu_per_connection_us: Option<f64>,
    /// Server RSS before any connection, KiB.
    pub rss_baseline_kib: Option<u64>,
    /// Server RSS with all connections open and settled, KiB.
    pub rss_connected_kib: Option<u64>,
    /// (connected - baseline) / connections, bytes.
    pub rss_per_connection_bytes: Option<f64>,
}

/// Everything a run measured.
#[derive(Serialize, Clone, Default)]
pub struct Report {
    /// fanout, users, idle or longpoll.
    pub scenario: String,
    /// bayeux or raw.
    pub protocol: Option<Protocol>,
    /// websocket or long-polling.
    pub transport: String,
    /// Endpoint.
    pub url: String,
    /// Subscribers (or users, or idle clients) requested.
    pub subscribers: usize,
    /// Subscribers set up.
    pub ready: usize,
    /// Subscribers that failed (during set-up or later).
    pub failed: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Publisher transport.
    pub publish_via: Option<PublishVia>,
    /// Publications per HTTP POST.
    pub batch: usize,
    /// Requested rate, msgs/s (0 = flat out).
    pub rate: f64,
    /// In-flight window, publications.
    pub window: u64,
    /// Bound on publications.
    pub messages_limit: u64,
    /// Bound on the publish phase, s.
    pub duration_limit_s: f64,
    /// Publications acknowledged.
    pub published: u64,
    /// Publications that failed.
    pub publish_errors: u64,
    /// Deliveries expected.
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// Expected minus received, per subscriber, after the drain deadline.
    pub lost: u64,
    /// Deliveries beyond those expected (duplicates).
    pub duplicates: u64,
    /// Events without a benchmark stamp.
    pub foreign: u64,
    /// Publish phase duration, s.
    pub publish_s: f64,
    /// From first publish to last receipt, s.
    pub elapsed_s: f64,
    /// Publications per second.
    pub publishes_per_s: f64,
    /// Deliveries per second.
    pub deliveries_per_s: f64,
    /// Deliveries per server CPU second.
    pub deliveries_per_server_cpu_s: Option<f64>,
    /// Publish-to-receipt latency.
    pub latency: Latency,
    /// Server resource use.
    pub server: ServerUse,
    /// Generator resource use.
    pub generator: GeneratorUse,
    /// Idle-scenario figures.
    pub idle: Option<IdleFigures>,
    /// Errors counted.
    pub errors: u64,
    /// The first error.
    pub first_error: Option<String>,
}

fn opt<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map(|x| format!("{x}{unit}"))
        .unwrap_or_else(|| "n/a".to_string())
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

impl Report {
    /// Rounds the floats so the JSON line stays readable.
    pub fn tidy(&mut self) {
        self.publish_s = round(self.publish_s, 3);
        self.elapsed_s = round(self.elapsed_s, 3);
        self.publishes_per_s = round(self.publishes_per_s, 1);
        self.deliveries_per_s = round(self.deliveries_per_s, 1);
        self.deliveries_per_server_cpu_s = self.deliveries_per_server_cpu_s.map(|x| round(x, 1));
        self.server.cpu_s = self.server.cpu_s.map(|x| round(x, 2));
        self.generator.cpu_s = round(self.generator.cpu_s, 2);
        self.generator.wall_s = round(self.generator.wall_s, 3);
        self.generator.utilization = round(self.generator.utilization, 3);
        if let Some(i) = &mut self.idle {
            i.setup_s = round(i.setup_s, 3);
            i.connections_per_s = round(i.connections_per_s, 1);
            i.server_cpu_per_connection_us = i.server_cpu_per_connection_us.map(|x| round(x, 1));
            i.rss_per_connection_bytes = i.rss_per_connection_bytes.map(|x| round(x, 0));
        }
    }

    /// Human-readable summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let proto = match self.protocol {
            Some(Protocol::Raw) => "raw",
            _ => "bayeux",
        };
        out.push_str(&format!(
            "{} ({proto}, {}) {} — {} subscribers ready of {}, {} failed\n",
            self.scenario, self.transport, self.url, self.ready, self.subscribers, self.failed
        ));
        if let Some(i) = &self.idle {
            out.push_str(&format!(
                "  set-up: {} connections in {:.2} s = {:.0}/s; server CPU per connection: {}\n",
                i.connections,
                i.setup_s,
                i.connections_per_s,
                opt(
                    i.server_cpu_per_connection_us.map(|x| format!("{x:.1}")),
                    " µs"
                )
            ));
            out.push_str(&format!(
                "  server RSS: {} baseline, {} connected, {} per connection\n",
                opt(i.rss_baseline_kib, " KiB"),
                opt(i.rss_connected_kib, " KiB"),
                opt(i.rss_per_connection_bytes.map(|x| format!("{x:.0}")), " B")
            ));
        }
        out.push_str(&format!(
            "  published {} ({} errors) in {:.2} s = {:.0}/s (rate {}, window {}, {} publisher(s) over {})\n",
            self.published,
            self.publish_errors,
            self.publish_s,
            self.publishes_per_s,
            if self.rate > 0.0 {
                format!("{}/s", self.rate)
            } else {
                "flat out".into()
            },
            self.window,
            self.publishers,
            match self.publish_via {
                Some(PublishVia::Ws) => "WebSocket".to_owned(),
                _ if self.batch > 1 => format!("HTTP, {} per POST", self.batch),
                _ => "HTTP".to_owned(),
            }
        ));
        out.push_str(&format!(
            "  delivered {} of {} expected in {:.2} s = {:.0}/s; lost {}, duplicates {}\n",
            self.received,
            self.expected,
            self.elapsed_s,
            self.deliveries_per_s,
            self.lost,
            self.duplicates
        ));
        let l = &self.latency;
        out.push_str(&format!(
            "  latency µs: p50 {} p99 {} p99.9 {} max {} (n={})\n",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.count
        ));
        out.push_str(&format!(
            "  server: CPU {} s, RSS {} -> {}; deliveries per server CPU-second: {}\n",
            opt(self.server.cpu_s, ""),
            opt(self.server.rss_start_kib, " KiB"),
            opt(self.server.rss_end_kib, " KiB"),
            opt(
                self.deliveries_per_server_cpu_s.map(|x| format!("{x:.0}")),
                ""
            )
        ));
        out.push_str(&format!(
            "  generator: CPU {:.2} s over {:.2} s ({:.0}% of {} thread(s)){}\n",
            self.generator.cpu_s,
            self.generator.wall_s,
            self.generator.utilization * 100.0,
            self.generator.threads,
            if self.generator.saturated {
                " — SATURATED: the generator may be the bottleneck"
            } else {
                ""
            }
        ));
        if self.errors > 0 {
            out.push_str(&format!(
                "  errors: {} (first: {})\n",
                self.errors,
                self.first_error.as_deref().unwrap_or("")
            ));
        }
        out
    }
}
