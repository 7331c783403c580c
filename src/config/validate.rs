//! Raw `routes.toml` → validated [`Config`]: ranges, prefixes, policies, and
//! the errors that name file, line and key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAdmin, RawDefaults, RawFile, RawListener, RawRoute, RawServer};
use super::storage::{
    check_ca_pem, check_namespace, check_url, default_namespace, RedisTarget, Storage,
};
use super::{
    CertFiles, Config, ConfigError, EngineSettings, Env, ListenerSpec, LogFormat, RouteSpec,
    ServerSettings, TlsSpec,
};
use crate::auth::{
    BackendCheck, BackendPolicy, BackendSettings, GrantTemplate, JwtAlgorithm, JwtPolicy,
    JwtSettings, JwtVerifier, OriginPolicy, PublishPolicy, Secret, SubscribePolicy,
};

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

/// Sets each count tunable the raw table has, checked against its range.
macro_rules! counted {
    ($ctx:expr, $raw:expr, $s:expr, $context:expr, $($field:ident: $lo:expr, $hi:expr;)*) => {
        $(
            if let Some(v) = &$raw.$field {
                $s.$field = count($ctx, v, $context, stringify!($field), $lo, $hi)?;
            }
        )*
    };
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
        // Counts named as their field, with their allowed range.
        counted!(ctx, raw, s, context,
            max_message_bytes: 1024, 64 << 20;
            max_queue_messages: 1, 1_000_000;
            max_queue_bytes: 1024, 1 << 30;
            max_subscriptions: 1, 1_000_000;
            max_total_subscriptions: 1, 100_000_000;
            max_clients: 1, 10_000_000;
            max_sessions_per_ip: 1, 10_000_000;
            max_batch_messages: 1, 1_000_000;
            max_channel_bytes: 16, 65_536;
            max_channel_segments: 1, 1024;
        );
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

/// The route's value of a policy key, else the `[defaults]` one.
macro_rules! pick {
    ($route:expr, $defaults:expr, $field:ident) => {
        $route.$field.as_ref().or($defaults.$field.as_ref())
    };
}

/// The keys that belong to `subscribe = "jwt"` and `subscribe = "backend"`,
/// so a key of the other policy (or of none) is reported instead of ignored.
const JWT_KEYS: [&str; 9] = [
    "jwt_algorithm",
    "jwt_secret_env",
    "jwt_public_key_file",
    "jwt_jwks_file",
    "jwt_issuer",
    "jwt_audience",
    "jwt_leeway_secs",
    "jwt_grants_claim",
    "jwt_grants",
];

fn subscribe_policy(
    ctx: &Ctx<'_>,
    r: &RawRoute,
    d: &RawDefaults,
    context: &str,
) -> Result<SubscribePolicy, ConfigError> {
    let policy = pick!(r, d, subscribe);
    let at = policy
        .map(|p| p.span().start)
        .unwrap_or(r.prefix.span().start);
    let jwt_keys_set = [
        pick!(r, d, jwt_algorithm).is_some(),
        pick!(r, d, jwt_secret_env).is_some(),
        pick!(r, d, jwt_public_key_file).is_some(),
        pick!(r, d, jwt_jwks_file).is_some(),
        pick!(r, d, jwt_issuer).is_some(),
        pick!(r, d, jwt_audience).is_some(),
        pick!(r, d, jwt_leeway_secs).is_some(),
        pick!(r, d, jwt_grants_claim).is_some(),
        pick!(r, d, jwt_grants).is_some(),
    ];
    let backend_set = pick!(r, d, subscribe_backend_url).is_some();
    let kind = policy.map(|p| p.get_ref().as_str()).unwrap_or("open");
    let stray_jwt = JWT_KEYS
        .iter()
        .zip(jwt_keys_set)
        .find(|(_, set)| *set && kind != "jwt")
        .map(|(k, _)| *k);
    if let Some(key) = stray_jwt {
        return Err(ctx.invalid(at, context, key, "only applies with subscribe = \"jwt\""));
    }
    if backend_set && kind != "backend" {
        return Err(ctx.invalid(
            at,
            context,
            "subscribe_backend_url",
            "only applies with subscribe = \"backend\"",
        ));
    }
    match kind {
        "open" => Ok(SubscribePolicy::Open),
        "jwt" => jwt_policy(ctx, r, d, context, at),
        "backend" => backend_policy(ctx, r, d, context, at),
        _ => Err(ctx.invalid(
            at,
            context,
            "subscribe",
            "must be \"open\", \"jwt\" or \"backend\"",
        )),
    }
}

fn required<'a>(
    ctx: &Ctx<'_>,
    v: Option<&'a Spanned<String>>,
    at: usize,
    context: &str,
    key: &str,
    why: &str,
) -> Result<&'a Spanned<String>, ConfigError> {
    v.ok_or_else(|| ctx.invalid(at, context, key, why))
}

fn jwt_policy(
    ctx: &Ctx<'_>,
    r: &RawRoute,
    d: &RawDefaults,
    context: &str,
    at: usize,
) -> Result<SubscribePolicy, ConfigError> {
    let need = "is needed with subscribe = \"jwt\"";
    let alg = required(
        ctx,
        pick!(r, d, jwt_algorithm),
        at,
        context,
        "jwt_algorithm",
        need,
    )?;
    let algorithm: JwtAlgorithm = alg.get_ref().parse().map_err(|_| {
        ctx.invalid(
            alg.span().start,
            context,
            "jwt_algorithm",
            "must be \"HS256\", \"RS256\" or \"ES256\"",
        )
    })?;
    let issuer = required(
        ctx,
        pick!(r, d, jwt_issuer),
        at,
        context,
        "jwt_issuer",
        need,
    )?;
    let audience = required(
        ctx,
        pick!(r, d, jwt_audience),
        at,
        context,
        "jwt_audience",
        need,
    )?;
    let mut settings = JwtSettings::new(algorithm, issuer.get_ref(), audience.get_ref());
    if let Some(v) = pick!(r, d, jwt_leeway_secs) {
        settings.leeway = secs(ctx, v, context, "jwt_leeway_secs", 0.0, 300.0)?;
    }
    let keys = [
        ("jwt_secret_env", pick!(r, d, jwt_secret_env)),
        ("jwt_public_key_file", pick!(r, d, jwt_public_key_file)),
        ("jwt_jwks_file", pick!(r, d, jwt_jwks_file)),
    ];
    let mut given = keys.iter().filter_map(|(k, v)| v.map(|v| (*k, v)));
    let (key, value) = given.next().ok_or_else(|| {
        ctx.invalid(
            at,
            context,
            "jwt_secret_env",
            "subscribe = \"jwt\" needs one of jwt_secret_env, jwt_public_key_file or jwt_jwks_file",
        )
    })?;
    if let Some((other, v)) = given.next() {
        return Err(ctx.invalid(
            v.span().start,
            context,
            other,
            format!("give one key source: {key} is already set"),
        ));
    }
    let bad_key = |e: crate::auth::JwtConfigError| {
        ctx.invalid(value.span().start, context, key, e.to_string())
    };
    let (verifier, source) = match key {
        "jwt_secret_env" => {
            let secret = env_value(ctx, value, context, key)?;
            let source = format!("secret:{}", fingerprint(&secret));
            (
                JwtVerifier::with_secret(settings.clone(), &secret).map_err(bad_key)?,
                source,
            )
        }
        "jwt_public_key_file" => {
            let path = ctx.path(value.get_ref());
            let v = JwtVerifier::with_public_key_file(settings.clone(), &path).map_err(bad_key)?;
            let text = std::fs::read(&path).unwrap_or_default();
            (
                v,
                format!("pem:{}", fingerprint(&String::from_utf8_lossy(&text))),
            )
        }
        _ => {
            let path = ctx.path(value.get_ref());
            let v = JwtVerifier::with_jwks_file(settings.clone(), &path).map_err(bad_key)?;
            let text = std::fs::read(&path).unwrap_or_default();
            (
                v,
                format!("jwks:{}", fingerprint(&String::from_utf8_lossy(&text))),
            )
        }
    };
    let mut templates = Vec::new();
    if let Some(list) = pick!(r, d, jwt_grants) {
        for t in list.get_ref() {
            templates.push(GrantTemplate::parse(t).map_err(|e| {
                ctx.invalid(list.span().start, context, "jwt_grants", e.to_string())
            })?);
        }
    }
    let grants_claim = pick!(r, d, jwt_grants_claim).map(|c| c.get_ref().clone());
    if templates.is_empty() && grants_claim.is_none() {
        return Err(ctx.invalid(
            at,
            context,
            "jwt_grants",
            "subscribe = \"jwt\" needs jwt_grants (e.g. [\"/{sub}\"]) or jwt_grants_claim, else nothing could be granted",
        ));
    }
    let source = format!(
        "{source}|{settings:?}|{grants_claim:?}|{:?}",
        templates
            .iter()
            .map(GrantTemplate::as_str)
            .collect::<Vec<_>>()
    );
    Ok(SubscribePolicy::Jwt(std::sync::Arc::new(JwtPolicy {
        verifier,
        grants_claim,
        templates,
        source,
    })))
}

/// A short digest of key material, so a reload can tell whether it changed
/// without keeping or comparing the material itself.
fn fingerprint(text: &str) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn backend_policy(
    ctx: &Ctx<'_>,
    r: &RawRoute,
    d: &RawDefaults,
    context: &str,
    at: usize,
) -> Result<SubscribePolicy, ConfigError> {
    let url = required(
        ctx,
        pick!(r, d, subscribe_backend_url),
        at,
        context,
        "subscribe_backend_url",
        "is needed with subscribe = \"backend\"",
    )?;
    let mut settings = BackendSettings::new(url.get_ref().clone());
    if let Some(v) = pick!(r, d, subscribe_backend_timeout_secs) {
        settings.timeout = secs(
            ctx,
            v,
            context,
            "subscribe_backend_timeout_secs",
            0.01,
            60.0,
        )?;
    }
    if let Some(v) = pick!(r, d, subscribe_backend_cache_secs) {
        settings.cache_ttl = secs(ctx, v, context, "subscribe_backend_cache_secs", 0.0, 3600.0)?;
    }
    if let Some(v) = pick!(r, d, subscribe_backend_headers) {
        settings.forward_headers = v.get_ref().clone();
    }
    if let Some(v) = pick!(r, d, subscribe_backend_ca_file) {
        let path = ctx.path(v.get_ref());
        let pem = std::fs::read_to_string(&path).map_err(|e| {
            ctx.invalid(
                v.span().start,
                context,
                "subscribe_backend_ca_file",
                format!("{}: {e}", path.display()),
            )
        })?;
        settings.ca_pem = Some(pem);
    }
    let check = BackendCheck::new(settings.clone()).map_err(|e| {
        ctx.invalid(
            url.span().start,
            context,
            "subscribe_backend_url",
            e.to_string(),
        )
    })?;
    Ok(SubscribePolicy::Backend(std::sync::Arc::new(
        BackendPolicy { check, settings },
    )))
}

fn origin_policy(
    ctx: &Ctx<'_>,
    r: &RawRoute,
    d: &RawDefaults,
    context: &str,
) -> Result<OriginPolicy, ConfigError> {
    let Some(list) = pick!(r, d, allowed_origins) else {
        return Ok(OriginPolicy::Any);
    };
    let mut out = Vec::new();
    for o in list.get_ref() {
        let valid = crate::auth::origin_of(o) == Some(o.as_str())
            && (o.starts_with("https://") || o.starts_with("http://"));
        if !valid {
            return Err(ctx.invalid(
                list.span().start,
                context,
                "allowed_origins",
                format!("{o:?} is not an origin such as https://app.example.com (scheme, host, optional port; no path)"),
            ));
        }
        out.push(o.clone());
    }
    Ok(OriginPolicy::Only(out))
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
            secret_from_env(ctx, var, context, "publish_secret_env").map(PublishPolicy::Secret)
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
        let mut settings = apply_tunables!(&ctx, r, defaults, &context);
        settings.subscribe = subscribe_policy(&ctx, r, &raw.defaults, &context)?;
        settings.origins = origin_policy(&ctx, r, &raw.defaults, &context)?;
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
            let own = [
                ("redis_url_env", r.redis_url_env.as_ref()),
                ("redis_namespace", namespace),
                ("redis_ca_file", r.redis_ca_file.as_ref()),
            ];
            if let Some((key, v)) = own.iter().find_map(|(k, v)| v.map(|v| (*k, v))) {
                return Err(ctx.invalid(
                    v.span().start,
                    context,
                    key,
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
            let url = env_value(ctx, var, context, "redis_url_env")?
                .trim()
                .to_owned();
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
            let ca_pem = match pick!(r, defaults, redis_ca_file) {
                Some(v) => Some(redis_ca(ctx, v, &url, context)?),
                None => None,
            };
            Ok(Storage::Redis(RedisTarget {
                url,
                url_env: var.get_ref().clone(),
                namespace,
                ca_pem,
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

/// The certificates `redis_ca_file` names (PEM), trusted instead of the
/// public roots for a `rediss://` URL: Redis behind a private CA.
fn redis_ca(
    ctx: &Ctx<'_>,
    v: &Spanned<String>,
    url: &str,
    context: &str,
) -> Result<Vec<u8>, ConfigError> {
    let bad = |reason: String| ctx.invalid(v.span().start, context, "redis_ca_file", reason);
    if !url.starts_with("rediss://") {
        return Err(bad("only applies to a rediss:// (TLS) URL".to_owned()));
    }
    let path = ctx.path(v.get_ref());
    let pem = std::fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    check_ca_pem(&pem).map_err(|reason| bad(format!("{}: {reason}", path.display())))?;
    Ok(pem)
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

/// Room for 64 backend publishes of a full 1 MiB mid-body at once, and a small
/// share of a 2 GB task even at the three to four times that the buffers
/// holding an unfinished WebSocket message take while they grow.
const DEFAULT_MAX_INCOMING_BYTES: usize = 64 << 20;

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
    let admin_token = match raw.admin.as_ref().and_then(|a| a.token_env.as_ref()) {
        Some(var) => Some(secret_from_env(ctx, var, c, "admin.token_env")?),
        None => None,
    };
    let secs_or = |v: &Option<Spanned<f64>>, key: &str, min: f64, max: f64, default: u64| match v {
        Some(v) => secs(ctx, v, c, key, min, max),
        None => Ok(Duration::from_secs(default)),
    };
    Ok(ServerSettings {
        listeners,
        admin,
        admin_token,
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
        max_incoming_bytes: match &raw.max_incoming_bytes {
            Some(v) => count(ctx, v, c, "max_incoming_bytes", 65_536, 1 << 40)?,
            None => DEFAULT_MAX_INCOMING_BYTES,
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

/// Where the admin listener binds when `[server.admin]` gives no `addr`:
/// loopback, so the console is private unless an address is chosen.
const DEFAULT_ADMIN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);

fn admin_addr(ctx: &Ctx<'_>, a: &RawAdmin) -> Result<SocketAddr, ConfigError> {
    let Some(addr) = &a.addr else {
        return Ok(DEFAULT_ADMIN_ADDR);
    };
    addr.get_ref().parse().map_err(|_| {
        ctx.invalid(
            addr.span().start,
            SERVER,
            "admin.addr",
            "must be an IP address and port such as 127.0.0.1:9090",
        )
    })
}

/// A secret read from the environment variable `var` names; a missing or
/// empty variable is an error naming `key`.
fn secret_from_env(
    ctx: &Ctx<'_>,
    var: &Spanned<String>,
    context: &str,
    key: &str,
) -> Result<Secret, ConfigError> {
    env_value(ctx, var, context, key).map(|v| Secret::new(&v))
}

/// The value of the environment variable `var` names; missing, empty or
/// blank is an error naming `key` (and the variable, never its value).
fn env_value(
    ctx: &Ctx<'_>,
    var: &Spanned<String>,
    context: &str,
    key: &str,
) -> Result<String, ConfigError> {
    match ctx.env.var(var.get_ref()) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ctx.invalid(
            var.span().start,
            context,
            key,
            format!("environment variable {} is not set or empty", var.get_ref()),
        )),
    }
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
