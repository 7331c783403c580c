//! Who may do what on a route: the policies the engine consults before it
//! publishes or subscribes, and the credentials a request carries.
//!
//! The engine asks one narrow question per message ("may this request publish
//! this message?", and later "may this session subscribe to this channel?");
//! everything about secrets, tokens and where they were presented stays here.
//! A policy is part of a route's settings, so a reload swaps it with the rest.

mod publish;

pub use publish::{PublishPolicy, Secret};

/// What a request presented that a policy may check. Borrowed from the HTTP
/// request (or, for a WebSocket, from the upgrade request) for as long as the
/// batch is processed; never logged, never echoed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The token of an `Authorization: Bearer …` header.
    pub bearer: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// What the headers of an HTTP request (or WebSocket upgrade) present.
    pub fn from_headers(headers: &'a http::HeaderMap) -> Self {
        Credentials {
            bearer: bearer(headers),
        }
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why a message was refused: the Bayeux error to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);
