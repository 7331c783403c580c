//! Small constructors for the responses the gateway sends.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// The response body type of every handler. The error type is hyper's so a
/// proxied upstream body can be passed through as it streams.
pub type Body = BoxBody<Bytes, hyper::Error>;

fn never(e: Infallible) -> hyper::Error {
    match e {}
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(never).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(never).boxed()
}

/// A plain-text response (`text/plain; charset=utf-8`).
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// 400 `Bad request`, Faye's answer to anything that is not a Bayeux request.
pub fn bad_request() -> Response<Body> {
    text(StatusCode::BAD_REQUEST, "Bad request")
}

/// 404 with an empty body.
pub fn not_found() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// 413 when a body exceeds the route's `max_message_bytes`.
pub fn too_large() -> Response<Body> {
    text(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large")
}

/// 503 while the server drains (for new work that cannot be served any more).
pub fn unavailable() -> Response<Body> {
    text(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
}

/// Headers common to Bayeux replies (JSON and JSONP).
pub fn bayeux_headers(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}
