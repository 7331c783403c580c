//! Where a route keeps its sessions: in this process (`engine = "memory"`, the
//! default) or in a Redis shared by several processes (`engine = "redis"`).
//!
//! The Redis URL is a secret (it may carry an auth token), so the file names the
//! environment variable that holds it (`redis_url_env`), like
//! `publish_secret_env`; the URL is parsed here, never connected to, so
//! `bayeux-edge check` validates a file on a machine without Redis. The
//! storage target is not a tunable: a reload that changes it replaces the
//! route's engine (see `routes`), while the Redis tunables in
//! [`super::EngineSettings`] retune in place.

use std::fmt;

/// What stores a route's sessions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Storage {
    /// Sessions live in this process only (one node per environment).
    #[default]
    Memory,
    /// Sessions, subscriptions and the publish log live in Redis; any number of
    /// nodes serve the route.
    Redis(RedisTarget),
}

impl Storage {
    /// The Redis target, for Redis routes.
    pub fn redis(&self) -> Option<&RedisTarget> {
        match self {
            Storage::Memory => None,
            Storage::Redis(t) => Some(t),
        }
    }
}

/// One Redis deployment and the key namespace a route uses in it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `redis://` or `rediss://` (TLS) URL, read from the environment.
    pub url: String,
    /// The environment variable the URL came from (named in logs instead of the URL).
    pub url_env: String,
    /// Prefix of every key the route uses, e.g. `bayeux-edge:/staging/faye:`.
    pub namespace: String,
    /// PEM certificates trusted for a `rediss://` URL instead of the public
    /// roots (`redis_ca_file`), e.g. a self-hosted Redis behind a private CA.
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for RedisTarget {
    // The URL may hold a password: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url_env", &self.url_env)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// The namespace a route gets when `redis_namespace` is not set.
pub fn default_namespace(prefix: &str) -> String {
    format!("bayeux-edge:{prefix}:")
}

/// Checks a Redis URL without connecting: scheme, host, and that the Redis
/// client accepts it.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    let scheme_ok = url.starts_with("redis://") || url.starts_with("rediss://");
    if !scheme_ok {
        return Err("must be a redis:// or rediss:// (TLS) URL".to_owned());
    }
    redis::Client::open(url)
        .map(|_| ())
        // The error's text may quote the URL (and its password); its kind does not.
        .map_err(|e| format!("is not a usable Redis URL ({:?})", e.kind()))
}

/// Checks that `pem` holds at least one certificate and nothing unreadable.
pub(super) fn check_ca_pem(pem: &[u8]) -> Result<(), &'static str> {
    use rustls_pki_types::pem::PemObject;
    let mut found = 0;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|_| "unreadable PEM")?;
        found += 1;
    }
    if found == 0 {
        return Err("no certificate in the PEM file");
    }
    Ok(())
}

/// Checks a key namespace: printable ASCII without spaces, 1 to 128 bytes.
pub(super) fn check_namespace(ns: &str) -> Result<(), &'static str> {
    if ns.is_empty() || ns.len() > 128 {
        return Err("must be 1 to 128 bytes");
    }
    if !ns.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces");
    }
    Ok(())
}
