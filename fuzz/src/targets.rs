//! Entry points of the `bayeux_batch`, `channel` and `routes_toml` targets,
//! shared with the seeded smoke test in the main crate's `tests/fuzz_smoke.rs`
//! (which compiles this file in by path): each takes arbitrary bytes, drives one
//! parser or the engine with them through the library's public API, and checks
//! invariants. None of them may panic.

use std::future::Future;
use std::path::Path;

use bayeux_edge::bayeux::{channel, parse_batch};
use bayeux_edge::config::Config;
use bayeux_edge::engine::{Ctx, Engine, EngineSettings, Item};
use bayeux_edge::routes::RouteTable;
use bayeux_edge::shutdown::Shutdown;

/// Arbitrary bytes as a request body: parse, process on a fresh engine, and
/// check the reply is a JSON array.
pub fn batch(data: &[u8]) {
    let settings = EngineSettings::default();
    let Ok(batch) = parse_batch(data, settings.max_batch_messages) else {
        return;
    };
    let engine = Engine::new("/fuzz", settings, Shutdown::default());
    let peer = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    // The in-memory store never waits, so one poll finishes the batch.
    let mut ctx = Ctx::http(Default::default(), peer);
    let mut processing = std::pin::pin!(engine.process(batch, &mut ctx));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let std::task::Poll::Ready(outcome) = processing.as_mut().poll(&mut cx) else {
        panic!("processing a batch on the in-memory store waited");
    };
    let mut items: Vec<Item> = outcome.items;
    // Connects are not awaited here; dropping them must release cleanly.
    drop(outcome.connects);
    items.truncate(1000);
    let encoded = bayeux_edge::transport::encode(&items);
    let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&encoded);
    assert!(
        matches!(parsed, Ok(serde_json::Value::Array(_))),
        "reply is not a JSON array"
    );
}

/// Arbitrary text as a channel: classification and expansion must agree.
pub fn channel(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if channel::is_name(s) {
        assert!(channel::matches(s, s) && channel::matches("/**", s));
        if let Some((parent, _)) = s.rsplit_once('/') {
            for suffix in ["/*", "/**"] {
                let pattern = format!("{parent}{suffix}");
                assert!(channel::is_valid(&pattern), "{pattern}");
                assert!(channel::matches(&pattern, s), "{pattern} vs {s}");
            }
        }
    }
    if channel::is_meta(s) || channel::is_service(s) {
        assert!(channel::is_valid(s));
        assert!(!channel::is_subscribable(s));
    }
}

/// Arbitrary text as `routes.toml`: validation returns a value or an error, and
/// a valid file builds a table whose every prefix routes to itself.
pub fn routes_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, "fuzz.toml", Path::new(".")) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(async {
                let (table, _) = RouteTable::plan(&config, None).apply(&Shutdown::default());
                for spec in &config.routes {
                    let found = table
                        .lookup(&spec.prefix)
                        .map(|(r, _)| r.prefix.to_string());
                    assert_eq!(found.as_deref(), Some(spec.prefix.as_str()));
                }
            });
        }
    }
}
