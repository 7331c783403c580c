//! PROTOCOL.md §10 items 56-70: `/meta/subscribe` and `/meta/unsubscribe`.
//!
//! Delivery checks publish the interesting messages first and a sentinel last:
//! events arrive in publish order, so a drained queue that holds only the
//! sentinel proves the earlier messages were not delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::{data_of, msg_subscribe, msg_unsubscribe, Http, TestServer};

async fn subscribe_error(c: &Http, id: &str, subscription: Value, error: &str) {
    let reply = c.subscribe(id, subscription.clone()).await;
    assert_eq!(
        reply,
        json!({
            "channel": "/meta/subscribe",
            "clientId": id,
            "successful": false,
            "subscription": subscription,
            "error": error,
        })
    );
}

#[tokio::test]
async fn item_56_subscribe_to_a_pattern() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let mut m = msg_subscribe(&id, json!("/foo/*"));
    m["id"] = json!("s1");
    let reply = c.one(m).await;
    assert_eq!(
        reply,
        json!({
            "id": "s1",
            "channel": "/meta/subscribe",
            "clientId": id,
            "successful": true,
            "subscription": "/foo/*",
        })
    );
}

#[tokio::test]
async fn item_57_array_subscription_echoed_as_array() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let reply = c.subscribe(&id, json!(["/a", "/b/**"])).await;
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["subscription"], json!(["/a", "/b/**"]));
    c.publish_ok("/a", json!(1)).await;
    c.publish_ok("/b/c/d", json!(2)).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!(1), json!(2)]);
}

#[tokio::test]
async fn item_58_meta_subscription_is_forbidden() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    subscribe_error(
        &c,
        &id,
        json!("/meta/foo"),
        "403:/meta/foo:Forbidden channel",
    )
    .await;
}

#[tokio::test]
async fn item_59_service_subscription_is_forbidden() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    for ch in ["/service/foo", "/service/**"] {
        subscribe_error(&c, &id, json!(ch), &format!("403:{ch}:Forbidden channel")).await;
    }
}

#[tokio::test]
async fn item_60_invalid_subscriptions() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    for (value, shown) in [
        (json!("foo"), "foo"),
        (json!("/foo/*/bar"), "/foo/*/bar"),
        (json!("/foo/***"), "/foo/***"),
        (json!(42), "42"),
    ] {
        subscribe_error(&c, &id, value, &format!("405:{shown}:Invalid channel")).await;
    }
    assert_eq!(s.engine("/bayeux").stats().subscriptions, 0);
}

#[tokio::test]
async fn item_61_root_wildcards_are_valid() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    for ch in ["/**", "/*"] {
        let reply = c.subscribe(&id, json!(ch)).await;
        assert_eq!(reply["successful"], true, "{ch}: {reply}");
        assert_eq!(reply["subscription"], ch);
    }
}

#[tokio::test]
async fn item_62_missing_subscription() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let reply = c
        .one(json!({"channel": "/meta/subscribe", "clientId": id}))
        .await;
    assert_eq!(
        reply,
        json!({
            "channel": "/meta/subscribe",
            "clientId": id,
            "successful": false,
            "subscription": [],
            "error": "402:subscription:Missing required parameter",
        })
    );
}

#[tokio::test]
async fn item_63_empty_subscription_list() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let reply = c.subscribe(&id, json!([])).await;
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["subscription"], json!([]));
}

#[tokio::test]
async fn item_64_subscription_list_is_not_atomic() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    subscribe_error(
        &c,
        &id,
        json!(["/ok1", "/meta/x", "/ok2"]),
        "403:/meta/x:Forbidden channel",
    )
    .await;
    c.publish_ok("/ok2", json!("two")).await;
    c.publish_ok("/ok1", json!("one")).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!("one")]);
}

#[tokio::test]
async fn item_65_unknown_client() {
    let s = TestServer::start().await;
    let reply = s.client().subscribe("nope", json!("/foo")).await;
    assert_eq!(
        reply,
        json!({
            "channel": "/meta/subscribe",
            "clientId": "nope",
            "successful": false,
            "subscription": "/foo",
            "error": "401:nope:Unknown client",
        })
    );
}

#[tokio::test]
async fn item_66_missing_client_id() {
    let s = TestServer::start().await;
    let reply = s
        .client()
        .one(json!({"channel": "/meta/subscribe", "subscription": "/foo"}))
        .await;
    assert_eq!(reply["successful"], false);
    assert_eq!(reply["error"], "402:clientId:Missing required parameter");
    assert!(reply.get("clientId").is_none(), "{reply}");
    assert!(reply.get("advice").is_none(), "{reply}");
}

#[tokio::test]
async fn item_67_unsubscribe_stops_events() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    c.subscribe_ok(&id, "/sentinel").await;
    c.publish_ok("/foo", json!("before")).await;
    let reply = c.one(msg_unsubscribe(&id, json!("/foo"))).await;
    assert_eq!(
        reply,
        json!({
            "channel": "/meta/unsubscribe",
            "clientId": id,
            "successful": true,
            "subscription": "/foo",
        })
    );
    c.publish_ok("/foo", json!("after")).await;
    c.publish_ok("/sentinel", json!("end")).await;
    assert_eq!(
        data_of(&c.drain(&id).await),
        [json!("before"), json!("end")]
    );
}

#[tokio::test]
async fn item_68_unsubscribe_never_subscribed() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let reply = c.one(msg_unsubscribe(&id, json!("/never"))).await;
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["subscription"], "/never");
}

#[tokio::test]
async fn item_69_unsubscribe_forbidden_and_invalid() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    for (ch, error) in [
        ("/meta/x", "403:/meta/x:Forbidden channel"),
        ("x", "405:x:Invalid channel"),
    ] {
        let reply = c.one(msg_unsubscribe(&id, json!(ch))).await;
        assert_eq!(
            reply,
            json!({
                "channel": "/meta/unsubscribe",
                "clientId": id,
                "successful": false,
                "subscription": ch,
                "error": error,
            })
        );
    }
}

#[tokio::test]
async fn item_70_duplicate_subscription_delivers_once() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    c.subscribe_ok(&id, "/foo").await;
    c.subscribe_ok(&id, "/foo").await;
    assert_eq!(s.engine("/bayeux").stats().subscriptions, 1);
    c.publish_ok("/foo", json!(1)).await;
    c.publish_ok("/foo", json!(2)).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!(1), json!(2)]);
}
