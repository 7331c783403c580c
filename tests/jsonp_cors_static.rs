//! PROTOCOL.md §10 items 16-29: JSONP, CORS and the static client bundle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bayeux_edge::engine::Engine;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::{msg_handshake, msg_publish, Resp, TestServer};

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Splits a JSONP body `/**/cb(json);` into the callback and the JSON.
fn jsonp_parts(resp: &Resp) -> (String, Value) {
    let text = resp.text();
    let rest = text.strip_prefix("/**/").expect("/**/ prefix");
    let open = rest.find('(').expect("(");
    let json = rest[open + 1..].strip_suffix(");").expect(");");
    (
        rest[..open].to_owned(),
        serde_json::from_str(json).expect("JSON"),
    )
}

fn published(engine: &Engine) -> u64 {
    engine.stats().published
}

#[tokio::test(start_paused = true)]
async fn item_16_jsonp_reply() {
    let s = TestServer::start().await;
    let query = format!(
        "message={}&jsonp=__jsonp1__",
        urlencode(&json!([msg_handshake()]).to_string())
    );
    let resp = s.client().get_query(&query, &[]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        resp.header("content-disposition"),
        Some("attachment; filename=f.txt")
    );
    assert_eq!(resp.header("cache-control"), Some("no-cache, no-store"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string().as_str())
    );
    let (callback, replies) = jsonp_parts(&resp);
    assert_eq!(callback, "__jsonp1__");
    assert_eq!(replies[0]["channel"], "/meta/handshake");
    assert_eq!(replies[0]["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn item_16_jsonp_connect_is_held_like_long_polling() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let query = format!(
        "message={}&jsonp=__jsonp2__",
        urlencode(&support::msg_connect(&id).to_string())
    );
    let start = tokio::time::Instant::now();
    let resp = c.get_query(&query, &[]).await;
    support::assert_between(start.elapsed(), 0.9, 1.8, "JSONP connect hold");
    let (callback, replies) = jsonp_parts(&resp);
    assert_eq!(callback, "__jsonp2__");
    assert_eq!(replies[0]["channel"], "/meta/connect");
    assert_eq!(replies[0]["successful"], true);
    assert_eq!(replies[0]["advice"], support::retry_advice(1000));
}

#[tokio::test(start_paused = true)]
async fn item_17_default_callback() {
    let s = TestServer::start().await;
    let query = format!(
        "message={}",
        urlencode(&msg_publish("/foo", json!(1)).to_string())
    );
    let resp = s.client().get_query(&query, &[]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.text(),
        r#"/**/jsonpcallback([{"channel":"/foo","successful":true}]);"#
    );
}

#[tokio::test(start_paused = true)]
async fn item_18_invalid_callbacks_are_rejected() {
    let s = TestServer::start().await;
    let message = urlencode(&msg_publish("/foo", json!(1)).to_string());
    for callback in ["alert(1)", "42", "a-b"] {
        let query = format!("message={message}&jsonp={}", urlencode(callback));
        let resp = s.client().get_query(&query, &[]).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{callback:?}");
        assert_eq!(resp.text(), "Bad request");
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_callback_falls_back_to_the_default_as_in_faye() {
    // Faye reads `params.jsonp || "jsonpcallback"`: an empty name is no name.
    let s = TestServer::start().await;
    let message = urlencode(&msg_publish("/foo", json!(1)).to_string());
    let resp = s
        .client()
        .get_query(&format!("jsonp=&message={message}"), &[])
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let (callback, replies) = jsonp_parts(&resp);
    assert_eq!(callback, "jsonpcallback");
    assert_eq!(replies, json!([{"channel": "/foo", "successful": true}]));
    // A form POST with an empty jsonp parameter is not refused either.
    let resp = s
        .client()
        .post(None, format!("message={message}&jsonp="))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn item_19_dotted_callback_is_accepted() {
    let s = TestServer::start().await;
    let query = format!(
        "message={}&jsonp={}",
        urlencode(&msg_publish("/foo", json!(1)).to_string()),
        urlencode("a.b.$c_1")
    );
    let resp = s.client().get_query(&query, &[]).await;
    assert_eq!(resp.status, StatusCode::OK);
    let (callback, replies) = jsonp_parts(&resp);
    assert_eq!(callback, "a.b.$c_1");
    assert_eq!(replies, json!([{"channel": "/foo", "successful": true}]));
}

#[tokio::test(start_paused = true)]
async fn item_20_jsonp_escapes_line_separators() {
    let s = TestServer::start().await;
    let mut hs = msg_handshake();
    hs["id"] = json!("a\u{2028}b\u{2029}c");
    let query = format!("message={}", urlencode(&hs.to_string()));
    let resp = s.client().get_query(&query, &[]).await;
    assert_eq!(resp.status, StatusCode::OK);
    let text = resp.text();
    assert!(!text.contains('\u{2028}') && !text.contains('\u{2029}'));
    assert!(text.contains(r#""id":"a\u2028b\u2029c""#), "{text}");
    let (_, replies) = jsonp_parts(&resp);
    assert_eq!(replies[0]["id"], "a\u{2028}b\u{2029}c");
}

#[tokio::test(start_paused = true)]
async fn item_21_origin_is_echoed_with_credentials() {
    let s = TestServer::start().await;
    let c = s.client();
    let post = c
        .send(
            Method::POST,
            "/bayeux",
            &[("content-type", "application/json"), ("origin", "http://x")],
            msg_publish("/foo", json!(1)).to_string(),
        )
        .await;
    let query = format!(
        "/bayeux?message={}",
        urlencode(&msg_publish("/foo", json!(1)).to_string())
    );
    let get = c.get(&query, &[("origin", "http://x")]).await;
    for resp in [post, get] {
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.header("access-control-allow-origin"), Some("http://x"));
        assert_eq!(
            resp.header("access-control-allow-credentials"),
            Some("true")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn item_22_no_origin_no_cors_headers() {
    let s = TestServer::start().await;
    let c = s.client();
    let post = c.post_json(&msg_publish("/foo", json!(1))).await;
    let query = format!(
        "message={}",
        urlencode(&msg_publish("/foo", json!(1)).to_string())
    );
    let get = c.get_query(&query, &[]).await;
    for resp in [post, get] {
        assert_eq!(resp.status, StatusCode::OK);
        assert!(!resp.has_cors_headers(), "{:?}", resp.headers);
    }
}

fn assert_preflight(resp: &Resp, origin: &str) {
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("content-type"), None);
    assert_eq!(resp.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("Accept, Authorization, Content-Type, Pragma, X-Requested-With")
    );
    assert_eq!(
        resp.header("access-control-allow-methods"),
        Some("POST, GET")
    );
    assert_eq!(resp.header("access-control-max-age"), Some("86400"));
}

#[tokio::test(start_paused = true)]
async fn item_23_preflight_with_origin() {
    let s = TestServer::start().await;
    let resp = s
        .client()
        .send(Method::OPTIONS, "/bayeux", &[("origin", "http://x")], "")
        .await;
    assert_preflight(&resp, "http://x");
}

#[tokio::test(start_paused = true)]
async fn item_24_preflight_without_origin_or_referer() {
    let s = TestServer::start().await;
    let resp = s.client().send(Method::OPTIONS, "/bayeux", &[], "").await;
    assert_preflight(&resp, "*");
}

#[tokio::test(start_paused = true)]
async fn item_25_preflight_with_referer_only() {
    let s = TestServer::start().await;
    let referer = "http://page.example/app/index.html?q=1";
    let resp = s
        .client()
        .send(Method::OPTIONS, "/bayeux", &[("referer", referer)], "")
        .await;
    assert_preflight(&resp, referer);
}

#[tokio::test(start_paused = true)]
async fn item_26_post_with_request_method_header_is_a_preflight() {
    let s = TestServer::start().await;
    let engine = s.engine("/bayeux");
    let before = published(&engine);
    let resp = s
        .client()
        .send(
            Method::POST,
            "/bayeux",
            &[
                ("content-type", "application/json"),
                ("access-control-request-method", "POST"),
                ("origin", "http://x"),
            ],
            msg_publish("/foo", json!(1)).to_string(),
        )
        .await;
    assert_preflight(&resp, "http://x");
    assert_eq!(published(&engine), before, "the message was processed");
    // The same message without the header is processed.
    s.client().publish_ok("/foo", json!(1)).await;
    assert_eq!(published(&engine), before + 1);
}

#[tokio::test(start_paused = true)]
async fn item_27_client_bundle_with_validators() {
    let s = TestServer::start().await;
    let c = s.client();
    let a = c.get("/bayeux/client.js", &[]).await;
    let b = c.get("/bayeux.js", &[]).await;
    for resp in [&a, &b] {
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(
            resp.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert!(resp.header("etag").is_some_and(|e| e.len() == 40));
        assert!(resp.header("last-modified").is_some());
        assert!(resp.body.len() > 1000);
        assert!(resp.text().contains("Faye"));
    }
    assert_eq!(a.body, b.body);
    assert_eq!(a.header("etag"), b.header("etag"));
    // The other bundle files are served by name, source maps as JSON.
    let full = c.get("/bayeux/faye-browser.js", &[]).await;
    assert_eq!(full.status, StatusCode::OK);
    assert!(full.body.len() > a.body.len());
    let map = c.get("/bayeux/faye-browser-min.js.map", &[]).await;
    assert_eq!(map.status, StatusCode::OK);
    assert_eq!(
        map.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let _: Value = map.json();
}

#[tokio::test(start_paused = true)]
async fn item_28_client_bundle_not_modified() {
    let s = TestServer::start().await;
    let c = s.client();
    let first = c.get("/bayeux/client.js", &[]).await;
    let etag = first.header("etag").expect("etag").to_owned();
    let again = c
        .get("/bayeux/client.js", &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert!(again.header("last-modified").is_some());
    let other = c
        .get("/bayeux/client.js", &[("if-none-match", "\"not-it\"")])
        .await;
    assert_eq!(other.status, StatusCode::OK);
    // If-Modified-Since at or after the file's date is "not modified" too.
    let date = first.header("last-modified").expect("last-modified");
    let since = c.get("/bayeux.js", &[("if-modified-since", date)]).await;
    assert_eq!(since.status, StatusCode::NOT_MODIFIED);
    assert!(since.body.is_empty());
    let old = c
        .get(
            "/bayeux.js",
            &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        )
        .await;
    assert_eq!(old.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn item_29_unknown_script_is_404() {
    let s = TestServer::start().await;
    let resp = s.client().get("/bayeux/nope.js", &[]).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(resp.body.is_empty());
}
