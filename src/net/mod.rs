//! Listeners: accept → (TLS) → HTTP/1.1 or HTTP/2 → the gateway.
//!
//! Each listener runs one accept loop bounded by a connection semaphore; each
//! connection is a task tracked by [`crate::shutdown::Shutdown`], so the drain waits for it. TLS
//! handshakes and request headers are bounded by timeouts, so a silent peer
//! cannot hold a slot. When the drain starts the accept loop stops, and every
//! HTTP connection is asked to finish its in-flight requests and close.
//! Plain listeners speak HTTP/1.1; TLS listeners speak what ALPN chose (`h2`
//! or `http/1.1`), so no bytes are spent sniffing the protocol.
//!
//! Every socket carries a write deadline (`crate::deadline::WriteDeadline`): a
//! peer that stops reading while a response or frame waits is disconnected
//! after `write_timeout`, so what it left unread is freed. A connection holds
//! its slot of `max_connections` until it closes, an upgraded WebSocket
//! included. On HTTP/2 at most [`H2_MAX_STREAMS`] requests run at once per
//! connection, so one connection cannot hold more than that many replies.

pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::deadline::WriteDeadline;
use crate::gateway::Gateway;
use crate::http::ConnInfo;
use crate::metrics::Metrics;

/// Concurrent requests on one HTTP/2 connection (hyper's default is 200). A
/// browser needs two per tab (a held connect and one more request).
pub const H2_MAX_STREAMS: u32 = 100;

/// Per-listener limits.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time allowed to receive request headers.
    pub header_read_timeout: Duration,
    /// Time a write may wait for the peer to read before the connection closes.
    pub write_timeout: Duration,
}

/// Counts events that would each deserve a log line and lets one line through
/// per [`Throttle::EVERY`], carrying how many happened since the last one: at
/// the connection limit a flood of refusals must not become a flood of logs.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<tokio::time::Instant>,
    count: u64,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(10);

    /// Records one event; `Some(n)` when a line is due, `n` events since the last.
    fn note(&mut self) -> Option<u64> {
        self.count += 1;
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// Runs the accept loop of one listener until the drain starts.
pub async fn serve(
    name: Arc<str>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Gateway,
    limits: ListenerLimits,
    metrics: Arc<Metrics>,
) {
    let shutdown = gateway.shutdown().clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut refusals = Throttle::default();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.draining() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(5);
                x
            }
            Err(e) => {
                // Usually EMFILE/ENFILE: wait for descriptors to free up instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(refused) = refusals.note() {
                tracing::warn!(
                    listener = %name,
                    refused,
                    max_connections = limits.max_connections,
                    "connection limit reached; refusing connections"
                );
            }
            drop(stream);
            continue;
        };
        // On Linux accepted sockets inherit TCP_NODELAY from the listener
        // (see `server::client_listener`); elsewhere set it per connection.
        #[cfg(not(target_os = "linux"))]
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline::new(stream, limits.write_timeout);
        let slot = Some(Arc::new(permit));
        let gateway = gateway.clone();
        let tls = tls.clone();
        let limits = limits.clone();
        let metrics = metrics.clone();
        let name = name.clone();
        // One span per connection; the gateway records the route, and a
        // WebSocket or EventSource session its clientId. Debug level: at the
        // default `info` the span is never built, which saves a tenth of the
        // CPU a connection's set-up costs (field formatting, registry slots,
        // an enter and exit on every poll).
        let span = tracing::debug_span!(
            "conn",
            listener = %name,
            %peer,
            route = tracing::field::Empty,
            client_id = tracing::field::Empty
        );
        shutdown.spawn(tracing::Instrument::instrument(
            async move {
                let info = ConnInfo {
                    peer,
                    tls: tls.is_some(),
                    slot,
                };
                match tls {
                    None => serve_http(stream, false, gateway, info, &limits, metrics).await,
                    // Boxed: the TLS state is large, and a plain listener's
                    // connections should not carry room for it.
                    Some(acceptor) => {
                        Box::pin(serve_tls(
                            stream, acceptor, gateway, info, &name, &limits, metrics,
                        ))
                        .await
                    }
                }
            },
            span,
        ));
    }
}

/// Drives a hyper connection to its end; when the drain starts, asks it to
/// finish in-flight requests and close. (A macro because hyper's HTTP/1
/// upgradeable connection and HTTP/2 connection share no trait for this.)
macro_rules! run_until_drained {
    ($conn:ident, $shutdown:ident, $peer:ident) => {
        tokio::pin!($conn);
        tokio::select! {
            r = $conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %$peer, error = %e, "connection ended with an error");
                }
            }
            _ = $shutdown.draining() => {
                $conn.as_mut().graceful_shutdown();
                let _ = $conn.await;
            }
        }
    };
}

async fn serve_http<S>(
    stream: S,
    h2: bool,
    gateway: Gateway,
    info: ConnInfo,
    limits: &ListenerLimits,
    metrics: Arc<Metrics>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = gateway.shutdown().clone();
    let peer = info.peer;
    let service = service_fn(move |req| {
        let gateway = gateway.clone();
        let info = info.clone();
        let metrics = metrics.clone();
        async move {
            let start = tokio::time::Instant::now();
            let response = gateway.handle(req, info).await;
            metrics.observe_request(start.elapsed());
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    // The protocol is known up front (ALPN on TLS, HTTP/1.1 on plain listeners),
    // so no bytes are read to sniff it, and hyper's HTTP/1 header timeout covers
    // a peer that connects and never speaks.
    if h2 {
        // Boxed: the HTTP/2 connection state is large, and most connections
        // (every WebSocket among them) are HTTP/1.1.
        Box::pin(serve_h2(stream, service, shutdown, peer, limits)).await;
        return;
    }
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    run_until_drained!(conn, shutdown, peer);
}

async fn serve_tls(
    stream: WriteDeadline<tokio::net::TcpStream>,
    acceptor: TlsAcceptor,
    gateway: Gateway,
    info: ConnInfo,
    name: &str,
    limits: &ListenerLimits,
    metrics: Arc<Metrics>,
) {
    let peer = info.peer;
    match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_http(stream, h2, gateway, info, limits, metrics).await
        }
        Ok(Err(e)) => {
            metrics.tls_failure();
            tracing::debug!(listener = %name, %peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            metrics.tls_failure();
            tracing::debug!(listener = %name, %peer, "TLS handshake timed out");
        }
    }
}

async fn serve_h2<S, Svc>(
    stream: S,
    service: Svc,
    shutdown: crate::shutdown::Shutdown,
    peer: std::net::SocketAddr,
    limits: &ListenerLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::HttpService<hyper::body::Incoming, ResBody = crate::http::Body> + Send,
    Svc::Future: Send + 'static,
    Svc::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // HTTP/2 has no header-read timeout of its own: wait for the client's
    // first byte under the same bound. A one-byte buffer: later reads
    // bypass it.
    let mut stream = tokio::io::BufReader::with_capacity(1, stream);
    let spoke = tokio::select! {
        r = tokio::time::timeout(limits.header_read_timeout, stream.fill_buf()) => {
            matches!(r, Ok(Ok(first)) if !first.is_empty())
        }
        _ = shutdown.draining() => false,
    };
    if !spoke {
        return;
    }
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        // A peer that stops answering pings is gone; its streams are freed.
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.write_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    run_until_drained!(conn, shutdown, peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refusals_are_logged_once_per_period_with_their_count() {
        let mut t = Throttle::default();
        assert_eq!(t.note(), Some(1));
        for _ in 0..500 {
            assert_eq!(t.note(), None);
        }
        tokio::time::advance(Throttle::EVERY).await;
        assert_eq!(t.note(), Some(501));
    }

    /// Every open HTTP/1.1 connection (a held long-poll, a WebSocket before its
    /// upgrade completes) carries this future: keep the rare, large states
    /// (HTTP/2, TLS) boxed out of it.
    #[tokio::test]
    async fn plain_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = WriteDeadline::new(stream, Duration::from_secs(1));
        let client = crate::http::static_client::StaticClient::load(None).unwrap();
        let shutdown = crate::shutdown::Shutdown::default();
        let gateway = Gateway::new(Default::default(), client, shutdown, Default::default());
        let limits = ListenerLimits {
            max_connections: 1,
            tls_handshake_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
        };
        let info = ConnInfo {
            peer: addr,
            tls: false,
            slot: None,
        };
        let fut = serve_http(
            stream,
            false,
            gateway,
            info,
            &limits,
            Arc::new(Metrics::default()),
        );
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 1400, "connection future grew to {size} bytes");
    }
}
