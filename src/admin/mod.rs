//! The admin listener: `/healthz`, `/readyz` and Prometheus `/metrics`.
//!
//! It runs on its own address so it can stay private (the load balancer's
//! health check and a metrics scraper reach it; clients do not). `/readyz` turns
//! 503 the moment the drain starts, so the load balancer stops sending new
//! clients before the listeners close. `/metrics` renders `crate::metrics` with
//! the figures of every engine route.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::http::response::{full, not_found, Body};
use crate::metrics::Metrics;
use crate::routes::Routes;
use crate::shutdown::Shutdown;

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
            // A Redis route whose Redis is unreachable cannot take new clients.
            let storage_down: Vec<String> = routes
                .load()
                .routes()
                .iter()
                .filter(|r| r.engine().and_then(|e| e.storage_ready()) == Some(false))
                .map(|r| r.prefix.to_string())
                .collect();
            if shutdown.is_draining() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "draining\n".to_owned(),
                    "text/plain; charset=utf-8",
                )
            } else if !storage_down.is_empty() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("redis unreachable: {}\n", storage_down.join(" ")),
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
            metrics.render(&route_stats(routes), shutdown.is_draining()),
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

/// Every engine route's prefix and figures, for the metrics exposition.
pub fn route_stats(routes: &Routes) -> Vec<(String, crate::engine::Stats)> {
    routes
        .load()
        .routes()
        .iter()
        .filter_map(|r| r.engine().map(|e| (r.prefix.to_string(), e.stats())))
        .collect()
}
