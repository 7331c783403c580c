//! The numbered stream: WebSocket subscribers on `/hostile/stream`, and a backend that
//! POSTs `{"s": N}` to it at a steady rate. A number the server acknowledged is expected
//! by every subscriber; what a subscriber has not received by the end is lost.
//!
//! A server life is an epoch. After a restart the publisher waits until every
//! subscriber has subscribed again, so what was acknowledged before a death and never
//! delivered counts as lost, and nothing is expected from the time the server was down.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::bayeux;
use crate::net::{small_ws_config, HttpConn, Res};

/// The channel every subscriber listens on.
pub const CHANNEL: &str = "/hostile/stream";

/// Where the stream's server is, in which life.
#[derive(Clone)]
pub struct Endpoint {
    /// Server life, from 1.
    pub epoch: u64,
    /// Plain listener.
    pub http: SocketAddr,
}

/// One subscriber's counters.
#[derive(Default)]
pub struct Sub {
    /// The epoch it last subscribed in.
    ready_epoch: AtomicU64,
    received: Mutex<HashSet<u64>>,
    dups: AtomicU64,
    /// Sessions that ended, with the epoch they were in and why.
    ended: Mutex<Vec<(u64, String)>>,
}

/// The stream's shared state.
pub struct Stream {
    endpoint: watch::Sender<Option<Endpoint>>,
    /// Epoch in which the publisher may publish (0: paused).
    active: AtomicU64,
    /// Acknowledged numbers, with the server life that acknowledged them.
    acked: Mutex<Vec<(u64, u64)>>,
    next_seq: AtomicU64,
    /// Publications not acknowledged (error, timeout, refused).
    pub unacked: AtomicU64,
    /// 1 while a publication is on its way.
    inflight: AtomicU64,
    /// Subscribers.
    pub subs: Vec<Arc<Sub>>,
    /// Epochs that ended with the server's death or a restart.
    dead: Mutex<HashSet<u64>>,
    /// Epochs that ended with the server's death.
    died: Mutex<HashSet<u64>>,
    prefix: String,
    secret: Option<String>,
    tasks: Mutex<JoinSet<()>>,
}

/// Per-subscriber result.
pub struct SubResult {
    /// Expected numbers received.
    pub received: u64,
    /// Expected numbers not received.
    pub lost: u64,
    /// Of those, how many a server life acknowledged and then died.
    pub lost_at_death: u64,
    /// Received numbers that were never acknowledged (publish timed out, yet delivered).
    pub unacked_received: u64,
    /// Duplicates.
    pub dups: u64,
    /// Connections lost while the server lived on.
    pub drops: u64,
    /// Last error seen.
    pub last_error: String,
}

impl Stream {
    /// Starts `n` subscribers and the publisher (`rate` per second); nothing happens
    /// until [`Stream::begin_epoch`].
    pub fn start(n: usize, prefix: &str, secret: Option<String>, rate: f64) -> Arc<Stream> {
        let (tx, _) = watch::channel(None);
        let s = Arc::new(Stream {
            endpoint: tx,
            active: AtomicU64::new(0),
            acked: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(1),
            unacked: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            subs: (0..n).map(|_| Arc::new(Sub::default())).collect(),
            dead: Mutex::new(HashSet::new()),
            died: Mutex::new(HashSet::new()),
            prefix: prefix.to_string(),
            secret,
            tasks: Mutex::new(JoinSet::new()),
        });
        if let Ok(mut tasks) = s.tasks.lock() {
            for sub in &s.subs {
                tasks.spawn(subscriber(s.clone(), sub.clone()));
            }
            tasks.spawn(publisher(s.clone(), rate));
        }
        s
    }

    /// Stops publishing (before a restart, or at the end).
    pub fn pause(&self) {
        self.active.store(0, Relaxed);
    }

    /// Stops publishing, waits (at most 6 s) for the publication on its way to be
    /// answered, then a second for its delivery: before a planned restart.
    pub async fn quiesce(&self) {
        self.active.store(0, SeqCst);
        let deadline = Instant::now() + Duration::from_secs(6);
        while self.inflight.load(SeqCst) != 0 && Instant::now() < deadline {
            sleep(Duration::from_millis(20)).await;
        }
        sleep(Duration::from_secs(1)).await;
    }

    /// Points everyone at a (new) server life; waits up to `limit` for every
    /// subscriber to subscribe, then lets the publisher go. Returns how many subscribed.
    pub async fn begin_epoch(&self, ep: Endpoint, limit: Duration) -> usize {
        self.pause();
        let epoch = ep.epoch;
        self.endpoint.send_replace(Some(ep));
        let deadline = Instant::now() + limit;
        loop {
            let ready = self.ready(epoch);
            if ready == self.subs.len() || Instant::now() > deadline {
                self.active.store(epoch, Relaxed);
                return ready;
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    fn ready(&self, epoch: u64) -> usize {
        self.subs
            .iter()
            .filter(|s| s.ready_epoch.load(Relaxed) == epoch)
            .count()
    }

    /// Notes that the server's life `epoch` ended (its death, or a planned restart):
    /// sessions that ended in it are not counted as drops.
    pub fn mark_ended(&self, epoch: u64, died: bool) {
        if let Ok(mut d) = self.dead.lock() {
            d.insert(epoch);
        }
        if died {
            if let Ok(mut d) = self.died.lock() {
                d.insert(epoch);
            }
        }
    }

    /// Acknowledged publications so far.
    pub fn acked(&self) -> u64 {
        self.acked.lock().map(|a| a.len() as u64).unwrap_or(0)
    }

    /// Stops publishing and waits up to `limit` for subscribers to catch up.
    pub async fn drain(&self, limit: Duration) {
        self.pause();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.results().iter().all(|r| r.lost == 0) {
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends every task.
    pub fn shutdown(&self) {
        self.pause();
        self.endpoint.send_replace(None);
        if let Ok(mut t) = self.tasks.lock() {
            t.abort_all();
        }
    }

    /// Per-subscriber counts now.
    pub fn results(&self) -> Vec<SubResult> {
        let acked_epochs: Vec<(u64, u64)> =
            self.acked.lock().map(|a| a.clone()).unwrap_or_default();
        let acked: HashSet<u64> = acked_epochs.iter().map(|(n, _)| *n).collect();
        let dead = self.dead.lock().map(|d| d.clone()).unwrap_or_default();
        let died = self.died.lock().map(|d| d.clone()).unwrap_or_default();
        self.subs
            .iter()
            .map(|s| {
                let ended = s.ended.lock().map(|e| e.clone()).unwrap_or_default();
                let drops = ended.iter().filter(|(e, _)| !dead.contains(e)).count() as u64;
                let last_error = ended.last().map(|(_, e)| e.clone()).unwrap_or_default();
                let got = s.received.lock().map(|r| r.clone()).unwrap_or_default();
                let received = acked.iter().filter(|n| got.contains(n)).count() as u64;
                let lost_at_death = acked_epochs
                    .iter()
                    .filter(|(n, e)| died.contains(e) && !got.contains(n))
                    .count() as u64;
                SubResult {
                    received,
                    lost: acked.len() as u64 - received,
                    lost_at_death,
                    unacked_received: got.iter().filter(|n| !acked.contains(n)).count() as u64,
                    dups: s.dups.load(Relaxed),
                    drops,
                    last_error,
                }
            })
            .collect()
    }
}

/// The stream's own address: other clients than the attacker (127.0.0.1), as a server
/// that limits per address sees them.
pub const STREAM_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// A keep-alive HTTP/1.1 connection from [`STREAM_IP`] (the backend).
async fn open_backend(addr: SocketAddr) -> Res<HttpConn> {
    let tcp = crate::raw::tcp_from(addr, Some(STREAM_IP), None, Duration::from_secs(3)).await?;
    HttpConn::handshake(tcp, addr.to_string()).await
}

async fn subscriber(stream: Arc<Stream>, sub: Arc<Sub>) {
    let mut rx = stream.endpoint.subscribe();
    loop {
        let ep = rx.borrow_and_update().clone();
        let Some(ep) = ep else {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        let r = tokio::select! {
            r = subscribe_once(&stream, &sub, &ep) => r,
            _ = rx.changed() => continue,
        };
        // A session that ends counts as a drop unless its epoch ended in the
        // server's death (judged at the end).
        let e = match r {
            Ok(()) => "ended".to_string(),
            Err(e) => e,
        };
        if let Ok(mut ended) = sub.ended.lock() {
            ended.push((ep.epoch, e));
        }
        sleep(Duration::from_millis(300)).await;
    }
}

/// One WebSocket session: handshake, subscribe, keep a connect outstanding, count events.
async fn subscribe_once(stream: &Stream, sub: &Sub, ep: &Endpoint) -> Res<()> {
    let step = Duration::from_secs(10);
    let tcp = crate::raw::tcp_from(ep.http, Some(STREAM_IP), None, step).await?;
    let url = format!("ws://{}{}", ep.http, stream.prefix);
    let (mut ws, _) = timeout(
        step,
        tokio_tungstenite::client_async_with_config(url, tcp, Some(small_ws_config())),
    )
    .await
    .map_err(|_| "WebSocket upgrade timed out".to_string())?
    .map_err(|e| format!("WebSocket upgrade: {e}"))?;
    let send = |t: String| Message::Text(t.into());
    ws.send(send(bayeux::handshake("websocket")))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut client_id: Option<String> = None;
    let mut next_id = 10u64;
    loop {
        // The connect is held for the route's timeout (45 s); a silent server for
        // longer than this is a failure.
        let frame = timeout(Duration::from_secs(90), ws.next())
            .await
            .map_err(|_| "no frame for 90 s".to_string())?;
        let text = match frame {
            None => return Err("closed".into()),
            Some(Err(e)) => return Err(format!("read: {e}")),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                return Err(format!(
                    "closed by server: {}",
                    c.map(|c| u16::from(c.code).to_string()).unwrap_or_default()
                ))
            }
            Some(Ok(_)) => continue,
        };
        let Ok(serde_json::Value::Array(msgs)) = serde_json::from_str::<serde_json::Value>(&text)
        else {
            return Err(format!("bad frame: {}", crate::raw::excerpt(&text, 80)));
        };
        let mut out = Vec::new();
        for m in &msgs {
            let channel = m.get("channel").and_then(|c| c.as_str()).unwrap_or("");
            match m.get("successful").and_then(|s| s.as_bool()) {
                Some(false) => {
                    return Err(format!(
                        "{channel} failed: {}",
                        m.get("error").map(|e| e.to_string()).unwrap_or_default()
                    ))
                }
                Some(true) => match channel {
                    "/meta/handshake" => {
                        let id = m
                            .get("clientId")
                            .and_then(|c| c.as_str())
                            .ok_or("handshake reply without clientId")?
                            .to_string();
                        next_id += 1;
                        let c = bayeux::connect(&id, "websocket", next_id, true);
                        next_id += 1;
                        let s = bayeux::subscribe(&id, CHANNEL, next_id);
                        out.push(format!("[{c},{s}]"));
                        client_id = Some(id);
                    }
                    "/meta/subscribe" => sub.ready_epoch.store(ep.epoch, Relaxed),
                    "/meta/connect" => {
                        let id = client_id.as_deref().ok_or("connect before handshake")?;
                        next_id += 1;
                        out.push(format!(
                            "[{}]",
                            bayeux::connect(id, "websocket", next_id, false)
                        ));
                    }
                    _ => {}
                },
                None => {
                    if channel == CHANNEL {
                        if let Some(n) = m
                            .get("data")
                            .and_then(|d| d.get("s"))
                            .and_then(|s| s.as_u64())
                        {
                            if let Ok(mut r) = sub.received.lock() {
                                if !r.insert(n) {
                                    sub.dups.fetch_add(1, Relaxed);
                                }
                            }
                        }
                    }
                }
            }
        }
        for t in out {
            ws.send(send(t)).await.map_err(|e| format!("send: {e}"))?;
        }
    }
}

/// The backend: one POST per tick on a keep-alive connection, `rate` per second.
async fn publisher(stream: Arc<Stream>, rate: f64) {
    let mut rx = stream.endpoint.subscribe();
    let period = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<(u64, HttpConn)> = None;
    let ext = match &stream.secret {
        Some(s) => format!(",\"ext\":{{\"secret\":{}}}", bayeux::quote(s)),
        None => String::new(),
    };
    loop {
        tick.tick().await;
        let ep = rx.borrow_and_update().clone();
        let Some(ep) = ep else {
            continue;
        };
        if stream.active.load(Relaxed) != ep.epoch {
            continue;
        }
        if conn.as_ref().map(|c| c.0) != Some(ep.epoch) {
            conn = None;
            match timeout(Duration::from_secs(3), open_backend(ep.http)).await {
                Ok(Ok(c)) => conn = Some((ep.epoch, c)),
                _ => {
                    stream.unacked.fetch_add(1, Relaxed);
                    continue;
                }
            }
        }
        let Some((_, c)) = conn.as_mut() else {
            continue;
        };
        // SeqCst with `quiesce`: either it sees this publication on its way, or this
        // sees the pause.
        stream.inflight.store(1, SeqCst);
        if stream.active.load(SeqCst) != ep.epoch {
            stream.inflight.store(0, Relaxed);
            continue;
        }
        let seq = stream.next_seq.fetch_add(1, Relaxed);
        let body = format!("[{{\"channel\":\"{CHANNEL}\",\"data\":{{\"s\":{seq}}}{ext}}}]");
        let ok = match c
            .post(&stream.prefix, Bytes::from(body), Duration::from_secs(5))
            .await
        {
            Ok((200, b)) => {
                serde_json::from_slice::<serde_json::Value>(&b)
                    .ok()
                    .and_then(|v| v.get(0)?.get("successful")?.as_bool())
                    == Some(true)
            }
            Ok(_) => false,
            Err(_) => {
                conn = None;
                false
            }
        };
        // A number acknowledged after the server's life ended still counts: the server
        // said it was accepted.
        if ok {
            if let Ok(mut a) = stream.acked.lock() {
                a.push((seq, ep.epoch));
            }
        } else {
            stream.unacked.fetch_add(1, Relaxed);
        }
        stream.inflight.store(0, Relaxed);
    }
}
