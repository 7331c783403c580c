//! Positions in a route's publish log (Redis stream ids) and the parsing of
//! what Redis returns for log reads.
//!
//! A stream id `ms-seq` is kept as one `u128` (`ms << 64 | seq`), so positions
//! compare and store without allocating; `0` is the position before any entry.

use ::redis::Value;
use bytes::Bytes;

/// A stream id as a number that orders like the id.
pub(crate) fn parse_id(text: &[u8]) -> Option<u128> {
    let text = std::str::from_utf8(text).ok()?;
    let (ms, seq) = text.split_once('-')?;
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    Some((u128::from(ms) << 64) | u128::from(seq))
}

/// The stream id text of a position.
pub(crate) fn format_id(pos: u128) -> String {
    format!("{}-{}", (pos >> 64) as u64, pos as u64)
}

/// One log entry: its position, the concrete channel it was published to, and
/// the event as serialized once by the publishing node.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) pos: u128,
    pub(crate) channel: String,
    pub(crate) event: Bytes,
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Text of a bulk or simple string value.
pub(crate) fn text_of(v: &Value) -> Option<String> {
    bytes_of(v).and_then(|b| std::str::from_utf8(b).ok().map(str::to_owned))
}

/// Position of a value holding a stream id (`None` for nil, empty or malformed).
pub(crate) fn pos_of(v: &Value) -> Option<u128> {
    bytes_of(v).and_then(parse_id)
}

/// Entries of an `XRANGE` reply (`[[id, [field, value, …]], …]`). Malformed
/// entries are skipped but still move the returned last position, so a reader
/// never stalls on one.
pub(crate) fn entries(reply: Value) -> (Vec<Entry>, Option<u128>) {
    let Value::Array(items) = reply else {
        return (Vec::new(), None);
    };
    let mut out = Vec::with_capacity(items.len());
    let mut last = None;
    for item in items {
        let Value::Array(mut parts) = item else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop();
        let Some(pos) = parts.first().and_then(pos_of) else {
            continue;
        };
        last = Some(pos);
        let Some(Value::Array(fields)) = fields else {
            continue;
        };
        let mut channel = None;
        let mut event = None;
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match (bytes_of(&k), v) {
                (Some(b"c"), v) => channel = text_of(&v),
                (Some(b"m"), Value::BulkString(b)) => event = Some(Bytes::from(b)),
                _ => {}
            }
        }
        if let (Some(channel), Some(event)) = (channel, event) {
            out.push(Entry {
                pos,
                channel,
                event,
            });
        }
    }
    (out, last)
}

/// Entries of an `XREAD` reply for one stream (`[[key, entries]]`, or nil when
/// the block timed out).
pub(crate) fn read_reply(reply: Value) -> (Vec<Entry>, Option<u128>) {
    let stream = match reply {
        Value::Array(mut streams) if !streams.is_empty() => streams.swap_remove(0),
        Value::Map(mut streams) if !streams.is_empty() => {
            let (_, v) = streams.swap_remove(0);
            return entries(v);
        }
        _ => return (Vec::new(), None),
    };
    match stream {
        Value::Array(mut pair) if pair.len() == 2 => entries(pair.swap_remove(1)),
        _ => (Vec::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_as_numbers_and_round_trip() {
        let a = parse_id(b"1700000000000-5").unwrap();
        let b = parse_id(b"1700000000000-12").unwrap();
        let c = parse_id(b"1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(format_id(b), "1700000000000-12");
        assert_eq!(parse_id(b"0-0"), Some(0));
        assert_eq!(parse_id(b"12"), None);
        assert_eq!(parse_id(b"a-1"), None);
    }

    #[test]
    fn xread_reply_is_parsed_and_bad_entries_skipped() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry =
            |id: &str, fields: Vec<Value>| Value::Array(vec![bulk(id), Value::Array(fields)]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("log"),
            Value::Array(vec![
                entry(
                    "1-1",
                    vec![bulk("c"), bulk("/a"), bulk("m"), bulk("{\"x\":1}")],
                ),
                entry("1-2", vec![bulk("c"), bulk("/a")]),
                entry("2-0", vec![bulk("m"), bulk("{}"), bulk("c"), bulk("/b")]),
            ]),
        ])]);
        let (entries, last) = read_reply(reply);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].channel, "/a");
        assert_eq!(&entries[0].event[..], b"{\"x\":1}");
        assert_eq!(entries[1].pos, 2u128 << 64);
        assert_eq!(last, Some(2u128 << 64));
        assert_eq!(read_reply(Value::Nil).0.len(), 0);
    }
}
