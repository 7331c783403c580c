//! Operations features seen from outside: the Prometheus exposition on the admin
//! listener (checked by a strict parser of the text format) and its counters and
//! gauges moving with real traffic; reload and TLS failure counters.
//!
//! The end-to-end checks with the npm Faye client (hot reload under traffic,
//! HTTP/2 long-polling, upstream routes, the SIGTERM hand-over) live in
//! `tests/interop/test/edge-*.test.js`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use bayeux_edge::config::Config;
use bayeux_edge::Server;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::{msg_subscribe, within, TestServer, MAX_WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

// === a strict reader of the Prometheus text format (0.0.4) ===

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A metric family: its TYPE, HELP and samples.
#[derive(Debug, Clone)]
struct Family {
    name: String,
    kind: String,
    help: Option<String>,
    samples: Vec<Sample>,
}

/// A parsed exposition.
#[derive(Debug, Clone)]
struct Exposition {
    families: Vec<Family>,
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with("__")
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            s.parse::<f64>()
                .map_err(|e| format!("bad value {s:?}: {e}"))
        }
        _ => Err(format!("bad value {s:?}")),
    }
}

/// Parses `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("unterminated label set")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name}: value not quoted"))?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("label {name}: bad escape {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = &rest[eq + 2 + end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} after label {name}"));
        }
    }
}

/// The family a sample name belongs to (histogram and summary suffixes included).
fn family_of(name: &str, families: &[Family]) -> Option<usize> {
    if let Some(i) = families.iter().position(|f| f.name == name) {
        return Some(i);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(i) = families.iter().position(|f| {
                f.name == base
                    && (f.kind == "histogram" || (f.kind == "summary" && suffix != "_bucket"))
            }) {
                return Some(i);
            }
        }
    }
    None
}

fn check_histogram(f: &Family) -> Result<(), String> {
    type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
    let mut groups: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    for s in &f.samples {
        let key: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let g = groups.entry(key).or_default();
        if s.name == format!("{}_bucket", f.name) {
            let le = s
                .labels
                .get("le")
                .ok_or_else(|| format!("{}: bucket without le", f.name))?;
            g.0.push((parse_value(le)?, s.value));
        } else if s.name == format!("{}_sum", f.name) {
            g.1 = Some(s.value);
        } else if s.name == format!("{}_count", f.name) {
            g.2 = Some(s.value);
        } else {
            return Err(format!("{}: unexpected sample {}", f.name, s.name));
        }
    }
    if groups.is_empty() {
        return Err(format!("{}: histogram without samples", f.name));
    }
    for (buckets, sum, count) in groups.values() {
        for w in buckets.windows(2) {
            if w[1].0 <= w[0].0 {
                return Err(format!("{}: bucket bounds not increasing", f.name));
            }
            if w[1].1 < w[0].1 {
                return Err(format!(
                    "{}: bucket le={} ({}) below le={} ({})",
                    f.name, w[1].0, w[1].1, w[0].0, w[0].1
                ));
            }
        }
        let last = buckets.last().ok_or(format!("{}: no buckets", f.name))?;
        if last.0 != f64::INFINITY {
            return Err(format!("{}: the last bucket is not +Inf", f.name));
        }
        let count = count.ok_or(format!("{}: no _count", f.name))?;
        let sum = sum.ok_or(format!("{}: no _sum", f.name))?;
        if last.1 != count {
            return Err(format!(
                "{}: +Inf bucket {} != _count {count}",
                f.name, last.1
            ));
        }
        if sum.is_nan() || sum < 0.0 {
            return Err(format!("{}: bad _sum {sum}", f.name));
        }
    }
    Ok(())
}

/// Parses `text` strictly: HELP/TYPE at most once per family and before its
/// samples, every sample under a TYPE, families contiguous, no duplicate
/// series, well-formed names, labels and values, counters non-negative and
/// histograms cumulative up to `+Inf == _count`.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("does not end with a newline".to_owned());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut current: Option<usize> = None;
    let mut finished: HashSet<String> = HashSet::new();
    let mut series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.splitn(4, ' ');
            let (_, kind, name) = (parts.next(), parts.next(), parts.next());
            let (Some(kind @ ("HELP" | "TYPE")), Some(name)) = (kind, name) else {
                continue; // a plain comment
            };
            let rest = parts.next().unwrap_or("");
            if !is_metric_name(name) {
                return Err(at("bad metric name".into()));
            }
            if finished.contains(name) {
                return Err(at(format!("family {name} appears again")));
            }
            let i = match families.iter().position(|f| f.name == name) {
                Some(i) => i,
                None => {
                    families.push(Family {
                        name: name.to_owned(),
                        kind: String::new(),
                        help: None,
                        samples: Vec::new(),
                    });
                    families.len() - 1
                }
            };
            if let Some(c) = current.filter(|c| *c != i) {
                finished.insert(families[c].name.clone());
            }
            current = Some(i);
            let f = &mut families[i];
            if !f.samples.is_empty() {
                return Err(at(format!("{kind} after samples")));
            }
            if kind == "HELP" {
                if f.help.replace(rest.to_owned()).is_some() {
                    return Err(at("second HELP".into()));
                }
            } else {
                if !f.kind.is_empty() {
                    return Err(at("second TYPE".into()));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest) {
                    return Err(at(format!("unknown type {rest:?}")));
                }
                f.kind = rest.to_owned();
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| at("not a sample".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            if ts.parse::<i64>().is_err() {
                return Err(at("bad timestamp".into()));
            }
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let i = family_of(name, &families).ok_or_else(|| at("sample without a TYPE".into()))?;
        if families[i].kind.is_empty() {
            return Err(at("family without a TYPE".into()));
        }
        if finished.contains(&families[i].name) {
            return Err(at("family interleaved with another".into()));
        }
        if let Some(c) = current.filter(|c| *c != i) {
            finished.insert(families[c].name.clone());
        }
        current = Some(i);
        if !series.insert((name.to_owned(), labels.clone())) {
            return Err(at("duplicate series".into()));
        }
        if families[i].kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(at("negative or NaN counter".into()));
        }
        families[i].samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for f in &families {
        if f.kind == "histogram" {
            check_histogram(f)?;
        }
    }
    Ok(Exposition { families })
}

impl Exposition {
    fn family(&self, name: &str) -> &Family {
        self.families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no metric family {name}"))
    }

    /// The value of the one sample `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let i = family_of(name, &self.families)?;
        let found: Vec<&Sample> = self.families[i]
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().map(|s| s.value)
    }

    /// Like [`Exposition::get`], panicking when absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    /// Every counter sample (histogram `_count`, `_sum` and buckets included).
    fn monotonic(&self) -> Vec<(String, BTreeMap<String, String>, f64)> {
        self.families
            .iter()
            .filter(|f| f.kind == "counter" || f.kind == "histogram")
            .flat_map(|f| &f.samples)
            .map(|s| (s.name.clone(), s.labels.clone(), s.value))
            .collect()
    }
}

#[test]
fn the_parser_rejects_what_it_should() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
              # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
    let e = parse_exposition(ok).expect("valid exposition");
    assert_eq!(e.value("a_total", &[("x", "1")]), 3.0);
    assert_eq!(e.value("h_count", &[]), 2.0);
    for (why, bad) in [
        ("no TYPE", "a 1\n"),
        ("no final newline", "# TYPE a gauge\na 1"),
        ("unquoted label", "# TYPE a gauge\na{x=1} 1\n"),
        ("repeated label", "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n"),
        ("duplicate series", "# TYPE a gauge\na 1\na 2\n"),
        ("bad value", "# TYPE a gauge\na one\n"),
        ("second TYPE", "# TYPE a gauge\na 1\n# TYPE a gauge\n"),
        ("interleaved", "# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n"),
        ("negative counter", "# TYPE a counter\na -1\n"),
        ("bad escape", "# TYPE a gauge\na{x=\"\\q\"} 1\n"),
        (
            "not cumulative",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        ),
        (
            "no +Inf bucket",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        ),
        (
            "+Inf differs from _count",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        ),
    ] {
        assert!(parse_exposition(bad).is_err(), "{why}: accepted {bad:?}");
    }
}

// === the admin listener ===

async fn admin_get(admin: SocketAddr, path: &str) -> (StatusCode, http::HeaderMap, String) {
    within(MAX_WAIT, "an admin response", async {
        let tcp = TcpStream::connect(admin).await.expect("connect to admin");
        let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .expect("HTTP/1.1 handshake");
        let driver = tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", admin.to_string())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("admin response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        driver.abort();
        (
            status,
            headers,
            String::from_utf8(body.to_vec()).expect("UTF-8"),
        )
    })
    .await
}

/// Scrapes `/metrics` and parses it strictly.
async fn scrape(admin: SocketAddr) -> Exposition {
    let (status, headers, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "content type {ct}"
    );
    parse_exposition(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
}

/// Scrapes until `check` holds, within [`MAX_WAIT`]; returns that scrape.
async fn scrape_until(
    admin: SocketAddr,
    what: &str,
    check: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + MAX_WAIT;
    loop {
        let e = scrape(admin).await;
        if check(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_monotonic(before: &Exposition, after: &Exposition) {
    let later: BTreeMap<_, _> = after
        .monotonic()
        .into_iter()
        .map(|(n, l, v)| ((n, l), v))
        .collect();
    for (name, labels, v) in before.monotonic() {
        let now = later
            .get(&(name.clone(), labels.clone()))
            .unwrap_or_else(|| panic!("{name} {labels:?} disappeared"));
        assert!(*now >= v, "{name} {labels:?} went down from {v} to {now}");
    }
}

const R: (&str, &str) = ("route", "/bayeux");

#[tokio::test]
async fn metrics_are_valid_prometheus_text_and_move_with_traffic() {
    let ts = TestServer::with_defaults("timeout_secs = 30").await;
    let base = scrape(ts.admin).await;

    // The families the operators' dashboards use, with their types and help.
    for (name, kind) in [
        ("bayeux_edge_sessions", "gauge"),
        ("bayeux_edge_subscriptions", "gauge"),
        ("bayeux_edge_messages_published_total", "counter"),
        ("bayeux_edge_messages_delivered_total", "counter"),
        ("bayeux_edge_messages_dropped_total", "counter"),
        ("bayeux_edge_queue_overflows_total", "counter"),
        ("bayeux_edge_connections", "gauge"),
        ("bayeux_edge_reloads_total", "counter"),
        ("bayeux_edge_tls_handshake_failures_total", "counter"),
        ("bayeux_edge_request_duration_seconds", "histogram"),
    ] {
        let f = base.family(name);
        assert_eq!(f.kind, kind, "{name}");
        assert!(
            f.help.as_deref().is_some_and(|h| !h.is_empty()),
            "{name} has no HELP"
        );
    }
    for prefix in ["/bayeux", "/staging/faye", "/production/faye"] {
        assert_eq!(
            base.value("bayeux_edge_sessions", &[("route", prefix)]),
            0.0
        );
    }
    for t in [
        "websocket",
        "long-polling",
        "eventsource",
        "callback-polling",
    ] {
        assert_eq!(
            base.value("bayeux_edge_connections", &[R, ("transport", t)]),
            0.0
        );
    }

    // A long-polling subscriber and a WebSocket subscriber on /m.
    let http = ts.client();
    let lp = http.subscriber("/m").await;
    let mut ws = http.websocket().await;
    let ws_id = ws.handshake().await;
    ws.send_json(&msg_subscribe(&ws_id, json!("/m"))).await;
    let reply = ws.recv().await;
    assert_eq!(reply[0]["successful"], json!(true), "{reply:?}");
    ws.bind(&ws_id).await;
    let poller = {
        let http = http.clone();
        let lp = lp.clone();
        tokio::spawn(async move { http.connect(&lp, None).await })
    };
    let held = scrape_until(ts.admin, "a held long-poll and an open WebSocket", |e| {
        e.get(
            "bayeux_edge_connections",
            &[R, ("transport", "long-polling")],
        ) == Some(1.0)
            && e.get("bayeux_edge_connections", &[R, ("transport", "websocket")]) == Some(1.0)
    })
    .await;
    assert_eq!(held.value("bayeux_edge_sessions", &[R]), 2.0);
    assert_eq!(held.value("bayeux_edge_subscriptions", &[R]), 2.0);
    assert_eq!(held.value("bayeux_edge_handshakes_total", &[R]), 2.0);
    assert_eq!(
        held.value("bayeux_edge_sessions", &[("route", "/staging/faye")]),
        0.0,
        "another route counted this traffic"
    );
    assert_monotonic(&base, &held);

    // Three backend publishes, each to two subscribers.
    for n in 1..=3 {
        http.publish_ok("/m", json!({ "n": n })).await;
    }
    let released = within(MAX_WAIT, "the held long-poll", poller)
        .await
        .expect("poller task");
    assert!(
        released.iter().any(|m| m["channel"] == json!("/m")),
        "{released:?}"
    );
    let mut got = 0;
    while got < 3 {
        got += ws
            .recv()
            .await
            .iter()
            .filter(|m| m["channel"] == json!("/m"))
            .count();
    }
    let after = scrape_until(ts.admin, "the long-poll gauge back to 0", |e| {
        e.get(
            "bayeux_edge_connections",
            &[R, ("transport", "long-polling")],
        ) == Some(0.0)
    })
    .await;
    assert_eq!(
        after.value("bayeux_edge_messages_published_total", &[R]),
        3.0
    );
    assert_eq!(
        after.value("bayeux_edge_messages_delivered_total", &[R]),
        6.0
    );
    assert_eq!(after.value("bayeux_edge_messages_dropped_total", &[R]), 0.0);
    assert_eq!(
        after.value(
            "bayeux_edge_messages_published_total",
            &[("route", "/staging/faye")]
        ),
        0.0
    );
    let requests = |e: &Exposition| e.value("bayeux_edge_request_duration_seconds_count", &[]);
    assert!(
        requests(&after) >= requests(&base) + 6.0,
        "request histogram count {} -> {}",
        requests(&base),
        requests(&after)
    );
    assert_monotonic(&held, &after);

    // Sessions and connections go down when clients leave.
    drop(ws);
    let d = http.disconnect(&lp).await;
    assert_eq!(d["successful"], json!(true), "{d}");
    let gone = scrape_until(ts.admin, "the WebSocket gauge back to 0", |e| {
        e.get("bayeux_edge_connections", &[R, ("transport", "websocket")]) == Some(0.0)
    })
    .await;
    assert!(gone.value("bayeux_edge_sessions", &[R]) <= 1.0);
    assert_monotonic(&after, &gone);
    ts.stop().await;
}

#[tokio::test]
async fn tls_handshake_failures_are_counted() {
    let ts = TestServer::start().await;
    let before = scrape(ts.admin).await;
    let failures = |e: &Exposition| e.value("bayeux_edge_tls_handshake_failures_total", &[]);
    let mut tcp = TcpStream::connect(ts.https).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let after = scrape_until(ts.admin, "a counted TLS failure", |e| {
        failures(e) >= failures(&before) + 1.0
    })
    .await;
    assert_eq!(failures(&after), failures(&before) + 1.0);
    drop(tcp);
    ts.stop().await;
}

fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test]
async fn reloads_are_counted_by_result() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("routes.toml");
    let head = "[server]\ndrain_grace_secs = 1\n[[server.listener]]\nname = \"http\"\naddr = \"127.0.0.1:0\"\n\
                [server.admin]\naddr = \"127.0.0.1:0\"\n[[route]]\nprefix = \"/a\"\n";
    std::fs::write(&file, head).expect("write");
    let server = Server::start(Config::load(&file).expect("valid file"))
        .await
        .expect("server starts");
    let admin = server.admin_addr().expect("admin");
    let count =
        |e: &Exposition, result: &str| e.value("bayeux_edge_reloads_total", &[("result", result)]);
    let e = scrape(admin).await;
    assert_eq!((count(&e, "ok"), count(&e, "error")), (0.0, 0.0));

    // A forced reload (what SIGHUP does) of an unchanged file: counted, nothing changes.
    let summary = server
        .reload()
        .expect("started from a file")
        .expect("reload");
    assert_eq!(summary, Default::default());
    let e = scrape(admin).await;
    assert_eq!((count(&e, "ok"), count(&e, "error")), (1.0, 0.0));

    // The watcher picks up an edit: a new route, counted as ok and serving.
    write_atomically(&file, &format!("{head}[[route]]\nprefix = \"/b\"\n"));
    let e = scrape_until(admin, "the reload of the edited file", |e| {
        count(e, "ok") == 2.0
    })
    .await;
    assert_eq!(count(&e, "error"), 0.0);
    assert_eq!(e.value("bayeux_edge_sessions", &[("route", "/b")]), 0.0);

    // A broken file: counted as an error, the table stays as it was.
    write_atomically(
        &file,
        &format!("{head}[[route]]\nprefix = \"/c\"\nbogus = 1\n"),
    );
    let e = scrape_until(admin, "the rejected reload", |e| count(e, "error") == 1.0).await;
    assert_eq!(count(&e, "ok"), 2.0);
    assert!(e.get("bayeux_edge_sessions", &[("route", "/c")]).is_none());
    assert_eq!(e.value("bayeux_edge_sessions", &[("route", "/b")]), 0.0);
    let forced = server.reload().expect("started from a file");
    assert!(
        matches!(&forced, Err(bayeux_edge::reload::ReloadError::Config(e)) if e.to_string().contains("bogus")),
        "{forced:?}"
    );
    let e = scrape(admin).await;
    assert_eq!((count(&e, "ok"), count(&e, "error")), (2.0, 2.0));
    server.drain(Duration::from_secs(1)).await;
}
