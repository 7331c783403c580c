//! Channel names and patterns with Faye's grammar, and wildcard expansion.
//!
//! A name is `/` followed by one or more non-empty segments of `[A-Za-z0-9]` and the
//! marks `- _ ! ~ ( ) $ @`. A pattern is zero or more such segments followed by a
//! final `*` (one segment) or `**` (one or more segments). A publication to
//! `/a/b/c` reaches subscribers of exactly `/**`, `/a/**`, `/a/b/**`, `/a/b/*` and
//! `/a/b/c` ([`matches()`]); a route bounds names and patterns by [`Bounds`].

fn is_segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'!' | b'~' | b'(' | b')' | b'$' | b'@')
}

fn is_segment(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_segment_byte)
}

/// True for a concrete channel name such as `/a/b` (what can be published to).
pub fn is_name(s: &str) -> bool {
    match s.strip_prefix('/') {
        Some(rest) => rest.split('/').all(is_segment),
        None => false,
    }
}

/// True for a wildcard pattern such as `/a/*`, `/a/**`, `/*` or `/**`.
pub fn is_pattern(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('/') else {
        return false;
    };
    let mut segments: Vec<&str> = rest.split('/').collect();
    match segments.pop() {
        Some("*") | Some("**") => segments.iter().all(|seg| is_segment(seg)),
        _ => false,
    }
}

/// True for anything a client may name in a subscription: a name or a pattern.
pub fn is_valid(s: &str) -> bool {
    is_name(s) || is_pattern(s)
}

fn first_segment(s: &str) -> Option<&str> {
    s.strip_prefix('/').and_then(|rest| rest.split('/').next())
}

/// True when `s` is a valid name or pattern whose first segment is exactly `meta`.
pub fn is_meta(s: &str) -> bool {
    is_valid(s) && first_segment(s) == Some("meta")
}

/// True when `s` is a valid name or pattern whose first segment is exactly `service`.
pub fn is_service(s: &str) -> bool {
    is_valid(s) && first_segment(s) == Some("service")
}

/// True when a remote client may subscribe to `s`: valid, and neither meta nor service.
pub fn is_subscribable(s: &str) -> bool {
    is_valid(s) && !is_meta(s) && !is_service(s)
}

/// Bounds on the channel names and patterns a route accepts. Faye has none;
/// without them a single publication to a channel of a million segments costs
/// the server as much as a million publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Longest name or pattern, in bytes.
    pub max_bytes: usize,
    /// Most segments (a trailing `*` or `**` counts as one).
    pub max_segments: usize,
}

impl Bounds {
    /// True when `s` is within both bounds. Costs at most `max_bytes` steps
    /// whatever the length of `s`.
    pub fn admits(&self, s: &str) -> bool {
        s.len() <= self.max_bytes && s.bytes().filter(|b| *b == b'/').count() <= self.max_segments
    }
}

/// True when a subscription `pattern` (name or wildcard) matches the concrete `name`.
/// Used where a lookup by key is not possible (for example to check grants).
pub fn matches(pattern: &str, name: &str) -> bool {
    if let Some(base) = pattern.strip_suffix("/**") {
        return name.len() > base.len() + 1
            && name.starts_with(base)
            && name.as_bytes()[base.len()] == b'/';
    }
    if let Some(base) = pattern.strip_suffix("/*") {
        return match name.rfind('/') {
            Some(idx) => &name[..idx] == base && idx + 1 < name.len(),
            None => false,
        };
    }
    pattern == name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "/a",
            "/a/b",
            "/a-_!~()$@/Z9",
            "/12345",
            "/service/x",
            "/meta/x",
        ] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in [
            "", "foo", "/", "/foo/", "//foo", "/foo bar", "/café", "/a.b", "/a/*", "/a+b", "/a%20",
        ] {
            assert!(!is_name(bad), "{bad}");
        }
    }

    #[test]
    fn patterns() {
        for ok in ["/*", "/**", "/a/*", "/a/b/**"] {
            assert!(is_pattern(ok), "{ok}");
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["/foo/*/bar", "/foo/***", "*", "/a/*x", "/a/", "/", "/**/*"] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn classification() {
        assert!(is_meta("/meta/foo"));
        assert!(is_meta("/meta/**"));
        assert!(is_meta("/meta"));
        assert!(!is_meta("/metadata"));
        assert!(!is_meta("/meta/foo bar"));
        assert!(is_service("/service/**"));
        assert!(!is_subscribable("/service/x"));
        assert!(!is_subscribable("/meta/x"));
        assert!(is_subscribable("/**"));
    }

    #[test]
    fn bounds_count_bytes_and_segments() {
        let b = Bounds {
            max_bytes: 8,
            max_segments: 2,
        };
        assert!(b.admits("/a/b") && b.admits("/a/**") && b.admits("/abcdefg"));
        assert!(!b.admits("/a/b/c"), "three segments");
        assert!(!b.admits("/abcdefgh"), "nine bytes");
    }

    #[test]
    fn matching() {
        let table = [
            (
                "/a/b/c",
                ["/**", "/a/**", "/a/b/**", "/a/b/*", "/a/b/c"].as_slice(),
            ),
            ("/a", ["/*", "/**", "/a"].as_slice()),
        ];
        let patterns = [
            "/*",
            "/**",
            "/a",
            "/a/*",
            "/a/**",
            "/a/b",
            "/a/b/*",
            "/a/b/**",
            "/a/b/c",
            "/b/*",
            "/a/b/c/**",
        ];
        for (name, expected) in table {
            for pattern in patterns {
                assert_eq!(
                    matches(pattern, name),
                    expected.contains(&pattern),
                    "{pattern} vs {name}"
                );
            }
        }
    }
}
