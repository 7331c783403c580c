//! PROTOCOL.md §10 items 91-99: the WebSocket and EventSource transports.
//! Item 93 follows DESIGN.md: events are pushed at once in a frame of their
//! own (a JSON array of every ready event), never inside the connect reply.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bayeux_edge::engine::Transport;
use futures_util::StreamExt;
use http::StatusCode;
use serde_json::{json, Value};
use support::{
    assert_between, msg_connect_hold, msg_connect_ws, msg_handshake, msg_subscribe, retry_advice,
    TestServer, CONNECTION_TYPES,
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(start_paused = true)]
async fn item_91_handshake_over_websocket() {
    let s = TestServer::start().await;
    let mut ws = s.client().websocket().await;
    let mut hs = msg_handshake();
    hs["id"] = json!(1);
    ws.send_json(&hs).await;
    let frame = ws.recv().await;
    assert_eq!(frame.len(), 1, "{frame:?}");
    let reply = &frame[0];
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["channel"], "/meta/handshake");
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["supportedConnectionTypes"], json!(CONNECTION_TYPES));
    assert_eq!(reply["advice"], retry_advice(1000));
    assert_eq!(reply["clientId"].as_str().map(str::len), Some(31));
}

#[tokio::test(start_paused = true)]
async fn item_92_one_frame_for_a_batch() {
    let s = TestServer::start().await;
    let mut ws = s.client().websocket().await;
    let id = ws.handshake().await;
    let mut connect = msg_connect_ws(&id);
    connect["advice"] = json!({"timeout": 0});
    ws.send_json(&json!([msg_subscribe(&id, json!("/w/*")), connect]))
        .await;
    let frame = ws.recv().await;
    assert_eq!(
        frame,
        [
            json!({"channel": "/meta/subscribe", "clientId": id, "successful": true, "subscription": "/w/*"}),
            json!({"channel": "/meta/connect", "clientId": id, "successful": true, "advice": retry_advice(1000)}),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn item_93_event_pushed_at_once_in_its_own_frame() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let mut ws = c.websocket().await;
    let id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&id, json!("/w/*"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.bind(&id).await;
    let start = Instant::now();
    c.one(json!({"channel": "/w/a", "data": 1, "id": "5"}))
        .await;
    let frame = ws.recv().await;
    assert_between(start.elapsed(), 0.0, 0.5, "push after publish");
    // Only the event: the connect is still held and answered separately.
    assert_eq!(frame, [json!({"channel": "/w/a", "data": 1, "id": "5"})]);
}

#[tokio::test(start_paused = true)]
async fn item_94_websocket_connect_is_held_for_the_timeout() {
    let s = TestServer::start().await;
    let mut ws = s.client().websocket().await;
    let id = ws.handshake().await;
    let start = Instant::now();
    ws.send_json(&msg_connect_ws(&id)).await;
    let frame = ws.recv().await;
    assert_between(start.elapsed(), 0.9, 1.8, "websocket connect hold");
    assert_eq!(
        frame,
        [
            json!({"channel": "/meta/connect", "clientId": id, "successful": true, "advice": retry_advice(1000)})
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn item_55_over_websocket_disconnect_releases_the_held_connect() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let mut ws = s.client().websocket().await;
    let id = ws.handshake().await;
    ws.bind(&id).await;
    let start = Instant::now();
    ws.send_json(&json!({"channel": "/meta/disconnect", "clientId": id}))
        .await;
    let mut frames = vec![ws.recv().await, ws.recv().await];
    assert_between(start.elapsed(), 0.0, 1.0, "release after disconnect");
    frames.sort_by_key(|f| f[0]["channel"].as_str().map(str::to_owned));
    assert_eq!(
        frames,
        [
            vec![
                json!({"channel": "/meta/connect", "clientId": id, "successful": true, "advice": retry_advice(5000)})
            ],
            vec![json!({"channel": "/meta/disconnect", "clientId": id, "successful": true})],
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn item_95_keepalive_and_ignored_frames() {
    let s = TestServer::start().await;
    let mut ws = s.client().websocket().await;
    ws.send_text("[]").await;
    assert_eq!(ws.recv().await, Vec::<Value>::new());
    for garbage in ["not json", "42", "\"x\"", "true", "[ }"] {
        ws.send_text(garbage).await;
    }
    // The next frame answers the `[]` sent after the garbage: nothing else came back.
    ws.sync().await;
    let id = ws.handshake().await;
    assert_eq!(id.len(), 31);
}

#[tokio::test(start_paused = true)]
async fn item_96_events_after_websocket_close_go_to_the_next_connect() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let mut ws = c.websocket().await;
    let id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&id, json!("/w"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.bind(&id).await;
    s.wait_open("/bayeux", Transport::WebSocket, 1).await;
    ws.inner.close(None).await.expect("close");
    drop(ws);
    s.wait_open("/bayeux", Transport::WebSocket, 0).await;
    c.publish_ok("/w", json!("after close")).await;
    let replies = c.bayeux(msg_connect_hold(&id, 0)).await;
    assert_eq!(replies[0]["successful"], true);
    assert_eq!(
        support::events(&replies),
        [json!({"channel": "/w", "data": "after close"})]
    );
}

#[tokio::test(start_paused = true)]
async fn item_97_eventsource_stream_head() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let mut es = c.event_source(&id).await;
    assert_eq!(es.status, StatusCode::OK);
    assert_eq!(
        es.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    assert_eq!(
        es.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-cache, no-store"[..])
    );
    let first = es
        .first_bytes(b"retry: 5000\r\n\r\n".len(), Duration::from_secs(5))
        .await;
    assert_eq!(first, b"retry: 5000\r\n\r\n");
}

#[tokio::test(start_paused = true)]
async fn item_98_eventsource_delivers_events() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/es").await;
    let mut es = c.event_source(&id).await;
    assert_eq!(es.next_block(Duration::from_secs(5)).await, "retry: 5000");
    c.one(json!({"channel": "/es", "data": {"n": 1}, "id": "e1"}))
        .await;
    let block = es.next_block(Duration::from_secs(5)).await;
    let json = block.strip_prefix("data: ").expect("a data line");
    assert!(!json.contains('\n'), "{block:?}");
    let events: Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(
        events,
        json!([{"channel": "/es", "data": {"n": 1}, "id": "e1"}])
    );
    // The heartbeat connect of an EventSource client answers at once, empty.
    let reply = c
        .one(json!({"channel": "/meta/connect", "clientId": id, "connectionType": "eventsource"}))
        .await;
    assert_eq!(reply["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn item_99_eventsource_ping_comment() {
    let s = TestServer::with_defaults("timeout_secs = 5\neventsource_ping_secs = 0.5").await;
    let c = s.client();
    let id = c.handshake().await;
    // The stream's clock starts after the request is sent, so this is a lower bound.
    let start = Instant::now();
    let mut es = c.event_source(&id).await;
    assert_eq!(es.next_block(Duration::from_secs(5)).await, "retry: 5000");
    assert_eq!(es.next_block(Duration::from_secs(5)).await, ":");
    assert_between(start.elapsed(), 0.48, 1.5, "first ping");
    assert_eq!(es.next_block(Duration::from_secs(5)).await, ":");
    assert_between(start.elapsed(), 0.98, 2.5, "second ping");
}

#[tokio::test(start_paused = true)]
async fn eventsource_close_leaves_events_queued() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/es").await;
    let mut es = c.event_source(&id).await;
    assert_eq!(es.next_block(Duration::from_secs(5)).await, "retry: 5000");
    s.wait_open("/bayeux", Transport::EventSource, 1).await;
    drop(es);
    s.wait_open("/bayeux", Transport::EventSource, 0).await;
    c.publish_ok("/es", json!("queued")).await;
    assert_eq!(support::data_of(&c.drain(&id).await), [json!("queued")]);
}

#[tokio::test(start_paused = true)]
async fn websocket_events_precede_the_ack_of_their_own_publish() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let mut ws = s.client().websocket().await;
    let id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&id, json!("/own"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.bind(&id).await;
    ws.send_json(&json!([
        {"channel": "/own", "clientId": id, "data": 1, "id": "a"},
        {"channel": "/own", "clientId": id, "data": 2, "id": "b"},
    ]))
    .await;
    assert_eq!(
        ws.recv().await,
        [
            json!({"channel": "/own", "data": 1, "id": "a"}),
            json!({"channel": "/own", "data": 2, "id": "b"}),
        ]
    );
    assert_eq!(
        ws.recv().await,
        [
            json!({"channel": "/own", "clientId": id, "id": "a", "successful": true}),
            json!({"channel": "/own", "clientId": id, "id": "b", "successful": true}),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn websocket_ping_frames_when_configured() {
    let s = TestServer::with_defaults("timeout_secs = 5\nws_ping_secs = 0.2").await;
    let mut ws = s.client().websocket().await;
    let mut payloads = Vec::new();
    support::within(Duration::from_secs(5), "two pings", async {
        while payloads.len() < 2 {
            match ws.inner.next().await {
                Some(Ok(Message::Ping(p))) => payloads.push(p.to_vec()),
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(payloads, [b"1".to_vec(), b"2".to_vec()]);
}
