//! The gateway: every client-facing HTTP request starts here.
//!
//! [`Gateway::handle`] loads the route table once, finds the route by longest
//! whole-segment prefix (404 elsewhere) and dispatches in Faye's order: static
//! client files (`.js`/`.map`), WebSocket upgrades, CORS preflights, EventSource
//! (`GET` accepting `text/event-stream`), JSONP (`GET`), long-polling (`POST`),
//! and `400 Bad request` for any other method. Upstream routes are handed to
//! `crate::upstream` whole.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, UPGRADE};
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::budget::IncomingBudget;
use crate::http::static_client::StaticClient;
use crate::http::{cors, response, Body, ConnInfo};
use crate::routes::{Backend, Routes, Target};
use crate::shutdown::Shutdown;
use crate::transport::{eventsource, long_polling, websocket};

/// How the gateway treats requests, from `[server]`.
#[derive(Debug, Clone, Default)]
pub struct GatewaySettings {
    /// Time allowed to receive a request body once the headers arrived, and
    /// one WebSocket message once its first byte arrived.
    pub body_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The bound on unfinished request bodies and WebSocket messages.
    pub incoming: Arc<IncomingBudget>,
}

impl GatewaySettings {
    /// The client's address: the TCP peer, or, when the peer is a trusted
    /// proxy, the nearest address in `X-Forwarded-For` that is not one.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let mut client = peer;
        // Walk the hops from the nearest one outwards; only trusted proxies'
        // additions are believed, the first untrusted hop is the client.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for hop in hops {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !trusted(&ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

#[derive(Debug)]
struct Inner {
    routes: Routes,
    client: StaticClient,
    shutdown: Shutdown,
    settings: GatewaySettings,
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
        settings: GatewaySettings,
    ) -> Self {
        Gateway {
            inner: Arc::new(Inner {
                routes,
                client,
                shutdown,
                settings,
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
        let ip = self.inner.settings.client_ip(conn.peer.ip(), req.headers());
        let is_upgrade = req
            .headers()
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let origins = engine.settings().origins.clone();
        if is_upgrade {
            // Browsers always send `Origin` on an upgrade; one the route does not
            // allow is refused before any Bayeux traffic.
            if !cors::origin_allowed(req.headers(), &origins) {
                return response::text(http::StatusCode::FORBIDDEN, "Origin not allowed");
            }
            let session = websocket::SessionInfo {
                ip,
                slot: conn.slot.clone(),
                message_timeout: self.inner.settings.body_timeout,
                incoming: self.inner.settings.incoming.charge(),
            };
            return websocket::upgrade(req, engine, &self.inner.shutdown, session);
        }
        if req.method() == Method::OPTIONS
            || req.headers().contains_key("access-control-request-method")
        {
            return cors::preflight(req.headers(), &origins);
        }
        match *req.method() {
            Method::GET => {
                let wants_stream = req
                    .headers()
                    .get(ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/event-stream"));
                if wants_stream {
                    if !cors::origin_allowed(req.headers(), &origins) {
                        return response::text(http::StatusCode::FORBIDDEN, "Origin not allowed");
                    }
                    eventsource::serve(req, engine, last, &self.inner.shutdown).await
                } else {
                    // JSONP is readable from any page that includes it as a script,
                    // so a route with an origin list needs to know where it is used.
                    let from_allowed =
                        cors::request_origin(req.headers()).is_some_and(|o| origins.allows(o));
                    if origins.is_restricted() && !from_allowed {
                        return response::text(http::StatusCode::FORBIDDEN, "Origin not allowed");
                    }
                    long_polling::get(req, engine, ip).await
                }
            }
            Method::POST => {
                let settings = &self.inner.settings;
                let charge = settings.incoming.charge();
                long_polling::post(req, engine, settings.body_timeout, charge, ip).await
            }
            _ => response::bad_request(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let settings = GatewaySettings {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let spoofed = headers(&["1.1.1.1"]);
        assert_eq!(
            settings.client_ip(ip("203.0.113.9"), &spoofed),
            ip("203.0.113.9")
        );
        assert_eq!(settings.client_ip(ip("10.0.0.2"), &spoofed), ip("1.1.1.1"));
        // The client prepends a lie; the trusted hops appended the truth.
        let chain = headers(&["1.1.1.1, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(
            settings.client_ip(ip("10.0.0.2"), &chain),
            ip("198.51.100.7")
        );
        assert_eq!(
            settings.client_ip(ip("10.0.0.2"), &headers(&["junk"])),
            ip("10.0.0.2")
        );
        assert_eq!(
            settings.client_ip(ip("10.0.0.2"), &headers(&[])),
            ip("10.0.0.2")
        );
    }
}
