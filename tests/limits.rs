//! Limits and policies that must bite: a test here fails if the limit were
//! ignored. The publish secret over the wire (header, `ext`, and the
//! `bayeux-edge publish` command), the per-client queue's byte bound and its
//! overflow counter, and a listener's connection bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::{data_of, events, eventually, msg_publish, within, Http, TestServer, MAX_WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET_ROUTE: &str = r#"
[[route]]
prefix = "/bayeux"
publish = "secret"
publish_secret_env = "BAYEUX_TEST_PUBLISH_SECRET"
"#;

async fn post_with_bearer(c: &Http, body: &Value, bearer: &str) -> Vec<Value> {
    let auth = format!("Bearer {bearer}");
    let resp = c
        .send(
            Method::POST,
            "/bayeux",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            Bytes::from(body.to_string()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    resp.json().as_array().cloned().unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_publish_secret_is_checked_on_the_wire_and_never_delivered() {
    let s = TestServer::with_env(
        "",
        "timeout_secs = 5",
        SECRET_ROUTE,
        &[("BAYEUX_TEST_PUBLISH_SECRET", "s3cret-value")],
    )
    .await;
    let c = s.client();
    let sub = c.subscriber("/user/1").await;

    let reply = c.one(msg_publish("/user/1", json!("no secret"))).await;
    assert_eq!(reply["error"], "403::Authentication required");
    let reply = post_with_bearer(&c, &msg_publish("/user/1", json!("wrong")), "nope").await;
    assert_eq!(reply[0]["error"], "403::Authentication required");

    let reply =
        post_with_bearer(&c, &msg_publish("/user/1", json!("bearer")), "s3cret-value").await;
    assert_eq!(reply[0]["successful"], true);
    let mut in_ext = msg_publish("/user/1", json!("ext"));
    in_ext["ext"] = json!({"secret": "s3cret-value", "trace": 7});
    assert_eq!(c.one(in_ext).await["successful"], true);

    let got = events(&c.drain(&sub).await);
    assert_eq!(data_of(&got), [json!("bearer"), json!("ext")]);
    assert_eq!(got[1]["ext"], json!({"trace": 7}), "the secret is stripped");
    assert!(!got.iter().any(|e| e.to_string().contains("s3cret")));
}

#[tokio::test]
async fn the_publish_command_presents_the_secret_from_its_environment() {
    let s = TestServer::with_env(
        "",
        "timeout_secs = 5",
        SECRET_ROUTE,
        &[("BAYEUX_TEST_PUBLISH_SECRET", "s3cret-value")],
    )
    .await;
    let c = s.client();
    let sub = c.subscriber("/user/2").await;
    let url = format!("http://{}/bayeux", s.http);
    let publish = |env: Option<&str>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bayeux-edge"));
        cmd.args(["publish", &url, "/user/2", r#"{"text":"hi"}"#])
            .args(["--secret-env", "SECRET_FOR_THIS_COMMAND"])
            .env_remove("SECRET_FOR_THIS_COMMAND");
        if let Some(v) = env {
            cmd.env("SECRET_FOR_THIS_COMMAND", v);
        }
        cmd.output()
    };
    let ok = within(
        MAX_WAIT,
        "bayeux-edge publish",
        publish(Some("s3cret-value")),
    )
    .await
    .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = within(MAX_WAIT, "bayeux-edge publish", publish(Some("wrong")))
        .await
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    let unset = within(MAX_WAIT, "bayeux-edge publish", publish(None))
        .await
        .unwrap();
    assert_eq!(
        unset.status.code(),
        Some(64),
        "a missing variable is a usage error"
    );
    let got = events(&c.drain(&sub).await);
    assert_eq!(data_of(&got), [json!({"text": "hi"})]);
}

#[tokio::test(start_paused = true)]
async fn the_queue_byte_bound_drops_the_oldest_and_counts_it() {
    let s = TestServer::with_defaults("timeout_secs = 5\nmax_queue_bytes = 2048").await;
    let c = s.client();
    let sub = c.subscriber("/q").await;
    let before = s.engine("/bayeux").stats();
    // Four events of ~700 bytes: only the newest two fit in 2048 bytes.
    for i in 0..4 {
        c.publish_ok("/q", json!({"n": i, "pad": "x".repeat(680)}))
            .await;
    }
    let got = events(&c.drain(&sub).await);
    let numbers: Vec<Value> = got.iter().map(|e| e["data"]["n"].clone()).collect();
    assert_eq!(numbers, [json!(2), json!(3)]);
    let after = s.engine("/bayeux").stats();
    assert_eq!(after.dropped - before.dropped, 2);
    assert_eq!(after.overflows - before.overflows, 2);
    let metrics = Http::plain(s.admin, "").get("/metrics", &[]).await.text();
    assert!(
        metrics.contains("bayeux_edge_queue_overflows_total{route=\"/bayeux\"} 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("bayeux_edge_messages_dropped_total{route=\"/bayeux\"} 2\n"));
}

#[tokio::test]
async fn a_listener_refuses_a_second_connection_while_its_one_slot_is_held() {
    let s =
        TestServer::with_server("max_connections = 1", "timeout_secs = 5", support::ROUTES).await;
    // The slot is held by a connection that sent nothing yet.
    let held = tokio::net::TcpStream::connect(s.http).await.unwrap();
    eventually("the held connection to be accepted", || async {
        s.server.shutdown_handle().tasks() == 1
    })
    .await;
    // A second connection is accepted by the kernel and closed by the server
    // without an answer.
    let mut second = tokio::net::TcpStream::connect(s.http).await.unwrap();
    second
        .write_all(b"GET /bayeux.js HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let mut buf = Vec::new();
    let read = within(
        MAX_WAIT,
        "the refused connection to close",
        second.read_to_end(&mut buf),
    )
    .await;
    assert!(
        read.is_err() || buf.is_empty(),
        "got an answer: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // Once the slot is free, the next client is served.
    drop(held);
    eventually("the freed slot to serve a client", || async {
        s.server.shutdown_handle().tasks() == 0
    })
    .await;
    assert_eq!(
        s.client().post_json(&json!([])).await.status,
        StatusCode::OK
    );
}
