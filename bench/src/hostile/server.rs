//! Server instances under test: started under `prlimit` with a capped address space,
//! their resident memory sampled every 50 ms, checked for death, stopped by PID.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use crate::net::Res;
use crate::procfs;
use crate::raw;

/// How to start one kind of instance.
#[derive(Clone)]
pub struct Spec {
    /// `main`, `limits` or `fd`: names the ready file and the log.
    pub name: String,
    /// The server binary.
    pub bin: PathBuf,
    /// Its routes.toml.
    pub config: PathBuf,
    /// Folder for the ready file and the log (the log is appended to across restarts).
    pub work: PathBuf,
    /// Address-space cap in bytes (`prlimit --as`).
    pub as_bytes: u64,
    /// Open-files cap (`prlimit --nofile`), if any.
    pub nofile: Option<u64>,
}

impl Spec {
    /// The log file (stdout and stderr of every start).
    pub fn log(&self) -> PathBuf {
        self.work.join(format!("{}.log", self.name))
    }
}

/// Resident memory readings of one process, in KiB.
#[derive(Default)]
pub struct Gauge {
    cur: AtomicU64,
    peak: AtomicU64,
    max: AtomicU64,
    /// Highest VmSize (address space) of the process's life.
    vm_max: AtomicU64,
}

impl Gauge {
    fn record_vm(&self, kib: u64) {
        self.vm_max.fetch_max(kib, Relaxed);
    }

    /// Highest address-space reading of this process's life, KiB.
    pub fn vm_max(&self) -> u64 {
        self.vm_max.load(Relaxed)
    }

    fn record(&self, kib: u64) {
        self.cur.store(kib, Relaxed);
        self.peak.fetch_max(kib, Relaxed);
        self.max.fetch_max(kib, Relaxed);
    }

    /// Latest reading.
    pub fn cur(&self) -> u64 {
        self.cur.load(Relaxed)
    }

    /// Highest reading since the last [`Gauge::reset_peak`].
    pub fn peak(&self) -> u64 {
        self.peak.load(Relaxed)
    }

    /// Highest reading of this process's life.
    pub fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }

    /// Starts a new peak window at the current reading.
    pub fn reset_peak(&self) {
        self.peak.store(self.cur(), Relaxed);
    }
}

/// A running server.
pub struct Instance {
    /// How it was started.
    pub spec: Spec,
    child: Child,
    /// Process id (prlimit execs the server, so this is the server's).
    pub pid: u32,
    /// The plain listener.
    pub http: SocketAddr,
    /// The TLS listener.
    pub https: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// Its memory.
    pub rss: Arc<Gauge>,
    sampler: JoinHandle<()>,
    /// How it ended, once it has.
    pub ended: Option<String>,
    /// Where this life's lines start in the log.
    log_from: u64,
}

/// Fields of the ready file.
#[derive(serde::Deserialize)]
struct Ready {
    pid: u32,
    listeners: std::collections::HashMap<String, String>,
    admin: Option<String>,
}

impl Instance {
    /// Starts the server and waits (at most 30 s) for its ready file.
    pub async fn start(spec: &Spec) -> Res<Instance> {
        let ready_path = spec.work.join(format!("{}.ready.json", spec.name));
        let _ = std::fs::remove_file(&ready_path);
        let log_from = std::fs::metadata(spec.log()).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log())
            .map_err(|e| format!("opening {}: {e}", spec.log().display()))?;
        let log2 = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--as={}", spec.as_bytes));
        if let Some(n) = spec.nofile {
            cmd.arg(format!("--nofile={n}:{n}"));
        }
        cmd.arg("--")
            .arg(&spec.bin)
            .arg("--config")
            .arg(&spec.config)
            .arg("--ready-file")
            .arg(&ready_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", spec.bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_path) {
                if let Ok(r) = serde_json::from_str::<Ready>(&text) {
                    break r;
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "{} server {} during start-up; log: {}",
                    spec.name,
                    describe_exit(st),
                    log_tail(spec, log_from, 3)
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(format!(
                    "{} server wrote no ready file within 30 s",
                    spec.name
                ));
            }
            sleep(Duration::from_millis(50)).await;
        };
        let addr = |name: &str| -> Res<SocketAddr> {
            ready
                .listeners
                .get(name)
                .ok_or_else(|| format!("ready file has no listener {name:?}"))?
                .parse()
                .map_err(|e| format!("listener {name}: {e}"))
        };
        let http = addr("http")?;
        let https = addr("https")?;
        let admin: SocketAddr = ready
            .admin
            .as_deref()
            .ok_or("ready file has no admin address")?
            .parse()
            .map_err(|e| format!("admin address: {e}"))?;
        for a in [http, https, admin] {
            if !a.ip().is_loopback() {
                return Err(format!("refusing non-loopback listener {a}"));
            }
        }
        let pid = ready.pid;
        let rss = Arc::new(Gauge::default());
        let g = rss.clone();
        let pid_s = pid.to_string();
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                match status_kib(&pid_s) {
                    Some((rss, vm)) => {
                        g.record(rss);
                        g.record_vm(vm);
                    }
                    None => break,
                }
            }
        });
        // A first reading before anyone uses it.
        if let Some(kib) = procfs::rss_kib(&pid.to_string()) {
            rss.record(kib);
        }
        Ok(Instance {
            spec: spec.clone(),
            child,
            pid,
            http,
            https,
            admin,
            rss,
            sampler,
            ended: None,
            log_from,
        })
    }

    /// `Some(how)` once the process has ended.
    pub fn exited(&mut self) -> Option<String> {
        if self.ended.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.ended = Some(describe_exit(st));
            }
        }
        self.ended.clone()
    }

    /// Whether the process is running and `/healthz` answers 200 within 2 s.
    pub async fn health(&mut self) -> (bool, String) {
        if let Some(how) = self.exited() {
            return (false, how);
        }
        (true, healthz(self.admin, Duration::from_secs(2)).await)
    }

    /// The last `n` lines this life wrote to the log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.spec, self.log_from, n)
    }

    /// Stops sampling a process that has ended.
    pub fn reap(&mut self) {
        self.sampler.abort();
        let _ = self.exited();
    }

    /// SIGTERM, then at most 15 s for the drain; SIGKILL after that.
    pub async fn stop(mut self) -> String {
        self.sampler.abort();
        if let Some(how) = self.exited() {
            return format!("had already {how}");
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        match timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(st)) => describe_exit(st),
            _ => {
                let _ = self.child.kill().await;
                "did not stop within 15 s of SIGTERM; killed".into()
            }
        }
    }
}

/// `GET /healthz` on the admin listener: `200`, another status, or why not.
pub async fn healthz(admin: SocketAddr, limit: Duration) -> String {
    match raw::http_once(admin, "GET", "/healthz", &[], None, limit).await {
        Ok((code, _)) => code.to_string(),
        Err(e) => e,
    }
}

/// VmRSS and VmSize of a process, KiB, from /proc/PID/status.
fn status_kib(pid: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmSize:").unwrap_or(0)))
}

/// Sums every series of a Prometheus gauge from the admin `/metrics` (all routes).
pub async fn metric(admin: SocketAddr, name: &str) -> Option<u64> {
    let (code, body) = raw::http_once(admin, "GET", "/metrics", &[], None, Duration::from_secs(2))
        .await
        .ok()?;
    if code != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&body);
    let mut sum = 0f64;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if rest.starts_with('{') || rest.starts_with(' ') {
            sum += rest.rsplit(' ').next()?.parse::<f64>().ok()?;
        }
    }
    Some(sum as u64)
}

/// `exited 0`, `killed by SIGABRT`, ….
pub fn describe_exit(st: ExitStatus) -> String {
    if let Some(sig) = st.signal() {
        let name = match sig {
            6 => "SIGABRT",
            9 => "SIGKILL",
            11 => "SIGSEGV",
            15 => "SIGTERM",
            7 => "SIGBUS",
            _ => "",
        };
        format!("killed by signal {sig} {name}")
            .trim_end()
            .to_string()
    } else {
        format!("exited {}", st.code().unwrap_or(-1))
    }
}

/// The last `n` non-empty lines of a log written since byte `from`, joined by ` | `.
pub fn log_tail(spec: &Spec, from: u64, n: usize) -> String {
    let text = read_tail(&spec.log(), from, 64 * 1024);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| raw::excerpt(l.trim(), 160))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn read_tail(path: &std::path::Path, from: u64, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max).max(from)));
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Size in bytes and lines of a log, and how many lines hold ` WARN `.
#[derive(Clone, Copy, Default)]
pub struct LogCount {
    /// Bytes.
    pub bytes: u64,
    /// Lines.
    pub lines: u64,
    /// WARN lines.
    pub warns: u64,
}

/// Counts a log file (read in chunks; the file may be large).
pub fn count_log(spec: &Spec) -> LogCount {
    use std::io::{BufRead, BufReader};
    let mut c = LogCount::default();
    let Ok(f) = std::fs::File::open(spec.log()) else {
        return c;
    };
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut line = Vec::new();
    while let Ok(n) = r.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        c.bytes += n as u64;
        c.lines += 1;
        if raw::find(&line, b"WARN").is_some() {
            c.warns += 1;
        }
        line.clear();
    }
    c
}

/// KiB as MB text.
pub fn mb(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}
