//! The console's JSON API (documented in the README's "Operator's console").
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/session` | access rules in force for this request, and the CSRF token |
//! | `GET /api/routes` | every route: figures, rates, policies, engine kind |
//! | `GET /api/history?since=MS` | each engine route's samples after `since` |
//! | `GET /api/reloads` | the last reloads, newest first |
//! | `GET /api/routes{prefix}` | one route, as in `/api/routes` |
//! | `GET /api/routes{prefix}/channels{channel}` | presence: the sessions a publish to `channel` would reach |
//! | `GET /api/routes{prefix}/tap{pattern}` | a tap, as server-sent events |
//! | `POST /api/routes{prefix}/publish` | test publish `{"channel", "data"}` |
//!
//! Route prefixes and channels keep their slashes in the path, so the route
//! is found by matching the route table's prefixes (longest first) against
//! the path: `/api/routes/staging/faye/channels/123` is channel `/123` of
//! `/staging/faye` (a route whose prefix is `/` is `/api/routes//…`).
//! Everything here reads snapshots (figures, rings, the index); nothing is
//! computed per message except what a tap forwards.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::access::Caller;
use super::history::{unix_ms, SAMPLE_EVERY};
use super::State;
use crate::auth::PublishPolicy;
use crate::engine::{
    Engine, EngineSettings, OperatorPublishError, Tap, TapRefused, Transport, TAP_MESSAGES,
};
use crate::http::response::{full, Body};
use crate::routes::{Backend, Route, RouteTable};

/// Most sessions listed by one presence answer (the count is always exact).
const PRESENCE_LIST: usize = 200;
/// A busy tap writes at most one chunk per this interval: the events of a
/// channel publishing 10,000 a second go out in a few dozen writes, not in
/// 10,000 wake-ups and writes competing with delivery. A quiet tap's first
/// event goes out at once. (At 10,000 a second an interval holds a few
/// hundred events, well within what a tap may hold.)
const TAP_FLUSH: Duration = Duration::from_millis(50);
/// A comment line on an idle tap, so a client that left is noticed.
const TAP_HEARTBEAT: Duration = Duration::from_secs(15);
/// Time allowed to receive a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A JSON answer that is never cached.
pub(super) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `{"error": message}` with `status`.
pub(super) fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Reads a request body of at most `limit` bytes within [`BODY_TIMEOUT`].
pub(super) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Response<Body>> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )),
        Err(_) => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The name of a route's publish policy (never the secret).
fn publish_policy(p: &PublishPolicy) -> &'static str {
    match p {
        PublishPolicy::Open => "open",
        PublishPolicy::Secret(_) => "secret",
        PublishPolicy::Deny => "deny",
    }
}

/// The name of a route's subscribe policy. Faye's behaviour (anyone may
/// subscribe) is the only one the settings hold so far.
fn subscribe_policy(_settings: &EngineSettings) -> &'static str {
    "open"
}

/// The route's policies as the console shows them. Origins are not
/// restricted by any setting yet, hence "any".
pub(super) fn policies(settings: &EngineSettings) -> Value {
    json!({
        "publish": publish_policy(&settings.publish),
        "subscribe": subscribe_policy(settings),
        "origin": "any",
    })
}

/// One route's figures as `/api/routes` lists them.
pub(super) fn route_json(route: &Route, state: &State) -> Value {
    let engine = match &route.backend {
        Backend::Engine(e) => e,
        Backend::Upstream(up) => {
            return json!({
                "prefix": &*route.prefix,
                "kind": "upstream",
                "upstream": up.url().to_string(),
            })
        }
    };
    let s = engine.stats();
    let connections: serde_json::Map<String, Value> = Transport::ALL
        .iter()
        .map(|t| (t.name().to_owned(), json!(s.connections[*t as usize])))
        .collect();
    let latest = state.history.latest(&route.prefix);
    json!({
        "prefix": &*route.prefix,
        "kind": "engine",
        "engine": engine.kind(),
        "retired": engine.is_retired(),
        "policies": policies(&engine.settings()),
        "sessions": s.clients,
        "subscriptions": s.subscriptions,
        "connections": connections,
        "handshakes": s.handshakes,
        "published": s.published,
        "delivered": s.delivered,
        "dropped": s.dropped,
        "overflows": s.overflows,
        "expired": s.expired,
        "refused": {
            "handshakes": s.handshakes_refused,
            "subscriptions": s.subscriptions_refused,
            "batches": s.batches_refused,
        },
        "published_per_sec": latest.map_or(0.0, |p| p.published),
        "delivered_per_sec": latest.map_or(0.0, |p| p.delivered),
        "taps": engine.taps(),
        "redis": s.redis.as_ref().map(|r| json!({
            "up": r.up,
            "errors": r.errors,
            "replay_gaps": r.replay_gaps,
        })),
    })
}

/// The access rules as they apply to this request.
pub(super) fn session_json(state: &State, caller: Caller, headers: &http::HeaderMap) -> Value {
    let refusal = state.access.user_data_refusal(headers);
    json!({
        "token_required": state.access.token_required(),
        "authenticated_by": match caller {
            Caller::Open => "nothing (no token configured)",
            Caller::Cookie => "login cookie",
            Caller::Bearer => "bearer token",
        },
        "loopback": state.access.loopback(),
        "user_data": refusal.is_none(),
        "user_data_refusal": refusal,
        "csrf": state.access.csrf(),
    })
}

fn reloads_json(state: &State) -> Value {
    let list: Vec<Value> = state
        .metrics
        .reloads()
        .into_iter()
        .map(|r| {
            json!({
                "at": unix_ms(r.at),
                "result": if r.ok { "ok" } else { "rejected" },
                "detail": r.detail,
            })
        })
        .collect();
    json!({ "reloads": list })
}

fn history_json(state: &State, table: &RouteTable, query: Option<&str>) -> Value {
    let since = query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "since")
                .and_then(|(_, v)| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let routes: Vec<Value> = table
        .routes()
        .iter()
        .filter(|r| r.engine().is_some())
        .map(|r| {
            let points: Vec<Value> = state
                .history
                .points(&r.prefix, since)
                .into_iter()
                .map(|p| p.to_json())
                .collect();
            json!({ "prefix": &*r.prefix, "points": points })
        })
        .collect();
    json!({
        "interval_secs": SAMPLE_EVERY.as_secs_f64(),
        "capacity": super::history::POINTS,
        "routes": routes,
    })
}

/// The route whose prefix starts `rest` (the path after `/api/routes`) and
/// what follows the prefix.
fn split_route<'t, 'p>(table: &'t RouteTable, rest: &'p str) -> Option<(&'t Route, &'p str)> {
    table.routes().iter().find_map(|route| {
        let after = rest.strip_prefix(&*route.prefix)?;
        (after.is_empty() || after.starts_with('/')).then_some((route, after))
    })
}

/// Answers one `/api/…` request from an authenticated caller.
pub(super) async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    caller: Caller,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let table = state.routes.load();
    match path.as_str() {
        "/api/session" if read => {
            return json_response(StatusCode::OK, &session_json(&state, caller, req.headers()))
        }
        "/api/routes" if read => {
            let routes: Vec<Value> = table
                .routes()
                .iter()
                .map(|r| route_json(r, &state))
                .collect();
            let body = json!({
                "now": unix_ms(std::time::SystemTime::now()),
                "draining": state.shutdown.is_draining(),
                "routes": routes,
            });
            return json_response(StatusCode::OK, &body);
        }
        "/api/history" if read => {
            return json_response(
                StatusCode::OK,
                &history_json(&state, &table, req.uri().query()),
            )
        }
        "/api/reloads" if read => return json_response(StatusCode::OK, &reloads_json(&state)),
        "/api/session" | "/api/routes" | "/api/history" | "/api/reloads" => {
            return method_not_allowed("GET, HEAD")
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/api/routes") else {
        return json_error(StatusCode::NOT_FOUND, "no such endpoint");
    };
    let Some((route, after)) = split_route(&table, rest) else {
        return json_error(StatusCode::NOT_FOUND, "no such route");
    };
    if after.is_empty() {
        return if read {
            json_response(StatusCode::OK, &route_json(route, &state))
        } else {
            method_not_allowed("GET, HEAD")
        };
    }
    let prefix = route.prefix.clone();
    let Some(engine) = route.engine().cloned() else {
        return json_error(
            StatusCode::NOT_FOUND,
            "this route forwards to an upstream; it has no engine to inspect",
        );
    };
    drop(table);
    let (action, arg) = match after[1..].split_once('/') {
        Some((action, arg)) => (action, Some(format!("/{arg}"))),
        None => (&after[1..], None),
    };
    match (action, arg) {
        ("channels", Some(channel)) | ("tap", Some(channel)) => {
            if !read {
                return method_not_allowed("GET, HEAD");
            }
            if let Some(reason) = state.access.user_data_refusal(req.headers()) {
                return json_error(StatusCode::FORBIDDEN, reason);
            }
            let Some(channel) = percent_decode(&channel) else {
                return json_error(StatusCode::BAD_REQUEST, "malformed percent-encoding");
            };
            if action == "channels" {
                presence(&engine, &prefix, &channel)
            } else {
                tap(&engine, &prefix, &channel)
            }
        }
        ("publish", None) => {
            if *req.method() != Method::POST {
                return method_not_allowed("POST");
            }
            if let Some(reason) = state.access.user_data_refusal(req.headers()) {
                return json_error(StatusCode::FORBIDDEN, reason);
            }
            if let Some(reason) = state.access.post_refusal(caller, req.headers(), None) {
                return json_error(StatusCode::FORBIDDEN, reason);
            }
            let limit = engine.settings().max_message_bytes + 4096;
            let body = match read_body(req.into_body(), limit).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            publish(&engine, &body).await
        }
        ("history", None) if read => {
            let points: Vec<Value> = state
                .history
                .points(&prefix, 0)
                .into_iter()
                .map(|p| p.to_json())
                .collect();
            json_response(
                StatusCode::OK,
                &json!({ "prefix": &*prefix, "points": points }),
            )
        }
        _ => json_error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

fn presence(engine: &Engine, prefix: &str, channel: &str) -> Response<Body> {
    if !crate::bayeux::channel::is_name(channel) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "presence needs a channel name such as /123 (no wildcards)",
        );
    }
    let mut sessions = engine.presence(channel);
    let count = sessions.len();
    sessions.sort_by_key(|s| s.since());
    let list: Vec<Value> = sessions
        .iter()
        .take(PRESENCE_LIST)
        .map(|s| {
            json!({
                "client_id": s.id(),
                "transport": s.transport().map(Transport::name),
                "connected_since": unix_ms(s.since()),
                "queued": s.queued(),
                "client_ip": s.client_addr().map(|ip| ip.to_string()),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "route": prefix,
            "channel": channel,
            "count": count,
            "sessions": list,
            // A Redis route's sessions are spread over its nodes: this is one node's share.
            "this_node_only": engine.is_shared(),
        }),
    )
}

async fn publish(engine: &Engine, body: &[u8]) -> Response<Body> {
    let Ok(Value::Object(mut message)) = serde_json::from_slice::<Value>(body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object {\"channel\": \"/123\", \"data\": …}",
        );
    };
    let Some(Value::String(channel)) = message.remove("channel") else {
        return json_error(StatusCode::BAD_REQUEST, "\"channel\" is missing");
    };
    let Some(data) = message.remove("data") else {
        return json_error(StatusCode::BAD_REQUEST, "\"data\" is missing");
    };
    match engine.publish_as_operator(&channel, data).await {
        Ok(recipients) => json_response(
            StatusCode::OK,
            &json!({ "successful": true, "channel": channel, "recipients": recipients }),
        ),
        Err(e @ (OperatorPublishError::Retired | OperatorPublishError::Unavailable)) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn tap(engine: &Engine, prefix: &str, pattern: &str) -> Response<Body> {
    let tap = match engine.tap(pattern) {
        Ok(t) => t,
        Err(e) => {
            let status = match e {
                TapRefused::Invalid => StatusCode::BAD_REQUEST,
                TapRefused::TooMany => StatusCode::TOO_MANY_REQUESTS,
                TapRefused::Retired => StatusCode::SERVICE_UNAVAILABLE,
            };
            return json_error(status, &e.to_string());
        }
    };
    let opening = format!(
        "retry: 5000\n\nevent: open\ndata: {}\n\n",
        json!({ "route": prefix, "pattern": pattern })
    );
    let state = TapStream {
        tap,
        heartbeat: tokio::time::interval_at(
            tokio::time::Instant::now() + TAP_HEARTBEAT,
            TAP_HEARTBEAT,
        ),
        flushed: tokio::time::Instant::now()
            .checked_sub(TAP_FLUSH)
            .unwrap_or_else(tokio::time::Instant::now),
        reported: 0,
        opening: Some(Bytes::from(opening)),
    };
    // The body pulls from the tap as hyper writes it: when the client leaves,
    // hyper drops the body and with it the tap, which unregisters itself.
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(first) = st.opening.take() {
            return Some((Ok::<_, hyper::Error>(Frame::data(first)), st));
        }
        let due = st.flushed + TAP_FLUSH;
        let (tap, heartbeat) = (&mut st.tap, &mut st.heartbeat);
        // While waiting for the interval, pushes only leave a permit: nothing is woken.
        let next = tokio::select! {
            events = async {
                tokio::time::sleep_until(due).await;
                tap.next(TAP_MESSAGES).await
            } => Some(events),
            _ = heartbeat.tick() => None,
        };
        let chunk = match next {
            Some(events) => {
                st.flushed = tokio::time::Instant::now();
                st.chunk(&events?)
            }
            None => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(Frame::data(chunk)), st))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

struct TapStream {
    tap: Tap,
    heartbeat: tokio::time::Interval,
    /// When the last chunk of events was taken.
    flushed: tokio::time::Instant,
    /// Drops already reported to the client.
    reported: u64,
    opening: Option<Bytes>,
}

impl TapStream {
    /// One chunk of server-sent events: a `dropped` event when the tap lost
    /// events since the last one, then one `message` event per event (the
    /// published JSON as the engine serialized it; it holds no raw newline).
    fn chunk(&mut self, events: &[Bytes]) -> Bytes {
        let size: usize = events.iter().map(|e| e.len() + 8).sum();
        let mut out = BytesMut::with_capacity(size + 64);
        let dropped = self.tap.dropped();
        if dropped > self.reported {
            out.extend_from_slice(
                format!("event: dropped\ndata: {{\"dropped\":{dropped}}}\n\n").as_bytes(),
            );
            self.reported = dropped;
        }
        for e in events {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(e);
            out.extend_from_slice(b"\n\n");
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paths_keep_their_slashes() {
        assert_eq!(percent_decode("/a%24b/%40c").as_deref(), Some("/a$b/@c"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%4"), None);
        let config = crate::config::Config::parse(
            "[[route]]\nprefix = \"/staging/faye\"\n[[route]]\nprefix = \"/staging\"\n",
            "t",
            std::path::Path::new("."),
        )
        .unwrap();
        let (table, _) =
            RouteTable::plan(&config, None).apply(&crate::shutdown::Shutdown::default());
        let (r, after) = split_route(&table, "/staging/faye/channels/123").unwrap();
        assert_eq!((&*r.prefix, after), ("/staging/faye", "/channels/123"));
        let (r, after) = split_route(&table, "/staging/channels/123").unwrap();
        assert_eq!((&*r.prefix, after), ("/staging", "/channels/123"));
        assert!(split_route(&table, "/stagingX/channels/1").is_none());
    }
}
