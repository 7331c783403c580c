//! Routes forwarded to an HTTP upstream, so a team can move one environment
//! at a time from an existing Faye server to an in-process engine by editing
//! `routes.toml`.
//!
//! Requests are streamed to the upstream with hop-by-hop headers removed and
//! `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` set. Held
//! long-polls are ordinary requests with no proxy timeout of their own.
//! WebSocket upgrades get a dedicated upstream connection; once both sides
//! switched protocols the bytes are copied in both directions until either
//! side closes. The upstream URL's path replaces the route prefix
//! (`prefix = "/staging/faye"`, `upstream = "http://faye:8000/bayeux"` sends
//! `/staging/faye/handshake` to `/bayeux/handshake`); with no path in the URL
//! the request path is kept as it is.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::http::response::{text, Body};
use crate::http::ConnInfo;
use crate::shutdown::Shutdown;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One upstream target.
#[derive(Debug)]
pub struct Upstream {
    url: Uri,
    prefix: String,
    client: Client<HttpConnector, Incoming>,
}

impl Upstream {
    /// An upstream at `url` for the route `prefix`.
    pub fn new(url: &Uri, prefix: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Upstream {
            url: url.clone(),
            prefix: prefix.to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The configured URL.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    fn target(&self, original: &Uri) -> Option<Uri> {
        let path = original.path();
        let base = self.url.path().trim_end_matches('/');
        let path = if base.is_empty() {
            path.to_owned()
        } else {
            let rest = path
                .strip_prefix(self.prefix.trim_end_matches('/'))
                .unwrap_or(path);
            format!("{base}{rest}")
        };
        let pq = match original.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        Uri::builder()
            .scheme("http")
            .authority(self.url.authority()?.as_str())
            .path_and_query(pq)
            .build()
            .ok()
    }

    /// Forwards one request and streams the answer back.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        conn: &ConnInfo,
        shutdown: &Shutdown,
    ) -> Response<Body> {
        let Some(uri) = self.target(req.uri()) else {
            return text(StatusCode::BAD_GATEWAY, "Bad gateway");
        };
        let is_upgrade = req.headers().contains_key(UPGRADE);
        let original_host = req.headers().get(HOST).cloned();
        let upgrade_value = req.headers().get(UPGRADE).cloned();
        strip_hop_by_hop(req.headers_mut());
        add_forwarded(req.headers_mut(), conn, original_host);
        if let Some(a) = self.url.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                req.headers_mut().insert(HOST, v);
            }
        }
        *req.uri_mut() = uri;
        if is_upgrade {
            if let Some(v) = upgrade_value {
                req.headers_mut().insert(UPGRADE, v);
                req.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            }
            return self.forward_upgrade(req, shutdown).await;
        }
        match self.client.request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => {
                tracing::warn!(upstream = %self.url, error = %e, "upstream request failed");
                text(StatusCode::BAD_GATEWAY, "Bad gateway")
            }
        }
    }

    async fn forward_upgrade(
        &self,
        mut req: Request<Incoming>,
        shutdown: &Shutdown,
    ) -> Response<Body> {
        let client_upgrade = hyper::upgrade::on(&mut req);
        let Some(authority) = self.url.authority().map(|a| a.to_string()) else {
            return text(StatusCode::BAD_GATEWAY, "Bad gateway");
        };
        let stream = match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&authority),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => return text(StatusCode::BAD_GATEWAY, "Bad gateway"),
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, connection)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            return text(StatusCode::BAD_GATEWAY, "Bad gateway");
        };
        tokio::spawn(connection.with_upgrades());
        let (parts, body) = req.into_parts();
        let path_only = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let mut upstream_req = Request::from_parts(parts, body);
        if let Ok(u) = path_only.parse() {
            *upstream_req.uri_mut() = u;
        }
        let mut resp = match sender.send_request(upstream_req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(upstream = %self.url, error = %e, "upstream upgrade failed");
                return text(StatusCode::BAD_GATEWAY, "Bad gateway");
            }
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = resp.into_parts();
            return Response::from_parts(parts, body.boxed());
        }
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        shutdown.spawn(async move {
            let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) else {
                return;
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        let (parts, _) = resp.into_parts();
        Response::from_parts(parts, crate::http::response::empty())
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn add_forwarded(headers: &mut HeaderMap, conn: &ConnInfo, host: Option<HeaderValue>) {
    let ip = conn.peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
    );
    if let Some(h) = host {
        headers.insert("x-forwarded-host", h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_mapping() {
        let up = Upstream::new(
            &"http://10.0.0.5:9292/bayeux".parse().unwrap(),
            "/staging/faye",
        );
        let t = up
            .target(&"/staging/faye/handshake?x=1".parse().unwrap())
            .unwrap();
        assert_eq!(t.to_string(), "http://10.0.0.5:9292/bayeux/handshake?x=1");
        let t = up.target(&"/staging/faye.js".parse().unwrap()).unwrap();
        assert_eq!(t.to_string(), "http://10.0.0.5:9292/bayeux.js");
        let up = Upstream::new(&"http://faye:8000".parse().unwrap(), "/staging/faye");
        let t = up
            .target(&"/staging/faye/connect".parse().unwrap())
            .unwrap();
        assert_eq!(t.to_string(), "http://faye:8000/staging/faye/connect");
    }
}
