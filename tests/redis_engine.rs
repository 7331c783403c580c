//! The Redis engine's store semantics, with several in-process nodes on one
//! real `redis-server` (started per test on a free port): sessions move
//! between nodes, publishes reach each subscriber once and in order, a
//! publish costs one `XADD` whatever the recipients, sessions end cluster-wide
//! by disconnect or expiry, and an unreachable Redis refuses publishes and
//! handshakes while local sessions stay connected, recovering by itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::redis::RedisServer;
use support::{events, eventually, Http, TestServer};

const PREFIX: &str = "/r";

/// One node of the route `/r` on `redis`, with `extra` route keys.
async fn node(redis: &RedisServer, extra: &str) -> TestServer {
    let routes = format!(
        "[[route]]\nprefix = \"{PREFIX}\"\nengine = \"redis\"\nredis_url_env = \"TEST_REDIS_URL\"\n{extra}\n"
    );
    let url = redis.url();
    TestServer::with_env(
        "",
        "timeout_secs = 2\nredis_timeout_secs = 5\nmax_sessions_per_ip = 100000\nhandshake_rate_per_ip = 100000\nhandshake_burst_per_ip = 100000",
        &routes,
        &[("TEST_REDIS_URL", url.as_str())],
    )
    .await
}

/// Two plain nodes of `/r` on `redis`, both ready.
async fn two_nodes(redis: &RedisServer) -> (TestServer, TestServer) {
    let (a, b) = (node(redis, "").await, node(redis, "").await);
    ready(&a).await;
    ready(&b).await;
    (a, b)
}

async fn ready(server: &TestServer) {
    let engine = server.engine(PREFIX);
    eventually("the route's Redis to be ready", || async {
        engine.storage_ready() == Some(true)
    })
    .await;
}

fn numbers(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| e["data"]["n"].as_i64())
        .collect()
}

/// Drains `client` through `http` until `want` numbers arrived (bounded).
async fn collect(http: &Http, client: &str, want: usize, got: &mut Vec<i64>) {
    for _ in 0..50 {
        if got.len() >= want {
            return;
        }
        let replies = http.connect(client, Some(200)).await;
        assert_eq!(replies[0]["successful"], json!(true), "{replies:?}");
        got.extend(numbers(&events(&replies)));
    }
}

#[tokio::test]
async fn a_client_moves_between_nodes_and_gets_each_publish_once_in_order() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis).await;
    let (ha, hb) = (a.client_at(PREFIX), b.client_at(PREFIX));
    let id = ha.handshake().await;
    // Subscribing on B loads the session that A created.
    hb.subscribe_ok(&id, "/chat/*").await;
    for n in 1..=5 {
        let via = if n % 2 == 0 { &ha } else { &hb };
        via.publish_ok("/chat/x", json!({"n": n})).await;
    }
    let mut got = Vec::new();
    // The first connect is on A, whose copy is stale (subscribed on B): it reloads.
    collect(&ha, &id, 5, &mut got).await;
    for n in 6..=10 {
        hb.publish_ok("/chat/x", json!({"n": n})).await;
    }
    collect(&hb, &id, 10, &mut got).await;
    collect(&ha, &id, 10, &mut got).await;
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
    // Nothing more, on either node.
    assert!(events(&ha.connect(&id, Some(0)).await).is_empty());
    assert!(events(&hb.connect(&id, Some(0)).await).is_empty());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn round_robin_long_polls_over_three_nodes_lose_and_repeat_nothing() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = [
        node(&redis, "").await,
        node(&redis, "").await,
        node(&redis, "").await,
    ];
    for n in &nodes {
        ready(n).await;
    }
    let http: Vec<Http> = nodes.iter().map(|n| n.client_at(PREFIX)).collect();
    let id = http[0].handshake().await;
    http[1].subscribe_ok(&id, "/feed").await;
    let mut got = Vec::new();
    let mut published = 0;
    for round in 0..12 {
        for _ in 0..3 {
            published += 1;
            http[(published % 3) as usize]
                .publish_ok("/feed", json!({"n": published}))
                .await;
        }
        let replies = http[round % 3].connect(&id, Some(100)).await;
        assert_eq!(replies[0]["successful"], json!(true), "{replies:?}");
        got.extend(numbers(&events(&replies)));
    }
    for round in 0..12 {
        if got.len() >= published as usize {
            break;
        }
        got.extend(numbers(&http[round % 3].drain(&id).await));
    }
    assert_eq!(got, (1..=published).collect::<Vec<_>>());
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test]
async fn a_publish_is_one_script_whatever_the_recipients() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis).await;
    let (ha, hb) = (a.client_at(PREFIX), b.client_at(PREFIX));
    let mut subscribers = Vec::new();
    for i in 0..40 {
        let h = if i % 2 == 0 { &ha } else { &hb };
        subscribers.push((i % 2, h.subscriber("/all").await));
    }
    // The first publish loads the script into Redis (one call more).
    ha.publish_ok("/warm-up", json!({})).await;
    let before = [
        redis.calls("xadd").await,
        redis.calls("publish").await,
        redis.calls("evalsha").await + redis.calls("eval").await,
    ];
    for n in 1..=20 {
        ha.publish_ok("/all", json!({"n": n})).await;
    }
    // One script per publish (its XADD and PUBLISH inside), whatever the recipients.
    let after = [
        redis.calls("xadd").await,
        redis.calls("publish").await,
        redis.calls("evalsha").await + redis.calls("eval").await,
    ];
    assert_eq!(after[0] - before[0], 20, "XADD");
    assert_eq!(after[1] - before[1], 20, "PUBLISH");
    assert_eq!(after[2] - before[2], 20, "scripts");
    assert_eq!(
        redis.calls("xread").await,
        0,
        "nodes read nothing per publish"
    );
    for (node, id) in &subscribers {
        let h = if *node == 0 { &ha } else { &hb };
        let mut got = Vec::new();
        collect(h, id, 20, &mut got).await;
        assert_eq!(got, (1..=20).collect::<Vec<_>>(), "client {id}");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn disconnect_ends_the_session_on_every_node() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis).await;
    let (ha, hb) = (a.client_at(PREFIX), b.client_at(PREFIX));
    let id = ha.subscriber("/x").await;
    assert_eq!(hb.drain(&id).await.len(), 0, "B loads the session");
    assert_eq!(ha.disconnect(&id).await["successful"], json!(true));
    eventually("the session to be gone from Redis", || async {
        let r = hb.connect(&id, Some(0)).await;
        r[0]["error"] == json!(format!("401:{id}:Unknown client"))
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_session_nobody_connects_for_expires_in_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = node(&redis, "timeout_secs = 0.3").await;
    ready(&a).await;
    let ha = a.client_at(PREFIX);
    let id = ha.handshake().await;
    let key = format!("bayeux-edge:{PREFIX}:s:{id}");
    assert!(redis
        .command(&["EXISTS", &key])
        .await
        .unwrap()
        .starts_with(":1"));
    // Lifetime 0.6 s: Redis itself removes the record.
    eventually("Redis to expire the session", || async {
        redis
            .command(&["EXISTS", &key])
            .await
            .is_some_and(|r| r.starts_with(":0"))
    })
    .await;
    a.stop().await;
}

#[tokio::test]
async fn redis_down_refuses_publishes_keeps_local_clients_and_recovers() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis).await;
    let (ha, hb) = (a.client_at(PREFIX), b.client_at(PREFIX));
    let local = ha.subscriber("/x").await;
    let elsewhere = ha.subscriber("/x").await;
    ha.publish_ok("/x", json!({"n": 1})).await;
    assert_eq!(numbers(&ha.drain(&local).await), [1]);

    redis.kill();
    eventually("A to see Redis down", || async {
        ha.publish("/x", json!({"n": 2})).await["successful"] == json!(false)
    })
    .await;
    let ack = ha.publish("/x", json!({"n": 3})).await;
    assert_eq!(ack["error"], json!("503:/x:Storage unavailable"), "{ack}");
    let hs = ha.one(support::msg_handshake()).await;
    assert_eq!(hs["error"], json!("503::Storage unavailable"), "{hs}");
    // A client held here keeps connecting (heartbeats from local state).
    let replies = ha.connect(&local, Some(0)).await;
    assert_eq!(replies[0]["successful"], json!(true), "{replies:?}");
    // A client B does not hold is told to retry, not to handshake again.
    let replies = hb.connect(&elsewhere, Some(0)).await;
    assert_eq!(replies[0]["successful"], json!(false), "{replies:?}");
    assert_eq!(
        replies[0]["advice"]["reconnect"],
        json!("retry"),
        "{replies:?}"
    );
    // So is its subscribe there: storage unavailable, not an unknown client.
    let sub = hb.subscribe(&elsewhere, json!("/y")).await;
    assert_eq!(
        sub["error"],
        json!(format!("503:{elsewhere}:Storage unavailable")),
        "{sub}"
    );
    // Readiness and metrics say so.
    let engine = a.engine(PREFIX);
    eventually("readiness to fail", || async {
        engine.storage_ready() == Some(false)
    })
    .await;
    let stats = engine.stats().redis.unwrap();
    assert!(!stats.up && stats.errors > 0, "{stats:?}");

    redis.restart().await;
    eventually("A to publish again", || async {
        ha.publish("/x", json!({"n": 4})).await["successful"] == json!(true)
    })
    .await;
    ready(&b).await;
    // The client B did not hold moves there now, with its id and subscription.
    let mut got = Vec::new();
    collect(&hb, &elsewhere, 1, &mut got).await;
    assert_eq!(got.last(), Some(&4), "{got:?}");
    assert!(
        !got.contains(&2) && !got.contains(&3),
        "refused publishes delivered: {got:?}"
    );
    a.stop().await;
    b.stop().await;
}

/// A node of a Redis route under the `jwt` subscribe policy.
async fn jwt_node(redis: &RedisServer) -> TestServer {
    let routes = format!(
        "[[route]]\nprefix = \"{PREFIX}\"\nengine = \"redis\"\nredis_url_env = \"TEST_REDIS_URL\"\nsubscribe = \"jwt\"\njwt_algorithm = \"HS256\"\njwt_secret_env = \"TEST_JWT_SECRET\"\njwt_issuer = \"https://app.example.com\"\njwt_audience = \"notifications\"\njwt_leeway_secs = 0\njwt_grants = [\"/{{sub}}\", \"/{{sub}}/**\"]\n"
    );
    let url = redis.url();
    TestServer::with_env(
        "",
        "timeout_secs = 5\nredis_timeout_secs = 5",
        &routes,
        &[
            ("TEST_REDIS_URL", url.as_str()),
            (
                "TEST_JWT_SECRET",
                "a-route-secret-of-at-least-thirty-two-bytes",
            ),
        ],
    )
    .await
}

fn token(sub: &str, exp: u64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "iss": "https://app.example.com", "aud": "notifications"}),
        &jsonwebtoken::EncodingKey::from_secret(b"a-route-secret-of-at-least-thirty-two-bytes"),
    )
    .unwrap()
}

/// A token's grants and expiry travel with the session: a node that loads a
/// session another node verified the token of lets it subscribe within the
/// grant without the token, refuses anything wider, and stops delivering
/// when the token runs out.
#[tokio::test]
async fn a_moved_session_keeps_its_token_grants_and_expiry() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = (jwt_node(&redis).await, jwt_node(&redis).await);
    ready(&a).await;
    ready(&b).await;
    let (ha, hb) = (a.client_at(PREFIX), b.client_at(PREFIX));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = now + 3;
    let mut hs = support::msg_handshake();
    hs["ext"] = json!({"token": token("42", exp)});
    let reply = ha.one(hs).await;
    assert_eq!(reply["successful"], json!(true), "{reply}");
    let id = reply["clientId"].as_str().unwrap().to_owned();

    // B never saw the token: what it allows comes from Redis.
    hb.subscribe_ok(&id, "/42/inbox").await;
    let wider = hb.subscribe(&id, json!("/43")).await;
    assert_eq!(wider["successful"], json!(false), "{wider}");
    assert_eq!(wider["error"], json!("403:/43:Forbidden channel"));

    ha.publish_ok("/42/inbox", json!({"n": 1})).await;
    let mut got = Vec::new();
    collect(&hb, &id, 1, &mut got).await;
    assert_eq!(got, vec![1]);

    // Once the token has run out (whole seconds, no leeway), B delivers nothing more.
    eventually("the token to run out", || async {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            > exp
    })
    .await;
    ha.publish_ok("/42/inbox", json!({"n": 2})).await;
    let replies = hb.connect(&id, Some(0)).await;
    assert!(numbers(&events(&replies)).is_empty(), "{replies:?}");
    assert_eq!(replies[0]["successful"], json!(false), "{replies:?}");
    a.stop().await;
    b.stop().await;
}

/// `rediss://` as ElastiCache serves it: two nodes reach a TLS-only Redis
/// port through a private CA named by `redis_ca_file`, and a publish on one
/// reaches a subscriber on the other. A node that does not trust the CA
/// never becomes ready and refuses publishes instead of falling back.
#[tokio::test]
async fn rediss_with_a_private_ca_carries_the_route_and_an_untrusted_one_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let ca = support::redis::TestCa::write(certs.path());
    let Some(redis) = RedisServer::start_tls(&ca).await else {
        return;
    };
    let url = redis.tls_url();
    let trusted = format!("redis_ca_file = \"{}\"", ca.ca_file.display());
    let (a, b) = (
        tls_node(&url, &trusted).await,
        tls_node(&url, &trusted).await,
    );
    ready(&a).await;
    ready(&b).await;
    let (ha, hb) = (a.client_at(PREFIX), b.client_at(PREFIX));
    let id = hb.subscriber("/tls").await;
    ha.publish_ok("/tls", json!({"n": 1})).await;
    let mut got = Vec::new();
    collect(&hb, &id, 1, &mut got).await;
    assert_eq!(got, [1]);
    // The nodes know only the TLS port: the publish script ran through it.
    assert!(redis.calls("evalsha").await >= 1);

    // Without the CA, the public roots do not vouch for this server.
    let untrusted = tls_node(&url, "").await;
    let engine = untrusted.engine(PREFIX);
    eventually(
        "the untrusted node's failed TLS handshakes to be counted",
        || async { engine.stats().redis.is_some_and(|r| r.errors > 0) },
    )
    .await;
    assert_eq!(engine.storage_ready(), Some(false));
    let reply = untrusted
        .client_at(PREFIX)
        .publish("/tls", json!({"n": 2}))
        .await;
    assert_eq!(reply["successful"], json!(false), "{reply}");
    untrusted.stop().await;
    a.stop().await;
    b.stop().await;
}

/// One node of `/r` on the TLS URL `url`, with `ca_line` added to the route.
async fn tls_node(url: &str, ca_line: &str) -> TestServer {
    let routes = format!(
        "[[route]]\nprefix = \"{PREFIX}\"\nengine = \"redis\"\nredis_url_env = \"TEST_REDIS_URL\"\n{ca_line}\n"
    );
    TestServer::with_env(
        "",
        "timeout_secs = 2\nredis_timeout_secs = 2",
        &routes,
        &[("TEST_REDIS_URL", url)],
    )
    .await
}
