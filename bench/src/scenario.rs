//! The four scenarios: set up subscribers, publish, drain, measure.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::clients::{self, Ctx, Protocol, PublishPlan, PublishVia};
use crate::metrics::{Latency, Shared};
use crate::net::{Res, Target};
use crate::procfs::{self, Server};
use crate::report::{GeneratorUse, IdleFigures, Report, ServerUse, SATURATED};

/// Settings common to all scenarios.
pub struct Common {
    /// Server endpoint.
    pub target: Target,
    /// Endpoint URL as given.
    pub url: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Server PID for CPU and memory readings.
    pub server_pid: Option<u32>,
    /// Concurrent connection set-ups.
    pub concurrency: usize,
    /// Bound on the whole set-up phase.
    pub setup_timeout: Duration,
    /// Bound on each request and set-up step.
    pub step_timeout: Duration,
    /// How long to wait for outstanding deliveries after publishing ends.
    pub drain: Duration,
    /// Padding bytes per payload.
    pub payload_pad: usize,
    /// Runtime threads (for the utilization figure).
    pub threads: usize,
}

/// Subscriber transport.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Bayeux over WebSocket (or the raw ceiling's WebSocket).
    WebSocket,
    /// Bayeux long-polling over HTTP POST.
    LongPolling,
}

/// A delivery scenario (fanout, users, longpoll).
pub struct Delivery {
    /// Scenario name.
    pub name: &'static str,
    /// Subscriber transport.
    pub transport: Transport,
    /// Subscriber count.
    pub subscribers: usize,
    /// `Some(channel)`: everyone on one channel; `None`: subscriber i on `/users/{i}`.
    pub channel: Option<String>,
    /// Total publications.
    pub messages: u64,
    /// Publish rate, 0 = flat out.
    pub rate: f64,
    /// Publish phase limit.
    pub duration: Duration,
    /// Publications in flight when flat out.
    pub window: u64,
    /// Parallel publisher connections.
    pub publishers: usize,
    /// Publisher transport.
    pub publish_via: PublishVia,
    /// Messages per HTTP POST (at least 1).
    pub batch: usize,
}

fn ctx(common: &Common, shared: Arc<Shared>) -> Arc<Ctx> {
    Arc::new(Ctx {
        target: common.target.clone(),
        shared,
        protocol: common.protocol,
        gate: Semaphore::new(common.concurrency.max(1)),
        step_limit: common.step_timeout,
        poll_limit: Duration::from_secs(600).max(common.step_timeout),
    })
}

fn spawn_subscribers(
    set: &mut JoinSet<()>,
    ctx: &Arc<Ctx>,
    transport: Transport,
    n: usize,
    channel: impl Fn(usize) -> String,
) {
    for i in 0..n {
        let c = ctx.clone();
        let ch = channel(i);
        match transport {
            Transport::WebSocket => set.spawn(clients::ws_subscriber(c, i, ch)),
            Transport::LongPolling => set.spawn(clients::lp_subscriber(c, i, ch)),
        };
    }
}

/// Waits until every subscriber is ready or failed, or the deadline passes.
async fn wait_setup(shared: &Shared, n: usize, deadline: Instant) {
    while shared.ready.load(Relaxed) + shared.failed.load(Relaxed) < n && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `expected()` deliveries arrived or the deadline passes.
async fn wait_drain(shared: &Shared, expected: impl Fn() -> u64, deadline: Instant) {
    while shared.received.load(Relaxed) < expected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn generator_use(cpu0: f64, t0: Instant, threads: usize) -> GeneratorUse {
    let cpu_s = procfs::own_cpu() - cpu0;
    let wall_s = t0.elapsed().as_secs_f64();
    let utilization = if wall_s > 0.0 {
        cpu_s / wall_s / threads.max(1) as f64
    } else {
        0.0
    };
    GeneratorUse {
        cpu_s,
        wall_s,
        utilization,
        saturated: utilization >= SATURATED,
        threads,
    }
}

fn pad(n: usize) -> String {
    "x".repeat(n)
}

/// Runs fanout, users or longpoll.
pub async fn delivery(common: &Common, d: &Delivery) -> Res<Report> {
    let n = d.subscribers;
    let factor = if d.channel.is_some() { n as u64 } else { 1 };
    let shared = Arc::new(Shared::new(n, factor, d.window)?);
    let ctx = ctx(common, shared.clone());
    let server = Server::new(common.server_pid);
    let mut subs = JoinSet::new();
    let fixed = d.channel.clone();
    spawn_subscribers(&mut subs, &ctx, d.transport, n, |i| match &fixed {
        Some(c) => c.clone(),
        None => format!("/users/{i}"),
    });
    wait_setup(&shared, n, Instant::now() + common.setup_timeout).await;
    let ready = shared.ready.load(Relaxed);
    if ready == 0 {
        return Err(format!(
            "no subscriber could be set up: {}",
            shared.first_error().unwrap_or_default()
        ));
    }
    // Let the last subscriptions settle.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let s0 = server.sample();
    let g0 = procfs::own_cpu();
    let start = Instant::now();
    let plan = Arc::new(PublishPlan {
        messages: d.messages,
        rate: d.rate,
        deadline: start + d.duration,
        start,
        channel: d.channel.clone(),
        users: n,
        pad: pad(common.payload_pad),
        batch: d.batch,
        next: AtomicU64::new(0),
    });
    let mut pubs = JoinSet::new();
    for _ in 0..d.publishers.max(1) {
        pubs.spawn(clients::publish(ctx.clone(), plan.clone(), d.publish_via));
    }
    while pubs.join_next().await.is_some() {}
    let publish_s = start.elapsed().as_secs_f64();

    let expected = || -> u64 {
        if d.channel.is_some() {
            shared.acked.load(Relaxed) * n as u64
        } else {
            shared.expected.iter().map(|e| e.load(Relaxed)).sum::<u64>()
        }
    };
    wait_drain(&shared, expected, Instant::now() + common.drain).await;
    let s1 = server.sample();
    let generator = generator_use(g0, start, common.threads);
    subs.abort_all();

    let acked = shared.acked.load(Relaxed);
    let (lost, duplicates) = if d.channel.is_some() {
        shared.loss(|_| acked)
    } else {
        shared.loss(|i| shared.expected.get(i).map_or(0, |e| e.load(Relaxed)))
    };
    let received = shared.received.load(Relaxed);
    let last_rx = Duration::from_nanos(shared.last_rx_ns.load(Relaxed));
    let t0 = start.duration_since(shared.epoch());
    let elapsed_s = last_rx.saturating_sub(t0).as_secs_f64();
    let server_cpu = match (s0.cpu, s1.cpu) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let latency = shared
        .hist
        .lock()
        .map(|h| Latency::from_hist(&h))
        .unwrap_or_default();
    let mut r = Report {
        scenario: d.name.to_string(),
        protocol: Some(common.protocol),
        transport: match d.transport {
            Transport::WebSocket => "websocket".into(),
            Transport::LongPolling => "long-polling".into(),
        },
        url: common.url.clone(),
        subscribers: n,
        ready,
        failed: shared.failed.load(Relaxed),
        publishers: d.publishers.max(1),
        publish_via: Some(d.publish_via),
        batch: d.batch,
        rate: d.rate,
        window: d.window,
        messages_limit: d.messages,
        duration_limit_s: d.duration.as_secs_f64(),
        published: acked,
        publish_errors: shared.publish_errors.load(Relaxed),
        expected: expected(),
        received,
        lost,
        duplicates,
        foreign: shared.foreign.load(Relaxed),
        publish_s,
        elapsed_s,
        publishes_per_s: per(acked, publish_s),
        deliveries_per_s: per(received, elapsed_s),
        deliveries_per_server_cpu_s: server_cpu.filter(|c| *c > 0.0).map(|c| received as f64 / c),
        latency,
        server: ServerUse {
            pid: common.server_pid,
            cpu_s: server_cpu,
            rss_start_kib: s0.rss,
            rss_end_kib: s1.rss,
        },
        generator,
        idle: None,
        errors: shared.errors.load(Relaxed),
        first_error: shared.first_error(),
    };
    r.tidy();
    Ok(r)
}

fn per(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// The idle scenario's sizes.
pub struct Idle {
    /// Clients to connect.
    pub clients: usize,
    /// Channel they all subscribe to.
    pub channel: String,
    /// Time to let the server settle before reading its memory.
    pub hold: Duration,
}

/// Connects idle clients; measures set-up rate, set-up CPU and memory per connection.
pub async fn idle(common: &Common, spec: &Idle) -> Res<Report> {
    let n = spec.clients;
    let shared = Arc::new(Shared::new(n, n as u64, 1)?);
    let ctx = ctx(common, shared.clone());
    let server = Server::new(common.server_pid);
    let s0 = server.sample();
    let g0 = procfs::own_cpu();
    let start = Instant::now();
    let mut subs = JoinSet::new();
    spawn_subscribers(&mut subs, &ctx, Transport::WebSocket, n, |_| {
        spec.channel.clone()
    });
    wait_setup(&shared, n, start + common.setup_timeout).await;
    let setup_s = start.elapsed().as_secs_f64();
    let s1 = server.sample();
    let generator = generator_use(g0, start, common.threads);
    let ready = shared.ready.load(Relaxed);
    if ready == 0 {
        return Err(format!(
            "no client could be set up: {}",
            shared.first_error().unwrap_or_default()
        ));
    }
    tokio::time::sleep(spec.hold).await;
    let s2 = server.sample();

    // Liveness check: one publication must reach every client.
    let pub_start = Instant::now();
    let plan = Arc::new(PublishPlan {
        messages: 1,
        rate: 0.0,
        deadline: pub_start + common.step_timeout,
        start: pub_start,
        channel: Some(spec.channel.clone()),
        users: n,
        pad: String::new(),
        batch: 1,
        next: AtomicU64::new(0),
    });
    clients::publish(ctx.clone(), plan, PublishVia::Http).await;
    let publish_s = pub_start.elapsed().as_secs_f64();
    let expected = || shared.acked.load(Relaxed) * n as u64;
    wait_drain(&shared, expected, Instant::now() + common.drain).await;
    subs.abort_all();
    let acked = shared.acked.load(Relaxed);
    let (lost, duplicates) = shared.loss(|_| acked);
    let received = shared.received.load(Relaxed);
    let last_rx = Duration::from_nanos(shared.last_rx_ns.load(Relaxed));
    let elapsed_s = last_rx
        .saturating_sub(pub_start.duration_since(shared.epoch()))
        .as_secs_f64();
    let setup_cpu = match (s0.cpu, s1.cpu) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let rss_per = match (s0.rss, s2.rss) {
        (Some(a), Some(b)) if ready > 0 => Some((b as f64 - a as f64) * 1024.0 / ready as f64),
        _ => None,
    };
    let latency = shared
        .hist
        .lock()
        .map(|h| Latency::from_hist(&h))
        .unwrap_or_default();
    let mut r = Report {
        scenario: "idle".into(),
        protocol: Some(common.protocol),
        transport: "websocket".into(),
        url: common.url.clone(),
        subscribers: n,
        ready,
        failed: shared.failed.load(Relaxed),
        publishers: 1,
        publish_via: Some(PublishVia::Http),
        batch: 1,
        rate: 0.0,
        window: 1,
        messages_limit: 1,
        duration_limit_s: common.step_timeout.as_secs_f64(),
        published: acked,
        publish_errors: shared.publish_errors.load(Relaxed),
        expected: expected(),
        received,
        lost,
        duplicates,
        foreign: shared.foreign.load(Relaxed),
        publish_s,
        elapsed_s,
        publishes_per_s: per(acked, publish_s),
        deliveries_per_s: per(received, elapsed_s),
        deliveries_per_server_cpu_s: None,
        latency,
        server: ServerUse {
            pid: common.server_pid,
            cpu_s: setup_cpu,
            rss_start_kib: s0.rss,
            rss_end_kib: s2.rss,
        },
        generator,
        idle: Some(IdleFigures {
            connections: ready,
            setup_s,
            connections_per_s: per(ready as u64, setup_s),
            server_cpu_per_connection_us: setup_cpu.map(|c| c * 1e6 / ready as f64),
            rss_baseline_kib: s0.rss,
            rss_connected_kib: s2.rss,
            rss_per_connection_bytes: rss_per,
        }),
        errors: shared.errors.load(Relaxed),
        first_error: shared.first_error(),
    };
    r.tidy();
    Ok(r)
}
