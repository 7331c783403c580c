//! Faye's Bayeux error strings, `CODE:ARGS:MESSAGE`.
//!
//! Arguments are rendered the way JavaScript's `String()` would render them and
//! joined with commas, so `405:42:Invalid channel` and
//! `301:iframe,flash:Connection types not supported` come out exactly as Faye
//! writes them. These are protocol values placed in a reply's `error` field,
//! never Rust errors.

use serde_json::Value;

/// The error codes Faye defines (several are never emitted, but clients know them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 301 Connection types not supported
    ConntypeMismatch,
    /// 401 Unknown client
    ClientUnknown,
    /// 402 Missing required parameter
    ParameterMissing,
    /// 403 Forbidden channel
    ChannelForbidden,
    /// 405 Invalid channel
    ChannelInvalid,
    /// 500 Internal server error
    ServerError,
}

impl Code {
    fn parts(self) -> (u16, &'static str) {
        match self {
            Code::ConntypeMismatch => (301, "Connection types not supported"),
            Code::ClientUnknown => (401, "Unknown client"),
            Code::ParameterMissing => (402, "Missing required parameter"),
            Code::ChannelForbidden => (403, "Forbidden channel"),
            Code::ChannelInvalid => (405, "Invalid channel"),
            Code::ServerError => (500, "Internal server error"),
        }
    }
}

/// Renders `code` with already-stringified arguments.
pub fn render(code: Code, args: &[&str]) -> String {
    let (n, text) = code.parts();
    format!("{n}:{}:{text}", args.join(","))
}

/// Renders `code` with one JSON argument, stringified as JavaScript would.
pub fn render_value(code: Code, arg: Option<&Value>) -> String {
    let s = arg.map(js_string).unwrap_or_default();
    render(code, &[&s])
}

/// The handshake refusal of a route whose shared storage (Redis) is
/// unreachable: not one of Faye's codes, in its format.
pub const STORAGE_UNAVAILABLE: &str = "503::Storage unavailable";

/// `503:<arg>:Storage unavailable`: a publish, subscription or connect that a
/// route's shared storage (Redis) could not record or answer now; the argument
/// is the channel, subscription or client id. The request did not take effect.
pub fn storage_unavailable(arg: &str) -> String {
    format!("503:{arg}:Storage unavailable")
}

/// `401:<clientId>:Unknown client`
pub fn client_unknown(client_id: Option<&Value>) -> String {
    render_value(Code::ClientUnknown, client_id)
}

/// `402:<name>:Missing required parameter`
pub fn parameter_missing(name: &str) -> String {
    render(Code::ParameterMissing, &[name])
}

/// `403:<channel>:Forbidden channel`
pub fn channel_forbidden(channel: Option<&Value>) -> String {
    render_value(Code::ChannelForbidden, channel)
}

/// `405:<channel>:Invalid channel`
pub fn channel_invalid(channel: Option<&Value>) -> String {
    render_value(Code::ChannelInvalid, channel)
}

/// `301:<types>:Connection types not supported`
pub fn conntype_mismatch(types: Option<&Value>) -> String {
    render_value(Code::ConntypeMismatch, types)
}

/// JavaScript's `String(value)` for JSON values: arrays join their elements with
/// commas (null elements become empty), objects become `[object Object]`.
pub fn js_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => js_number(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::Null => String::new(),
                other => js_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".to_owned(),
    }
}

fn js_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_strings() {
        assert_eq!(
            client_unknown(Some(&json!("nope"))),
            "401:nope:Unknown client"
        );
        assert_eq!(
            parameter_missing("clientId"),
            "402:clientId:Missing required parameter"
        );
        assert_eq!(
            conntype_mismatch(Some(&json!(["iframe", "flash"]))),
            "301:iframe,flash:Connection types not supported"
        );
        assert_eq!(
            conntype_mismatch(Some(&json!([]))),
            "301::Connection types not supported"
        );
        assert_eq!(channel_invalid(Some(&json!(42))), "405:42:Invalid channel");
        assert_eq!(channel_invalid(None), "405::Invalid channel");
        assert_eq!(
            channel_forbidden(Some(&json!("/meta/foo"))),
            "403:/meta/foo:Forbidden channel"
        );
        assert_eq!(js_string(&json!(1.5)), "1.5");
        assert_eq!(js_string(&json!({"a": 1})), "[object Object]");
    }
}
