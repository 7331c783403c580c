//! The `backend` subscribe policy: the edge asks the application, over HTTP(S),
//! whether a client may subscribe to a channel.
//!
//! # Contract with the application
//!
//! For each check the edge sends one request:
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! Accept: application/json
//! <each allow-listed header of the browser's request, e.g. Cookie>
//!
//! {"clientId": "<Bayeux clientId>", "channel": "<channel or pattern>"}
//! ```
//!
//! `channel` is what the client asked to subscribe to, wildcards included
//! (`/12345`, `/12345/*`, `/**`); the application decides what a pattern may
//! reach. Cookies are sent as one `Cookie` header (values joined with `; `, as
//! HTTP/1.1 wants, even when the browser used HTTP/2 and split them); other
//! allow-listed headers are copied with all their values. Nothing else of the
//! browser's request is sent.
//!
//! The answer allows only as `2xx` with a JSON object whose `allowed` member is
//! the boolean `true`; other members are ignored. The application refuses with
//! `2xx` and `{"allowed": false}`, or with `401` or `403` (any body). Those three
//! are *answers* and are cached. Everything else refuses too, fails closed, is
//! counted by reason, and is not cached, so the next check asks again:
//! another status (`404`, `3xx`, `5xx`, …), a `2xx` whose body is empty or is
//! not such an object (a bare `200` or a `204` does **not** allow: a URL pointing
//! at the wrong endpoint must not open every channel), a body over 4 KiB, no
//! complete answer within the timeout (connection, TLS, request and body
//! together), and any connection, TLS or protocol error. Redirects are not
//! followed.
//!
//! # Bounds
//!
//! Answers are cached per (clientId, channel) for the cache TTL, in at most
//! `max_cache_entries` entries (expired entries go first, then the oldest).
//! Concurrent checks of the same (clientId, channel) share one request. At most
//! `max_in_flight` requests are open at once; a check waits for a slot within its
//! timeout. At most `max_pending` distinct checks may be waiting for an answer;
//! beyond that a check is refused at once as overloaded. Answers are read up to
//! 4 KiB.
//!
//! Cookie and header values are never logged, never placed in an error, and
//! never shown by `Debug`. Refusals are logged at debug level with their reason
//! only; the counters ([`BackendCheck::counters`]) are the signal to watch.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, COOKIE,
};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// Default bound on one check: connection, TLS, request and answer together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time an answer is reused for the same clientId and channel.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default bound on cached answers.
pub const DEFAULT_MAX_CACHE_ENTRIES: usize = 100_000;
/// Default bound on requests open to the application at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Default bound on distinct checks waiting for an answer.
pub const DEFAULT_MAX_PENDING: usize = 4_096;
/// Largest answer body read, in bytes.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024;
/// Longest timeout a route may configure.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers that describe the edge's own request, not the browser's, and so are
/// never forwarded.
const NEVER_FORWARDED: [&str; 14] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "proxy-authorization",
    "expect",
    "accept",
];

/// Validated settings of one route's backend check.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendSettings {
    /// `http://` or `https://` URL the checks are POSTed to; no user info.
    pub url: String,
    /// Bound on one check, waiting for a connection slot included. Default
    /// [`DEFAULT_TIMEOUT`] (2 s); positive, at most [`MAX_TIMEOUT`].
    pub timeout: Duration,
    /// Names of the browser request's headers to forward (case-insensitive), for
    /// example `cookie` or `x-forwarded-for`. Default none. Headers about the
    /// edge's own request (`host`, `content-length`, `content-type`, `accept`,
    /// hop-by-hop headers) are refused.
    pub forward_headers: Vec<String>,
    /// How long an answer is reused for the same clientId and channel. Default
    /// [`DEFAULT_CACHE_TTL`] (60 s); zero asks every time.
    pub cache_ttl: Duration,
    /// Bound on cached answers. Default [`DEFAULT_MAX_CACHE_ENTRIES`].
    pub max_cache_entries: usize,
    /// Bound on requests open at once. Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub max_in_flight: usize,
    /// Bound on distinct checks waiting for an answer. Default
    /// [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
    /// PEM text of extra trust anchors for `https` (an internal CA, say), added to
    /// the Web PKI roots. Default none.
    pub ca_pem: Option<String>,
}

impl fmt::Debug for BackendSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendSettings")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("forward_headers", &self.forward_headers)
            .field("cache_ttl", &self.cache_ttl)
            .field("max_cache_entries", &self.max_cache_entries)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_pending", &self.max_pending)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| ".."))
            .finish()
    }
}

impl BackendSettings {
    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: DEFAULT_TIMEOUT,
            forward_headers: Vec::new(),
            cache_ttl: DEFAULT_CACHE_TTL,
            max_cache_entries: DEFAULT_MAX_CACHE_ENTRIES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_pending: DEFAULT_MAX_PENDING,
            ca_pem: None,
        }
    }
}

/// Why a backend check could not be built (configuration time).
#[derive(Debug, thiserror::Error)]
pub enum BackendConfigError {
    /// The URL does not parse, is not `http`/`https`, has no host, or carries user
    /// info (credentials belong in forwarded headers, not in a logged URL).
    #[error("backend URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A forwarded header name is not a valid HTTP header name.
    #[error("{0:?} is not a valid header name")]
    BadHeaderName(String),
    /// A forwarded header describes the edge's own request and cannot be forwarded.
    #[error("header {0:?} cannot be forwarded")]
    ForbiddenHeader(String),
    /// The timeout is zero or over [`MAX_TIMEOUT`].
    #[error("the backend timeout must be positive and at most {} s", MAX_TIMEOUT.as_secs())]
    BadTimeout,
    /// `max_cache_entries`, `max_in_flight` or `max_pending` is zero.
    #[error("backend bound {0} must be positive")]
    ZeroBound(&'static str),
    /// `ca_pem` holds no certificate, or one that cannot be used as a trust anchor.
    #[error("backend CA: {0}")]
    BadCa(&'static str),
    /// The TLS client could not be configured.
    #[error("backend TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// Why a check refused. Every refusal becomes a Bayeux `403` for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The application refused: `401`, `403`, or `{"allowed": false}`. Cached.
    Denied,
    /// No complete answer within the timeout.
    Timeout,
    /// Connection, TLS or HTTP protocol error.
    Transport,
    /// Any status other than `2xx`, `401` and `403`.
    Status(u16),
    /// A `2xx` whose body is not a JSON object with a boolean `allowed`.
    BadAnswer,
    /// An answer body over [`MAX_ANSWER_BYTES`].
    AnswerTooLarge,
    /// Too many checks waiting: refused at once, or no connection slot freed up
    /// within the timeout.
    Overloaded,
}

impl Refusal {
    /// A short stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::Status(_) => "status",
            Self::BadAnswer => "bad_answer",
            Self::AnswerTooLarge => "too_large",
            Self::Overloaded => "overloaded",
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The application allowed the subscription.
    Allowed,
    /// Refused, by the application or because no usable answer came.
    Refused(Refusal),
}

impl Decision {
    /// True for [`Decision::Allowed`].
    pub fn is_allowed(self) -> bool {
        self == Decision::Allowed
    }
}

/// Totals since the check was built, for metrics. Each request sent ends in
/// exactly one of `allowed`, `denied`, `timeouts`, `transport_errors`,
/// `bad_status`, `bad_answers` or `too_large`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendCounters {
    /// Requests sent to the application.
    pub requests: u64,
    /// Answers that allowed.
    pub allowed: u64,
    /// Answers that refused (`401`, `403`, `{"allowed": false}`).
    pub denied: u64,
    /// Checks answered from the cache.
    pub cache_hits: u64,
    /// Checks that shared the request of an identical check already waiting.
    pub coalesced: u64,
    /// Requests without a complete answer within the timeout.
    pub timeouts: u64,
    /// Requests that failed on connection, TLS or protocol errors.
    pub transport_errors: u64,
    /// Answers with another status.
    pub bad_status: u64,
    /// `2xx` answers without a usable body.
    pub bad_answers: u64,
    /// Answers over [`MAX_ANSWER_BYTES`].
    pub too_large: u64,
    /// Checks refused as overloaded.
    pub overloaded: u64,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    cache_hits: AtomicU64,
    coalesced: AtomicU64,
    timeouts: AtomicU64,
    transport_errors: AtomicU64,
    bad_status: AtomicU64,
    bad_answers: AtomicU64,
    too_large: AtomicU64,
    overloaded: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    fn snapshot(&self) -> BackendCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BackendCounters {
            requests: get(&self.requests),
            allowed: get(&self.allowed),
            denied: get(&self.denied),
            cache_hits: get(&self.cache_hits),
            coalesced: get(&self.coalesced),
            timeouts: get(&self.timeouts),
            transport_errors: get(&self.transport_errors),
            bad_status: get(&self.bad_status),
            bad_answers: get(&self.bad_answers),
            too_large: get(&self.too_large),
            overloaded: get(&self.overloaded),
        }
    }

    fn count_outcome(&self, decision: Decision) {
        bump(match decision {
            Decision::Allowed => &self.allowed,
            Decision::Refused(Refusal::Denied) => &self.denied,
            Decision::Refused(Refusal::Timeout) => &self.timeouts,
            Decision::Refused(Refusal::Transport) => &self.transport_errors,
            Decision::Refused(Refusal::Status(_)) => &self.bad_status,
            Decision::Refused(Refusal::BadAnswer) => &self.bad_answers,
            Decision::Refused(Refusal::AnswerTooLarge) => &self.too_large,
            Decision::Refused(Refusal::Overloaded) => &self.overloaded,
        });
    }
}

/// The allow-listed headers of a browser request, ready to forward. For a
/// WebSocket, take them from the upgrade request and keep them with the session;
/// for long-polling, from each request. `Debug` shows header names only.
#[derive(Clone, Default)]
pub struct ForwardedHeaders(HeaderMap);

impl ForwardedHeaders {
    /// True when no allow-listed header was present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ForwardedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One route's backend check. Cheap to clone (shared state behind an `Arc`);
/// must be used within a Tokio runtime.
#[derive(Clone)]
pub struct BackendCheck {
    inner: Arc<Inner>,
}

struct Inner {
    url: Uri,
    timeout: Duration,
    forward: Vec<HeaderName>,
    client: HttpClient,
    permits: Arc<Semaphore>,
    cache: Mutex<Cache>,
    stats: Stats,
}

impl fmt::Debug for BackendCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendCheck")
            .field("url", &self.inner.url)
            .field("timeout", &self.inner.timeout)
            .field("forward", &self.inner.forward)
            .finish_non_exhaustive()
    }
}

impl BackendCheck {
    /// Validates `settings` and builds the HTTP(S) client. Makes no connection.
    pub fn new(settings: BackendSettings) -> Result<Self, BackendConfigError> {
        let url = parse_url(&settings.url)?;
        if settings.timeout.is_zero() || settings.timeout > MAX_TIMEOUT {
            return Err(BackendConfigError::BadTimeout);
        }
        for (name, value) in [
            ("max_cache_entries", settings.max_cache_entries),
            ("max_in_flight", settings.max_in_flight),
            ("max_pending", settings.max_pending),
        ] {
            if value == 0 {
                return Err(BackendConfigError::ZeroBound(name));
            }
        }
        let mut forward: Vec<HeaderName> = Vec::new();
        for name in &settings.forward_headers {
            let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| BackendConfigError::BadHeaderName(name.clone()))?;
            if NEVER_FORWARDED.contains(&header.as_str()) {
                return Err(BackendConfigError::ForbiddenHeader(name.clone()));
            }
            if !forward.contains(&header) {
                forward.push(header);
            }
        }
        let tls = tls_config(settings.ca_pem.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(settings.max_in_flight)
            .build(https);
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                timeout: settings.timeout,
                forward,
                client,
                permits: Arc::new(Semaphore::new(settings.max_in_flight)),
                cache: Mutex::new(Cache::new(
                    settings.cache_ttl,
                    settings.max_cache_entries,
                    settings.max_pending,
                )),
                stats: Stats::default(),
            }),
        })
    }

    /// The allow-listed headers of `request_headers`.
    pub fn forwarded(&self, request_headers: &HeaderMap) -> ForwardedHeaders {
        let mut out = HeaderMap::new();
        for name in &self.inner.forward {
            if *name == COOKIE {
                // HTTP/2 lets a browser split its cookies over several fields; an
                // HTTP/1.1 request must carry them in one (RFC 9113 §8.2.3).
                let mut joined: Vec<u8> = Vec::new();
                for value in request_headers.get_all(COOKIE) {
                    if !joined.is_empty() {
                        joined.extend_from_slice(b"; ");
                    }
                    joined.extend_from_slice(value.as_bytes());
                }
                if let Ok(value) = HeaderValue::from_bytes(&joined) {
                    if !joined.is_empty() {
                        out.insert(COOKIE, value);
                    }
                }
            } else {
                for value in request_headers.get_all(name) {
                    out.append(name.clone(), value.clone());
                }
            }
        }
        // Forwarded values are credentials more often than not: keep them out of
        // HPACK tables and redacted in hyper's own debug output.
        for value in out.values_mut() {
            value.set_sensitive(true);
        }
        ForwardedHeaders(out)
    }

    /// Asks whether `client_id` may subscribe to `channel` (a name or pattern the
    /// engine has already validated and bounded), forwarding `headers`. Answers
    /// from the cache when it can, joins an identical check already waiting, and
    /// otherwise sends one request. Never fails: errors refuse.
    pub async fn check(
        &self,
        client_id: &str,
        channel: &str,
        headers: &ForwardedHeaders,
    ) -> Decision {
        let inner = &self.inner;
        let key = Key {
            client_id: client_id.to_owned(),
            channel: channel.to_owned(),
        };
        let lookup = inner.cache.lock().lookup(&key, Instant::now());
        let mut rx = match lookup {
            Lookup::Hit(allowed) => {
                bump(&inner.stats.cache_hits);
                return if allowed {
                    Decision::Allowed
                } else {
                    Decision::Refused(Refusal::Denied)
                };
            }
            Lookup::Full => {
                bump(&inner.stats.overloaded);
                tracing::debug!(reason = "overloaded", "backend check refused");
                return Decision::Refused(Refusal::Overloaded);
            }
            Lookup::Join(rx) => {
                bump(&inner.stats.coalesced);
                rx
            }
            Lookup::Lead(tx) => {
                let rx = tx.subscribe();
                let request = self.request(client_id, channel, headers);
                let inner = Arc::clone(inner);
                // The request runs in its own task so that a caller that goes away
                // (a closed connection) does not cancel it for the others waiting.
                tokio::spawn(async move {
                    let decision = inner.ask(request).await;
                    let answer = match decision {
                        Decision::Allowed => Some(true),
                        Decision::Refused(Refusal::Denied) => Some(false),
                        Decision::Refused(_) => None,
                    };
                    inner.cache.lock().complete(key, answer, Instant::now());
                    let _ = tx.send(Some(decision));
                });
                rx
            }
        };
        let decision = match rx.wait_for(Option::is_some).await {
            Ok(decision) => decision.unwrap_or(Decision::Refused(Refusal::Transport)),
            // The task ended without an answer (the runtime is shutting down).
            Err(_) => Decision::Refused(Refusal::Transport),
        };
        if let Decision::Refused(refusal) = decision {
            tracing::debug!(reason = refusal.label(), "backend check refused");
        }
        decision
    }

    /// Totals so far.
    pub fn counters(&self) -> BackendCounters {
        self.inner.stats.snapshot()
    }

    /// Answers currently cached (expired ones included until they are swept).
    pub fn cached(&self) -> usize {
        self.inner.cache.lock().entries.len()
    }

    fn request(
        &self,
        client_id: &str,
        channel: &str,
        headers: &ForwardedHeaders,
    ) -> Request<Full<Bytes>> {
        let body = serde_json::json!({ "clientId": client_id, "channel": channel }).to_string();
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.inner.url.clone();
        let h = request.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in headers.0.iter() {
            h.append(name.clone(), value.clone());
        }
        request
    }
}

impl Inner {
    /// Sends one request and reads its answer, within the timeout (waiting for a
    /// connection slot included). Counts the outcome.
    async fn ask(&self, request: Request<Full<Bytes>>) -> Decision {
        let deadline = Instant::now() + self.timeout;
        let permit = match tokio::time::timeout_at(
            deadline,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                bump(&self.stats.overloaded);
                return Decision::Refused(Refusal::Overloaded);
            }
        };
        bump(&self.stats.requests);
        let decision = match tokio::time::timeout_at(deadline, self.exchange(request)).await {
            Ok(decision) => decision,
            Err(_) => Decision::Refused(Refusal::Timeout),
        };
        drop(permit);
        self.stats.count_outcome(decision);
        decision
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Decision {
        let Ok(response) = self.client.request(request).await else {
            return Decision::Refused(Refusal::Transport);
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Decision::Refused(Refusal::Denied);
        }
        if !status.is_success() {
            return Decision::Refused(Refusal::Status(status.as_u16()));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Decision::Refused(Refusal::AnswerTooLarge);
        }
        let body = match Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Decision::Refused(Refusal::AnswerTooLarge)
            }
            Err(_) => return Decision::Refused(Refusal::Transport),
        };
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(answer)) => match answer.get("allowed") {
                Some(serde_json::Value::Bool(true)) => Decision::Allowed,
                Some(serde_json::Value::Bool(false)) => Decision::Refused(Refusal::Denied),
                _ => Decision::Refused(Refusal::BadAnswer),
            },
            _ => Decision::Refused(Refusal::BadAnswer),
        }
    }
}

fn parse_url(url: &str) -> Result<Uri, BackendConfigError> {
    let bad = |reason| BackendConfigError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("user info is not allowed"));
    }
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    Ok(uri)
}

fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, BackendConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|_| BackendConfigError::BadCa("unreadable PEM"))?;
            roots.add(cert).map_err(|_| {
                BackendConfigError::BadCa("a certificate is not a usable trust anchor")
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(BackendConfigError::BadCa("no certificate in the PEM text"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(BackendConfigError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A cache key: one session's question about one channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    client_id: String,
    channel: String,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    allowed: bool,
    expires: Instant,
    /// Which push into `order` this entry is; older pushes of the key are stale.
    generation: u64,
}

/// What [`Cache::lookup`] found.
enum Lookup {
    /// A fresh cached answer.
    Hit(bool),
    /// An identical check is waiting for its answer: wait for it too.
    Join(watch::Receiver<Option<Decision>>),
    /// Nothing known: the caller asks, then calls [`Cache::complete`] and sends
    /// the decision.
    Lead(watch::Sender<Option<Decision>>),
    /// Too many checks are waiting.
    Full,
}

/// Answers by (clientId, channel), expiring after `ttl`, at most `max_entries`;
/// and the checks waiting for an answer, at most `max_pending`. Time is passed
/// in, so the rules are tested without a clock.
struct Cache {
    ttl: Duration,
    max_entries: usize,
    max_pending: usize,
    entries: HashMap<Key, Entry>,
    /// Keys in insertion order, which is also expiry order (one TTL for all).
    order: VecDeque<(Key, u64)>,
    next_generation: u64,
    pending: HashMap<Key, watch::Receiver<Option<Decision>>>,
}

impl Cache {
    fn new(ttl: Duration, max_entries: usize, max_pending: usize) -> Self {
        Self {
            ttl,
            max_entries,
            max_pending,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            pending: HashMap::new(),
        }
    }

    fn lookup(&mut self, key: &Key, now: Instant) -> Lookup {
        if let Some(entry) = self.entries.get(key) {
            if now < entry.expires {
                return Lookup::Hit(entry.allowed);
            }
            self.entries.remove(key);
        }
        if let Some(rx) = self.pending.get(key) {
            // A sender dropped without answering (its task was cancelled) leaves a
            // stale entry: replace it rather than wait forever.
            if rx.has_changed().is_ok() {
                return Lookup::Join(rx.clone());
            }
            self.pending.remove(key);
        }
        if self.pending.len() >= self.max_pending {
            return Lookup::Full;
        }
        let (tx, rx) = watch::channel(None);
        self.pending.insert(key.clone(), rx);
        Lookup::Lead(tx)
    }

    /// Ends the pending check of `key`, caching `answer` when there is one.
    fn complete(&mut self, key: Key, answer: Option<bool>, now: Instant) {
        self.pending.remove(&key);
        let Some(allowed) = answer else {
            return;
        };
        if self.ttl.is_zero() {
            return;
        }
        self.sweep(now);
        while self.entries.len() >= self.max_entries {
            if !self.evict_oldest() {
                break;
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(
            key.clone(),
            Entry {
                allowed,
                expires: now + self.ttl,
                generation,
            },
        );
        self.order.push_back((key, generation));
        // Stale pushes (keys answered again, or removed on expiry) stay in `order`
        // until they reach its front; compact when they dominate it.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    /// Drops expired entries from the front of the insertion order.
    fn sweep(&mut self, now: Instant) {
        while let Some((key, generation)) = self.order.front() {
            match self.entries.get(key) {
                Some(entry) if entry.generation == *generation => {
                    if now < entry.expires {
                        return;
                    }
                    self.entries.remove(key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// Removes the oldest live entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, generation)) = self.order.pop_front() {
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation)
            {
                self.entries.remove(&key);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::{json, Value};
    use tokio::net::TcpListener;

    /// What the application does with a request.
    #[derive(Clone)]
    enum Reply {
        /// Answers this status and body (chunked when `chunked`).
        Answer {
            status: u16,
            body: String,
            chunked: bool,
        },
        /// Answers after a delay.
        Slow(Duration, Box<Reply>),
        /// Never answers.
        Hang,
    }

    fn answer(status: u16, body: &str) -> Reply {
        Reply::Answer {
            status,
            body: body.to_owned(),
            chunked: false,
        }
    }

    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        path: String,
        headers: HeaderMap,
        body: Value,
    }

    /// A real HTTP server on 127.0.0.1 that records what it is asked.
    struct App {
        url: String,
        requests: Arc<AtomicUsize>,
        max_concurrent: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    type Behaviour = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

    async fn respond(
        reply: Reply,
    ) -> http::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
        let mut reply = reply;
        loop {
            match reply {
                Reply::Slow(delay, next) => {
                    tokio::time::sleep(delay).await;
                    reply = *next;
                }
                Reply::Hang => std::future::pending::<()>().await,
                Reply::Answer {
                    status,
                    body,
                    chunked,
                } => {
                    let body = if chunked {
                        let chunks: Vec<Result<hyper::body::Frame<Bytes>, Infallible>> = body
                            .into_bytes()
                            .chunks(100)
                            .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
                            .collect();
                        http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed()
                    } else {
                        Full::new(Bytes::from(body)).boxed()
                    };
                    let mut response = http::Response::new(body);
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    return response;
                }
            }
        }
    }

    async fn app(behaviour: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/check", listener.local_addr().unwrap());
        let behaviour: Behaviour = Arc::new(behaviour);
        let requests = Arc::new(AtomicUsize::new(0));
        let current = Arc::new(AtomicUsize::new(0));
        let max_concurrent = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = (
            Arc::clone(&requests),
            current,
            Arc::clone(&max_concurrent),
            Arc::clone(&seen),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let behaviour = Arc::clone(&behaviour);
                let (requests, current, max_concurrent, seen) = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<Incoming>| {
                        let behaviour = Arc::clone(&behaviour);
                        let (requests, current, max_concurrent, seen) = (
                            requests.clone(),
                            current.clone(),
                            max_concurrent.clone(),
                            seen.clone(),
                        );
                        async move {
                            requests.fetch_add(1, Ordering::SeqCst);
                            let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                            max_concurrent.fetch_max(now, Ordering::SeqCst);
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.unwrap().to_bytes();
                            let s = Seen {
                                method: parts.method,
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                            };
                            seen.lock().push(s.clone());
                            let response = respond(behaviour(&s)).await;
                            current.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        App {
            url,
            requests,
            max_concurrent,
            seen,
        }
    }

    impl App {
        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
        fn last(&self) -> Seen {
            self.seen.lock().last().cloned().unwrap()
        }
    }

    fn check_for(app: &App) -> BackendCheck {
        BackendCheck::new(BackendSettings::new(&app.url)).unwrap()
    }

    fn none() -> ForwardedHeaders {
        ForwardedHeaders::default()
    }

    #[tokio::test]
    async fn allows_and_sends_the_documented_request() {
        let app = app(|_| answer(200, r#"{"allowed": true, "note": "ignored"}"#)).await;
        let check = check_for(&app);
        assert_eq!(
            check.check("abc123", "/12345/*", &none()).await,
            Decision::Allowed
        );
        let seen = app.last();
        assert_eq!(seen.method, Method::POST);
        assert_eq!(seen.path, "/check");
        assert_eq!(
            seen.body,
            json!({"clientId": "abc123", "channel": "/12345/*"})
        );
        assert_eq!(seen.headers[CONTENT_TYPE], "application/json");
        assert_eq!(seen.headers[ACCEPT], "application/json");
        assert!(seen.headers.get(COOKIE).is_none());
        let c = check.counters();
        assert_eq!((c.requests, c.allowed, c.cache_hits), (1, 1, 0));
    }

    #[tokio::test]
    async fn application_refusals_are_cached() {
        for reply in [
            answer(403, ""),
            answer(401, "login first"),
            answer(200, r#"{"allowed": false}"#),
        ] {
            let app = app(move |_| reply.clone()).await;
            let check = check_for(&app);
            for _ in 0..3 {
                assert_eq!(
                    check.check("c", "/a", &none()).await,
                    Decision::Refused(Refusal::Denied)
                );
            }
            assert_eq!(app.requests(), 1);
            let c = check.counters();
            assert_eq!((c.requests, c.denied, c.cache_hits), (1, 1, 2));
        }
    }

    #[tokio::test]
    async fn anything_else_refuses_and_is_asked_again() {
        let big = format!(
            r#"{{"allowed": true, "pad": "{}"}}"#,
            "x".repeat(MAX_ANSWER_BYTES)
        );
        let cases = [
            (answer(500, r#"{"allowed": true}"#), Refusal::Status(500)),
            (answer(404, ""), Refusal::Status(404)),
            (answer(302, ""), Refusal::Status(302)),
            (answer(200, ""), Refusal::BadAnswer),
            (answer(204, ""), Refusal::BadAnswer),
            (answer(200, "yes"), Refusal::BadAnswer),
            (answer(200, r#"{"allowed": "true"}"#), Refusal::BadAnswer),
            (answer(200, r#"{"allowed": 1}"#), Refusal::BadAnswer),
            (answer(200, r#"[{"allowed": true}]"#), Refusal::BadAnswer),
            (answer(200, r#"{"ok": true}"#), Refusal::BadAnswer),
            (answer(200, &big), Refusal::AnswerTooLarge),
            (
                Reply::Answer {
                    status: 200,
                    body: big.clone(),
                    chunked: true,
                },
                Refusal::AnswerTooLarge,
            ),
        ];
        for (reply, refusal) in cases {
            let app = app(move |_| reply.clone()).await;
            let check = check_for(&app);
            for _ in 0..2 {
                assert_eq!(
                    check.check("c", "/a", &none()).await,
                    Decision::Refused(refusal),
                    "{refusal:?}"
                );
            }
            assert_eq!(app.requests(), 2, "{refusal:?}: not cached");
            let c = check.counters();
            let counted = match refusal {
                Refusal::Status(_) => c.bad_status,
                Refusal::BadAnswer => c.bad_answers,
                Refusal::AnswerTooLarge => c.too_large,
                _ => unreachable!(),
            };
            assert_eq!((c.requests, counted, c.allowed), (2, 2, 0), "{refusal:?}");
        }
    }

    #[tokio::test]
    async fn a_chunked_answer_within_the_bound_is_read() {
        let body = format!(r#"{{"allowed": true, "pad": "{}"}}"#, "x".repeat(1000));
        let app = app(move |_| Reply::Answer {
            status: 200,
            body: body.clone(),
            chunked: true,
        })
        .await;
        assert_eq!(
            check_for(&app).check("c", "/a", &none()).await,
            Decision::Allowed
        );
    }

    #[tokio::test]
    async fn an_application_that_never_answers_refuses_after_the_timeout() {
        let app = app(|_| Reply::Hang).await;
        let mut settings = BackendSettings::new(&app.url);
        settings.timeout = Duration::from_millis(300);
        let check = BackendCheck::new(settings).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            check.check("c", "/a", &none()).await,
            Decision::Refused(Refusal::Timeout)
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        let c = check.counters();
        assert_eq!((c.requests, c.timeouts), (1, 1));
        assert_eq!(check.cached(), 0);
    }

    #[tokio::test]
    async fn connection_errors_refuse() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let check =
            BackendCheck::new(BackendSettings::new(format!("http://{addr}/check"))).unwrap();
        assert_eq!(
            check.check("c", "/a", &none()).await,
            Decision::Refused(Refusal::Transport)
        );
        assert_eq!(check.counters().transport_errors, 1);
    }

    #[tokio::test]
    async fn cache_is_per_client_and_channel() {
        let app = app(|seen| {
            let allowed = seen.body["channel"] == "/mine";
            answer(200, &json!({ "allowed": allowed }).to_string())
        })
        .await;
        let check = check_for(&app);
        assert!(check.check("c1", "/mine", &none()).await.is_allowed());
        assert!(check.check("c1", "/mine", &none()).await.is_allowed());
        assert_eq!(app.requests(), 1, "the second check is a cache hit");
        assert!(!check.check("c1", "/theirs", &none()).await.is_allowed());
        assert!(check.check("c2", "/mine", &none()).await.is_allowed());
        assert_eq!(app.requests(), 3);
        assert_eq!(check.cached(), 3);
        let c = check.counters();
        assert_eq!((c.allowed, c.denied, c.cache_hits), (2, 1, 1));

        // A zero TTL asks every time.
        let mut settings = BackendSettings::new(&app.url);
        settings.cache_ttl = Duration::ZERO;
        let check = BackendCheck::new(settings).unwrap();
        assert!(check.check("c1", "/mine", &none()).await.is_allowed());
        assert!(check.check("c1", "/mine", &none()).await.is_allowed());
        assert_eq!(app.requests(), 5);
        assert_eq!(check.cached(), 0);
    }

    #[tokio::test]
    async fn identical_concurrent_checks_share_one_request() {
        let app = app(|_| {
            Reply::Slow(
                Duration::from_millis(200),
                Box::new(answer(200, r#"{"allowed": true}"#)),
            )
        })
        .await;
        let check = check_for(&app);
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let check = check.clone();
            tasks.push(tokio::spawn(async move {
                check.check("c", "/a", &ForwardedHeaders::default()).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Decision::Allowed);
        }
        assert_eq!(app.requests(), 1);
        let c = check.counters();
        assert_eq!((c.requests, c.coalesced + c.cache_hits), (1, 9));
    }

    #[tokio::test]
    async fn requests_in_flight_are_bounded() {
        let app = app(|_| {
            Reply::Slow(
                Duration::from_millis(100),
                Box::new(answer(200, r#"{"allowed": true}"#)),
            )
        })
        .await;
        let mut settings = BackendSettings::new(&app.url);
        settings.max_in_flight = 2;
        settings.timeout = Duration::from_secs(30);
        let check = BackendCheck::new(settings).unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let check = check.clone();
            tasks.push(tokio::spawn(async move {
                check
                    .check("c", &format!("/ch{i}"), &ForwardedHeaders::default())
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Decision::Allowed);
        }
        assert_eq!(app.requests(), 6);
        assert_eq!(app.max_concurrent.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn pending_checks_are_bounded() {
        let app = app(|_| Reply::Hang).await;
        let mut settings = BackendSettings::new(&app.url);
        settings.max_pending = 2;
        settings.timeout = Duration::from_millis(300);
        let check = BackendCheck::new(settings).unwrap();
        let h = none();
        let (a, b, c) = tokio::join!(
            check.check("c", "/a", &h),
            check.check("c", "/b", &h),
            check.check("c", "/c", &h),
        );
        assert_eq!(a, Decision::Refused(Refusal::Timeout));
        assert_eq!(b, Decision::Refused(Refusal::Timeout));
        assert_eq!(c, Decision::Refused(Refusal::Overloaded));
        let counters = check.counters();
        assert_eq!((counters.timeouts, counters.overloaded), (2, 1));
        // Once those are over, checks go through again.
        assert_eq!(
            check.check("c", "/d", &h).await,
            Decision::Refused(Refusal::Timeout)
        );
    }

    #[tokio::test]
    async fn forwards_only_the_allow_listed_headers() {
        let app = app(|_| answer(200, r#"{"allowed": true}"#)).await;
        let mut settings = BackendSettings::new(&app.url);
        settings.forward_headers = vec!["Cookie".into(), "X-Tenant".into(), "x-tenant".into()];
        let check = BackendCheck::new(settings).unwrap();
        let mut browser = HeaderMap::new();
        browser.append(COOKIE, HeaderValue::from_static("session=s3cr3t"));
        browser.append(COOKIE, HeaderValue::from_static("theme=dark"));
        browser.append("x-tenant", HeaderValue::from_static("acme"));
        browser.append("x-tenant", HeaderValue::from_static("beta"));
        browser.append("authorization", HeaderValue::from_static("Bearer t0ken"));
        browser.append("x-other", HeaderValue::from_static("no"));
        browser.append("host", HeaderValue::from_static("browser.example"));
        let forwarded = check.forwarded(&browser);
        let debug = format!("{forwarded:?}");
        assert!(
            !debug.contains("s3cr3t") && debug.contains("cookie"),
            "{debug}"
        );
        assert!(check.check("c", "/a", &forwarded).await.is_allowed());
        let seen = app.last();
        let values = |name: &str| -> Vec<String> {
            seen.headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(values("cookie"), ["session=s3cr3t; theme=dark"]);
        assert_eq!(values("x-tenant"), ["acme", "beta"]);
        assert!(values("authorization").is_empty());
        assert!(values("x-other").is_empty());
        assert_ne!(values("host"), ["browser.example"]);
        // Nothing configured, nothing forwarded.
        let plain = check_for(&app);
        assert!(plain.forwarded(&browser).is_empty());
        assert!(plain
            .check("c", "/a", &plain.forwarded(&browser))
            .await
            .is_allowed());
        assert!(app.last().headers.get(COOKIE).is_none());
    }

    #[tokio::test]
    async fn https_with_an_extra_trust_anchor() {
        use tokio_rustls::TlsAcceptor;

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |_req: http::Request<Incoming>| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                                r#"{"allowed": true}"#,
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        let url = format!("https://{addr}/check");

        // Untrusted certificate: refused, never allowed.
        let untrusted = BackendCheck::new(BackendSettings::new(&url)).unwrap();
        assert_eq!(
            untrusted.check("c", "/a", &none()).await,
            Decision::Refused(Refusal::Transport)
        );
        assert_eq!(requests.load(Ordering::SeqCst), 0);

        let mut settings = BackendSettings::new(&url);
        settings.ca_pem = Some(cert.pem());
        let trusted = BackendCheck::new(settings).unwrap();
        assert_eq!(trusted.check("c", "/a", &none()).await, Decision::Allowed);
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn configuration_errors() {
        let build = |f: &dyn Fn(&mut BackendSettings)| {
            let mut s = BackendSettings::new("https://app.internal:8443/bayeux/can-subscribe");
            f(&mut s);
            BackendCheck::new(s)
        };
        assert!(build(&|_| {}).is_ok());
        for url in [
            "",
            "app.internal/check",
            "ftp://app.internal/check",
            "http:///check",
            "https://user:pass@app.internal/check",
            "not a url",
        ] {
            assert!(
                matches!(
                    build(&|s| s.url = url.into()),
                    Err(BackendConfigError::BadUrl { .. })
                ),
                "{url:?}"
            );
        }
        let err = build(&|s| s.url = "https://user:pw@app/x".into()).unwrap_err();
        assert!(err.to_string().contains("user info"), "{err}");
        for header in [
            "Host",
            "content-length",
            "Connection",
            "transfer-encoding",
            "accept",
        ] {
            assert!(matches!(
                build(&|s| s.forward_headers = vec![header.into()]),
                Err(BackendConfigError::ForbiddenHeader(h)) if h == header
            ));
        }
        for header in ["", "bad header", "x:y", "é"] {
            assert!(matches!(
                build(&|s| s.forward_headers = vec![header.into()]),
                Err(BackendConfigError::BadHeaderName(_))
            ));
        }
        assert!(matches!(
            build(&|s| s.timeout = Duration::ZERO),
            Err(BackendConfigError::BadTimeout)
        ));
        assert!(matches!(
            build(&|s| s.timeout = MAX_TIMEOUT + Duration::from_millis(1)),
            Err(BackendConfigError::BadTimeout)
        ));
        assert!(matches!(
            build(&|s| s.max_in_flight = 0),
            Err(BackendConfigError::ZeroBound("max_in_flight"))
        ));
        assert!(matches!(
            build(&|s| s.max_pending = 0),
            Err(BackendConfigError::ZeroBound("max_pending"))
        ));
        assert!(matches!(
            build(&|s| s.max_cache_entries = 0),
            Err(BackendConfigError::ZeroBound("max_cache_entries"))
        ));
        assert!(matches!(
            build(&|s| s.ca_pem = Some("nothing".into())),
            Err(BackendConfigError::BadCa(_))
        ));
        let debug = format!(
            "{:?}",
            BackendSettings {
                ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
                ..BackendSettings::new("http://a/")
            }
        );
        assert!(!debug.contains("BEGIN"), "{debug}");
    }

    fn key(client_id: &str, channel: &str) -> Key {
        Key {
            client_id: client_id.into(),
            channel: channel.into(),
        }
    }

    /// Looks `k` up as a leader and completes it with `answer` at `now`.
    fn answer_at(cache: &mut Cache, k: &Key, answer: Option<bool>, now: Instant) {
        assert!(matches!(cache.lookup(k, now), Lookup::Lead(_)));
        cache.complete(k.clone(), answer, now);
    }

    #[test]
    fn cache_entries_expire_after_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut cache = Cache::new(ttl, 10, 10);
        let k = key("c", "/a");
        answer_at(&mut cache, &k, Some(true), t0);
        assert!(matches!(
            cache.lookup(&k, t0 + ttl - Duration::from_millis(1)),
            Lookup::Hit(true)
        ));
        assert!(
            matches!(cache.lookup(&k, t0 + ttl), Lookup::Lead(_)),
            "expired"
        );
        assert!(cache.entries.is_empty());
        // Failures (no answer) are not cached.
        cache.complete(k.clone(), None, t0 + ttl);
        assert!(matches!(cache.lookup(&k, t0 + ttl), Lookup::Lead(_)));
        cache.complete(k.clone(), Some(false), t0 + ttl);
        assert!(matches!(cache.lookup(&k, t0 + ttl), Lookup::Hit(false)));
    }

    #[test]
    fn cache_is_bounded_and_evicts_expired_then_oldest() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut cache = Cache::new(ttl, 3, 10);
        for (i, ch) in ["/1", "/2", "/3"].iter().enumerate() {
            answer_at(
                &mut cache,
                &key("c", ch),
                Some(true),
                t0 + Duration::from_secs(i as u64),
            );
        }
        // Full: the oldest goes.
        answer_at(
            &mut cache,
            &key("c", "/4"),
            Some(true),
            t0 + Duration::from_secs(3),
        );
        assert_eq!(cache.entries.len(), 3);
        assert!(!cache.entries.contains_key(&key("c", "/1")));
        // Later, /2 and /3 have expired: both are swept, /4 stays.
        answer_at(
            &mut cache,
            &key("c", "/5"),
            Some(false),
            t0 + Duration::from_secs(12),
        );
        assert_eq!(cache.entries.len(), 2);
        assert!(cache.entries.contains_key(&key("c", "/4")));
        assert!(cache.entries.contains_key(&key("c", "/5")));
        // Many answers for few keys keep the order queue bounded.
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_secs(20) + Duration::from_millis(i);
            let k = key("c", ["/x", "/y"][(i % 2) as usize]);
            let _ = cache.lookup(&k, now + ttl);
            cache.complete(k, Some(true), now + ttl);
        }
        assert!(cache.entries.len() <= 3);
        assert!(cache.order.len() <= 2 * 3 + 64 + 1, "{}", cache.order.len());
    }

    #[test]
    fn cache_pending_checks() {
        let t0 = Instant::now();
        let mut cache = Cache::new(Duration::from_secs(10), 10, 2);
        let (a, b, c) = (key("c", "/a"), key("c", "/b"), key("c", "/c"));
        let Lookup::Lead(tx_a) = cache.lookup(&a, t0) else {
            panic!("lead");
        };
        assert!(matches!(cache.lookup(&a, t0), Lookup::Join(_)));
        let Lookup::Lead(tx_b) = cache.lookup(&b, t0) else {
            panic!("lead");
        };
        assert!(matches!(cache.lookup(&c, t0), Lookup::Full));
        cache.complete(a.clone(), Some(true), t0);
        drop(tx_a);
        assert!(matches!(cache.lookup(&a, t0), Lookup::Hit(true)));
        // A leader that vanished without answering does not block its key.
        drop(tx_b);
        assert!(matches!(cache.lookup(&b, t0), Lookup::Lead(_)));
    }
}
