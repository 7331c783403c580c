//! PROTOCOL.md §10 items 84-90: disconnect and session lifetime.
//!
//! The session lifetime is `2 × timeout`; these tests use `timeout_secs = 0.5`
//! so it is one second. Liveness is observed through the engine's side-effect
//! free lookup (item 89 shows, over the wire, that subscribe/publish calls do
//! not extend it either).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bayeux_edge::engine::Engine;
use serde_json::{json, Value};
use support::{msg_connect, msg_unsubscribe, Http, TestServer, MAX_WAIT};
use tokio::time::Instant;

const HALF_SECOND: &str = "timeout_secs = 0.5";

fn assert_unknown_on_connect(reply: &Value, id: &str) {
    assert_eq!(
        *reply,
        json!({
            "channel": "/meta/connect",
            "successful": false,
            "error": format!("401:{id}:Unknown client"),
            "advice": {"reconnect": "handshake"},
        })
    );
}

/// Watches `id` until the engine no longer knows it; returns the last instant
/// it was seen alive and the first instant it was gone.
async fn watch_expiry(engine: &Engine, id: &str) -> (Instant, Instant) {
    let deadline = Instant::now() + MAX_WAIT;
    let mut last_alive = None;
    loop {
        let now = Instant::now();
        if engine.session(id).await.is_none() {
            return (last_alive.expect("alive at first look"), now);
        }
        last_alive = Some(now);
        assert!(now < deadline, "session {id} never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn item_84_disconnect_then_connect_is_unknown() {
    let s = TestServer::start().await;
    let c = s.client();
    let id = c.handshake().await;
    let mut m = json!({"channel": "/meta/disconnect", "clientId": id, "id": "d1"});
    let ack = c.one(m.clone()).await;
    assert_eq!(
        ack,
        json!({"channel": "/meta/disconnect", "clientId": id, "id": "d1", "successful": true})
    );
    assert!(ack.get("advice").is_none());
    let reply = c.one(msg_connect(&id)).await;
    assert_unknown_on_connect(&reply, &id);
    // A second disconnect is unknown too.
    m["id"] = json!("d2");
    let again = c.one(m).await;
    assert_eq!(again["successful"], false);
    assert_eq!(again["error"], format!("401:{id}:Unknown client"));
}

#[tokio::test(start_paused = true)]
async fn item_85_disconnect_unknown_and_missing() {
    let s = TestServer::start().await;
    let c = s.client();
    let reply = c.disconnect("nope").await;
    assert_eq!(
        reply,
        json!({"channel": "/meta/disconnect", "successful": false, "error": "401:nope:Unknown client"})
    );
    let reply = c.one(json!({"channel": "/meta/disconnect"})).await;
    assert_eq!(
        reply,
        json!({"channel": "/meta/disconnect", "successful": false, "error": "402:clientId:Missing required parameter"})
    );
}

#[tokio::test(start_paused = true)]
async fn item_86_disconnected_clients_get_nothing_queued() {
    let s = TestServer::start().await;
    let c = s.client();
    let gone = c.subscriber("/x").await;
    c.subscribe_ok(&gone, "/y/**").await;
    let stays = c.subscriber("/x").await;
    let engine = s.engine("/bayeux");
    assert_eq!(engine.stats().subscriptions, 3);
    assert_eq!(c.disconnect(&gone).await["successful"], true);
    assert_eq!(engine.stats().subscriptions, 1);
    assert_eq!(engine.stats().clients, 1);
    let before = engine.stats().delivered;
    c.publish_ok("/x", json!(1)).await;
    c.publish_ok("/y/z", json!(2)).await;
    // Only the remaining subscriber got a copy.
    assert_eq!(engine.stats().delivered, before + 1);
    assert_eq!(support::data_of(&c.drain(&stays).await), [json!(1)]);
    assert_unknown_on_connect(&c.one(msg_connect(&gone)).await, &gone);
}

#[tokio::test(start_paused = true)]
async fn item_87_session_lives_twice_the_timeout_after_handshake() {
    let s = TestServer::with_defaults(HALF_SECOND).await;
    let c = s.client();
    let engine = s.engine("/bayeux");
    let before = Instant::now();
    let id = c.handshake().await;
    let after = Instant::now();
    let (last_alive, first_gone) = watch_expiry(&engine, &id).await;
    assert!(
        secs(after, last_alive) >= 0.7,
        "gone too early: last seen {:.3} s after the handshake",
        secs(after, last_alive)
    );
    assert!(
        secs(before, first_gone) >= 0.98,
        "expired after {:.3} s",
        secs(before, first_gone)
    );
    assert!(
        secs(after, first_gone) <= 1.6,
        "still alive {:.3} s after the handshake",
        secs(after, first_gone)
    );
    assert_unknown_on_connect(&c.one(msg_connect(&id)).await, &id);
}

#[tokio::test(start_paused = true)]
async fn item_88_lifetime_counts_from_the_start_of_the_last_connect() {
    let s = TestServer::with_defaults(HALF_SECOND).await;
    let c = s.client();
    let engine = s.engine("/bayeux");
    let id = c.handshake().await;
    let before = Instant::now();
    let replies = c.connect(&id, None).await;
    let held = before.elapsed().as_secs_f64();
    assert!((0.45..=1.0).contains(&held), "connect held {held:.3} s");
    assert_eq!(replies[0]["successful"], true);
    let (last_alive, first_gone) = watch_expiry(&engine, &id).await;
    assert!(secs(before, last_alive) >= 0.7, "gone too early");
    assert!(
        secs(before, first_gone) >= 0.98,
        "expired {:.3} s after the connect started",
        secs(before, first_gone)
    );
    assert!(
        secs(before, first_gone) <= 1.6,
        "alive {:.3} s after the connect started",
        secs(before, first_gone)
    );
    assert_unknown_on_connect(&c.one(msg_connect(&id)).await, &id);
}

/// Subscribe, publish and unsubscribe with the session's id, as a probe that
/// the session still exists; returns false once it is unknown.
async fn busy(c: &Http, id: &str) -> bool {
    let replies = c
        .bayeux(json!([
            {"channel": "/meta/subscribe", "clientId": id, "subscription": "/busy"},
            {"channel": "/busy", "clientId": id, "data": 1},
            msg_unsubscribe(id, json!("/busy")),
        ]))
        .await;
    let ok = replies[0]["successful"] == true;
    if !ok {
        assert_eq!(replies[0]["error"], format!("401:{id}:Unknown client"));
    }
    ok
}

#[tokio::test(start_paused = true)]
async fn item_89_subscribe_and_publish_do_not_extend_the_session() {
    let s = TestServer::with_defaults(HALF_SECOND).await;
    let c = s.client();
    let before = Instant::now();
    let id = c.handshake().await;
    let after = Instant::now();
    let deadline = Instant::now() + MAX_WAIT;
    let mut last_alive = after;
    // The server looks at the session somewhere between sending a probe and
    // reading its reply: `sent` bounds that from below, `answered` from above.
    let (gone_sent, gone_answered) = loop {
        let sent = Instant::now();
        let alive = busy(&c, &id).await;
        let answered = Instant::now();
        if !alive {
            break (sent, answered);
        }
        last_alive = sent;
        assert!(answered < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(secs(after, last_alive) >= 0.7, "gone too early");
    assert!(
        secs(before, gone_answered) >= 0.98,
        "expired after {:.3} s",
        secs(before, gone_answered)
    );
    assert!(
        secs(after, gone_sent) <= 1.6,
        "the calls kept the session alive for {:.3} s",
        secs(after, gone_sent)
    );
}

#[tokio::test(start_paused = true)]
async fn item_90_hold_longer_than_the_session_ends_at_expiry() {
    let s = TestServer::with_defaults(HALF_SECOND).await;
    let c = s.client();
    let id = c.handshake().await;
    let start = Instant::now();
    let replies = c.connect(&id, Some(5000)).await;
    support::assert_between(start.elapsed(), 0.9, 1.8, "hold ended by expiry");
    assert_eq!(
        replies,
        [json!({
            "channel": "/meta/connect",
            "clientId": id,
            "successful": true,
            "advice": support::retry_advice(500),
        })]
    );
    assert_unknown_on_connect(&c.one(msg_connect(&id)).await, &id);
}

#[tokio::test(start_paused = true)]
async fn drain_answers_held_connects_and_closes_sockets() {
    // PROTOCOL.md §4.7: server close is a release trigger.
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.client();
    let polling = c.handshake().await;
    let held = {
        let (c, id) = (c.clone(), polling.clone());
        tokio::spawn(async move { c.connect(&id, None).await })
    };
    s.wait_open("/bayeux", bayeux_edge::engine::Transport::LongPolling, 1)
        .await;
    let mut ws = c.websocket().await;
    let socket = ws.handshake().await;
    ws.bind(&socket).await;

    let start = Instant::now();
    let (clean, replies) = tokio::join!(s.server.drain(Duration::from_secs(1)), held);
    assert!(clean, "drain did not finish in its grace period");
    assert!(start.elapsed() < Duration::from_secs(2));
    let replies = replies.expect("task");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["successful"], true);
    assert_eq!(replies[0]["advice"]["reconnect"], "retry");
    // Reconnects are spread over the first half of the grace period.
    let interval = replies[0]["advice"]["interval"].as_u64().expect("interval");
    assert!(interval <= 500, "interval {interval}");

    let frame = ws.recv().await;
    assert_eq!(frame[0]["channel"], "/meta/connect");
    assert_eq!(frame[0]["successful"], true);
    assert_eq!(frame[0]["advice"]["reconnect"], "retry");
    assert_eq!(
        ws.close_code().await,
        Some(tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away)
    );
    assert!(tokio::net::TcpStream::connect(s.http).await.is_err());
}
