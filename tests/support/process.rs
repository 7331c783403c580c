//! The server binary as a child process: its memory is its own (`/proc/PID`),
//! its log lines can be counted, and it can be started under resource limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{eventually, Http};

/// A running `bayeux-edge` child with a plain HTTP listener and the admin
/// listener, both on ports the OS picked. Killed when dropped.
pub struct Process {
    child: Child,
    /// The child's process id.
    pub pid: u32,
    /// The plain HTTP listener.
    pub http: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts the binary with `[server]` lines, `[defaults]` lines and
    /// `[[route]]` entries, optionally under a command such as `prlimit`.
    pub async fn start(wrapper: &[&str], server: &str, defaults: &str, routes: &str) -> Process {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("routes.toml");
        let ready = dir.path().join("ready.json");
        let log = dir.path().join("server.log");
        std::fs::write(
            &config,
            format!(
                "[server]\ndrain_grace_secs = 1\n{server}\n[[server.listener]]\nname = \"http\"\naddr = \"127.0.0.1:0\"\n[server.admin]\naddr = \"127.0.0.1:0\"\n[defaults]\n{defaults}\n{routes}\n"
            ),
        )
        .expect("write config");
        let bin = env!("CARGO_BIN_EXE_bayeux-edge");
        let (program, args): (&str, Vec<&str>) = match wrapper.split_first() {
            Some((first, rest)) => (first, rest.iter().copied().chain([bin]).collect()),
            None => (bin, Vec::new()),
        };
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start the server binary");
        let pid = child.id();
        eventually("the server's ready file", || async { ready.exists() }).await;
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&ready).expect("ready file")).expect("JSON");
        let addr = |v: &serde_json::Value| -> SocketAddr {
            v.as_str()
                .expect("address")
                .parse()
                .expect("socket address")
        };
        Process {
            http: addr(&doc["listeners"]["http"]),
            admin: addr(&doc["admin"]),
            pid,
            child,
            log,
            _dir: dir,
        }
    }

    /// A client for the route at `prefix`.
    pub fn client_at(&self, prefix: &str) -> Http {
        Http::plain(self.http, prefix)
    }

    /// The resident set size in bytes, from `/proc/PID/status`.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid).expect("the server process is alive")
    }

    /// Runs `work` while sampling the RSS every few milliseconds; returns the
    /// work's output and the highest RSS seen (bytes), so a burst that is
    /// freed before the work ends still counts.
    pub async fn peak_rss_during<F: std::future::Future>(&self, work: F) -> (F::Output, u64) {
        let pid = self.pid;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            let first = self.rss();
            std::thread::spawn(move || {
                let mut peak = first;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(rss) = rss_of(pid) {
                        peak = peak.max(rss);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                peak
            })
        };
        let out = work.await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().expect("sampler thread").max(self.rss());
        (out, peak)
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on the admin listener; the status code.
    pub async fn admin_status(&self, path: &str) -> u16 {
        Http::plain(self.admin, "")
            .get(path, &[])
            .await
            .status
            .as_u16()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}
