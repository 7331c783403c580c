//! Subscribers (WebSocket and long-polling) and publishers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::bayeux;
use crate::metrics::Shared;
use crate::net::{HttpConn, Res, Stream, Target};

/// Wire protocol spoken to the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Bayeux (Faye-compatible): handshake, connect, subscribe, publish.
    Bayeux,
    /// The raw broadcast ceiling (raw-ceiling): the first text frame names the channel,
    /// publications are broadcast as they are.
    Raw,
}

/// What every client task needs.
pub struct Ctx {
    /// Server endpoint.
    pub target: Target,
    /// Shared counters.
    pub shared: Arc<Shared>,
    /// Protocol.
    pub protocol: Protocol,
    /// Limits concurrent connection set-ups.
    pub gate: Semaphore,
    /// Bound on each set-up step.
    pub step_limit: Duration,
    /// Bound on a held long-poll request.
    pub poll_limit: Duration,
}

impl Ctx {
    /// Path that receives publishes for `channel`.
    fn publish_path(&self, channel: &str) -> String {
        match self.protocol {
            Protocol::Bayeux => self.target.path.clone(),
            Protocol::Raw => raw_channel(&self.target.path, channel),
        }
    }
}

/// Channel key used by the raw ceiling: the endpoint path followed by the channel.
fn raw_channel(path: &str, channel: &str) -> String {
    format!("{}{channel}", path.trim_end_matches('/'))
}

/// Per-client protocol state: decides what to send after each received frame.
struct Session {
    idx: usize,
    connection_type: &'static str,
    client_id: Option<String>,
    next_id: u64,
    subscribed: bool,
    stamps: Vec<u64>,
}

impl Session {
    fn new(idx: usize, connection_type: &'static str) -> Session {
        Session {
            idx,
            connection_type,
            client_id: None,
            next_id: 2,
            subscribed: false,
            stamps: Vec::new(),
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The first connect (answered at once) batched with the subscribe.
    fn connect_and_subscribe(&mut self, channel: &str) -> Res<String> {
        let cid = self.client_id.clone().ok_or("no client id")?;
        let c = bayeux::connect(&cid, self.connection_type, self.id(), true);
        let s = bayeux::subscribe(&cid, channel, self.id());
        Ok(format!("[{c},{s}]"))
    }

    /// A connect the server may hold.
    fn held_connect(&mut self) -> Res<String> {
        let cid = self.client_id.clone().ok_or("no client id")?;
        let c = bayeux::connect(&cid, self.connection_type, self.id(), false);
        Ok(format!("[{c}]"))
    }

    /// Handles one frame or body. Returns whether a connect reply arrived (so the next
    /// connect is due).
    fn on_text(&mut self, text: &str, shared: &Shared) -> Res<bool> {
        let msgs = bayeux::parse(text)?;
        let mut connect_done = false;
        self.stamps.clear();
        for m in &msgs {
            if m.is_reply() {
                match m.channel() {
                    "/meta/connect" => {
                        if m.successful != Some(true) {
                            return Err(m.describe_error());
                        }
                        connect_done = true;
                    }
                    "/meta/subscribe" => {
                        if m.successful != Some(true) {
                            return Err(m.describe_error());
                        }
                        self.subscribed = true;
                    }
                    "/meta/handshake" => {
                        if m.successful != Some(true) {
                            return Err(m.describe_error());
                        }
                        self.client_id = m.client_id.as_deref().map(str::to_string);
                    }
                    _ => {}
                }
            } else if let Some(t) = m.stamp() {
                self.stamps.push(t);
            } else {
                shared.foreign.fetch_add(1, Relaxed);
            }
        }
        shared.delivered(self.idx, &self.stamps);
        Ok(connect_done)
    }
}

/// Runs one WebSocket subscriber until aborted; failures are counted in `shared`.
pub async fn ws_subscriber(ctx: Arc<Ctx>, idx: usize, channel: String) {
    if let Err(e) = ws_subscriber_inner(&ctx, idx, &channel).await {
        ctx.shared.failed.fetch_add(1, Relaxed);
        ctx.shared.error(format!("subscriber {idx}: {e}"));
    }
}

async fn next_text(ws: &mut WebSocketStream<Stream>) -> Res<Option<Utf8Bytes>> {
    match ws.next().await {
        None => Err("WebSocket closed by server".into()),
        Some(Err(e)) => Err(format!("WebSocket: {e}")),
        Some(Ok(Message::Text(t))) => Ok(Some(t)),
        Some(Ok(Message::Close(_))) => Err("WebSocket closed by server".into()),
        Some(Ok(_)) => Ok(None),
    }
}

async fn send_text(ws: &mut WebSocketStream<Stream>, text: String) -> Res<()> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("WebSocket send: {e}"))
}

async fn ws_subscriber_inner(ctx: &Ctx, idx: usize, channel: &str) -> Res<()> {
    let shared = &ctx.shared;
    let mut session = Session::new(idx, "websocket");
    let mut ws = {
        let _permit = ctx.gate.acquire().await.map_err(|_| "set-up gate closed")?;
        let setup = async {
            let mut ws = ctx.target.websocket().await?;
            match ctx.protocol {
                Protocol::Raw => {
                    send_text(&mut ws, raw_channel(&ctx.target.path, channel)).await?;
                    while !session.subscribed {
                        if let Some(t) = next_text(&mut ws).await? {
                            session.on_text(&t, shared)?;
                        }
                    }
                }
                Protocol::Bayeux => {
                    send_text(&mut ws, bayeux::handshake("websocket")).await?;
                    while session.client_id.is_none() {
                        if let Some(t) = next_text(&mut ws).await? {
                            session.on_text(&t, shared)?;
                        }
                    }
                    let first = session.connect_and_subscribe(channel)?;
                    send_text(&mut ws, first).await?;
                    while !session.subscribed {
                        if let Some(t) = next_text(&mut ws).await? {
                            if session.on_text(&t, shared)? {
                                let next = session.held_connect()?;
                                send_text(&mut ws, next).await?;
                            }
                        }
                    }
                }
            }
            Ok::<_, String>(ws)
        };
        tokio::time::timeout(ctx.step_limit * 3, setup)
            .await
            .map_err(|_| format!("set-up took longer than {:?}", ctx.step_limit * 3))??
    };
    shared.ready.fetch_add(1, Relaxed);
    loop {
        let Some(text) = next_text(&mut ws).await? else {
            continue;
        };
        if session.on_text(&text, shared)? && ctx.protocol == Protocol::Bayeux {
            let next = session.held_connect()?;
            send_text(&mut ws, next).await?;
        }
    }
}

/// Runs one long-polling subscriber until aborted.
pub async fn lp_subscriber(ctx: Arc<Ctx>, idx: usize, channel: String) {
    if let Err(e) = lp_subscriber_inner(&ctx, idx, &channel).await {
        ctx.shared.failed.fetch_add(1, Relaxed);
        ctx.shared.error(format!("long-poll subscriber {idx}: {e}"));
    }
}

async fn post_ok(http: &mut HttpConn, path: &str, body: String, limit: Duration) -> Res<Bytes> {
    let (status, body) = http.post(path, Bytes::from(body), limit).await?;
    if status != 200 {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(body)
}

fn utf8(body: &Bytes) -> Res<&str> {
    std::str::from_utf8(body).map_err(|_| "response is not UTF-8".to_string())
}

async fn lp_subscriber_inner(ctx: &Ctx, idx: usize, channel: &str) -> Res<()> {
    if ctx.protocol == Protocol::Raw {
        return Err("the raw ceiling has no long-polling".into());
    }
    let shared = &ctx.shared;
    let path = ctx.target.path.as_str();
    let mut session = Session::new(idx, "long-polling");
    let mut http = {
        let _permit = ctx.gate.acquire().await.map_err(|_| "set-up gate closed")?;
        let mut http = tokio::time::timeout(ctx.step_limit, ctx.target.http())
            .await
            .map_err(|_| "connect timed out")??;
        let hs = post_ok(
            &mut http,
            path,
            bayeux::handshake("long-polling"),
            ctx.step_limit,
        )
        .await?;
        session.on_text(utf8(&hs)?, shared)?;
        let first = session.connect_and_subscribe(channel)?;
        let body = post_ok(&mut http, path, first, ctx.step_limit).await?;
        session.on_text(utf8(&body)?, shared)?;
        if !session.subscribed {
            return Err("subscribe not acknowledged".into());
        }
        http
    };
    shared.ready.fetch_add(1, Relaxed);
    loop {
        let next = session.held_connect()?;
        let body = post_ok(&mut http, path, next, ctx.poll_limit).await?;
        if !session.on_text(utf8(&body)?, shared)? {
            return Err("long-poll response without a connect reply".into());
        }
    }
}

/// What the publishers send.
pub struct PublishPlan {
    /// Total publications (shared by all publishers).
    pub messages: u64,
    /// Messages per second over all publishers; 0 = flat out (windowed).
    pub rate: f64,
    /// No publication starts after this.
    pub deadline: Instant,
    /// Start of the publish phase (rate schedule origin).
    pub start: Instant,
    /// Fixed channel, or `None` to pick `/users/{k}` at random among `users` channels.
    pub channel: Option<String>,
    /// Number of `/users/{k}` channels.
    pub users: usize,
    /// Padding added to each payload.
    pub pad: String,
    /// Messages per HTTP POST (Bayeux only).
    pub batch: usize,
    /// Next sequence number to publish.
    pub next: AtomicU64,
}

/// How publications reach the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    /// One WebSocket; publications are pipelined, acknowledgements read as they come.
    Ws,
    /// Keep-alive HTTP/1.1 POSTs, one request at a time per connection.
    Http,
}

/// Runs one publisher over the chosen transport.
pub async fn publish(ctx: Arc<Ctx>, plan: Arc<PublishPlan>, via: PublishVia) {
    let result = match via {
        PublishVia::Http => publisher_inner(&ctx, &plan).await,
        PublishVia::Ws => ws_publisher_inner(&ctx, &plan).await,
    };
    if let Err(e) = result {
        ctx.shared.error(format!("publisher: {e}"));
    }
}

/// Waits for the next publication slot (rate schedule or window). Cancel-safe: the
/// sequence number is only taken once the slot is there. Returns `(seq, stamp)`.
async fn next_slot(shared: &Shared, plan: &PublishPlan) -> Option<(u64, u64)> {
    let peek = plan.next.load(Relaxed);
    if peek >= plan.messages {
        return None;
    }
    let stamp = if plan.rate > 0.0 {
        let at = plan.start + Duration::from_secs_f64(peek as f64 / plan.rate);
        if at >= plan.deadline {
            return None;
        }
        tokio::time::sleep_until(at.into()).await;
        // Stamp the actual send time: the timer's own lateness is not the server's.
        shared.now_ns()
    } else {
        if !shared.window_room(plan.deadline).await {
            return None;
        }
        shared.now_ns()
    };
    let seq = plan.next.fetch_add(1, Relaxed);
    if seq >= plan.messages {
        return None;
    }
    Some((seq, stamp))
}

fn pick_channel(plan: &PublishPlan) -> (String, Option<usize>) {
    match &plan.channel {
        Some(c) => (c.clone(), None),
        None => {
            let k = fastrand::usize(..plan.users.max(1));
            (format!("/users/{k}"), Some(k))
        }
    }
}

fn count_ack(shared: &Shared, target_sub: Option<usize>) {
    if let Some(k) = target_sub {
        if let Some(e) = shared.expected.get(k) {
            e.fetch_add(1, Relaxed);
        }
    }
    shared.acked.fetch_add(1, Relaxed);
}

async fn ws_publisher_inner(ctx: &Ctx, plan: &PublishPlan) -> Res<()> {
    let shared = &ctx.shared;
    let mut ws = ctx.target.websocket().await?;
    // Targets of publications sent and not yet acknowledged, in order.
    let mut pending: std::collections::VecDeque<Option<usize>> = Default::default();
    let mut sending = true;
    loop {
        if !sending && (pending.is_empty() || ctx.protocol == Protocol::Raw) {
            return Ok(());
        }
        tokio::select! {
            slot = next_slot(shared, plan), if sending => {
                let Some((seq, stamp)) = slot else {
                    sending = false;
                    continue;
                };
                let (channel, target_sub) = pick_channel(plan);
                let msg = bayeux::publish(&channel, &bayeux::payload(stamp, seq, &plan.pad));
                let frame = match ctx.protocol {
                    Protocol::Bayeux => format!("[{msg}]"),
                    Protocol::Raw => format!("{}\n{msg}", raw_channel(&ctx.target.path, &channel)),
                };
                shared.sent.fetch_add(1, Relaxed);
                send_text(&mut ws, frame).await?;
                if ctx.protocol == Protocol::Raw {
                    count_ack(shared, target_sub);
                } else {
                    pending.push_back(target_sub);
                }
            }
            text = tokio::time::timeout(ctx.step_limit, next_text(&mut ws)) => {
                let Ok(text) = text else {
                    if sending {
                        continue;
                    }
                    return Err(format!("{} publications not acknowledged", pending.len()));
                };
                let Some(text) = text? else { continue };
                for m in bayeux::parse(&text)?.iter().filter(|m| m.is_reply()) {
                    let target_sub = pending.pop_front().flatten();
                    if m.successful == Some(true) {
                        count_ack(shared, target_sub);
                    } else {
                        shared.sent.fetch_sub(1, Relaxed);
                        shared.publish_errors.fetch_add(1, Relaxed);
                        shared.error(m.describe_error());
                    }
                }
            }
        }
    }
}

async fn publisher_inner(ctx: &Ctx, plan: &PublishPlan) -> Res<()> {
    let shared = &ctx.shared;
    let mut http = ctx.target.http().await?;
    let limit = ctx.step_limit;
    // The raw ceiling's POST carries one object: it has no batch form.
    let batch = if ctx.protocol == Protocol::Bayeux {
        plan.batch
    } else {
        1
    };
    loop {
        // Up to `batch` publications, all to the path of the first one's channel
        // (a Bayeux endpoint takes any channel in its body).
        let mut targets = Vec::with_capacity(batch);
        let mut msgs = Vec::with_capacity(batch);
        let mut path = None;
        while targets.len() < batch {
            let Some((seq, stamp)) = next_slot(shared, plan).await else {
                break;
            };
            let (channel, target_sub) = pick_channel(plan);
            msgs.push(bayeux::publish(
                &channel,
                &bayeux::payload(stamp, seq, &plan.pad),
            ));
            path.get_or_insert_with(|| ctx.publish_path(&channel));
            targets.push(target_sub);
        }
        let Some(path) = path else {
            return Ok(());
        };
        let body = match ctx.protocol {
            Protocol::Bayeux => format!("[{}]", msgs.join(",")),
            Protocol::Raw => msgs.concat(),
        };
        let n = targets.len() as u64;
        shared.sent.fetch_add(n, Relaxed);
        let outcome = match http.post(&path, Bytes::from(body), limit).await {
            Ok((200, reply)) => check_publish_replies(ctx.protocol, &reply, targets.len()),
            Ok((status, _)) => Err(format!("publish answered HTTP {status}")),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                for target_sub in targets {
                    count_ack(shared, target_sub);
                }
            }
            Err(e) => {
                shared.sent.fetch_sub(n, Relaxed);
                shared.publish_errors.fetch_add(n, Relaxed);
                shared.error(e);
                if Instant::now() >= plan.deadline {
                    return Ok(());
                }
                // The connection may be broken: open a new one.
                http = ctx.target.http().await?;
            }
        }
    }
}

fn check_publish_replies(protocol: Protocol, reply: &[u8], expected: usize) -> Res<()> {
    if protocol == Protocol::Raw {
        return Ok(());
    }
    let text = std::str::from_utf8(reply).map_err(|_| "publish reply is not UTF-8")?;
    let msgs = bayeux::parse(text)?;
    let mut ok = 0;
    for m in msgs.iter().filter(|m| m.is_reply()) {
        if m.successful != Some(true) {
            return Err(m.describe_error());
        }
        ok += 1;
    }
    if ok != expected {
        return Err(format!("{ok} publish replies for {expected} publications"));
    }
    Ok(())
}
