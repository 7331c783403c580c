//! Raw sockets: bytes out, whatever comes back, always within a time limit.
//! HTTP/1.1 requests written by hand (so they can be wrong on purpose), WebSocket
//! frames built by hand, and readers that describe how the server answered.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::net::Res;

/// Opens a TCP connection within `limit`; `rcvbuf` shrinks the receive buffer first, so
/// a client that does not read leaves what it is sent with the server.
pub async fn tcp(addr: SocketAddr, rcvbuf: Option<u32>, limit: Duration) -> Res<TcpStream> {
    tcp_from(addr, None, rcvbuf, limit).await
}

/// Like [`tcp`], from the loopback address `src` (another client, as the server sees it).
pub async fn tcp_from(
    addr: SocketAddr,
    src: Option<IpAddr>,
    rcvbuf: Option<u32>,
    limit: Duration,
) -> Res<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = src {
        if !ip.is_loopback() {
            return Err(format!("refusing non-loopback source {ip}"));
        }
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    if let Some(n) = rcvbuf {
        let _ = sock.set_recv_buffer_size(n);
    }
    let s = timeout(limit, sock.connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: no answer within {limit:?}"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// What was read and how reading ended.
pub struct Reply {
    /// Bytes received.
    pub bytes: Vec<u8>,
    /// `eof`, `reset: …`, `timeout`, `full`.
    pub end: End,
}

/// How reading ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection.
    Eof,
    /// A read error (usually a reset).
    Error(String),
    /// Nothing more within the limit; the connection is still open.
    Timeout,
    /// The byte limit was reached.
    Full,
}

impl End {
    /// Short text.
    pub fn text(&self) -> String {
        match self {
            End::Eof => "closed".into(),
            End::Error(e) => format!("error ({e})"),
            End::Timeout => "still open".into(),
            End::Full => "more data".into(),
        }
    }
}

/// Reads until EOF, an error, `max` bytes or `limit`.
pub async fn read_for<S: AsyncRead + Unpin>(s: &mut S, max: usize, limit: Duration) -> Reply {
    let start = Instant::now();
    let deadline = start + limit;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        if bytes.len() >= max {
            break End::Full;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, s.read(&mut buf)).await {
            Err(_) => break End::Timeout,
            Ok(Ok(0)) => break End::Eof,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break End::Error(e.kind().to_string()),
        }
    };
    Reply { bytes, end }
}

/// Writes all of `data` within `limit`.
pub async fn write_for<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8], limit: Duration) -> Res<()> {
    timeout(limit, async {
        s.write_all(data).await?;
        s.flush().await
    })
    .await
    .map_err(|_| format!("write did not finish within {limit:?}"))?
    .map_err(|e| format!("write: {}", e.kind()))
}

/// Builds an HTTP/1.1 request with `Host`, the extra headers, `Content-Length` (when a
/// body is given) and `Connection: close`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    if let Some(b) = body {
        out.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    out
}

/// Connects, writes `req` (a write error is noted, not fatal: the server may answer and
/// close before reading everything) and reads until the server closes or `limit`.
pub async fn exchange(addr: SocketAddr, req: &[u8], limit: Duration) -> Res<Reply> {
    exchange_from(addr, None, req, limit).await
}

/// Like [`exchange`], from the loopback address `src`.
pub async fn exchange_from(
    addr: SocketAddr,
    src: Option<IpAddr>,
    req: &[u8],
    limit: Duration,
) -> Res<Reply> {
    let mut s = tcp_from(addr, src, None, limit).await?;
    let start = Instant::now();
    let wrote = write_for(&mut s, req, limit).await;
    let left = limit
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(500));
    let mut r = read_for(&mut s, 64 << 20, left).await;
    if let Err(e) = wrote {
        if r.bytes.is_empty() {
            r.end = End::Error(e);
        }
    }
    Ok(r)
}

/// Status codes of every response in `bytes` (pipelined responses give several).
/// A status line is `HTTP/1.x DDD ` anywhere: the bodies here are Bayeux JSON.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = find(&bytes[i..], b"HTTP/1.") {
        let at = i + pos;
        // Pipelined responses follow the previous body directly, on no new line.
        if bytes.len() >= at + 13 && bytes[at + 8] == b' ' && bytes[at + 12] == b' ' {
            if let Some(code) = std::str::from_utf8(&bytes[at + 9..at + 12])
                .ok()
                .and_then(|c| c.parse().ok())
            {
                out.push(code);
            }
        }
        i = at + 7;
    }
    out
}

/// The body of the first response, de-chunked when it is chunked.
pub fn body(bytes: &[u8]) -> Vec<u8> {
    let Some(h) = find(bytes, b"\r\n\r\n") else {
        return Vec::new();
    };
    let head = String::from_utf8_lossy(&bytes[..h]).to_ascii_lowercase();
    let rest = &bytes[h + 4..];
    if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        if end + 2 > b.len() {
            break;
        }
        b = &b[end + 2..];
    }
    out
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A one-shot request: status (0 when none came) and body, or an error text.
pub async fn http_once(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_bytes: Option<&[u8]>,
    limit: Duration,
) -> Res<(u16, Vec<u8>)> {
    http_once_from(addr, None, method, path, headers, body_bytes, limit).await
}

/// Like [`http_once`], from the loopback address `src`.
pub async fn http_once_from(
    addr: SocketAddr,
    src: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_bytes: Option<&[u8]>,
    limit: Duration,
) -> Res<(u16, Vec<u8>)> {
    let req = request(method, path, headers, body_bytes);
    let r = exchange_from(addr, src, &req, limit).await?;
    match statuses(&r.bytes).first() {
        Some(code) => Ok((*code, body(&r.bytes))),
        None => Err(match r.end {
            End::Timeout => format!("no answer within {limit:?}"),
            End::Eof => "closed without an answer".into(),
            e => e.text(),
        }),
    }
}

/// Describes a Bayeux answer: counts of successful replies and of each error, or the
/// start of the text when it is not a JSON array of messages. JSONP is unwrapped.
pub fn describe_bayeux(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut t = text.trim();
    if let (Some(open), true) = (t.find('('), t.ends_with(");") || t.ends_with(')')) {
        if !t.starts_with('[') && !t.starts_with('{') {
            t = t[open + 1..].trim_end_matches(';').trim_end_matches(')');
        }
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(t) else {
        return format!("{:?}", excerpt(&text, 80));
    };
    let mut ok = 0usize;
    let mut errors: Vec<(String, usize)> = Vec::new();
    for m in &items {
        if m.get("successful").and_then(|v| v.as_bool()) == Some(true) {
            ok += 1;
        } else {
            let e = m
                .get("error")
                .and_then(|v| v.as_str())
                .map(|e| excerpt(e, 48))
                .unwrap_or_else(|| "no error text".into());
            match errors.iter_mut().find(|(k, _)| *k == e) {
                Some((_, n)) => *n += 1,
                None => errors.push((e, 1)),
            }
        }
    }
    let mut parts = Vec::new();
    if ok > 0 {
        parts.push(format!("{ok} ok"));
    }
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    for (e, n) in errors.iter().take(2) {
        parts.push(format!("{n}x {e}"));
    }
    if errors.len() > 2 {
        parts.push(format!("+{} other errors", errors.len() - 2));
    }
    if parts.is_empty() {
        "[]".into()
    } else {
        parts.join(", ")
    }
}

/// At most `n` characters of `s`, with an ellipsis when cut.
pub fn excerpt(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

/// Describes a one-shot HTTP result: `400 "…"` or the error.
pub fn describe_http(r: &Res<(u16, Vec<u8>)>) -> String {
    match r {
        Ok((code, body)) if body.is_empty() => format!("{code}"),
        Ok((code, body)) => format!("{code} {}", describe_bayeux(body)),
        Err(e) => e.clone(),
    }
}

// ---------------------------------------------------------------- WebSocket

/// A WebSocket spoken by hand over a plain TCP connection.
pub struct RawWs {
    /// The connection.
    pub s: TcpStream,
    buf: Vec<u8>,
}

/// One frame from the server.
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload (servers do not mask).
    pub payload: Vec<u8>,
}

impl Frame {
    /// `close 1002 "reason"`, `text 120 B`, ….
    pub fn describe(&self) -> String {
        match self.opcode {
            8 if self.payload.len() >= 2 => {
                let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
                let reason = String::from_utf8_lossy(&self.payload[2..]);
                if reason.is_empty() {
                    format!("close {code}")
                } else {
                    format!("close {code} {:?}", excerpt(&reason, 40))
                }
            }
            8 => "close (no code)".into(),
            1 if !self.fin => format!("text fragment {} B", self.payload.len()),
            1 => format!("text {}", describe_bayeux(&self.payload)),
            2 => format!("binary {} B", self.payload.len()),
            9 => "ping".into(),
            10 => "pong".into(),
            op => format!("opcode {op}"),
        }
    }
}

/// The upgrade request for `path`.
pub fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

impl RawWs {
    /// Connects and upgrades; `Err` carries the status or how the connection ended.
    pub async fn open(
        addr: SocketAddr,
        path: &str,
        rcvbuf: Option<u32>,
        limit: Duration,
    ) -> Res<RawWs> {
        let start = Instant::now();
        let mut s = tcp(addr, rcvbuf, limit).await?;
        write_for(&mut s, &upgrade_request(path), limit).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(h) = find(&buf, b"\r\n\r\n") {
                let code = statuses(&buf[..h + 4]).first().copied().unwrap_or(0);
                if code != 101 {
                    return Err(format!("upgrade answered {code}"));
                }
                let rest = buf[h + 4..].to_vec();
                return Ok(RawWs { s, buf: rest });
            }
            if buf.len() > 64 * 1024 {
                return Err("upgrade answer too long".into());
            }
            let left = limit.saturating_sub(start.elapsed());
            match timeout(left, s.read(&mut chunk)).await {
                Err(_) => return Err(format!("no upgrade answer within {limit:?}")),
                Ok(Ok(0)) => return Err("closed during upgrade".into()),
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(format!("upgrade: {}", e.kind())),
            }
        }
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8], limit: Duration) -> Res<()> {
        let f = frame(true, 0, opcode, payload, true);
        write_for(&mut self.s, &f, limit).await
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8], limit: Duration) -> Res<()> {
        write_for(&mut self.s, bytes, limit).await
    }

    /// The next frame, or how the connection ended (`Err`).
    pub async fn next(&mut self, limit: Duration) -> Result<Frame, End> {
        let deadline = Instant::now() + limit;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((f, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.s.read(&mut chunk)).await {
                Err(_) => return Err(End::Timeout),
                Ok(Ok(0)) => return Err(End::Eof),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(End::Error(e.kind().to_string())),
            }
        }
    }

    /// The next text message (pings and pongs skipped), as a string.
    pub async fn next_text(&mut self, limit: Duration) -> Res<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(f) if f.opcode == 1 => return Ok(String::from_utf8_lossy(&f.payload).into()),
                Ok(f) if f.opcode == 8 => return Err(f.describe()),
                Ok(_) => continue,
                Err(e) => return Err(e.text()),
            }
        }
    }

    /// Reads frames until a close frame, EOF or `limit`: describes what the server did.
    pub async fn outcome(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(f) if f.opcode == 8 => {
                    seen.push(f.describe());
                    break;
                }
                Ok(f) => {
                    if seen.len() < 3 {
                        seen.push(f.describe());
                    }
                }
                Err(End::Eof) => {
                    seen.push("closed".into());
                    break;
                }
                Err(End::Timeout) => {
                    seen.push(format!("still open after {}s", limit.as_secs()));
                    break;
                }
                Err(e) => {
                    seen.push(e.text());
                    break;
                }
            }
        }
        seen.join(", ")
    }
}

/// Builds a frame; client frames are masked.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = header(fin, rsv, opcode, payload.len() as u64, masked);
    if masked {
        let key: [u8; 4] = fastrand::u32(..).to_be_bytes();
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// A frame header declaring `len` bytes (the mask key is not included).
pub fn header(fin: bool, rsv: u8, opcode: u8, len: u64, masked: bool) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f)];
    let m = if masked { 0x80 } else { 0 };
    if len < 126 {
        f.push(m | len as u8);
    } else if len <= u64::from(u16::MAX) {
        f.push(m | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(m | 127);
        f.extend_from_slice(&len.to_be_bytes());
    }
    f
}

/// Parses one server frame at the start of `b`: the frame and the bytes it used.
fn parse_frame(b: &[u8]) -> Option<(Frame, usize)> {
    if b.len() < 2 {
        return None;
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        127 => {
            let arr: [u8; 8] = b.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(arr), 10)
        }
        n => (u64::from(n), 2),
    };
    let mut key = None;
    if masked {
        key = Some([
            *b.get(at)?,
            *b.get(at + 1)?,
            *b.get(at + 2)?,
            *b.get(at + 3)?,
        ]);
        at += 4;
    }
    let len = usize::try_from(len).ok()?;
    let end = at.checked_add(len)?;
    let mut payload = b.get(at..end)?.to_vec();
    if let Some(k) = key {
        for (i, x) in payload.iter_mut().enumerate() {
            *x ^= k[i % 4];
        }
    }
    Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]HTTP/1.1 400 Bad Request\r\n\r\n";
        assert_eq!(statuses(r), vec![200, 400]);
        assert_eq!(body(r), b"[]");
        let c = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(body(c), b"abcde");
    }

    #[test]
    fn frames_round_trip() {
        let f = frame(true, 0, 1, &[b'x'; 300], false);
        let (p, used) = parse_frame(&f).unwrap();
        assert_eq!((p.opcode, p.payload.len(), used), (1, 300, f.len()));
        let m = frame(false, 0, 2, b"abc", true);
        let (p, _) = parse_frame(&m).unwrap();
        assert_eq!((p.fin, p.payload.as_slice()), (false, &b"abc"[..]));
    }

    #[test]
    fn bayeux_summaries() {
        let b = br#"[{"successful":true},{"successful":false,"error":"405::bad"},{"successful":false,"error":"405::bad"}]"#;
        assert_eq!(describe_bayeux(b), "1 ok, 2x 405::bad");
        assert_eq!(
            describe_bayeux(br#"/**/cb([{"successful":true}]);"#),
            "1 ok"
        );
    }
}
