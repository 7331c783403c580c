//! The `websocket` transport: HTTP/1.1 upgrade and the per-socket session loop.
//!
//! Each inbound text frame is one batch; its replies go back as one frame. A
//! `/meta/connect` on the socket binds the client to it, after which events are
//! pushed as soon as they are queued: everything ready goes out as **one** frame
//! (a JSON array), rather than Faye's frame per event. The connect reply itself
//! is held for the timeout, as Faye does, and carries no events. Socket buffers
//! are small on purpose: an idle socket should cost a few KiB, not tungstenite's
//! 128 KiB default. Bad input is answered with a close code: 1009 for a message
//! over the route's `max_message_bytes`, 1007 for invalid UTF-8, 1002 for
//! protocol violations; a frame that is not a Bayeux envelope is ignored, as Faye
//! ignores it, and the socket stays open. A frame of more messages than the
//! route's `max_batch_messages` is closed with 1009.
//!
//! A socket is bounded in time as well: it must send something at least once
//! per session lifetime (a Faye client sends a connect every `timeout`), and a
//! message must arrive whole within the header-read timeout of its first byte
//! (see `crate::deadline`); otherwise it is closed with 1008. It holds its
//! listener's connection slot for as long as it lives.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::bayeux::{parse_batch, BadRequest};
use crate::budget::Charge;
use crate::deadline::ReadDeadline;
use crate::engine::{ConnectWait, Ctx, Engine, Item, StreamSlot, Transport};
use crate::http::response::{bad_request, empty, unavailable, Body};
use crate::shutdown::Shutdown;

/// Bytes tungstenite allocates up front for reading; larger messages grow it.
const READ_BUFFER: usize = 1024;

/// Frames with a held connect kept at once: a further one answers the oldest,
/// so a peer cannot park an unbounded number of replies.
const MAX_PENDING_FRAMES: usize = 16;

/// What a session needs to know about the request that opened it.
#[derive(Debug)]
pub struct SessionInfo {
    /// The client's address.
    pub ip: IpAddr,
    /// The listener's connection slot, held until the socket closes.
    pub slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
    /// Time allowed for one message, from its first byte to its last.
    pub message_timeout: Duration,
    /// This socket's share of the bound on unfinished input.
    pub incoming: Charge,
}

/// Validates an upgrade request, answers `101`, and runs the session on the
/// upgraded connection as a task the drain waits for.
pub fn upgrade(
    req: Request<Incoming>,
    engine: Engine,
    shutdown: &Shutdown,
    info: SessionInfo,
) -> Response<Body> {
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
        return bad_request();
    };
    if req
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut r = bad_request();
        r.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    if shutdown.is_draining() {
        return unavailable();
    }
    let accept = derive_accept_key(key.as_bytes());
    let drain = shutdown.clone();
    let bearer = crate::auth::bearer(req.headers()).map(str::to_owned);
    let forwarded = engine.settings().subscribe.forwarded(req.headers());
    // The session continues the connection's span (listener, peer, route) and
    // records the clientId on it once a connect binds the socket.
    let span = tracing::Span::current();
    shutdown.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let settings = engine.settings();
                let mut config = WebSocketConfig::default();
                config.read_buffer_size = READ_BUFFER;
                config.write_buffer_size = 0;
                config.max_message_size = Some(settings.max_message_bytes);
                config.max_frame_size = Some(settings.max_message_bytes);
                // A Faye client sends a connect at least every `timeout + interval`.
                let idle = settings.session_lifetime() + settings.interval;
                let io = ReadDeadline::new(TokioIo::new(upgraded), idle, info.message_timeout)
                    .with_budget(info.incoming);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                let mut session = Session::new(ws, engine, drain);
                session.bearer = bearer;
                session.forwarded = forwarded.map(Box::new);
                session.ip = Some(info.ip);
                session._slot = info.slot;
                tracing::Instrument::instrument(session.run(), span).await;
            }
            Err(e) => tracing::debug!(ip = %info.ip, error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// The replies of one frame that contained a connect, waiting for it.
struct PendingFrame {
    /// The frame's other replies, already encoded: a held connect can wait for
    /// minutes, and bytes are far smaller than reply maps.
    items: Vec<Item>,
    waits: Vec<ConnectWait>,
    force: bool,
}

struct Session<S> {
    ws: WebSocketStream<ReadDeadline<S>>,
    engine: Engine,
    slot: StreamSlot,
    pending: Vec<PendingFrame>,
    drain: Shutdown,
    bearer: Option<String>,
    /// The upgrade request's headers a `backend` subscribe policy forwards
    /// (boxed: most routes keep none, and every idle socket carries this field).
    forwarded: Option<Box<crate::auth::ForwardedHeaders>>,
    ip: Option<IpAddr>,
    _slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

enum Flow {
    Continue,
    Stop,
}

impl<S> Session<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn new(ws: WebSocketStream<ReadDeadline<S>>, engine: Engine, drain: Shutdown) -> Self {
        Session {
            ws,
            engine,
            slot: StreamSlot::new(),
            pending: Vec::new(),
            drain,
            bearer: None,
            forwarded: None,
            ip: None,
            _slot: None,
        }
    }

    async fn run(mut self) {
        let _gauge = self.engine.gauge(Transport::WebSocket);
        let notify = self.slot.notify().clone();
        let ping_every = self.engine.settings().ws_ping;
        let mut ping = ping_every.map(|d| tokio::time::interval_at(Instant::now() + d, d));
        let mut ping_count: u64 = 0;
        let drain_signal = self.drain.token();
        let far = Duration::from_secs(86_400);
        // One timer for the session's lifetime, moved only when the earliest held
        // connect changes: re-arming a fresh timer on every wake-up costs a timer
        // wheel insertion and removal per delivered frame.
        let timer = tokio::time::sleep(far);
        tokio::pin!(timer);
        loop {
            // A frame is answered when all its connects are due, so it waits for
            // the latest of them (waking at the earliest would spin until then).
            let next_due = self
                .pending
                .iter()
                .filter_map(|f| f.waits.iter().map(ConnectWait::deadline).max())
                .min()
                .unwrap_or_else(|| timer.deadline().max(Instant::now() + far / 2));
            if timer.deadline() != next_due {
                timer.as_mut().reset(next_due);
            }
            let flow = tokio::select! {
                // Boxed: frame handling is the largest state of this loop, and an idle
                // socket should not carry it around.
                msg = self.ws.next() => Box::pin(self.on_message(msg)).await,
                _ = notify.notified() => self.flush_events().await,
                _ = &mut timer => {
                    // Fired: park it far away until a connect is held again.
                    timer.as_mut().reset(Instant::now() + far);
                    Box::pin(self.finish_due(false)).await
                }
                _ = async { match ping.as_mut() { Some(p) => { p.tick().await; } None => std::future::pending().await } } => {
                    ping_count += 1;
                    match self.ws.send(Message::Ping(Bytes::from(ping_count.to_string()))).await {
                        Ok(()) => Flow::Continue,
                        Err(_) => Flow::Stop,
                    }
                }
                _ = drain_signal.cancelled() => Box::pin(self.drain()).await,
            };
            if matches!(flow, Flow::Stop) {
                break;
            }
        }
        // Boxed: the resting session future should not carry this state.
        Box::pin(self.checkpoint()).await;
        self.slot.unbind();
    }

    /// A Redis route saves where the client's delivery stands, so its next
    /// connect, on whichever node, resumes right after it.
    async fn checkpoint(&mut self) {
        if let Some(session) = self.slot.bound() {
            self.engine.checkpoint(session).await;
        }
    }

    async fn drain(&mut self) -> Flow {
        let _ = self.flush_events().await;
        let _ = self.finish_due(true).await;
        self.checkpoint().await;
        self.close(CloseCode::Away, "server shutting down").await;
        Flow::Stop
    }

    async fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Flow {
        if let Some(Ok(_)) = &msg {
            self.ws.get_mut().frame_done();
        }
        match msg {
            None => Flow::Stop,
            Some(Ok(Message::Text(text))) => self.on_frame(text.as_bytes()).await,
            Some(Ok(Message::Binary(data))) => self.on_frame(&data).await,
            Some(Ok(Message::Close(_))) => Flow::Continue,
            Some(Ok(_)) => Flow::Continue,
            Some(Err(e)) => {
                match e {
                    WsError::Capacity(_) => self.close(CloseCode::Size, "message too large").await,
                    WsError::Utf8 => self.close(CloseCode::Invalid, "invalid UTF-8").await,
                    WsError::Protocol(_) => self.close(CloseCode::Protocol, "protocol error").await,
                    WsError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        tracing::debug!(error = %e, "websocket timed out");
                        self.close(CloseCode::Policy, "timed out").await
                    }
                    WsError::Io(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                        tracing::debug!(error = %e, "websocket refused: input budget spent");
                        self.close(CloseCode::Again, "server busy").await
                    }
                    other => tracing::debug!(error = %other, "websocket closed"),
                }
                Flow::Stop
            }
        }
    }

    async fn on_frame(&mut self, data: &[u8]) -> Flow {
        let batch = match parse_batch(data, self.engine.settings().max_batch_messages) {
            Ok(b) => b,
            Err(BadRequest::TooManyMessages(_)) => {
                self.engine.count_refused_batch();
                self.close(CloseCode::Size, "too many messages").await;
                return Flow::Stop;
            }
            Err(e) => {
                tracing::debug!(error = %e, "ignoring websocket frame that is not a Bayeux envelope");
                return Flow::Continue;
            }
        };
        let before = self.slot.bound().map(|c| c.id().to_owned());
        let mut ctx = Ctx {
            stream: Some(&mut self.slot),
            credentials: crate::auth::Credentials {
                bearer: self.bearer.as_deref(),
                forwarded: self.forwarded.as_deref(),
            },
            peer: self.ip,
        };
        let outcome = self.engine.process(batch, &mut ctx).await;
        if let Some(client) = self.slot.bound() {
            if before.as_deref() != Some(client.id()) {
                tracing::Span::current().record("client_id", client.id());
            }
        }
        // A new connect for a client answers any connect of that client still held here.
        for wait in &outcome.connects {
            for frame in &mut self.pending {
                if frame
                    .waits
                    .iter()
                    .any(|w| std::sync::Arc::ptr_eq(w.session(), wait.session()))
                {
                    frame.force = true;
                }
            }
        }
        // Events this batch produced for its own client go out before its replies, as in Faye.
        if let Flow::Stop = self.flush_events().await {
            return Flow::Stop;
        }
        if outcome.connects.is_empty() {
            return self.send_items(&outcome.items).await;
        }
        let items = if outcome.items.is_empty() {
            Vec::new()
        } else {
            let json = crate::transport::encode(&outcome.items);
            // Strip the brackets: the elements are spliced into the final frame.
            vec![Item::Encoded(json.slice(1..json.len() - 1))]
        };
        self.pending.push(PendingFrame {
            items,
            waits: outcome.connects,
            force: false,
        });
        if self.pending.len() > MAX_PENDING_FRAMES {
            self.pending[0].force = true;
        }
        self.finish_due(false).await
    }

    async fn flush_events(&mut self) -> Flow {
        if self.engine.is_retired() {
            return Box::pin(self.retired()).await;
        }
        let events = self.slot.drain();
        if !events.is_empty() {
            let frame = crate::transport::encode_events(&events);
            if let Flow::Stop = self.send(frame).await {
                return Flow::Stop;
            }
        }
        // The wake-up may also mean the client went away or was taken over.
        // Boxed (and skipped when nothing is held) to keep the session's
        // resting state small.
        if self.pending.is_empty() {
            return Flow::Continue;
        }
        Box::pin(self.finish_due(false)).await
    }

    /// The route was removed by a reload: answer what is held (with handshake
    /// advice) and close; the prefix now answers 404.
    async fn retired(&mut self) -> Flow {
        let _ = self.finish_due(true).await;
        self.close(CloseCode::Away, "route removed").await;
        Flow::Stop
    }

    async fn finish_due(&mut self, all: bool) -> Flow {
        let now = Instant::now();
        let mut i = 0;
        while i < self.pending.len() {
            let frame = &self.pending[i];
            let due = all || frame.force || frame.waits.iter().all(|w| w.stream_due(now));
            if !due {
                i += 1;
                continue;
            }
            let PendingFrame {
                mut items, waits, ..
            } = self.pending.remove(i);
            for wait in waits {
                items.extend(wait.finish_stream());
            }
            if let Flow::Stop = self.send_items(&items).await {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    async fn send_items(&mut self, items: &[Item]) -> Flow {
        self.send(crate::transport::encode(items)).await
    }

    async fn send(&mut self, json: Bytes) -> Flow {
        let Ok(text) = Utf8Bytes::try_from(json) else {
            return Flow::Continue;
        };
        match self.ws.send(Message::Text(text)).await {
            Ok(()) => Flow::Continue,
            Err(e) => {
                tracing::debug!(error = %e, "websocket write failed");
                Flow::Stop
            }
        }
    }

    async fn close(&mut self, code: CloseCode, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(Some(frame))).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Every idle socket carries its session future: keep it small. Frame
    /// handling, the drain and held-connect completion are boxed for this.
    #[tokio::test]
    async fn resting_session_stays_small() {
        let (a, _b) = tokio::io::duplex(64);
        let io =
            crate::deadline::ReadDeadline::new(a, Duration::from_secs(90), Duration::from_secs(30));
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, super::Role::Server, None)
            .await;
        let engine = crate::engine::Engine::new("/x", Default::default(), Default::default());
        let session = super::Session::new(ws, engine, crate::shutdown::Shutdown::default());
        let run = session.run();
        let size = std::mem::size_of_val(&run);
        // 1600 until the socket carried its share of the input budget (32 bytes).
        assert!(size <= 1632, "session future grew to {size} bytes");
    }
}
