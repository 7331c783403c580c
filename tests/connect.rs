//! PROTOCOL.md §10 items 40-55: `/meta/connect` over long-polling.
//!
//! Hold durations are measured with `tokio::time::Instant` and checked with
//! generous bounds; "the connect is held" is established by the server's own
//! long-poll gauge, never by sleeping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bayeux_edge::engine::Transport;
use serde_json::{json, Value};
use support::{
    assert_between, events, msg_connect, msg_publish, retry_advice, within, TestServer, MAX_WAIT,
};
use tokio::time::Instant;

const BAYEUX: &str = "/bayeux";

fn assert_connect_ack(reply: &Value, client_id: &str, timeout_ms: u64) {
    assert_eq!(
        *reply,
        json!({
            "channel": "/meta/connect",
            "clientId": client_id,
            "successful": true,
            "advice": retry_advice(timeout_ms),
        })
    );
}

#[tokio::test(start_paused = true)]
async fn item_40_connect_is_held_for_the_timeout() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let start = Instant::now();
    let replies = c.connect(&id, None).await;
    assert_between(start.elapsed(), 0.9, 1.8, "connect hold");
    assert_eq!(replies.len(), 1);
    assert_connect_ack(&replies[0], &id, 1000);
}

#[tokio::test(start_paused = true)]
async fn item_41_zero_timeout_answers_at_once() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.handshake().await;
    let start = Instant::now();
    let replies = c.connect(&id, Some(0)).await;
    assert_between(start.elapsed(), 0.0, 0.5, "connect with timeout 0");
    assert_eq!(replies.len(), 1);
    assert_connect_ack(&replies[0], &id, 5000);
}

#[tokio::test(start_paused = true)]
async fn item_42_client_timeout_is_honoured_and_advice_unchanged() {
    let s = TestServer::with_defaults("timeout_secs = 2").await;
    let c = s.client();
    let id = c.handshake().await;
    let start = Instant::now();
    let replies = c.connect(&id, Some(700)).await;
    assert_between(start.elapsed(), 0.65, 1.5, "connect with timeout 700");
    assert_eq!(replies.len(), 1);
    assert_connect_ack(&replies[0], &id, 2000);
}

#[tokio::test(start_paused = true)]
async fn item_43_unknown_client() {
    let s = TestServer::start().await;
    let mut m = msg_connect("nope");
    m["id"] = json!("x");
    let reply = s.client().one(m).await;
    assert_eq!(
        reply,
        json!({
            "id": "x",
            "channel": "/meta/connect",
            "successful": false,
            "error": "401:nope:Unknown client",
            "advice": {"reconnect": "handshake"},
        })
    );
}

#[tokio::test(start_paused = true)]
async fn item_44_missing_client_id() {
    let s = TestServer::start().await;
    let reply = s
        .client()
        .one(json!({"channel": "/meta/connect", "connectionType": "long-polling"}))
        .await;
    assert_eq!(
        reply,
        json!({
            "channel": "/meta/connect",
            "successful": false,
            "error": "402:clientId:Missing required parameter",
            "advice": {"reconnect": "handshake"},
        })
    );
}

#[tokio::test(start_paused = true)]
async fn item_45_unsupported_connection_type() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let reply = c
        .one(json!({"channel": "/meta/connect", "clientId": id, "connectionType": "flash"}))
        .await;
    assert_eq!(
        reply,
        json!({
            "channel": "/meta/connect",
            "successful": false,
            "error": "301:flash:Connection types not supported",
            "advice": {"reconnect": "handshake"},
        })
    );
}

#[tokio::test(start_paused = true)]
async fn item_46_missing_connection_type() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let reply = c
        .one(json!({"channel": "/meta/connect", "clientId": id}))
        .await;
    assert_eq!(reply["successful"], false);
    assert_eq!(
        reply["error"],
        "402:connectionType:Missing required parameter"
    );
    assert_eq!(reply["advice"], json!({"reconnect": "handshake"}));
    assert!(reply.get("clientId").is_none(), "{reply}");
}

#[tokio::test(start_paused = true)]
async fn item_47_missing_connection_type_wins_over_unknown_client() {
    let s = TestServer::start().await;
    let reply = s
        .client()
        .one(json!({"channel": "/meta/connect", "clientId": "nope"}))
        .await;
    assert_eq!(reply["successful"], false);
    assert_eq!(
        reply["error"],
        "402:connectionType:Missing required parameter"
    );
    assert_eq!(reply["advice"], json!({"reconnect": "handshake"}));
}

/// Starts a held connect for `id` and waits until the server holds it.
async fn held_connect(s: &TestServer, id: &str) -> tokio::task::JoinHandle<Vec<Value>> {
    let c = s.client();
    let id = id.to_owned();
    let task = tokio::spawn(async move { c.connect(&id, None).await });
    s.wait_open(BAYEUX, Transport::LongPolling, 1).await;
    task
}

#[tokio::test(start_paused = true)]
async fn item_48_publish_releases_the_held_connect() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    let held = held_connect(&s, &id).await;
    let published = Instant::now();
    c.publish_ok("/foo", json!({"x": 1})).await;
    let replies = within(MAX_WAIT, "the held connect", held)
        .await
        .expect("task");
    assert_between(published.elapsed(), 0.0, 0.5, "release after publish");
    assert_eq!(replies.len(), 2);
    assert_connect_ack(&replies[0], &id, 5000);
    assert_eq!(replies[1], json!({"channel": "/foo", "data": {"x": 1}}));
}

#[tokio::test(start_paused = true)]
async fn item_49_simultaneous_publishes_share_one_reply() {
    // Two publishers' messages reaching the server in the same instant: one
    // request carrying both, from two different sessions, to two channels.
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/foo/*").await;
    let p1 = c.handshake().await;
    let p2 = c.handshake().await;
    let held = held_connect(&s, &id).await;
    let acks = c
        .bayeux(json!([
            {"channel": "/foo/a", "clientId": p1, "data": 1},
            {"channel": "/foo/b", "clientId": p2, "data": 2},
        ]))
        .await;
    assert!(acks.iter().all(|a| a["successful"] == true), "{acks:?}");
    let replies = within(MAX_WAIT, "the held connect", held)
        .await
        .expect("task");
    assert_connect_ack(&replies[0], &id, 5000);
    assert_eq!(
        events(&replies),
        [
            json!({"channel": "/foo/a", "data": 1}),
            json!({"channel": "/foo/b", "data": 2}),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn item_50_publish_batch_in_one_reply_in_order() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    let held = held_connect(&s, &id).await;
    c.bayeux(json!([
        msg_publish("/foo", json!(1)),
        msg_publish("/foo", json!(2)),
        msg_publish("/foo", json!(3)),
    ]))
    .await;
    let replies = within(MAX_WAIT, "the held connect", held)
        .await
        .expect("task");
    assert_eq!(replies.len(), 4, "{replies:?}");
    assert_connect_ack(&replies[0], &id, 5000);
    assert_eq!(
        support::data_of(&replies[1..]),
        [json!(1), json!(2), json!(3)]
    );
}

#[tokio::test(start_paused = true)]
async fn item_51_queued_events_return_at_once_in_order() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    for n in 1..=3 {
        c.publish_ok("/foo", json!(n)).await;
    }
    let start = Instant::now();
    let replies = c.connect(&id, None).await;
    assert_between(start.elapsed(), 0.0, 0.5, "connect with queued events");
    assert_connect_ack(&replies[0], &id, 5000);
    assert_eq!(
        support::data_of(&replies[1..]),
        [json!(1), json!(2), json!(3)]
    );
}

#[tokio::test(start_paused = true)]
async fn item_52_connect_batched_with_own_publish() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    let start = Instant::now();
    let replies = c
        .bayeux(json!([
            msg_connect(&id),
            {"channel": "/foo", "clientId": id, "data": "mine", "id": "p1"},
        ]))
        .await;
    assert_between(start.elapsed(), 0.0, 0.5, "batched connect");
    assert_eq!(
        replies,
        [
            json!({"channel": "/foo", "clientId": id, "id": "p1", "successful": true}),
            json!({"channel": "/meta/connect", "clientId": id, "successful": true, "advice": retry_advice(5000)}),
            json!({"channel": "/foo", "data": "mine", "id": "p1"}),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn item_53_batched_connect_delays_the_whole_response() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    let start = Instant::now();
    let replies = c
        .bayeux(json!([
            msg_connect(&id),
            msg_publish("/elsewhere", json!(1))
        ]))
        .await;
    assert_between(start.elapsed(), 0.9, 1.8, "batched connect hold");
    assert_eq!(
        replies,
        [
            json!({"channel": "/elsewhere", "successful": true}),
            json!({"channel": "/meta/connect", "clientId": id, "successful": true, "advice": retry_advice(1000)}),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn item_54_eventsource_connect_is_immediate() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.handshake().await;
    let start = Instant::now();
    let reply = c
        .one(json!({"channel": "/meta/connect", "clientId": id, "connectionType": "eventsource"}))
        .await;
    assert_between(start.elapsed(), 0.0, 0.5, "eventsource connect");
    assert_eq!(
        reply,
        json!({
            "channel": "/meta/connect",
            "clientId": id,
            "successful": true,
            "advice": {"reconnect": "retry", "interval": 5000, "timeout": 0},
        })
    );
}

#[tokio::test(start_paused = true)]
async fn item_55_disconnect_releases_the_held_connect() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    let held = held_connect(&s, &id).await;
    let start = Instant::now();
    let ack = c.disconnect(&id).await;
    assert_eq!(
        ack,
        json!({"channel": "/meta/disconnect", "clientId": id, "successful": true})
    );
    let replies = within(Duration::from_secs(2), "the released connect", held)
        .await
        .expect("task");
    assert_between(start.elapsed(), 0.0, 0.5, "release after disconnect");
    assert_eq!(replies.len(), 1);
    assert_connect_ack(&replies[0], &id, 5000);
    // The subscription went with the session.
    assert_eq!(s.engine(BAYEUX).stats().subscriptions, 0);
}
