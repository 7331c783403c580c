//! The deliberate deviations from Faye listed in DESIGN.md §1.1, each shown on
//! the wire. Item 82 of PROTOCOL.md §10 is inverted here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bayeux_edge::engine::Transport;
use http::StatusCode;
use serde_json::json;
use support::{
    assert_between, data_of, events, msg_publish, msg_subscribe, retry_advice, within, TestServer,
    MAX_WAIT,
};
use tokio::time::Instant;

const BAYEUX: &str = "/bayeux";

#[tokio::test(start_paused = true)]
async fn superseded_connect_is_answered_at_once() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    let first = {
        let (c, id) = (c.clone(), id.clone());
        tokio::spawn(async move { c.connect(&id, None).await })
    };
    s.wait_open(BAYEUX, Transport::LongPolling, 1).await;
    let second = {
        let (c, id) = (c.clone(), id.clone());
        tokio::spawn(async move { c.connect(&id, None).await })
    };
    let start = Instant::now();
    let replies = within(Duration::from_secs(2), "the superseded connect", first)
        .await
        .expect("task");
    assert_between(start.elapsed(), 0.0, 1.0, "superseded connect answered");
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/connect", "clientId": id, "successful": true, "advice": retry_advice(5000)})
        ]
    );
    // The newer connect is the one held, and it gets the events.
    s.wait_open(BAYEUX, Transport::LongPolling, 1).await;
    c.publish_ok("/foo", json!("for the second")).await;
    let replies = within(MAX_WAIT, "the second connect", second)
        .await
        .expect("task");
    assert_eq!(replies[0]["successful"], true);
    assert_eq!(data_of(&events(&replies)), [json!("for the second")]);
}

#[tokio::test(start_paused = true)]
async fn events_survive_an_aborted_long_poll() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/foo").await;
    let held = {
        let (c, id) = (c.clone(), id.clone());
        tokio::spawn(async move { c.connect(&id, None).await })
    };
    s.wait_open(BAYEUX, Transport::LongPolling, 1).await;
    // Dropping the request closes its connection.
    held.abort();
    assert!(held.await.is_err_and(|e| e.is_cancelled()));
    s.wait_open(BAYEUX, Transport::LongPolling, 0).await;
    c.publish_ok("/foo", json!("kept")).await;
    let start = Instant::now();
    let replies = c.connect(&id, None).await;
    assert_between(start.elapsed(), 0.0, 0.5, "connect with a queued event");
    assert_eq!(
        events(&replies),
        [json!({"channel": "/foo", "data": "kept"})]
    );
}

#[tokio::test(start_paused = true)]
async fn item_82_inverted_service_publishes_are_never_delivered() {
    let s = TestServer::start().await;
    let c = s.client();
    let everything = c.subscriber("/**").await;
    let ack = c
        .one(json!({"channel": "/service/echo", "data": "svc", "id": "s1"}))
        .await;
    assert_eq!(
        ack,
        json!({"channel": "/service/echo", "id": "s1", "successful": true})
    );
    let before = s.engine(BAYEUX).stats().delivered;
    c.publish_ok("/service/deeper/path", json!("svc")).await;
    assert_eq!(s.engine(BAYEUX).stats().delivered, before);
    c.publish_ok("/sentinel", json!("end")).await;
    assert_eq!(data_of(&c.drain(&everything).await), [json!("end")]);
}

#[tokio::test(start_paused = true)]
async fn item_82_inverted_over_websocket_too() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let mut ws = c.websocket().await;
    let id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&id, json!("/**"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.bind(&id).await;
    c.publish_ok("/service/secret", json!("svc")).await;
    c.publish_ok("/public", json!("pub")).await;
    assert_eq!(
        ws.recv().await,
        [json!({"channel": "/public", "data": "pub"})]
    );
}

#[tokio::test(start_paused = true)]
async fn eventsource_for_an_unknown_client_is_refused() {
    let s = TestServer::start().await;
    let c = s.client();
    let resp = c
        .get("/bayeux/nope", &[("accept", "text/event-stream")])
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.text(), "Unknown client");
    // Ids that would be special keys elsewhere are just unknown.
    let resp = c
        .get("/bayeux/__proto__", &[("accept", "text/event-stream")])
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.open(BAYEUX, Transport::EventSource), 0);
}

#[tokio::test(start_paused = true)]
async fn websocket_sends_every_ready_event_in_one_frame() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let mut ws = c.websocket().await;
    let id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&id, json!("/batch"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.bind(&id).await;
    c.bayeux(json!([
        msg_publish("/batch", json!(1)),
        msg_publish("/batch", json!(2)),
        msg_publish("/batch", json!(3)),
    ]))
    .await;
    let frame = ws.recv().await;
    assert_eq!(data_of(&frame), [json!(1), json!(2), json!(3)]);
    assert!(frame.iter().all(|e| e["channel"] == "/batch"));
}

// Bounded everything (DESIGN.md §1.7): Faye has no such limits.

#[tokio::test(start_paused = true)]
async fn full_mailbox_drops_the_oldest_events() {
    let s = TestServer::with_defaults("timeout_secs = 1\nmax_queue_messages = 3").await;
    let c = s.client();
    let id = c.subscriber("/q").await;
    for n in 1..=5 {
        c.publish_ok("/q", json!(n)).await;
    }
    assert_eq!(data_of(&c.drain(&id).await), [json!(3), json!(4), json!(5)]);
    assert_eq!(s.engine(BAYEUX).stats().dropped, 2);
}

#[tokio::test(start_paused = true)]
async fn subscriptions_per_client_are_bounded() {
    let s = TestServer::with_defaults("timeout_secs = 1\nmax_subscriptions = 2").await;
    let c = s.client();
    let id = c.handshake().await;
    c.subscribe_ok(&id, "/a").await;
    c.subscribe_ok(&id, "/b").await;
    let reply = c.subscribe(&id, json!("/c")).await;
    assert_eq!(reply["successful"], false);
    assert_eq!(reply["error"], "403:/c:Too many subscriptions");
    // Re-subscribing an existing channel is still fine.
    c.subscribe_ok(&id, "/a").await;
    assert_eq!(s.engine(BAYEUX).stats().subscriptions, 2);
}

#[tokio::test(start_paused = true)]
async fn clients_per_route_are_bounded() {
    let s = TestServer::with_defaults("timeout_secs = 1\nmax_clients = 2").await;
    let c = s.client();
    let first = c.handshake().await;
    c.handshake().await;
    let reply = c.one(support::msg_handshake()).await;
    assert_eq!(reply["successful"], false);
    assert_eq!(reply["error"], "503::Server at capacity");
    assert_eq!(
        reply["advice"],
        json!({"reconnect": "handshake", "interval": 5000})
    );
    assert!(reply.get("clientId").is_none());
    // Room again once a session ends.
    assert_eq!(c.disconnect(&first).await["successful"], true);
    c.handshake().await;
}

#[tokio::test(start_paused = true)]
async fn superseded_websocket_connect_is_answered_at_once() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let mut ws = s.client().websocket().await;
    let id = ws.handshake().await;
    let mut first = support::msg_connect_ws(&id);
    first["id"] = json!("c1");
    ws.send_json(&first).await;
    ws.sync().await;
    let start = Instant::now();
    let mut second = support::msg_connect_ws(&id);
    second["id"] = json!("c2");
    ws.send_json(&second).await;
    let frame = ws.recv().await;
    assert_between(start.elapsed(), 0.0, 1.0, "superseded connect answered");
    assert_eq!(
        frame,
        [
            json!({"id": "c1", "channel": "/meta/connect", "clientId": id, "successful": true, "advice": retry_advice(5000)})
        ]
    );
    // The second one is still held: the next frame answers a keep-alive.
    ws.sync().await;
}

#[tokio::test(start_paused = true)]
async fn websocket_connect_supersedes_a_held_long_poll() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/moved").await;
    let held = {
        let (c, id) = (c.clone(), id.clone());
        tokio::spawn(async move { c.connect(&id, None).await })
    };
    s.wait_open(BAYEUX, Transport::LongPolling, 1).await;
    let mut ws = c.websocket().await;
    ws.bind(&id).await;
    let replies = within(Duration::from_secs(2), "the superseded long-poll", held)
        .await
        .expect("task");
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["successful"], true);
    // Delivery moved to the socket.
    c.publish_ok("/moved", json!("to the socket")).await;
    assert_eq!(
        ws.recv().await,
        [json!({"channel": "/moved", "data": "to the socket"})]
    );
}

#[tokio::test(start_paused = true)]
async fn second_socket_takes_over_without_knocking_the_first_off() {
    // Faye lets two sockets sharing a clientId knock each other off; here the
    // newer socket takes delivery and closing the older one changes nothing.
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let id = c.subscriber("/shared").await;
    let mut a = c.websocket().await;
    a.bind(&id).await;
    let mut b = c.websocket().await;
    b.send_json(&support::msg_connect_ws(&id)).await;
    let answered = a.recv().await;
    assert_eq!(answered[0]["channel"], "/meta/connect");
    assert_eq!(answered[0]["successful"], true);
    b.sync().await;
    c.publish_ok("/shared", json!(1)).await;
    assert_eq!(data_of(&b.recv().await), [json!(1)]);
    a.inner.close(None).await.expect("close");
    drop(a);
    s.wait_open(BAYEUX, Transport::WebSocket, 1).await;
    c.publish_ok("/shared", json!(2)).await;
    assert_eq!(data_of(&b.recv().await), [json!(2)]);
}

#[tokio::test(start_paused = true)]
async fn rebinding_a_socket_to_another_client_leaves_the_first_queued() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let x = c.subscriber("/x").await;
    let y = c.subscriber("/y").await;
    let mut ws = c.websocket().await;
    ws.bind(&x).await;
    c.publish_ok("/x", json!("x1")).await;
    assert_eq!(data_of(&ws.recv().await), [json!("x1")]);
    ws.send_json(&support::msg_connect_ws(&y)).await;
    // The connect held for x is answered once y takes the socket.
    let answered = ws.recv().await;
    assert_eq!(answered[0]["clientId"], json!(x));
    ws.sync().await;
    c.publish_ok("/x", json!("x2")).await;
    c.publish_ok("/y", json!("y1")).await;
    assert_eq!(data_of(&ws.recv().await), [json!("y1")]);
    assert_eq!(data_of(&c.drain(&x).await), [json!("x2")]);
}

#[tokio::test(start_paused = true)]
async fn delivered_objects_carry_every_value_with_keys_sorted() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.subscriber("/order").await;
    let body = r#"[{"channel":"/order","data":{"zeta":1,"alpha":{"y":[3,{"b":1,"a":2}],"x":"é\n"},"mid":null}}]"#;
    let ack = c.post(Some("application/json"), body).await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.text());
    let connect = format!(
        r#"[{{"channel":"/meta/connect","clientId":"{id}","connectionType":"long-polling","advice":{{"timeout":0}}}}]"#
    );
    let text = c.post(Some("application/json"), connect).await.text();
    // Values and array order are the publisher's; object keys come out sorted
    // (JSON objects are unordered, and a sorted map is cheaper than an ordered one).
    let expected = r#"{"channel":"/order","data":{"alpha":{"x":"é\n","y":[3,{"a":2,"b":1}]},"mid":null,"zeta":1}}"#;
    assert!(text.contains(expected), "{text}");
}
