//! `hostile`: attacks a bayeux-edge release build the way an unauthenticated client
//! could, while 20 WebSocket subscribers receive a numbered stream; reports per attack
//! what was sent, what the server answered, its memory and whether it lived, and at the
//! end what the subscribers lost. `scripts/hostile` builds and runs it.
//!
//! The tool starts the servers itself (under `prlimit`, so the address-space cap and a
//! low open-files limit apply to the server alone), restarts the main one after a death
//! and goes on, and stops every server by its PID. Only loopback listeners are used.

#[allow(dead_code)]
#[path = "../bayeux.rs"]
mod bayeux;
#[allow(dead_code)]
#[path = "../net.rs"]
mod net;
#[allow(dead_code)]
#[path = "../procfs.rs"]
mod procfs;

mod attacks;
mod raw;
mod server;
mod stream;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

use crate::attacks::{Env, Outcome, ATTACKS};
use crate::net::{Res, Target, TlsOptions};
use crate::server::{mb, Instance, Spec};
use crate::stream::{Endpoint, Stream};

/// Attacks a bayeux-edge server and reports what it held and what it did not.
#[derive(Parser)]
#[command(name = "hostile", version)]
struct Cli {
    /// The server binary (a release build).
    #[arg(long)]
    server_bin: PathBuf,
    /// routes.toml of the main server: plain listener "http", TLS listener "https" and
    /// the admin listener, all on port 0, and the route `--prefix`.
    #[arg(long)]
    config: PathBuf,
    /// routes.toml with `max_connections = 200` and a short route timeout (WebSocket
    /// limits); same listener names.
    #[arg(long)]
    limits_config: PathBuf,
    /// The `timeout_secs` of the route in --limits-config.
    #[arg(long, default_value_t = 5.0)]
    limits_timeout_secs: f64,
    /// Folder for ready files and server logs.
    #[arg(long)]
    work_dir: PathBuf,
    /// open (anyone may publish) or secret (publishing needs the route's secret).
    #[arg(long, default_value = "open")]
    profile: String,
    /// Environment variable holding the publish secret (secret profile).
    #[arg(long)]
    secret_env: Option<String>,
    /// The route attacked.
    #[arg(long, default_value = "/production/faye")]
    prefix: String,
    /// Address-space cap of every server, bytes (prlimit --as).
    #[arg(long, default_value_t = 2_147_483_648)]
    as_bytes: u64,
    /// Open-files limit of the server started for fd-exhaustion.
    #[arg(long, default_value_t = 1024)]
    fd_nofile: u64,
    /// Run only these attacks (comma-separated; a name may be a prefix, e.g.
    /// channel-expansion).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Reduced sizes, for trying the tool out.
    #[arg(long)]
    quick: bool,
    /// Also write one JSON line per attack and a summary line to this file (appended).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Subscribers.
    #[arg(long, default_value_t = 20)]
    subscribers: usize,
    /// Stream publications per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How long to watch memory after the last attack, seconds.
    #[arg(long, default_value_t = 60)]
    settle_secs: u64,
    /// Restart the main server before every attack, so that each is measured on a
    /// fresh process (by default one process takes them all, restarted only when it dies).
    #[arg(long)]
    fresh: bool,
    /// List the attacks and exit.
    #[arg(long)]
    list: bool,
}

/// One attack's report row.
struct Row {
    name: String,
    outcome: Outcome,
    rss: (u64, u64, u64),
    server: String,
    died: bool,
    secs: f64,
}

struct Run {
    cli: Cli,
    secret: Option<String>,
    main_spec: Spec,
    limits_spec: Spec,
    fd_spec: Spec,
    tls_h2: Arc<rustls::ClientConfig>,
    json: std::sync::Mutex<Option<std::fs::File>>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        for (name, secret_only) in ATTACKS {
            println!(
                "{name}{}",
                if *secret_only {
                    " (secret profile only)"
                } else {
                    ""
                }
            );
        }
        return ExitCode::SUCCESS;
    }
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hostile: {e}");
            ExitCode::from(2)
        }
    }
}

fn selected(cli: &Cli, secret: bool) -> Vec<&'static str> {
    ATTACKS
        .iter()
        .filter(|(_, secret_only)| secret || !secret_only)
        .map(|(n, _)| *n)
        .filter(|n| cli.only.is_empty() || cli.only.iter().any(|o| n.starts_with(o.as_str())))
        .collect()
}

async fn run(cli: Cli) -> Res<bool> {
    let _ = procfs::raise_nofile();
    let secret = match cli.profile.as_str() {
        "open" => None,
        "secret" => {
            let var = cli
                .secret_env
                .as_deref()
                .ok_or("--profile secret needs --secret-env VAR")?;
            Some(std::env::var(var).map_err(|_| format!("{var} is not set"))?)
        }
        p => return Err(format!("unknown profile {p}: open or secret")),
    };
    let names = selected(&cli, secret.is_some());
    if names.is_empty() {
        return Err(format!("no attack matches --only {}", cli.only.join(",")));
    }
    std::fs::create_dir_all(&cli.work_dir)
        .map_err(|e| format!("{}: {e}", cli.work_dir.display()))?;
    let spec = |name: &str, config: &PathBuf, nofile: Option<u64>| Spec {
        name: format!("{}-{name}", cli.profile),
        bin: cli.server_bin.clone(),
        config: config.clone(),
        work: cli.work_dir.clone(),
        as_bytes: cli.as_bytes,
        nofile,
    };
    let main_spec = spec("main", &cli.config, None);
    let limits_spec = spec("limits", &cli.limits_config, None);
    let fd_spec = spec("fd", &cli.config, Some(cli.fd_nofile));
    let mut tls = Target::parse(
        "https://localhost:1/",
        &TlsOptions {
            ca: None,
            insecure: true,
        },
    )?
    .tls
    .map(|c| (*c).clone())
    .ok_or("no TLS configuration")?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let json = match &cli.json {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let r = Run {
        secret,
        main_spec,
        limits_spec,
        fd_spec,
        tls_h2: Arc::new(tls),
        json: std::sync::Mutex::new(json),
        cli,
    };
    r.go(names).await
}

impl Run {
    fn env(&self, main: &Instance) -> Env {
        Env {
            http: main.http,
            https: main.https,
            admin: main.admin,
            prefix: self.cli.prefix.clone(),
            secret: self.secret.clone(),
            quick: self.cli.quick,
            tls_h2: self.tls_h2.clone(),
            main_spec: self.main_spec.clone(),
            rss: main.rss.clone(),
            limits_spec: self.limits_spec.clone(),
            limits_timeout: Duration::from_secs_f64(self.cli.limits_timeout_secs),
            fd_spec: self.fd_spec.clone(),
        }
    }

    fn emit(&self, v: serde_json::Value) {
        if let Ok(mut guard) = self.json.lock() {
            if let Some(f) = guard.as_mut() {
                let _ = writeln!(f, "{v}");
            }
        }
    }

    async fn go(&self, names: Vec<&'static str>) -> Res<bool> {
        let cli = &self.cli;
        println!(
            "hostile: profile {} ({}), route {}, server address space capped at {} MiB, {}; {} attacks{}",
            cli.profile,
            if self.secret.is_some() {
                "publish = \"secret\""
            } else {
                "publish open"
            },
            cli.prefix,
            cli.as_bytes >> 20,
            match (cli.quick, cli.fresh) {
                (false, false) => "full sizes",
                (true, false) => "QUICK sizes",
                (false, true) => "full sizes, a fresh server for each attack",
                (true, true) => "QUICK sizes, a fresh server for each attack",
            },
            names.len(),
            if cli.only.is_empty() {
                String::new()
            } else {
                format!(" (--only {})", cli.only.join(","))
            }
        );
        let started = Instant::now();
        let mut main = Instance::start(&self.main_spec).await?;
        let mut lives = 1u64;
        let stream = Stream::start(cli.subscribers, &cli.prefix, self.secret.clone(), cli.rate);
        let ready = stream
            .begin_epoch(
                Endpoint {
                    epoch: lives,
                    http: main.http,
                },
                Duration::from_secs(30),
            )
            .await;
        println!(
            "main server pid {} on {} (TLS {}, admin {}); {ready}/{} subscribers on {} receiving {} msg/s; the stream's clients connect from {}, the attacks from 127.0.0.1, the victim of the lock-out from {}",
            main.pid,
            main.http,
            main.https,
            main.admin,
            cli.subscribers,
            stream::CHANNEL,
            cli.rate,
            stream::STREAM_IP,
            attacks::VICTIM_IP
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let run_before = main.rss.cur();
        let mut run_peak = main.rss.max();
        let mut deaths: Vec<String> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut not_run: Vec<&str> = Vec::new();
        let total = names.len();
        let mut lockout_ran = false;
        for (i, name) in names.iter().enumerate() {
            if main.exited().is_some() {
                not_run.extend(names[i..].iter().copied());
                break;
            }
            if cli.fresh && i > 0 {
                stream.quiesce().await;
                stream.mark_ended(lives, false);
                let fresh = Instance::start(&self.main_spec).await?;
                let old = std::mem::replace(&mut main, fresh);
                let _ = old.stop().await;
                lives += 1;
                stream
                    .begin_epoch(
                        Endpoint {
                            epoch: lives,
                            http: main.http,
                        },
                        Duration::from_secs(30),
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let env = self.env(&main);
            let before = main.rss.cur();
            main.rss.reset_peak();
            let t0 = Instant::now();
            let outcome = match tokio::time::timeout(
                Duration::from_secs(240),
                attacks::run(name, &env),
            )
            .await
            {
                Ok(o) => o,
                Err(_) => Outcome {
                    sent: String::new(),
                    answer: "the attack did not finish within 240 s (the tool gave up on it)"
                        .into(),
                    own: None,
                },
            };
            if *name == "handshake-lockout" {
                lockout_ran = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let after = main.rss.cur();
            let peak = main.rss.peak().max(after);
            run_peak = run_peak.max(main.rss.max());
            let (alive, health) = main.health().await;
            let secs = t0.elapsed().as_secs_f64();
            let mut server_text;
            let mut died = false;
            if alive {
                server_text = format!("alive, /healthz {health}");
            } else {
                died = true;
                let cause = death_cause(&main);
                server_text = format!(
                    "DIED: {health} (address space peaked at {} MB of the {} MB cap); log: {cause}",
                    mb(main.rss.vm_max()),
                    cli.as_bytes >> 20
                );
                deaths.push(format!("{name}: {health}; {cause}"));
                stream.pause();
                stream.mark_ended(lives, true);
                main.reap();
                match Instance::start(&self.main_spec).await {
                    Ok(m) => {
                        main = m;
                        lives += 1;
                        let ready = stream
                            .begin_epoch(
                                Endpoint {
                                    epoch: lives,
                                    http: main.http,
                                },
                                Duration::from_secs(30),
                            )
                            .await;
                        server_text.push_str(&format!(
                            "; restarted (life {lives}, pid {}), {ready}/{} subscribers back",
                            main.pid, cli.subscribers
                        ));
                    }
                    Err(e) => {
                        server_text.push_str(&format!("; restart FAILED: {e}"));
                        not_run.extend(names[i + 1..].iter().copied());
                        let row = Row {
                            name: name.to_string(),
                            outcome,
                            rss: (before, peak, after),
                            server: server_text,
                            died,
                            secs,
                        };
                        print_row(i + 1, total, &row);
                        self.emit_row(&row);
                        rows.push(row);
                        break;
                    }
                }
            }
            let row = Row {
                name: name.to_string(),
                outcome,
                rss: (before, peak, after),
                server: server_text,
                died,
                secs,
            };
            print_row(i + 1, total, &row);
            self.emit_row(&row);
            rows.push(row);
        }
        let run_after = main.rss.cur();
        run_peak = run_peak.max(main.rss.max());

        // Memory after the attacks (defect 7): a bounded watch, printed every 10 s.
        println!(
            "\nmemory after the last attack: {} s, then on (at most as long again) until the attack sessions have expired:",
            cli.settle_secs
        );
        let settle = Duration::from_secs(cli.settle_secs);
        let t0 = Instant::now();
        let mut settle_rss = None;
        let mut victim_later = None;
        let subscribers = cli.subscribers as u64;
        let (idle_rss, idle_at, idle_sessions) = loop {
            let el = t0.elapsed();
            let now = main.rss.cur();
            let sessions = server::metric(main.admin, "bayeux_edge_sessions").await;
            let subs = server::metric(main.admin, "bayeux_edge_subscriptions").await;
            let count = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
            let exited = main.exited().is_some();
            println!(
                "  +{:>3} s  RSS {} MB, {} sessions, {} subscriptions{}",
                el.as_secs(),
                mb(now),
                count(sessions),
                count(subs),
                if exited { " (server has exited)" } else { "" }
            );
            if el >= settle && settle_rss.is_none() {
                settle_rss = Some(now);
                if lockout_ran && !exited {
                    victim_later = Some(attacks::victim_handshake(&self.env(&main)).await);
                }
            }
            // A few stray sessions (the victim's handshakes) do not count.
            let quiet = sessions.is_some_and(|n| n <= subscribers + 5);
            if exited || (settle_rss.is_some() && (quiet || el >= settle * 2)) {
                break (now, el.as_secs(), sessions);
            }
            let next = if el < settle {
                settle - el
            } else {
                Duration::from_secs(10)
            };
            tokio::time::sleep(Duration::from_secs(10).min(next)).await;
        };
        let settle_rss = settle_rss.unwrap_or(idle_rss);

        stream.drain(Duration::from_secs(10)).await;
        let results = stream.results();
        let acked = stream.acked();
        let unacked = stream.unacked.load(std::sync::atomic::Ordering::Relaxed);
        stream.shutdown();
        let end_state = main.exited();
        let stopped = main.stop().await;

        let lost: u64 = results.iter().map(|r| r.lost).sum();
        let received: u64 = results.iter().map(|r| r.received).sum();
        let drops: u64 = results.iter().map(|r| r.drops).sum();
        let lost_at_death: u64 = results.iter().map(|r| r.lost_at_death).sum();
        println!("\n== summary: profile {} ==", cli.profile);
        println!(
            "{:<30} {:>20}  {:<8} answer",
            "attack", "RSS MB before/peak/after", "server"
        );
        for r in &rows {
            let (b, p, a) = match &r.outcome.own {
                Some(o) => o.rss,
                None => r.rss,
            };
            let own_died = r.outcome.own.as_ref().is_some_and(|o| o.died);
            println!(
                "{:<30} {:>20}  {:<8} {}",
                r.name,
                format!("{}/{}/{}", mb(b), mb(p), mb(a)),
                if r.died || own_died { "DIED" } else { "ok" },
                raw::excerpt(&r.outcome.answer, 110)
            );
        }
        for n in &not_run {
            println!("{n:<30} {:>20}  {:<8} not run (no server)", "-", "-");
        }
        println!(
            "\nstream: {} publications acknowledged ({} not acknowledged: refused or timed out), {} subscribers",
            acked,
            unacked,
            results.len()
        );
        println!(
            "messages expected {} received {} lost {} (per subscriber: expected {acked}){}",
            acked * results.len() as u64,
            received,
            lost,
            if lost_at_death > 0 {
                format!(
                    "; {lost_at_death} of the lost were acknowledged by a server that then died"
                )
            } else {
                String::new()
            }
        );
        for (i, r) in results.iter().enumerate() {
            if r.lost > 0 || r.drops > 0 || r.dups > 0 || r.unacked_received > 0 {
                println!(
                    "  subscriber {i:>2}: received {} lost {} duplicates {} unacknowledged-but-delivered {} connections dropped {}{}",
                    r.received,
                    r.lost,
                    r.dups,
                    r.unacked_received,
                    r.drops,
                    if r.last_error.is_empty() {
                        String::new()
                    } else {
                        format!(" (last: {})", raw::excerpt(&r.last_error, 80))
                    }
                );
            }
        }
        if lost == 0 {
            println!("  every subscriber received every acknowledged message");
        }
        println!(
            "server RSS: before {} MB, peak {} MB, after the attacks {} MB, {} s later {} MB, at +{idle_at} s {} MB with {} sessions ({} of them the stream's subscribers)",
            mb(run_before),
            mb(run_peak),
            mb(run_after),
            cli.settle_secs,
            mb(settle_rss),
            mb(idle_rss),
            idle_sessions.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            cli.subscribers
        );
        if let Some(v) = &victim_later {
            println!(
                "victim's handshake {} s after the lock-out: {v}",
                cli.settle_secs
            );
        }
        let own_deaths: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                r.outcome
                    .own
                    .as_ref()
                    .filter(|o| o.died)
                    .map(|o| format!("{} ({} server): {}", r.name, o.name, o.state))
            })
            .collect();
        println!(
            "server deaths: {}{}",
            deaths.len() + own_deaths.len(),
            if deaths.is_empty() && own_deaths.is_empty() {
                String::new()
            } else {
                format!(
                    " — {}",
                    deaths
                        .iter()
                        .chain(own_deaths.iter())
                        .map(|d| raw::excerpt(d, 140))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        );
        if let Some(e) = &end_state {
            println!("main server had exited at the end: {e}");
        }
        println!(
            "main server stopped: {stopped}; logs in {}; {:.0} s in all",
            self.cli.work_dir.display(),
            started.elapsed().as_secs_f64()
        );
        let ok = lost == 0
            && deaths.is_empty()
            && own_deaths.is_empty()
            && end_state.is_none()
            && not_run.is_empty();
        let summary = json!({
            "type": "summary",
            "profile": self.cli.profile,
            "quick": self.cli.quick,
            "attacks": rows.len(),
            "not_run": not_run,
            "acknowledged": acked,
            "unacknowledged": unacked,
            "subscribers": results.len(),
            "expected": acked * results.len() as u64,
            "received": received,
            "lost": lost,
            "lost_acknowledged_before_a_death": lost_at_death,
            "subscriber_drops": drops,
            "rss_kib": {"before": run_before, "peak": run_peak, "after": run_after, "settled": settle_rss, "settle_secs": self.cli.settle_secs, "idle": idle_rss, "idle_at_secs": idle_at, "idle_sessions": idle_sessions},
            "deaths": deaths,
            "own_server_deaths": own_deaths,
            "victim_handshake_after_settle": victim_later,
            "ok": ok,
        });
        self.emit(summary);
        println!(
            "verdict ({}): {}",
            self.cli.profile,
            if ok {
                "PASS: nothing lost, no server died"
            } else {
                "FAIL: messages lost or a server died"
            }
        );
        Ok(ok)
    }

    fn emit_row(&self, r: &Row) {
        let own = r.outcome.own.as_ref().map(|o| {
            json!({"server": o.name, "rss_kib": {"before": o.rss.0, "peak": o.rss.1, "after": o.rss.2}, "state": o.state, "died": o.died})
        });
        let v = json!({
            "type": "attack",
            "profile": self.cli.profile,
            "name": r.name,
            "sent": r.outcome.sent,
            "answer": r.outcome.answer,
            "main_rss_kib": {"before": r.rss.0, "peak": r.rss.1, "after": r.rss.2},
            "main_server": r.server,
            "main_died": r.died,
            "own_server": own,
            "secs": r.secs,
        });
        self.emit(v);
    }
}

/// The log lines that tell why the server died (an allocation failure, a panic), else
/// the last lines.
pub(crate) fn death_cause(inst: &Instance) -> String {
    let tail = inst.log_tail(12);
    let telling: Vec<&str> = tail
        .split(" | ")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("alloc")
                || l.contains("panick")
                || l.contains("fatal")
                || l.contains("abort")
        })
        .collect();
    if telling.is_empty() {
        inst.log_tail(2)
    } else {
        telling.join(" | ")
    }
}

fn print_row(i: usize, total: usize, r: &Row) {
    println!("\n[{i:>2}/{total}] {}  ({:.1} s)", r.name, r.secs);
    if !r.outcome.sent.is_empty() {
        println!("  sent     {}", r.outcome.sent);
    }
    println!("  answer   {}", r.outcome.answer);
    match &r.outcome.own {
        Some(o) => {
            println!(
                "  {} RSS {} -> peak {} -> {} MB; {}",
                o.name,
                mb(o.rss.0),
                mb(o.rss.1),
                mb(o.rss.2),
                o.state
            );
            println!(
                "  main     RSS {} -> {} MB; {}",
                mb(r.rss.0),
                mb(r.rss.2),
                r.server
            );
        }
        None => println!(
            "  server   RSS {} -> peak {} -> {} MB; {}",
            mb(r.rss.0),
            mb(r.rss.1),
            mb(r.rss.2),
            r.server
        ),
    }
}
