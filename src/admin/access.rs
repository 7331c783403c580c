//! Who may use the operator's console and its API.
//!
//! `/healthz`, `/readyz` and `/metrics` are always open (the load balancer and
//! Prometheus need them) and are not handled here. For everything else:
//!
//! - **With a token** (`[server.admin] token_env`): every console and API
//!   request must present it, as `Authorization: Bearer <token>` or as the
//!   login cookie. The login form (`POST /login`) compares the token in
//!   constant time and sets `bayeux_admin`, an `HttpOnly; SameSite=Strict;
//!   Path=/` cookie whose value is a random value drawn when the process
//!   started, never the token: a restart logs everyone out, and the cookie is
//!   worthless once the process is gone. The page's static files (script,
//!   style) carry no data and stay open so the login form is styled.
//! - **Without a token**: the console and its read-only API (route figures,
//!   history, reloads) are served to anyone who reaches the listener; what
//!   shows user data (presence, taps) or changes something (test publish) is
//!   served only when the listener is bound to a loopback address, and only
//!   to requests whose `Host` is `localhost` or an IP address, so a web page
//!   that rebinds its own name to 127.0.0.1 cannot read it.
//! - **State-changing requests** (test publish, login, logout) are `POST`
//!   only. Unless authenticated by a bearer token (which a browser never
//!   sends by itself), they must carry the page's CSRF token (a random value
//!   per process, in the `X-CSRF-Token` header or the `csrf` form field) and
//!   come from the console's own origin (`Sec-Fetch-Site: same-origin`, or an
//!   `Origin` equal to `http://<Host>`).

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderValue, COOKIE, HOST, ORIGIN};
use http::HeaderMap;

use crate::auth::Secret;

/// The login cookie's name.
pub(super) const COOKIE_NAME: &str = "bayeux_admin";
/// The header carrying the CSRF token on `fetch` requests.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// No token is configured: nothing to present.
    Open,
    /// The login cookie.
    Cookie,
    /// `Authorization: Bearer <token>`.
    Bearer,
}

/// The access rules of one admin listener.
#[derive(Debug)]
pub(super) struct Access {
    token: Option<Secret>,
    session: Secret,
    session_value: String,
    csrf: Secret,
    csrf_value: String,
    loopback: bool,
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Access {
    /// The rules for a listener bound to `bound`, with the configured token.
    pub(super) fn new(token: Option<Secret>, bound: SocketAddr) -> Access {
        let session_value = random_hex();
        let csrf_value = random_hex();
        Access {
            token,
            session: Secret::new(&session_value),
            session_value,
            csrf: Secret::new(&csrf_value),
            csrf_value,
            loopback: bound.ip().to_canonical().is_loopback(),
        }
    }

    /// True when a token is configured.
    pub(super) fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// True when the listener is bound to a loopback address.
    pub(super) fn loopback(&self) -> bool {
        self.loopback
    }

    /// The CSRF token the page embeds.
    pub(super) fn csrf(&self) -> &str {
        &self.csrf_value
    }

    /// How the request authenticated, or `None` when a token is required and
    /// it presented neither the token nor the login cookie.
    pub(super) fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let Some(token) = &self.token else {
            return Some(Caller::Open);
        };
        if crate::auth::bearer(headers).is_some_and(|b| token.matches(b)) {
            return Some(Caller::Bearer);
        }
        if cookie(headers, COOKIE_NAME).is_some_and(|c| self.session.matches(c)) {
            return Some(Caller::Cookie);
        }
        None
    }

    /// True when `presented` is the configured token (login form).
    pub(super) fn token_matches(&self, presented: &str) -> bool {
        self.token.as_ref().is_some_and(|t| t.matches(presented))
    }

    /// Why presence, taps and test publish are refused to this request, if they are.
    pub(super) fn user_data_refusal(&self, headers: &HeaderMap) -> Option<&'static str> {
        if self.token.is_some() {
            return None;
        }
        if !self.loopback {
            return Some(
                "presence, taps and test publish show or change user data: without \
                 [server.admin] token_env they are served only when the admin listener \
                 is bound to a loopback address",
            );
        }
        if !host_is_local(headers) {
            return Some(
                "without [server.admin] token_env, user data is served only to requests \
                 for localhost or an IP address (Host header)",
            );
        }
        None
    }

    /// Why a state-changing request is refused, if it is. `form_csrf` is
    /// the `csrf` field of a form body, when the request sent a form.
    pub(super) fn post_refusal(
        &self,
        caller: Caller,
        headers: &HeaderMap,
        form_csrf: Option<&str>,
    ) -> Option<&'static str> {
        if caller == Caller::Bearer {
            return None;
        }
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .or(form_csrf);
        if !presented.is_some_and(|p| self.csrf.matches(p)) {
            return Some("missing or wrong CSRF token: reload the console page");
        }
        if !same_origin(headers) {
            return Some("cross-origin request refused");
        }
        None
    }

    /// The `Set-Cookie` value that logs a browser in.
    pub(super) fn login_cookie(&self) -> HeaderValue {
        let value = format!(
            "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/",
            self.session_value
        );
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
    }

    /// The `Set-Cookie` value that logs a browser out.
    pub(super) fn logout_cookie() -> HeaderValue {
        HeaderValue::from_static("bayeux_admin=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The request's `Host`, or `None` when it has none or several.
fn host(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(HOST).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// True when `Host` names localhost or an IP address (with or without a port).
fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = host(headers) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// True when the request comes from the console's own origin.
fn same_origin(headers: &HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = site {
        if site != "same-origin" {
            return false;
        }
    }
    match headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => host(headers).is_some_and(|h| origin == format!("http://{h}")),
        // A browser sends Origin on every cross-origin POST; without it only
        // Sec-Fetch-Site can vouch for the request.
        None => site.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_token_or_the_cookie_authenticates_and_the_cookie_is_not_the_token() {
        let a = Access::new(Some(Secret::new("tok")), "0.0.0.0:9090".parse().unwrap());
        assert_eq!(a.caller(&headers(&[])), None);
        assert_eq!(
            a.caller(&headers(&[("authorization", "Bearer tok")])),
            Some(Caller::Bearer)
        );
        assert_eq!(a.caller(&headers(&[("authorization", "Bearer no")])), None);
        let set = a.login_cookie();
        let set = set.to_str().unwrap();
        assert!(!set.contains("tok;") && !set.contains("=tok"), "{set}");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/")
        );
        let value = set.split(';').next().unwrap();
        assert_eq!(
            a.caller(&headers(&[("cookie", &format!("x=1; {value}"))])),
            Some(Caller::Cookie)
        );
        assert_eq!(a.caller(&headers(&[("cookie", "bayeux_admin=tok")])), None);
        // With a token, user data is served wherever the listener is bound.
        assert_eq!(
            a.user_data_refusal(&headers(&[("host", "admin.internal")])),
            None
        );
    }

    #[test]
    fn without_a_token_user_data_needs_loopback_and_a_local_host_name() {
        let public = Access::new(None, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(public.caller(&headers(&[])), Some(Caller::Open));
        assert!(public
            .user_data_refusal(&headers(&[("host", "127.0.0.1:9090")]))
            .is_some());
        let local = Access::new(None, "127.0.0.1:9090".parse().unwrap());
        for ok in [
            "127.0.0.1:9090",
            "localhost:9090",
            "[::1]:9090",
            "localhost",
        ] {
            assert_eq!(
                local.user_data_refusal(&headers(&[("host", ok)])),
                None,
                "{ok}"
            );
        }
        for bad in ["rebound.example:9090", "example.com"] {
            assert!(
                local
                    .user_data_refusal(&headers(&[("host", bad)]))
                    .is_some(),
                "{bad}"
            );
        }
        assert!(local.user_data_refusal(&headers(&[])).is_some());
    }

    #[test]
    fn posts_need_the_csrf_token_and_the_same_origin_unless_bearer() {
        let a = Access::new(None, "127.0.0.1:9090".parse().unwrap());
        let csrf = a.csrf().to_owned();
        let good = [
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin"),
            ("x-csrf-token", csrf.as_str()),
        ];
        assert_eq!(a.post_refusal(Caller::Open, &headers(&good), None), None);
        let no_token = &good[..3];
        assert!(a
            .post_refusal(Caller::Open, &headers(no_token), None)
            .is_some());
        assert_eq!(
            a.post_refusal(Caller::Open, &headers(no_token), Some(&csrf)),
            None,
            "the form field works too"
        );
        let cross = [
            ("host", "127.0.0.1:9090"),
            ("origin", "http://evil.example"),
            ("x-csrf-token", csrf.as_str()),
        ];
        assert!(a
            .post_refusal(Caller::Open, &headers(&cross), None)
            .is_some());
        let cross_site = [
            ("host", "127.0.0.1:9090"),
            ("sec-fetch-site", "cross-site"),
            ("x-csrf-token", csrf.as_str()),
        ];
        assert!(a
            .post_refusal(Caller::Open, &headers(&cross_site), None)
            .is_some());
        let neither = [("host", "127.0.0.1:9090"), ("x-csrf-token", csrf.as_str())];
        assert!(a
            .post_refusal(Caller::Cookie, &headers(&neither), None)
            .is_some());
        assert_eq!(a.post_refusal(Caller::Bearer, &headers(&[]), None), None);
    }
}
