//! Bad input gets a clear answer (HTTP 400/413, a Bayeux error reply, or a
//! WebSocket close code) and never disturbs other clients (DESIGN.md §1.7).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::SinkExt;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::{
    msg_connect, msg_connect_ws, msg_publish, msg_subscribe, msg_unsubscribe, within, Http,
    TestServer, Ws, MAX_WAIT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: usize = 4096;

async fn server() -> TestServer {
    TestServer::with_defaults(&format!("timeout_secs = 1\nmax_message_bytes = {LIMIT}")).await
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A publish envelope whose JSON text is exactly `len` bytes long.
fn publish_of_len(len: usize) -> String {
    let empty = msg_publish("/big", json!("")).to_string();
    let pad = "x".repeat(len - empty.len());
    let text = msg_publish("/big", json!(pad)).to_string();
    assert_eq!(text.len(), len);
    text
}

fn assert_status(resp: &support::Resp, status: StatusCode, body: &str) {
    assert_eq!(resp.status, status, "body: {:?}", resp.text());
    assert_eq!(resp.text(), body);
}

#[tokio::test(start_paused = true)]
async fn invalid_json_and_primitives_are_bad_requests_on_every_transport() {
    let s = server().await;
    let c = s.client();
    for body in ["{", "[ }", "nul", "1", "\"x\"", "true", "", "\u{0}"] {
        let resp = c.post(Some("application/json"), body).await;
        assert_status(&resp, StatusCode::BAD_REQUEST, "Bad request");
        let form = c
            .post(Some("text/plain"), format!("message={}", urlencode(body)))
            .await;
        assert_status(&form, StatusCode::BAD_REQUEST, "Bad request");
        let jsonp = c
            .get_query(&format!("message={}", urlencode(body)), &[])
            .await;
        assert_status(&jsonp, StatusCode::BAD_REQUEST, "Bad request");
    }
    // Nesting deeper than the parser allows is refused, not a crash.
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    assert_status(
        &c.post(Some("application/json"), deep.clone()).await,
        StatusCode::BAD_REQUEST,
        "Bad request",
    );
    let mut ws = c.websocket().await;
    ws.send_text(&deep).await;
    ws.sync().await;
    // A form without a message, and a body that is not UTF-8.
    assert_status(
        &c.post(Some("text/plain"), "jsonp=cb").await,
        StatusCode::BAD_REQUEST,
        "Bad request",
    );
    assert_status(
        &c.post(Some("application/json"), vec![0xffu8, 0xfe]).await,
        StatusCode::BAD_REQUEST,
        "Bad request",
    );
}

#[tokio::test(start_paused = true)]
async fn oversized_post_body_is_413() {
    let s = server().await;
    let c = s.client();
    let at_limit = c
        .post(Some("application/json"), publish_of_len(LIMIT))
        .await;
    assert_eq!(at_limit.status, StatusCode::OK);
    assert_eq!(at_limit.json()[0]["successful"], true);

    let over = c
        .post(Some("application/json"), publish_of_len(LIMIT + 1))
        .await;
    assert_status(&over, StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    let huge = c
        .post(Some("application/json"), publish_of_len(LIMIT * 64))
        .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    let form = c
        .post(
            None,
            format!("message={}", urlencode(&publish_of_len(LIMIT * 2))),
        )
        .await;
    assert_eq!(form.status, StatusCode::PAYLOAD_TOO_LARGE);
    let jsonp = c
        .get_query(
            &format!("message={}", urlencode(&publish_of_len(LIMIT * 2))),
            &[],
        )
        .await;
    assert_eq!(jsonp.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The server is fine afterwards.
    c.handshake().await;
}

#[tokio::test(start_paused = true)]
async fn oversized_websocket_message_closes_with_1009() {
    let s = server().await;
    let c = s.client();
    let mut ws = c.websocket().await;
    ws.send_text(&publish_of_len(LIMIT)).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.send_text(&publish_of_len(LIMIT + 1)).await;
    assert_eq!(ws.close_code().await, Some(CloseCode::Size));
    // Other sockets are unaffected.
    let mut other = c.websocket().await;
    other.handshake().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_utf8_closes_with_1007() {
    let s = server().await;
    let c = s.client();
    let mut ws = c.websocket().await;
    ws.sync().await;
    ws.send_invalid_utf8().await;
    assert_eq!(ws.close_code().await, Some(CloseCode::Invalid));
    let mut other = c.websocket().await;
    other.handshake().await;
}

#[tokio::test(start_paused = true)]
async fn non_json_websocket_frames_are_ignored() {
    let s = server().await;
    let mut ws = s.client().websocket().await;
    for garbage in ["not json", "42", "{", "\"str\"", "false", "]["] {
        ws.send_text(garbage).await;
    }
    ws.inner
        .send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .expect("send");
    ws.inner
        .send(Message::binary(b"also not json".to_vec()))
        .await
        .expect("send");
    ws.sync().await;
    // Still a working Bayeux socket.
    let id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&id, json!("/still"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn invalid_channel_names_get_405() {
    let s = server().await;
    let c = s.client();
    let id = c.handshake().await;
    for ch in [
        json!("no-slash"),
        json!("/a//b"),
        json!("/a/b/"),
        json!("/sp ace"),
        json!("/ünï"),
        json!("/a/**/b"),
        json!(17),
        json!(true),
    ] {
        let shown = match &ch {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let reply = c.subscribe(&id, ch.clone()).await;
        assert_eq!(
            reply["error"],
            format!("405:{shown}:Invalid channel"),
            "subscribe {ch}"
        );
        let reply = c.one(json!({"channel": ch, "data": 1})).await;
        assert_eq!(reply["successful"], false, "publish {ch}");
        if ch.is_string() {
            assert_eq!(reply["error"], format!("405:{shown}:Invalid channel"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_client_ids_get_401() {
    let s = server().await;
    let c = s.client();
    for id in [
        "nope",
        "__proto__",
        "constructor",
        "0000000000000000000000000000000",
    ] {
        let expected = format!("401:{id}:Unknown client");
        for message in [
            msg_connect(id),
            msg_subscribe(id, json!("/a")),
            msg_unsubscribe(id, json!("/a")),
            json!({"channel": "/meta/disconnect", "clientId": id}),
        ] {
            let reply = c.one(message.clone()).await;
            assert_eq!(reply["successful"], false, "{message}");
            assert_eq!(reply["error"], expected, "{message}");
        }
    }
    // A clientId that is not a string is unknown as well.
    let reply = c
        .one(json!({"channel": "/meta/connect", "clientId": 12, "connectionType": "long-polling"}))
        .await;
    assert_eq!(reply["error"], "401:12:Unknown client");
}

#[tokio::test(start_paused = true)]
async fn invalid_jsonp_callbacks_get_400() {
    let s = server().await;
    let c = s.client();
    let message = urlencode(&msg_publish("/foo", json!(1)).to_string());
    for callback in [
        "alert(1)",
        "42",
        "a b",
        "a..b",
        "a.",
        "x;alert(1)",
        "</script>",
        "ünï",
    ] {
        let resp = c
            .get_query(
                &format!("message={message}&jsonp={}", urlencode(callback)),
                &[],
            )
            .await;
        assert_status(&resp, StatusCode::BAD_REQUEST, "Bad request");
        // A POST form with an invalid jsonp parameter is rejected too.
        let resp = c
            .post(
                None,
                format!("message={message}&jsonp={}", urlencode(callback)),
            )
            .await;
        assert_status(&resp, StatusCode::BAD_REQUEST, "Bad request");
    }
}

#[tokio::test(start_paused = true)]
async fn non_http_bytes_on_the_socket_are_refused() {
    let s = server().await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        &b"\x16\x03\x01\x00\x05hello"[..],
        &b"GET / HTTP/9.9\r\n\r\n"[..],
    ] {
        let mut tcp = TcpStream::connect(s.http).await.expect("connect");
        tcp.write_all(garbage).await.expect("write");
        let mut answer = Vec::new();
        within(MAX_WAIT, "the server to answer or close", async {
            let _ = tcp.read_to_end(&mut answer).await;
        })
        .await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
            "{text}"
        );
    }
    s.client().handshake().await;
}

// === garbage interleaved with live traffic ===

const N: usize = 40;

/// Collects events from a long-polling subscriber until `want` have arrived.
async fn collect_long_poll(c: Http, id: String, want: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < want {
        let replies = c.connect(&id, None).await;
        assert_eq!(replies[0]["successful"], true, "{replies:?}");
        got.extend(support::events(&replies));
    }
    got
}

/// Collects events from a bound WebSocket subscriber until `want` have
/// arrived, re-sending the connect whenever its reply comes back.
async fn collect_websocket(mut ws: Ws, id: String, want: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < want {
        for message in ws.recv().await {
            if message.get("successful").is_some() {
                assert_eq!(message["channel"], "/meta/connect", "{message}");
                assert_eq!(message["successful"], true, "{message}");
                ws.send_json(&msg_connect_ws(&id)).await;
            } else {
                got.push(message);
            }
        }
    }
    got
}

/// Splits events by channel, keeping their order.
fn by_channel(events: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in events {
        map.entry(e["channel"].as_str().expect("channel").to_owned())
            .or_default()
            .push(e["data"].clone());
    }
    map
}

async fn http_garbage(c: Http, rounds: usize) {
    let message = urlencode(&msg_publish("/live/http", json!("forged")).to_string());
    for round in 0..rounds {
        let resp = match round % 8 {
            0 => c.post(Some("application/json"), "[{\"channel\":").await,
            1 => c.post(Some("application/json"), "42").await,
            2 => c.post(Some("text/plain"), "{\"raw\":true}").await,
            3 => {
                c.get_query(&format!("message={message}&jsonp=alert(1)"), &[])
                    .await
            }
            4 => {
                let resp = c
                    .post(Some("application/json"), publish_of_len(LIMIT + 10))
                    .await;
                assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
                continue;
            }
            5 => {
                let reply = c.one(msg_connect("nope")).await;
                assert_eq!(reply["error"], "401:nope:Unknown client");
                continue;
            }
            6 => {
                let reply = c
                    .one(json!({"channel": "/live/*", "data": "wildcard publish"}))
                    .await;
                assert_eq!(reply["error"], "405:/live/*:Invalid channel");
                continue;
            }
            _ => {
                let resp = c.send(Method::PUT, &c.prefix, &[], "{}").await;
                assert_eq!(resp.status, StatusCode::BAD_REQUEST);
                continue;
            }
        };
        assert_status(&resp, StatusCode::BAD_REQUEST, "Bad request");
    }
}

async fn websocket_garbage(c: Http, rounds: usize) {
    for round in 0..rounds {
        let mut ws = c.websocket().await;
        ws.send_text("not json").await;
        ws.send_text("1234").await;
        ws.send_json(&json!({"channel": "/meta/bogus", "data": 1}))
            .await;
        let reply = ws.recv().await;
        assert_eq!(reply[0]["error"], "403:/meta/bogus:Forbidden channel");
        ws.send_json(&json!([{"channel": "/live/ws", "clientId": "forged"}]))
            .await;
        let reply = ws.recv().await;
        assert_eq!(reply[0]["error"], "402:data:Missing required parameter");
        if round % 2 == 0 {
            ws.send_invalid_utf8().await;
            assert_eq!(ws.close_code().await, Some(CloseCode::Invalid));
        } else {
            ws.send_text(&publish_of_len(LIMIT * 2)).await;
            assert_eq!(ws.close_code().await, Some(CloseCode::Size));
        }
    }
}

async fn tcp_garbage(addr: std::net::SocketAddr, rounds: usize) {
    for _ in 0..rounds {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            .await
            .expect("write");
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_interleaved_with_live_traffic_loses_nothing() {
    let s = server().await;
    let c = s.client();

    // Two subscribers of every live channel: one long-polling, one WebSocket.
    let lp_id = c.subscriber("/live/**").await;
    let mut sub_ws = c.websocket().await;
    let ws_id = sub_ws.handshake().await;
    sub_ws
        .send_json(&msg_subscribe(&ws_id, json!("/live/**")))
        .await;
    assert_eq!(sub_ws.recv().await[0]["successful"], true);
    sub_ws.bind(&ws_id).await;

    let long_poll = tokio::spawn(collect_long_poll(c.clone(), lp_id, 2 * N));
    let websocket = tokio::spawn(collect_websocket(sub_ws, ws_id, 2 * N));

    // Garbage from several clients at once, over HTTP, WebSocket and raw TCP.
    let noise = vec![
        tokio::spawn(http_garbage(c.clone(), 48)),
        tokio::spawn(http_garbage(c.clone(), 48)),
        tokio::spawn(websocket_garbage(c.clone(), 8)),
        tokio::spawn(websocket_garbage(c.clone(), 8)),
        tokio::spawn(tcp_garbage(s.http, 16)),
    ];

    // A WebSocket publisher that mixes garbage into its own stream of publishes.
    let ws_publisher = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut ws = c.websocket().await;
            let id = ws.handshake().await;
            for n in 0..N {
                ws.send_json(&json!({"channel": "/live/ws", "clientId": id, "data": n, "id": format!("w{n}")}))
                    .await;
                ws.send_text(if n % 2 == 0 { "garbage" } else { "7" }).await;
            }
            let mut acks = 0;
            while acks < N {
                for reply in ws.recv().await {
                    assert_eq!(reply["successful"], true, "{reply}");
                    acks += 1;
                }
            }
        })
    };
    // An HTTP publisher, one request after the other.
    let http_publisher = {
        let c = c.clone();
        tokio::spawn(async move {
            for n in 0..N {
                c.publish_ok("/live/http", json!(n)).await;
            }
        })
    };

    within(Duration::from_secs(30), "the publishers", async {
        ws_publisher.await.expect("websocket publisher");
        http_publisher.await.expect("http publisher");
    })
    .await;
    within(Duration::from_secs(30), "the garbage senders", async {
        for task in noise {
            task.await.expect("garbage sender");
        }
    })
    .await;

    let expected: Vec<Value> = (0..N).map(|n| json!(n)).collect();
    for (name, task) in [("long-polling", long_poll), ("websocket", websocket)] {
        let events = within(Duration::from_secs(30), name, task)
            .await
            .expect("subscriber");
        assert_eq!(events.len(), 2 * N, "{name}: {events:?}");
        let channels = by_channel(&events);
        assert_eq!(
            channels.keys().collect::<Vec<_>>(),
            ["/live/http", "/live/ws"],
            "{name}"
        );
        assert_eq!(channels["/live/http"], expected, "{name}: /live/http");
        assert_eq!(channels["/live/ws"], expected, "{name}: /live/ws");
    }
    assert_eq!(s.engine("/bayeux").stats().dropped, 0);
}

// === silent and slow peers ===

/// Writes `send`, then reads until the server closes; returns how long that took.
async fn time_to_close<S>(mut stream: S, send: &[u8]) -> Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(send).await.expect("write");
    let start = tokio::time::Instant::now();
    let mut sink = Vec::new();
    within(MAX_WAIT, "the server to close the connection", async {
        let _ = stream.read_to_end(&mut sink).await;
    })
    .await;
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn silent_and_slow_peers_are_disconnected() {
    let s = TestServer::with_server(
        "header_read_timeout_secs = 0.3\ntls_handshake_timeout_secs = 0.3",
        "timeout_secs = 1",
        support::ROUTES,
    )
    .await;
    let plain = || async { TcpStream::connect(s.http).await.expect("connect") };
    let tls = s.tls_client_at("/bayeux");
    let cases: Vec<(&str, Duration)> = vec![
        ("plain, silent", time_to_close(plain().await, b"").await),
        (
            "plain, half a request",
            time_to_close(plain().await, b"POST /bayeux HTTP/1.1\r\nHost: x\r\n").await,
        ),
        (
            "TLS listener, no handshake",
            time_to_close(TcpStream::connect(s.https).await.expect("connect"), b"").await,
        ),
        (
            "TLS, silent after the handshake",
            time_to_close(tls.stream().await, b"").await,
        ),
    ];
    for (what, took) in cases {
        support::assert_between(took, 0.0, 2.0, what);
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_does_not_keep_the_only_connection_slot() {
    let s = TestServer::with_server(
        "header_read_timeout_secs = 0.3\nmax_connections = 1",
        "timeout_secs = 1",
        support::ROUTES,
    )
    .await;
    let silent = TcpStream::connect(s.http).await.expect("connect");
    time_to_close(silent, b"").await;
    // The slot is free again (its release may trail the close by a moment).
    support::eventually("a request to be served", || async {
        let Ok(mut tcp) = TcpStream::connect(s.http).await else {
            return false;
        };
        if tcp
            .write_all(b"OPTIONS /bayeux HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        answer.starts_with(b"HTTP/1.1 200")
    })
    .await;
}
