//! Cross-origin headers, exactly as Faye sends them.
//!
//! Faye echoes any `Origin` with credentials allowed (no allow-list) on GET and
//! POST replies, and answers preflights with a fixed header set whose
//! `Access-Control-Allow-Origin` is the `Origin`, else the `Referer`, else `*`.
//! Keeping all of it here keeps CORS in one place (faye#217 shows what happens
//! when two layers both add these headers).

use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ORIGIN,
    REFERER,
};
use http::{HeaderMap, Response, StatusCode};

use super::response::{empty, Body};

/// Adds the credentialed CORS pair when the request carried an `Origin`.
pub fn add_pair(request: &HeaderMap, response: &mut HeaderMap) {
    if let Some(origin) = request.get(ORIGIN) {
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// The preflight reply: 200, empty body, no content type.
pub fn preflight(request: &HeaderMap) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::OK;
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
