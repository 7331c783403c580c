//! Request envelopes and the reply skeleton.
//!
//! A request body or WebSocket text frame holds one JSON object or an array of
//! them; `null` means "nothing". Anything else (a bare number, string or boolean,
//! or invalid JSON) is a bad request. Messages stay `serde_json` maps so that
//! every field a publisher sent (`id`, `ext`, custom keys) is forwarded verbatim.

use serde_json::{Map, Value};

/// One parsed request: each entry is a message, or `None` for a `null` entry,
/// which gets no reply at all (Faye skips falsy entries).
pub type Batch = Vec<Option<Map<String, Value>>>;

/// The request was not a Bayeux envelope: answered with HTTP 400 `Bad request`,
/// or silently ignored on a WebSocket.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad request: {0}")]
pub struct BadRequest(pub &'static str);

/// Parses a request body or frame into a [`Batch`].
pub fn parse_batch(input: &[u8]) -> Result<Batch, BadRequest> {
    let value: Value = serde_json::from_slice(input).map_err(|_| BadRequest("invalid JSON"))?;
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => Ok(vec![Some(map)]),
        Value::Array(items) => Ok(items.into_iter().map(entry).collect()),
        _ => Err(BadRequest(
            "top-level JSON value must be an object or an array",
        )),
    }
}

fn entry(value: Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        // Faye drops falsy entries without a reply.
        Value::Null | Value::Bool(false) => None,
        Value::Number(ref n) if n.as_f64() == Some(0.0) => None,
        Value::String(ref s) if s.is_empty() => None,
        // Other primitives behave like a message with no fields.
        _ => Some(Map::new()),
    }
}

/// JavaScript truthiness of an optional JSON value.
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_)) | Some(Value::Object(_)) => true,
    }
}

/// The reply skeleton Faye builds for every message: `id`, `clientId` and
/// `channel` copied when truthy, a request-supplied `error` copied, and nothing
/// else (`ext` and `data` are never echoed). `successful` is set by the caller.
pub fn reply_skeleton(message: &Map<String, Value>) -> Map<String, Value> {
    let mut reply = Map::new();
    for key in ["id", "clientId", "channel"] {
        if let Some(v) = message.get(key) {
            if truthy(Some(v)) {
                reply.insert(key.to_owned(), v.clone());
            }
        }
    }
    if let Some(err) = message.get("error") {
        if truthy(Some(err)) {
            reply.insert("error".to_owned(), err.clone());
        }
    }
    reply
}

/// Sets `successful` from the presence of `error`, as every handler ends.
pub fn finish(reply: &mut Map<String, Value>) -> bool {
    let ok = !reply.contains_key("error");
    reply.insert("successful".to_owned(), Value::Bool(ok));
    ok
}

/// The string value of `key` when it is a JSON string.
pub fn str_field<'a>(message: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    message.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes() {
        assert_eq!(parse_batch(b"null").unwrap().len(), 0);
        assert_eq!(parse_batch(b"[]").unwrap().len(), 0);
        assert_eq!(parse_batch(b"{\"a\":1}").unwrap().len(), 1);
        let b = parse_batch(b"[null,{\"channel\":\"/foo\"}]").unwrap();
        assert!(b[0].is_none() && b[1].is_some());
        assert!(parse_batch(b"1").is_err());
        assert!(parse_batch(b"\"x\"").is_err());
        assert!(parse_batch(b"[ }").is_err());
        assert!(parse_batch(b"").is_err());
    }

    #[test]
    fn skeleton_copies_truthy_only() {
        let m = json!({"id": 0, "clientId": "", "channel": "/a", "ext": {"x": 1}, "data": 1});
        let r = reply_skeleton(m.as_object().unwrap());
        assert_eq!(Value::Object(r), json!({"channel": "/a"}));
        let m = json!({"id": {}, "error": "boom"});
        let mut r = reply_skeleton(m.as_object().unwrap());
        assert!(!finish(&mut r));
        assert_eq!(
            Value::Object(r),
            json!({"id": {}, "error": "boom", "successful": false})
        );
    }
}
