//! `routes.toml`: the raw serde types and their validation into a [`Config`].
//!
//! The raw types deny unknown keys and never leave this module. Every error
//! names the file, the line and the key (and the route prefix when there is one),
//! so a typo in production is caught by `bayeux-edge check` or by a reload that
//! keeps the running table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::engine::{EngineSettings, PublishPolicy, Secret};

/// A `routes.toml` that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{file}:{line}: {context}`{key}`: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// `route "/x": ` or `server: `.
        context: String,
        /// The key.
        key: String,
        /// Why it is rejected.
        reason: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One certificate and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// TLS settings of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// Certificates; the one whose names match the SNI is chosen, else the first.
    pub certificates: Vec<CertFiles>,
    /// Generate a self-signed localhost certificate into the first pair of files
    /// when they are missing (development only).
    pub dev_certificate: bool,
}

/// One client-facing listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Name, used in logs, metrics and the ready file.
    pub name: String,
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// TLS when present, plain HTTP otherwise.
    pub tls: Option<TlsSpec>,
}

/// Process-wide settings from `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Client-facing listeners.
    pub listeners: Vec<ListenerSpec>,
    /// Admin listener (health, readiness, metrics).
    pub admin: Option<SocketAddr>,
    /// How long a drain may take after SIGTERM. Default 20 s.
    pub drain_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// A directory holding the Faye browser bundle, overriding the embedded one.
    pub client_dir: Option<PathBuf>,
    /// Most concurrent connections per listener. Default: 50 000, or less
    /// when the open-files limit does not allow that many (see `Server::start`).
    pub max_connections: Option<usize>,
    /// Time allowed for a TLS handshake. Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (also bounds a request
    /// body, and one WebSocket message from its first byte). Default 30 s.
    pub header_read_timeout: Duration,
    /// How long a connection may go without the peer reading anything while a
    /// write is waiting; it is closed after that. Default 30 s.
    pub write_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (for the per-address
    /// limits). Default: none, the TCP peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Most concurrent connections to the admin listener. Default 64.
    pub admin_max_connections: usize,
}

/// One validated `[[route]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    /// Path prefix such as `/staging/faye`.
    pub prefix: String,
    /// Engine tunables (defaults merged with the route's own keys).
    pub settings: EngineSettings,
    /// Forward to this HTTP upstream instead of serving with an engine.
    pub upstream: Option<http::Uri>,
}

/// A validated `routes.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was read from (for reload and messages); `None` for embedded text.
    pub path: Option<PathBuf>,
    /// `[server]`.
    pub server: ServerSettings,
    /// `[[route]]` entries in file order.
    pub routes: Vec<RouteSpec>,
}

macro_rules! tunables {
    ($(#[$meta:meta])* $name:ident { $($extra:ident : $ety:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($extra: $ety,)*
            timeout_secs: Option<Spanned<f64>>,
            interval_secs: Option<Spanned<f64>>,
            max_message_bytes: Option<Spanned<u64>>,
            max_queue_messages: Option<Spanned<u64>>,
            max_queue_bytes: Option<Spanned<u64>>,
            max_subscriptions: Option<Spanned<u64>>,
            max_total_subscriptions: Option<Spanned<u64>>,
            max_clients: Option<Spanned<u64>>,
            max_sessions_per_ip: Option<Spanned<u64>>,
            handshake_rate_per_ip: Option<Spanned<f64>>,
            handshake_burst_per_ip: Option<Spanned<u64>>,
            first_connect_timeout_secs: Option<Spanned<f64>>,
            max_batch_messages: Option<Spanned<u64>>,
            max_channel_bytes: Option<Spanned<u64>>,
            max_channel_segments: Option<Spanned<u64>>,
            ws_ping_secs: Option<Spanned<f64>>,
            eventsource_ping_secs: Option<Spanned<f64>>,
            publish: Option<Spanned<String>>,
            publish_secret_env: Option<Spanned<String>>,
        }
    };
}

tunables!(
    #[derive(Default)]
    RawDefaults {}
);
tunables!(RawRoute { prefix: Spanned<String>, upstream: Option<Spanned<String>>, });

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    listener: Vec<RawListener>,
    admin: Option<RawAdmin>,
    drain_grace_secs: Option<Spanned<f64>>,
    log_format: Option<Spanned<String>>,
    client_dir: Option<String>,
    max_connections: Option<Spanned<u64>>,
    tls_handshake_timeout_secs: Option<Spanned<f64>>,
    header_read_timeout_secs: Option<Spanned<f64>>,
    write_timeout_secs: Option<Spanned<f64>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: Spanned<String>,
    addr: Spanned<String>,
    #[serde(default)]
    certificates: Vec<RawCert>,
    #[serde(default)]
    dev_certificate: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCert {
    cert: String,
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    addr: Spanned<String>,
    max_connections: Option<Spanned<u64>>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    base: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    fn invalid(
        &self,
        offset: usize,
        context: &str,
        key: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line(offset),
            context: context.to_owned(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

fn secs(
    ctx: &Ctx<'_>,
    v: &Spanned<f64>,
    context: &str,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Duration, ConfigError> {
    let x = *v.get_ref();
    if !x.is_finite() || x < min || x > max {
        return Err(ctx.invalid(
            v.span().start,
            context,
            key,
            format!("must be between {min} and {max} seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(x))
}

fn count(
    ctx: &Ctx<'_>,
    v: &Spanned<u64>,
    context: &str,
    key: &str,
    min: u64,
    max: u64,
) -> Result<usize, ConfigError> {
    let x = *v.get_ref();
    if x < min || x > max {
        return Err(ctx.invalid(
            v.span().start,
            context,
            key,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(x as usize)
}

macro_rules! apply_tunables {
    ($ctx:expr, $raw:expr, $base:expr, $context:expr) => {{
        let ctx = $ctx;
        let raw = $raw;
        let context: &str = $context;
        let mut s: EngineSettings = $base.clone();
        if let Some(v) = &raw.timeout_secs {
            s.timeout = secs(ctx, v, context, "timeout_secs", 0.1, 3600.0)?;
        }
        if let Some(v) = &raw.interval_secs {
            s.interval = secs(ctx, v, context, "interval_secs", 0.0, 3600.0)?;
        }
        if let Some(v) = &raw.max_message_bytes {
            s.max_message_bytes = count(ctx, v, context, "max_message_bytes", 1024, 64 << 20)?;
        }
        if let Some(v) = &raw.max_queue_messages {
            s.max_queue_messages = count(ctx, v, context, "max_queue_messages", 1, 1_000_000)?;
        }
        if let Some(v) = &raw.max_queue_bytes {
            s.max_queue_bytes = count(ctx, v, context, "max_queue_bytes", 1024, 1 << 30)?;
        }
        if let Some(v) = &raw.max_subscriptions {
            s.max_subscriptions = count(ctx, v, context, "max_subscriptions", 1, 1_000_000)?;
        }
        if let Some(v) = &raw.max_total_subscriptions {
            s.max_total_subscriptions =
                count(ctx, v, context, "max_total_subscriptions", 1, 100_000_000)?;
        }
        if let Some(v) = &raw.max_clients {
            s.max_clients = count(ctx, v, context, "max_clients", 1, 10_000_000)?;
        }
        if let Some(v) = &raw.max_sessions_per_ip {
            s.max_sessions_per_ip = count(ctx, v, context, "max_sessions_per_ip", 1, 10_000_000)?;
        }
        if let Some(v) = &raw.handshake_rate_per_ip {
            let x = *v.get_ref();
            if !x.is_finite() || !(0.01..=1_000_000.0).contains(&x) {
                return Err(ctx.invalid(
                    v.span().start,
                    context,
                    "handshake_rate_per_ip",
                    "must be between 0.01 and 1000000 per second",
                ));
            }
            s.handshake_rate_per_ip = x;
        }
        if let Some(v) = &raw.handshake_burst_per_ip {
            s.handshake_burst_per_ip =
                count(ctx, v, context, "handshake_burst_per_ip", 1, 10_000_000)? as f64;
        }
        if let Some(v) = &raw.first_connect_timeout_secs {
            s.first_connect_timeout =
                secs(ctx, v, context, "first_connect_timeout_secs", 1.0, 3600.0)?;
        }
        if let Some(v) = &raw.max_batch_messages {
            s.max_batch_messages = count(ctx, v, context, "max_batch_messages", 1, 1_000_000)?;
        }
        if let Some(v) = &raw.max_channel_bytes {
            s.max_channel_bytes = count(ctx, v, context, "max_channel_bytes", 16, 65_536)?;
        }
        if let Some(v) = &raw.max_channel_segments {
            s.max_channel_segments = count(ctx, v, context, "max_channel_segments", 1, 1024)?;
        }
        if let Some(v) = &raw.ws_ping_secs {
            let d = secs(ctx, v, context, "ws_ping_secs", 0.0, 3600.0)?;
            s.ws_ping = (!d.is_zero()).then_some(d);
        }
        if let Some(v) = &raw.eventsource_ping_secs {
            s.eventsource_ping = secs(ctx, v, context, "eventsource_ping_secs", 0.1, 3600.0)?;
        }
        if raw.publish.is_some() || raw.publish_secret_env.is_some() {
            s.publish = publish_policy(
                ctx,
                raw.publish.as_ref(),
                raw.publish_secret_env.as_ref(),
                context,
            )?;
        }
        s
    }};
}

fn publish_policy(
    ctx: &Ctx<'_>,
    policy: Option<&Spanned<String>>,
    secret_env: Option<&Spanned<String>>,
    context: &str,
) -> Result<PublishPolicy, ConfigError> {
    let at = policy.or(secret_env).map(|v| v.span().start).unwrap_or(0);
    match policy.map(|p| p.get_ref().as_str()) {
        Some("open") | Some("deny") if secret_env.is_some() => Err(ctx.invalid(
            at,
            context,
            "publish_secret_env",
            "only applies with publish = \"secret\"",
        )),
        Some("open") => Ok(PublishPolicy::Open),
        Some("deny") => Ok(PublishPolicy::Deny),
        Some("secret") | None => {
            let Some(var) = secret_env else {
                return Err(ctx.invalid(at, context, "publish_secret_env", "publish = \"secret\" needs the name of the environment variable holding the secret"));
            };
            match std::env::var(var.get_ref()) {
                Ok(v) if !v.is_empty() => Ok(PublishPolicy::Secret(Secret::new(&v))),
                _ => Err(ctx.invalid(
                    var.span().start,
                    context,
                    "publish_secret_env",
                    format!("environment variable {} is not set or empty", var.get_ref()),
                )),
            }
        }
        Some(_) => Err(ctx.invalid(
            at,
            context,
            "publish",
            "must be \"open\", \"secret\" or \"deny\"",
        )),
    }
}

/// Checks a route prefix: `/` alone, or `/`-separated non-empty segments of
/// URL-safe characters with no trailing slash.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix == "/" {
        return Ok(());
    }
    let Some(rest) = prefix.strip_prefix('/') else {
        return Err("must start with `/`");
    };
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err("must not contain empty segments or end with `/`");
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~'))
        {
            return Err("segments may only use letters, digits, `-`, `_` and `~`");
        }
    }
    Ok(())
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.display().to_string(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Config::parse(&text, &path.display().to_string(), &base)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validates text. `file` names it in errors; relative paths resolve against `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            line: e
                .span()
                .map(|s| {
                    text[..s.start.min(text.len())]
                        .bytes()
                        .filter(|b| *b == b'\n')
                        .count()
                        + 1
                })
                .unwrap_or(1),
            message: e.message().trim().to_owned(),
        })?;
        let ctx = Ctx { file, text, base };
        let server = build_server(&ctx, &raw.server)?;
        let defaults =
            apply_tunables!(&ctx, &raw.defaults, EngineSettings::default(), "defaults: ");
        let mut routes: Vec<RouteSpec> = Vec::new();
        for r in &raw.route {
            let prefix = r.prefix.get_ref().clone();
            let context = format!("route \"{prefix}\": ");
            check_prefix(&prefix)
                .map_err(|reason| ctx.invalid(r.prefix.span().start, &context, "prefix", reason))?;
            if routes.iter().any(|x| x.prefix == prefix) {
                return Err(ctx.invalid(
                    r.prefix.span().start,
                    &context,
                    "prefix",
                    "duplicate prefix",
                ));
            }
            let settings = apply_tunables!(&ctx, r, defaults, &context);
            let upstream = match &r.upstream {
                None => None,
                Some(u) => {
                    let uri: http::Uri = u.get_ref().parse().map_err(|_| {
                        ctx.invalid(
                            u.span().start,
                            &context,
                            "upstream",
                            "must be a URL such as http://10.0.0.5:9292/faye",
                        )
                    })?;
                    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                        return Err(ctx.invalid(
                            u.span().start,
                            &context,
                            "upstream",
                            "must be an http:// URL with a host",
                        ));
                    }
                    Some(uri)
                }
            };
            routes.push(RouteSpec {
                prefix,
                settings,
                upstream,
            });
        }
        Ok(Config {
            path: None,
            server,
            routes,
        })
    }
}

fn build_server(ctx: &Ctx<'_>, raw: &RawServer) -> Result<ServerSettings, ConfigError> {
    let c = "server: ";
    let mut listeners: Vec<ListenerSpec> = Vec::new();
    for l in &raw.listener {
        let name = l.name.get_ref().clone();
        if name.is_empty() || listeners.iter().any(|x| x.name == name) {
            return Err(ctx.invalid(
                l.name.span().start,
                c,
                "listener.name",
                "must be non-empty and unique",
            ));
        }
        let addr: SocketAddr = l.addr.get_ref().parse().map_err(|_| {
            ctx.invalid(
                l.addr.span().start,
                c,
                "listener.addr",
                "must be an IP address and port such as 0.0.0.0:8443",
            )
        })?;
        let tls = if l.certificates.is_empty() {
            if l.dev_certificate {
                return Err(ctx.invalid(
                    l.name.span().start,
                    c,
                    "listener.dev_certificate",
                    "needs `certificates` naming where to write the files",
                ));
            }
            None
        } else {
            Some(TlsSpec {
                certificates: l
                    .certificates
                    .iter()
                    .map(|p| CertFiles {
                        cert: ctx.path(&p.cert),
                        key: ctx.path(&p.key),
                    })
                    .collect(),
                dev_certificate: l.dev_certificate,
            })
        };
        listeners.push(ListenerSpec { name, addr, tls });
    }
    let admin = match &raw.admin {
        Some(a) => Some(a.addr.get_ref().parse().map_err(|_| {
            ctx.invalid(
                a.addr.span().start,
                c,
                "admin.addr",
                "must be an IP address and port such as 127.0.0.1:9090",
            )
        })?),
        None => None,
    };
    let log_format = match &raw.log_format {
        None => LogFormat::Text,
        Some(v) => match v.get_ref().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(ctx.invalid(
                    v.span().start,
                    c,
                    "log_format",
                    "must be \"text\" or \"json\"",
                ))
            }
        },
    };
    Ok(ServerSettings {
        listeners,
        admin,
        drain_grace: match &raw.drain_grace_secs {
            Some(v) => secs(ctx, v, c, "drain_grace_secs", 0.0, 600.0)?,
            None => Duration::from_secs(20),
        },
        log_format,
        client_dir: raw.client_dir.as_deref().map(|d| ctx.path(d)),
        max_connections: match &raw.max_connections {
            Some(v) => Some(count(ctx, v, c, "max_connections", 1, 10_000_000)?),
            None => None,
        },
        tls_handshake_timeout: match &raw.tls_handshake_timeout_secs {
            Some(v) => secs(ctx, v, c, "tls_handshake_timeout_secs", 0.1, 600.0)?,
            None => Duration::from_secs(10),
        },
        header_read_timeout: match &raw.header_read_timeout_secs {
            Some(v) => secs(ctx, v, c, "header_read_timeout_secs", 0.1, 600.0)?,
            None => Duration::from_secs(30),
        },
        write_timeout: match &raw.write_timeout_secs {
            Some(v) => secs(ctx, v, c, "write_timeout_secs", 0.1, 600.0)?,
            None => Duration::from_secs(30),
        },
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .map(|v| {
                let text = v.get_ref();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ctx.invalid(
                            v.span().start,
                            c,
                            "trusted_proxies",
                            "must list addresses or networks such as 10.0.0.0/8",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        admin_max_connections: match raw.admin.as_ref().and_then(|a| a.max_connections.as_ref()) {
            Some(v) => count(ctx, v, c, "admin.max_connections", 1, 10_000)?,
            None => 64,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "routes.toml", Path::new("/etc/x"))
    }

    #[test]
    fn repository_file_is_valid() {
        let c = parse(include_str!("../../routes.toml")).unwrap();
        assert_eq!(c.routes.len(), 3);
        assert_eq!(c.routes[1].prefix, "/staging/faye");
        assert_eq!(c.routes[1].settings.timeout, Duration::from_secs(45));
        assert!(c.server.listeners.iter().any(|l| l.tls.is_some()));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err =
            parse("[defaults]\ntimeout_secs = 5\n\n[[route]]\nprefix = \"/a\"\ntimeout_sec = 3\n")
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("routes.toml:6:"), "{msg}");
        assert!(msg.contains("timeout_sec"), "{msg}");
    }

    #[test]
    fn invalid_values_name_route_and_key() {
        let err = parse(
            "[[route]]\nprefix = \"/a\"\n[[route]]\nprefix = \"/b\"\nmax_queue_messages = 0\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("routes.toml:5:"), "{msg}");
        assert!(msg.contains("route \"/b\""), "{msg}");
        assert!(msg.contains("max_queue_messages"), "{msg}");
        for bad in ["/a/", "a", "/a//b", "/a.b"] {
            let err = parse(&format!("[[route]]\nprefix = \"{bad}\"\n")).unwrap_err();
            assert!(err.to_string().contains("prefix"), "{bad}");
        }
        assert!(parse("[[route]]\nprefix = \"/a\"\n[[route]]\nprefix = \"/a\"\n").is_err());
    }

    #[test]
    fn publish_policies() {
        // PATH is set in every test environment; its value stands in for a secret.
        let c = parse(
            "[[route]]\nprefix = \"/a\"\npublish = \"secret\"\npublish_secret_env = \"PATH\"\n",
        )
        .unwrap();
        assert!(matches!(
            c.routes[0].settings.publish,
            PublishPolicy::Secret(_)
        ));
        let c = parse("[defaults]\npublish = \"deny\"\n[[route]]\nprefix = \"/a\"\n").unwrap();
        assert_eq!(c.routes[0].settings.publish, PublishPolicy::Deny);
        let err = parse("[[route]]\nprefix = \"/a\"\npublish = \"secret\"\n").unwrap_err();
        assert!(err.to_string().contains("publish_secret_env"), "{err}");
        let err = parse("[[route]]\nprefix = \"/a\"\npublish = \"secret\"\npublish_secret_env = \"BAYEUX_EDGE_TEST_UNSET_VARIABLE\"\n").unwrap_err();
        assert!(err.to_string().contains("is not set"), "{err}");
        assert!(parse("[[route]]\nprefix = \"/a\"\npublish = \"maybe\"\n").is_err());
    }

    #[test]
    fn route_overrides_defaults() {
        let c = parse("[defaults]\ntimeout_secs = 5\n[[route]]\nprefix = \"/a\"\n[[route]]\nprefix = \"/b\"\ntimeout_secs = 1.5\n").unwrap();
        assert_eq!(c.routes[0].settings.timeout, Duration::from_secs(5));
        assert_eq!(c.routes[1].settings.timeout, Duration::from_millis(1500));
    }
}
