//! The subscribe policy and the origin policy of a route, built from the
//! blocks in [`super::jwt`], [`super::grants`] and [`super::backend`].
//!
//! - `open`: anyone may subscribe to any channel (Faye's behaviour, the default).
//! - `jwt`: a session's grants come from a token presented in `ext.token` on
//!   `/meta/handshake` (and renewed by one on `/meta/subscribe`); a
//!   subscription is allowed only when the grants cover every channel it could
//!   match; the session stops receiving when the token's time is up.
//! - `backend`: each new subscription is put to the application over HTTP(S)
//!   with the browser's allow-listed headers; answers are cached per session
//!   and channel; anything but a clear yes refuses.
//!
//! The origin policy is `any` (Faye's behaviour) or a list of allowed origins
//! (`scheme://host[:port]`), checked for CORS, WebSocket upgrades, EventSource
//! streams and JSONP.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::backend::{BackendCheck, BackendSettings, Decision, ForwardedHeaders};
use super::grants::{GrantTemplate, Grants};
use super::jwt::{JwtError, JwtVerifier};

/// The key of `ext` where a client presents its token.
pub const TOKEN_EXT_KEY: &str = "token";

/// How a route's tokens are read, checked and turned into grants.
pub struct JwtPolicy {
    /// Verifies signature, algorithm, issuer, audience and time.
    pub verifier: JwtVerifier,
    /// A claim holding an array of granted channel patterns, if any.
    pub grants_claim: Option<String>,
    /// Grants built from the claims, e.g. `/{sub}` and `/{sub}/**`.
    pub templates: Vec<GrantTemplate>,
    /// What the route's file said, for telling a changed policy from an
    /// unchanged one at reload (the key's text or path included, never shown).
    pub source: String,
}

impl std::fmt::Debug for JwtPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtPolicy")
            .field("verifier", &self.verifier)
            .field("grants_claim", &self.grants_claim)
            .field("templates", &self.templates)
            .finish_non_exhaustive()
    }
}

impl JwtPolicy {
    /// Verifies `token` now and returns what it grants, until when.
    pub fn grant(&self, token: &str) -> Result<SessionGrant, JwtError> {
        let verified = self.verifier.verify(token, SystemTime::now())?;
        Ok(SessionGrant {
            grants: verified.grants(self.grants_claim.as_deref(), &self.templates),
            valid_until: verified.valid_until,
        })
    }
}

/// The backend check of a route.
#[derive(Debug)]
pub struct BackendPolicy {
    /// The client of the application's check endpoint (with its cache).
    pub check: BackendCheck,
    /// Its settings, for telling a changed policy from an unchanged one.
    pub settings: BackendSettings,
}

/// Who may subscribe on a route.
#[derive(Debug, Clone, Default)]
pub enum SubscribePolicy {
    /// Anyone, to anything (Faye's behaviour).
    #[default]
    Open,
    /// Grants from a token.
    Jwt(Arc<JwtPolicy>),
    /// The application decides.
    Backend(Arc<BackendPolicy>),
}

impl PartialEq for SubscribePolicy {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SubscribePolicy::Open, SubscribePolicy::Open) => true,
            (SubscribePolicy::Jwt(a), SubscribePolicy::Jwt(b)) => a.source == b.source,
            (SubscribePolicy::Backend(a), SubscribePolicy::Backend(b)) => a.settings == b.settings,
            _ => false,
        }
    }
}

impl SubscribePolicy {
    /// The policy's name, for logs, metrics and the console.
    pub fn name(&self) -> &'static str {
        match self {
            SubscribePolicy::Open => "open",
            SubscribePolicy::Jwt(_) => "jwt",
            SubscribePolicy::Backend(_) => "backend",
        }
    }

    /// The browser headers to keep for backend checks (for a WebSocket, from
    /// its upgrade request, for its whole life); `None` for other policies, so
    /// nothing is kept for nothing.
    pub fn forwarded(&self, headers: &http::HeaderMap) -> Option<ForwardedHeaders> {
        match self {
            SubscribePolicy::Backend(b) => Some(b.check.forwarded(headers)),
            _ => None,
        }
    }

    /// Asks the application whether `client_id` may subscribe to `channel`.
    /// True for the other policies, which decide without asking.
    pub async fn backend_allows(
        &self,
        client_id: &str,
        channel: &str,
        headers: Option<&ForwardedHeaders>,
    ) -> bool {
        match self {
            SubscribePolicy::Backend(b) => {
                let empty = ForwardedHeaders::default();
                let decision = b
                    .check
                    .check(client_id, channel, headers.unwrap_or(&empty))
                    .await;
                matches!(decision, Decision::Allowed)
            }
            _ => true,
        }
    }
}

/// What a verified token lets a session read, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionGrant {
    /// The channels and patterns granted.
    pub grants: Grants,
    /// When the token (plus leeway) runs out: the session stops receiving then.
    pub valid_until: SystemTime,
}

impl SessionGrant {
    /// True once the token's time is up.
    pub fn expired(&self, now: SystemTime) -> bool {
        now >= self.valid_until
    }
}

/// The token a message presents in `ext`, if any.
pub fn presented_token(message: &Map<String, Value>) -> Option<&str> {
    message
        .get("ext")
        .and_then(|e| e.get(TOKEN_EXT_KEY))
        .and_then(Value::as_str)
}

/// Which web origins may use a route from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Any origin, as Faye.
    #[default]
    Any,
    /// Only these origins (`scheme://host[:port]`, compared without regard to
    /// the case of scheme and host).
    Only(Vec<String>),
}

impl OriginPolicy {
    /// True when a request from `origin` may be served.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::Only(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    /// True when the route restricts origins (replies then carry `Vary: Origin`).
    pub fn is_restricted(&self) -> bool {
        matches!(self, OriginPolicy::Only(_))
    }

    /// The policy's name, for the console.
    pub fn describe(&self) -> String {
        match self {
            OriginPolicy::Any => "any".to_owned(),
            OriginPolicy::Only(list) => list.join(", "),
        }
    }
}

/// The origin (`scheme://host[:port]`) of a URL such as a `Referer`, if it has one.
pub fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let p = OriginPolicy::Only(vec!["https://app.example.com".to_owned()]);
        assert!(p.allows("https://app.example.com"));
        assert!(p.allows("HTTPS://APP.example.com"));
        assert!(!p.allows("https://evil.example.com"));
        assert!(!p.allows("http://app.example.com"));
        assert!(OriginPolicy::Any.allows("null"));
        assert_eq!(
            origin_of("https://app.example.com:8443/page?x#y"),
            Some("https://app.example.com:8443")
        );
        assert_eq!(origin_of("https://a.b"), Some("https://a.b"));
        assert_eq!(origin_of("nonsense"), None);
    }

    #[test]
    fn tokens_are_read_from_ext() {
        let m = serde_json::json!({"ext": {"token": "abc"}});
        assert_eq!(presented_token(m.as_object().unwrap()), Some("abc"));
        let m = serde_json::json!({"ext": {"token": 1}});
        assert_eq!(presented_token(m.as_object().unwrap()), None);
    }
}
