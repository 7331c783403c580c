//! One request, or one peer, must not take the server down or lock others out.
//!
//! Each test answers one attack that once exhausted memory, descriptors or the
//! session table. What must be measured from outside (RSS, log lines, the
//! open-files limit) runs against the real binary as a child process; the rest
//! runs in-process. No test asserts on elapsed time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::process::Process;
use support::{
    eventually, msg_connect_ws, msg_handshake, msg_publish, msg_subscribe, within, Http,
    TestServer, MAX_WAIT, ROUTES,
};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const MB: u64 = 1 << 20;
const ROUTE: &str = "[[route]]\nprefix = \"/bayeux\"\n";

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn assert_invalid_channel(reply: &Value) {
    let error = reply["error"].as_str().unwrap_or_default();
    assert_eq!(
        reply["successful"],
        false,
        "{}",
        &error[..error.len().min(80)]
    );
    assert!(
        error.starts_with("405:/") && error.ends_with(":Invalid channel"),
        "{}",
        &error[..error.len().min(80)]
    );
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / MB as f64
}

// === 1. channel names ===

#[tokio::test]
async fn long_channel_names_are_refused_in_bounded_memory_on_every_transport() {
    let server = Process::start(&[], "", "", ROUTE).await;
    let client = server.client_at("/bayeux");
    // Subscribers on every kind of pattern a long name could reach.
    let sub = client.handshake().await;
    for pattern in ["/**", "/a/**", "/a/*", "/a/a/a/a/**"] {
        client.subscribe_ok(&sub, pattern).await;
    }
    let before = server.rss();
    let ((), peak) = server
        .peak_rss_during(async {
            // 30 KB, 200 KB and 900 KB names (the last just under the body limit).
            for segments in [15_000usize, 100_000, 450_000] {
                let channel = "/a".repeat(segments);
                assert_invalid_channel(&client.one(msg_publish(&channel, json!(1))).await);
            }
            let mut ws = client.websocket().await;
            ws.send_json(&json!([msg_publish(&"/a".repeat(100_000), json!(1))]))
                .await;
            assert_invalid_channel(&ws.recv().await[0]);
            let message = msg_publish(&"/a".repeat(10_000), json!(1)).to_string();
            let jsonp = client
                .get_query(&format!("message={}&jsonp=cb", urlencode(&message)), &[])
                .await;
            assert_eq!(jsonp.status, StatusCode::OK);
            let body = jsonp.text();
            assert!(body.starts_with("/**/cb([") && body.contains(":Invalid channel"));
        })
        .await;
    let growth = peak.saturating_sub(before);
    eprintln!("RSS growth: {:.1} MB", mb(growth));
    assert!(
        growth < 64 * MB,
        "RSS grew by {:.1} MB while refusing long channel names",
        mb(growth)
    );
    // The bound is documented and its edge is accepted: 16 segments in 256 bytes.
    let edge = format!("/{}", ["s"; 16].join("/"));
    client.publish_ok(&edge, json!("edge")).await;
    assert_invalid_channel(
        &client
            .one(msg_publish(&format!("{edge}/a/a"), json!(1)))
            .await,
    );
}

// === 2. batches and peers that do not read ===

#[tokio::test]
async fn an_oversized_batch_gets_one_refusal_on_every_transport() {
    let server = Process::start(&[], "", "", ROUTE).await;
    let client = server.client_at("/bayeux");
    // 1 MB of `[1,1,…]`: once half a million error replies.
    let mut batch = String::with_capacity(1 << 20);
    batch.push('[');
    while batch.len() < (1 << 20) - 10 {
        batch.push_str("1,");
    }
    batch.push_str("1]");
    let before = server.rss();
    let ((), peak) = server
        .peak_rss_during(async {
            for _ in 0..4 {
                let resp = client.post(Some("application/json"), batch.clone()).await;
                assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
                assert_eq!(resp.text(), "Too many messages");
            }
            let small = format!("[{}1]", "1,".repeat(1000));
            let form = client
                .post(
                    Some("application/x-www-form-urlencoded"),
                    format!("message={}", urlencode(&small)),
                )
                .await;
            assert_eq!(form.status, StatusCode::PAYLOAD_TOO_LARGE);
            let jsonp = client
                .get_query(&format!("message={}&jsonp=cb", urlencode(&small)), &[])
                .await;
            assert_eq!(jsonp.status, StatusCode::PAYLOAD_TOO_LARGE);
            for _ in 0..4 {
                let mut ws = client.websocket().await;
                ws.send_text(&batch).await;
                assert_eq!(ws.close_code().await, Some(CloseCode::Size));
            }
        })
        .await;
    let growth = peak.saturating_sub(before);
    eprintln!("RSS growth: {:.1} MB", mb(growth));
    assert!(
        growth < 64 * MB,
        "RSS grew by {:.1} MB while refusing oversized batches",
        mb(growth)
    );
    // The bound itself is accepted: 1000 messages get 1000 replies.
    let at_limit = format!("[{}1]", "1,".repeat(999));
    let resp = client.post(Some("application/json"), at_limit).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json().as_array().map(Vec::len), Some(1000));
}

/// A raw HTTP/1.1 request on its own TCP connection that is then never read.
async fn unread_request(addr: std::net::SocketAddr, request: String) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_disconnected_and_its_backlog_freed() {
    let s = TestServer::with_server(
        "write_timeout_secs = 0.5",
        // Sessions outlive a slow run: nothing here may expire on its own.
        "timeout_secs = 300\nfirst_connect_timeout_secs = 600\nmax_queue_messages = 100000\nmax_queue_bytes = 1073741824",
        ROUTES,
    )
    .await;
    let c = s.client();
    let idle_tasks = s.server.shutdown_handle().tasks();

    // A WebSocket subscriber that stops reading once bound.
    let mut ws = c.websocket().await;
    let id = ws.handshake().await;
    ws.send_json(&json!([
        msg_connect_ws(&id),
        msg_subscribe(&id, json!("/big"))
    ]))
    .await;
    ws.sync().await;
    // A long-polling client with a big backlog whose response is never read.
    let lp = c.subscriber("/big").await;

    let chunk = "x".repeat(256 << 10);
    for _ in 0..64 {
        c.publish_ok("/big", json!(chunk)).await;
    }
    let body =
        json!([{"channel": "/meta/connect", "clientId": lp, "connectionType": "long-polling"}])
            .to_string();
    let request = format!(
        "POST /bayeux HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stuck_poll = unread_request(s.http, request).await;
    // Both connections end although neither peer closed them.
    s.wait_open("/bayeux", bayeux_edge::engine::Transport::WebSocket, 0)
        .await;
    eventually("the unread connections to be closed", || async {
        s.server.shutdown_handle().tasks() <= idle_tasks
    })
    .await;
    assert!(bayeux_edge::deadline::write_timeouts() >= 2);
    // What reached the long-poll's socket before the server gave up is a
    // fraction of the 16 MB response.
    let mut received = Vec::new();
    let _ = within(
        MAX_WAIT,
        "the closed connection's end",
        tokio::io::AsyncReadExt::read_to_end(&mut stuck_poll, &mut received),
    )
    .await;
    assert!(
        received.len() < 16 << 20,
        "the whole response arrived: {} bytes",
        received.len()
    );
    drop(ws);
}

// === 3. subscriptions ===

#[tokio::test]
async fn subscriptions_are_bounded_per_client_and_per_route() {
    let s = TestServer::with_defaults(
        "timeout_secs = 300\nfirst_connect_timeout_secs = 600\nmax_subscriptions = 40\nmax_total_subscriptions = 50",
    )
    .await;
    let c = s.client();
    let a = c.handshake().await;
    let b = c.handshake().await;
    let channels = |tag: &str, n: usize| -> Value {
        json!((0..n).map(|i| format!("/{tag}/{i}")).collect::<Vec<_>>())
    };
    let reply = c.subscribe(&a, channels("a", 41)).await;
    assert_eq!(reply["error"], "403:/a/40:Too many subscriptions");
    let reply = c.subscribe(&b, channels("b", 20)).await;
    assert_eq!(reply["error"], "503:/b/10:Server at capacity");
    let stats = s.engine("/bayeux").stats();
    assert_eq!(stats.subscriptions, 50);
    assert_eq!(stats.subscriptions_refused, 2);
    // Room comes back when a client leaves.
    c.disconnect(&a).await;
    c.subscribe_ok(&b, "/b/10").await;
    let metrics = Http::plain(s.admin, "").get("/metrics", &[]).await.text();
    assert!(metrics.contains("bayeux_edge_subscriptions_refused_total{route=\"/bayeux\"} 2"));
}

#[tokio::test]
async fn one_address_cannot_fill_the_subscription_index() {
    // The handshake rate is lifted so the per-address session bound is what stops it.
    let server = Process::start(
        &[],
        "",
        "handshake_rate_per_ip = 100000\nhandshake_burst_per_ip = 100000\ntimeout_secs = 1800\nfirst_connect_timeout_secs = 3600",
        ROUTE,
    )
    .await;
    let client = server.client_at("/bayeux");
    let before = server.rss();
    let (accepted, peak) = server
        .peak_rss_during(async {
            let mut accepted = 0usize;
            // Aiming at 1,010,000 subscriptions, 1,000 per request.
            for round in 0..1010 {
                let reply = client.one(msg_handshake()).await;
                let Some(id) = reply["clientId"].as_str() else {
                    assert_eq!(reply["error"], "429::Too many sessions");
                    continue;
                };
                let list: Vec<String> = (0..1000).map(|i| format!("/s/{round}/{i}")).collect();
                let reply = client.subscribe(id, json!(list)).await;
                assert_eq!(
                    reply["error"],
                    format!("403:/s/{round}/100:Too many subscriptions")
                );
                accepted += 100;
            }
            accepted
        })
        .await;
    let stats_line = reqwest_metrics(&server).await;
    assert_eq!(accepted, 100_000, "1,000 sessions of 100 subscriptions");
    assert!(stats_line.contains("bayeux_edge_subscriptions{route=\"/bayeux\"} 100000"));
    let growth = peak.saturating_sub(before);
    eprintln!("RSS growth: {:.1} MB", mb(growth));
    assert!(
        growth < 160 * MB,
        "RSS grew by {:.1} MB for 100,000 subscriptions",
        mb(growth)
    );
}

async fn reqwest_metrics(server: &Process) -> String {
    Http::plain(server.admin, "")
        .get("/metrics", &[])
        .await
        .text()
}

// === 4. handshakes ===

const PROXY: &str = "trusted_proxies = [\"127.0.0.1\"]";

async fn handshake_from(c: &Http, ip: &str, body: Value) -> Vec<Value> {
    let resp = c
        .send(
            Method::POST,
            "/bayeux",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", ip),
            ],
            Bytes::from(body.to_string()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.json().as_array().cloned().unwrap()
}

#[tokio::test]
async fn one_address_cannot_lock_others_out_of_handshaking() {
    let s = TestServer::with_server(
        PROXY,
        "timeout_secs = 5\nhandshake_rate_per_ip = 5\nhandshake_burst_per_ip = 10",
        ROUTES,
    )
    .await;
    let c = s.client();
    // The old attack: 10,000 handshakes in one request.
    let flood = json!(vec![msg_handshake(); 10_000]);
    let resp = c.post_json(&flood).await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Within the batch bound, one handshake per request.
    let replies = handshake_from(&c, "198.51.100.1", json!(vec![msg_handshake(); 1000])).await;
    assert_eq!(replies.len(), 1000);
    assert_eq!(replies[0]["successful"], true);
    assert!(replies[1..]
        .iter()
        .all(|r| r["error"] == "429::Too many handshakes"));
    // One by one, the attacker's address runs out of its burst.
    let mut refused = None;
    for _ in 0..20 {
        let r = handshake_from(&c, "198.51.100.1", msg_handshake()).await;
        if r[0]["successful"] == false {
            refused = Some(r[0].clone());
            break;
        }
    }
    let refused = refused.expect("the burst of 10 runs out within 20 handshakes");
    assert_eq!(refused["error"], "429::Too many handshakes");
    assert_eq!(refused["advice"]["reconnect"], "handshake");
    assert!(refused["advice"]["interval"].as_u64().unwrap() >= 1000);
    // Anyone else is served.
    let victim = handshake_from(&c, "203.0.113.7", msg_handshake()).await;
    assert_eq!(victim[0]["successful"], true);
    let stats = s.engine("/bayeux").stats();
    assert!(stats.handshakes_refused >= 1000);
}

#[tokio::test]
async fn sessions_per_address_are_bounded_and_unconnected_sessions_expire_early() {
    let s = TestServer::with_server(
        PROXY,
        "timeout_secs = 10\nmax_sessions_per_ip = 5\nfirst_connect_timeout_secs = 1",
        ROUTES,
    )
    .await;
    let c = s.client();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = handshake_from(&c, "198.51.100.2", msg_handshake()).await;
        ids.push(r[0]["clientId"].as_str().unwrap().to_owned());
    }
    let r = handshake_from(&c, "198.51.100.2", msg_handshake()).await;
    assert_eq!(r[0]["error"], "429::Too many sessions");
    let other = handshake_from(&c, "198.51.100.3", msg_handshake()).await;
    assert_eq!(other[0]["successful"], true);
    // One of them connects; the other four never do.
    let connected = ids[0].clone();
    let reply = c.connect(&connected, Some(0)).await;
    assert_eq!(reply[0]["successful"], true);
    let engine = s.engine("/bayeux");
    eventually("sessions that never connected to expire", || async {
        for id in &ids[1..] {
            if engine.session(id).await.is_some() {
                return false;
            }
        }
        true
    })
    .await;
    // Connected sessions live 2 × timeout: 20 s, far beyond the wait above.
    assert!(engine.session(&connected).await.is_some());
    // Their slots are free again.
    let r = handshake_from(&c, "198.51.100.2", msg_handshake()).await;
    assert_eq!(r[0]["successful"], true);
}

// === 5. WebSockets: connection slots and time bounds ===

async fn try_websocket(c: &Http) -> bool {
    let tcp = tokio::net::TcpStream::connect(c.addr()).await.unwrap();
    let url = format!("ws://localhost:{}/bayeux", c.addr().port());
    matches!(
        within(MAX_WAIT, "an upgrade attempt", tokio_tungstenite::client_async(url, tcp)).await,
        Ok((_, resp)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS
    )
}

#[tokio::test]
async fn websockets_keep_their_connection_slot() {
    let s = TestServer::with_server("max_connections = 5", "timeout_secs = 5", ROUTES).await;
    let c = s.client();
    let mut open = Vec::new();
    for _ in 0..5 {
        let mut ws = c.websocket().await;
        ws.handshake().await;
        open.push(ws);
    }
    s.wait_open("/bayeux", bayeux_edge::engine::Transport::WebSocket, 5)
        .await;
    assert!(!try_websocket(&c).await, "a sixth socket gets no slot");
    drop(open.pop());
    eventually("a freed slot to admit a new socket", || async {
        try_websocket(&c).await
    })
    .await;
}

#[tokio::test]
async fn a_silent_websocket_is_closed() {
    // Sessions live 1 s here, so a socket that says nothing for that long goes.
    let s = TestServer::with_defaults("timeout_secs = 0.5").await;
    let mut ws = s.client().websocket().await;
    assert_eq!(ws.close_code().await, Some(CloseCode::Policy));
}

#[tokio::test]
async fn an_unfinished_message_is_closed_long_before_the_idle_bound() {
    // Idle bound: 2 × 30 s; a message must arrive whole within 0.5 s.
    let s = TestServer::with_server(
        "header_read_timeout_secs = 0.5",
        "timeout_secs = 30",
        ROUTES,
    )
    .await;
    let mut ws = s.client().websocket().await;
    let first = Frame::message(
        Bytes::from_static(b"[{\"channel\":"),
        OpCode::Data(Data::Text),
        false,
    );
    ws.inner.send(Message::Frame(first)).await.unwrap();
    assert_eq!(ws.close_code().await, Some(CloseCode::Policy));
}

/// Unfinished input is bounded across connections, not only per connection:
/// while one WebSocket holds part of a message, a POST body or another
/// socket's message that would pass `max_incoming_bytes` is refused (503,
/// close 1013), and once the message completes the room is given back.
#[tokio::test]
async fn unfinished_input_is_bounded_across_connections() {
    let s =
        TestServer::with_server("max_incoming_bytes = 65536", "timeout_secs = 30", ROUTES).await;
    let c = s.client();
    let padded = |n: usize| {
        format!(
            "[{{\"channel\":\"/meta/handshake\",\"version\":\"1.0\",\"supportedConnectionTypes\":[\"websocket\"],\"ext\":{{\"pad\":\"{}\"}}}}]",
            "x".repeat(n)
        )
    };
    let fragment = |text: &str, fin: bool, first: bool| {
        let opcode = if first {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        Message::Frame(Frame::message(Bytes::from(text.to_owned()), opcode, fin))
    };
    // A holds the first 40 KB of a message.
    let mut a = c.websocket().await;
    let text = padded(40_000);
    let (head, tail) = text.split_at(text.len() - 10);
    a.inner.send(fragment(head, false, true)).await.unwrap();

    // A 30 KB body does not fit beside it.
    let body = Bytes::from(padded(30_000));
    eventually("a POST to be refused while A holds its part", || async {
        let r = c.post(Some("application/json"), body.clone()).await;
        r.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // Nor does another socket's 30 KB part: that socket is closed with 1013.
    let mut b = c.websocket().await;
    let other = padded(30_000);
    b.inner
        .send(fragment(&other[..other.len() - 10], false, true))
        .await
        .unwrap();
    assert_eq!(b.close_code().await, Some(CloseCode::Again));

    // A finishes its message and is answered; the room is back.
    a.inner.send(fragment(tail, true, false)).await.unwrap();
    let reply = a.recv().await;
    assert_eq!(reply[0]["successful"], json!(true), "{reply:?}");
    let r = c.post(Some("application/json"), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let metrics = Http::plain(s.admin, "").get("/metrics", &[]).await.text();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("bayeux_edge_incoming_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 2, "{metrics}");
}

// === 6. descriptors ===

#[tokio::test]
async fn at_the_open_files_limit_clients_are_refused_and_the_admin_listener_answers() {
    let server = Process::start(&["prlimit", "--nofile=256:256"], "", "", ROUTE).await;
    assert!(
        server.log().contains("max_connections=128"),
        "256 - 64 reserved - 64 admin: {}",
        server.log()
    );
    // Far more connections than descriptors, each sending nothing.
    let mut held = Vec::new();
    for _ in 0..400 {
        match tokio::net::TcpStream::connect(server.http).await {
            Ok(tcp) => held.push(tcp),
            Err(_) => break,
        }
    }
    assert_eq!(server.admin_status("/healthz").await, 200);
    assert_eq!(server.admin_status("/readyz").await, 200);
    held.truncate(10);
    let client = server.client_at("/bayeux");
    eventually("a client to be served again", || async {
        let ok = within(MAX_WAIT, "a handshake", client.post_json(&msg_handshake())).await;
        ok.status == StatusCode::OK
    })
    .await;
}

// === 7. memory goes back ===

#[tokio::test]
async fn memory_returns_to_the_system_after_a_burst() {
    let server = Process::start(
        &[],
        "",
        "timeout_secs = 1800\nfirst_connect_timeout_secs = 3600\nmax_queue_bytes = 8388608",
        ROUTE,
    )
    .await;
    let client = server.client_at("/bayeux");
    let baseline = server.rss();
    // 25 sessions, each with 8 MB of its own events queued.
    let mut ids = Vec::new();
    for i in 0..25 {
        let id = client.subscriber(&format!("/m/{i}")).await;
        ids.push(id);
    }
    let chunk = "y".repeat(1_000_000);
    for i in 0..25 {
        for _ in 0..7 {
            client.publish_ok(&format!("/m/{i}"), json!(chunk)).await;
        }
    }
    let loaded = server.rss();
    assert!(
        loaded > baseline + 150 * MB,
        "the burst should hold ~175 MB: {:.1} MB",
        mb(loaded - baseline)
    );
    for id in &ids {
        client.disconnect(id).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let now = server.rss();
        if now < baseline + 32 * MB {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "RSS still {:.1} MB above its baseline 90 s after the burst",
            mb(now - baseline)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// === 8. warnings ===

#[tokio::test]
async fn a_stuck_subscriber_is_reported_once_per_period_not_once_per_drop() {
    let server = Process::start(
        &[],
        "",
        "timeout_secs = 1800\nfirst_connect_timeout_secs = 3600\nmax_queue_messages = 10",
        ROUTE,
    )
    .await;
    let client = server.client_at("/bayeux");
    client.subscriber("/w").await;
    for round in 0..20 {
        let batch: Vec<Value> = (0..100)
            .map(|i| msg_publish("/w", json!(round * 100 + i)))
            .collect();
        let replies = client.bayeux(json!(batch)).await;
        assert!(replies.iter().all(|r| r["successful"] == true));
    }
    let metrics = reqwest_metrics(&server).await;
    assert!(
        metrics.contains("bayeux_edge_messages_dropped_total{route=\"/bayeux\"} 1990"),
        "{metrics}"
    );
    let warnings = server
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("dropped"))
        .count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} warnings for one stuck client:\n{}",
        server.log()
    );
}
