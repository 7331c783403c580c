//! The `eventsource` transport: `GET {prefix}/{clientId}` with
//! `Accept: text/event-stream`.
//!
//! The stream binds the client like a WebSocket does; the client keeps sending
//! `/meta/connect` over XHR with `connectionType: "eventsource"`, which the
//! engine answers at once as a heartbeat. Unlike Faye, an unknown clientId is
//! refused with `400 Unknown client` instead of an empty stream that can never
//! deliver anything.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::engine::{Engine, StreamSlot, Transport};
use crate::http::response::{text, unavailable, Body};
use crate::shutdown::Shutdown;

/// Stream chunks buffered between the session task and hyper; the task waits
/// when the client reads slowly, and the mailbox absorbs the rest.
const CHANNEL: usize = 8;

/// Opens the stream for the client named by the last path segment.
pub async fn serve(
    req: Request<Incoming>,
    engine: Engine,
    client_id: &str,
    shutdown: &Shutdown,
) -> Response<Body> {
    drop(req);
    let Some(client) = engine.session(client_id).await else {
        return text(StatusCode::BAD_REQUEST, "Unknown client");
    };
    if shutdown.is_draining() {
        return unavailable();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL);
    let drain = shutdown.token();
    let span = tracing::Span::current();
    span.record("client_id", client.id());
    shutdown.spawn(tracing::Instrument::instrument(
        async move {
            let _gauge = engine.gauge(Transport::EventSource);
            let ping_every = engine.settings().eventsource_ping;
            let mut slot = StreamSlot::new();
            if slot.bind(&client).is_none() {
                return;
            }
            let notify = slot.notify().clone();
            if tx
                .send(Bytes::from_static(b"retry: 5000\r\n\r\n"))
                .await
                .is_err()
            {
                return;
            }
            let mut ping =
                tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
            loop {
                let events = slot.drain();
                if slot.bound().is_none() {
                    break;
                }
                if !events.is_empty() {
                    let json = crate::transport::encode_events(&events);
                    let mut chunk = BytesMut::with_capacity(json.len() + 10);
                    chunk.extend_from_slice(b"data: ");
                    chunk.extend_from_slice(&json);
                    chunk.extend_from_slice(b"\r\n\r\n");
                    if tx.send(chunk.freeze()).await.is_err() {
                        break;
                    }
                }
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = ping.tick() => {
                        if tx.send(Bytes::from_static(b":\r\n\r\n")).await.is_err() {
                            break;
                        }
                    }
                    _ = tx.closed() => break,
                    _ = drain.cancelled() => break,
                }
            }
            // A Redis route saves where delivery stands for the next connect.
            if client.is_alive() {
                engine.checkpoint(&client).await;
            }
            slot.unbind();
        },
        span,
    ));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, hyper::Error>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    r
}
