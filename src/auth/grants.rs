//! Channel grants: which subscriptions a session may make, and the per-route
//! templates that turn token claims into grants.
//!
//! A [`Grants`] set holds channel names and patterns in Faye's grammar
//! ([`crate::bayeux::channel`]). [`Grants::covers`] answers the one question the
//! subscribe policy asks: is **every** channel a subscription could match also
//! matched by some grant? A name is covered by any grant matching it; a pattern
//! `/a/*` only by `/a/*` itself or by `/a/**` or an ancestor `**`; a pattern `/a/**`
//! only by `/a/**` or an ancestor `**`. A user granted `/{sub}` and `/{sub}/**` is
//! therefore refused `/*` and `/**`, which would also deliver other users' channels.
//!
//! A [`GrantTemplate`] such as `/{sub}/**` is parsed once when the route is
//! configured and expanded per token. A claim value is substituted only when its
//! text is exactly one channel segment, so a claim of `*`, `**`, `a/b` or `""` never
//! widens a grant: the template then yields nothing.
//!
//! No I/O; used by [`super::jwt`] and, through it, by the engine's subscribe policy.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::bayeux::channel;

/// The most grants one set holds; further ones are ignored. A token is bounded in
/// size anyway, this bounds each session's memory and the cost of [`Grants::covers`].
pub const MAX_GRANTS: usize = 256;

/// The longest claim name a template may use, in bytes.
const MAX_CLAIM_NAME: usize = 128;

/// A set of channel names and patterns a session may subscribe within.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Valid names or patterns, without duplicates, in insertion order.
    patterns: Vec<String>,
}

impl Grants {
    /// An empty set, which covers nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of the valid names and patterns among `patterns`; invalid ones are ignored.
    pub fn from_patterns<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut grants = Self::new();
        for pattern in patterns {
            grants.insert(pattern.as_ref());
        }
        grants
    }

    /// The grants a token's claims give on a route: the patterns listed in the claim
    /// named `claim` (an array of strings, or one string; entries that are not valid
    /// names or patterns are ignored), then each of the route's `templates` that
    /// expands with these claims.
    pub fn from_claims(
        claims: &Map<String, Value>,
        claim: Option<&str>,
        templates: &[GrantTemplate],
    ) -> Self {
        let mut grants = Self::new();
        match claim.and_then(|name| claims.get(name)) {
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::String(pattern) = item {
                        grants.insert(pattern);
                    }
                }
            }
            Some(Value::String(pattern)) => {
                grants.insert(pattern);
            }
            _ => {}
        }
        for template in templates {
            if let Some(pattern) = template.expand(claims) {
                grants.insert(&pattern);
            }
        }
        grants
    }

    /// Adds `pattern` when it is a valid channel name or pattern, is not already
    /// present and the set holds fewer than [`MAX_GRANTS`]. Returns whether it was added.
    pub fn insert(&mut self, pattern: &str) -> bool {
        if !channel::is_valid(pattern)
            || self.patterns.len() >= MAX_GRANTS
            || self.patterns.iter().any(|p| p == pattern)
        {
            return false;
        }
        self.patterns.push(pattern.to_owned());
        true
    }

    /// Number of grants.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// True when the set covers nothing.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The grants, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(String::as_str)
    }

    /// True when every channel `subscription` (a name or pattern) could match is
    /// matched by some grant. False for anything that is not a valid name or pattern.
    ///
    /// Meta and service channels are not special here: the engine refuses those
    /// subscriptions before asking.
    pub fn covers(&self, subscription: &str) -> bool {
        if channel::is_name(subscription) {
            return self
                .patterns
                .iter()
                .any(|grant| channel::matches(grant, subscription));
        }
        if !channel::is_pattern(subscription) {
            return false;
        }
        // A pattern matches names with arbitrary segments at its wildcard position,
        // so no finite set of names, and no pattern anchored deeper, can cover it:
        // a single grant must be the same pattern or a `**` at or above its base.
        if let Some(base) = subscription.strip_suffix("/**") {
            return self
                .patterns
                .iter()
                .any(|grant| double_star_base(grant).is_some_and(|g| at_or_above(g, base)));
        }
        if let Some(base) = subscription.strip_suffix("/*") {
            return self.patterns.iter().any(|grant| {
                grant == subscription
                    || double_star_base(grant).is_some_and(|g| at_or_above(g, base))
            });
        }
        false
    }
}

/// The base of a `**` pattern (`""` for `/**`, `/a` for `/a/**`), or `None`.
fn double_star_base(pattern: &str) -> Option<&str> {
    pattern.strip_suffix("/**")
}

/// True when the channel prefix `ancestor` is `base` itself or a whole-segment
/// prefix of it (`""` is the root, above everything).
fn at_or_above(ancestor: &str, base: &str) -> bool {
    ancestor.is_empty()
        || base == ancestor
        || (base.starts_with(ancestor) && base.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Claim(String),
}

/// A per-route grant template such as `/{sub}`, `/{sub}/**` or
/// `/users/{sub}/{tenant}`: a channel name or pattern in which `{claim}` stands for
/// the value of a token claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTemplate {
    source: String,
    parts: Vec<Part>,
}

/// Why a grant template was refused at configuration time. Each names the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`. Fix the template.
    #[error("grant template {template:?}: `{{` is never closed")]
    Unclosed {
        /// The template as written.
        template: String,
    },
    /// A `}` with no `{` before it. Fix the template.
    #[error("grant template {template:?}: `}}` without `{{`")]
    UnexpectedClose {
        /// The template as written.
        template: String,
    },
    /// An empty claim name, a name longer than 128 bytes, or one holding `{` or a
    /// control character.
    #[error("grant template {template:?}: bad claim name between `{{` and `}}`")]
    BadClaimName {
        /// The template as written.
        template: String,
    },
    /// Substituting a valid segment for each claim does not make a channel name or
    /// pattern (for example `/{sub}*`, `/a//{sub}` or a missing leading `/`).
    #[error("grant template {template:?} does not make a channel name or pattern")]
    InvalidChannel {
        /// The template as written.
        template: String,
    },
    /// The template names `/meta` or `/service` channels, which clients never
    /// subscribe to.
    #[error("grant template {template:?} names /meta or /service channels")]
    NotSubscribable {
        /// The template as written.
        template: String,
    },
}

impl GrantTemplate {
    /// Parses and validates `template`: it must make a subscribable channel name or
    /// pattern whatever valid segment each `{claim}` is replaced with.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let owned = || template.to_owned();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(idx) = rest.find(['{', '}']) {
            if rest.as_bytes()[idx] == b'}' {
                return Err(TemplateError::UnexpectedClose { template: owned() });
            }
            literal.push_str(&rest[..idx]);
            let after = &rest[idx + 1..];
            let Some(end) = after.find('}') else {
                return Err(TemplateError::Unclosed { template: owned() });
            };
            let name = &after[..end];
            if name.is_empty()
                || name.len() > MAX_CLAIM_NAME
                || name.chars().any(|c| c == '{' || c.is_control())
            {
                return Err(TemplateError::BadClaimName { template: owned() });
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Claim(name.to_owned()));
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let parsed = Self {
            source: template.to_owned(),
            parts,
        };
        // Every valid segment is made of the same alphabet, so if one sample segment
        // yields a valid channel, every valid segment does.
        let sample = parsed.render(|_| Some(Cow::Borrowed("x")));
        match sample {
            Some(s) if channel::is_subscribable(&s) => Ok(parsed),
            Some(s) if channel::is_valid(&s) => {
                Err(TemplateError::NotSubscribable { template: owned() })
            }
            _ => Err(TemplateError::InvalidChannel { template: owned() }),
        }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The claim names the template uses, in order.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Claim(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The channel name or pattern for these claims, or `None` when a claim is
    /// missing or its value is not a string or integer whose text is exactly one
    /// channel segment (`[A-Za-z0-9]` and `- _ ! ~ ( ) $ @`).
    pub fn expand(&self, claims: &Map<String, Value>) -> Option<String> {
        let expanded = self.render(|name| match claims.get(name)? {
            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(Cow::Owned(n.to_string())),
            _ => None,
        })?;
        // Belt and braces: the parse-time check makes this true for valid segments.
        channel::is_subscribable(&expanded).then_some(expanded)
    }

    fn render<'a>(&self, mut value: impl FnMut(&str) -> Option<Cow<'a, str>>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Claim(name) => {
                    let v = value(name)?;
                    if !is_segment(&v) {
                        return None;
                    }
                    out.push_str(&v);
                }
            }
        }
        Some(out)
    }
}

impl std::fmt::Display for GrantTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for GrantTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// True when `s` is exactly one channel segment in Faye's alphabet.
fn is_segment(s: &str) -> bool {
    // `/x` is a name exactly when `x` is one valid segment.
    !s.contains('/') && channel::is_name(&format!("/{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grants(patterns: &[&str]) -> Grants {
        Grants::from_patterns(patterns)
    }

    #[test]
    fn names_are_covered_by_any_matching_grant() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["/a"], "/a", true),
            (&["/a"], "/b", false),
            (&["/a"], "/a/b", false),
            (&["/a/*"], "/a/b", true),
            (&["/a/*"], "/a/b/c", false),
            (&["/a/**"], "/a/b/c", true),
            (&["/a/**"], "/a", false),
            (&["/**"], "/anything/at/all", true),
            (&["/*"], "/x", true),
            (&["/*"], "/x/y", false),
            (&["/b", "/a/**"], "/a/z", true),
            (&[], "/a", false),
        ];
        for (g, sub, expected) in table {
            assert_eq!(grants(g).covers(sub), *expected, "{g:?} covers {sub}");
        }
    }

    #[test]
    fn single_star_needs_itself_or_a_double_star_at_or_above() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["/a/*"], "/a/*", true),
            (&["/a/**"], "/a/*", true),
            (&["/**"], "/a/*", true),
            (&["/x/**"], "/x/a/b/*", true),
            (&["/x/a/**"], "/x/a/b/*", true),
            (&["/x/a/b/**"], "/x/a/b/*", true),
            (&["/x/a/b/c/**"], "/x/a/b/*", false),
            (&["/x/ab/**"], "/x/a/*", false),
            (&["/x/a/*"], "/x/ab/*", false),
            (&["/a/b", "/a/c"], "/a/*", false),
            (&["/a/*"], "/b/*", false),
            (&["/a/b/*"], "/a/*", false),
            (&["/*"], "/*", true),
            (&["/**"], "/*", true),
            (&["/a/**"], "/*", false),
            (&["/a", "/b", "/c"], "/*", false),
        ];
        for (g, sub, expected) in table {
            assert_eq!(grants(g).covers(sub), *expected, "{g:?} covers {sub}");
        }
    }

    #[test]
    fn double_star_needs_a_double_star_at_or_above() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["/a/**"], "/a/**", true),
            (&["/**"], "/a/**", true),
            (&["/**"], "/**", true),
            (&["/a/**"], "/a/b/**", true),
            (&["/a/*"], "/a/**", false),
            (&["/a/*", "/a/b/**"], "/a/**", false),
            (&["/a/b/**"], "/a/**", false),
            (&["/ab/**"], "/a/**", false),
            (&["/a/**"], "/ab/**", false),
            (&["/*"], "/**", false),
            (&["/a/**", "/b/**"], "/**", false),
        ];
        for (g, sub, expected) in table {
            assert_eq!(grants(g).covers(sub), *expected, "{g:?} covers {sub}");
        }
    }

    #[test]
    fn a_user_grant_never_covers_root_wildcards() {
        let g = grants(&["/12345", "/12345/**"]);
        assert!(g.covers("/12345"));
        assert!(g.covers("/12345/*"));
        assert!(g.covers("/12345/**"));
        assert!(g.covers("/12345/a/b"));
        for refused in ["/*", "/**", "/12346", "/123456", "/1234", "/12346/**"] {
            assert!(!g.covers(refused), "{refused}");
        }
    }

    #[test]
    fn invalid_subscriptions_and_grants() {
        let g = grants(&["/**", "not a channel", "/a/*/b", ""]);
        assert_eq!(g.len(), 1, "only /** is valid");
        for bad in ["", "/", "a", "/a/", "/a/*/b", "/a/***", "/a b"] {
            assert!(!g.covers(bad), "{bad:?}");
        }
    }

    #[test]
    fn insert_deduplicates_and_bounds() {
        let mut g = Grants::new();
        assert!(g.insert("/a"));
        assert!(!g.insert("/a"));
        assert!(!g.insert("/a/"));
        for i in 0..MAX_GRANTS * 2 {
            g.insert(&format!("/n{i}"));
        }
        assert_eq!(g.len(), MAX_GRANTS);
        assert_eq!(g.iter().next(), Some("/a"));
    }

    /// Deterministic generator of channels over a small alphabet: every name of
    /// one to three segments from `segments`, and every `*`/`**` pattern with a
    /// base of zero to two such segments.
    fn channels(segments: &[&str]) -> Vec<String> {
        let mut bases = vec![String::new()];
        let mut names = Vec::new();
        let mut frontier = vec![String::new()];
        for depth in 1..=3 {
            let mut next = Vec::new();
            for base in &frontier {
                for seg in segments {
                    next.push(format!("{base}/{seg}"));
                }
            }
            names.extend(next.iter().cloned());
            if depth <= 2 {
                bases.extend(next.iter().cloned());
            }
            frontier = next;
        }
        let mut all = names;
        for base in bases {
            all.push(format!("{base}/*"));
            all.push(format!("{base}/**"));
        }
        all
    }

    /// Every name of one to four segments over `segments`.
    fn universe(segments: &[&str]) -> Vec<String> {
        let mut all = Vec::new();
        let mut frontier = vec![String::new()];
        for _ in 1..=4 {
            let mut next = Vec::new();
            for base in &frontier {
                for seg in segments {
                    next.push(format!("{base}/{seg}"));
                }
            }
            all.extend(next.iter().cloned());
            frontier = next;
        }
        all
    }

    /// `covers` agrees with brute force over `channel::matches`: grants and
    /// subscriptions use segments `a` and `b`, the universe of names also has `z`,
    /// which no grant names literally, so it witnesses the names a wildcard
    /// subscription reaches beyond any finite list.
    #[test]
    fn covers_agrees_with_matches_over_generated_channels() {
        let candidates = channels(&["a", "b"]);
        let names = universe(&["a", "b", "z"]);
        let mut sets: Vec<Vec<&str>> = candidates.iter().map(|c| vec![c.as_str()]).collect();
        for (i, x) in candidates.iter().enumerate() {
            for y in &candidates[i + 1..] {
                sets.push(vec![x, y]);
            }
        }
        // A few larger sets from a fixed-seed generator.
        let mut rng = fastrand::Rng::with_seed(0x6772_616e_7473);
        for _ in 0..300 {
            let n = rng.usize(3..6);
            sets.push(
                (0..n)
                    .map(|_| candidates[rng.usize(..candidates.len())].as_str())
                    .collect(),
            );
        }
        let mut checked = 0usize;
        let mut covered = 0usize;
        for set in &sets {
            let g = Grants::from_patterns(set);
            for sub in &candidates {
                let brute = names
                    .iter()
                    .filter(|n| channel::matches(sub, n))
                    .all(|n| set.iter().any(|grant| channel::matches(grant, n)));
                assert_eq!(g.covers(sub), brute, "{set:?} covers {sub}");
                checked += 1;
                covered += usize::from(brute);
            }
        }
        assert!(checked > 10_000 && covered > 1_000 && covered < checked / 2);
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn templates_expand_with_segment_claims() {
        let c = claims(json!({"sub": "12345", "tenant": "acme", "uid": 42, "neg": -7}));
        let cases = [
            ("/{sub}", Some("/12345")),
            ("/{sub}/**", Some("/12345/**")),
            ("/users/{sub}/{tenant}", Some("/users/12345/acme")),
            ("/u-{uid}/*", Some("/u-42/*")),
            ("/{neg}", Some("/-7")),
            ("/{tenant}{sub}", Some("/acme12345")),
            ("/static/**", Some("/static/**")),
            ("/{missing}", None),
        ];
        for (template, expected) in cases {
            let t = GrantTemplate::parse(template).unwrap();
            assert_eq!(t.expand(&c).as_deref(), expected, "{template}");
            assert_eq!(t.to_string(), template);
        }
    }

    #[test]
    fn claims_never_widen_a_grant() {
        let t = GrantTemplate::parse("/{sub}").unwrap();
        let t2 = GrantTemplate::parse("/users/{sub}/**").unwrap();
        for bad in [
            json!("*"),
            json!("**"),
            json!("a/b"),
            json!(""),
            json!("/a"),
            json!("a b"),
            json!("a.b"),
            json!("é"),
            json!("a\n"),
            json!(1.5),
            json!(true),
            json!(null),
            json!(["a"]),
            json!({"a": 1}),
        ] {
            let c = claims(json!({ "sub": bad }));
            assert_eq!(t.expand(&c), None, "{bad}");
            assert_eq!(t2.expand(&c), None, "{bad}");
        }
        // A claim that would make a meta or service channel yields nothing either.
        let t = GrantTemplate::parse("/{top}/x").unwrap();
        assert_eq!(t.expand(&claims(json!({"top": "meta"}))), None);
        assert_eq!(t.expand(&claims(json!({"top": "service"}))), None);
        assert_eq!(
            t.expand(&claims(json!({"top": "metadata"}))).as_deref(),
            Some("/metadata/x")
        );
    }

    #[test]
    fn template_errors() {
        type Expected = fn(String) -> TemplateError;
        let cases: &[(&str, Expected)] = &[
            ("/{sub", |template| TemplateError::Unclosed { template }),
            ("/sub}", |template| TemplateError::UnexpectedClose {
                template,
            }),
            ("/{}", |template| TemplateError::BadClaimName { template }),
            ("/{a{b}", |template| TemplateError::BadClaimName {
                template,
            }),
            ("/{a\tb}", |template| TemplateError::BadClaimName {
                template,
            }),
            ("{sub}", |template| TemplateError::InvalidChannel {
                template,
            }),
            ("/{sub}*", |template| TemplateError::InvalidChannel {
                template,
            }),
            ("/{sub}/", |template| TemplateError::InvalidChannel {
                template,
            }),
            ("/a//{sub}", |template| TemplateError::InvalidChannel {
                template,
            }),
            ("/{sub}/*/x", |template| TemplateError::InvalidChannel {
                template,
            }),
            ("/a b/{sub}", |template| TemplateError::InvalidChannel {
                template,
            }),
            ("", |template| TemplateError::InvalidChannel { template }),
            ("/meta/{sub}", |template| TemplateError::NotSubscribable {
                template,
            }),
            ("/service/**", |template| TemplateError::NotSubscribable {
                template,
            }),
        ];
        for (template, expected) in cases {
            assert_eq!(
                GrantTemplate::parse(template),
                Err(expected((*template).to_owned())),
                "{template:?}"
            );
        }
        let long = format!("/{{{}}}", "c".repeat(129));
        assert!(matches!(
            GrantTemplate::parse(&long),
            Err(TemplateError::BadClaimName { .. })
        ));
        let ok = format!("/{{{}}}", "c".repeat(128));
        assert!(GrantTemplate::parse(&ok).is_ok());
        // Namespaced claim names (URLs) are fine.
        let t: GrantTemplate = "/t/{https://example.com/tenant}".parse().unwrap();
        assert_eq!(
            t.claims().collect::<Vec<_>>(),
            ["https://example.com/tenant"]
        );
        let c = claims(json!({"https://example.com/tenant": "acme"}));
        assert_eq!(t.expand(&c).as_deref(), Some("/t/acme"));
        let err = GrantTemplate::parse("/{sub").unwrap_err().to_string();
        assert!(err.contains("/{sub"), "{err}");
    }

    #[test]
    fn grants_from_claims_and_templates() {
        let templates = [
            GrantTemplate::parse("/{sub}").unwrap(),
            GrantTemplate::parse("/{sub}/**").unwrap(),
            GrantTemplate::parse("/org/{org}/*").unwrap(),
        ];
        let c = claims(json!({
            "sub": "u1",
            "channels": ["/news/**", "/bad/*/x", 7, "/u1", "/rooms/9"],
        }));
        let g = Grants::from_claims(&c, Some("channels"), &templates);
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            ["/news/**", "/u1", "/rooms/9", "/u1/**"]
        );
        assert!(g.covers("/news/sports/*"));
        assert!(!g.covers("/org/x/*"), "no org claim, no grant");

        let single = claims(json!({"sub": "u2", "channels": "/one"}));
        let g = Grants::from_claims(&single, Some("channels"), &[]);
        assert_eq!(g.iter().collect::<Vec<_>>(), ["/one"]);

        let g = Grants::from_claims(&c, None, &templates[..1]);
        assert_eq!(g.iter().collect::<Vec<_>>(), ["/u1"]);

        let wrong = claims(json!({"sub": "*", "channels": {"a": "/x"}}));
        assert!(Grants::from_claims(&wrong, Some("channels"), &templates).is_empty());
    }
}
