//! Raw WebSocket broadcast server with no Bayeux protocol: the ceiling of this machine.
//!
//! - A WebSocket may connect on any path. Its first text frame names the channel it listens
//!   to (any string); the server answers `[{"channel":"/meta/subscribe","successful":true}]`.
//!   A text frame `<channel>\n<JSON object>` publishes instead (no reply). Other frames
//!   are ignored.
//! - `POST <channel>` with a JSON object body broadcasts that object to every socket on the
//!   channel (the channel is the request path) and answers `[{"successful":true}]`.
//! - Everything ready for a socket goes out as one frame holding a JSON array, one write and
//!   one flush.
//!
//! Prints `{"port":N,"pid":P}` on stdout once listening.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest POST body accepted.
const MAX_BODY: usize = 1 << 20;
/// Largest batched frame before it is sent (more messages go in the next frame).
const MAX_FRAME: usize = 256 << 10;

/// Raw WebSocket broadcast server (benchmark ceiling).
#[derive(Parser)]
#[command(name = "raw-ceiling")]
struct Cli {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve TLS with this certificate and key (PEM); a self-signed pair for localhost is
    /// generated into these files when they do not exist.
    #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
    tls: Option<Vec<PathBuf>>,
    /// Runtime worker threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

type Subscribers = HashMap<String, Vec<UnboundedSender<Arc<str>>>>;

#[derive(Default)]
struct Hub {
    channels: Mutex<Subscribers>,
}

impl Hub {
    fn subscribe(&self, channel: String, tx: UnboundedSender<Arc<str>>) {
        if let Ok(mut map) = self.channels.lock() {
            map.entry(channel).or_default().push(tx);
        }
    }

    fn broadcast(&self, channel: &str, msg: Arc<str>) -> usize {
        let Ok(mut map) = self.channels.lock() else {
            return 0;
        };
        let Some(subs) = map.get_mut(channel) else {
            return 0;
        };
        subs.retain(|tx| tx.send(msg.clone()).is_ok());
        let n = subs.len();
        if n == 0 {
            map.remove(channel);
        }
        n
    }
}

fn ws_config() -> WebSocketConfig {
    let mut cfg = WebSocketConfig::default();
    cfg.read_buffer_size = 4 * 1024;
    cfg.write_buffer_size = 0;
    cfg.max_message_size = Some(MAX_BODY);
    cfg.max_frame_size = Some(MAX_BODY);
    cfg
}

async fn socket<S>(mut ws: WebSocketStream<S>, hub: Arc<Hub>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (tx, mut rx) = unbounded_channel::<Arc<str>>();
    let mut tx = Some(tx);
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(first) = msg else { break };
                let mut frame = String::with_capacity(first.len() + 2);
                frame.push('[');
                frame.push_str(&first);
                while frame.len() < MAX_FRAME {
                    match rx.try_recv() {
                        Ok(m) => {
                            frame.push(',');
                            frame.push_str(&m);
                        }
                        Err(_) => break,
                    }
                }
                frame.push(']');
                if ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some((channel, msg)) = text.split_once('\n') {
                        hub.broadcast(channel, Arc::from(msg));
                    } else if let Some(tx) = tx.take() {
                        hub.subscribe(text.as_str().to_owned(), tx);
                        let ack = r#"[{"channel":"/meta/subscribe","successful":true}]"#;
                        if ws.send(Message::text(ack)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn handle(
    mut req: Request<Incoming>,
    hub: Arc<Hub>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if is_upgrade(&req) {
        let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
            return Ok(reply(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"));
        };
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config()),
                )
                .await;
                socket(ws, hub).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(
            CONNECTION,
            hyper::header::HeaderValue::from_static("Upgrade"),
        );
        h.insert(
            UPGRADE,
            hyper::header::HeaderValue::from_static("websocket"),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&accept) {
            h.insert(SEC_WEBSOCKET_ACCEPT, v);
        }
        return Ok(resp);
    }
    if req.method() != Method::POST {
        return Ok(reply(StatusCode::BAD_REQUEST, "Bad request"));
    }
    let channel = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, "too large")),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return Ok(reply(StatusCode::BAD_REQUEST, "not UTF-8"));
    };
    let text = text.trim();
    if !text.starts_with('{') || !text.ends_with('}') {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            "body must be one JSON object",
        ));
    }
    hub.broadcast(&channel, Arc::from(text));
    Ok(reply(StatusCode::OK, r#"[{"successful":true}]"#))
}

async fn serve<S>(io: S, hub: Arc<Hub>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, hub.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    if !cert.exists() || !key.exists() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| format!("generating a certificate: {e}"))?;
        std::fs::write(cert, ck.cert.pem())
            .map_err(|e| format!("writing {}: {e}", cert.display()))?;
        std::fs::write(key, ck.key_pair.serialize_pem())
            .map_err(|e| format!("writing {}: {e}", key.display()))?;
    }
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("reading {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parsing {}: {e}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

async fn run(cli: Cli) -> Result<(), String> {
    if !cli.listen.ip().is_loopback() {
        return Err("listen on a loopback address only".into());
    }
    let tls = match &cli.tls {
        Some(files) => match files.as_slice() {
            [cert, key] => Some(tls_acceptor(cert, key)?),
            _ => return Err("--tls needs CERT and KEY".into()),
        },
        None => None,
    };
    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", cli.listen))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?
        .port();
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{{\"port\":{port},\"pid\":{}}}", std::process::id());
    let _ = out.flush();
    let hub = Arc::new(Hub::default());
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of file descriptors or similar: back off briefly.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let hub = hub.clone();
        match &tls {
            None => {
                tokio::spawn(serve(tcp, hub));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve(stream, hub).await;
                    }
                });
            }
        }
    }
}

// The same allocator as bayeux-edge, so that the ceiling is not lowered by the
// system allocator's cost.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let result = match rt {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(format!("runtime: {e}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raw-ceiling: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
