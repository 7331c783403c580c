//! Request envelopes and the reply skeleton.
//!
//! A request body or WebSocket text frame holds one JSON object or an array of
//! them; `null` means "nothing". Anything else (a bare number, string or boolean,
//! or invalid JSON) is a bad request. Messages stay `serde_json` maps so that
//! every field a publisher sent (`id`, `ext`, custom keys) is forwarded verbatim.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One parsed request: each entry is a message, or `None` for a `null` entry,
/// which gets no reply at all (Faye skips falsy entries).
pub type Batch = Vec<Option<Map<String, Value>>>;

/// The request was not a Bayeux envelope the route accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadRequest {
    /// Not JSON (or nested deeper than the parser allows). HTTP 400; ignored
    /// on a WebSocket, as Faye ignores it.
    #[error("bad request: invalid JSON")]
    Json,
    /// JSON, but a bare number, string or boolean. HTTP 400; ignored on a WebSocket.
    #[error("bad request: top-level JSON value must be an object or an array")]
    NotEnvelope,
    /// An array of more messages than the route allows in one request. HTTP
    /// 413; close 1009 on a WebSocket. One refusal for the whole batch, never
    /// one error reply per element.
    #[error("bad request: more than {0} messages in one request")]
    TooManyMessages(usize),
}

/// Parses a request body or frame into a [`Batch`] of at most `max_messages`
/// messages. The array is read element by element and abandoned at the first
/// element past the bound, so an oversized batch is never built in memory.
pub fn parse_batch(input: &[u8], max_messages: usize) -> Result<Batch, BadRequest> {
    let outcome = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(input);
    let seed = BatchSeed {
        max: max_messages,
        refusal: &outcome,
    };
    let batch = seed.deserialize(&mut de).and_then(|b| de.end().map(|()| b));
    match (batch, outcome.take()) {
        (Ok(b), _) => Ok(b),
        (Err(_), Some(refusal)) => Err(refusal),
        (Err(_), None) => Err(BadRequest::Json),
    }
}

struct BatchSeed<'a> {
    max: usize,
    /// Why the visitor refused, when it was not a JSON syntax error.
    refusal: &'a Cell<Option<BadRequest>>,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Batch;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Batch, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Batch;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Bayeux message, an array of them, or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Batch, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Batch, A::Error> {
        let message = Map::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(vec![Some(message)])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch, A::Error> {
        let mut batch = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while let Some(value) = seq.next_element::<Value>()? {
            if batch.len() == self.max {
                self.refusal
                    .set(Some(BadRequest::TooManyMessages(self.max)));
                return Err(de::Error::custom("too many messages"));
            }
            batch.push(entry(value));
        }
        Ok(batch)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Batch, E> {
        self.not_envelope()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Batch, E> {
        self.not_envelope()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Batch, E> {
        self.not_envelope()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Batch, E> {
        self.not_envelope()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Batch, E> {
        self.not_envelope()
    }
}

impl BatchSeed<'_> {
    fn not_envelope<E: de::Error>(self) -> Result<Batch, E> {
        self.refusal.set(Some(BadRequest::NotEnvelope));
        Err(E::custom("not an envelope"))
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
        let parse = |s: &[u8]| parse_batch(s, 100);
        assert_eq!(parse(b"null").unwrap().len(), 0);
        assert_eq!(parse(b"[]").unwrap().len(), 0);
        assert_eq!(parse(b"{\"a\":1}").unwrap().len(), 1);
        let b = parse(b"[null,{\"channel\":\"/foo\"},1,0,\"\"]").unwrap();
        assert!(b[0].is_none() && b[1].is_some() && b[2].is_some());
        assert!(b[3].is_none() && b[4].is_none());
        assert_eq!(parse(b"1"), Err(BadRequest::NotEnvelope));
        assert_eq!(parse(b"\"x\""), Err(BadRequest::NotEnvelope));
        assert_eq!(parse(b"true"), Err(BadRequest::NotEnvelope));
        assert_eq!(parse(b"[ }"), Err(BadRequest::Json));
        assert_eq!(parse(b""), Err(BadRequest::Json));
        assert_eq!(parse(b"{} x"), Err(BadRequest::Json));
        assert_eq!(parse(&[b'['; 10_000]), Err(BadRequest::Json));
    }

    #[test]
    fn batches_are_bounded_while_parsing() {
        assert_eq!(parse_batch(b"[1,1,1]", 3).unwrap().len(), 3);
        assert_eq!(
            parse_batch(b"[1,1,1,1]", 3),
            Err(BadRequest::TooManyMessages(3))
        );
        // The refusal comes from the element count, not from the syntax after it.
        assert_eq!(
            parse_batch(b"[1,1,1,1,", 3),
            Err(BadRequest::TooManyMessages(3))
        );
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
