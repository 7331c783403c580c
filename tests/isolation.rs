//! Environment isolation (DESIGN.md §1.2) and whole-segment prefix routing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::{data_of, msg_connect, msg_handshake, msg_subscribe, TestServer};

const STAGING: &str = "/staging/faye";
const PRODUCTION: &str = "/production/faye";

const ROUTES: &str = r#"
[[route]]
prefix = "/staging/faye"
[[route]]
prefix = "/production/faye"
timeout_secs = 2
"#;

#[tokio::test]
async fn client_ids_do_not_cross_environments() {
    let s = TestServer::with_config("timeout_secs = 1", ROUTES).await;
    let staging = s.client_at(STAGING);
    let production = s.client_at(PRODUCTION);
    let id = staging.handshake().await;

    let reply = production.one(msg_connect(&id)).await;
    assert_eq!(
        reply,
        json!({
            "channel": "/meta/connect",
            "successful": false,
            "error": format!("401:{id}:Unknown client"),
            "advice": {"reconnect": "handshake"},
        })
    );
    let reply = production.subscribe(&id, json!("/chan")).await;
    assert_eq!(reply["error"], format!("401:{id}:Unknown client"));
    let reply = production.disconnect(&id).await;
    assert_eq!(reply["error"], format!("401:{id}:Unknown client"));
    let resp = production
        .get(
            &format!("{PRODUCTION}/{id}"),
            &[("accept", "text/event-stream")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);

    // Still alive where it was made.
    let replies = staging.connect(&id, Some(0)).await;
    assert_eq!(replies[0]["successful"], true);
    assert_eq!(s.engine(STAGING).stats().clients, 1);
    assert_eq!(s.engine(PRODUCTION).stats().clients, 0);
}

#[tokio::test]
async fn messages_do_not_cross_environments() {
    let s = TestServer::with_config("timeout_secs = 1", ROUTES).await;
    let staging = s.client_at(STAGING);
    let production = s.client_at(PRODUCTION);
    let on_staging = staging.subscriber("/chan").await;
    let on_production = production.subscriber("/chan").await;
    production.subscribe_ok(&on_production, "/**").await;

    staging.publish_ok("/chan", json!("staging")).await;
    production.publish_ok("/chan", json!("production")).await;

    assert_eq!(
        data_of(&staging.drain(&on_staging).await),
        [json!("staging")]
    );
    assert_eq!(
        data_of(&production.drain(&on_production).await),
        [json!("production")]
    );
}

#[tokio::test]
async fn websocket_subscribers_are_isolated_too() {
    let s = TestServer::with_config("timeout_secs = 5", ROUTES).await;
    let staging = s.client_at(STAGING);
    let production = s.client_at(PRODUCTION);
    let mut ws = production.websocket().await;
    let id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&id, json!("/**"))).await;
    assert_eq!(ws.recv().await[0]["successful"], true);
    ws.bind(&id).await;
    staging.publish_ok("/chan", json!("staging")).await;
    production.publish_ok("/chan", json!("production")).await;
    assert_eq!(
        ws.recv().await,
        [json!({"channel": "/chan", "data": "production"})]
    );
}

#[tokio::test]
async fn each_route_has_its_own_tunables() {
    let s = TestServer::with_config("timeout_secs = 1", ROUTES).await;
    let staging = s.client_at(STAGING).one(msg_handshake()).await;
    let production = s.client_at(PRODUCTION).one(msg_handshake()).await;
    assert_eq!(staging["advice"]["timeout"], 1000);
    assert_eq!(production["advice"]["timeout"], 2000);
}

#[tokio::test]
async fn prefixes_match_whole_segments() {
    let s = TestServer::with_config("timeout_secs = 1", ROUTES).await;
    let c = s.client_at(STAGING);
    let post = |path: &'static str| {
        let c = c.clone();
        async move {
            c.send(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                msg_handshake().to_string(),
            )
            .await
        }
    };
    for path in [
        "/staging/fayeX",
        "/staging/faye-old",
        "/staging",
        "/staging/",
        "/other",
        "/production",
        "/bayeux",
        "/",
    ] {
        let resp = post(path).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
        assert!(resp.body.is_empty(), "{path}");
    }
    for path in [
        "/staging/faye",
        "/staging/faye/",
        "/staging/faye/handshake",
        "/production/faye/a/b",
    ] {
        let resp = post(path).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}");
        assert_eq!(resp.json()[0]["successful"], true, "{path}");
    }
    // `{prefix}.js` and `{prefix}/client.js` are the bundle; a longer name is not.
    assert_eq!(c.get("/staging/faye.js", &[]).await.status, StatusCode::OK);
    assert_eq!(
        c.get("/production/faye/client.js", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        c.get("/staging/fayeX.js", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}
