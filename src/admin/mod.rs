//! The admin listener: `/healthz`, `/readyz` and Prometheus `/metrics`.
//!
//! It runs on its own address so it can stay private (the load balancer's
//! health check and a metrics scraper reach it; clients do not). `/readyz` turns
//! 503 the moment the drain starts, so the load balancer stops sending new
//! clients before the listeners close. Metrics are plain atomics rendered in the
//! Prometheus text format by hand: a few dozen lines, no registry needed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::engine::Transport;
use crate::http::response::{full, not_found, Body};
use crate::routes::Routes;
use crate::shutdown::Shutdown;

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0,
];

/// Process-wide counters that do not belong to one route.
#[derive(Debug, Default)]
pub struct Metrics {
    tls_failures: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts a failed or timed-out TLS handshake.
    pub fn tls_failure(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload by result.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
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

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self, routes: &Routes, draining: bool) -> String {
        let mut out = String::with_capacity(4096);
        let table = routes.load();
        let per_route: Vec<(String, crate::engine::Stats)> = table
            .routes()
            .iter()
            .filter_map(|r| r.engine().map(|e| (r.prefix.to_string(), e.stats())))
            .collect();
        let family = |out: &mut String,
                      kind: &str,
                      name: &str,
                      help: &str,
                      f: &dyn Fn(&crate::engine::Stats) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (route, s) in &per_route {
                let _ = writeln!(out, "{name}{{route=\"{route}\"}} {}", f(s));
            }
        };
        let gauge =
            |out: &mut String, name: &str, help: &str, f: &dyn Fn(&crate::engine::Stats) -> u64| {
                family(out, "gauge", name, help, f)
            };
        let counter =
            |out: &mut String, name: &str, help: &str, f: &dyn Fn(&crate::engine::Stats) -> u64| {
                family(out, "counter", name, help, f)
            };
        gauge(
            &mut out,
            "bayeux_edge_sessions",
            "Live Bayeux sessions.",
            &|s| s.clients,
        );
        gauge(
            &mut out,
            "bayeux_edge_subscriptions",
            "Channel subscriptions.",
            &|s| s.subscriptions,
        );
        counter(
            &mut out,
            "bayeux_edge_handshakes_total",
            "Successful handshakes.",
            &|s| s.handshakes,
        );
        counter(
            &mut out,
            "bayeux_edge_messages_published_total",
            "Accepted publishes.",
            &|s| s.published,
        );
        counter(
            &mut out,
            "bayeux_edge_messages_delivered_total",
            "Events queued for recipients.",
            &|s| s.delivered,
        );
        counter(
            &mut out,
            "bayeux_edge_messages_dropped_total",
            "Events dropped from full client queues.",
            &|s| s.dropped,
        );
        counter(
            &mut out,
            "bayeux_edge_queue_overflows_total",
            "Times a client queue overflowed.",
            &|s| s.overflows,
        );
        counter(
            &mut out,
            "bayeux_edge_handshakes_refused_total",
            "Handshakes refused (route full, an address over its limits, several in one request).",
            &|s| s.handshakes_refused,
        );
        counter(
            &mut out,
            "bayeux_edge_subscriptions_refused_total",
            "Subscriptions refused by the per-client or per-route bound.",
            &|s| s.subscriptions_refused,
        );
        counter(
            &mut out,
            "bayeux_edge_batches_refused_total",
            "Requests or WebSocket messages refused for holding too many messages.",
            &|s| s.batches_refused,
        );
        gauge(
            &mut out,
            "bayeux_edge_tracked_addresses",
            "Client addresses tracked for the per-address limits.",
            &|s| s.peers,
        );
        counter(
            &mut out,
            "bayeux_edge_sessions_expired_total",
            "Sessions removed by expiry.",
            &|s| s.expired,
        );
        let _ = writeln!(out, "# HELP bayeux_edge_connections Open client connections by transport.\n# TYPE bayeux_edge_connections gauge");
        for (route, s) in &per_route {
            for t in Transport::ALL {
                let _ = writeln!(
                    out,
                    "bayeux_edge_connections{{route=\"{route}\",transport=\"{}\"}} {}",
                    t.name(),
                    s.connections[t as usize]
                );
            }
        }
        let _ = writeln!(out, "# HELP bayeux_edge_reloads_total Route table reloads by result.\n# TYPE bayeux_edge_reloads_total counter");
        let _ = writeln!(
            out,
            "bayeux_edge_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "bayeux_edge_reloads_total{{result=\"error\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP bayeux_edge_tls_handshake_failures_total Failed or timed-out TLS handshakes.\n# TYPE bayeux_edge_tls_handshake_failures_total counter");
        let _ = writeln!(
            out,
            "bayeux_edge_tls_handshake_failures_total {}",
            self.tls_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP bayeux_edge_write_timeouts_total Connections closed because the peer stopped reading.\n# TYPE bayeux_edge_write_timeouts_total counter");
        let _ = writeln!(
            out,
            "bayeux_edge_write_timeouts_total {}",
            crate::deadline::write_timeouts()
        );
        let _ = writeln!(out, "# HELP bayeux_edge_websocket_read_timeouts_total WebSockets closed for silence or an unfinished message.\n# TYPE bayeux_edge_websocket_read_timeouts_total counter");
        let _ = writeln!(
            out,
            "bayeux_edge_websocket_read_timeouts_total {}",
            crate::deadline::read_timeouts()
        );
        let _ = writeln!(out, "# HELP bayeux_edge_draining 1 while the server drains.\n# TYPE bayeux_edge_draining gauge");
        let _ = writeln!(out, "bayeux_edge_draining {}", u8::from(draining));
        let _ = writeln!(out, "# HELP bayeux_edge_request_duration_seconds Client request duration, held long-polls included.\n# TYPE bayeux_edge_request_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "bayeux_edge_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "bayeux_edge_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "bayeux_edge_request_duration_seconds_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "bayeux_edge_request_duration_seconds_count {count}");
        out
    }
}

/// Serves the admin endpoints until the process exits. It keeps answering during
/// the drain, so the load balancer sees `/readyz` fail. At most `max_connections`
/// at once (a connection past that is closed at once), and an idle keep-alive
/// connection is closed after the header timeout, so a few stuck scrapers
/// cannot take the health check's place; the descriptors it needs are kept
/// out of the client listeners' budget.
pub async fn serve(
    listener: TcpListener,
    max_connections: usize,
    routes: Routes,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let routes = routes.clone();
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let r = answer(&req, &routes, &shutdown, &metrics);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(
    req: &Request<Incoming>,
    routes: &Routes,
    shutdown: &Shutdown,
    metrics: &Metrics,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = Response::new(full("method not allowed\n"));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    let (status, body, content_type) = match req.uri().path() {
        "/healthz" => (
            StatusCode::OK,
            "ok\n".to_owned(),
            "text/plain; charset=utf-8",
        ),
        "/readyz" => {
            let retired = routes
                .load()
                .routes()
                .iter()
                .any(|r| r.engine().is_some_and(|e| e.is_retired()));
            if shutdown.is_draining() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "draining\n".to_owned(),
                    "text/plain; charset=utf-8",
                )
            } else if retired {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "route not ready\n".to_owned(),
                    "text/plain; charset=utf-8",
                )
            } else {
                (
                    StatusCode::OK,
                    "ready\n".to_owned(),
                    "text/plain; charset=utf-8",
                )
            }
        }
        "/metrics" => (
            StatusCode::OK,
            metrics.render(routes, shutdown.is_draining()),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => return not_found(),
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
