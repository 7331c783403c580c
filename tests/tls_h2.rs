//! The TLS listener: Bayeux over HTTP/1.1 and HTTP/2 (ALPN), and WebSocket
//! over TLS, with the generated development certificate as the only root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use bayeux_edge::engine::Transport;
use serde_json::json;
use support::{
    data_of, events, msg_connect, msg_handshake, msg_subscribe, within, TestServer, MAX_WAIT,
};

#[tokio::test]
async fn bayeux_over_tls_http1() {
    let s = TestServer::start().await;
    let c = s.tls_client_at("/bayeux");
    let id = c.subscriber("/secure").await;
    c.publish_ok("/secure", json!("over tls")).await;
    assert_eq!(data_of(&c.drain(&id).await), [json!("over tls")]);
    // JSONP and the bundle are served on the TLS listener as well.
    let resp = c.get("/bayeux/client.js", &[]).await;
    assert_eq!(resp.status, http::StatusCode::OK);
}

#[tokio::test]
async fn long_polling_over_http2() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let h2 = Arc::new(s.h2_client_at("/bayeux").await);
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));

    let hs = h2.bayeux(msg_handshake()).await;
    assert_eq!(hs[0]["successful"], true);
    let id = hs[0]["clientId"].as_str().expect("clientId").to_owned();
    let sub = h2.bayeux(msg_subscribe(&id, json!("/h2"))).await;
    assert_eq!(sub[0]["successful"], true);

    // A held connect and a publish multiplexed on the same connection.
    let held = {
        let (h2, id) = (h2.clone(), id.clone());
        tokio::spawn(async move { h2.bayeux(msg_connect(&id)).await })
    };
    s.wait_open("/bayeux", Transport::LongPolling, 1).await;
    let ack = h2
        .bayeux(json!({"channel": "/h2", "data": "multiplexed"}))
        .await;
    assert_eq!(ack[0]["successful"], true);
    let replies = within(MAX_WAIT, "the held HTTP/2 connect", held)
        .await
        .expect("task");
    assert_eq!(replies[0]["channel"], "/meta/connect");
    assert_eq!(replies[0]["successful"], true);
    assert_eq!(
        events(&replies),
        [json!({"channel": "/h2", "data": "multiplexed"})]
    );
}

#[tokio::test]
async fn reset_http2_stream_keeps_events_queued() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let h2 = Arc::new(s.h2_client_at("/bayeux").await);
    let hs = h2.bayeux(msg_handshake()).await;
    let id = hs[0]["clientId"].as_str().expect("clientId").to_owned();
    h2.bayeux(msg_subscribe(&id, json!("/h2"))).await;
    let held = {
        let (h2, id) = (h2.clone(), id.clone());
        tokio::spawn(async move { h2.bayeux(msg_connect(&id)).await })
    };
    s.wait_open("/bayeux", Transport::LongPolling, 1).await;
    // Dropping the response future resets the stream; the connection stays up.
    held.abort();
    assert!(held.await.is_err_and(|e| e.is_cancelled()));
    s.wait_open("/bayeux", Transport::LongPolling, 0).await;
    h2.bayeux(json!({"channel": "/h2", "data": "kept"})).await;
    let replies = h2
        .bayeux(json!({"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "advice": {"timeout": 0}}))
        .await;
    assert_eq!(data_of(&events(&replies)), [json!("kept")]);
}

#[tokio::test]
async fn websocket_over_tls() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let c = s.tls_client_at("/production/faye");
    let mut ws = c.websocket().await;
    let id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&id, json!("/wss"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.bind(&id).await;
    c.publish_ok("/wss", json!("secure push")).await;
    assert_eq!(
        ws.recv().await,
        [json!({"channel": "/wss", "data": "secure push"})]
    );
}
