//! Who may read whose channel: the `jwt` and `backend` subscribe policies and
//! the origin allow-list, over real sockets. Tokens are signed here with the
//! route's key (or deliberately with the wrong one); the backend is a small
//! real HTTP application started by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::{data_of, events, msg_handshake, msg_publish, msg_subscribe, Http, TestServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "a-route-secret-of-at-least-thirty-two-bytes";
const JWT_ROUTE: &str = r#"
[[route]]
prefix = "/bayeux"
subscribe = "jwt"
jwt_algorithm = "HS256"
jwt_secret_env = "ROUTE_JWT_SECRET"
jwt_issuer = "https://app.example.com"
jwt_audience = "notifications"
jwt_leeway_secs = 0
jwt_grants = ["/{sub}", "/{sub}/**"]
"#;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str, exp: u64) -> Value {
    json!({"sub": sub, "iss": "https://app.example.com", "aud": "notifications", "exp": exp})
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn jwt_server() -> TestServer {
    TestServer::with_env(
        "",
        "timeout_secs = 5",
        JWT_ROUTE,
        &[("ROUTE_JWT_SECRET", SECRET)],
    )
    .await
}

/// A handshake presenting `token` in `ext`; the reply.
async fn handshake_with(c: &Http, token: &str) -> Value {
    let mut hs = msg_handshake();
    hs["ext"] = json!({"token": token});
    c.one(hs).await
}

#[tokio::test]
async fn a_token_grants_its_own_channel_and_nothing_wider() {
    let s = jwt_server().await;
    let c = s.client();
    let token = hs256(&claims("42", now() + 3600), SECRET.as_bytes());
    let hs = handshake_with(&c, &token).await;
    assert_eq!(hs["successful"], true, "{hs}");
    let id = hs["clientId"].as_str().unwrap().to_owned();
    for allowed in ["/42", "/42/inbox", "/42/*", "/42/**"] {
        let r = c.subscribe(&id, json!(allowed)).await;
        assert_eq!(r["successful"], true, "{allowed}: {r}");
    }
    for refused in ["/43", "/*", "/**", "/4", "/420"] {
        let r = c.subscribe(&id, json!(refused)).await;
        assert_eq!(
            r["error"],
            format!("403:{refused}:Forbidden channel"),
            "{refused}"
        );
    }
    c.publish_ok("/42", json!("for 42")).await;
    c.publish_ok("/43", json!("for 43")).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!("for 42")]);
    assert!(s.engine("/bayeux").stats().auth_refused >= 5);
}

#[tokio::test]
async fn a_token_may_come_with_the_subscribe_instead() {
    let s = jwt_server().await;
    let c = s.client();
    let id = c.handshake().await;
    let r = c.subscribe(&id, json!("/42")).await;
    assert_eq!(
        r["error"], "403:/42:Forbidden channel",
        "no token, no grant"
    );
    let mut sub = msg_subscribe(&id, json!("/42"));
    sub["ext"] = json!({"token": hs256(&claims("42", now() + 3600), SECRET.as_bytes())});
    assert_eq!(c.one(sub).await["successful"], true);
    // The reply never echoes the token.
    let mut sub = msg_subscribe(&id, json!("/42/x"));
    let token = hs256(&claims("42", now() + 3600), SECRET.as_bytes());
    sub["ext"] = json!({"token": token});
    let raw = c.post_json(&sub).await.text();
    assert!(!raw.contains(&token));
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let s = jwt_server().await;
    let c = s.client();
    let good = claims("42", now() + 3600);
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example.com");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    let header_none = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{header_none}.{}.", base64url(good.to_string().as_bytes()));
    let cases = [
        (
            "expired",
            hs256(&claims("42", now() - 60), SECRET.as_bytes()),
        ),
        (
            "wrong signature",
            hs256(&good, b"another-secret-of-at-least-thirty-two-bytes"),
        ),
        ("wrong issuer", hs256(&wrong_iss, SECRET.as_bytes())),
        ("wrong audience", hs256(&wrong_aud, SECRET.as_bytes())),
        ("alg none", alg_none),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in cases {
        let hs = handshake_with(&c, &token).await;
        assert_eq!(hs["successful"], false, "{what}: {hs}");
        assert_eq!(hs["error"], "403::Authentication failed", "{what}");
        assert!(hs.get("clientId").is_none(), "{what}");
    }
}

/// After a refused handshake the Faye client handshakes again as soon as the
/// advice lets it: without an interval, a client holding a bad token loops as
/// fast as the round trip (the interop suite saw one npm Faye client make about
/// 80 handshakes a second on loopback).
#[tokio::test]
async fn a_refused_token_tells_the_client_to_wait_before_handshaking_again() {
    let s = jwt_server().await;
    let c = s.client();
    let hs = handshake_with(&c, "not.a.token").await;
    assert_eq!(hs["error"], "403::Authentication failed");
    assert_eq!(
        hs["advice"],
        json!({"reconnect": "handshake", "interval": 1000})
    );
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn an_hmac_token_signed_with_the_public_key_is_refused_on_an_rsa_route() {
    let dir = tempfile::tempdir().unwrap();
    let public = include_str!("../src/auth/testdata/rsa2048-public.pem");
    let private = include_str!("../src/auth/testdata/rsa2048-private.pem");
    let key_path = dir.path().join("public.pem");
    std::fs::write(&key_path, public).unwrap();
    let route = format!(
        "[[route]]\nprefix = \"/bayeux\"\nsubscribe = \"jwt\"\njwt_algorithm = \"RS256\"\njwt_public_key_file = {:?}\njwt_issuer = \"https://app.example.com\"\njwt_audience = \"notifications\"\njwt_grants = [\"/{{sub}}\"]\n",
        key_path.display().to_string()
    );
    let s = TestServer::with_env("", "timeout_secs = 5", &route, &[]).await;
    let c = s.client();
    let good = claims("42", now() + 3600);
    let rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &good,
        &EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(handshake_with(&c, &rs).await["successful"], true);
    // The classic confusion: HS256 keyed with the route's public key.
    let confused = hs256(&good, public.as_bytes());
    let hs = handshake_with(&c, &confused).await;
    assert_eq!(hs["error"], "403::Authentication failed");
}

#[tokio::test]
async fn a_session_whose_token_runs_out_stops_receiving_and_is_told_to_handshake() {
    let s = jwt_server().await;
    let c = s.client();
    // Leeway 0 on this route: the token is good for two more seconds.
    let token = hs256(&claims("42", now() + 2), SECRET.as_bytes());
    let id = handshake_with(&c, &token).await["clientId"]
        .as_str()
        .unwrap()
        .to_owned();
    c.subscribe_ok(&id, "/42").await;
    c.publish_ok("/42", json!("before")).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!("before")]);
    // A connect held across the token's end is answered with the error then,
    // not at the end of its hold.
    let held = c.connect(&id, Some(4500)).await;
    assert!(
        now() >= token_exp(&token),
        "answered before the token ran out: {held:?}"
    );
    assert_eq!(held[0]["successful"], false, "{held:?}");
    assert_eq!(held[0]["error"], "401::Authentication expired");
    assert_eq!(held[0]["advice"]["reconnect"], "handshake");
    assert!(events(&held).is_empty());
    // Its subscriptions are gone: a publish reaches nobody, and the session is unknown.
    assert_eq!(s.engine("/bayeux").stats().subscriptions, 0);
    c.publish_ok("/42", json!("after")).await;
    let reply = c.connect(&id, Some(0)).await;
    assert_eq!(reply[0]["error"], format!("401:{id}:Unknown client"));
    assert_eq!(reply[0]["advice"]["reconnect"], "handshake");
}

/// The `exp` of a token made by this file (no verification: the test's own).
fn token_exp(token: &str) -> u64 {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["exp"]
        .as_u64()
        .unwrap()
}

// === backend ===

/// How the test application answers.
#[derive(Clone, Copy)]
enum App {
    /// Allows the cookie `user=42` on `/42` only.
    Cookies,
    /// Answers 500.
    Broken,
    /// Never answers.
    Silent,
}

async fn start_app(kind: App) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let cookie = req
                            .headers()
                            .get("cookie")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let ask: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let (status, answer) = match kind {
                            App::Cookies => {
                                let ok = cookie.split(';').any(|c| c.trim() == "user=42")
                                    && ask["channel"] == "/42";
                                (StatusCode::OK, json!({"allowed": ok}))
                            }
                            App::Broken => (StatusCode::INTERNAL_SERVER_ERROR, json!({})),
                            App::Silent => {
                                std::future::pending::<()>().await;
                                (StatusCode::OK, json!({"allowed": true}))
                            }
                        };
                        let mut r = Response::new(Full::new(Bytes::from(answer.to_string())));
                        *r.status_mut() = status;
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, calls)
}

async fn backend_server(app: std::net::SocketAddr) -> TestServer {
    let route = format!(
        "[[route]]\nprefix = \"/bayeux\"\nsubscribe = \"backend\"\nsubscribe_backend_url = \"http://{app}/bayeux/authorize\"\nsubscribe_backend_headers = [\"cookie\"]\nsubscribe_backend_timeout_secs = 0.5\n"
    );
    TestServer::with_env("", "timeout_secs = 5", &route, &[]).await
}

/// A subscribe sent with `cookie`; the reply.
async fn subscribe_with_cookie(c: &Http, id: &str, channel: &str, cookie: &str) -> Value {
    let resp = c
        .send(
            Method::POST,
            "/bayeux",
            &[("content-type", "application/json"), ("cookie", cookie)],
            Bytes::from(msg_subscribe(id, json!(channel)).to_string()),
        )
        .await;
    resp.json()[0].clone()
}

#[tokio::test]
async fn the_application_decides_by_cookie() {
    let (app, calls) = start_app(App::Cookies).await;
    let s = backend_server(app).await;
    let c = s.client();
    let id = c.handshake().await;
    let r = subscribe_with_cookie(&c, &id, "/42", "session=abc; user=42").await;
    assert_eq!(r["successful"], true, "{r}");
    let r = subscribe_with_cookie(&c, &id, "/43", "session=abc; user=42").await;
    assert_eq!(r["error"], "403:/43:Forbidden channel");
    let other = c.handshake().await;
    let r = subscribe_with_cookie(&c, &other, "/42", "user=43").await;
    assert_eq!(r["error"], "403:/42:Forbidden channel");
    // Answers are cached per session and channel.
    let before = calls.load(Ordering::SeqCst);
    let r = c.one(support::msg_unsubscribe(&id, json!("/42"))).await;
    assert_eq!(r["successful"], true);
    let r = subscribe_with_cookie(&c, &id, "/42", "user=42").await;
    assert_eq!(r["successful"], true);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "served from the cache"
    );
    c.publish_ok("/42", json!("hello 42")).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!("hello 42")]);
}

#[tokio::test]
async fn a_failing_or_silent_application_refuses() {
    for kind in [App::Broken, App::Silent] {
        let (app, calls) = start_app(kind).await;
        let s = backend_server(app).await;
        let c = s.client();
        let id = c.handshake().await;
        let r = subscribe_with_cookie(&c, &id, "/42", "user=42").await;
        assert_eq!(r["error"], "403:/42:Forbidden channel", "{r}");
        assert!(
            calls.load(Ordering::SeqCst) >= 1,
            "the application was asked"
        );
        assert_eq!(s.engine("/bayeux").stats().subscriptions, 0);
    }
}

// === origins ===

const ORIGIN_ROUTE: &str = r#"
[[route]]
prefix = "/bayeux"
allowed_origins = ["https://app.example.com"]
"#;

#[tokio::test]
async fn other_origins_get_no_cors_and_no_websocket() {
    let s = TestServer::with_config("timeout_secs = 5", ORIGIN_ROUTE).await;
    let c = s.client();
    let post = |origin: &'static str| {
        let c = c.clone();
        async move {
            c.send(
                Method::POST,
                "/bayeux",
                &[("content-type", "application/json"), ("origin", origin)],
                Bytes::from(msg_publish("/a", json!(1)).to_string()),
            )
            .await
        }
    };
    let ok = post("https://app.example.com").await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(ok.header("vary"), Some("Origin"));
    let evil = post("https://evil.example.com").await;
    assert_eq!(evil.header("access-control-allow-origin"), None);
    assert_eq!(evil.header("vary"), Some("Origin"));
    let preflight = c
        .send(
            Method::OPTIONS,
            "/bayeux",
            &[
                ("origin", "https://evil.example.com"),
                ("access-control-request-method", "POST"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(preflight.header("access-control-allow-origin"), None);

    let upgrade = |origin: &'static str| {
        let addr = s.http;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut req = format!("ws://localhost:{}/bayeux", addr.port())
                .into_client_request()
                .unwrap();
            req.headers_mut().insert("origin", origin.parse().unwrap());
            tokio_tungstenite::client_async(req, tcp).await
        }
    };
    let refused = upgrade("https://evil.example.com").await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::FORBIDDEN)
        }
        other => panic!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    let accepted = upgrade("https://app.example.com").await.unwrap();
    assert_eq!(accepted.1.status(), StatusCode::SWITCHING_PROTOCOLS);
    // JSONP from a page of another origin (its Referer) is refused too.
    let message =
        form_urlencoded::byte_serialize(msg_handshake().to_string().as_bytes()).collect::<String>();
    let jsonp = c
        .get_query(
            &format!("message={message}&jsonp=cb"),
            &[("referer", "https://evil.example.com/page")],
        )
        .await;
    assert_eq!(jsonp.status, StatusCode::FORBIDDEN);
    let jsonp = c
        .get_query(
            &format!("message={message}&jsonp=cb"),
            &[("referer", "https://app.example.com/page")],
        )
        .await;
    assert_eq!(jsonp.status, StatusCode::OK);
}
