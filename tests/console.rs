//! The operator's console and its API on the admin listener, over real
//! sockets: what each endpoint answers, presence, taps, the test publish, the
//! reload history, the connection cap, and the access rules (token, login
//! cookie, CSRF and same-origin checks, loopback-only user data).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use support::*;

const ROUTES: &str = r#"
[[route]]
prefix = "/development/faye"
[[route]]
prefix = "/staging/faye"
[[route]]
prefix = "/production/faye"
publish = "secret"
publish_secret_env = "PRODUCTION_SECRET"
"#;
const SECRET: (&str, &str) = ("PRODUCTION_SECRET", "backend-secret");
const TOKEN: (&str, &str) = ("ADMIN_TOKEN", "correct horse battery staple");

async fn server() -> TestServer {
    TestServer::with_admin("addr = \"127.0.0.1:0\"", ROUTES, &[SECRET]).await
}

async fn server_with_token() -> TestServer {
    TestServer::with_admin(
        "addr = \"127.0.0.1:0\"\ntoken_env = \"ADMIN_TOKEN\"",
        ROUTES,
        &[SECRET, TOKEN],
    )
    .await
}

fn admin(ts: &TestServer) -> Http {
    Http::plain(ts.admin, "")
}

/// The headers a page of the console sends with a POST.
fn same_origin(addr: SocketAddr, csrf: &str) -> Vec<(String, String)> {
    vec![
        ("origin".to_owned(), format!("http://{addr}")),
        ("sec-fetch-site".to_owned(), "same-origin".to_owned()),
        ("x-csrf-token".to_owned(), csrf.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn csrf(c: &Http, auth: &[(&str, &str)]) -> String {
    let r = c.get("/api/session", auth).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["csrf"].as_str().unwrap().to_owned()
}

async fn post_publish(c: &Http, prefix: &str, headers: &[(&str, &str)], body: Value) -> Resp {
    c.send(
        Method::POST,
        &format!("/api/routes{prefix}/publish"),
        headers,
        body.to_string(),
    )
    .await
}

/// An open tap: server-sent events split at blank lines.
struct TapReader {
    status: StatusCode,
    body: Incoming,
    buf: Vec<u8>,
    _conn: Conn,
}

impl TapReader {
    async fn open(c: &Http, path: &str, headers: &[(&str, &str)]) -> TapReader {
        let mut conn = c.conn().await;
        let req = c.build(Method::GET, path, headers, Bytes::new());
        let resp = within(MAX_WAIT, "the tap's response head", conn.send(req)).await;
        let status = resp.status();
        TapReader {
            status,
            body: resp.into_body(),
            buf: Vec::new(),
            _conn: conn,
        }
    }

    /// The next event as (type, data), skipping comments; `None` at the end.
    async fn next_event(&mut self) -> Option<(String, String)> {
        within(MAX_WAIT, "a tap event", async {
            loop {
                while let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
                    let block = String::from_utf8(block).expect("UTF-8 events");
                    let mut kind = "message".to_owned();
                    let mut data = Vec::new();
                    for line in block.lines() {
                        if let Some(k) = line.strip_prefix("event: ") {
                            kind = k.to_owned();
                        } else if let Some(d) = line.strip_prefix("data: ") {
                            data.push(d);
                        }
                    }
                    if !data.is_empty() {
                        return Some((kind, data.join("\n")));
                    }
                }
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(d) = frame.into_data() {
                            self.buf.extend_from_slice(&d);
                        }
                    }
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    /// The next `message` event's JSON, skipping `open` and `dropped`.
    async fn next_message(&mut self) -> Value {
        loop {
            match self.next_event().await {
                Some((kind, data)) if kind == "message" => {
                    return serde_json::from_str(&data).expect("JSON event")
                }
                Some(_) => continue,
                None => panic!("the tap ended"),
            }
        }
    }
}

#[tokio::test]
async fn the_page_and_the_api_show_every_route_with_its_policies() {
    let ts = server().await;
    let c = admin(&ts);
    let page = c.get("/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
    let html = page.text();
    for prefix in ["/development/faye", "/staging/faye", "/production/faye"] {
        assert!(
            html.contains(&format!("data-prefix=\"{prefix}\"")),
            "{prefix}"
        );
    }
    assert!(html.contains("<meta name=\"csrf-token\""));
    for asset in [
        "/assets/console.js",
        "/assets/console.css",
        "/assets/favicon.svg",
    ] {
        let r = c.get(asset, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
        assert!(!r.body.is_empty());
    }
    assert_eq!(
        c.get("/assets/nothing.js", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    let api = c.get("/api/routes", &[]).await;
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(api.header("cache-control"), Some("no-store"));
    let body = api.json();
    let routes = body["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 3);
    let production = routes
        .iter()
        .find(|r| r["prefix"] == "/production/faye")
        .unwrap();
    assert_eq!(production["engine"], "memory");
    assert_eq!(
        production["policies"],
        json!({"publish": "secret", "subscribe": "open", "origin": "any"})
    );
    assert!(
        !api.text().contains("backend-secret"),
        "a secret is never shown"
    );
    assert_eq!(
        production["connections"],
        json!({"websocket": 0, "eventsource": 0, "long-polling": 0, "callback-polling": 0})
    );
    let one = c.get("/api/routes/staging/faye", &[]).await.json();
    assert_eq!(one["prefix"], "/staging/faye");
    assert_eq!(one["policies"]["publish"], "open");
    assert_eq!(
        c.get("/api/routes/nowhere", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.send(Method::POST, "/api/routes", &[], "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // The load balancer's and Prometheus's endpoints are unchanged.
    assert_eq!(c.get("/healthz", &[]).await.text(), "ok\n");
    assert_eq!(c.get("/readyz", &[]).await.text(), "ready\n");
    assert!(c
        .get("/metrics", &[])
        .await
        .text()
        .contains("bayeux_edge_sessions{route=\"/staging/faye\"} 0"));
}

#[tokio::test]
async fn presence_lists_each_session_a_publish_would_reach() {
    let ts = server().await;
    let staging = ts.client_at("/staging/faye");
    let mut ws = staging.websocket_at("/staging/faye").await;
    let ws_id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&ws_id, json!("/123"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.bind(&ws_id).await;
    let lp_id = staging.subscriber("/users/**").await;
    // Same channel on another route: not part of staging's answer.
    ts.client_at("/production/faye").subscriber("/123").await;

    let c = admin(&ts);
    let answer = c.get("/api/routes/staging/faye/channels/123", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["count"], 1);
    let s = &body["sessions"][0];
    assert_eq!(s["client_id"], ws_id.as_str());
    assert_eq!(s["transport"], "websocket");
    assert_eq!(s["client_ip"], "127.0.0.1");
    assert_eq!(s["queued"], 0);
    let since = s["connected_since"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(since <= now && now - since < 60_000, "{since} vs {now}");

    // A wildcard subscriber counts for the channels it matches; a session
    // that has not connected yet has no transport and queues what it gets.
    let body = c
        .get("/api/routes/staging/faye/channels/users/7", &[])
        .await
        .json();
    assert_eq!(body["count"], 1);
    assert_eq!(body["sessions"][0]["client_id"], lp_id.as_str());
    assert_eq!(body["sessions"][0]["transport"], Value::Null);
    staging.publish_ok("/users/7", json!("x")).await;
    let body = c
        .get("/api/routes/staging/faye/channels/users/7", &[])
        .await
        .json();
    assert_eq!(body["sessions"][0]["queued"], 1);

    assert_eq!(
        c.get("/api/routes/staging/faye/channels/users/*", &[])
            .await
            .status,
        StatusCode::BAD_REQUEST,
        "presence is for a channel, not a pattern"
    );
    assert_eq!(
        c.get("/api/routes/staging/faye/channels/nobody", &[])
            .await
            .json()["count"],
        0
    );
}

#[tokio::test]
async fn a_tap_shows_publishes_live_without_being_a_session() {
    let ts = server().await;
    let staging = ts.client_at("/staging/faye");
    let subscriber = staging.subscriber("/123").await;
    let c = admin(&ts);
    let mut tap = TapReader::open(&c, "/api/routes/staging/faye/tap/123", &[]).await;
    assert_eq!(tap.status, StatusCode::OK);
    let (kind, data) = tap.next_event().await.unwrap();
    assert_eq!(kind, "open");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"route": "/staging/faye", "pattern": "/123"})
    );
    let mut production_tap = TapReader::open(&c, "/api/routes/production/faye/tap/**", &[]).await;
    assert_eq!(production_tap.next_event().await.unwrap().0, "open");
    assert_eq!(ts.engine("/staging/faye").taps(), 1);

    staging.publish_ok("/123", json!({"n": 1})).await;
    staging.publish_ok("/456", json!({"n": 2})).await;
    staging.publish_ok("/123", json!({"n": 3})).await;
    assert_eq!(
        tap.next_message().await,
        json!({"channel": "/123", "data": {"n": 1}})
    );
    assert_eq!(
        tap.next_message().await,
        json!({"channel": "/123", "data": {"n": 3}})
    );
    // The subscriber got both: the tap took nothing from it.
    let events = staging.drain(&subscriber).await;
    assert_eq!(data_of(&events), [json!({"n": 1}), json!({"n": 3})]);
    let stats = ts.engine("/staging/faye").stats();
    assert_eq!(
        (stats.clients, stats.subscriptions),
        (1, 1),
        "a tap is not a session"
    );

    // The production tap saw none of it, and sees production's own traffic.
    ts.client_at("/production/faye")
        .send(
            Method::POST,
            "/production/faye",
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer backend-secret"),
            ],
            json!({"channel": "/p", "data": "production"}).to_string(),
        )
        .await;
    assert_eq!(
        production_tap.next_message().await,
        json!({"channel": "/p", "data": "production"})
    );

    // Leaving closes the tap.
    drop(tap);
    eventually("the tap to close when its client left", || async {
        ts.engine("/staging/faye").taps() == 0
    })
    .await;

    for bad in [
        "/api/routes/staging/faye/tap/service/x",
        "/api/routes/staging/faye/tap/a/*/b",
    ] {
        assert_eq!(
            c.get(bad, &[]).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_tap_that_falls_behind_says_how_many_it_dropped() {
    let ts = server().await;
    let c = admin(&ts);
    let mut tap = TapReader::open(&c, "/api/routes/staging/faye/tap/big", &[]).await;
    assert_eq!(tap.next_event().await.unwrap().0, "open");
    // 16 MB published while the tap is not read: more than the tap and the
    // socket buffers hold. The publishes never wait for the tap.
    let engine = ts.engine("/staging/faye");
    let chunk = "x".repeat(8 << 10);
    for i in 0..2000 {
        engine
            .publish_as_operator("/big", json!({"i": i, "pad": chunk}))
            .await
            .unwrap();
    }
    let (mut dropped, mut seen) = (None, 0);
    while dropped.is_none() || seen == 0 {
        match tap.next_event().await {
            Some((kind, data)) if kind == "dropped" => {
                dropped = serde_json::from_str::<Value>(&data).unwrap()["dropped"].as_u64()
            }
            Some(_) => seen += 1,
            None => panic!("the tap ended"),
        }
    }
    let dropped = dropped.unwrap();
    assert!(dropped > 0 && dropped < 2000, "dropped {dropped}");
    assert_eq!(engine.taps(), 1);
}

#[tokio::test]
async fn test_publish_reaches_subscribers_whatever_the_route_policy() {
    let ts = server().await;
    let production = ts.client_at("/production/faye");
    let subscriber = production.subscriber("/123").await;
    let c = admin(&ts);
    let token = csrf(&c, &[]).await;
    let headers = same_origin(ts.admin, &token);

    let r = post_publish(
        &c,
        "/production/faye",
        &refs(&headers),
        json!({"channel": "/123", "data": {"from": "console"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"successful": true, "channel": "/123", "recipients": 1})
    );
    let events = production.drain(&subscriber).await;
    assert_eq!(data_of(&events), [json!({"from": "console"})]);
    let stats = ts.engine("/production/faye").stats();
    assert_eq!((stats.published, stats.delivered), (1, 1));

    // POST only, with the CSRF token, from the console's own origin.
    let publish_path = "/api/routes/production/faye/publish";
    assert_eq!(
        c.get(publish_path, &[]).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let body = json!({"channel": "/123", "data": 1});
    let without_token = &refs(&headers)[..2];
    let r = post_publish(&c, "/production/faye", without_token, body.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("CSRF"));
    let mut cross = headers.clone();
    cross[0].1 = "http://evil.example".to_owned();
    cross[1].1 = "cross-site".to_owned();
    let r = post_publish(&c, "/production/faye", &refs(&cross), body.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (bad, why) in [
        (json!({"channel": "/a/*", "data": 1}), "wildcard"),
        (json!({"channel": "/meta/x", "data": 1}), "meta"),
        (json!({"channel": "/a"}), "no data"),
        (json!([1]), "not an object"),
    ] {
        let r = post_publish(&c, "/production/faye", &refs(&headers), bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.text());
    }
    assert_eq!(ts.engine("/production/faye").stats().published, 1);
}

#[tokio::test]
async fn with_a_token_only_health_readiness_and_metrics_are_open() {
    let ts = server_with_token().await;
    let c = admin(&ts);
    for open in ["/healthz", "/readyz", "/metrics", "/assets/console.js"] {
        assert_eq!(c.get(open, &[]).await.status, StatusCode::OK, "{open}");
    }
    let page = c.get("/", &[]).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.text().contains("id=\"login-form\""));
    assert!(!page.text().contains("data-prefix"), "no route is shown");
    for path in [
        "/api/routes",
        "/api/session",
        "/api/routes/staging/faye/channels/123",
        "/api/routes/staging/faye/tap/123",
    ] {
        let r = c.get(path, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    let wrong = [("authorization", "Bearer guess")];
    assert_eq!(
        c.get("/api/routes", &wrong).await.status,
        StatusCode::UNAUTHORIZED
    );
    let bearer = format!("Bearer {}", TOKEN.1);
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(c.get("/api/routes", &auth).await.status, StatusCode::OK);
    assert_eq!(
        c.get("/api/routes/staging/faye/channels/123", &auth)
            .await
            .status,
        StatusCode::OK
    );
    // A script with the token needs no CSRF token: browsers never send it by themselves.
    let r = post_publish(
        &c,
        "/staging/faye",
        &[auth[0], ("content-type", "application/json")],
        json!({"channel": "/x", "data": 1}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // The login form: the page's CSRF token, same origin, the token.
    let html = page.text();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let origin = format!("http://{}", ts.admin);
    let form = |token: &str| {
        format!(
            "csrf={csrf}&token={}",
            form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        )
    };
    let login_headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = c
        .send(Method::POST, "/login", &login_headers, form("guess"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("set-cookie").is_none());
    let cross = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", "http://evil.example"),
    ];
    let r = c.send(Method::POST, "/login", &cross, form(TOKEN.1)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "login CSRF is refused");
    let r = c
        .send(Method::POST, "/login", &login_headers, form(TOKEN.1))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/"));
    let set = r.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(
        !set.contains(TOKEN.1) && !set.contains("battery"),
        "the cookie is not the token"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let with_cookie = [("cookie", cookie.as_str())];
    let page = c.get("/", &with_cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("data-prefix=\"/staging/faye\""));
    assert_eq!(
        c.get("/api/session", &with_cookie).await.json()["authenticated_by"],
        "login cookie"
    );
    // A cookie-authenticated POST still needs the CSRF token.
    let r = post_publish(
        &c,
        "/staging/faye",
        &[with_cookie[0], ("content-type", "application/json")],
        json!({"channel": "/x", "data": 1}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut headers = same_origin(ts.admin, &csrf);
    headers.push(("cookie".to_owned(), cookie.clone()));
    let r = post_publish(
        &c,
        "/staging/faye",
        &refs(&headers),
        json!({"channel": "/x", "data": 2}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn without_a_token_user_data_is_served_only_on_loopback() {
    // Bound to every address, no token: figures yes, user data no.
    let ts = TestServer::with_admin("addr = \"0.0.0.0:0\"", ROUTES, &[SECRET]).await;
    let c = Http::plain(SocketAddr::from(([127, 0, 0, 1], ts.admin.port())), "");
    assert_eq!(c.get("/api/routes", &[]).await.status, StatusCode::OK);
    let page = c.get("/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("id=\"user-data-refused\""));
    for path in [
        "/api/routes/staging/faye/channels/123",
        "/api/routes/staging/faye/tap/123",
    ] {
        let r = c.get(path, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(r.json()["error"].as_str().unwrap().contains("loopback"));
    }
    let session = c.get("/api/session", &[]).await.json();
    assert_eq!(session["user_data"], false);
    let token = session["csrf"].as_str().unwrap().to_owned();
    let headers = same_origin(c.addr(), &token);
    let r = post_publish(
        &c,
        "/staging/faye",
        &refs(&headers),
        json!({"channel": "/x", "data": 1}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // On loopback, a request for another host name (a rebound DNS name) is refused too.
    let local = server().await;
    let c = admin(&local);
    let rebound = http::Request::get("/api/routes/staging/faye/channels/123")
        .header("host", "rebound.example:9090")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let r = collect(c.conn().await.send(rebound).await).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("Host"));
    assert_eq!(
        c.get("/api/routes/staging/faye/channels/123", &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn taps_count_against_the_admin_connection_cap() {
    let ts = TestServer::with_admin(
        "addr = \"127.0.0.1:0\"\nmax_connections = 2",
        ROUTES,
        &[SECRET],
    )
    .await;
    let c = admin(&ts);
    let mut first = TapReader::open(&c, "/api/routes/staging/faye/tap/a", &[]).await;
    let mut second = TapReader::open(&c, "/api/routes/staging/faye/tap/b", &[]).await;
    assert_eq!(first.next_event().await.unwrap().0, "open");
    assert_eq!(second.next_event().await.unwrap().0, "open");
    // A third connection is closed at once.
    let mut third = tokio::net::TcpStream::connect(ts.admin).await.unwrap();
    let mut buf = [0u8; 16];
    let n = within(
        MAX_WAIT,
        "the third connection to be closed",
        tokio::io::AsyncReadExt::read(&mut third, &mut buf),
    )
    .await
    .unwrap_or(0);
    assert_eq!(n, 0);
    drop(first);
    eventually("a slot to come back when a tap leaves", || async {
        ts.engine("/staging/faye").taps() == 1
    })
    .await;
    // The listener closes a connection past the cap at once, so a request
    // only gets an answer once the tap's slot is free again.
    eventually("an admin connection to be served again", || async {
        let tcp = tokio::net::TcpStream::connect(ts.admin).await.unwrap();
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await
        else {
            return false;
        };
        let driver = tokio::spawn(conn);
        let req = http::Request::get("/healthz")
            .header("host", ts.admin.to_string())
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let served = sender
            .send_request(req)
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        driver.abort();
        served
    })
    .await;
}

#[tokio::test]
async fn history_and_reloads_are_recorded_and_a_removed_route_ends_its_taps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    let head = "[server]\ndrain_grace_secs = 1\n[[server.listener]]\nname = \"http\"\naddr = \"127.0.0.1:0\"\n\
                [server.admin]\naddr = \"127.0.0.1:0\"\n";
    std::fs::write(
        &file,
        format!("{head}[[route]]\nprefix = \"/a\"\n[[route]]\nprefix = \"/b\"\n"),
    )
    .unwrap();
    let server = bayeux_edge::Server::start(bayeux_edge::config::Config::load(&file).unwrap())
        .await
        .unwrap();
    let admin_addr = server.admin_addr().unwrap();
    let c = Http::plain(admin_addr, "");
    let b = Http::plain(server.addr("http").unwrap(), "/b");
    let subscriber = b.subscriber("/x").await;
    let mut tap = TapReader::open(&c, "/api/routes/b/tap/x", &[]).await;
    assert_eq!(tap.next_event().await.unwrap().0, "open");

    // The sampler sees the traffic within a couple of samples.
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        b.publish_ok("/x", json!(1)).await;
        let h = c.get("/api/history", &[]).await.json();
        let route = h["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == "/b")
            .unwrap()
            .clone();
        if route["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["published_per_sec"].as_f64().unwrap() > 0.0 && p["sessions"] == 1)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sample showed the publishes: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = c.get("/api/history", &[]).await.json();
    let last = h["routes"][0]["points"].as_array().unwrap().last().unwrap()["t"]
        .as_u64()
        .unwrap();
    let newer = c
        .get(&format!("/api/history?since={last}"), &[])
        .await
        .json();
    assert!(newer["routes"][0]["points"].as_array().unwrap().len() <= 1);
    let _ = b.drain(&subscriber).await;

    // A rejected file is listed with its file, line and key; an accepted one with what changed.
    std::fs::write(
        &file,
        format!("{head}[[route]]\nprefix = \"/a\"\nmax_queue_messages = 0\n"),
    )
    .unwrap();
    assert!(server.reload().unwrap().is_err());
    std::fs::write(&file, format!("{head}[[route]]\nprefix = \"/a\"\n")).unwrap();
    assert!(server.reload().unwrap().is_ok());
    let reloads = c.get("/api/reloads", &[]).await.json()["reloads"].clone();
    assert_eq!(reloads[0]["result"], "ok");
    assert_eq!(reloads[0]["detail"], "removed /b");
    assert_eq!(reloads[1]["result"], "rejected");
    let detail = reloads[1]["detail"].as_str().unwrap();
    assert!(
        detail.contains("routes.toml:10:") && detail.contains("max_queue_messages"),
        "{detail}"
    );
    let page = c.get("/", &[]).await.text();
    assert!(
        page.contains("max_queue_messages"),
        "the page lists the rejected file's error"
    );

    // /b was removed: its tap's stream ends.
    while tap.next_event().await.is_some() {}
    server.drain(Duration::from_secs(1)).await;
}

/// Two nodes of a Redis route: a tap on one node sees what the other node
/// accepted (every node reads the route's log), presence is each node's own
/// share, and the operator's publish is recorded once and delivered by the
/// node that holds the subscriber.
#[tokio::test]
async fn on_a_redis_route_taps_see_every_node_and_presence_is_per_node() {
    let Some(redis) = support::redis::RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    let routes =
        "[[route]]\nprefix = \"/r\"\nengine = \"redis\"\nredis_url_env = \"TEST_REDIS_URL\"\n";
    let env = [("TEST_REDIS_URL", url.as_str())];
    let node = || TestServer::with_env("", "timeout_secs = 1", routes, &env);
    let (a, b) = (node().await, node().await);
    for n in [&a, &b] {
        let engine = n.engine("/r");
        eventually("the route's Redis to be ready", || async {
            engine.storage_ready() == Some(true)
        })
        .await;
    }
    let (admin_a, admin_b) = (admin(&a), admin(&b));
    let route = admin_a.get("/api/routes/r", &[]).await.json();
    assert_eq!(route["engine"], json!("redis"), "{route}");
    assert_eq!(route["redis"]["up"], json!(true), "{route}");

    let on_b = b.client_at("/r");
    let subscriber = on_b.subscriber("/123").await;
    let mut tap = TapReader::open(&admin_a, "/api/routes/r/tap/123", &[]).await;
    assert_eq!(tap.status, StatusCode::OK);

    // A backend POST to B shows in A's tap.
    on_b.publish_ok("/123", json!({"via": "b"})).await;
    assert_eq!(tap.next_message().await["data"], json!({"via": "b"}));

    // Presence: B holds the session, A holds none; both say they answer for themselves.
    let on_b_presence = admin_b.get("/api/routes/r/channels/123", &[]).await.json();
    assert_eq!(on_b_presence["count"], json!(1), "{on_b_presence}");
    assert_eq!(on_b_presence["sessions"][0]["client_id"], json!(subscriber));
    assert_eq!(on_b_presence["this_node_only"], json!(true));
    let on_a_presence = admin_a.get("/api/routes/r/channels/123", &[]).await.json();
    assert_eq!(on_a_presence["count"], json!(0), "{on_a_presence}");

    // The operator publishes on A: recorded in Redis (no local count), tapped on A,
    // delivered by B.
    let token = csrf(&admin_a, &[]).await;
    let headers = same_origin(a.admin, &token);
    let r = post_publish(
        &admin_a,
        "/r",
        &refs(&headers),
        json!({"channel": "/123", "data": {"via": "console"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"successful": true, "channel": "/123", "recipients": null})
    );
    assert_eq!(tap.next_message().await["data"], json!({"via": "console"}));
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(data_of(&events(
            &on_b.connect(&subscriber, Some(200)).await,
        )));
        if got.len() >= 2 {
            break;
        }
    }
    assert_eq!(got, [json!({"via": "b"}), json!({"via": "console"})]);
    a.stop().await;
    b.stop().await;
}
