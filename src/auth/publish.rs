//! The publish policy of a route: open (Faye's default), a shared secret, or
//! nobody.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Credentials, Denied};
use crate::bayeux::error;

/// A shared secret, compared in constant time and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: &str) -> Self {
        Secret(Arc::from(value))
    }

    /// True when `presented` equals the secret; the time taken depends only on
    /// the lengths, not on where the first difference is.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Who may publish on a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PublishPolicy {
    /// Anyone, as Faye (the default).
    #[default]
    Open,
    /// Only requests presenting the secret, in `ext.secret` or an
    /// `Authorization: Bearer` header; the secret is removed before delivery.
    Secret(Secret),
    /// Nobody: every publish is refused with `403 Forbidden channel`.
    Deny,
}

impl PublishPolicy {
    /// Decides whether `message` (a publish) may go out, given what the request
    /// presented. Either way the credentials (`ext.secret`, `ext.token`) are
    /// removed from `ext`: they never reach subscribers, nor a log.
    pub fn check(
        &self,
        message: &mut Map<String, Value>,
        credentials: &Credentials<'_>,
    ) -> Result<(), Denied> {
        let verdict = match self {
            PublishPolicy::Open => Ok(()),
            PublishPolicy::Deny => Err(Denied(error::channel_forbidden(message.get("channel")))),
            PublishPolicy::Secret(secret) => {
                let in_ext = message
                    .get("ext")
                    .and_then(|e| e.get("secret"))
                    .and_then(Value::as_str);
                // A secret in `ext` is the one judged, even when a header also came.
                match in_ext.or(credentials.bearer) {
                    Some(p) if secret.matches(p) => Ok(()),
                    _ => Err(Denied("403::Authentication required".to_owned())),
                }
            }
        };
        if let Some(Value::Object(ext)) = message.get_mut("ext") {
            ext.remove("secret");
            // A client extension may add its subscribe token to every message;
            // it is a credential too and never reaches other clients.
            ext.remove(super::TOKEN_EXT_KEY);
            if ext.is_empty() {
                message.remove("ext");
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(
        policy: &PublishPolicy,
        message: Value,
        bearer: Option<&str>,
    ) -> (Result<(), Denied>, Value) {
        let mut m = message.as_object().cloned().unwrap_or_default();
        let credentials = Credentials {
            bearer,
            forwarded: None,
        };
        let r = policy.check(&mut m, &credentials);
        (r, Value::Object(m))
    }

    #[test]
    fn secrets_compare_exactly_and_never_print() {
        let s = Secret::new("abc");
        assert!(s.matches("abc"));
        assert!(!s.matches("abd") && !s.matches("ab") && !s.matches(""));
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }

    #[test]
    fn secret_policy_checks_and_strips_the_secret() {
        let p = PublishPolicy::Secret(Secret::new("s3cret"));
        let (r, _) = check(&p, json!({"channel": "/a", "data": 1}), None);
        assert_eq!(r, Err(Denied("403::Authentication required".to_owned())));
        let (r, m) = check(
            &p,
            json!({"channel": "/a", "ext": {"secret": "s3cret"}}),
            None,
        );
        assert_eq!(r, Ok(()));
        assert_eq!(m, json!({"channel": "/a"}));
        let (r, _) = check(
            &p,
            json!({"channel": "/a", "ext": {"secret": "x"}}),
            Some("s3cret"),
        );
        assert!(
            r.is_err(),
            "a wrong ext secret is not rescued by the header"
        );
        let (r, m) = check(
            &p,
            json!({"channel": "/a", "ext": {"keep": 1}}),
            Some("s3cret"),
        );
        assert_eq!(r, Ok(()));
        assert_eq!(m, json!({"channel": "/a", "ext": {"keep": 1}}));
        let (r, m) = check(
            &p,
            json!({"channel": "/a", "ext": {"secret": "no", "k": 2}}),
            None,
        );
        assert!(r.is_err());
        assert_eq!(m["ext"], json!({"k": 2}), "stripped even when refused");
    }

    #[test]
    fn deny_and_open() {
        let (r, _) = check(&PublishPolicy::Deny, json!({"channel": "/a"}), Some("x"));
        assert_eq!(r, Err(Denied("403:/a:Forbidden channel".to_owned())));
        assert_eq!(
            check(&PublishPolicy::Open, json!({"channel": "/a"}), None).0,
            Ok(())
        );
    }
}
