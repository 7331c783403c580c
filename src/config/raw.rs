//! The raw shape of `routes.toml`, exactly as serde reads it. Every table
//! denies unknown keys, and values keep their spans so errors can name the
//! line. These types never leave `config`; `validate` turns them into
//! the validated types.

use serde::Deserialize;
use toml::Spanned;

macro_rules! tunables {
    ($(#[$meta:meta])* $name:ident { $($extra:ident : $ety:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $(pub(super) $extra: $ety,)*
            pub(super) timeout_secs: Option<Spanned<f64>>,
            pub(super) interval_secs: Option<Spanned<f64>>,
            pub(super) max_message_bytes: Option<Spanned<u64>>,
            pub(super) max_queue_messages: Option<Spanned<u64>>,
            pub(super) max_queue_bytes: Option<Spanned<u64>>,
            pub(super) max_subscriptions: Option<Spanned<u64>>,
            pub(super) max_total_subscriptions: Option<Spanned<u64>>,
            pub(super) max_clients: Option<Spanned<u64>>,
            pub(super) max_sessions_per_ip: Option<Spanned<u64>>,
            pub(super) handshake_rate_per_ip: Option<Spanned<f64>>,
            pub(super) handshake_burst_per_ip: Option<Spanned<u64>>,
            pub(super) first_connect_timeout_secs: Option<Spanned<f64>>,
            pub(super) max_batch_messages: Option<Spanned<u64>>,
            pub(super) max_channel_bytes: Option<Spanned<u64>>,
            pub(super) max_channel_segments: Option<Spanned<u64>>,
            pub(super) ws_ping_secs: Option<Spanned<f64>>,
            pub(super) eventsource_ping_secs: Option<Spanned<f64>>,
            pub(super) publish: Option<Spanned<String>>,
            pub(super) publish_secret_env: Option<Spanned<String>>,
            pub(super) subscribe: Option<Spanned<String>>,
            pub(super) jwt_algorithm: Option<Spanned<String>>,
            pub(super) jwt_secret_env: Option<Spanned<String>>,
            pub(super) jwt_public_key_file: Option<Spanned<String>>,
            pub(super) jwt_jwks_file: Option<Spanned<String>>,
            pub(super) jwt_issuer: Option<Spanned<String>>,
            pub(super) jwt_audience: Option<Spanned<String>>,
            pub(super) jwt_leeway_secs: Option<Spanned<f64>>,
            pub(super) jwt_grants_claim: Option<Spanned<String>>,
            pub(super) jwt_grants: Option<Spanned<Vec<String>>>,
            pub(super) subscribe_backend_url: Option<Spanned<String>>,
            pub(super) subscribe_backend_timeout_secs: Option<Spanned<f64>>,
            pub(super) subscribe_backend_cache_secs: Option<Spanned<f64>>,
            pub(super) subscribe_backend_headers: Option<Spanned<Vec<String>>>,
            pub(super) subscribe_backend_ca_file: Option<Spanned<String>>,
            pub(super) allowed_origins: Option<Spanned<Vec<String>>>,
            pub(super) engine: Option<Spanned<String>>,
            pub(super) redis_url_env: Option<Spanned<String>>,
            pub(super) redis_ca_file: Option<Spanned<String>>,
            pub(super) redis_namespace: Option<Spanned<String>>,
            pub(super) redis_stream_max_len: Option<Spanned<u64>>,
            pub(super) redis_timeout_secs: Option<Spanned<f64>>,
            pub(super) redis_cursor_flush_secs: Option<Spanned<f64>>,
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
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    #[serde(default)]
    pub(super) listener: Vec<RawListener>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) drain_grace_secs: Option<Spanned<f64>>,
    pub(super) log_format: Option<Spanned<String>>,
    pub(super) client_dir: Option<String>,
    pub(super) max_connections: Option<Spanned<u64>>,
    pub(super) tls_handshake_timeout_secs: Option<Spanned<f64>>,
    pub(super) header_read_timeout_secs: Option<Spanned<f64>>,
    pub(super) write_timeout_secs: Option<Spanned<f64>>,
    pub(super) max_incoming_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) name: Spanned<String>,
    pub(super) addr: Spanned<String>,
    #[serde(default)]
    pub(super) certificates: Vec<RawCert>,
    #[serde(default)]
    pub(super) dev_certificate: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCert {
    pub(super) cert: String,
    pub(super) key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) addr: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<u64>>,
    pub(super) token_env: Option<Spanned<String>>,
}
