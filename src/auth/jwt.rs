//! JSON Web Token verification for the `jwt` subscribe policy.
//!
//! A [`JwtVerifier`] is built once per route from validated [`JwtSettings`] and one
//! key source: an HS256 secret (the value of an environment variable), an RS256 or
//! ES256 public key in PEM, or a JWKS document whose keys are chosen by the token's
//! `kid`. [`JwtVerifier::verify`] checks a token presented by a client and returns its
//! claims ([`VerifiedToken`]), from which [`VerifiedToken::grants`] builds the
//! session's channel [`Grants`].
//!
//! The token header is never trusted beyond one comparison: its `alg` must be
//! exactly the route's algorithm. `none`, an HMAC token presented to a public-key
//! route (the classic confusion, where the public key would serve as the HMAC
//! secret), a public-key token presented to an HMAC route, and any other algorithm
//! are each refused with their own [`JwtError`] before a signature is looked at.
//! Headers that name keys elsewhere (`jku`, `x5u`, `jwk`) are ignored, and `crit`
//! is refused. Signatures are checked by the `jsonwebtoken` crate; the time and
//! identity claims are checked here against a `now` passed by the caller, so the
//! rules are ours and tests are deterministic: `exp`, `iss` and `aud` are required,
//! `nbf` is honoured when present, and a claim of the wrong JSON type is refused,
//! never treated as absent. Errors never contain the token or claim values.
//!
//! No I/O except the `*_file` constructors, which read configuration files.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::grants::{GrantTemplate, Grants};

/// Default clock leeway applied to `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Largest leeway a route may configure.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Default bound on a token's length, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest key or JWKS file the `*_file` constructors read.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// The signature algorithm a route pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256, with a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, with an RSA public key of at least 2048 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256, with a P-256 public key.
    Es256,
}

impl JwtAlgorithm {
    /// The JOSE name: `HS256`, `RS256` or `ES256`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of [`JwtAlgorithm::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported JWT algorithm {0:?} (expected HS256, RS256 or ES256)")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for JwtAlgorithm {
    type Err = UnknownAlgorithm;

    /// Parses `HS256`, `RS256` or `ES256` (exactly, as JOSE spells them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "HS256" => Ok(Self::Hs256),
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            other => Err(UnknownAlgorithm(other.to_owned())),
        }
    }
}

/// What a route pins about its tokens, apart from the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// The only algorithm accepted.
    pub algorithm: JwtAlgorithm,
    /// The exact `iss` a token must carry. Must not be empty.
    pub issuer: String,
    /// A value the token's `aud` (a string or an array of strings) must hold.
    /// Must not be empty.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`. Default [`DEFAULT_LEEWAY`] (30 s),
    /// at most [`MAX_LEEWAY`] (5 min).
    pub leeway: Duration,
    /// Longest token accepted, in bytes; longer ones are refused unread. Default
    /// [`DEFAULT_MAX_TOKEN_BYTES`] (8 KiB). This also bounds a session's grants.
    pub max_token_bytes: usize,
}

impl JwtSettings {
    /// Settings with the default leeway and token bound.
    pub fn new(
        algorithm: JwtAlgorithm,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            algorithm,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// Why a verifier could not be built. Raised at configuration time; none of these
/// contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// `issuer` is empty.
    #[error("the JWT issuer must not be empty")]
    EmptyIssuer,
    /// `audience` is empty.
    #[error("the JWT audience must not be empty")]
    EmptyAudience,
    /// `leeway` is over [`MAX_LEEWAY`].
    #[error("the JWT leeway must be at most {} s", MAX_LEEWAY.as_secs())]
    LeewayTooLarge,
    /// `max_token_bytes` is zero.
    #[error("the JWT size bound must be positive")]
    ZeroTokenBound,
    /// The key source does not suit the algorithm: a secret for RS256/ES256, a PEM
    /// key or JWKS for HS256 (secrets come from the environment, never from files),
    /// or a PEM key of the other family.
    #[error("a {key} cannot verify {algorithm} tokens")]
    WrongKeyKind {
        /// The route's algorithm.
        algorithm: JwtAlgorithm,
        /// What was given.
        key: &'static str,
    },
    /// The HS256 secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("the HS256 secret must be at least {MIN_SECRET_BYTES} bytes")]
    SecretTooShort,
    /// No PEM block, or more than one.
    #[error("expected exactly one PEM block")]
    NotOnePemBlock,
    /// The PEM block is a private key: configure the public key only.
    #[error("the PEM block is a private key; give the public key")]
    PrivateKey,
    /// The PEM block is of another type (a certificate, for example).
    #[error("unsupported PEM block {label:?} (expected PUBLIC KEY)")]
    UnsupportedPem {
        /// The PEM label.
        label: String,
    },
    /// The key could not be decoded or is not of the expected type or curve.
    #[error("invalid {algorithm} public key: {reason}")]
    InvalidKey {
        /// The route's algorithm.
        algorithm: JwtAlgorithm,
        /// What is wrong.
        reason: &'static str,
    },
    /// The RSA modulus is shorter than [`MIN_RSA_BITS`].
    #[error("RSA key of {bits} bits; at least {MIN_RSA_BITS} are required")]
    RsaKeyTooSmall {
        /// The modulus size.
        bits: usize,
    },
    /// The JWKS document is not JSON with a `keys` array.
    #[error("invalid JWKS document: expected a JSON object with a \"keys\" array")]
    JwksNotAKeySet,
    /// No key of the JWKS document fits the algorithm (type, curve, `alg`, `use`).
    #[error("no key in the JWKS document can verify {0} tokens")]
    NoUsableJwk(JwtAlgorithm),
    /// Two usable keys share a `kid`.
    #[error("two keys in the JWKS document have kid {0:?}")]
    DuplicateKid(String),
    /// Several usable keys, and one has no `kid`, so no token could select it.
    #[error("the JWKS document has several usable keys and one without a kid")]
    JwkWithoutKid,
    /// A key file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file is over 1 MiB.
    #[error("{}: larger than 1 MiB", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// Why a token was refused. Each maps to a Bayeux `403` on the reply; none
/// contains the token, a claim value, or anything else from it except a
/// recognised algorithm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The token is longer than the route's `max_token_bytes`.
    #[error("token longer than {max} bytes")]
    TooLong {
        /// The bound.
        max: usize,
    },
    /// Not three base64url parts, a header or payload that is not a JSON object,
    /// a header without a string `alg`, or a `crit` header.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header says `alg: none` (any case): an unsigned token.
    #[error("unsigned token (alg none) refused")]
    AlgNone,
    /// An HMAC-signed token (`HS*`) presented to a route that verifies public-key
    /// signatures: the algorithm-confusion attack.
    #[error("HMAC-signed token refused: this route verifies {expected} signatures")]
    HmacAgainstPublicKey {
        /// The route's algorithm.
        expected: JwtAlgorithm,
    },
    /// A public-key-signed token (`RS*`, `ES*`, `PS*`, `EdDSA`) presented to a route
    /// that verifies HMAC signatures.
    #[error("public-key-signed token ({found}) refused: this route verifies HS256 signatures")]
    PublicKeyAgainstHmac {
        /// The token's algorithm.
        found: &'static str,
    },
    /// Any other algorithm than the route's (for example RS384 or ES256 on an RS256
    /// route, or a name that is not a JOSE algorithm).
    #[error("token algorithm {found} refused: this route verifies {expected}")]
    UnexpectedAlgorithm {
        /// The route's algorithm.
        expected: JwtAlgorithm,
        /// The token's algorithm, or `unknown`.
        found: &'static str,
    },
    /// The token's `kid` names no key of the route's JWKS, or it has none and the
    /// set holds several keys.
    #[error("token key id matches no configured key")]
    UnknownKey,
    /// The signature does not verify with the route's key.
    #[error("bad token signature")]
    BadSignature,
    /// A required claim (`exp`, `iss` or `aud`) is absent.
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an impossible value (for example a string
    /// `exp` or `nbf`, or an `aud` array holding a number).
    #[error("token claim {0} has an invalid value")]
    InvalidClaim(&'static str),
    /// `exp` plus the leeway is not after `now`. The client must obtain a fresh token.
    #[error("token expired")]
    Expired,
    /// `nbf` minus the leeway is after `now`.
    #[error("token not valid yet")]
    NotYetValid,
    /// `iss` is not the route's issuer.
    #[error("token issuer is not the one configured")]
    WrongIssuer,
    /// `aud` does not hold the route's audience.
    #[error("token audience does not include the one configured")]
    WrongAudience,
}

impl JwtError {
    /// A short stable label for metrics and logs (`expired`, `bad_signature`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too_long",
            Self::Malformed(_) => "malformed",
            Self::AlgNone => "alg_none",
            Self::HmacAgainstPublicKey { .. } => "hmac_against_public_key",
            Self::PublicKeyAgainstHmac { .. } => "public_key_against_hmac",
            Self::UnexpectedAlgorithm { .. } => "unexpected_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// All the token's claims.
    pub claims: Map<String, Value>,
    /// The `exp` claim, in seconds since the Unix epoch (a fractional value is
    /// rounded down).
    pub exp: u64,
    /// `exp` plus the route's leeway: the first instant at which the verifier
    /// refuses this token. A session authorised by it should stop receiving then.
    pub valid_until: SystemTime,
}

impl VerifiedToken {
    /// The channel grants of this token on a route: the patterns listed in the
    /// claim named `claim`, if any, and the route's `templates` expanded with the
    /// claims. See [`Grants::from_claims`].
    pub fn grants(&self, claim: Option<&str>, templates: &[GrantTemplate]) -> Grants {
        Grants::from_claims(&self.claims, claim, templates)
    }

    /// True while `now` is before [`VerifiedToken::valid_until`].
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        now < self.valid_until
    }
}

/// The key or keys of a verifier.
enum Keys {
    /// One key, used whatever the token's `kid`.
    Single(DecodingKey),
    /// Keys by `kid`. A token without `kid` is accepted only when there is one key.
    Set(HashMap<String, DecodingKey>),
}

/// Verifies the tokens of one route. Cheap to share behind an `Arc`; holds no
/// mutable state.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: Keys,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            Keys::Single(_) => 1,
            Keys::Set(set) => set.len(),
        };
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .field("keys", &keys)
            .finish()
    }
}

impl JwtVerifier {
    /// An HS256 verifier. `secret` is the value of the route's environment
    /// variable, used as raw bytes (not base64-decoded); at least
    /// [`MIN_SECRET_BYTES`] long.
    pub fn with_secret(settings: JwtSettings, secret: &str) -> Result<Self, JwtConfigError> {
        check_settings(&settings)?;
        if settings.algorithm != JwtAlgorithm::Hs256 {
            return Err(JwtConfigError::WrongKeyKind {
                algorithm: settings.algorithm,
                key: "shared secret",
            });
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(JwtConfigError::SecretTooShort);
        }
        let key = DecodingKey::from_secret(secret.as_bytes());
        Ok(Self {
            settings,
            keys: Keys::Single(key),
        })
    }

    /// An RS256 or ES256 verifier from the text of a PEM file holding exactly one
    /// public key (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY` for RS256).
    /// Private keys and certificates are refused.
    pub fn with_public_key_pem(settings: JwtSettings, pem: &str) -> Result<Self, JwtConfigError> {
        check_settings(&settings)?;
        let algorithm = settings.algorithm;
        let label = single_pem_label(pem)?;
        if label.contains("PRIVATE KEY") {
            return Err(JwtConfigError::PrivateKey);
        }
        let key = match (algorithm, label) {
            (JwtAlgorithm::Hs256, _) => {
                return Err(JwtConfigError::WrongKeyKind {
                    algorithm,
                    key: "PEM public key",
                })
            }
            (JwtAlgorithm::Rs256, "PUBLIC KEY" | "RSA PUBLIC KEY") => {
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
                    JwtConfigError::InvalidKey {
                        algorithm,
                        reason: "not an RSA public key",
                    }
                })?
            }
            (JwtAlgorithm::Es256, "PUBLIC KEY") => DecodingKey::from_ec_pem(pem.as_bytes())
                .map_err(|_| JwtConfigError::InvalidKey {
                    algorithm,
                    reason: "not an EC public key",
                })?,
            (_, other) => {
                return Err(JwtConfigError::UnsupportedPem {
                    label: other.to_owned(),
                })
            }
        };
        check_public_key(algorithm, &key)?;
        Ok(Self {
            settings,
            keys: Keys::Single(key),
        })
    }

    /// [`JwtVerifier::with_public_key_pem`] with the contents of the file at `path`.
    pub fn with_public_key_file(
        settings: JwtSettings,
        path: &Path,
    ) -> Result<Self, JwtConfigError> {
        let pem = read_key_file(path)?;
        Self::with_public_key_pem(settings, &pem)
    }

    /// An RS256 or ES256 verifier from a JWKS document (`{"keys": [...]}`).
    ///
    /// Keys are kept when they fit the algorithm: type `RSA` for RS256, `EC` on
    /// `P-256` for ES256; `alg`, when present, equal to the route's; `use`, when
    /// present, `sig`; `key_ops`, when present, holding `verify`. Other keys
    /// (encryption keys, other algorithms, types this crate does not know) are
    /// skipped. A token selects a key by its `kid`; a token without `kid` is
    /// accepted only when exactly one key was kept.
    pub fn with_jwks(settings: JwtSettings, document: &str) -> Result<Self, JwtConfigError> {
        check_settings(&settings)?;
        let algorithm = settings.algorithm;
        if algorithm == JwtAlgorithm::Hs256 {
            return Err(JwtConfigError::WrongKeyKind {
                algorithm,
                key: "JWKS document",
            });
        }
        let doc: Value =
            serde_json::from_str(document).map_err(|_| JwtConfigError::JwksNotAKeySet)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwtConfigError::JwksNotAKeySet);
        };
        let mut usable: Vec<(Option<String>, DecodingKey)> = Vec::new();
        for entry in entries {
            // One key of an unknown type must not make the whole set unusable.
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if !jwk_fits(&jwk, algorithm) {
                continue;
            }
            let key = DecodingKey::from_jwk(&jwk).map_err(|_| JwtConfigError::InvalidKey {
                algorithm,
                reason: "a JWKS key cannot be decoded",
            })?;
            check_public_key(algorithm, &key)?;
            usable.push((jwk.common.key_id.clone(), key));
        }
        let keys = match usable.len() {
            0 => return Err(JwtConfigError::NoUsableJwk(algorithm)),
            // A lone key without `kid` serves every token; with a `kid`, a token
            // naming another one is refused.
            1 => match usable.remove(0) {
                (None, key) => Keys::Single(key),
                (Some(kid), key) => Keys::Set(HashMap::from([(kid, key)])),
            },
            _ => {
                let mut set = HashMap::new();
                for (kid, key) in usable {
                    let kid = kid.ok_or(JwtConfigError::JwkWithoutKid)?;
                    if set.contains_key(&kid) {
                        return Err(JwtConfigError::DuplicateKid(kid));
                    }
                    set.insert(kid, key);
                }
                Keys::Set(set)
            }
        };
        Ok(Self { settings, keys })
    }

    /// [`JwtVerifier::with_jwks`] with the contents of the file at `path`.
    pub fn with_jwks_file(settings: JwtSettings, path: &Path) -> Result<Self, JwtConfigError> {
        let document = read_key_file(path)?;
        Self::with_jwks(settings, &document)
    }

    /// The settings this verifier was built with.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Verifies `token` at time `now` (the caller passes `SystemTime::now()`).
    ///
    /// Order: size, shape, header (`alg` against the route, `crit`), key selection,
    /// signature, then `exp`, `nbf`, `iss`, `aud`. Claims are only read once the
    /// signature holds.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, JwtError> {
        let s = &self.settings;
        if token.len() > s.max_token_bytes {
            return Err(JwtError::TooLong {
                max: s.max_token_bytes,
            });
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated parts"));
        };
        let header = decode_json_object(header).ok_or(JwtError::Malformed("header"))?;
        let Some(Value::String(alg)) = header.get("alg") else {
            return Err(JwtError::Malformed("header has no alg"));
        };
        check_algorithm(s.algorithm, alg)?;
        if header.contains_key("crit") {
            return Err(JwtError::Malformed(
                "crit header parameters are not supported",
            ));
        }
        let key = match &self.keys {
            Keys::Single(key) => key,
            Keys::Set(set) => match header.get("kid") {
                Some(Value::String(kid)) => set.get(kid.as_str()),
                None if set.len() == 1 => set.values().next(),
                _ => None,
            }
            .ok_or(JwtError::UnknownKey)?,
        };

        let mut validation = Validation::new(s.algorithm.jsonwebtoken());
        // Time and identity claims are checked below, against `now`, with our rules.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    JwtError::UnexpectedAlgorithm {
                        expected: s.algorithm,
                        found: "unknown",
                    }
                }
                _ => JwtError::Malformed("undecodable header or payload"),
            },
        )?;
        let claims = data.claims;
        self.check_claims(claims, now)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        now: SystemTime,
    ) -> Result<VerifiedToken, JwtError> {
        let s = &self.settings;
        let exp = match claims.get("exp") {
            None => return Err(JwtError::MissingClaim("exp")),
            Some(v) => numeric_date(v).ok_or(JwtError::InvalidClaim("exp"))?,
        };
        let valid_until = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .and_then(|t| t.checked_add(s.leeway))
            .ok_or(JwtError::InvalidClaim("exp"))?;
        if now >= valid_until {
            return Err(JwtError::Expired);
        }
        if let Some(v) = claims.get("nbf") {
            let nbf = numeric_date(v).ok_or(JwtError::InvalidClaim("nbf"))?;
            let not_before = UNIX_EPOCH
                .checked_add(Duration::from_secs(nbf))
                .ok_or(JwtError::InvalidClaim("nbf"))?;
            if now.checked_add(s.leeway).is_some_and(|t| t < not_before) {
                return Err(JwtError::NotYetValid);
            }
        }
        match claims.get("iss") {
            None => return Err(JwtError::MissingClaim("iss")),
            Some(Value::String(iss)) if *iss == s.issuer => {}
            Some(Value::String(_)) => return Err(JwtError::WrongIssuer),
            Some(_) => return Err(JwtError::InvalidClaim("iss")),
        }
        match claims.get("aud") {
            None => return Err(JwtError::MissingClaim("aud")),
            Some(Value::String(aud)) if *aud == s.audience => {}
            Some(Value::String(_)) => return Err(JwtError::WrongAudience),
            Some(Value::Array(items)) => {
                if !items.iter().all(Value::is_string) {
                    return Err(JwtError::InvalidClaim("aud"));
                }
                if !items
                    .iter()
                    .any(|v| v.as_str() == Some(s.audience.as_str()))
                {
                    return Err(JwtError::WrongAudience);
                }
            }
            Some(_) => return Err(JwtError::InvalidClaim("aud")),
        }
        Ok(VerifiedToken {
            claims,
            exp,
            valid_until,
        })
    }
}

fn check_settings(settings: &JwtSettings) -> Result<(), JwtConfigError> {
    if settings.issuer.is_empty() {
        return Err(JwtConfigError::EmptyIssuer);
    }
    if settings.audience.is_empty() {
        return Err(JwtConfigError::EmptyAudience);
    }
    if settings.leeway > MAX_LEEWAY {
        return Err(JwtConfigError::LeewayTooLarge);
    }
    if settings.max_token_bytes == 0 {
        return Err(JwtConfigError::ZeroTokenBound);
    }
    ensure_crypto_provider();
    Ok(())
}

/// `jsonwebtoken` 10 picks its cryptography from a process-wide provider chosen by
/// crate features, and panics when it cannot (for example if another crate in the
/// build also enabled its `aws_lc_rs` feature). Installing the RustCrypto provider
/// explicitly makes the choice independent of feature unification; if another
/// provider was installed first, that one stays, which is equally fine.
fn ensure_crypto_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// The label of the only PEM block in `pem` (`PUBLIC KEY`, `RSA PRIVATE KEY`, …).
fn single_pem_label(pem: &str) -> Result<&str, JwtConfigError> {
    let mut labels = pem.lines().filter_map(|line| {
        line.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
    });
    match (labels.next(), labels.next()) {
        (Some(label), None) => Ok(label),
        _ => Err(JwtConfigError::NotOnePemBlock),
    }
}

/// Checks that a public key decodes for `algorithm`, and that an RSA key is large
/// enough, so a bad key is refused when the route is configured, not at the first
/// token (the RSA verifier of `jsonwebtoken` parses its key lazily).
fn check_public_key(algorithm: JwtAlgorithm, key: &DecodingKey) -> Result<(), JwtConfigError> {
    use jsonwebtoken::DecodingKeyKind;
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::traits::PublicKeyParts;

    match algorithm {
        JwtAlgorithm::Hs256 => Ok(()),
        JwtAlgorithm::Rs256 => {
            let public = match key.kind() {
                DecodingKeyKind::SecretOrDer(der) => rsa::RsaPublicKey::from_pkcs1_der(der).ok(),
                DecodingKeyKind::RsaModulusExponent { n, e } => rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(n),
                    rsa::BigUint::from_bytes_be(e),
                )
                .ok(),
            }
            .ok_or(JwtConfigError::InvalidKey {
                algorithm,
                reason: "not an RSA public key",
            })?;
            let bits = public.size() * 8;
            if bits < MIN_RSA_BITS {
                return Err(JwtConfigError::RsaKeyTooSmall { bits });
            }
            Ok(())
        }
        JwtAlgorithm::Es256 => {
            // The ES256 verifier parses its key when it is made: an error here is
            // a bad key, while `Ok(false)` is the expected failed verification of
            // an empty signature.
            jsonwebtoken::crypto::verify("", b"", key, Algorithm::ES256)
                .map(|_| ())
                .map_err(|_| JwtConfigError::InvalidKey {
                    algorithm,
                    reason: "not a P-256 public key",
                })
        }
    }
}

fn jwk_fits(jwk: &Jwk, algorithm: JwtAlgorithm) -> bool {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return false;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return false;
    }
    if let Some(alg) = common.key_algorithm {
        if alg.to_string() != algorithm.name() {
            return false;
        }
    }
    match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::RSA(_), JwtAlgorithm::Rs256) => true,
        (AlgorithmParameters::EllipticCurve(ec), JwtAlgorithm::Es256) => {
            ec.curve == EllipticCurve::P256
        }
        _ => false,
    }
}

fn read_key_file(path: &Path) -> Result<String, JwtConfigError> {
    use std::io::Read;
    let io = |source| JwtConfigError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(JwtConfigError::FileTooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

fn decode_json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Compares the header's `alg` with the route's, and classifies a mismatch.
fn check_algorithm(expected: JwtAlgorithm, alg: &str) -> Result<(), JwtError> {
    if alg == expected.name() {
        return Ok(());
    }
    if alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::AlgNone);
    }
    const KNOWN: [&str; 13] = [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
        "ES384", "ES512", "EdDSA",
    ];
    // Only a recognised name is kept for the error, never the header's text.
    let found = KNOWN.iter().find(|k| **k == alg).copied();
    match (expected, found) {
        (JwtAlgorithm::Rs256 | JwtAlgorithm::Es256, Some(f)) if f.starts_with("HS") => {
            Err(JwtError::HmacAgainstPublicKey { expected })
        }
        (JwtAlgorithm::Hs256, Some(f)) if !f.starts_with("HS") => {
            Err(JwtError::PublicKeyAgainstHmac { found: f })
        }
        (_, found) => Err(JwtError::UnexpectedAlgorithm {
            expected,
            found: found.unwrap_or("unknown"),
        }),
    }
}

/// A JSON NumericDate: a non-negative number of seconds, fractions rounded down.
fn numeric_date(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    match n.as_f64() {
        // Negative numbers are refused; so are floats beyond any u64.
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Some(f as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const ISS: &str = "https://issuer.example";
    const AUD: &str = "bayeux";
    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
    const RSA_PRIVATE: &str = include_str!("testdata/rsa2048-private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa2048-public.pem");
    const RSA_1024_PUBLIC: &str = include_str!("testdata/rsa1024-public.pem");
    const NOW_SECS: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn settings(algorithm: JwtAlgorithm) -> JwtSettings {
        JwtSettings::new(algorithm, ISS, AUD)
    }

    fn claims() -> Value {
        json!({"sub": "12345", "iss": ISS, "aud": AUD, "exp": NOW_SECS + 600})
    }

    fn with(mut base: Value, key: &str, value: Value) -> Value {
        base[key] = value;
        base
    }

    fn without(mut base: Value, key: &str) -> Value {
        if let Value::Object(map) = &mut base {
            map.remove(key);
        }
        base
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn b64(json: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
    }

    /// A token with an arbitrary header, signed (or not) as the caller says.
    fn raw(header: &Value, claims: &Value, signature: &str) -> String {
        format!("{}.{}.{signature}", b64(header), b64(claims))
    }

    fn hs_key() -> EncodingKey {
        EncodingKey::from_secret(SECRET.as_bytes())
    }

    fn rs_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
    }

    struct Ec {
        private: EncodingKey,
        public_pem: String,
    }

    fn ec() -> Ec {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Ec {
            private: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            public_pem: pair.public_key_pem(),
        }
    }

    fn hs() -> JwtVerifier {
        JwtVerifier::with_secret(settings(JwtAlgorithm::Hs256), SECRET).unwrap()
    }

    fn rs() -> JwtVerifier {
        JwtVerifier::with_public_key_pem(settings(JwtAlgorithm::Rs256), RSA_PUBLIC).unwrap()
    }

    fn es(pem: &str) -> JwtVerifier {
        JwtVerifier::with_public_key_pem(settings(JwtAlgorithm::Es256), pem).unwrap()
    }

    fn jwk(alg: Algorithm, key: &EncodingKey, kid: Option<&str>) -> Value {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = kid.map(str::to_owned);
        serde_json::to_value(jwk).unwrap()
    }

    #[test]
    fn accepts_valid_tokens_of_each_algorithm() {
        let ec = ec();
        let cases = [
            (hs(), sign(Algorithm::HS256, None, &hs_key(), &claims())),
            (rs(), sign(Algorithm::RS256, None, &rs_key(), &claims())),
            (
                es(&ec.public_pem),
                sign(Algorithm::ES256, None, &ec.private, &claims()),
            ),
        ];
        for (verifier, token) in cases {
            let verified = verifier.verify(&token, now()).unwrap();
            assert_eq!(verified.claims.get("sub"), Some(&json!("12345")));
            assert_eq!(verified.exp, NOW_SECS + 600);
            assert_eq!(
                verified.valid_until,
                UNIX_EPOCH + Duration::from_secs(NOW_SECS + 600) + DEFAULT_LEEWAY
            );
            assert!(verified.is_valid_at(now()));
            assert!(!verified.is_valid_at(verified.valid_until));
        }
    }

    #[test]
    fn grants_from_a_verified_token() {
        let token = sign(
            Algorithm::HS256,
            None,
            &hs_key(),
            &with(claims(), "channels", json!(["/news/**", "/x/*/y"])),
        );
        let verified = hs().verify(&token, now()).unwrap();
        let templates = [
            GrantTemplate::parse("/{sub}").unwrap(),
            GrantTemplate::parse("/{sub}/**").unwrap(),
        ];
        let grants = verified.grants(Some("channels"), &templates);
        assert_eq!(
            grants.iter().collect::<Vec<_>>(),
            ["/news/**", "/12345", "/12345/**"]
        );
        assert!(grants.covers("/12345/*"));
        assert!(!grants.covers("/**"));
        assert!(!grants.covers("/*"));
    }

    #[test]
    fn refuses_alg_none_in_any_case() {
        for alg in ["none", "None", "NONE"] {
            let token = raw(&json!({"alg": alg, "typ": "JWT"}), &claims(), "");
            for verifier in [hs(), rs()] {
                assert_eq!(
                    verifier.verify(&token, now()),
                    Err(JwtError::AlgNone),
                    "{alg}"
                );
            }
        }
        // With a signature part copied from a valid token, still refused.
        let valid = sign(Algorithm::HS256, None, &hs_key(), &claims());
        let sig = valid.rsplit('.').next().unwrap();
        let token = raw(&json!({"alg": "none"}), &claims(), sig);
        assert_eq!(hs().verify(&token, now()), Err(JwtError::AlgNone));
    }

    #[test]
    fn refuses_hmac_tokens_signed_with_the_public_key() {
        // The classic confusion: the attacker signs HS256 with the public key as secret.
        let forged = sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            &claims(),
        );
        assert_eq!(
            rs().verify(&forged, now()),
            Err(JwtError::HmacAgainstPublicKey {
                expected: JwtAlgorithm::Rs256
            })
        );
        let ec = ec();
        let forged = sign(
            Algorithm::HS512,
            None,
            &EncodingKey::from_secret(ec.public_pem.as_bytes()),
            &claims(),
        );
        assert_eq!(
            es(&ec.public_pem).verify(&forged, now()),
            Err(JwtError::HmacAgainstPublicKey {
                expected: JwtAlgorithm::Es256
            })
        );
    }

    /// Behind our own header check, `jsonwebtoken` also refuses to use an RSA key
    /// as an HMAC secret, even when told to accept HS256.
    #[test]
    fn jsonwebtoken_itself_refuses_a_public_key_as_hmac_secret() {
        ensure_crypto_provider();
        let forged = sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            &claims(),
        );
        let key = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
        let validation = Validation::new(Algorithm::HS256);
        let err = jsonwebtoken::decode::<Value>(&forged, &key, &validation).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidKeyFormat);
    }

    #[test]
    fn refuses_public_key_tokens_on_an_hmac_route() {
        let token = sign(Algorithm::RS256, None, &rs_key(), &claims());
        assert_eq!(
            hs().verify(&token, now()),
            Err(JwtError::PublicKeyAgainstHmac { found: "RS256" })
        );
        let ec = ec();
        let token = sign(Algorithm::ES256, None, &ec.private, &claims());
        assert_eq!(
            hs().verify(&token, now()),
            Err(JwtError::PublicKeyAgainstHmac { found: "ES256" })
        );
    }

    #[test]
    fn refuses_other_algorithms() {
        let ec = ec();
        let cases = [
            (
                rs(),
                sign(Algorithm::RS384, None, &rs_key(), &claims()),
                "RS384",
            ),
            (
                rs(),
                sign(Algorithm::PS256, None, &rs_key(), &claims()),
                "PS256",
            ),
            (
                rs(),
                sign(Algorithm::ES256, None, &ec.private, &claims()),
                "ES256",
            ),
            (
                es(&ec.public_pem),
                sign(Algorithm::RS256, None, &rs_key(), &claims()),
                "RS256",
            ),
            (
                hs(),
                sign(Algorithm::HS384, None, &hs_key(), &claims()),
                "HS384",
            ),
            (
                hs(),
                raw(&json!({"alg": "HS256 "}), &claims(), "x"),
                "unknown",
            ),
            (
                hs(),
                raw(&json!({"alg": "hs256"}), &claims(), "x"),
                "unknown",
            ),
        ];
        for (verifier, token, found) in cases {
            assert_eq!(
                verifier.verify(&token, now()),
                Err(JwtError::UnexpectedAlgorithm {
                    expected: verifier.settings().algorithm,
                    found
                }),
                "{found}"
            );
        }
    }

    #[test]
    fn refuses_bad_signatures() {
        let token = sign(Algorithm::HS256, None, &hs_key(), &claims());
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let header = signed.split('.').next().unwrap();
        // The payload changed after signing.
        let tampered = format!("{header}.{}.{sig}", b64(&with(claims(), "sub", json!("1"))));
        // Another secret.
        let other = sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(b"another secret of 32 bytes or more!"),
            &claims(),
        );
        // 40 base64url characters still decode, to 30 bytes.
        let truncated = format!("{signed}.{}", &sig[..40]);
        let empty = format!("{signed}.");
        for bad in [tampered, other, truncated, empty] {
            assert_eq!(
                hs().verify(&bad, now()),
                Err(JwtError::BadSignature),
                "{bad}"
            );
        }
        let ec = ec();
        let other_ec = self::ec();
        let token = sign(Algorithm::ES256, None, &other_ec.private, &claims());
        assert_eq!(
            es(&ec.public_pem).verify(&token, now()),
            Err(JwtError::BadSignature)
        );
        let token = sign(Algorithm::RS256, None, &rs_key(), &claims());
        let (signed, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]));
        assert_eq!(rs().verify(&forged, now()), Err(JwtError::BadSignature));
    }

    #[test]
    fn expiry_with_leeway() {
        let v = hs();
        let at = |exp: u64| {
            sign(
                Algorithm::HS256,
                None,
                &hs_key(),
                &with(claims(), "exp", json!(exp)),
            )
        };
        assert!(
            v.verify(&at(NOW_SECS - 29), now()).is_ok(),
            "inside the leeway"
        );
        assert_eq!(
            v.verify(&at(NOW_SECS - 30), now()),
            Err(JwtError::Expired),
            "at its end"
        );
        assert_eq!(
            v.verify(&at(NOW_SECS - 3600), now()),
            Err(JwtError::Expired)
        );
        assert_eq!(v.verify(&at(0), now()), Err(JwtError::Expired));
        // A fractional exp is a valid NumericDate.
        let frac = sign(
            Algorithm::HS256,
            None,
            &hs_key(),
            &with(claims(), "exp", json!(NOW_SECS as f64 + 10.5)),
        );
        assert_eq!(v.verify(&frac, now()).unwrap().exp, NOW_SECS + 10);

        let mut strict = settings(JwtAlgorithm::Hs256);
        strict.leeway = Duration::ZERO;
        let strict = JwtVerifier::with_secret(strict, SECRET).unwrap();
        assert_eq!(strict.verify(&at(NOW_SECS), now()), Err(JwtError::Expired));
        assert!(strict.verify(&at(NOW_SECS + 1), now()).is_ok());
    }

    #[test]
    fn not_before_with_leeway() {
        let v = hs();
        let nbf = |nbf: Value| {
            sign(
                Algorithm::HS256,
                None,
                &hs_key(),
                &with(claims(), "nbf", nbf),
            )
        };
        assert!(v.verify(&nbf(json!(NOW_SECS)), now()).is_ok());
        assert!(
            v.verify(&nbf(json!(NOW_SECS + 30)), now()).is_ok(),
            "inside the leeway"
        );
        assert_eq!(
            v.verify(&nbf(json!(NOW_SECS + 31)), now()),
            Err(JwtError::NotYetValid)
        );
        // The type confusion of jsonwebtoken < 10.3 (a string nbf treated as absent)
        // cannot happen here: a claim of the wrong type is refused.
        assert_eq!(
            v.verify(&nbf(json!("99999999999")), now()),
            Err(JwtError::InvalidClaim("nbf"))
        );
        assert_eq!(
            v.verify(&nbf(json!(-1)), now()),
            Err(JwtError::InvalidClaim("nbf"))
        );
    }

    #[test]
    fn required_and_typed_claims() {
        let v = hs();
        let tok = |c: Value| sign(Algorithm::HS256, None, &hs_key(), &c);
        for claim in ["exp", "iss", "aud"] {
            assert_eq!(
                v.verify(&tok(without(claims(), claim)), now()),
                Err(JwtError::MissingClaim(claim))
            );
        }
        let cases = [
            ("exp", json!("never")),
            ("exp", json!(-5)),
            ("exp", json!(null)),
            ("exp", json!(1e300)),
            ("exp", json!(u64::MAX)),
            ("iss", json!([ISS])),
            ("iss", json!(1)),
            ("aud", json!([AUD, 1])),
            ("aud", json!({"aud": AUD})),
        ];
        for (claim, value) in cases {
            assert_eq!(
                v.verify(&tok(with(claims(), claim, value.clone())), now()),
                Err(JwtError::InvalidClaim(claim)),
                "{claim} = {value}"
            );
        }
    }

    #[test]
    fn pinned_issuer_and_audience() {
        let v = hs();
        let tok = |c: Value| sign(Algorithm::HS256, None, &hs_key(), &c);
        assert_eq!(
            v.verify(
                &tok(with(claims(), "iss", json!("https://evil.example"))),
                now()
            ),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(
            v.verify(&tok(with(claims(), "iss", json!(format!("{ISS}/")))), now()),
            Err(JwtError::WrongIssuer)
        );
        for aud in [json!("other"), json!([]), json!(["other", "bayeux2"])] {
            assert_eq!(
                v.verify(&tok(with(claims(), "aud", aud.clone())), now()),
                Err(JwtError::WrongAudience),
                "{aud}"
            );
        }
        assert!(v
            .verify(&tok(with(claims(), "aud", json!(["other", AUD]))), now())
            .is_ok());
    }

    #[test]
    fn refuses_malformed_tokens() {
        let valid = sign(Algorithm::HS256, None, &hs_key(), &claims());
        let (header, rest) = valid.split_once('.').unwrap();
        let (payload, sig) = rest.split_once('.').unwrap();
        let cases = [
            String::new(),
            "abc".to_owned(),
            format!("{header}.{payload}"),
            format!("{valid}.x"),
            format!("!!!.{payload}.{sig}"),
            format!("{}.{payload}.{sig}", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.{payload}.{sig}", b64(&json!(["HS256"]))),
            format!("{}.{payload}.{sig}", b64(&json!({"typ": "JWT"}))),
            format!("{}.{payload}.{sig}", b64(&json!({"alg": 256}))),
            format!(
                "{}.{payload}.{sig}",
                b64(&json!({"alg": "HS256", "crit": ["b64"]}))
            ),
            format!("{header}=.{payload}.{sig}"),
            format!("{header}.{payload}.{sig}!"),
        ];
        for token in cases {
            assert!(
                matches!(hs().verify(&token, now()), Err(JwtError::Malformed(_))),
                "{token}: {:?}",
                hs().verify(&token, now())
            );
        }
        // A correctly signed payload that is not a JSON object.
        let key = hs_key();
        let msg = format!("{header}.{}", URL_SAFE_NO_PAD.encode("[1,2]"));
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key, Algorithm::HS256).unwrap();
        assert_eq!(
            hs().verify(&format!("{msg}.{sig}"), now()),
            Err(JwtError::Malformed("undecodable header or payload"))
        );
    }

    #[test]
    fn bounds_token_length() {
        let mut s = settings(JwtAlgorithm::Hs256);
        s.max_token_bytes = 200;
        let v = JwtVerifier::with_secret(s, SECRET).unwrap();
        let big = sign(
            Algorithm::HS256,
            None,
            &hs_key(),
            &with(claims(), "pad", json!("x".repeat(300))),
        );
        assert_eq!(v.verify(&big, now()), Err(JwtError::TooLong { max: 200 }));
        let long = "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            hs().verify(&long, now()),
            Err(JwtError::TooLong { .. })
        ));
    }

    #[test]
    fn errors_never_show_the_token() {
        let ec = ec();
        let mut tokens = vec![
            (hs(), raw(&json!({"alg": "none"}), &claims(), "")),
            (
                rs(),
                sign(
                    Algorithm::HS256,
                    None,
                    &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
                    &claims(),
                ),
            ),
            (hs(), sign(Algorithm::RS256, None, &rs_key(), &claims())),
            (
                hs(),
                raw(&json!({"alg": "secret-looking-alg-name"}), &claims(), "x"),
            ),
            (
                es(&ec.public_pem),
                sign(Algorithm::ES256, None, &self::ec().private, &claims()),
            ),
            (hs(), "a.b".to_owned()),
        ];
        for (claim, value) in [
            ("exp", json!(1)),
            ("nbf", json!(NOW_SECS + 1000)),
            ("iss", json!("issuer-value")),
            ("aud", json!("audience-value")),
            ("exp", json!("exp-value")),
        ] {
            tokens.push((
                hs(),
                sign(
                    Algorithm::HS256,
                    None,
                    &hs_key(),
                    &with(claims(), claim, value),
                ),
            ));
        }
        for (verifier, token) in tokens {
            let err = verifier.verify(&token, now()).unwrap_err();
            let text = format!("{err} {err:?}");
            for part in token.split('.').filter(|p| p.len() > 3) {
                assert!(!text.contains(part), "{text}");
            }
            for value in [
                "secret-looking",
                "issuer-value",
                "audience-value",
                "exp-value",
                "12345",
            ] {
                assert!(!text.contains(value), "{text}");
            }
            assert!(!err.label().is_empty());
        }
    }

    #[test]
    fn jwks_selects_keys_by_kid() {
        let (a, b) = (ec(), ec());
        let rsa = jwk(Algorithm::RS256, &rs_key(), Some("rsa"));
        let doc = json!({"keys": [
            jwk(Algorithm::ES256, &a.private, Some("a")),
            jwk(Algorithm::ES256, &b.private, Some("b")),
            // Skipped: an RSA key, an encryption key, another algorithm, another
            // curve, a key type unknown to the crate, and junk.
            rsa,
            with(jwk(Algorithm::ES256, &a.private, Some("enc")), "use", json!("enc")),
            with(jwk(Algorithm::ES256, &a.private, Some("es384")), "alg", json!("ES384")),
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            {"kty": "AKP", "kid": "pq", "pub": "AA"},
            "junk",
        ]});
        let v = JwtVerifier::with_jwks(settings(JwtAlgorithm::Es256), &doc.to_string()).unwrap();
        let ok_a = sign(Algorithm::ES256, Some("a"), &a.private, &claims());
        let ok_b = sign(Algorithm::ES256, Some("b"), &b.private, &claims());
        assert!(v.verify(&ok_a, now()).is_ok());
        assert!(v.verify(&ok_b, now()).is_ok());
        let wrong = sign(Algorithm::ES256, Some("a"), &b.private, &claims());
        assert_eq!(v.verify(&wrong, now()), Err(JwtError::BadSignature));
        for kid in [Some("c"), Some("enc"), Some("es384"), None] {
            let token = sign(Algorithm::ES256, kid, &a.private, &claims());
            assert_eq!(
                v.verify(&token, now()),
                Err(JwtError::UnknownKey),
                "{kid:?}"
            );
        }
        let token = raw(&json!({"alg": "ES256", "kid": 1}), &claims(), "x");
        assert_eq!(v.verify(&token, now()), Err(JwtError::UnknownKey));
    }

    #[test]
    fn jwks_with_a_single_key() {
        // Without kid: serves every token.
        let doc = json!({"keys": [jwk(Algorithm::RS256, &rs_key(), None)]}).to_string();
        let v = JwtVerifier::with_jwks(settings(JwtAlgorithm::Rs256), &doc).unwrap();
        for kid in [None, Some("anything")] {
            let token = sign(Algorithm::RS256, kid, &rs_key(), &claims());
            assert!(v.verify(&token, now()).is_ok(), "{kid:?}");
        }
        // With a kid: a token without one is accepted, one naming another is not.
        let doc = json!({"keys": [jwk(Algorithm::RS256, &rs_key(), Some("k1"))]}).to_string();
        let v = JwtVerifier::with_jwks(settings(JwtAlgorithm::Rs256), &doc).unwrap();
        assert!(v
            .verify(&sign(Algorithm::RS256, None, &rs_key(), &claims()), now())
            .is_ok());
        assert!(v
            .verify(
                &sign(Algorithm::RS256, Some("k1"), &rs_key(), &claims()),
                now()
            )
            .is_ok());
        assert_eq!(
            v.verify(
                &sign(Algorithm::RS256, Some("k2"), &rs_key(), &claims()),
                now()
            ),
            Err(JwtError::UnknownKey)
        );
        // The confusion check comes first, whatever the key source.
        let forged = sign(
            Algorithm::HS256,
            Some("k1"),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            &claims(),
        );
        assert_eq!(
            v.verify(&forged, now()),
            Err(JwtError::HmacAgainstPublicKey {
                expected: JwtAlgorithm::Rs256
            })
        );
    }

    #[test]
    fn jwks_configuration_errors() {
        let (a, b) = (ec(), ec());
        let es_settings = || settings(JwtAlgorithm::Es256);
        let dup = json!({"keys": [
            jwk(Algorithm::ES256, &a.private, Some("k")),
            jwk(Algorithm::ES256, &b.private, Some("k")),
        ]});
        assert!(matches!(
            JwtVerifier::with_jwks(es_settings(), &dup.to_string()),
            Err(JwtConfigError::DuplicateKid(k)) if k == "k"
        ));
        let no_kid = json!({"keys": [
            jwk(Algorithm::ES256, &a.private, Some("k")),
            jwk(Algorithm::ES256, &b.private, None),
        ]});
        assert!(matches!(
            JwtVerifier::with_jwks(es_settings(), &no_kid.to_string()),
            Err(JwtConfigError::JwkWithoutKid)
        ));
        let only_rsa = json!({"keys": [jwk(Algorithm::RS256, &rs_key(), Some("r"))]});
        assert!(matches!(
            JwtVerifier::with_jwks(es_settings(), &only_rsa.to_string()),
            Err(JwtConfigError::NoUsableJwk(JwtAlgorithm::Es256))
        ));
        for bad in ["", "[]", "{}", r#"{"keys": {}}"#] {
            assert!(matches!(
                JwtVerifier::with_jwks(es_settings(), bad),
                Err(JwtConfigError::JwksNotAKeySet)
            ));
        }
        assert!(matches!(
            JwtVerifier::with_jwks(es_settings(), r#"{"keys": []}"#),
            Err(JwtConfigError::NoUsableJwk(_))
        ));
        // A point that is not on the curve.
        let off_curve = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}]});
        assert!(matches!(
            JwtVerifier::with_jwks(es_settings(), &off_curve.to_string()),
            Err(JwtConfigError::InvalidKey { .. })
        ));
        let small_rsa = json!({"keys": [{"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB"}]});
        assert!(matches!(
            JwtVerifier::with_jwks(settings(JwtAlgorithm::Rs256), &small_rsa.to_string()),
            Err(JwtConfigError::RsaKeyTooSmall { bits: 1024 })
        ));
        let oct = json!({"keys": [{"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET)}]});
        assert!(matches!(
            JwtVerifier::with_jwks(settings(JwtAlgorithm::Hs256), &oct.to_string()),
            Err(JwtConfigError::WrongKeyKind { .. })
        ));
    }

    #[test]
    fn key_configuration_errors() {
        let ec = ec();
        let hs_settings = || settings(JwtAlgorithm::Hs256);
        assert!(matches!(
            JwtVerifier::with_secret(hs_settings(), &SECRET[..MIN_SECRET_BYTES - 1]),
            Err(JwtConfigError::SecretTooShort)
        ));
        assert!(JwtVerifier::with_secret(hs_settings(), &SECRET[..MIN_SECRET_BYTES]).is_ok());
        assert!(matches!(
            JwtVerifier::with_secret(settings(JwtAlgorithm::Rs256), SECRET),
            Err(JwtConfigError::WrongKeyKind { .. })
        ));
        assert!(matches!(
            JwtVerifier::with_public_key_pem(hs_settings(), RSA_PUBLIC),
            Err(JwtConfigError::WrongKeyKind { .. })
        ));
        let rs_pem =
            |pem: &str| JwtVerifier::with_public_key_pem(settings(JwtAlgorithm::Rs256), pem);
        let es_pem =
            |pem: &str| JwtVerifier::with_public_key_pem(settings(JwtAlgorithm::Es256), pem);
        assert!(matches!(
            rs_pem(RSA_PRIVATE),
            Err(JwtConfigError::PrivateKey)
        ));
        let ec_private = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        assert!(matches!(
            es_pem(&ec_private),
            Err(JwtConfigError::PrivateKey)
        ));
        assert!(matches!(
            rs_pem(RSA_1024_PUBLIC),
            Err(JwtConfigError::RsaKeyTooSmall { bits: 1024 })
        ));
        assert!(matches!(
            rs_pem(&ec.public_pem),
            Err(JwtConfigError::InvalidKey { .. })
        ));
        assert!(matches!(
            es_pem(RSA_PUBLIC),
            Err(JwtConfigError::InvalidKey { .. })
        ));
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert!(matches!(
            es_pem(&p384.public_key_pem()),
            Err(JwtConfigError::InvalidKey { .. })
        ));
        assert!(matches!(
            rs_pem(&format!("{RSA_PUBLIC}{RSA_PUBLIC}")),
            Err(JwtConfigError::NotOnePemBlock)
        ));
        assert!(matches!(
            rs_pem("no pem here"),
            Err(JwtConfigError::NotOnePemBlock)
        ));
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap()
            .cert
            .pem();
        assert!(
            matches!(es_pem(&cert), Err(JwtConfigError::UnsupportedPem { label }) if label == "CERTIFICATE")
        );
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            rs_pem(garbage),
            Err(JwtConfigError::InvalidKey { .. })
        ));
        assert!(matches!(
            es_pem(garbage),
            Err(JwtConfigError::InvalidKey { .. })
        ));
    }

    #[test]
    fn settings_errors() {
        let mut s = settings(JwtAlgorithm::Hs256);
        s.issuer.clear();
        assert!(matches!(
            JwtVerifier::with_secret(s, SECRET),
            Err(JwtConfigError::EmptyIssuer)
        ));
        let mut s = settings(JwtAlgorithm::Hs256);
        s.audience.clear();
        assert!(matches!(
            JwtVerifier::with_secret(s, SECRET),
            Err(JwtConfigError::EmptyAudience)
        ));
        let mut s = settings(JwtAlgorithm::Hs256);
        s.leeway = MAX_LEEWAY + Duration::from_secs(1);
        assert!(matches!(
            JwtVerifier::with_secret(s, SECRET),
            Err(JwtConfigError::LeewayTooLarge)
        ));
        let mut s = settings(JwtAlgorithm::Hs256);
        s.max_token_bytes = 0;
        assert!(matches!(
            JwtVerifier::with_secret(s, SECRET),
            Err(JwtConfigError::ZeroTokenBound)
        ));
        assert_eq!("RS256".parse::<JwtAlgorithm>(), Ok(JwtAlgorithm::Rs256));
        assert_eq!("ES256".parse::<JwtAlgorithm>(), Ok(JwtAlgorithm::Es256));
        assert_eq!("HS256".parse::<JwtAlgorithm>(), Ok(JwtAlgorithm::Hs256));
        assert!("none".parse::<JwtAlgorithm>().is_err());
        assert!("rs256".parse::<JwtAlgorithm>().is_err());
        let debug = format!("{:?}", hs());
        assert!(!debug.contains(SECRET), "{debug}");
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("key.pem");
        std::fs::write(&pem, RSA_PUBLIC).unwrap();
        let v = JwtVerifier::with_public_key_file(settings(JwtAlgorithm::Rs256), &pem).unwrap();
        assert!(v
            .verify(&sign(Algorithm::RS256, None, &rs_key(), &claims()), now())
            .is_ok());
        let jwks = dir.path().join("jwks.json");
        let doc = json!({"keys": [jwk(Algorithm::RS256, &rs_key(), Some("k"))]});
        std::fs::write(&jwks, doc.to_string()).unwrap();
        let v = JwtVerifier::with_jwks_file(settings(JwtAlgorithm::Rs256), &jwks).unwrap();
        assert!(v
            .verify(
                &sign(Algorithm::RS256, Some("k"), &rs_key(), &claims()),
                now()
            )
            .is_ok());
        let missing = dir.path().join("missing.pem");
        let err =
            JwtVerifier::with_public_key_file(settings(JwtAlgorithm::Rs256), &missing).unwrap_err();
        assert!(matches!(err, JwtConfigError::Io { .. }));
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let huge = dir.path().join("huge.json");
        std::fs::write(&huge, vec![b' '; MAX_KEY_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(
            JwtVerifier::with_jwks_file(settings(JwtAlgorithm::Rs256), &huge),
            Err(JwtConfigError::FileTooLarge { .. })
        ));
    }
}
