//! Entry points shared by the `fuzz/` targets and the randomized smoke test in
//! `tests/fuzz_smoke.rs`: each takes arbitrary bytes, drives one parser or the
//! engine with them, and checks invariants. None of them may panic.

use std::path::Path;

use crate::bayeux::{channel, parse_batch};
use crate::config::Config;
use crate::engine::{Ctx, Engine, EngineSettings, Item};
use crate::routes::RouteTable;
use crate::shutdown::Shutdown;
use futures_util::FutureExt;

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
    let Some(outcome) = engine
        .process(batch, &mut Ctx::http(Default::default(), peer))
        .now_or_never()
    else {
        panic!("processing a batch on the in-memory store waited");
    };
    let mut items: Vec<Item> = outcome.items;
    // Connects are not awaited here; dropping them must release cleanly.
    drop(outcome.connects);
    items.truncate(1000);
    let encoded = crate::transport::encode(&items);
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
