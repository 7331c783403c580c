//! How replies and queued events reach the wire.
//!
//! Each transport turns a request into a `bayeux` batch, hands it to the route's
//! engine and writes what comes back: long-polling and JSONP as one HTTP body
//! ([`long_polling`]), WebSocket as frames ([`websocket`]), EventSource as a
//! `text/event-stream` ([`eventsource`]). Events are shared, pre-serialized bytes;
//! every transport builds its output by concatenating them, never re-encoding.

pub mod eventsource;
pub mod long_polling;
pub mod websocket;

use bytes::{BufMut, Bytes, BytesMut};

use crate::engine::Item;

/// Writes `items` as one JSON array: replies are serialized here, events are
/// copied from their shared bytes.
pub fn encode(items: &[Item]) -> Bytes {
    let event_bytes: usize = items
        .iter()
        .map(|i| match i {
            Item::Event(b) | Item::Encoded(b) => b.len() + 1,
            Item::Reply(_) => 128,
        })
        .sum();
    let mut out = BytesMut::with_capacity(2 + event_bytes);
    out.put_u8(b'[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.put_u8(b',');
        }
        match item {
            Item::Reply(map) => {
                let mut w = (&mut out).writer();
                // Serializing a map of JSON values cannot fail.
                let _ = serde_json::to_writer(&mut w, map);
            }
            Item::Event(bytes) | Item::Encoded(bytes) => out.extend_from_slice(bytes),
        }
    }
    out.put_u8(b']');
    out.freeze()
}

/// Writes events alone as one JSON array (a WebSocket frame or an EventSource `data:` line).
pub fn encode_events(events: &[Bytes]) -> Bytes {
    let len: usize = events.iter().map(|e| e.len() + 1).sum::<usize>() + 1;
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(b'[');
    for (n, e) in events.iter().enumerate() {
        if n > 0 {
            out.put_u8(b',');
        }
        out.extend_from_slice(e);
    }
    out.put_u8(b']');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arrays() {
        let reply = json!({"channel": "/meta/connect", "successful": true});
        let items = vec![
            Item::Reply(reply.as_object().unwrap().clone()),
            Item::Event(Bytes::from_static(b"{\"channel\":\"/a\",\"data\":1}")),
        ];
        let v: serde_json::Value = serde_json::from_slice(&encode(&items)).unwrap();
        assert_eq!(v, json!([reply, {"channel": "/a", "data": 1}]));
        assert_eq!(&encode(&[])[..], b"[]");
        assert_eq!(
            &encode_events(&[Bytes::from_static(b"1"), Bytes::from_static(b"2")])[..],
            b"[1,2]"
        );
    }
}
