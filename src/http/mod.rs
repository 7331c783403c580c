//! The gateway: every client-facing HTTP request starts here.
//!
//! [`Gateway::handle`] loads the route table once, finds the route by longest
//! whole-segment prefix (404 elsewhere) and dispatches in Faye's order: static
//! client files (`.js`/`.map`), WebSocket upgrades, CORS preflights, EventSource
//! (`GET` accepting `text/event-stream`), JSONP (`GET`), long-polling (`POST`),
//! and `400 Bad request` for any other method.

pub mod cors;
pub mod response;
pub mod static_client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, UPGRADE};
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::routes::{Backend, Routes, Target};
use crate::shutdown::Shutdown;
use crate::transport::{eventsource, long_polling, websocket};
pub use response::Body;
use static_client::StaticClient;

/// The token of an `Authorization: Bearer …` header (any transport may carry
/// a publish secret this way).
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// True on a TLS listener.
    pub tls: bool,
}

#[derive(Debug)]
struct Inner {
    routes: Routes,
    client: StaticClient,
    shutdown: Shutdown,
    /// Time allowed to receive a request body once the headers arrived.
    body_timeout: Duration,
}

/// The client-facing service (cheap to clone).
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// A gateway over `routes`, serving `client` files, tracking sessions in `shutdown`.
    pub fn new(
        routes: Routes,
        client: StaticClient,
        shutdown: Shutdown,
        body_timeout: Duration,
    ) -> Self {
        Gateway {
            inner: Arc::new(Inner {
                routes,
                client,
                shutdown,
                body_timeout,
            }),
        }
    }

    /// The route table handle.
    pub fn routes(&self) -> &Routes {
        &self.inner.routes
    }

    /// The drain handle.
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let table = self.inner.routes.load();
        let path = req.uri().path().to_owned();
        let Some((route, target)) = table.lookup(&path) else {
            return response::not_found();
        };
        tracing::Span::current().record("route", &*route.prefix);
        let engine = match &route.backend {
            Backend::Engine(e) => e.clone(),
            Backend::Upstream(up) => {
                let up = up.clone();
                drop(table);
                return up.forward(req, &conn, &self.inner.shutdown).await;
            }
        };
        drop(table);

        let rest = match target {
            Target::Extension("js") => return self.inner.client.serve("client.js", req.headers()),
            Target::Extension(_) => return response::not_found(),
            Target::Path(rest) => rest,
        };
        let last = rest.rsplit('/').next().unwrap_or("");
        if last.ends_with(".js") || last.ends_with(".map") {
            return self.inner.client.serve(last, req.headers());
        }
        let is_upgrade = req
            .headers()
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if is_upgrade {
            return websocket::upgrade(req, engine, &self.inner.shutdown, &conn);
        }
        if req.method() == Method::OPTIONS
            || req.headers().contains_key("access-control-request-method")
        {
            return cors::preflight(req.headers());
        }
        match *req.method() {
            Method::GET => {
                let wants_stream = req
                    .headers()
                    .get(ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/event-stream"));
                if wants_stream {
                    eventsource::serve(req, engine, last, &self.inner.shutdown)
                } else {
                    long_polling::get(req, engine, &self.inner.shutdown).await
                }
            }
            Method::POST => {
                long_polling::post(req, engine, &self.inner.shutdown, self.inner.body_timeout).await
            }
            _ => response::bad_request(),
        }
    }
}
