//! PROTOCOL.md §10 items 30-39: `/meta/handshake`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::{msg_handshake, retry_advice, TestServer, CONNECTION_TYPES};

fn handshake_failure(reply: &Value, error: &str) {
    assert_eq!(reply["channel"], "/meta/handshake");
    assert_eq!(reply["successful"], false, "{reply}");
    assert_eq!(reply["error"], error);
    assert_eq!(reply["advice"], json!({"reconnect": "handshake"}));
    assert_eq!(reply["version"], "1.0");
    assert_eq!(reply["supportedConnectionTypes"], json!(CONNECTION_TYPES));
    assert!(reply.get("clientId").is_none(), "{reply}");
}

#[tokio::test]
async fn item_30_valid_handshake() {
    let s = TestServer::with_defaults("timeout_secs = 5").await;
    let reply = s.client().one(msg_handshake()).await;
    assert_eq!(reply["channel"], "/meta/handshake");
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["version"], "1.0");
    assert_eq!(reply["supportedConnectionTypes"], json!(CONNECTION_TYPES));
    assert_eq!(reply["advice"], retry_advice(5000));
    let id = reply["clientId"].as_str().expect("clientId");
    assert_eq!(id.len(), 31);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
        "{id}"
    );
    let keys: Vec<&str> = reply
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "advice",
            "channel",
            "clientId",
            "successful",
            "supportedConnectionTypes",
            "version"
        ]
    );
}

#[tokio::test]
async fn item_31_id_echoed_only_when_truthy() {
    let s = TestServer::start().await;
    let c = s.client();
    for (id, echoed) in [
        (json!("h1"), true),
        (json!(7), true),
        (json!({}), true),
        (json!(0), false),
        (json!(""), false),
    ] {
        let mut hs = msg_handshake();
        hs["id"] = id.clone();
        let reply = c.one(hs).await;
        assert_eq!(reply["successful"], true);
        if echoed {
            assert_eq!(reply["id"], id);
        } else {
            assert!(reply.get("id").is_none(), "id {id} echoed: {reply}");
        }
    }
}

#[tokio::test]
async fn item_32_ext_is_not_echoed() {
    let s = TestServer::start().await;
    let mut hs = msg_handshake();
    hs["ext"] = json!({"foo": 1});
    let reply = s.client().one(hs).await;
    assert_eq!(reply["successful"], true);
    assert!(reply.get("ext").is_none(), "{reply}");
}

#[tokio::test]
async fn item_33_missing_version() {
    let s = TestServer::start().await;
    let c = s.client();
    let mut missing = msg_handshake();
    missing.as_object_mut().expect("object").remove("version");
    let mut empty = msg_handshake();
    empty["version"] = json!("");
    for hs in [missing, empty] {
        let reply = c.one(hs).await;
        handshake_failure(&reply, "402:version:Missing required parameter");
    }
}

#[tokio::test]
async fn item_34_unsupported_connection_types() {
    let s = TestServer::start().await;
    let mut hs = msg_handshake();
    hs["supportedConnectionTypes"] = json!(["iframe", "flash"]);
    let reply = s.client().one(hs).await;
    handshake_failure(&reply, "301:iframe,flash:Connection types not supported");
}

#[tokio::test]
async fn item_34_connection_types_as_a_string() {
    // Faye reads a string as a list of characters, none of which is a type.
    let s = TestServer::start().await;
    let mut hs = msg_handshake();
    hs["supportedConnectionTypes"] = json!("long-polling");
    let reply = s.client().one(hs).await;
    handshake_failure(&reply, "301:long-polling:Connection types not supported");
}

#[tokio::test]
async fn item_35_missing_connection_types() {
    let s = TestServer::start().await;
    let mut hs = msg_handshake();
    hs.as_object_mut()
        .expect("object")
        .remove("supportedConnectionTypes");
    let reply = s.client().one(hs).await;
    handshake_failure(
        &reply,
        "402:supportedConnectionTypes:Missing required parameter",
    );
}

#[tokio::test]
async fn item_36_empty_connection_types() {
    let s = TestServer::start().await;
    let mut hs = msg_handshake();
    hs["supportedConnectionTypes"] = json!([]);
    let reply = s.client().one(hs).await;
    handshake_failure(&reply, "301::Connection types not supported");
}

#[tokio::test]
async fn item_37_any_version_is_accepted() {
    let s = TestServer::start().await;
    let mut hs = msg_handshake();
    hs["version"] = json!("2.0");
    let reply = s.client().one(hs).await;
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["version"], "1.0");
}

#[tokio::test]
async fn item_38_two_handshakes_two_ids() {
    let s = TestServer::start().await;
    let c = s.client();
    let a = c.handshake().await;
    let b = c.handshake().await;
    assert_ne!(a, b);
    // Both sessions are live and distinct.
    for id in [&a, &b] {
        let reply = c.connect(id, Some(0)).await;
        assert_eq!(reply[0]["successful"], true);
        assert_eq!(reply[0]["clientId"], json!(id));
    }
}

#[tokio::test]
async fn item_39_default_timeout_is_60_seconds() {
    let s = TestServer::with_defaults("").await;
    let reply = s.client().one(msg_handshake()).await;
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["advice"], retry_advice(60_000));
}
