//! Bayeux message building and parsing (only what the generator needs).

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

/// One message as received: a reply (has `successful`) or an event (has none).
#[derive(Deserialize)]
pub struct Msg<'a> {
    /// Channel of the reply or event.
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    /// Present on replies only.
    #[serde(default)]
    pub successful: Option<bool>,
    /// Client id on handshake (and other) replies.
    #[serde(rename = "clientId", borrow, default)]
    pub client_id: Option<Cow<'a, str>>,
    /// Error string on failed replies.
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
    /// Event payload, reduced to the benchmark stamp.
    #[serde(default)]
    pub data: Option<Data>,
}

/// An event's `data`: the publish stamp of a benchmark payload, or anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// `{"t": NS, ...}`: nanoseconds since the run epoch.
    Stamp(u64),
    /// Any other value.
    Other,
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        d.deserialize_any(DataVisitor { data: true })
    }
}

/// Reads `data` (`data: true`: a map's `t` is the stamp) or the value of `t` itself
/// (`data: false`: an unsigned integer is the stamp). Everything else is consumed.
struct DataVisitor {
    data: bool,
}

/// The value of `t`.
struct StampValue(Data);

impl<'de> Deserialize<'de> for StampValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StampValue, D::Error> {
        d.deserialize_any(DataVisitor { data: false })
            .map(StampValue)
    }
}

impl<'de> serde::de::Visitor<'de> for DataVisitor {
    type Value = Data;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        let mut stamp = Data::Other;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if self.data && key == "t" && stamp == Data::Other {
                stamp = map.next_value::<StampValue>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(stamp)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Data::Other)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Data, E> {
        Ok(if self.data {
            Data::Other
        } else {
            Data::Stamp(v)
        })
    }

    fn visit_bool<E>(self, _: bool) -> Result<Data, E> {
        Ok(Data::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Data, E> {
        Ok(Data::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Data, E> {
        Ok(Data::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Data, E> {
        Ok(Data::Other)
    }

    fn visit_unit<E>(self) -> Result<Data, E> {
        Ok(Data::Other)
    }
}

impl Msg<'_> {
    /// Whether this is a reply rather than an event.
    pub fn is_reply(&self) -> bool {
        self.successful.is_some()
    }

    /// Channel or the empty string.
    pub fn channel(&self) -> &str {
        self.channel.as_deref().unwrap_or("")
    }

    /// Text describing a failed reply.
    pub fn describe_error(&self) -> String {
        match self.error {
            Some(e) => format!("{} failed: {}", self.channel(), e.get()),
            None => format!("{} failed", self.channel()),
        }
    }
}

/// Parses a frame or body: a JSON array of messages, or one message.
pub fn parse(text: &str) -> Result<Vec<Msg<'_>>, String> {
    let first = text.trim_start().as_bytes().first().copied();
    if first == Some(b'{') {
        serde_json::from_str::<Msg<'_>>(text)
            .map(|m| vec![m])
            .map_err(|e| format!("bad JSON message: {e}"))
    } else {
        serde_json::from_str::<Vec<Msg<'_>>>(text).map_err(|e| format!("bad JSON frame: {e}"))
    }
}

impl Msg<'_> {
    /// The publish timestamp (ns since the run epoch) of a benchmark event, if any.
    pub fn stamp(&self) -> Option<u64> {
        match self.data {
            Some(Data::Stamp(t)) => Some(t),
            _ => None,
        }
    }
}

/// JSON string literal.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Event data: timestamp, sequence number and optional padding.
pub fn payload(t_ns: u64, seq: u64, pad: &str) -> String {
    if pad.is_empty() {
        format!("{{\"t\":{t_ns},\"s\":{seq}}}")
    } else {
        format!("{{\"t\":{t_ns},\"s\":{seq},\"p\":\"{pad}\"}}")
    }
}

/// A publish message (object, not wrapped in an array).
pub fn publish(channel: &str, data: &str) -> String {
    format!("{{\"channel\":{},\"data\":{data}}}", quote(channel))
}

/// A handshake request announcing one connection type.
pub fn handshake(connection_type: &str) -> String {
    format!(
        "[{{\"channel\":\"/meta/handshake\",\"version\":\"1.0\",\"supportedConnectionTypes\":[{}],\"id\":\"1\"}}]",
        quote(connection_type)
    )
}

/// A connect message; `immediate` adds `advice.timeout = 0`.
pub fn connect(client_id: &str, connection_type: &str, id: u64, immediate: bool) -> String {
    let advice = if immediate {
        ",\"advice\":{\"timeout\":0}"
    } else {
        ""
    };
    format!(
        "{{\"channel\":\"/meta/connect\",\"clientId\":{},\"connectionType\":{}{advice},\"id\":\"{id:x}\"}}",
        quote(client_id),
        quote(connection_type)
    )
}

/// A subscribe message.
pub fn subscribe(client_id: &str, channel: &str, id: u64) -> String {
    format!(
        "{{\"channel\":\"/meta/subscribe\",\"clientId\":{},\"subscription\":{},\"id\":\"{id:x}\"}}",
        quote(client_id),
        quote(channel)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_batched_frame_with_events_and_replies() {
        let text = r#"[{"id":"2","clientId":"abc","channel":"/meta/connect","successful":true,"advice":{"timeout":0}},
            {"channel":"/b","data":{"t":42,"s":1,"p":"xx"}},{"channel":"/b","data":"plain"}]"#;
        let msgs = parse(text).unwrap();
        assert_eq!(msgs.len(), 3);
        assert!(msgs[0].is_reply());
        assert!(!msgs[1].is_reply());
        assert_eq!(msgs[1].stamp(), Some(42));
        assert_eq!(msgs[2].stamp(), None);
        assert_eq!(msgs[0].stamp(), None);
    }

    #[test]
    fn single_object_and_escapes() {
        let msgs = parse(r#"{"channel":"/a\/b","data":{"s":1,"p":{"t":9},"t":7}}"#).unwrap();
        assert_eq!(msgs[0].channel(), "/a/b");
        assert_eq!(msgs[0].stamp(), Some(7));
        let odd = parse(r#"[{"data":[1,{"t":2}]},{"data":null},{"data":{"t":"x"}},{"data":-1.5},{"data":5},{"data":{"t":{"t":1}}}]"#)
            .unwrap();
        assert!(odd.iter().all(|m| m.stamp().is_none()));
        assert_eq!(
            publish("/x", &payload(5, 6, "")),
            r#"{"channel":"/x","data":{"t":5,"s":6}}"#
        );
        assert!(connect("c", "websocket", 10, true).contains(r#""id":"a""#));
    }
}
