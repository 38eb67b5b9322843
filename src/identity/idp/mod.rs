//! The `jwt` authentication method: access tokens from the company's identity provider.
//!
//! Owns the rules a token must pass and the mapping of verified claims to an identity
//! (username, traits, and roles through `claims_to_roles`, as identity-provider connectors do
//! in the reference system). Pure and synchronous: keys come from [`jwks`], which owns every
//! network call, so a check never waits on the network. Never logs or returns a token, a
//! claim value or key material.
//!
//! What a token must be, in order:
//! 1. at most [`MAX_TOKEN_BYTES`], three base64url parts, a header with no `crit`, and no
//!    key named twice in any object of the header or the claims (`strict`);
//! 2. `alg` in the configured allow-list (asymmetric only: `none` and HMAC cannot be
//!    configured);
//! 3. signed by a published key: the `kid` names it, or, only when the identity provider
//!    publishes exactly one key, no `kid` is needed (RFC 8725 §3.10 practice);
//! 4. `alg` allowed for *that* key: an RSA key only verifies RS*/PS*, a P-256 key only ES256
//!    (and only the JWK's own `alg` when it has one) — no algorithm confusion;
//! 5. `iss` byte-identical to the configured issuer, `aud` (string or array) naming one of
//!    the accepted audiences;
//! 6. `exp` present and not past, `nbf` and `iat` not in the future (each with the clock
//!    skew), and a lifetime no longer than `max_lifetime`;
//! 7. a username claim in canonical form ([`warden_core::policy::names`]: no padding, no invisible
//!    characters, NFC), and a verified `email` when that is the username claim.
//!
//! An `email` the token does not vouch for names nobody: `email_verified` present and anything
//! but JSON `true` or the string `"true"` makes it refused as the username and ignored by
//! `claims_to_roles` and traits, so an address a user typed but never proved grants nothing.

pub mod jwks;
mod strict;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::Validation;
use serde::Deserialize;
use serde_json::{Map, Value};

use warden_core::policy::pattern::{NameSet, PatternError};
use warden_core::policy::{Traits, names};

/// Longer bearer values are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// At most this many values per trait or per claim consulted for roles.
pub const MAX_CLAIM_VALUES: usize = 1000;
/// The well-known path of RFC 9728 protected-resource metadata.
pub const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Verified tokens remembered before the memo starts over.
const MAX_VERIFIED: usize = 10_000;

/// Algorithms a token may be signed with when none are configured.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

/// Where the identity provider's keys are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An OIDC discovery document whose `jwks_uri` names the key set; its `issuer` must be
    /// the configured issuer.
    Discovery(String),
    /// The key set itself.
    Jwks(String),
}

/// One `claims_to_roles` entry as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    pub claim: String,
    /// A literal, a glob (`*`) or `^regex$`.
    pub value: String,
    pub roles: Vec<String>,
}

/// A validated `authentication.jwt` block (built by [`crate::config`]).
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Compared byte for byte with `iss`.
    pub issuer: String,
    pub keys: KeySource,
    /// Accepted `aud` values; a token passes when its `aud` names one of them, or when its
    /// `client_id` claim is one of `client_ids` (Cognito access tokens carry no `aud`).
    pub audiences: Vec<String>,
    /// Accepted `client_id` claim values (RFC 9068), the alternative to `audiences`.
    pub client_ids: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub clock_skew: Duration,
    pub max_lifetime: Duration,
    pub username_claim: String,
    /// (trait name, claim name), in configuration order.
    pub traits: Vec<(String, String)>,
    pub claims_to_roles: Vec<ClaimMapping>,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    /// `ORIGIN/.well-known/oauth-protected-resource`; `None`: derived from mcp-warden's issuer.
    pub resource_metadata_url: Option<String>,
    /// Listed as `scopes_supported` in the resource metadata.
    pub scopes_supported: Vec<String>,
}

/// A configuration value the verifier cannot use, naming the field and the value.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("algorithm '{0}' is not supported (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA)")]
    UnknownAlgorithm(String),
    #[error("algorithm '{0}' is refused: only asymmetric signatures are accepted (never 'none', never HMAC)")]
    RefusedAlgorithm(String),
    #[error("'{0}' must be an https URL (http only for 127.0.0.1, ::1 or localhost)")]
    InsecureUrl(String),
    #[error("'{url}' is not a URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("'{0}' must be ORIGIN/.well-known/oauth-protected-resource (no other path, query or fragment)")]
    ResourceMetadataUrl(String),
    #[error("entry {index}: {source}")]
    Pattern { index: usize, source: PatternError },
}

/// The asymmetric algorithms a token may use, by JOSE name.
const SUPPORTED: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// Parses one configured algorithm name; `none` and HMAC are refused.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, JwtConfigError> {
    if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") {
        return Err(JwtConfigError::RefusedAlgorithm(name.to_owned()));
    }
    SUPPORTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .ok_or_else(|| JwtConfigError::UnknownAlgorithm(name.to_owned()))
}

/// The JOSE name of a supported algorithm (`"?"` for any other).
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    SUPPORTED.iter().find(|(_, a)| *a == alg).map_or("?", |(n, _)| n)
}

/// Whether mcp-warden may fetch from `url`: https, or plain http to a loopback host (tests).
pub fn check_fetch_url(url: &str) -> Result<(), JwtConfigError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| JwtConfigError::BadUrl { url: url.to_owned(), reason: e.to_string() })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(JwtConfigError::BadUrl { url: url.to_owned(), reason: "credentials in a URL".into() });
    }
    let loopback = |host: &str| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    match (parsed.scheme(), parsed.host_str()) {
        ("https", Some(h)) if !h.is_empty() => Ok(()),
        ("http", Some(h)) if loopback(h) => Ok(()),
        _ => Err(JwtConfigError::InsecureUrl(url.to_owned())),
    }
}

/// Checks a configured `resource_metadata_url` and returns the origin in front of the
/// well-known path (the resource identifiers' prefix).
pub fn resource_origin(metadata_url: &str) -> Result<&str, JwtConfigError> {
    let bad = || JwtConfigError::ResourceMetadataUrl(metadata_url.to_owned());
    let origin = metadata_url.strip_suffix(RESOURCE_METADATA_PATH).ok_or_else(bad)?;
    let (scheme, host) = origin.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https")
        || host.is_empty()
        || host.contains(['/', '?', '#', '@', '"', '\\'])
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(origin)
}

/// The default metadata URL for mcp-warden's public issuer: the issuer's origin (RFC 9728
/// inserts the well-known path between the host and the resource's path).
pub fn default_resource_metadata_url(issuer: &str) -> String {
    let origin = match issuer.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            format!("{scheme}://{host}")
        }
        None => issuer.trim_end_matches('/').to_owned(),
    };
    format!("{origin}{RESOURCE_METADATA_PATH}")
}

/// Refuses a `claims_to_roles` mapping that names a role `policy` does not define (for
/// start-up, and for `mcp-warden check`). The error lists every such role.
pub fn check_mapped_roles(config: &JwtConfig, policy: &warden_core::policy::Policy) -> Result<(), String> {
    let mut unknown: Vec<&str> = Vec::new();
    for role in config.claims_to_roles.iter().flat_map(|m| m.roles.iter()) {
        if !policy.role_names().iter().any(|p| **p == **role) && !unknown.contains(&role.as_str()) {
            unknown.push(role);
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("claims_to_roles names roles the policy does not define: {}", unknown.join(", ")))
    }
}

/// `claims_to_roles`, compiled once: every value pattern is a [`NameSet`].
#[derive(Debug, Default)]
pub struct RoleMapping {
    rules: Vec<(Box<str>, NameSet, Vec<String>)>,
}

impl RoleMapping {
    pub fn compile(entries: &[ClaimMapping]) -> Result<Self, JwtConfigError> {
        let mut rules = Vec::with_capacity(entries.len());
        for (index, e) in entries.iter().enumerate() {
            let set = NameSet::compile(std::slice::from_ref(&e.value))
                .map_err(|source| JwtConfigError::Pattern { index, source })?;
            rules.push((e.claim.as_str().into(), set, e.roles.clone()));
        }
        Ok(RoleMapping { rules })
    }

    /// The roles for a verified claim set: every rule with a claim value matching its
    /// pattern contributes its roles, in order, without duplicates.
    fn map<'c>(&self, claim: impl Fn(&str) -> Option<&'c Value>) -> Result<Vec<String>, Rejected> {
        let mut out: Vec<String> = Vec::new();
        for (name, set, roles) in &self.rules {
            let Some(value) = claim(name) else { continue };
            let mut hit = false;
            for_each_value(value, |v| hit = hit || set.is_match(v))?;
            if hit {
                for r in roles {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Calls `f` with each scalar of a claim: a string, or each string of an array; numbers and
/// booleans in their JSON form. Objects and nulls are not values.
fn for_each_value(value: &Value, mut f: impl FnMut(&str)) -> Result<(), Rejected> {
    let mut one = |v: &Value| match v {
        Value::String(s) => f(s),
        Value::Number(n) => f(&n.to_string()),
        Value::Bool(b) => f(if *b { "true" } else { "false" }),
        _ => {}
    };
    match value {
        Value::Array(items) => {
            if items.len() > MAX_CLAIM_VALUES {
                return Err(Rejected::Claims);
            }
            items.iter().for_each(&mut one);
        }
        other => one(other),
    }
    Ok(())
}

/// Why a token was refused. The code goes to audit, metrics and logs; a client only learns
/// that its token is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("not a compact JWS with a JSON header")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("unsupported critical header")]
    Critical,
    #[error("no identity-provider keys loaded yet")]
    NoKeys,
    #[error("kid not published by the identity provider")]
    UnknownKey,
    #[error("no kid, and the identity provider publishes several keys")]
    MissingKid,
    #[error("algorithm does not match the key")]
    KeyMismatch,
    #[error("bad signature")]
    Signature,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("issued in the future")]
    IssuedInFuture,
    #[error("lifetime longer than max_lifetime")]
    Lifetime,
    #[error("malformed claims")]
    Claims,
    #[error("username claim missing, not a string, or not in canonical form")]
    Username,
    #[error("email not verified")]
    EmailUnverified,
}

impl Rejected {
    /// A stable code for audit events and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Rejected::Malformed => "jwt_malformed",
            Rejected::Algorithm => "jwt_algorithm",
            Rejected::Critical => "jwt_critical_header",
            Rejected::NoKeys => "jwt_no_keys",
            Rejected::UnknownKey => "jwt_unknown_kid",
            Rejected::MissingKid => "jwt_missing_kid",
            Rejected::KeyMismatch => "jwt_key_mismatch",
            Rejected::Signature => "jwt_signature",
            Rejected::Issuer => "jwt_issuer",
            Rejected::Audience => "jwt_audience",
            Rejected::Expired => "jwt_expired",
            Rejected::NotYetValid => "jwt_not_yet_valid",
            Rejected::IssuedInFuture => "jwt_issued_in_future",
            Rejected::Lifetime => "jwt_lifetime",
            Rejected::Claims => "jwt_claims",
            Rejected::Username => "jwt_username",
            Rejected::EmailUnverified => "jwt_email_unverified",
        }
    }
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub roles: Vec<String>,
    pub traits: Traits,
}

/// Whether a bearer value has the shape of a JWS compact serialization (`eyJ….….…`): such a
/// value goes to the `jwt` method; anything else is an API key.
pub fn looks_like_jwt(value: &str) -> bool {
    let mut parts = value.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let b64 = |part: &str| part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    h.starts_with("eyJ") && !p.is_empty() && b64(h) && b64(p) && b64(s)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Verifies tokens against the key cache and maps their claims. Built once at start.
#[derive(Debug)]
pub struct Verifier {
    config: JwtConfig,
    roles: RoleMapping,
    /// One prepared `jsonwebtoken` validation (signature, `iss`, `aud`) per allowed algorithm.
    validations: HashMap<Algorithm, Validation>,
    keys: Arc<jwks::KeyCache>,
    metadata_url: String,
    origin: String,
    /// Tokens that passed, by SHA-256 of the whole token: MCP clients send the same token on
    /// every request, and a repeat costs a hash and a lookup instead of a signature check.
    /// An entry is used only under the key set it was verified with, and its times are
    /// checked again on every use.
    verified: RwLock<HashMap<[u8; 32], Verified>>,
}

/// A token that passed: what its time claims say, and who it names.
#[derive(Debug, Clone)]
struct Verified {
    generation: u64,
    times: Times,
    identity: Identity,
}

/// The time claims of a token, in seconds since the epoch.
#[derive(Debug, Clone, Copy)]
struct Times {
    exp: f64,
    nbf: Option<f64>,
    iat: Option<f64>,
}

impl Verifier {
    /// `warden_issuer` is mcp-warden's own public issuer: the default resource metadata URL is
    /// derived from it.
    pub fn new(config: JwtConfig, keys: Arc<jwks::KeyCache>, warden_issuer: &str) -> Result<Self, JwtConfigError> {
        let roles = RoleMapping::compile(&config.claims_to_roles)?;
        let metadata_url =
            config.resource_metadata_url.clone().unwrap_or_else(|| default_resource_metadata_url(warden_issuer));
        let origin = resource_origin(&metadata_url)?.to_owned();
        let validations = config
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                // Time claims are checked here against an explicit clock (see `check_times`).
                v.validate_exp = false;
                v.validate_nbf = false;
                v.required_spec_claims.clear();
                v.leeway = 0;
                v.set_issuer(&[&config.issuer]);
                // `aud` (or `client_id`) is checked in `check_claims`: either may be absent.
                v.validate_aud = false;
                (alg, v)
            })
            .collect();
        Ok(Verifier { config, roles, validations, keys, metadata_url, origin, verified: RwLock::default() })
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    pub fn keys(&self) -> &Arc<jwks::KeyCache> {
        &self.keys
    }

    /// `ORIGIN/.well-known/oauth-protected-resource`.
    pub fn resource_metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The origin protected resources are named under.
    pub fn resource_origin(&self) -> &str {
        &self.origin
    }

    /// The metadata URL for a request path (query dropped), as RFC 9728 §3.1 builds it:
    /// the well-known path goes between the origin and the resource's path. Characters that
    /// could break the quoted header value are percent-encoded.
    pub fn resource_metadata_for(&self, request_path: &str) -> String {
        let path = request_path.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_end_matches('/');
        let mut out = String::with_capacity(self.metadata_url.len() + path.len());
        out.push_str(&self.metadata_url);
        if !path.is_empty() && !path.starts_with('/') {
            out.push('/');
        }
        for b in path.bytes() {
            if b.is_ascii_graphic() && !matches!(b, b'"' | b'\\') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// Verifies `token` at time `now` and maps it to an identity. Never waits: an unknown
    /// `kid` asks the key cache for a (rate-limited) refresh and fails this check.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, Rejected> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejected::Malformed);
        }
        let digest: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .map_err(|_| Rejected::Malformed)?;
        let set = self.keys.current();
        let hit = self.verified.read().ok().and_then(|m| m.get(&digest).cloned());
        if let Some(hit) = hit.filter(|h| h.generation == set.generation()) {
            self.check_times(hit.times, now)?;
            return Ok(hit.identity);
        }
        let header = decode_header(token)?;
        if header.crit.is_some() {
            return Err(Rejected::Critical);
        }
        let alg = self
            .config
            .algorithms
            .iter()
            .copied()
            .find(|a| algorithm_name(*a) == header.alg)
            .ok_or(Rejected::Algorithm)?;
        let key = match set.find(header.kid.as_deref()) {
            Ok(k) => k,
            Err(e) => {
                if matches!(e, Rejected::UnknownKey | Rejected::NoKeys) {
                    self.keys.request_refresh();
                }
                return Err(e);
            }
        };
        if !key.allows(alg) {
            return Err(Rejected::KeyMismatch);
        }
        let validation = self.validations.get(&alg).ok_or(Rejected::Algorithm)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding(), validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => Rejected::Signature,
                K::InvalidAudience => Rejected::Audience,
                K::InvalidIssuer => Rejected::Issuer,
                K::InvalidAlgorithm | K::InvalidAlgorithmName | K::InvalidKeyFormat => Rejected::KeyMismatch,
                K::InvalidClaimFormat(_) | K::MissingRequiredClaim(_) | K::Json(_) => Rejected::Claims,
                _ => Rejected::Malformed,
            }
        })?;
        let (times, identity) = self.check_claims(&data.claims, now)?;
        if let Ok(mut memo) = self.verified.write() {
            if memo.len() >= MAX_VERIFIED {
                memo.clear();
            }
            memo.insert(digest, Verified { generation: set.generation(), times, identity: identity.clone() });
        }
        Ok(identity)
    }

    /// The identity these claims map to (username, traits, `claims_to_roles`), exactly as for a
    /// verified token, but verifying nothing: no signature, issuer, audience or time. For the
    /// offline tools (`explain --claims`, `mcp-warden test`), never for a request.
    pub fn map_claims(&self, claims: &Map<String, Value>) -> Result<Identity, Rejected> {
        self.identity(claims)
    }

    /// Everything after the signature: issuer, audience, times, then the identity.
    fn check_claims(&self, claims: &Map<String, Value>, now: SystemTime) -> Result<(Times, Identity), Rejected> {
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.config.issuer => {}
            _ => return Err(Rejected::Issuer),
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.config.audiences.contains(a),
            Some(Value::Array(list)) => {
                list.iter().any(|a| a.as_str().is_some_and(|a| self.config.audiences.iter().any(|x| x == a)))
            }
            _ => false,
        };
        let client_ok = matches!(claims.get("client_id"), Some(Value::String(c)) if self.config.client_ids.contains(c));
        if !aud_ok && !client_ok {
            return Err(Rejected::Audience);
        }
        let times = times(claims)?;
        self.check_times(times, now)?;
        Ok((times, self.identity(claims)?))
    }

    fn check_times(&self, Times { exp, nbf, iat }: Times, now: SystemTime) -> Result<(), Rejected> {
        let now = now.duration_since(UNIX_EPOCH).map_err(|_| Rejected::Claims)?.as_secs_f64();
        let skew = self.config.clock_skew.as_secs_f64();
        let max = self.config.max_lifetime.as_secs_f64();
        if now - skew >= exp {
            return Err(Rejected::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now + skew) {
            return Err(Rejected::NotYetValid);
        }
        if iat.is_some_and(|iat| iat > now + skew) {
            return Err(Rejected::IssuedInFuture);
        }
        // Bound the lifetime whether or not the token says when it was issued.
        let start = nbf.or(iat).unwrap_or(now).min(now);
        if exp - start > max + skew {
            return Err(Rejected::Lifetime);
        }
        Ok(())
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, Rejected> {
        let unverified = !email_verified(claims.get("email_verified"));
        // The claims identity is drawn from: an unverified `email` is not one of them.
        let claim = |name: &str| if unverified && name == "email" { None } else { claims.get(name) };
        let username = match claim(&self.config.username_claim) {
            Some(Value::String(s)) if names::check_canonical(s).is_ok() => s.clone(),
            _ if unverified && self.config.username_claim == "email" => return Err(Rejected::EmailUnverified),
            _ => return Err(Rejected::Username),
        };
        let mut traits = Traits::new();
        for (name, claim_name) in &self.config.traits {
            let Some(value) = claim(claim_name) else { continue };
            let mut values: Vec<String> = Vec::new();
            for_each_value(value, |v| {
                if !values.iter().any(|x| x == v) {
                    values.push(v.to_owned());
                }
            })?;
            if !values.is_empty() {
                traits.entry(name.clone()).or_default().extend(values);
            }
        }
        let roles = self.roles.map(claim)?;
        Ok(Identity { username, roles, traits })
    }
}

/// Whether the token's `email_verified` lets its `email` be used: absent (the identity
/// provider does not say; see docs/configuration.md), JSON `true`, or exactly the string
/// `"true"` some providers send. Anything else (`false`, `"TRUE"`, `"yes"`, `1`, `[true]`,
/// `null`…) says the address is unverified.
fn email_verified(flag: Option<&Value>) -> bool {
    match flag {
        None | Some(Value::Bool(true)) => true,
        Some(Value::String(s)) => s == "true",
        Some(_) => false,
    }
}

/// `exp` (required), `nbf` and `iat`: non-negative finite numbers.
fn times(claims: &Map<String, Value>) -> Result<Times, Rejected> {
    let time = |name: &str| -> Result<Option<f64>, Rejected> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                n.as_f64().filter(|t| t.is_finite() && *t >= 0.0).map(Some).ok_or(Rejected::Claims)
            }
            Some(_) => Err(Rejected::Claims),
        }
    };
    Ok(Times { exp: time("exp")?.ok_or(Rejected::Claims)?, nbf: time("nbf")?, iat: time("iat")? })
}

/// The JOSE header, read strictly: a key named twice anywhere in the header or in the
/// claims makes the token malformed (see [`strict`]).
fn decode_header(token: &str) -> Result<Header, Rejected> {
    if !looks_like_jwt(token) {
        return Err(Rejected::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return Err(Rejected::Malformed);
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| Rejected::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Rejected::Malformed)?;
    if !strict::unique_keys(&header) || !strict::unique_keys(&payload) {
        return Err(Rejected::Malformed);
    }
    serde_json::from_slice(&header).map_err(|_| Rejected::Malformed)
}

/// Real keys and real signatures for tests (aws-lc-rs), shared by this module and
/// [`crate::identity::authn`]'s tests.
#[cfg(test)]
pub(crate) mod testkit {
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::jwks::{KeyCache, KeySet};
    use super::{ClaimMapping, DEFAULT_ALGORITHMS, JwtConfig, KeySource, Verifier};

    pub(crate) const ISSUER: &str = "https://idp.example.com";
    pub(crate) const AUDIENCE: &str = "https://mcp.example.com/mcp";

    pub(crate) struct Keys {
        pub(crate) rsa: RsaKeyPair,
        pub(crate) ec: EcdsaKeyPair,
        /// A second RSA key the identity provider does not publish.
        pub(crate) stranger: RsaKeyPair,
    }

    pub(crate) fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| Keys {
            rsa: RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa"),
            ec: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec"),
            stranger: RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa"),
        })
    }

    pub(crate) fn rsa_jwk(pair: &RsaKeyPair, kid: &str) -> Value {
        let public = pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    pub(crate) fn ec_jwk(pair: &EcdsaKeyPair, kid: &str) -> Value {
        let point = pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// The published set: `rsa-1` and `ec-1`.
    pub(crate) fn jwks() -> Value {
        json!({"keys": [rsa_jwk(&keys().rsa, "rsa-1"), ec_jwk(&keys().ec, "ec-1")]})
    }

    pub(crate) fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
    }

    /// Good claims for user alice, valid for 5 minutes from now.
    pub(crate) fn claims() -> Value {
        let now = now();
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "u-123", "email": "alice@example.com",
            "iat": now, "nbf": now, "exp": now + 300, "groups": ["mcp-admins", "staff"],
        })
    }

    pub(crate) fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Signs `header.claims` for real with the key `alg` calls for.
    pub(crate) fn sign_with(header: &Value, claims: &Value, signer: Signer) -> String {
        sign_text(&header.to_string(), &claims.to_string(), signer)
    }

    /// Signs a header and claims given as JSON text (which may say what a `Value` cannot,
    /// such as a key named twice).
    pub(crate) fn sign_text(header: &str, claims: &str, signer: Signer) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let rng = SystemRandom::new();
        let sig = match signer {
            Signer::Rsa(pair, padding) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &rng, input.as_bytes(), &mut sig).expect("rsa sign");
                sig
            }
            Signer::Ec(pair) => pair.sign(&rng, input.as_bytes()).expect("ec sign").as_ref().to_vec(),
            Signer::Hmac(secret) => {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
                aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
            Signer::None => Vec::new(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    pub(crate) enum Signer<'a> {
        Rsa(&'a RsaKeyPair, &'static dyn signature::RsaEncoding),
        Ec(&'a EcdsaKeyPair),
        Hmac(&'a [u8]),
        None,
    }

    /// A token signed the normal way for `alg` by the published key.
    pub(crate) fn token(alg: &str, claims: &Value) -> String {
        let k = keys();
        let (kid, signer) = match alg {
            "RS256" => ("rsa-1", Signer::Rsa(&k.rsa, &signature::RSA_PKCS1_SHA256)),
            "RS384" => ("rsa-1", Signer::Rsa(&k.rsa, &signature::RSA_PKCS1_SHA384)),
            "PS256" => ("rsa-1", Signer::Rsa(&k.rsa, &signature::RSA_PSS_SHA256)),
            "ES256" => ("ec-1", Signer::Ec(&k.ec)),
            other => panic!("no test signer for {other}"),
        };
        sign_with(&json!({"alg": alg, "typ": "at+jwt", "kid": kid}), claims, signer)
    }

    pub(crate) fn config() -> JwtConfig {
        JwtConfig {
            issuer: ISSUER.into(),
            keys: KeySource::Discovery(format!("{ISSUER}/.well-known/openid-configuration")),
            audiences: vec![AUDIENCE.into(), "second-audience".into()],
            client_ids: Vec::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            clock_skew: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(3600),
            username_claim: "email".into(),
            traits: vec![("groups".into(), "groups".into()), ("tenant".into(), "tid".into())],
            claims_to_roles: vec![
                ClaimMapping { claim: "groups".into(), value: "mcp-admins".into(), roles: vec!["admin".into()] },
                ClaimMapping { claim: "groups".into(), value: "staff*".into(), roles: vec!["reader".into()] },
                ClaimMapping {
                    claim: "email".into(),
                    value: "^.*@example\\.com$".into(),
                    roles: vec!["reader".into(), "employee".into()],
                },
            ],
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(30),
            resource_metadata_url: None,
            scopes_supported: Vec::new(),
        }
    }

    /// A verifier over `config` whose cache already holds [`jwks`].
    pub(crate) fn verifier_with(config: JwtConfig, jwks: &Value) -> Verifier {
        let cache = Arc::new(KeyCache::default());
        let (set, _) = KeySet::parse(jwks.to_string().as_bytes(), &config.algorithms).expect("jwks");
        cache.replace(set);
        Verifier::new(config, cache, "https://warden.example.com").expect("verifier")
    }

    pub(crate) fn verifier() -> Verifier {
        verifier_with(config(), &jwks())
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
    use serde_json::json;

    fn verify(v: &Verifier, token: &str) -> Result<Identity, Rejected> {
        v.verify(token, SystemTime::now())
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().expect("object").remove(key);
        claims
    }

    #[test]
    fn accepts_rs256_ps256_and_es256_tokens_from_published_keys() {
        let v = verifier();
        for alg in ["RS256", "PS256", "ES256"] {
            let id = verify(&v, &token(alg, &claims())).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(id.username, "alice@example.com", "{alg}");
        }
    }

    #[test]
    fn rejects_alg_none() {
        let v = verifier();
        for alg in ["none", "None", "NONE"] {
            let t = sign_with(&json!({"alg": alg, "kid": "rsa-1"}), &claims(), Signer::None);
            assert_eq!(verify(&v, &t), Err(Rejected::Algorithm), "{alg}");
        }
    }

    #[test]
    fn rejects_hs256_signed_with_the_rsa_public_key() {
        let v = verifier();
        let public = keys().rsa.public_key();
        // The classic confusion: the public key (in every encoding a verifier might use) as an
        // HMAC secret.
        let jwk = rsa_jwk(&keys().rsa, "rsa-1").to_string();
        for secret in [public.as_ref(), jwk.as_bytes()] {
            let t = sign_with(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims(), Signer::Hmac(secret));
            assert_eq!(verify(&v, &t), Err(Rejected::Algorithm));
        }
    }

    #[test]
    fn rejects_an_allowed_algorithm_the_key_cannot_have_signed() {
        let v = verifier();
        // RS256 claimed for the EC key, and an EC signature presented under the RSA kid.
        let rs_on_ec =
            sign_with(&json!({"alg": "RS256", "kid": "ec-1"}), &claims(), Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256));
        assert_eq!(verify(&v, &rs_on_ec), Err(Rejected::KeyMismatch));
        let es_on_rsa = sign_with(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims(), Signer::Ec(&keys().ec));
        assert_eq!(verify(&v, &es_on_rsa), Err(Rejected::KeyMismatch));
    }

    #[test]
    fn rejects_an_algorithm_outside_the_allow_list() {
        let v = verifier();
        assert_eq!(verify(&v, &token("RS384", &claims())), Err(Rejected::Algorithm));
        let mut config = config();
        config.algorithms = vec![Algorithm::ES256];
        let only_es = verifier_with(config, &jwks());
        assert_eq!(verify(&only_es, &token("RS256", &claims())), Err(Rejected::Algorithm));
        assert!(verify(&only_es, &token("ES256", &claims())).is_ok());
    }

    #[test]
    fn a_jwk_alg_pins_its_key_to_that_algorithm() {
        let mut jwk = rsa_jwk(&keys().rsa, "rsa-1");
        jwk["alg"] = "RS256".into();
        let v = verifier_with(config(), &json!({"keys": [jwk]}));
        assert!(verify(&v, &token("RS256", &claims())).is_ok());
        assert_eq!(verify(&v, &token("PS256", &claims())), Err(Rejected::KeyMismatch));
    }

    #[test]
    fn rejects_an_unknown_kid_and_asks_for_a_refresh_without_waiting() {
        let v = verifier();
        let t = sign_with(
            &json!({"alg": "RS256", "kid": "rotated-2"}),
            &claims(),
            Signer::Rsa(&keys().stranger, &RSA_PKCS1_SHA256),
        );
        let before = v.keys().refresh_requests();
        assert_eq!(verify(&v, &t), Err(Rejected::UnknownKey));
        assert_eq!(v.keys().refresh_requests(), before + 1);
    }

    #[test]
    fn a_kid_is_required_only_when_several_keys_are_published() {
        let several = verifier();
        let no_kid = sign_with(&json!({"alg": "RS256"}), &claims(), Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256));
        assert_eq!(verify(&several, &no_kid), Err(Rejected::MissingKid));
        let single = verifier_with(config(), &json!({"keys": [rsa_jwk(&keys().rsa, "rsa-1")]}));
        assert!(verify(&single, &no_kid).is_ok());
    }

    #[test]
    fn rejects_a_token_signed_by_a_key_that_is_not_published_under_its_kid() {
        let v = verifier();
        let t = sign_with(
            &json!({"alg": "RS256", "kid": "rsa-1"}),
            &claims(),
            Signer::Rsa(&keys().stranger, &RSA_PKCS1_SHA256),
        );
        assert_eq!(verify(&v, &t), Err(Rejected::Signature));
    }

    #[test]
    fn rejects_a_tampered_payload() {
        let v = verifier();
        let t = token("RS256", &claims());
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64(&with(claims(), "email", json!("mallory@example.com")));
        parts[1] = &forged;
        assert_eq!(verify(&v, &parts.join(".")), Err(Rejected::Signature));
        // A flipped signature bit, too.
        let mut sig = URL_SAFE_NO_PAD.decode(t.rsplit('.').next().expect("sig")).expect("b64");
        sig[10] ^= 1;
        let flipped = format!("{}.{}", t.rsplit_once('.').expect("dot").0, URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(verify(&v, &flipped), Err(Rejected::Signature));
    }

    #[test]
    fn issuer_must_match_byte_for_byte() {
        let v = verifier();
        for iss in [json!("https://idp.example.com/"), json!("https://evil.example.com"), json!([ISSUER]), json!(null)]
        {
            let t = token("RS256", &with(claims(), "iss", iss.clone()));
            assert!(matches!(verify(&v, &t), Err(Rejected::Issuer | Rejected::Claims)), "{iss}");
        }
        assert_eq!(verify(&v, &token("RS256", &without(claims(), "iss"))), Err(Rejected::Issuer));
    }

    #[test]
    fn audience_must_name_an_accepted_audience() {
        let v = verifier();
        for aud in [json!("https://other.example.com/mcp"), json!([]), json!(["x", "y"]), json!(42)] {
            let t = token("RS256", &with(claims(), "aud", aud.clone()));
            assert!(matches!(verify(&v, &t), Err(Rejected::Audience | Rejected::Claims)), "{aud}");
        }
        assert_eq!(verify(&v, &token("RS256", &without(claims(), "aud"))), Err(Rejected::Audience));
        let t = token("RS256", &with(claims(), "aud", json!(["x", "second-audience"])));
        assert!(verify(&v, &t).is_ok(), "an array naming one accepted audience is accepted");
    }

    #[test]
    fn a_client_id_claim_is_accepted_instead_of_an_audience_when_configured() {
        // A Cognito access token: `client_id`, no `aud`.
        let cognito = with(without(claims(), "aud"), "client_id", json!("app-client-1"));
        assert_eq!(verify(&verifier(), &token("RS256", &cognito)), Err(Rejected::Audience), "not configured");
        let mut config = JwtConfig { client_ids: vec!["app-client-1".into()], ..config() };
        let v = verifier_with(config.clone(), &jwks());
        assert!(verify(&v, &token("RS256", &cognito)).is_ok());
        for other in [json!("app-client-2"), json!(["app-client-1"]), json!(1)] {
            let t = token("RS256", &with(cognito.clone(), "client_id", other.clone()));
            assert_eq!(verify(&v, &t), Err(Rejected::Audience), "{other}");
        }
        // Either check suffices: an accepted `aud` with another client passes, as before.
        assert!(verify(&v, &token("RS256", &with(claims(), "client_id", json!("x")))).is_ok());
        // With no accepted audience at all, only the client id lets a token in.
        config.audiences.clear();
        let v = verifier_with(config, &jwks());
        assert_eq!(verify(&v, &token("RS256", &claims())), Err(Rejected::Audience));
        assert!(verify(&v, &token("RS256", &cognito)).is_ok());
    }

    #[test]
    fn time_claims_are_checked_with_the_clock_skew() {
        let v = verifier(); // skew 30s, max lifetime 1h
        let now = now();
        let cases: &[(&str, Value, Result<(), Rejected>)] = &[
            ("expired", json!({"iat": now - 600, "nbf": now - 600, "exp": now - 60}), Err(Rejected::Expired)),
            ("expired within skew", json!({"iat": now - 600, "nbf": now - 600, "exp": now - 10}), Ok(())),
            ("not yet valid", json!({"nbf": now + 600, "exp": now + 900}), Err(Rejected::NotYetValid)),
            ("nbf within skew", json!({"nbf": now + 10, "exp": now + 300}), Ok(())),
            ("issued in the future", json!({"iat": now + 600, "exp": now + 900}), Err(Rejected::IssuedInFuture)),
            ("too long", json!({"iat": now, "exp": now + 7200}), Err(Rejected::Lifetime)),
            ("too long without iat", json!({"iat": null, "nbf": null, "exp": now + 7200}), Err(Rejected::Claims)),
            ("string exp", json!({"exp": "later"}), Err(Rejected::Claims)),
        ];
        for (name, patch, want) in cases {
            let mut c = claims();
            for (k, val) in patch.as_object().expect("object") {
                c[k] = val.clone();
            }
            let got = verify(&v, &token("RS256", &c)).map(|_| ());
            assert_eq!(&got, want, "{name}");
        }
        let no_times = without(without(without(claims(), "iat"), "nbf"), "exp");
        assert_eq!(verify(&v, &token("RS256", &no_times)), Err(Rejected::Claims), "exp is required");
        let bare = without(without(claims(), "iat"), "nbf");
        assert!(verify(&v, &token("RS256", &bare)).is_ok(), "iat and nbf are optional");
        let far = with(without(without(claims(), "iat"), "nbf"), "exp", json!(now + 7200));
        assert_eq!(verify(&v, &token("RS256", &far)), Err(Rejected::Lifetime), "bounded without iat too");
    }

    #[test]
    fn a_repeated_token_is_trusted_again_only_while_valid_and_under_the_same_keys() {
        let v = verifier(); // skew 30s
        let t = token("RS256", &claims()); // exp now + 300
        let now = SystemTime::now();
        assert!(v.verify(&t, now).is_ok());
        assert_eq!(v.verify(&t, now).map(|i| i.username), Ok("alice@example.com".into()), "from the memo");
        let later = now + Duration::from_secs(400);
        assert_eq!(v.verify(&t, later), Err(Rejected::Expired), "the memo re-checks the time claims");
        // The same keys installed again: a new generation, so the token is verified afresh.
        let (same, _) = jwks::KeySet::parse(jwks().to_string().as_bytes(), DEFAULT_ALGORITHMS).expect("jwks");
        v.keys().replace(same);
        assert!(v.verify(&t, now).is_ok());
        // The signing key withdrawn: the memo never outlives the key set that vouched for it.
        let ec_only = json!({"keys": [ec_jwk(&keys().ec, "ec-1")]});
        let (withdrawn, _) = jwks::KeySet::parse(ec_only.to_string().as_bytes(), DEFAULT_ALGORITHMS).expect("jwks");
        v.keys().replace(withdrawn);
        assert_eq!(v.verify(&t, now), Err(Rejected::UnknownKey));
    }

    #[test]
    fn a_critical_header_is_refused() {
        let v = verifier();
        let t = sign_with(
            &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}),
            &claims(),
            Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256),
        );
        assert_eq!(verify(&v, &t), Err(Rejected::Critical));
    }

    #[test]
    fn malformed_and_oversized_tokens_are_refused_before_any_key_is_used() {
        let v = verifier();
        let huge = format!("eyJ{}.eyJ.sig", "A".repeat(MAX_TOKEN_BYTES));
        for t in ["", "abc", "a.b", "a.b.c.d", "eyJhbGciOiJSUzI1NiJ9..sig", "eyJ!.eyJ.x", "bm90IGpzb24.eyJ.x", &huge] {
            assert_eq!(verify(&v, t), Err(Rejected::Malformed), "{t:.40}");
        }
    }

    #[test]
    fn username_comes_from_the_configured_claim() {
        let v = verifier();
        assert_eq!(verify(&v, &token("RS256", &without(claims(), "email"))), Err(Rejected::Username));
        assert_eq!(verify(&v, &token("RS256", &with(claims(), "email", json!("")))), Err(Rejected::Username));
        assert_eq!(verify(&v, &token("RS256", &with(claims(), "email", json!(["a"])))), Err(Rejected::Username));
        let unverified = with(claims(), "email_verified", json!(false));
        assert_eq!(verify(&v, &token("RS256", &unverified)), Err(Rejected::EmailUnverified));
        let unverified_text = with(claims(), "email_verified", json!("false"));
        assert_eq!(verify(&v, &token("RS256", &unverified_text)), Err(Rejected::EmailUnverified));
        let mut config = config();
        config.username_claim = "sub".into();
        let by_sub = verifier_with(config, &jwks());
        assert_eq!(verify(&by_sub, &token("RS256", &unverified)).map(|i| i.username), Ok("u-123".into()));
    }

    /// The good claims as JSON text with `extra` spliced in before the closing brace.
    fn claims_text_with(extra: &str) -> String {
        let text = claims().to_string();
        format!("{},{extra}}}", text.strip_suffix('}').expect("object"))
    }

    #[test]
    fn a_key_named_twice_anywhere_in_the_claims_is_malformed_though_signed() {
        // Issue 26.3: a reader keeping the first value and one keeping the last would see
        // different users. Signed by the published key: the refusal is not a signature one.
        let v = verifier();
        let rsa = || Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256);
        let header = r#"{"alg":"RS256","typ":"at+jwt","kid":"rsa-1"}"#;
        for extra in [
            r#""email":"admin@example.com""#,
            r#""groups":["readers"],"groups":["admins"]"#,
            r#""email":"admin@example.com""#,
            r#""profile":{"tid":"a","tid":"b"}"#,
            r#""nested":[{"x":{"k":1,"k":2}}]"#,
        ] {
            let t = sign_text(header, &claims_text_with(extra), rsa());
            assert_eq!(verify(&v, &t), Err(Rejected::Malformed), "{extra}");
        }
        let fine = sign_text(header, &claims_text_with(r#""profile":{"email":"x","k":{"email":"y"}}"#), rsa());
        assert_eq!(verify(&v, &fine).map(|i| i.username), Ok("alice@example.com".into()), "equal keys apart");
    }

    #[test]
    fn a_key_named_twice_in_the_header_is_malformed() {
        let v = verifier();
        let rsa = || Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256);
        let claims = claims().to_string();
        for header in [
            r#"{"alg":"RS256","typ":"at+jwt","typ":"JWT","kid":"rsa-1"}"#,
            r#"{"alg":"RS256","kid":"rsa-1","x":{"a":1,"a":1}}"#,
            r#"{"alg":"RS256","kid":"rsa-1","kid":"rsa-1"}"#,
        ] {
            assert_eq!(verify(&v, &sign_text(header, &claims, rsa())), Err(Rejected::Malformed), "{header}");
        }
    }

    #[test]
    fn a_username_not_in_canonical_form_is_refused() {
        // Issue 26.4: names that look like another on screen.
        let v = verifier();
        // JSON escapes in the signed text: the decoded claim holds the characters themselves.
        for name in
            [r"admin@example.com ", r" admin@example.com", r"admin@example.com\u200b", r"bob\u00a0", r"a\u202eb"]
        {
            let text = claims().to_string().replace("\"alice@example.com\"", &format!("\"{name}\""));
            let t = sign_text(r#"{"alg":"RS256","kid":"rsa-1"}"#, &text, Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256));
            assert_eq!(verify(&v, &t), Err(Rejected::Username), "{name}");
        }
        let decomposed = with(claims(), "email", json!("jo\u{301}zef@example.com"));
        assert_eq!(verify(&v, &token("RS256", &decomposed)), Err(Rejected::Username), "not NFC");
        let composed = with(claims(), "email", json!("j\u{f3}zef@example.com"));
        assert!(verify(&v, &token("RS256", &composed)).is_ok());
    }

    #[test]
    fn email_verified_counts_only_when_true_or_the_string_true() {
        // Issue 26.6.
        let v = verifier();
        for flag in [json!(true), json!("true")] {
            let id = verify(&v, &token("RS256", &with(claims(), "email_verified", flag.clone())));
            assert_eq!(id.map(|i| i.username), Ok("alice@example.com".into()), "{flag}");
        }
        assert!(verify(&v, &token("RS256", &claims())).is_ok(), "absent: the provider does not say");
        for flag in [
            json!(false),
            json!("false"),
            json!("False "),
            json!("TRUE"),
            json!("True"),
            json!(" true"),
            json!("yes"),
            json!("no"),
            json!(0),
            json!(1),
            json!([false]),
            json!([true]),
            json!({"value": true}),
            json!(null),
        ] {
            let got = verify(&v, &token("RS256", &with(claims(), "email_verified", flag.clone())));
            assert_eq!(got, Err(Rejected::EmailUnverified), "{flag}");
        }
    }

    #[test]
    fn an_unverified_email_grants_no_role_and_no_trait() {
        let mut config = config();
        config.username_claim = "sub".into();
        config.traits.push(("mail".into(), "email".into()));
        let v = verifier_with(config, &jwks());
        let verified = verify(&v, &token("RS256", &claims())).expect("valid");
        assert!(verified.roles.iter().any(|r| r == "employee"), "the email rule applies: {:?}", verified.roles);
        assert_eq!(verified.traits["mail"], ["alice@example.com"]);
        for flag in
            [json!(false), json!("false"), json!("FALSE"), json!("False "), json!(0), json!("no"), json!([false])]
        {
            let id = verify(&v, &token("RS256", &with(claims(), "email_verified", flag.clone()))).expect("valid");
            assert!(!id.roles.iter().any(|r| r == "employee"), "{flag}: {:?}", id.roles);
            assert!(!id.traits.contains_key("mail"), "{flag}: {:?}", id.traits);
            assert_eq!(id.username, "u-123");
        }
        let id = verify(&v, &token("RS256", &with(claims(), "email_verified", json!(true)))).expect("valid");
        assert!(id.roles.iter().any(|r| r == "employee"));
    }

    #[test]
    fn claims_map_to_traits_and_roles_with_literal_glob_and_regex_values() {
        let v = verifier();
        let id = verify(&v, &token("RS256", &with(claims(), "tid", json!(42)))).expect("valid");
        assert_eq!(id.roles, ["admin", "reader", "employee"], "in rule order, without duplicates");
        assert_eq!(id.traits["groups"], ["mcp-admins", "staff"]);
        assert_eq!(id.traits["tenant"], ["42"]);

        let outsider = with(with(claims(), "email", json!("eve@example.org")), "groups", json!("staffing"));
        let id = verify(&v, &token("RS256", &outsider)).expect("valid");
        assert_eq!(id.roles, ["reader"], "a glob matches a single string claim");
        let nobody = with(with(claims(), "email", json!("eve@example.org")), "groups", json!(["Staff", "admins"]));
        let id = verify(&v, &token("RS256", &nobody)).expect("valid");
        assert!(id.roles.is_empty(), "matching is case-sensitive and anchored: {:?}", id.roles);
        assert!(!id.traits.contains_key("tenant"), "an absent claim gives no trait");
    }

    #[test]
    fn an_oversized_claim_array_is_refused() {
        let v = verifier();
        let many: Vec<String> = (0..=MAX_CLAIM_VALUES).map(|i| format!("g{i}")).collect();
        assert_eq!(verify(&v, &token("RS256", &with(claims(), "groups", json!(many)))), Err(Rejected::Claims));
    }

    #[test]
    fn configured_algorithms_never_include_none_or_hmac() {
        for name in ["none", "HS256", "hs384", "HS512"] {
            assert!(matches!(parse_algorithm(name), Err(JwtConfigError::RefusedAlgorithm(_))), "{name}");
        }
        assert!(matches!(parse_algorithm("RSA-OAEP"), Err(JwtConfigError::UnknownAlgorithm(_))));
        assert_eq!(parse_algorithm("PS256").ok(), Some(Algorithm::PS256));
    }

    #[test]
    fn identity_provider_urls_must_be_https_except_on_loopback() {
        for ok in ["https://idp.example.com", "http://127.0.0.1:8080/x", "http://localhost:1", "http://[::1]:2/"] {
            assert!(check_fetch_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://idp.example.com", "http://10.0.0.1", "ftp://x", "https://user:pw@idp.example.com", "idp"] {
            assert!(check_fetch_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_values_shaped_like_a_jws_go_to_the_jwt_method() {
        let t = token("RS256", &claims());
        assert!(looks_like_jwt(&t));
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."), "alg none still goes to the JWT method");
        for key in ["mcpw_abcDEF123-_", "e2e-alice-key", "eyJ.abc", "eyJ..x", "a.b.c", "eyJ.a.b.c", "eyJ a.b.c"] {
            assert!(!looks_like_jwt(key), "{key}");
        }
    }

    #[test]
    fn resource_metadata_url_inserts_the_well_known_path_before_the_request_path() {
        let v = verifier(); // mcp-warden issuer https://warden.example.com
        assert_eq!(v.resource_metadata_url(), "https://warden.example.com/.well-known/oauth-protected-resource");
        assert_eq!(v.resource_origin(), "https://warden.example.com");
        let cases = [
            ("/mcp", "https://warden.example.com/.well-known/oauth-protected-resource/mcp"),
            ("/other/mcp?x=1", "https://warden.example.com/.well-known/oauth-protected-resource/other/mcp"),
            ("/", "https://warden.example.com/.well-known/oauth-protected-resource"),
            ("", "https://warden.example.com/.well-known/oauth-protected-resource"),
            ("/a\"b\\c", "https://warden.example.com/.well-known/oauth-protected-resource/a%22b%5Cc"),
        ];
        for (path, want) in cases {
            assert_eq!(v.resource_metadata_for(path), want, "{path}");
        }
        let mut config = config();
        config.resource_metadata_url = Some("https://mcp.example.com/.well-known/oauth-protected-resource".into());
        let v = verifier_with(config, &jwks());
        assert_eq!(v.resource_origin(), "https://mcp.example.com");
    }

    #[test]
    fn the_default_metadata_url_uses_the_issuers_origin() {
        assert_eq!(
            default_resource_metadata_url("https://a.example.com/warden"),
            "https://a.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            default_resource_metadata_url("http://127.0.0.1:9192"),
            "http://127.0.0.1:9192/.well-known/oauth-protected-resource"
        );
        for bad in [
            "https://a.example.com/x/.well-known/oauth-protected-resource",
            "https://a.example.com/.well-known/oauth-protected-resource/mcp",
            "ftp://a/.well-known/oauth-protected-resource",
            "https:///.well-known/oauth-protected-resource",
        ] {
            assert!(resource_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mapped_roles_must_exist_in_the_policy() {
        let policy = warden_core::policy::Policy::load(&[warden_core::policy::Source::inline(
            "p.yaml",
            "kind: role\nversion: v8\nmetadata: {name: admin}\nspec: {}\n",
        )])
        .expect("policy");
        let e = check_mapped_roles(&config(), &policy).expect_err("reader and employee are missing");
        assert!(e.ends_with("reader, employee"), "{e}");
        let mut only_admin = config();
        only_admin.claims_to_roles.truncate(1);
        assert_eq!(check_mapped_roles(&only_admin, &policy), Ok(()));
    }

    #[test]
    fn a_bad_role_pattern_is_a_config_error_naming_the_entry() {
        let e =
            RoleMapping::compile(&[ClaimMapping { claim: "g".into(), value: "^(x$".into(), roles: vec!["r".into()] }])
                .expect_err("bad regex");
        assert!(e.to_string().starts_with("entry 0: invalid pattern '^(x$'"), "{e}");
    }
}

/// The `jwt` method through a whole ext_authz check (in process, as Envoy calls it), and
/// the RFC 9728 metadata through the HTTP router on a loopback socket.
#[cfg(test)]
mod check_tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use serde_json::{Value, json};

    use super::testkit;
    use crate::audit::Audit;
    use crate::authz::{Settings, Warden};
    use crate::config::AuthMethod;
    use crate::keyring::KeyRing;
    use crate::keys::SigningKey;
    use crate::token::TokenSettings;
    use warden_core::mcp::Limits;
    use warden_core::policy::{Policy, Source};

    const POLICY: &str = r#"
kind: app
version: v3
metadata: {name: demo, labels: {service: demo}}
spec:
  uri: "mcp+https://gw.example.com/mcp"
  rewrite:
    headers:
    - {name: Authorization, value: "Bearer {{internal.id_token}}"}
    - {name: X-Tenant, value: "{{external.tenant}}"}
---
kind: role
version: v8
metadata: {name: reader}
spec: {allow: {app_labels: {service: demo}, mcp: {tools: ['get_*']}}}
---
kind: role
version: v8
metadata: {name: admin}
spec: {allow: {app_labels: {service: demo}, mcp: {tools: ['*']}}}
---
kind: role
version: v8
metadata: {name: employee}
spec: {allow: {app_labels: {service: none}}}
"#;

    fn warden() -> Warden {
        let policy = Policy::load(&[Source::inline("p.yaml", POLICY)]).expect("policy");
        let (key, _) = SigningKey::generate().expect("key");
        let settings = Settings {
            token: TokenSettings { issuer: "https://warden.example.com".into(), lifetime: Duration::from_secs(300) },
            limits: Limits::default(),
            denied_status: 200,
            auth_order: vec![AuthMethod::Mtls, AuthMethod::ApiKey, AuthMethod::Jwt],
            audit_skip_allowed: Vec::new(),
            envoy_metadata: crate::config::EnvoyMetadata::All,
            bounds: Default::default(),
        };
        Warden::new(policy, KeyRing::single(key), settings, Audit::disabled()).with_jwt(Arc::new(testkit::verifier()))
    }

    fn request(authorization: Option<&str>, tool: &str) -> CheckRequest {
        let mut headers: HashMap<String, String> = [
            (":path", "/mcp?session=1"),
            (":method", "POST"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        if let Some(a) = authorization {
            headers.insert("authorization".into(), a.to_owned());
        }
        let body =
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "POST".into(),
                        path: "/mcp?session=1".into(),
                        host: "mcp.example.com".into(),
                        headers,
                        raw_body: body.to_string().into_bytes(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions: [("app".to_owned(), "demo".to_owned())].into_iter().collect(),
                ..Default::default()
            }),
        }
    }

    enum Outcome {
        Allow(HashMap<String, String>),
        Deny(i32, HashMap<String, String>, Value),
    }

    fn check(w: &Warden, req: &CheckRequest) -> Outcome {
        match w.check(req).http_response.expect("an HTTP response") {
            HttpResponse::OkResponse(ok) => {
                Outcome::Allow(ok.headers.into_iter().filter_map(|h| h.header).map(|h| (h.key, h.value)).collect())
            }
            HttpResponse::DeniedResponse(d) => Outcome::Deny(
                d.status.expect("status").code,
                d.headers.into_iter().filter_map(|h| h.header).map(|h| (h.key, h.value)).collect(),
                serde_json::from_str(&d.body).expect("JSON body"),
            ),
            HttpResponse::ErrorResponse(_) => panic!("unexpected error response"),
        }
    }

    const METADATA: &str = "https://warden.example.com/.well-known/oauth-protected-resource/mcp";

    #[test]
    fn no_token_is_a_401_pointing_at_the_resource_metadata() {
        let Outcome::Deny(status, headers, body) = check(&warden(), &request(None, "get_x")) else {
            panic!("deny expected")
        };
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], format!("Bearer resource_metadata=\"{METADATA}\""));
        assert_eq!((body["id"].clone(), body["error"]["code"].clone()), (json!(7), json!(-32001)));
    }

    #[test]
    fn a_refused_token_is_a_401_invalid_token_pointing_at_the_resource_metadata() {
        let mut claims = testkit::claims();
        claims["exp"] = json!(testkit::now() - 3600);
        claims["iat"] = json!(testkit::now() - 4000);
        claims["nbf"] = json!(testkit::now() - 4000);
        let auth = format!("Bearer {}", testkit::token("RS256", &claims));
        let Outcome::Deny(status, headers, body) = check(&warden(), &request(Some(&auth), "get_x")) else {
            panic!("deny expected")
        };
        assert_eq!(status, 401);
        assert_eq!(
            headers["www-authenticate"],
            format!("Bearer error=\"invalid_token\", resource_metadata=\"{METADATA}\"")
        );
        assert_eq!(body["error"]["message"], "invalid token");
    }

    #[test]
    fn a_valid_token_is_replaced_by_our_id_token_carrying_the_mapped_roles() {
        let client_token = testkit::token("ES256", &testkit::claims());
        let auth = format!("Bearer {client_token}");
        let Outcome::Allow(set) = check(&warden(), &request(Some(&auth), "delete_everything")) else {
            panic!("allow expected")
        };
        let ours = set["authorization"].strip_prefix("Bearer ").expect("bearer");
        assert_ne!(ours, client_token, "the caller's token is never forwarded");
        let payload = ours.split('.').nth(1).expect("payload");
        let claims: Value =
            serde_json::from_slice(&base64::Engine::decode(&super::URL_SAFE_NO_PAD, payload).expect("b64"))
                .expect("json");
        assert_eq!(claims["iss"], "https://warden.example.com");
        assert_eq!(claims["sub"], "alice@example.com");
        assert_eq!(claims["roles"], json!(["admin", "reader", "employee"]));
        assert_eq!(claims["traits"]["groups"], json!(["mcp-admins", "staff"]));
    }

    #[test]
    fn a_multi_valued_trait_and_a_value_with_the_separator_never_give_the_same_header() {
        // Issue 26.5: `tid: ["tenant-a","tenant-b"]` is sent as `tenant-a,tenant-b`;
        // `tid: "tenant-a,tenant-b"` could be read as the same two values, so it is not sent.
        let w = warden();
        let tenant = |tid: Value| {
            let mut claims = testkit::claims();
            claims["tid"] = tid;
            let auth = format!("Bearer {}", testkit::token("RS256", &claims));
            match check(&w, &request(Some(&auth), "get_x")) {
                Outcome::Allow(set) => set.get("x-tenant").cloned(),
                Outcome::Deny(status, ..) => panic!("allow expected, got {status}"),
            }
        };
        assert_eq!(tenant(json!(["tenant-a", "tenant-b"])).as_deref(), Some("tenant-a,tenant-b"));
        assert_eq!(tenant(json!("tenant-a")).as_deref(), Some("tenant-a"));
        assert_eq!(tenant(json!("tenant-a,tenant-b")), None);
        assert_eq!(tenant(json!(["tenant-a", "tenant-b,tenant-c"])), None);
        assert_eq!(tenant(json!(["tenant-a", " tenant-b"])), None);
    }

    #[test]
    fn mapped_roles_decide_tools_like_any_other_roles() {
        let mut claims = testkit::claims();
        claims["groups"] = json!(["staff"]);
        claims["email"] = json!("bob@elsewhere.example");
        let auth = format!("Bearer {}", testkit::token("RS256", &claims));
        let w = warden();
        assert!(matches!(check(&w, &request(Some(&auth), "get_weather")), Outcome::Allow(_)));
        let Outcome::Deny(status, _, body) = check(&w, &request(Some(&auth), "delete_everything")) else {
            panic!("deny expected")
        };
        assert_eq!((status, body["error"]["code"].clone()), (200, json!(-32602)));
    }

    #[test]
    fn a_token_that_maps_to_no_role_authenticates_but_reaches_no_app() {
        let mut claims = testkit::claims();
        claims["groups"] = json!(["visitors"]);
        claims["email"] = json!("eve@elsewhere.example");
        let auth = format!("Bearer {}", testkit::token("RS256", &claims));
        let Outcome::Deny(status, headers, body) = check(&warden(), &request(Some(&auth), "get_x")) else {
            panic!("deny expected")
        };
        assert_eq!((status, body["error"]["code"].clone()), (403, json!(-32003)));
        assert!(!headers.contains_key("www-authenticate"), "not an authentication failure");
    }

    #[tokio::test]
    async fn rfc9728_metadata_names_the_identity_provider_for_every_resource_path() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = crate::http::router(Arc::new(warden()), Duration::from_secs(60));
        tokio::spawn(async move { axum::serve(listener, router).await });
        let get = |path: &str| {
            let url = format!("{base}{path}");
            async move { reqwest::get(url).await.expect("GET") }
        };
        let json = |r: reqwest::Response| async move {
            serde_json::from_slice::<Value>(&r.bytes().await.expect("body")).expect("json")
        };
        let root = json(get("/.well-known/oauth-protected-resource").await).await;
        assert_eq!(root["resource"], "https://warden.example.com");
        assert_eq!(root["authorization_servers"], json!([testkit::ISSUER]));
        assert_eq!(root["bearer_methods_supported"], json!(["header"]));
        let mcp = get("/.well-known/oauth-protected-resource/other/mcp").await;
        assert_eq!(mcp.headers()["content-type"], "application/json");
        let mcp = json(mcp).await;
        assert_eq!(mcp["resource"], "https://warden.example.com/other/mcp");
        assert_eq!(get("/.well-known/oauth-protected-resourcex").await.status(), 404);
    }
}
