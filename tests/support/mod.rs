//! Fixtures shared by the integration tests.
//!
//! - [`TestServer`]: the real server on `127.0.0.1:0` (plain HTTP, TLS with a
//!   generated development certificate, admin), configured from a small
//!   `routes.toml` written for the test.
//! - [`Http`]: a raw HTTP/1.1 client (hyper's connection API) over TCP or TLS,
//!   with Bayeux helpers; [`H2`] is the same over HTTP/2 (ALPN `h2`).
//! - [`Ws`]: a WebSocket client (tokio-tungstenite) over TCP or TLS.
//! - [`Sse`]: an EventSource reader that splits the stream into blocks.
//! - [`process::Process`]: the real binary as a child process, for what
//!   must be measured from outside (RSS, log lines, descriptor limits).
//! - [`within`], [`eventually`]: deadlines. Nothing here sleeps to wait for
//!   something; every wait is bounded and fails loudly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod redis;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bayeux_edge::config::Config;
use bayeux_edge::engine::{Engine, Transport};
use bayeux_edge::Server;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Upper bound for anything a test waits for. Generous: a hung server fails
/// the test instead of hanging the run.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The routes every test server has unless a test brings its own.
pub const ROUTES: &str = r#"
[[route]]
prefix = "/bayeux"
[[route]]
prefix = "/staging/faye"
[[route]]
prefix = "/production/faye"
"#;

/// The six connection types Faye always advertises, in its order.
pub const CONNECTION_TYPES: [&str; 6] = [
    "long-polling",
    "cross-origin-long-polling",
    "callback-polling",
    "websocket",
    "eventsource",
    "in-process",
];

// === deadlines ===

/// Runs `fut` with a deadline of `limit`; panics naming `what` when it passes.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` until it holds, failing after [`MAX_WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + MAX_WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts that `elapsed` lies in `[min, max]` seconds.
pub fn assert_between(elapsed: Duration, min: f64, max: f64, what: &str) {
    let s = elapsed.as_secs_f64();
    assert!(
        s >= min && s <= max,
        "{what}: took {s:.3} s, expected between {min} and {max} s"
    );
}

// === server ===

/// A running server on ephemeral ports, with the temporary directory holding
/// its development certificate.
pub struct TestServer {
    /// The server itself.
    pub server: Server,
    /// Plain HTTP listener.
    pub http: SocketAddr,
    /// TLS listener.
    pub https: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// The default test server: `timeout_secs = 1`, the three default routes.
    pub async fn start() -> TestServer {
        Self::with_defaults("timeout_secs = 1").await
    }

    /// A server whose `[defaults]` section is `defaults`, with the default routes.
    pub async fn with_defaults(defaults: &str) -> TestServer {
        Self::with_config(defaults, ROUTES).await
    }

    /// A server with the given `[defaults]` lines and `[[route]]` entries.
    pub async fn with_config(defaults: &str, routes: &str) -> TestServer {
        Self::with_server("", defaults, routes).await
    }

    /// A server with extra `[server]` lines, `[defaults]` lines and `[[route]]` entries.
    pub async fn with_server(server: &str, defaults: &str, routes: &str) -> TestServer {
        Self::with_env(server, defaults, routes, &[]).await
    }

    /// Like [`TestServer::with_server`], with the environment variables the
    /// file names (secrets) taken from `env` instead of the process.
    pub async fn with_env(
        server: &str,
        defaults: &str,
        routes: &str,
        env: &[(&str, &str)],
    ) -> TestServer {
        Self::build(server, "addr = \"127.0.0.1:0\"", defaults, routes, env).await
    }

    /// A server whose `[server.admin]` section is `admin` (which sets `addr`),
    /// with `timeout_secs = 1` and `routes`; secrets from `env`.
    pub async fn with_admin(admin: &str, routes: &str, env: &[(&str, &str)]) -> TestServer {
        Self::build("", admin, "timeout_secs = 1", routes, env).await
    }

    async fn build(
        server: &str,
        admin: &str,
        defaults: &str,
        routes: &str,
        env: &[(&str, &str)],
    ) -> TestServer {
        let env: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let dir = tempfile::tempdir().expect("temporary directory");
        let text = format!(
            r#"
[server]
drain_grace_secs = 1
{server}
[[server.listener]]
name = "http"
addr = "127.0.0.1:0"
[[server.listener]]
name = "https"
addr = "127.0.0.1:0"
dev_certificate = true
certificates = [{{ cert = "c.pem", key = "k.pem" }}]
[server.admin]
{admin}
[defaults]
{defaults}
{routes}
"#
        );
        let config =
            Config::parse_with(&text, "test.toml", dir.path(), &env).expect("valid test config");
        let server = Server::start(config).await.expect("server starts");
        TestServer {
            http: server.addr("http").expect("http listener"),
            https: server.addr("https").expect("https listener"),
            admin: server.admin_addr().expect("admin listener"),
            server,
            dir,
        }
    }

    /// A plain HTTP/1.1 client for `/bayeux`.
    pub fn client(&self) -> Http {
        self.client_at("/bayeux")
    }

    /// A plain HTTP/1.1 client for the route at `prefix`.
    pub fn client_at(&self, prefix: &str) -> Http {
        Http {
            addr: self.http,
            tls: None,
            prefix: prefix.to_owned(),
        }
    }

    /// An HTTP/1.1 client over TLS (ALPN `http/1.1`) for the route at `prefix`.
    pub fn tls_client_at(&self, prefix: &str) -> Http {
        Http {
            addr: self.https,
            tls: Some(tls_config(self.dir.path(), &[b"http/1.1"])),
            prefix: prefix.to_owned(),
        }
    }

    /// An HTTP/2 connection over TLS (ALPN `h2`) for the route at `prefix`.
    pub async fn h2_client_at(&self, prefix: &str) -> H2 {
        H2::connect(self.https, tls_config(self.dir.path(), &[b"h2"]), prefix).await
    }

    /// The engine of the route at `prefix`.
    pub fn engine(&self, prefix: &str) -> Engine {
        self.server
            .routes()
            .load()
            .routes()
            .iter()
            .find(|r| &*r.prefix == prefix)
            .and_then(|r| r.engine().cloned())
            .unwrap_or_else(|| panic!("no route {prefix}"))
    }

    /// Open connections of `transport` on the route at `prefix`, as the server counts them.
    pub fn open(&self, prefix: &str, transport: Transport) -> i64 {
        self.engine(prefix).stats().connections[transport as usize]
    }

    /// Waits until the server counts exactly `n` open connections of `transport` on `prefix`.
    pub async fn wait_open(&self, prefix: &str, transport: Transport, n: i64) {
        let what = format!("{n} open {} connection(s) on {prefix}", transport.name());
        eventually(&what, || async { self.open(prefix, transport) == n }).await;
    }

    /// Drains the server (one second of grace).
    pub async fn stop(self) {
        self.server.drain(Duration::from_secs(1)).await;
    }
}

fn tls_config(dir: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(dir.join("c.pem")).expect("development certificate written");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.expect("PEM certificate"))
            .expect("usable root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

// === connections ===

/// Any byte stream a client can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed TCP or TLS stream.
pub type BoxIo = Box<dyn Io>;

/// Aborts a connection driver task when dropped, which closes its socket.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Resp {
    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// True when any `Access-Control-*` header is present.
    pub fn has_cors_headers(&self) -> bool {
        self.headers
            .keys()
            .any(|k| k.as_str().starts_with("access-control-"))
    }
}

/// One HTTP/1.1 connection; dropping it closes the socket.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    _driver: AbortOnDrop,
}

impl Conn {
    /// Sends one request and returns the response head with a streaming body.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Response<Incoming> {
        self.sender.ready().await.expect("connection ready");
        self.sender.send_request(req).await.expect("response")
    }
}

/// Collects a streaming response into a [`Resp`].
pub async fn collect(response: Response<Incoming>) -> Resp {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// An HTTP/1.1 client bound to one route; every request opens its own
/// connection, so concurrent requests never queue behind each other.
#[derive(Clone)]
pub struct Http {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The route prefix requests go to, e.g. `/bayeux`.
    pub prefix: String,
}

impl Http {
    /// A plain HTTP/1.1 client for the route at `prefix` on `addr`.
    pub fn plain(addr: SocketAddr, prefix: &str) -> Http {
        Http {
            addr,
            tls: None,
            prefix: prefix.to_owned(),
        }
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a raw TCP or TLS stream to the listener.
    pub async fn stream(&self) -> BoxIo {
        let tcp = TcpStream::connect(self.addr).await.expect("TCP connect");
        tcp.set_nodelay(true).expect("nodelay");
        match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = ServerName::try_from("localhost").expect("server name");
                let tls = TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .expect("TLS handshake");
                Box::new(tls)
            }
        }
    }

    /// Opens one HTTP/1.1 connection.
    pub async fn conn(&self) -> Conn {
        let io = self.stream().await;
        let (sender, connection) = http1::handshake(TokioIo::new(io))
            .await
            .expect("HTTP/1.1 handshake");
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Conn {
            sender,
            _driver: AbortOnDrop(driver),
        }
    }

    /// Builds a request for `path` (absolute, e.g. `/bayeux?x=1`).
    pub fn build(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(body.into())).expect("request")
    }

    /// Sends one request on a fresh connection and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let req = self.build(method, path, headers, body);
        within(MAX_WAIT, "an HTTP response", async {
            let mut conn = self.conn().await;
            collect(conn.send(req).await).await
        })
        .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    /// `GET {prefix}?{query}`.
    pub async fn get_query(&self, query: &str, headers: &[(&str, &str)]) -> Resp {
        let path = format!("{}?{query}", self.prefix);
        self.get(&path, headers).await
    }

    /// POST `body` to the route with the given content type (none when `None`).
    pub async fn post(&self, content_type: Option<&str>, body: impl Into<Bytes>) -> Resp {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| vec![("content-type", ct)])
            .unwrap_or_default();
        self.send(Method::POST, &self.prefix, &headers, body).await
    }

    /// POST a JSON value to the route (`Content-Type: application/json`).
    pub async fn post_json(&self, body: &Value) -> Resp {
        self.post(Some("application/json"), body.to_string()).await
    }

    /// POST a Bayeux envelope and return the reply array (asserting 200 and JSON).
    pub async fn bayeux(&self, body: Value) -> Vec<Value> {
        let resp = self.post_json(&body).await;
        assert_eq!(resp.status, StatusCode::OK, "body: {}", resp.text());
        match resp.json() {
            Value::Array(items) => items,
            other => panic!("reply is not an array: {other}"),
        }
    }

    /// POST one message and return its single reply.
    pub async fn one(&self, message: Value) -> Value {
        let replies = self.bayeux(message).await;
        assert_eq!(replies.len(), 1, "expected one reply: {replies:?}");
        replies.into_iter().next().expect("one reply")
    }

    /// Handshakes and returns the new clientId.
    pub async fn handshake(&self) -> String {
        let reply = self.one(msg_handshake()).await;
        assert_eq!(reply["successful"], json!(true), "handshake: {reply}");
        reply["clientId"].as_str().expect("clientId").to_owned()
    }

    /// Subscribes `client_id` to `subscription` and returns the reply.
    pub async fn subscribe(&self, client_id: &str, subscription: Value) -> Value {
        self.one(msg_subscribe(client_id, subscription)).await
    }

    /// Subscribes and asserts success.
    pub async fn subscribe_ok(&self, client_id: &str, subscription: &str) {
        let reply = self.subscribe(client_id, json!(subscription)).await;
        assert_eq!(reply["successful"], json!(true), "subscribe: {reply}");
    }

    /// A handshaken client subscribed to `subscription`.
    pub async fn subscriber(&self, subscription: &str) -> String {
        let id = self.handshake().await;
        self.subscribe_ok(&id, subscription).await;
        id
    }

    /// `/meta/connect` over long-polling, holding for `hold_ms` when given.
    pub async fn connect(&self, client_id: &str, hold_ms: Option<u64>) -> Vec<Value> {
        let message = match hold_ms {
            Some(ms) => msg_connect_hold(client_id, ms),
            None => msg_connect(client_id),
        };
        self.bayeux(message).await
    }

    /// Takes whatever is queued for `client_id` (a connect with `timeout: 0`),
    /// asserting the connect succeeded, and returns the events.
    pub async fn drain(&self, client_id: &str) -> Vec<Value> {
        let replies = self.connect(client_id, Some(0)).await;
        assert_eq!(replies[0]["channel"], json!("/meta/connect"), "{replies:?}");
        assert_eq!(replies[0]["successful"], json!(true), "{replies:?}");
        events(&replies)
    }

    /// Publishes `data` to `channel` without a session and returns the ack.
    pub async fn publish(&self, channel: &str, data: Value) -> Value {
        self.one(msg_publish(channel, data)).await
    }

    /// Publishes and asserts the ack is successful.
    pub async fn publish_ok(&self, channel: &str, data: Value) {
        let ack = self.publish(channel, data).await;
        assert_eq!(ack["successful"], json!(true), "publish: {ack}");
    }

    /// `/meta/disconnect` for `client_id`.
    pub async fn disconnect(&self, client_id: &str) -> Value {
        self.one(json!({"channel": "/meta/disconnect", "clientId": client_id}))
            .await
    }

    /// Opens a WebSocket on the route.
    pub async fn websocket(&self) -> Ws {
        self.websocket_at(&self.prefix).await
    }

    /// Opens a WebSocket on `path`.
    pub async fn websocket_at(&self, path: &str) -> Ws {
        let io = self.stream().await;
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://localhost:{}{path}", self.addr.port());
        let (inner, response) = within(
            MAX_WAIT,
            "the WebSocket handshake",
            tokio_tungstenite::client_async(url, io),
        )
        .await
        .expect("WebSocket upgrade");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        Ws { inner }
    }

    /// Opens an EventSource stream for `client_id` (`GET {prefix}/{client_id}`).
    pub async fn event_source(&self, client_id: &str) -> Sse {
        let path = format!("{}/{client_id}", self.prefix);
        let req = self.build(
            Method::GET,
            &path,
            &[("accept", "text/event-stream")],
            Bytes::new(),
        );
        let mut conn = self.conn().await;
        let response = within(MAX_WAIT, "the EventSource response", conn.send(req)).await;
        let (parts, body) = response.into_parts();
        Sse {
            status: parts.status,
            headers: parts.headers,
            body,
            buf: Vec::new(),
            _conn: conn,
        }
    }
}

/// An HTTP/2 connection over TLS.
pub struct H2 {
    sender: http2::SendRequest<Full<Bytes>>,
    authority: String,
    prefix: String,
    /// The ALPN protocol the server chose.
    pub alpn: Option<Vec<u8>>,
    _driver: AbortOnDrop,
}

impl H2 {
    async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>, prefix: &str) -> H2 {
        let tcp = TcpStream::connect(addr).await.expect("TCP connect");
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        H2 {
            sender,
            authority: format!("localhost:{}", addr.port()),
            prefix: prefix.to_owned(),
            alpn,
            _driver: AbortOnDrop(driver),
        }
    }

    /// POSTs a JSON envelope on a new stream of this connection.
    pub async fn post_json(&self, body: &Value) -> H2Resp {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("https://{}{}", self.authority, self.prefix))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let mut sender = self.sender.clone();
        within(MAX_WAIT, "an HTTP/2 response", async move {
            sender.ready().await.expect("HTTP/2 ready");
            let response = sender.send_request(req).await.expect("HTTP/2 response");
            let version = response.version();
            let resp = collect(response).await;
            H2Resp {
                status: resp.status,
                version,
                json: resp.json(),
            }
        })
        .await
    }

    /// POSTs one message and returns the reply array.
    pub async fn bayeux(&self, body: Value) -> Vec<Value> {
        let resp = self.post_json(&body).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.version, http::Version::HTTP_2);
        match resp.json {
            Value::Array(items) => items,
            other => panic!("reply is not an array: {other}"),
        }
    }
}

/// A complete HTTP/2 response with a JSON body.
#[derive(Debug)]
pub struct H2Resp {
    /// Status code.
    pub status: StatusCode,
    /// The HTTP version of the response.
    pub version: http::Version,
    /// The body.
    pub json: Value,
}

// === WebSocket ===

/// A WebSocket client connection.
pub struct Ws {
    /// The underlying stream, for tests that need raw frames.
    pub inner: WebSocketStream<BoxIo>,
}

impl Ws {
    /// Sends a JSON value as one text frame.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.inner
            .send(Message::text(text))
            .await
            .expect("WebSocket send");
    }

    /// Sends a text frame whose payload is not valid UTF-8.
    pub async fn send_invalid_utf8(&mut self) {
        let frame = Frame::message(
            Bytes::from_static(&[0x5b, 0xff, 0xfe, 0x5d]),
            OpCode::Data(Data::Text),
            true,
        );
        self.inner
            .send(Message::Frame(frame))
            .await
            .expect("WebSocket send");
    }

    /// The next message that is not a ping or pong, or `None` if the stream
    /// ended; panics after `limit`.
    pub async fn next_message(&mut self, limit: Duration) -> Option<Message> {
        within(limit, "a WebSocket message", async {
            loop {
                match self.inner.next().await {
                    None => return None,
                    Some(Err(e)) => panic!("WebSocket error: {e}"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => return Some(m),
                }
            }
        })
        .await
    }

    /// The next text frame parsed as JSON, within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Value {
        match self.next_message(limit).await {
            Some(Message::Text(t)) => serde_json::from_str(t.as_str())
                .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {t}")),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame parsed as JSON, within [`MAX_WAIT`].
    pub async fn recv(&mut self) -> Vec<Value> {
        match self.recv_within(MAX_WAIT).await {
            Value::Array(items) => items,
            other => panic!("frame is not an array: {other}"),
        }
    }

    /// Sends `[]` and waits for the `[]` reply: proves every earlier frame was
    /// processed and produced no other reply.
    pub async fn sync(&mut self) {
        self.send_text("[]").await;
        let frame = self.recv().await;
        assert!(frame.is_empty(), "expected the [] reply, got {frame:?}");
    }

    /// Reads until the server's close frame and returns its code.
    pub async fn close_code(&mut self) -> Option<CloseCode> {
        within(MAX_WAIT, "a close frame", async {
            loop {
                match self.inner.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => panic!("WebSocket error before the close frame: {e}"),
                    None => panic!("stream ended without a close frame"),
                }
            }
        })
        .await
    }

    /// Handshakes over the socket and returns the clientId.
    pub async fn handshake(&mut self) -> String {
        let mut hs = msg_handshake();
        hs["supportedConnectionTypes"] = json!(["websocket"]);
        self.send_json(&hs).await;
        let reply = self.recv().await;
        assert_eq!(reply.len(), 1, "{reply:?}");
        assert_eq!(reply[0]["successful"], json!(true), "{reply:?}");
        reply[0]["clientId"].as_str().expect("clientId").to_owned()
    }

    /// Sends a websocket `/meta/connect` (held for the route timeout) and
    /// waits until the server processed it, so the socket is bound.
    pub async fn bind(&mut self, client_id: &str) {
        self.send_json(&msg_connect_ws(client_id)).await;
        self.sync().await;
    }
}

// === EventSource ===

/// An open EventSource response.
pub struct Sse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    body: Incoming,
    buf: Vec<u8>,
    _conn: Conn,
}

impl Sse {
    /// The next block of the stream (text up to a blank line, `\r\n\r\n`
    /// excluded), within `limit`.
    pub async fn next_block(&mut self, limit: Duration) -> String {
        within(limit, "an EventSource block", async {
            loop {
                if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let block: Vec<u8> = self.buf.drain(..pos + 4).collect();
                    return String::from_utf8(block[..pos].to_vec()).expect("UTF-8 stream");
                }
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => panic!("EventSource stream failed: {e}"),
                    None => panic!("EventSource stream ended"),
                }
            }
        })
        .await
    }

    /// Reads raw bytes until at least `n` are buffered, within `limit`, and
    /// returns the first `n`.
    pub async fn first_bytes(&mut self, n: usize, limit: Duration) -> Vec<u8> {
        within(limit, "EventSource bytes", async {
            while self.buf.len() < n {
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => panic!("EventSource stream failed: {e}"),
                    None => panic!("EventSource stream ended"),
                }
            }
        })
        .await;
        self.buf[..n].to_vec()
    }
}

// === messages ===

/// A valid handshake request.
pub fn msg_handshake() -> Value {
    json!({
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling", "websocket"],
    })
}

/// A long-polling connect without advice (held for the server timeout).
pub fn msg_connect(client_id: &str) -> Value {
    json!({"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"})
}

/// A long-polling connect held for `ms` milliseconds at most.
pub fn msg_connect_hold(client_id: &str, ms: u64) -> Value {
    let mut m = msg_connect(client_id);
    m["advice"] = json!({"timeout": ms});
    m
}

/// A websocket connect without advice.
pub fn msg_connect_ws(client_id: &str) -> Value {
    json!({"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"})
}

/// A subscribe request.
pub fn msg_subscribe(client_id: &str, subscription: Value) -> Value {
    json!({"channel": "/meta/subscribe", "clientId": client_id, "subscription": subscription})
}

/// An unsubscribe request.
pub fn msg_unsubscribe(client_id: &str, subscription: Value) -> Value {
    json!({"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": subscription})
}

/// A publish without a session.
pub fn msg_publish(channel: &str, data: Value) -> Value {
    json!({"channel": channel, "data": data})
}

/// The delivered events among `replies`: messages without `successful`.
pub fn events(replies: &[Value]) -> Vec<Value> {
    replies
        .iter()
        .filter(|m| m.get("successful").is_none())
        .cloned()
        .collect()
}

/// The `data` of each event, in order.
pub fn data_of(events: &[Value]) -> Vec<Value> {
    events.iter().map(|e| e["data"].clone()).collect()
}

/// The success advice for a server timeout of `timeout_ms`.
pub fn retry_advice(timeout_ms: u64) -> Value {
    json!({"reconnect": "retry", "interval": 0, "timeout": timeout_ms})
}
