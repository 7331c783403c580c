//! Endpoints, TCP/TLS streams, WebSocket and HTTP/1.1 keep-alive connections.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// Result type used across the generator: errors are reported as text.
pub type Res<T> = Result<T, String>;

/// Where the server under test listens.
#[derive(Clone)]
pub struct Target {
    /// Resolved address (loopback only).
    pub addr: SocketAddr,
    /// `host:port` for the Host header.
    pub authority: String,
    /// Endpoint path, e.g. `/bench` (never empty).
    pub path: String,
    /// TLS client configuration when the URL is `https`.
    pub tls: Option<Arc<ClientConfig>>,
    /// Name presented for SNI and certificate checks.
    pub server_name: ServerName<'static>,
}

/// TLS options from the command line.
pub struct TlsOptions<'a> {
    /// PEM file with the certificate(s) to trust.
    pub ca: Option<&'a Path>,
    /// Accept any server certificate (loopback benchmarking only).
    pub insecure: bool,
}

impl Target {
    /// Parses `http://127.0.0.1:PORT/path` or `https://…`; only loopback hosts are accepted.
    pub fn parse(url: &str, tls: &TlsOptions<'_>) -> Res<Target> {
        let uri: Uri = url.parse().map_err(|e| format!("bad --url {url}: {e}"))?;
        let secure = match uri.scheme_str() {
            Some("http") | Some("ws") => false,
            Some("https") | Some("wss") => true,
            _ => return Err(format!("--url must start with http:// or https://: {url}")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("--url has no host: {url}"))?;
        let host_trim = host.trim_start_matches('[').trim_end_matches(']');
        let ip: std::net::IpAddr = if host_trim == "localhost" {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            host_trim
                .parse()
                .map_err(|_| format!("--url host must be a loopback address: {host}"))?
        };
        if !ip.is_loopback() {
            return Err(format!(
                "refusing non-loopback target {ip}: this tool only loads this machine"
            ));
        }
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let mut path = uri.path().to_string();
        if path.is_empty() {
            path.push('/');
        }
        let tls = if secure {
            Some(Arc::new(client_config(tls)?))
        } else {
            None
        };
        let server_name = ServerName::try_from(host_trim.to_string())
            .map_err(|e| format!("bad server name {host_trim}: {e}"))?;
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            authority: format!("{host}:{port}"),
            path,
            tls,
            server_name,
        })
    }

    /// WebSocket URL for the same endpoint.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }

    /// Opens a TCP (and TLS, for https) connection.
    pub async fn connect(&self) -> Res<Stream> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(cfg) => {
                let tls = TlsConnector::from(cfg.clone())
                    .connect(self.server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.addr))?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    }

    /// Opens a WebSocket to the endpoint with small buffers.
    pub async fn websocket(&self) -> Res<WebSocketStream<Stream>> {
        let stream = self.connect().await?;
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(
            self.ws_url(),
            stream,
            Some(small_ws_config()),
        )
        .await
        .map_err(|e| format!("WebSocket upgrade: {e}"))?;
        Ok(ws)
    }

    /// Opens a keep-alive HTTP/1.1 connection.
    pub async fn http(&self) -> Res<HttpConn> {
        let stream = self.connect().await?;
        HttpConn::handshake(stream, self.authority.clone()).await
    }
}

/// WebSocket buffer sizes suited to many mostly idle connections.
pub fn small_ws_config() -> WebSocketConfig {
    let mut cfg = WebSocketConfig::default();
    cfg.read_buffer_size = 8 * 1024;
    cfg.write_buffer_size = 0;
    cfg.max_message_size = Some(64 << 20);
    cfg
}

/// A client stream, plain or TLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One keep-alive HTTP/1.1 connection (requests are sent one at a time).
pub struct HttpConn {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl HttpConn {
    /// Speaks HTTP/1.1 over an already connected `io`, naming `authority` in `Host`.
    pub async fn handshake<S>(io: S, authority: String) -> Res<HttpConn>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HttpConn { sender, authority })
    }

    /// POSTs a JSON body and returns status and body, bounded by `limit`.
    pub async fn post(&mut self, path: &str, body: Bytes, limit: Duration) -> Res<(u16, Bytes)> {
        let fut = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("HTTP connection closed: {e}"))?;
            let req = Request::post(path)
                .header(HOST, self.authority.as_str())
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .map_err(|e| format!("building request: {e}"))?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| format!("HTTP request: {e}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("HTTP body: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| format!("HTTP POST {path}: no response within {limit:?}"))?
    }
}

fn client_config(opts: &TlsOptions<'_>) -> Res<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let cfg = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let ca = opts
            .ca
            .ok_or("an https --url needs --tls-ca FILE (or --tls-insecure)")?;
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("reading {}: {e}", ca.display()))?
        {
            let cert = cert.map_err(|e| format!("parsing {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("trusting {}: {e}", ca.display()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(cfg)
}

/// Certificate verifier that accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
