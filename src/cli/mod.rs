//! The command line: `serve` (the default), `check`, `publish` and `health`,
//! with logging, the runtime and exit codes. The binary (`src/main.rs`) only
//! picks the allocator and calls [`main`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, LogFormat};
use crate::Server;

mod client;

/// Exit code for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "bayeux-edge",
    version,
    about = "Faye-compatible Bayeux server and TLS edge"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// routes.toml to serve (default: ./routes.toml, else the embedded default).
    #[arg(long, env = "BAYEUX_EDGE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Write a JSON document with the pid and bound addresses here once listening.
    #[arg(long, global = true)]
    ready_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Validate routes.toml and its certificates without starting; exit 64 on errors.
    Check,
    /// Publish one message to a route by HTTP POST, as a backend does.
    Publish {
        /// The route URL, e.g. http://127.0.0.1:8000/staging/faye
        url: String,
        /// The channel, e.g. /12345
        channel: String,
        /// The message data as JSON, e.g. '{"text":"hi"}'
        data: String,
        /// Name of an environment variable holding the route's publish secret;
        /// sent as `Authorization: Bearer` and in `ext.secret`.
        #[arg(long)]
        secret_env: Option<String>,
        /// Extra CA certificate (PEM) to trust for https:// URLs, e.g. a development certificate.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Probe readiness; exit 0 when the admin endpoint answers 200.
    Health {
        /// The readiness URL.
        #[arg(
            long,
            env = "BAYEUX_EDGE_HEALTH_URL",
            default_value = "http://127.0.0.1:9090/readyz"
        )]
        url: String,
    },
}

fn load_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None if Path::new("routes.toml").exists() => Config::load(Path::new("routes.toml")),
        None => Config::parse(
            crate::DEFAULT_ROUTES,
            "<embedded routes.toml>",
            Path::new("."),
        ),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rustls warns about every client that sends an IP address as SNI (the Node
        // Faye client does); that is the client's quirk, not an operational fault.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    // Colours only for a person at a terminal, never in files or log pipelines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Parses the command line and runs the command; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bayeux-edge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(serve(cli.serve)),
        Command::Check => check(cli.serve.config.as_deref()),
        Command::Publish {
            url,
            channel,
            data,
            secret_env,
            ca,
        } => {
            let secret = match secret_env.map(|var| std::env::var(&var).map_err(|_| var)) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(var)) => {
                    eprintln!("environment variable {var} is not set");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            runtime.block_on(publish(
                &url,
                &channel,
                &data,
                secret.as_deref(),
                ca.as_deref(),
            ))
        }
        Command::Health { url } => runtime.block_on(health(&url)),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bayeux-edge: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_tracing(config.server.log_format);
    let grace = config.server.drain_grace;
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.ready_file {
        if let Err(e) = server.write_ready_file(path) {
            tracing::error!(error = %e, "cannot write the ready file");
            return ExitCode::FAILURE;
        }
    }
    crate::shutdown::signal().await;
    if server.drain(grace).await {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!("drain grace period ended with work still running; exiting");
    }
    ExitCode::SUCCESS
}

fn check(path: Option<&Path>) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut ok = true;
    for l in &config.server.listeners {
        if let Some(tls) = &l.tls {
            for files in &tls.certificates {
                let missing = !files.cert.exists() || !files.key.exists();
                if tls.dev_certificate && missing {
                    continue;
                }
                if let Err(e) = crate::net::tls::load_pair(files) {
                    eprintln!("listener {}: {e}", l.name);
                    ok = false;
                }
            }
        }
    }
    if ok {
        println!(
            "ok: {} route(s), {} listener(s)",
            config.routes.len(),
            config.server.listeners.len()
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

/// One request with a deadline; the body of a 200, else what went wrong is
/// printed and the command fails.
async fn exchange(
    limit: Duration,
    method: &str,
    url: &str,
    body: Option<String>,
    secret: Option<&str>,
    ca: Option<&Path>,
) -> Result<String, ExitCode> {
    let outcome = tokio::time::timeout(limit, client::request(method, url, body, secret, ca)).await;
    match outcome {
        Ok(Ok((200, reply))) => Ok(reply),
        Ok(Ok((status, reply))) => {
            eprintln!("{url}: {status} {}", reply.trim());
            Err(ExitCode::FAILURE)
        }
        Ok(Err(e)) => {
            eprintln!("{e}");
            Err(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!("{url}: timed out");
            Err(ExitCode::FAILURE)
        }
    }
}

async fn health(url: &str) -> ExitCode {
    match exchange(Duration::from_secs(5), "GET", url, None, None, None).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

async fn publish(
    url: &str,
    channel: &str,
    data: &str,
    secret: Option<&str>,
    ca: Option<&Path>,
) -> ExitCode {
    let data: serde_json::Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("data is not JSON: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut message = serde_json::json!({"channel": channel, "data": data});
    if let Some(secret) = secret {
        message["ext"] = serde_json::json!({ "secret": secret });
    }
    let body = message.to_string();
    let reply = match exchange(Duration::from_secs(10), "POST", url, Some(body), secret, ca).await {
        Ok(reply) => reply,
        Err(code) => return code,
    };
    let ok = serde_json::from_str::<serde_json::Value>(&reply)
        .ok()
        .and_then(|v| {
            v.get(0)
                .and_then(|r| r.get("successful"))
                .and_then(|s| s.as_bool())
        })
        .unwrap_or(false);
    println!("{reply}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
