//! SIGHUP reloads the configuration, and TLS picks the certificate by SNI.
//! The SIGHUP test is alone in this binary on purpose: the signal goes to the
//! whole test process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bayeux_edge::config::Config;
use bayeux_edge::Server;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(10);

fn reloads_ok(server: &Server) -> u64 {
    let text = server
        .metrics()
        .render(&bayeux_edge::admin::route_stats(server.routes()), false);
    text.lines()
        .find_map(|l| l.strip_prefix("bayeux_edge_reloads_total{result=\"ok\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("reload counter present")
}

#[tokio::test]
async fn sighup_reloads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        "[[server.listener]]\nname = \"http\"\naddr = \"127.0.0.1:0\"\n[[route]]\nprefix = \"/a\"\n",
    )
    .unwrap();
    let server = Server::start(Config::load(&path).unwrap()).await.unwrap();
    assert_eq!(reloads_ok(&server), 0);

    // Our own listener keeps the default action (terminate) away from the test
    // process, and tells us each signal was delivered.
    let mut ours = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    // The file is unchanged, so only SIGHUP (which reloads unconditionally) can move the counter.
    while reloads_ok(&server) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP never reloaded"
        );
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(WAIT, ours.recv()).await.unwrap();
        // Give the server's reload task its turn before looking again.
        for _ in 0..100 {
            if reloads_ok(&server) > 0 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(reloads_ok(&server) >= 1);
    server.drain(Duration::from_secs(1)).await;
}

fn write_cert(dir: &std::path::Path, name: &str) -> CertificateDer<'static> {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), generated.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        generated.key_pair.serialize_pem(),
    )
    .unwrap();
    generated.cert.der().clone()
}

async fn peer_certificate(
    addr: std::net::SocketAddr,
    roots: &rustls::RootCertStore,
    sni: &str,
) -> CertificateDer<'static> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio::time::timeout(
        WAIT,
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp),
    )
    .await
    .unwrap()
    .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test]
async fn certificate_is_chosen_by_sni() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_cert(dir.path(), "a.test");
    let b = write_cert(dir.path(), "b.test");
    let text = r#"
[[server.listener]]
name = "https"
addr = "127.0.0.1:0"
certificates = [
  { cert = "a.test.crt", key = "a.test.key" },
  { cert = "b.test.crt", key = "b.test.key" },
]
[[route]]
prefix = "/a"
"#;
    let server = Server::start(Config::parse(text, "t.toml", dir.path()).unwrap())
        .await
        .unwrap();
    let addr = server.addr("https").unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(a.clone()).unwrap();
    roots.add(b.clone()).unwrap();
    assert_eq!(peer_certificate(addr, &roots, "b.test").await, b);
    assert_eq!(peer_certificate(addr, &roots, "a.test").await, a);
    server.drain(Duration::from_secs(1)).await;
}
