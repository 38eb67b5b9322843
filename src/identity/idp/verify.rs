//! The verifier: what a token must be, checked in order, against the cached keys.
//!
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
//! 7. the claims map to an identity ([`super::claims`]).
//!
//! Pure and synchronous: keys come from [`super::jwks`], so a check never waits on the
//! network. Never logs or returns a token, a claim value or key material.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::claims::{self, Identity, RoleMapping};
use super::{
    JwtConfig, JwtConfigError, Rejected, algorithm_name, default_resource_metadata_url, jwks, resource_origin, strict,
};

/// Longer bearer values are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verified tokens remembered before the memo starts over.
const MAX_VERIFIED: usize = 10_000;

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
        claims::identity(&self.config, &self.roles, claims)
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
