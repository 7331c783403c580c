//! Cross-origin headers, exactly as Faye sends them, within a route's origin
//! policy.
//!
//! Faye echoes any `Origin` with credentials allowed (no allow-list) on GET and
//! POST replies, and answers preflights with a fixed header set whose
//! `Access-Control-Allow-Origin` is the `Origin`, else the `Referer`, else `*`.
//! A route with an origin list keeps that for the listed origins only: others
//! get no CORS headers at all (the browser then refuses them), and every reply
//! carries `Vary: Origin`. Keeping all of it here keeps CORS in one place
//! (faye#217 shows what happens when two layers both add these headers).

use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ORIGIN,
    REFERER, VARY,
};
use http::{HeaderMap, Response, StatusCode};

use super::response::{empty, Body};
use crate::auth::{origin_of, OriginPolicy};

/// The web origin a browser request comes from: its `Origin` header, else the
/// origin of its `Referer` (a `<script>` tag sends no `Origin`).
pub fn request_origin(request: &HeaderMap) -> Option<&str> {
    let origin = request.get(ORIGIN).and_then(|v| v.to_str().ok());
    origin.or_else(|| {
        request
            .get(REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(origin_of)
    })
}

/// True when the request's `Origin` (if any) is allowed by `origins`. A request
/// without one (not a browser, or a same-origin GET) is not a cross-origin use.
pub fn origin_allowed(request: &HeaderMap, origins: &OriginPolicy) -> bool {
    match request.get(ORIGIN) {
        None => true,
        Some(origin) => origin.to_str().is_ok_and(|o| origins.allows(o)),
    }
}

/// Adds the credentialed CORS pair when the request carried an allowed `Origin`.
pub fn add_pair(request: &HeaderMap, response: &mut HeaderMap, origins: &OriginPolicy) {
    if origins.is_restricted() {
        response.append(VARY, HeaderValue::from_static("Origin"));
        if !origin_allowed(request, origins) {
            return;
        }
    }
    if let Some(origin) = request.get(ORIGIN) {
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// The preflight reply: 200, empty body, no content type; without CORS headers
/// for an origin the route does not allow.
pub fn preflight(request: &HeaderMap, origins: &OriginPolicy) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::OK;
    if origins.is_restricted() {
        r.headers_mut()
            .insert(VARY, HeaderValue::from_static("Origin"));
        let allowed = request_origin(request).is_some_and(|o| origins.allows(o));
        if !allowed {
            return r;
        }
    }
    let h = r.headers_mut();
    let origin = request
        .get(ORIGIN)
        .or_else(|| request.get(REFERER))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("*"));
    h.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Authorization, Content-Type, Pragma, X-Requested-With"),
    );
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET"),
    );
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    r
}
