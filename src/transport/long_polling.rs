//! HTTP polling transports: `long-polling` (POST JSON), `cross-origin-long-polling`
//! (POST form `message=`), and `callback-polling` (GET JSONP).
//!
//! A request's batch is processed at once; if it holds a `/meta/connect`, the
//! response waits for it (events, timeout, supersession, disconnect or drain).
//! If the client goes away first, hyper drops this future, the connect releases
//! delivery, and the events stay queued for the next connect instead of being
//! written to a dead socket (a deliberate improvement on Faye).

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::auth::Credentials;
use crate::bayeux::{parse_batch, BadRequest};
use crate::budget::Charge;
use crate::engine::{Ctx, Engine, Transport};
use crate::http::cors;
use crate::http::response::{bad_request, bayeux_headers, full, text, too_large, Body};

/// The default JSONP callback name when `jsonp` is absent.
pub const DEFAULT_CALLBACK: &str = "jsonpcallback";

enum Format {
    Json,
    Jsonp(String),
}

/// True for callbacks Faye accepts: dotted JavaScript identifiers.
pub fn valid_callback(name: &str) -> bool {
    fn ident(s: &str) -> bool {
        let mut bytes = s.bytes();
        match bytes.next() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'$' => {}
            _ => return false,
        }
        bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    }
    !name.is_empty() && name.split('.').all(ident)
}

enum BodyError {
    TooLarge,
    Busy,
    Bad,
}

/// Reads a whole body, counting every chunk against the process's budget for
/// unfinished input as it arrives.
async fn read_body(mut body: Limited<Incoming>, incoming: &mut Charge) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge
            } else {
                BodyError::Bad
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if !incoming.add(data.len()) {
                return Err(BodyError::Busy);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// `POST {prefix}…`: JSON when the content type is `application/json`, a form
/// with a `message` field otherwise.
pub async fn post(
    req: Request<Incoming>,
    engine: Engine,
    body_timeout: std::time::Duration,
    mut incoming: Charge,
    ip: IpAddr,
) -> Response<Body> {
    let limit = engine.settings().max_message_bytes;
    let (parts, body) = req.into_parts();
    // A body that stalls would otherwise hold the connection forever.
    let read = read_body(Limited::new(body, limit), &mut incoming);
    let bytes = match tokio::time::timeout(body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => return too_large(),
        Ok(Err(BodyError::Busy)) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Server busy, retry later")
        }
        Ok(Err(BodyError::Bad)) => return bad_request(),
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "Request timeout"),
    };
    // Parsed from here on: the bytes are no longer unfinished input.
    incoming.release();
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|v| v.eq_ignore_ascii_case("application/json"));
    let payload = if is_json {
        bytes
    } else {
        let mut message = None;
        for (key, value) in form_urlencoded::parse(&bytes) {
            match &*key {
                "message" if message.is_none() => message = Some(value.into_owned()),
                // Faye checks a non-empty `jsonp` only: an empty one is no callback.
                "jsonp" if !value.is_empty() && !valid_callback(&value) => return bad_request(),
                _ => {}
            }
        }
        match message {
            Some(m) => Bytes::from(m),
            None => return bad_request(),
        }
    };
    run(
        &engine,
        &payload,
        Format::Json,
        &parts.headers,
        Transport::LongPolling,
        ip,
    )
    .await
}

/// `GET {prefix}…?message=…&jsonp=…`: JSONP.
pub async fn get(req: Request<Incoming>, engine: Engine, ip: IpAddr) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let mut message = None;
    let mut callback = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "message" if message.is_none() => message = Some(value.into_owned()),
            "jsonp" if callback.is_none() => callback = Some(value.into_owned()),
            _ => {}
        }
    }
    // As Faye's `params.jsonp || "jsonpcallback"`: an empty name means the default.
    let callback = callback
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_CALLBACK.to_owned());
    if !valid_callback(&callback) {
        return bad_request();
    }
    let Some(message) = message else {
        return bad_request();
    };
    if message.len() > engine.settings().max_message_bytes {
        return too_large();
    }
    let (parts, _) = req.into_parts();
    run(
        &engine,
        message.as_bytes(),
        Format::Jsonp(callback),
        &parts.headers,
        Transport::CallbackPolling,
        ip,
    )
    .await
}

async fn run(
    engine: &Engine,
    payload: &[u8],
    format: Format,
    headers: &HeaderMap,
    transport: Transport,
    ip: IpAddr,
) -> Response<Body> {
    let batch = match parse_batch(payload, engine.settings().max_batch_messages) {
        Ok(batch) => batch,
        Err(BadRequest::TooManyMessages(_)) => {
            engine.count_refused_batch();
            return text(StatusCode::PAYLOAD_TOO_LARGE, "Too many messages");
        }
        Err(_) => return bad_request(),
    };
    let forwarded = engine.settings().subscribe.forwarded(headers);
    let credentials = Credentials {
        bearer: crate::auth::bearer(headers),
        forwarded: forwarded.as_ref(),
    };
    let outcome = engine
        .process(batch, &mut Ctx::http(credentials, Some(ip)))
        .await;
    let mut items = outcome.items;
    if !outcome.connects.is_empty() {
        let _gauge = engine.gauge(transport);
        for wait in outcome.connects {
            items.extend(wait.wait().await);
        }
    }
    let json = crate::transport::encode(&items);
    let mut response = match format {
        Format::Json => {
            let mut r = Response::new(full(json));
            bayeux_headers(r.headers_mut(), "application/json; charset=utf-8");
            r
        }
        Format::Jsonp(callback) => {
            let mut body = Vec::with_capacity(json.len() + callback.len() + 8);
            body.extend_from_slice(b"/**/");
            body.extend_from_slice(callback.as_bytes());
            body.push(b'(');
            escape_line_separators(&json, &mut body);
            body.extend_from_slice(b");");
            let mut r = Response::new(full(body));
            bayeux_headers(r.headers_mut(), "text/javascript; charset=utf-8");
            r.headers_mut().insert(
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=f.txt"),
            );
            r
        }
    };
    cors::add_pair(headers, response.headers_mut(), &engine.settings().origins);
    response
}

/// U+2028 and U+2029 are valid in JSON but end a line in older JavaScript
/// parsers, so JSONP bodies carry them escaped.
fn escape_line_separators(json: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < json.len() {
        if json[i] == 0xE2
            && i + 2 < json.len()
            && json[i + 1] == 0x80
            && (json[i + 2] == 0xA8 || json[i + 2] == 0xA9)
        {
            out.extend_from_slice(if json[i + 2] == 0xA8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
        } else {
            out.push(json[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks() {
        for ok in ["__jsonp1__", "a.b.$c_1", "jsonpcallback", "A.B"] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in ["alert(1)", "42", "", "a..b", "a.", ".a", "a-b", "a b"] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }

    #[test]
    fn separators() {
        let mut out = Vec::new();
        escape_line_separators("[\"a\u{2028}b\u{2029}\"]".as_bytes(), &mut out);
        assert_eq!(out, b"[\"a\\u2028b\\u2029\"]");
    }
}
