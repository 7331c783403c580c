//! PROTOCOL.md §10 items 1-15: the request envelope and plain HTTP handling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::{msg_handshake, msg_publish, TestServer, CONNECTION_TYPES};

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn assert_bad_request(resp: &support::Resp) {
    assert_eq!(
        resp.status,
        StatusCode::BAD_REQUEST,
        "body: {:?}",
        resp.text()
    );
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(resp.text(), "Bad request");
}

#[tokio::test]
async fn item_01_single_object_gets_an_array_reply() {
    let s = TestServer::start().await;
    let resp = s
        .client()
        .post_json(&json!({
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        }))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let body = resp.json();
    let replies = body.as_array().expect("array reply");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["channel"], "/meta/handshake");
    assert_eq!(replies[0]["successful"], true);
    assert_eq!(
        replies[0]["supportedConnectionTypes"],
        json!(CONNECTION_TYPES)
    );
}

#[tokio::test]
async fn item_02_empty_array_gets_empty_array() {
    let s = TestServer::start().await;
    let resp = s.client().post(Some("application/json"), "[]").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text(), "[]");
}

#[tokio::test]
async fn item_03_null_gets_empty_array() {
    let s = TestServer::start().await;
    let resp = s.client().post(Some("application/json"), "null").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text(), "[]");
}

#[tokio::test]
async fn item_04_null_entries_get_no_reply() {
    let s = TestServer::start().await;
    let resp = s
        .client()
        .post(
            Some("application/json"),
            r#"[null,{"channel":"/foo","data":1}]"#,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.json(),
        json!([{"channel": "/foo", "successful": true}])
    );
}

#[tokio::test]
async fn item_05_json_primitives_are_bad_requests() {
    let s = TestServer::start().await;
    let c = s.client();
    for body in ["1", "\"x\"", "true"] {
        assert_bad_request(&c.post(Some("application/json"), body).await);
    }
}

#[tokio::test]
async fn item_06_invalid_json_is_a_bad_request() {
    let s = TestServer::start().await;
    assert_bad_request(&s.client().post(Some("application/json"), "[ }").await);
}

#[tokio::test]
async fn item_07_json_reply_headers() {
    let s = TestServer::start().await;
    // A multi-byte character makes the byte length differ from the character count.
    let mut hs = msg_handshake();
    hs["id"] = json!("é→✓");
    let resp = s.client().post_json(&hs).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(resp.header("cache-control"), Some("no-cache, no-store"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    let length: usize = resp
        .header("content-length")
        .expect("content-length")
        .parse()
        .expect("number");
    assert_eq!(length, resp.body.len());
    assert!(resp.body.len() > resp.text().chars().count());
    assert_eq!(resp.json()[0]["id"], "é→✓");
}

#[tokio::test]
async fn item_08_json_content_type_with_charset() {
    let s = TestServer::start().await;
    let resp = s
        .client()
        .post(
            Some("application/json; charset=utf-8"),
            msg_publish("/foo", json!(1)).to_string(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.json(),
        json!([{"channel": "/foo", "successful": true}])
    );
}

#[tokio::test]
async fn item_09_form_message_with_any_other_content_type() {
    let s = TestServer::start().await;
    let c = s.client();
    let body = format!(
        "message={}",
        urlencode(&msg_publish("/foo", json!("a b")).to_string())
    );
    for content_type in [None, Some("text/plain"), Some("application/xml")] {
        let resp = c.post(content_type, body.clone()).await;
        assert_eq!(resp.status, StatusCode::OK, "{content_type:?}");
        assert_eq!(
            resp.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            resp.json(),
            json!([{"channel": "/foo", "successful": true}])
        );
    }
    // `+` decodes to a space under form rules.
    let id = c.handshake().await;
    c.subscribe_ok(&id, "/plus").await;
    let plus = r#"message={"channel":"/plus","data":"x+y"}"#.replace('"', "%22");
    let resp = c.post(Some("text/plain;charset=UTF-8"), plus).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(support::data_of(&c.drain(&id).await), [json!("x y")]);
}

#[tokio::test]
async fn item_10_raw_json_with_text_plain_is_a_bad_request() {
    let s = TestServer::start().await;
    let resp = s
        .client()
        .post(
            Some("text/plain"),
            msg_publish("/foo", json!(1)).to_string(),
        )
        .await;
    assert_bad_request(&resp);
}

#[tokio::test]
async fn item_11_only_the_first_form_message_is_processed() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.subscriber("/two/*").await;
    let body = format!(
        "message={}&message={}",
        urlencode(&msg_publish("/two/a", json!(1)).to_string()),
        urlencode(&msg_publish("/two/b", json!(2)).to_string()),
    );
    let resp = c.post(None, body).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.json(),
        json!([{"channel": "/two/a", "successful": true}])
    );
    let got = c.drain(&id).await;
    assert_eq!(got, [json!({"channel": "/two/a", "data": 1})]);
}

#[tokio::test]
async fn item_12_other_methods_are_bad_requests() {
    let s = TestServer::start().await;
    let c = s.client();
    for method in [Method::PUT, Method::DELETE] {
        let resp = c
            .send(
                method.clone(),
                "/bayeux",
                &[("content-type", "application/json")],
                "[]",
            )
            .await;
        assert_bad_request(&resp);
    }
    let head = c.send(Method::HEAD, "/bayeux", &[], "").await;
    assert_eq!(head.status, StatusCode::BAD_REQUEST);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn item_13_get_without_query_is_a_bad_request() {
    let s = TestServer::start().await;
    let c = s.client();
    assert_bad_request(&c.get("/bayeux", &[]).await);
    // A callback alone is not a request either.
    assert_bad_request(&c.get("/bayeux?jsonp=cb", &[]).await);
}

#[tokio::test]
async fn item_14_paths_below_the_mount_are_bayeux() {
    let s = TestServer::start().await;
    let c = s.client();
    for path in ["/bayeux/handshake", "/bayeux/a/b/c", "/bayeux/"] {
        let resp = c
            .send(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                msg_handshake().to_string(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{path}");
        let reply: Value = resp.json();
        assert_eq!(reply[0]["successful"], true, "{path}: {reply}");
        assert_eq!(reply[0]["clientId"].as_str().map(str::len), Some(31));
    }
}

#[tokio::test]
async fn item_15_sibling_paths_are_not_bayeux() {
    let s = TestServer::start().await;
    let c = s.client();
    for path in ["/bayeuxfoo", "/other", "/"] {
        let resp = c
            .send(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                msg_handshake().to_string(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
        assert!(resp.body.is_empty(), "{path}");
    }
}
