//! The admin listener: `/healthz`, `/readyz`, Prometheus `/metrics`, and the
//! operator's console with its JSON API.
//!
//! It runs on its own address so it can stay private (the load balancer's
//! health check, a metrics scraper and operators reach it; clients do not).
//! `/readyz` turns 503 the moment the drain starts, so the load balancer stops
//! sending new clients before the listeners close. `/metrics` renders
//! `crate::metrics` with the figures of every engine route.
//!
//! The console (`GET /`, `console`) and its API (`/api/…`, `api`) show each
//! route live: figures and their recent history (`history`, sampled by this
//! listener's accept loop), presence on a channel, taps, a test publish, the
//! last reloads. Who may see what is decided in `access`; health, readiness
//! and metrics are always open. Everything is HTTP/1.1 on connections counted
//! against `max_connections`, including the server-sent-event streams of taps,
//! which end when their client leaves or their route is retired (at the end
//! of a drain at the latest).

mod access;
mod api;
mod console;
mod history;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::auth::Secret;
use crate::http::response::{full, Body};
use crate::metrics::Metrics;
use crate::routes::Routes;
use crate::shutdown::Shutdown;
use access::Access;
use history::History;

/// How the admin listener is run, from `[server.admin]`.
#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// Most connections at once (tap streams included); a connection past
    /// that is closed at once.
    pub max_connections: usize,
    /// The token the console and its API require, if any.
    pub token: Option<Secret>,
}

/// What every admin request can reach.
#[derive(Debug)]
struct State {
    routes: Routes,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    access: Access,
    history: History,
}

/// Serves the admin endpoints until the process exits. It keeps answering during
/// the drain, so the load balancer sees `/readyz` fail. At most `max_connections`
/// at once (a connection past that is closed at once), and an idle keep-alive
/// connection is closed after the header timeout, so a few stuck scrapers
/// cannot take the health check's place; the descriptors it needs are kept
/// out of the client listeners' budget. The same loop samples every route's
/// figures for the console's history, once a second.
pub async fn serve(
    listener: TcpListener,
    settings: AdminSettings,
    routes: Routes,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) {
    // An address that cannot be read is treated as not loopback: the stricter rules apply.
    let bound = listener
        .local_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let state = Arc::new(State {
        routes,
        shutdown,
        metrics,
        access: Access::new(settings.token, bound),
        history: History::default(),
    });
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let mut sample = tokio::time::interval(history::SAMPLE_EVERY);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = sample.tick() => {
                state.history.sample(&state.routes.load());
                continue;
            }
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    match req.uri().path() {
        "/healthz" | "/readyz" | "/metrics" => probe(&req, &state),
        path if path.starts_with("/assets/") => console::asset(&req),
        _ => console::handle(req, state).await,
    }
}

/// Health, readiness and metrics: open to anyone who reaches the listener.
fn probe(req: &Request<Incoming>, state: &State) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = Response::new(full("method not allowed\n"));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let text = "text/plain; charset=utf-8";
    let (status, body, content_type) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned(), text),
        "/readyz" => {
            let retired = state
                .routes
                .load()
                .routes()
                .iter()
                .any(|r| r.engine().is_some_and(|e| e.is_retired()));
            // A Redis route whose Redis is unreachable cannot take new clients.
            let storage_down: Vec<String> = state
                .routes
                .load()
                .routes()
                .iter()
                .filter(|r| r.engine().and_then(|e| e.storage_ready()) == Some(false))
                .map(|r| r.prefix.to_string())
                .collect();
            if state.shutdown.is_draining() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "draining\n".to_owned(),
                    text,
                )
            } else if !storage_down.is_empty() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("redis unreachable: {}\n", storage_down.join(" ")),
                    text,
                )
            } else if retired {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "route not ready\n".to_owned(),
                    text,
                )
            } else {
                (StatusCode::OK, "ready\n".to_owned(), text)
            }
        }
        _ => (
            StatusCode::OK,
            state
                .metrics
                .render(&route_stats(&state.routes), state.shutdown.is_draining()),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Every engine route's prefix and figures, for the metrics exposition.
pub fn route_stats(routes: &Routes) -> Vec<(String, crate::engine::Stats)> {
    routes
        .load()
        .routes()
        .iter()
        .filter_map(|r| r.engine().map(|e| (r.prefix.to_string(), e.stats())))
        .collect()
}
