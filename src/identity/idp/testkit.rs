//! Real keys and real signatures for tests (aws-lc-rs), shared by the `idp` tests and
//! [`crate::identity::authn`]'s tests.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::jwks::KeyCache;
use super::keyset::KeySet;
use super::{ClaimMapping, DEFAULT_ALGORITHMS, Identity, JwtConfig, KeySource, Rejected, Verifier};

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

/// Verifies `token` now.
pub(crate) fn verify(v: &Verifier, token: &str) -> Result<Identity, Rejected> {
    v.verify(token, SystemTime::now())
}

/// `claims` with `key` set to `value`.
pub(crate) fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// `claims` without `key`.
pub(crate) fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("object").remove(key);
    claims
}
