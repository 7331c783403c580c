//! Raw `routes.toml` → validated [`Config`]: ranges, prefixes, policies, and
//! the errors that name file, line and key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAdmin, RawDefaults, RawFile, RawListener, RawRoute, RawServer};
use super::storage::{check_namespace, check_url, default_namespace, RedisTarget, Storage};
use super::{
    CertFiles, Config, ConfigError, EngineSettings, Env, ListenerSpec, LogFormat, RouteSpec,
    ServerSettings, TlsSpec,
};
use crate::auth::{PublishPolicy, Secret};

/// The document being validated: where errors point and where secrets come from.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    base: &'a Path,
    env: &'a dyn Env,
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
        if let Some(v) = &raw.redis_stream_max_len {
            s.redis_stream_max_len =
                count(ctx, v, context, "redis_stream_max_len", 100, 100_000_000)?;
        }
        if let Some(v) = &raw.redis_timeout_secs {
            s.redis_timeout = secs(ctx, v, context, "redis_timeout_secs", 0.01, 60.0)?;
        }
        if let Some(v) = &raw.redis_cursor_flush_secs {
            s.redis_cursor_flush = secs(ctx, v, context, "redis_cursor_flush_secs", 0.01, 60.0)?;
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
            match ctx.env.var(var.get_ref()) {
                Some(v) if !v.is_empty() => Ok(PublishPolicy::Secret(Secret::new(&v))),
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

/// Validates `text` (named `file` in errors; relative paths resolve against `base`).
pub(super) fn config(
    text: &str,
    file: &str,
    base: &Path,
    env: &dyn Env,
) -> Result<Config, ConfigError> {
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
    let ctx = Ctx {
        file,
        text,
        base,
        env,
    };
    let server = build_server(&ctx, &raw.server)?;
    let defaults = apply_tunables!(&ctx, &raw.defaults, EngineSettings::default(), "defaults: ");
    if let Some(ns) = &raw.defaults.redis_namespace {
        return Err(ctx.invalid(
            ns.span().start,
            "defaults: ",
            "redis_namespace",
            "must be set per route: routes sharing a namespace would share sessions",
        ));
    }
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
            Some(u) => Some(upstream(&ctx, u, &context)?),
        };
        let storage = storage(&ctx, r, &raw.defaults, &prefix, &context)?;
        if upstream.is_some() && storage != Storage::Memory {
            let at = r.engine.as_ref().map(|v| v.span().start).unwrap_or(0);
            return Err(ctx.invalid(at, &context, "engine", "an upstream route has no engine"));
        }
        if let Storage::Redis(target) = &storage {
            let shared = routes.iter().any(|x| {
                x.storage
                    .redis()
                    .is_some_and(|t| t.url == target.url && t.namespace == target.namespace)
            });
            if shared {
                let at = r.redis_namespace.as_ref().unwrap_or(&r.prefix).span().start;
                return Err(ctx.invalid(
                    at,
                    &context,
                    "redis_namespace",
                    "another route uses the same Redis and namespace",
                ));
            }
        }
        routes.push(RouteSpec {
            prefix,
            settings,
            upstream,
            storage,
        });
    }
    Ok(Config {
        path: None,
        server,
        routes,
    })
}

/// The route's storage: `engine` (route, else defaults), and for Redis the URL
/// from the variable `redis_url_env` names and the key namespace.
fn storage(
    ctx: &Ctx<'_>,
    r: &RawRoute,
    defaults: &RawDefaults,
    prefix: &str,
    context: &str,
) -> Result<Storage, ConfigError> {
    let engine = r.engine.as_ref().or(defaults.engine.as_ref());
    let url_env = r.redis_url_env.as_ref().or(defaults.redis_url_env.as_ref());
    let namespace = r.redis_namespace.as_ref();
    match engine.map(|e| (e, e.get_ref().as_str())) {
        None | Some((_, "memory")) => {
            // Only the route's own keys: defaults may serve Redis routes elsewhere.
            if let Some(v) = r.redis_url_env.as_ref().or(namespace) {
                return Err(ctx.invalid(
                    v.span().start,
                    context,
                    if r.redis_url_env.is_some() {
                        "redis_url_env"
                    } else {
                        "redis_namespace"
                    },
                    "only applies with engine = \"redis\"",
                ));
            }
            Ok(Storage::Memory)
        }
        Some((e, "redis")) => {
            let Some(var) = url_env else {
                return Err(ctx.invalid(
                    e.span().start,
                    context,
                    "redis_url_env",
                    "engine = \"redis\" needs the name of the environment variable holding the Redis URL",
                ));
            };
            let url = match ctx.env.var(var.get_ref()) {
                Some(v) if !v.trim().is_empty() => v.trim().to_owned(),
                _ => {
                    return Err(ctx.invalid(
                        var.span().start,
                        context,
                        "redis_url_env",
                        format!("environment variable {} is not set or empty", var.get_ref()),
                    ))
                }
            };
            check_url(&url).map_err(|reason| {
                ctx.invalid(
                    var.span().start,
                    context,
                    "redis_url_env",
                    format!("{}: {reason}", var.get_ref()),
                )
            })?;
            let namespace = match namespace {
                Some(ns) => {
                    check_namespace(ns.get_ref()).map_err(|reason| {
                        ctx.invalid(ns.span().start, context, "redis_namespace", reason)
                    })?;
                    ns.get_ref().clone()
                }
                None => default_namespace(prefix),
            };
            Ok(Storage::Redis(RedisTarget {
                url,
                url_env: var.get_ref().clone(),
                namespace,
            }))
        }
        Some((e, _)) => Err(ctx.invalid(
            e.span().start,
            context,
            "engine",
            "must be \"memory\" or \"redis\"",
        )),
    }
}

fn upstream(ctx: &Ctx<'_>, u: &Spanned<String>, context: &str) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = u.get_ref().parse().map_err(|_| {
        ctx.invalid(
            u.span().start,
            context,
            "upstream",
            "must be a URL such as http://10.0.0.5:9292/faye",
        )
    })?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(ctx.invalid(
            u.span().start,
            context,
            "upstream",
            "must be an http:// URL with a host",
        ));
    }
    Ok(uri)
}

const SERVER: &str = "server: ";

fn build_server(ctx: &Ctx<'_>, raw: &RawServer) -> Result<ServerSettings, ConfigError> {
    let c = SERVER;
    let mut listeners: Vec<ListenerSpec> = Vec::new();
    for l in &raw.listener {
        let spec = listener(ctx, l)?;
        if listeners.iter().any(|x| x.name == spec.name) {
            return Err(ctx.invalid(
                l.name.span().start,
                c,
                "listener.name",
                "must be non-empty and unique",
            ));
        }
        listeners.push(spec);
    }
    let admin = match &raw.admin {
        Some(a) => Some(admin_addr(ctx, a)?),
        None => None,
    };
    let secs_or = |v: &Option<Spanned<f64>>, key: &str, min: f64, max: f64, default: u64| match v {
        Some(v) => secs(ctx, v, c, key, min, max),
        None => Ok(Duration::from_secs(default)),
    };
    Ok(ServerSettings {
        listeners,
        admin,
        drain_grace: secs_or(&raw.drain_grace_secs, "drain_grace_secs", 0.0, 600.0, 20)?,
        log_format: log_format(ctx, raw.log_format.as_ref())?,
        client_dir: raw.client_dir.as_deref().map(|d| ctx.path(d)),
        max_connections: match &raw.max_connections {
            Some(v) => Some(count(ctx, v, c, "max_connections", 1, 10_000_000)?),
            None => None,
        },
        tls_handshake_timeout: secs_or(
            &raw.tls_handshake_timeout_secs,
            "tls_handshake_timeout_secs",
            0.1,
            600.0,
            10,
        )?,
        header_read_timeout: secs_or(
            &raw.header_read_timeout_secs,
            "header_read_timeout_secs",
            0.1,
            600.0,
            30,
        )?,
        write_timeout: secs_or(
            &raw.write_timeout_secs,
            "write_timeout_secs",
            0.1,
            600.0,
            30,
        )?,
        trusted_proxies: trusted_proxies(ctx, &raw.trusted_proxies)?,
        admin_max_connections: match raw.admin.as_ref().and_then(|a| a.max_connections.as_ref()) {
            Some(v) => count(ctx, v, c, "admin.max_connections", 1, 10_000)?,
            None => 64,
        },
    })
}

fn listener(ctx: &Ctx<'_>, l: &RawListener) -> Result<ListenerSpec, ConfigError> {
    let c = SERVER;
    let name = l.name.get_ref().clone();
    if name.is_empty() {
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
    Ok(ListenerSpec { name, addr, tls })
}

fn admin_addr(ctx: &Ctx<'_>, a: &RawAdmin) -> Result<SocketAddr, ConfigError> {
    a.addr.get_ref().parse().map_err(|_| {
        ctx.invalid(
            a.addr.span().start,
            SERVER,
            "admin.addr",
            "must be an IP address and port such as 127.0.0.1:9090",
        )
    })
}

fn log_format(ctx: &Ctx<'_>, v: Option<&Spanned<String>>) -> Result<LogFormat, ConfigError> {
    match v.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "text")) => Ok(LogFormat::Text),
        Some((_, "json")) => Ok(LogFormat::Json),
        Some((v, _)) => Err(ctx.invalid(
            v.span().start,
            SERVER,
            "log_format",
            "must be \"text\" or \"json\"",
        )),
    }
}

fn trusted_proxies(
    ctx: &Ctx<'_>,
    raw: &[Spanned<String>],
) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.iter()
        .map(|v| {
            let text = v.get_ref();
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ctx.invalid(
                        v.span().start,
                        SERVER,
                        "trusted_proxies",
                        "must list addresses or networks such as 10.0.0.0/8",
                    )
                })
        })
        .collect()
}
