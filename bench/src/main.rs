//! Load generator for Faye-compatible Bayeux servers (WebSocket and long-polling), and for
//! the raw WebSocket broadcast ceiling in `src/bin/raw_ceiling.rs`.

mod bayeux;
mod clients;
mod metrics;
mod net;
mod procfs;
mod report;
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::clients::{Protocol, PublishVia};
use crate::net::{Res, Target, TlsOptions};
use crate::report::Report;
use crate::scenario::{Common, Delivery, Idle, Transport};

/// Load generator for Faye-compatible Bayeux servers.
///
/// Every run is bounded in messages and time, and only loopback addresses are accepted.
/// Latency is measured from the publish time stamped into each message to its receipt.
#[derive(Parser)]
#[command(name = "bayeux-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// S WebSocket subscribers on one channel, one publisher at a rate or flat out (windowed).
    Fanout(FanoutArgs),
    /// N WebSocket clients each on /users/{i}; a backend POSTs to random users.
    Users(UsersArgs),
    /// C clients that handshake, subscribe and keep a connect outstanding; set-up rate and
    /// server memory per connection.
    Idle(IdleArgs),
    /// Like fanout, with long-polling subscribers.
    Longpoll(FanoutArgs),
}

#[derive(Args)]
struct CommonArgs {
    /// Bayeux endpoint (the WebSocket URL is derived: ws:// or wss://, same path).
    #[arg(long, default_value = "http://127.0.0.1:8000/bench")]
    url: String,
    /// Protocol: bayeux, or raw for the raw broadcast ceiling.
    #[arg(long, value_enum, default_value_t = Protocol::Bayeux)]
    protocol: Protocol,
    /// Server PID: CPU seconds from /proc/PID/stat, RSS from /proc/PID/status.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON line on stdout (the text summary goes to stderr).
    #[arg(long)]
    json: bool,
    /// Runtime worker threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connections set up concurrently.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Bound on the whole set-up phase, seconds.
    #[arg(long, default_value_t = 120.0)]
    setup_timeout: f64,
    /// Bound on each request and set-up step, seconds.
    #[arg(long, default_value_t = 30.0)]
    step_timeout: f64,
    /// Time allowed for outstanding deliveries after publishing ends, seconds.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Padding bytes added to each message's data.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// PEM certificate(s) to trust for an https URL.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Accept any server certificate (loopback benchmarking only).
    #[arg(long)]
    tls_insecure: bool,
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Subscribers.
    #[arg(long, short = 's', default_value_t = 1000)]
    subscribers: usize,
    /// Messages per second; 0 = flat out (windowed).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Messages to publish at most.
    #[arg(long, default_value_t = 2000)]
    messages: u64,
    /// Publish phase limit, seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Flat out: publications in flight (not yet received by every subscriber).
    #[arg(long, default_value_t = 50)]
    window: u64,
    /// Publishers.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Publisher transport: ws pipelines publications on one WebSocket (acknowledgements
    /// read as they come); http sends one POST at a time per keep-alive connection.
    #[arg(long, value_enum, default_value_t = PublishVia::Ws)]
    publish_via: PublishVia,
    /// Channel.
    #[arg(long, default_value = "/bench/fanout")]
    channel: String,
}

#[derive(Args)]
struct UsersArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Users (WebSocket clients, each on /users/{i}).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    users: usize,
    /// Messages per second over all publishers; 0 = flat out (windowed).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Messages to publish at most.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Publish phase limit, seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Flat out: messages in flight (published, not yet received).
    #[arg(long, default_value_t = 2000)]
    window: u64,
    /// Backend publisher connections (keep-alive, in parallel).
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Publisher transport (a backend POSTs by default).
    #[arg(long, value_enum, default_value_t = PublishVia::Http)]
    publish_via: PublishVia,
    /// Messages per POST (a Bayeux message array), for backends that batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Clients.
    #[arg(long, short = 'c', default_value_t = 10_000)]
    clients: usize,
    /// Seconds to wait after set-up before reading the server's memory.
    #[arg(long, default_value_t = 3.0)]
    hold: f64,
    /// Channel all clients subscribe to.
    #[arg(long, default_value = "/bench/idle")]
    channel: String,
}

fn secs(x: f64, what: &str) -> Res<Duration> {
    Duration::try_from_secs_f64(x).map_err(|_| format!("--{what} must be a non-negative number"))
}

fn common(a: &CommonArgs) -> Res<Common> {
    let target = Target::parse(
        &a.url,
        &TlsOptions {
            ca: a.tls_ca.as_deref(),
            insecure: a.tls_insecure,
        },
    )?;
    Ok(Common {
        target,
        url: a.url.clone(),
        protocol: a.protocol,
        server_pid: a.server_pid,
        concurrency: a.concurrency,
        setup_timeout: secs(a.setup_timeout, "setup-timeout")?,
        step_timeout: secs(a.step_timeout, "step-timeout")?,
        drain: secs(a.drain, "drain")?,
        payload_pad: a.payload_bytes,
        threads: a.threads.max(1),
    })
}

fn delivery(name: &'static str, transport: Transport, a: &FanoutArgs) -> Res<Delivery> {
    if !(a.rate >= 0.0 && a.rate.is_finite()) {
        return Err("--rate must be a non-negative number".into());
    }
    Ok(Delivery {
        name,
        transport,
        subscribers: a.subscribers,
        channel: Some(a.channel.clone()),
        messages: a.messages,
        rate: a.rate,
        duration: secs(a.duration, "duration")?,
        window: a.window,
        publishers: a.publishers,
        publish_via: a.publish_via,
        batch: 1,
    })
}

fn common_args(cmd: &Cmd) -> &CommonArgs {
    match cmd {
        Cmd::Fanout(a) | Cmd::Longpoll(a) => &a.common,
        Cmd::Users(a) => &a.common,
        Cmd::Idle(a) => &a.common,
    }
}

async fn run(cmd: &Cmd) -> Res<Report> {
    let c = common(common_args(cmd))?;
    match cmd {
        Cmd::Fanout(a) => {
            scenario::delivery(&c, &delivery("fanout", Transport::WebSocket, a)?).await
        }
        Cmd::Longpoll(a) => {
            scenario::delivery(&c, &delivery("longpoll", Transport::LongPolling, a)?).await
        }
        Cmd::Users(a) => {
            if !(a.rate >= 0.0 && a.rate.is_finite()) {
                return Err("--rate must be a non-negative number".into());
            }
            let d = Delivery {
                name: "users",
                transport: Transport::WebSocket,
                subscribers: a.users,
                channel: None,
                messages: a.messages,
                rate: a.rate,
                duration: secs(a.duration, "duration")?,
                window: a.window,
                publishers: a.publishers,
                publish_via: a.publish_via,
                batch: a.batch.max(1),
            };
            if d.batch > 1 && (d.publish_via != PublishVia::Http || c.protocol != Protocol::Bayeux)
            {
                return Err("--batch needs --publish-via http and the Bayeux protocol".into());
            }
            scenario::delivery(&c, &d).await
        }
        Cmd::Idle(a) => {
            let spec = Idle {
                clients: a.clients,
                channel: a.channel.clone(),
                hold: secs(a.hold, "hold")?,
            };
            scenario::idle(&c, &spec).await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = common_args(&cli.cmd);
    let json = args.json;
    let threads = args.threads.max(1);
    let nofile = procfs::raise_nofile();
    let needed = match &cli.cmd {
        Cmd::Fanout(a) | Cmd::Longpoll(a) => a.subscribers + a.publishers,
        Cmd::Users(a) => a.users + a.publishers,
        Cmd::Idle(a) => a.clients + 1,
    } as u64;
    if needed + 32 > nofile {
        eprintln!(
            "warning: open-files limit {nofile} is below the {needed} connections needed; raise it (ulimit -n)"
        );
    }
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(run(&cli.cmd));
    // Subscriber tasks were aborted; do not wait for their sockets to close.
    rt.shutdown_background();
    match result {
        Ok(report) => {
            if json {
                eprint!("{}", report.text());
                match serde_json::to_string(&report) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("error: JSON: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", report.text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": e, "scenario": scenario_name(&cli.cmd)})
                );
            }
            ExitCode::from(1)
        }
    }
}

fn scenario_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Fanout(_) => "fanout",
        Cmd::Users(_) => "users",
        Cmd::Idle(_) => "idle",
        Cmd::Longpoll(_) => "longpoll",
    }
}
