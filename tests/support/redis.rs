//! A real `redis-server` for one test: a free port found by binding and
//! releasing (Redis cannot be told to pick one), its own temporary directory,
//! killed by its PID when dropped. A port taken between the release and the
//! start is detected (the child exits) and another one is tried.
//!
//! When `redis-server` is missing the tests that need it are skipped, except
//! in the full run (`BAYEUX_EDGE_REQUIRE_ALL=1`), where that is a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A running `redis-server`.
pub struct RedisServer {
    pub port: u16,
    /// With [`RedisServer::start_tls`]: the TLS port (the plain `port` stays
    /// open on 127.0.0.1 for the test's own commands).
    pub tls_port: Option<u16>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A private CA and a certificate it signed for `localhost` and 127.0.0.1,
/// written as PEM files in a directory.
pub struct TestCa {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn write(dir: &std::path::Path) -> TestCa {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "bayeux-edge test CA");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("leaf params");
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = leaf
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("leaf certificate");
        let files = TestCa {
            ca_file: dir.join("redis-ca.pem"),
            cert_file: dir.join("redis.pem"),
            key_file: dir.join("redis.key"),
        };
        std::fs::write(&files.ca_file, ca_cert.pem()).expect("write CA");
        std::fs::write(&files.cert_file, cert.pem()).expect("write certificate");
        std::fs::write(&files.key_file, key.serialize_pem()).expect("write key");
        files
    }
}

/// The redis-server binary, or `None` (and a message) when the test must skip.
pub fn binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("BAYEUX_EDGE_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!(
                "redis-server is not installed (BAYEUX_EDGE_REQUIRE_ALL=1: every suite must run)"
            );
        }
        eprintln!("skipped: redis-server is not installed");
    }
    found
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts one, or returns `None` when redis-server is missing (see [`binary`]).
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(None).await
    }

    /// Starts one that also serves TLS with `ca`'s certificate (clients are
    /// not asked for one), or `None` as [`RedisServer::start`].
    pub async fn start_tls(ca: &TestCa) -> Option<RedisServer> {
        Self::start_with(Some(ca)).await
    }

    async fn start_with(tls: Option<&TestCa>) -> Option<RedisServer> {
        let bin = binary()?;
        let mut server = RedisServer {
            port: 0,
            tls_port: None,
            child: None,
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        if let Some(ca) = tls {
            let conf = format!(
                "tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n",
                ca.cert_file.display(),
                ca.key_file.display(),
                ca.ca_file.display()
            );
            std::fs::write(server.dir.path().join("tls.conf"), conf).expect("write tls.conf");
        }
        for _ in 0..10 {
            server.port = free_port();
            server.tls_port = tls.map(|_| free_port());
            if server.spawn(&bin).await {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// The `rediss://` URL of this server's TLS port, by name (the
    /// certificate's `localhost`).
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://localhost:{}/",
            self.tls_port.expect("a TLS server")
        )
    }

    /// The URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self, bin: &PathBuf) -> bool {
        let mut cmd = Command::new(bin);
        if self.tls_port.is_some() {
            cmd.arg(self.dir.path().join("tls.conf"));
        }
        if let Some(port) = self.tls_port {
            cmd.args(["--tls-port", &port.to_string()]);
        }
        let child = cmd
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return false;
                }
            }
            if self.ping().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    /// True when the server answers `PING`.
    pub async fn ping(&self) -> bool {
        self.command(&["PING"])
            .await
            .is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one command (RESP) and returns the raw reply text, or `None`.
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if complete(&out) {
                break;
            }
        }
        String::from_utf8(out).ok()
    }

    /// `calls` of one command from `INFO commandstats`.
    pub async fn calls(&self, command: &str) -> u64 {
        let info = self
            .command(&["INFO", "commandstats"])
            .await
            .unwrap_or_default();
        let key = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Kills the server (SIGKILL): its data is what the append-only file holds.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory (the data comes back).
    pub async fn restart(&mut self) {
        let bin = binary().expect("redis-server");
        for _ in 0..50 {
            if self.spawn(&bin).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }
}

/// True once `out` holds one whole RESP reply (simple forms, bulk, or a flat
/// reply read to its end for INFO).
fn complete(out: &[u8]) -> bool {
    match out.first() {
        Some(b'+') | Some(b'-') | Some(b':') => out.ends_with(b"\r\n"),
        Some(b'$') => {
            let Some(end) = out.windows(2).position(|w| w == b"\r\n") else {
                return false;
            };
            let len: i64 = std::str::from_utf8(&out[1..end])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            len < 0 || out.len() >= end + 2 + len as usize + 2
        }
        _ => !out.is_empty() && out.ends_with(b"\r\n"),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
