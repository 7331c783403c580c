//! Who may do what on a route: the policies the engine consults before it
//! publishes or subscribes, and the credentials a request carries.
//!
//! The engine asks one narrow question per message ("may this request publish
//! this message?", and later "may this session subscribe to this channel?");
//! everything about secrets, tokens and where they were presented stays here.
//! A policy is part of a route's settings, so a reload swaps it with the rest.
//!
//! The subscribe policy (`open`, Faye's behaviour; `jwt`; `backend`) is built from
//! these blocks, which know nothing of the engine or the configuration:
//!
//! - [`grants`]: [`Grants`], the channel names and patterns a session may
//!   subscribe within, and [`Grants::covers`], true only when every channel a
//!   subscription could match is granted (a user granted `/{sub}` is refused `/*`
//!   and `/**`); [`GrantTemplate`], a per-route template such as `/{sub}/**`
//!   expanded with a token's claims, never widened by a claim value that is not
//!   exactly one channel segment.
//! - [`jwt`]: [`JwtVerifier`], built once per route from [`JwtSettings`] and an
//!   HS256 secret, an RS256/ES256 PEM public key or a JWKS document.
//!   [`JwtVerifier::verify`] pins the algorithm, issuer and audience, requires
//!   `exp`, honours `nbf`, takes `now` from the caller, and returns a
//!   [`VerifiedToken`]: its claims, its [`VerifiedToken::grants`] on the route and
//!   [`VerifiedToken::valid_until`], when the session must stop receiving. Every
//!   refusal is a distinct [`JwtError`].
//! - [`backend`]: [`BackendCheck`], built from [`BackendSettings`], POSTs
//!   `{"clientId", "channel"}` with the browser's allow-listed headers (cookies
//!   included when configured, see [`BackendCheck::forwarded`]) to the
//!   application and reads `{"allowed": true}`; [`BackendCheck::check`] returns a
//!   [`Decision`]. Answers are cached per (clientId, channel) for a TTL, identical
//!   concurrent checks share one request, and timeouts, errors and unusable
//!   answers refuse (fail closed) and are counted ([`BackendCounters`]). The exact
//!   HTTP contract is in the module's documentation.
//!
//! Every refusal becomes a Bayeux `403` on the reply, never a dropped connection.
//! Tokens are never logged, echoed, kept, or placed in an error.

pub mod backend;
pub mod grants;
pub mod jwt;
mod publish;
mod subscribe;

pub use backend::{
    BackendCheck, BackendConfigError, BackendCounters, BackendSettings, Decision, ForwardedHeaders,
    Refusal,
};
pub use grants::{GrantTemplate, Grants, TemplateError, MAX_GRANTS};
pub use jwt::{
    JwtAlgorithm, JwtConfigError, JwtError, JwtSettings, JwtVerifier, UnknownAlgorithm,
    VerifiedToken,
};
pub use publish::{PublishPolicy, Secret};
pub use subscribe::{
    origin_of, presented_token, BackendPolicy, JwtPolicy, OriginPolicy, SessionGrant,
    SubscribePolicy, TOKEN_EXT_KEY,
};

/// What a request presented that a policy may check. Borrowed from the HTTP
/// request (or, for a WebSocket, from the upgrade request) for as long as the
/// batch is processed; never logged, never echoed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The token of an `Authorization: Bearer …` header.
    pub bearer: Option<&'a str>,
    /// The browser headers a `backend` subscribe policy forwards (none for
    /// other policies).
    pub forwarded: Option<&'a ForwardedHeaders>,
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
