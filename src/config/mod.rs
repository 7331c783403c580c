//! Process configuration: `routes.toml` read, validated and typed.
//!
//! The pipeline is `text → raw (serde, unknown keys denied) → validated`:
//! `raw` holds the serde shapes, `validate` checks ranges and consistency and
//! builds the types below, and only those leave this module. Every error names
//! the file, the line and the key (and the route prefix when there is one), so a
//! typo is caught by `bayeux-edge check` or by a reload that keeps the running
//! table. Secrets are never in the file: it names environment variables, read
//! through an [`Env`] so tests can supply their own.

mod env;
mod raw;
mod settings;
mod storage;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use env::{Env, ProcessEnv};
pub use settings::EngineSettings;
pub use storage::{default_namespace, RedisTarget, Storage};

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
    /// Admin listener (health, readiness, metrics, the operator's console).
    /// `[server.admin]` without `addr` binds 127.0.0.1:9090.
    pub admin: Option<SocketAddr>,
    /// The token the console and its API require (`[server.admin] token_env`
    /// names the variable holding it). Without one, the console serves
    /// user data (presence, taps, test publish) only on a loopback address.
    pub admin_token: Option<crate::auth::Secret>,
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
    /// Most bytes of request bodies and WebSocket messages received but not
    /// yet complete, across all connections. Default 64 MiB.
    pub max_incoming_bytes: usize,
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
    /// Where the engine keeps its sessions (memory unless `engine = "redis"`).
    pub storage: Storage,
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

impl Config {
    /// Reads and validates a file, with secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, &ProcessEnv)
    }

    /// Reads and validates a file, with secrets from `env`.
    pub fn load_with(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.display().to_string(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Config::parse_with(&text, &path.display().to_string(), &base, env)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validates text, with secrets from the process environment. `file` names
    /// it in errors; relative paths resolve against `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        Self::parse_with(text, file, base, &ProcessEnv)
    }

    /// Validates text, with secrets from `env`.
    pub fn parse_with(
        text: &str,
        file: &str,
        base: &Path,
        env: &dyn Env,
    ) -> Result<Config, ConfigError> {
        validate::config(text, file, base, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PublishPolicy;

    const ENV: [(&str, &str); 1] = [("ROUTE_SECRET", "s3cret")];

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, "routes.toml", Path::new("/etc/x"), &ENV)
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
        let c = parse(
            "[[route]]\nprefix = \"/a\"\npublish = \"secret\"\npublish_secret_env = \"ROUTE_SECRET\"\n",
        )
        .unwrap();
        match &c.routes[0].settings.publish {
            PublishPolicy::Secret(s) => assert!(s.matches("s3cret")),
            other => panic!("{other:?}"),
        }
        let c = parse("[defaults]\npublish = \"deny\"\n[[route]]\nprefix = \"/a\"\n").unwrap();
        assert_eq!(c.routes[0].settings.publish, PublishPolicy::Deny);
        let err = parse("[[route]]\nprefix = \"/a\"\npublish = \"secret\"\n").unwrap_err();
        assert!(err.to_string().contains("publish_secret_env"), "{err}");
        let err = parse("[[route]]\nprefix = \"/a\"\npublish = \"secret\"\npublish_secret_env = \"BAYEUX_EDGE_TEST_UNSET_VARIABLE\"\n").unwrap_err();
        assert!(err.to_string().contains("is not set"), "{err}");
        assert!(parse("[[route]]\nprefix = \"/a\"\npublish = \"maybe\"\n").is_err());
    }

    #[test]
    fn admin_listener_defaults_to_loopback_and_reads_its_token_from_the_environment() {
        let c = parse("[server.admin]\n").unwrap();
        assert_eq!(c.server.admin, Some("127.0.0.1:9090".parse().unwrap()));
        assert!(c.server.admin_token.is_none());
        let c = parse("[server.admin]\naddr = \"0.0.0.0:9091\"\ntoken_env = \"ROUTE_SECRET\"\n")
            .unwrap();
        assert!(c
            .server
            .admin_token
            .as_ref()
            .is_some_and(|t| t.matches("s3cret")));
        let err =
            parse("[server.admin]\ntoken_env = \"BAYEUX_EDGE_TEST_UNSET_VARIABLE\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("routes.toml:2:"), "{msg}");
        assert!(
            msg.contains("admin.token_env") && msg.contains("is not set"),
            "{msg}"
        );
        assert!(!msg.contains("s3cret"));
    }

    #[test]
    fn redis_engine_reads_its_url_from_the_environment() {
        const ENV: [(&str, &str); 3] = [
            ("STAGING_REDIS_URL", "rediss://:token@cache.example:6379"),
            ("BAD_REDIS_URL", "http://cache.example"),
            ("PLAIN_REDIS_URL", "redis://cache.example:6379"),
        ];
        let parse = |text: &str| Config::parse_with(text, "routes.toml", Path::new("/x"), &ENV);
        let c = parse("[defaults]\nredis_stream_max_len = 500\n[[route]]\nprefix = \"/a\"\nengine = \"redis\"\nredis_url_env = \"STAGING_REDIS_URL\"\n[[route]]\nprefix = \"/b\"\n").unwrap();
        match &c.routes[0].storage {
            Storage::Redis(t) => {
                assert_eq!(t.url, "rediss://:token@cache.example:6379");
                assert_eq!(t.namespace, "bayeux-edge:/a:");
                assert!(!format!("{t:?}").contains("token"), "the URL is a secret");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.routes[0].settings.redis_stream_max_len, 500);
        assert_eq!(c.routes[1].storage, Storage::Memory);

        let cases = [
            ("engine = \"redis\"\n", "redis_url_env"),
            ("engine = \"redis\"\nredis_url_env = \"UNSET_REDIS_URL\"\n", "is not set"),
            ("engine = \"redis\"\nredis_url_env = \"BAD_REDIS_URL\"\n", "rediss://"),
            ("engine = \"disk\"\n", "engine"),
            ("redis_url_env = \"STAGING_REDIS_URL\"\n", "only applies"),
            ("engine = \"redis\"\nredis_url_env = \"STAGING_REDIS_URL\"\nredis_namespace = \"a b\"\n", "redis_namespace"),
            ("redis_stream_max_len = 5\n", "redis_stream_max_len"),
            ("redis_ca_file = \"ca.pem\"\n", "only applies"),
            ("engine = \"redis\"\nredis_url_env = \"PLAIN_REDIS_URL\"\nredis_ca_file = \"ca.pem\"\n", "rediss://"),
            ("engine = \"redis\"\nredis_url_env = \"STAGING_REDIS_URL\"\nredis_ca_file = \"missing-ca.pem\"\n", "/x/missing-ca.pem"),
        ];
        for (keys, expect) in cases {
            let err = parse(&format!("[[route]]\nprefix = \"/a\"\n{keys}")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("routes.toml:"), "{msg}");
            assert!(msg.contains(expect), "{keys}: {msg}");
        }
        let shared = "[[route]]\nprefix = \"/a\"\nengine = \"redis\"\nredis_url_env = \"STAGING_REDIS_URL\"\nredis_namespace = \"ns:\"\n[[route]]\nprefix = \"/b\"\nengine = \"redis\"\nredis_url_env = \"STAGING_REDIS_URL\"\nredis_namespace = \"ns:\"\n";
        assert!(parse(shared)
            .unwrap_err()
            .to_string()
            .contains("same Redis"));
        let in_defaults = "[defaults]\nredis_namespace = \"ns:\"\n[[route]]\nprefix = \"/a\"\n";
        assert!(parse(in_defaults)
            .unwrap_err()
            .to_string()
            .contains("per route"));
    }

    #[test]
    fn route_overrides_defaults() {
        let c = parse("[defaults]\ntimeout_secs = 5\n[[route]]\nprefix = \"/a\"\n[[route]]\nprefix = \"/b\"\ntimeout_secs = 1.5\n").unwrap();
        assert_eq!(c.routes[0].settings.timeout, Duration::from_secs(5));
        assert_eq!(c.routes[1].settings.timeout, Duration::from_millis(1500));
    }
}
