//! Runs every scenario once on a tiny size and checks the JSON line: it parses, every
//! subscriber was set up, and nothing was lost. No timing is asserted.
//!
//! WebSocket scenarios run against the raw ceiling (built with this crate). Bayeux
//! scenarios, long-polling included, run against the reference Faye server when Node and
//! `bench/node/node_modules` are present (`npm ci` in bench/node); set
//! `BENCH_SMOKE_REQUIRE_FAYE=1` to make their absence a failure instead of a skip.

// A test fails by panicking; these helpers do so on purpose.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A server started for the test; killed (by its own handle) when dropped.
struct Server {
    child: Child,
    port: u16,
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mut cmd: Command) -> Server {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().expect("server stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read server ready line");
    let ready: Value = serde_json::from_str(line.trim()).expect("ready line is JSON");
    let port = ready["port"].as_u64().expect("port") as u16;
    let pid = ready["pid"].as_u64().expect("pid") as u32;
    Server { child, port, pid }
}

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(server: &Server, base: &str, args: &[&str]) -> Value {
    let url = format!("http://127.0.0.1:{}{base}", server.port);
    let out = Command::new(env!("CARGO_BIN_EXE_bayeux-bench"))
        .args(args)
        .args([
            "--url",
            &url,
            "--server-pid",
            &server.pid.to_string(),
            "--json",
            "--setup-timeout",
            "30",
            "--drain",
            "10",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run bayeux-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?} failed: {stdout}");
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).expect("one JSON line");
    assert_eq!(v["lost"], 0, "{args:?} lost messages: {line}");
    assert_eq!(v["failed"], 0, "{args:?} had failed subscribers: {line}");
    assert_eq!(v["ready"], v["subscribers"], "{args:?}: {line}");
    assert!(v["received"].as_u64().unwrap_or(0) > 0, "{args:?}: {line}");
    assert!(
        v["latency"]["p50_us"].as_f64().is_some(),
        "{args:?}: {line}"
    );
    assert!(
        v["server"]["cpu_s"].as_f64().is_some(),
        "{args:?}: no server CPU: {line}"
    );
    v
}

#[test]
fn scenarios_against_raw_ceiling() {
    let raw = start(Command::new(env!("CARGO_BIN_EXE_raw-ceiling")));
    let raw_args = ["--protocol", "raw"];
    let with = |a: &[&str]| -> Vec<String> {
        a.iter()
            .chain(raw_args.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<Vec<String>> = vec![
        with(&["fanout", "-s", "5", "--messages", "40"]),
        with(&[
            "fanout",
            "-s",
            "3",
            "--messages",
            "5",
            "--rate",
            "50",
            "--publish-via",
            "http",
        ]),
        with(&["users", "-n", "10", "--messages", "60"]),
        with(&["idle", "-c", "12", "--hold", "0.2"]),
    ];
    for case in &cases {
        let args: Vec<&str> = case.iter().map(String::as_str).collect();
        let v = run(&raw, "/", &args);
        if args[0] == "idle" {
            assert_eq!(v["idle"]["connections"], 12);
            assert!(v["idle"]["rss_per_connection_bytes"].is_number());
        }
    }
}

fn faye_available() -> Option<PathBuf> {
    let script = bench_dir().join("faye-server.js");
    let module = bench_dir().join("node/node_modules/faye");
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (node_ok && Path::new(&module).is_dir()).then_some(script)
}

#[test]
fn bayeux_scenarios_against_faye() {
    let Some(script) = faye_available() else {
        assert!(
            std::env::var_os("BENCH_SMOKE_REQUIRE_FAYE").is_none(),
            "Faye is required but node or bench/node/node_modules is missing (npm ci in bench/node)"
        );
        eprintln!("skipped: node or bench/node/node_modules missing (run npm ci in bench/node)");
        return;
    };
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .args(["--mount", "/bench", "--timeout", "10"]);
    let faye = start(cmd);
    let cases: [&[&str]; 5] = [
        &["fanout", "-s", "5", "--messages", "40"],
        &[
            "fanout",
            "-s",
            "3",
            "--messages",
            "30",
            "--publish-via",
            "http",
        ],
        &["users", "-n", "10", "--messages", "60"],
        &["idle", "-c", "12", "--hold", "0.2"],
        &["longpoll", "-s", "5", "--messages", "40"],
    ];
    for args in cases {
        run(&faye, "/bench", args);
    }
}
