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

/// The entry a publish announced on the route's pub/sub channel:
/// `{id}\n{channel}\n{event}`.
pub(crate) fn announced(payload: &[u8]) -> Option<Entry> {
    let mut parts = payload.splitn(3, |b| *b == b'\n');
    let pos = parse_id(parts.next()?)?;
    let channel = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let event = Bytes::copy_from_slice(parts.next()?);
    Some(Entry {
        pos,
        channel,
        event,
    })
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
    fn announcements_are_parsed() {
        let e = announced(b"5-1\n/a/b\n{\"data\":\"x\\ny\"}").unwrap();
        assert_eq!(e.pos, (5u128 << 64) | 1);
        assert_eq!(e.channel, "/a/b");
        assert_eq!(&e.event[..], b"{\"data\":\"x\\ny\"}");
        assert!(announced(b"nonsense").is_none());
        assert!(announced(b"1-1\n/a").is_none());
    }
}
