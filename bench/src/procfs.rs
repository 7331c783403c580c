//! CPU time and resident memory read from /proc, and the open-files limit.

use std::fs;

/// Clock ticks per second used by /proc/PID/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system, all threads) of a process, from /proc/PID/stat.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) ppid(1) … utime is field 14 of the full line, index 11 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Resident set size in KiB, from /proc/PID/status (VmRSS).
pub fn rss_kib(pid: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A server process being measured (all readings optional: the PID may be absent).
#[derive(Clone)]
pub struct Server {
    pid: Option<String>,
}

/// One reading of a server's counters.
#[derive(Clone, Copy, Default)]
pub struct Sample {
    /// CPU seconds so far.
    pub cpu: Option<f64>,
    /// Resident memory in KiB.
    pub rss: Option<u64>,
}

impl Server {
    /// A server known by PID, or none.
    pub fn new(pid: Option<u32>) -> Server {
        Server {
            pid: pid.map(|p| p.to_string()),
        }
    }

    /// Reads CPU time and RSS now.
    pub fn sample(&self) -> Sample {
        match &self.pid {
            None => Sample::default(),
            Some(pid) => Sample {
                cpu: cpu_seconds(pid),
                rss: rss_kib(pid),
            },
        }
    }
}

/// This process's CPU seconds.
pub fn own_cpu() -> f64 {
    cpu_seconds("self").unwrap_or(0.0)
}

/// Raises the soft open-files limit as far as the hard limit allows; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024),
    }
}
