//! PROTOCOL.md §10 items 71-83: publishing and wildcard routing. Item 82 is a
//! deliberate deviation and lives in `deviations.rs`.
//!
//! "Not delivered" is shown with a sentinel published afterwards to a channel
//! the subscriber also holds: events arrive in publish order, so a queue that
//! starts with the sentinel proves the earlier message never arrived.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::{data_of, Http, TestServer};

async fn publish_error(c: &Http, message: Value, error: &str) {
    let reply = c.one(message.clone()).await;
    let mut expected = json!({"successful": false, "error": error});
    if let Some(ch) = message.get("channel") {
        expected["channel"] = ch.clone();
    }
    assert_eq!(reply, expected, "for {message}");
}

#[tokio::test]
async fn item_71_publish_without_a_session() {
    let s = TestServer::start().await;
    let resp = s
        .client()
        .post_json(&json!({"channel": "/foo", "data": "hi"}))
        .await;
    assert_eq!(resp.text(), r#"[{"channel":"/foo","successful":true}]"#);
}

#[tokio::test]
async fn item_72_publish_with_unknown_client_id() {
    let s = TestServer::start().await;
    let reply = s
        .client()
        .one(json!({"channel": "/foo", "data": 1, "clientId": "nonexistent"}))
        .await;
    assert_eq!(
        reply,
        json!({"channel": "/foo", "clientId": "nonexistent", "successful": true})
    );
}

#[tokio::test]
async fn item_73_ack_echoes_id_only() {
    let s = TestServer::start().await;
    let reply = s
        .client()
        .one(json!({"channel": "/foo", "data": {"x": 1}, "id": "p1", "ext": {"e": 2}}))
        .await;
    assert_eq!(
        reply,
        json!({"channel": "/foo", "id": "p1", "successful": true})
    );
}

#[tokio::test]
async fn item_74_data_is_required_but_may_be_null() {
    let s = TestServer::start().await;
    let c = s.client();
    publish_error(
        &c,
        json!({"channel": "/foo"}),
        "402:data:Missing required parameter",
    )
    .await;
    let id = c.subscriber("/foo").await;
    let reply = c.one(json!({"channel": "/foo", "data": null})).await;
    assert_eq!(reply, json!({"channel": "/foo", "successful": true}));
    assert_eq!(
        c.drain(&id).await,
        [json!({"channel": "/foo", "data": null})]
    );
}

#[tokio::test]
async fn item_75_patterns_cannot_be_published_to() {
    let s = TestServer::start().await;
    let c = s.client();
    for ch in ["/foo/*", "/foo/**"] {
        publish_error(
            &c,
            json!({"channel": ch, "data": 1}),
            &format!("405:{ch}:Invalid channel"),
        )
        .await;
    }
}

#[tokio::test]
async fn item_76_meta_channels_cannot_be_published_to() {
    let s = TestServer::start().await;
    let c = s.client();
    for ch in [
        "/meta/foo",
        "/meta/**",
        "/meta/subscribe/x",
        "/meta/publish",
    ] {
        publish_error(
            &c,
            json!({"channel": ch, "data": 1}),
            &format!("403:{ch}:Forbidden channel"),
        )
        .await;
    }
}

#[tokio::test]
async fn item_77_invalid_channel_names() {
    let s = TestServer::start().await;
    let c = s.client();
    for ch in ["foo", "/", "/foo/", "//foo", "/a.b", "/café", "/foo bar"] {
        publish_error(
            &c,
            json!({"channel": ch, "data": 1}),
            &format!("405:{ch}:Invalid channel"),
        )
        .await;
    }
    // Every mark in the grammar is allowed.
    c.publish_ok("/a-_!~()$@/Z9", json!(1)).await;
}

#[tokio::test]
async fn item_78_empty_messages() {
    let s = TestServer::start().await;
    let c = s.client();
    let resp = c.post_json(&json!({})).await;
    assert_eq!(
        resp.json(),
        json!([{"successful": false, "error": "402:data:Missing required parameter"}])
    );
    let resp = c.post_json(&json!({"data": 1})).await;
    assert_eq!(
        resp.json(),
        json!([{"successful": false, "error": "405::Invalid channel"}])
    );
}

#[tokio::test]
async fn item_79_delivered_event_is_the_message_without_client_id() {
    let s = TestServer::start().await;
    let c = s.client();
    let subscriber = c.subscriber("/foo/bar").await;
    let publisher = c.handshake().await;
    let message = json!({
        "channel": "/foo/bar",
        "clientId": publisher,
        "data": {"x": 1, "list": [1, "two", null]},
        "id": "p1",
        "ext": {"e": 2},
        "custom": {"nested": true},
    });
    let ack = c.one(message.clone()).await;
    assert_eq!(ack["successful"], true);
    let mut expected = message;
    expected.as_object_mut().expect("object").remove("clientId");
    assert_eq!(c.drain(&subscriber).await, [expected]);
}

#[tokio::test]
async fn item_80_wildcard_matching() {
    let s = TestServer::start().await;
    let c = s.client();
    let one = c.subscriber("/a/*").await;
    let all_a = c.subscriber("/a/**").await;
    let everything = c.subscriber("/**").await;
    let top = c.subscriber("/*").await;
    for ch in ["/a", "/a/b", "/a/b/c", "/x/y"] {
        c.publish_ok(ch, json!(ch)).await;
    }
    assert_eq!(data_of(&c.drain(&one).await), [json!("/a/b")]);
    assert_eq!(
        data_of(&c.drain(&all_a).await),
        [json!("/a/b"), json!("/a/b/c")]
    );
    assert_eq!(
        data_of(&c.drain(&everything).await),
        [json!("/a"), json!("/a/b"), json!("/a/b/c"), json!("/x/y")]
    );
    assert_eq!(data_of(&c.drain(&top).await), [json!("/a")]);
}

#[tokio::test]
async fn item_81_overlapping_subscriptions_deliver_once() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.subscriber("/a/*").await;
    c.subscribe_ok(&id, "/a/b").await;
    c.subscribe_ok(&id, "/**").await;
    c.publish_ok("/a/b", json!(1)).await;
    c.publish_ok("/a/b", json!(2)).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!(1), json!(2)]);
}

#[tokio::test]
async fn item_83_request_error_field_rejects_the_publish() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    let reply = c
        .one(json!({"channel": "/foo", "data": 1, "error": "boom"}))
        .await;
    assert_eq!(
        reply,
        json!({"channel": "/foo", "successful": false, "error": "boom"})
    );
    c.publish_ok("/foo", json!("sentinel")).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!("sentinel")]);
}
