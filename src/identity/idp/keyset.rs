//! A published JWKS document, parsed into the keys that may verify tokens: each key with
//! the algorithms its type, curve and JWK `alg` allow. Keys for encryption, symmetric keys,
//! RSA keys shorter than 2048 bits, unknown curves and contradictory keys are skipped.
//! Pure; never logs key material.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use super::{Rejected, algorithm_name};

/// RSA moduli shorter than this many bytes (2048 bits) are not trusted.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One usable public key and the algorithms it may verify.
#[derive(Debug)]
pub struct Key {
    kid: Option<Box<str>>,
    algorithms: Vec<Algorithm>,
    decoding: DecodingKey,
}

impl Key {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether this key may verify `alg` (its key type, curve and JWK `alg` decide).
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The keys of one successful fetch.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Set when the set is installed in a [`KeyCache`]: tokens verified under one
    /// generation are trusted again only under the same one.
    generation: u64,
}

/// A JWKS entry as published (private parameters are never read).
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use", default)]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// A document that is not a JWKS.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("not a JWKS document: {0}")]
    NotJwks(#[source] serde_json::Error),
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys that can verify one of `allowed`. Keys for
    /// encryption, symmetric keys, short RSA keys, unknown curves, and keys whose `alg`
    /// contradicts their type are skipped; the count of skipped keys is returned.
    pub fn parse(body: &[u8], allowed: &[Algorithm]) -> Result<(KeySet, usize), KeySetError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc = serde_json::from_slice(body).map_err(KeySetError::NotJwks)?;
        let mut keys = Vec::with_capacity(doc.keys.len());
        let mut skipped = 0;
        for entry in doc.keys {
            match serde_json::from_value::<RawJwk>(entry).ok().and_then(|raw| key_from_jwk(&raw, allowed)) {
                Some(k) => keys.push(k),
                None => skipped += 1,
            }
        }
        Ok((KeySet { keys, generation: 0 }, skipped))
    }

    /// Installs the set under `generation` (the [`super::jwks::KeyCache`] counts them).
    pub(super) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }
    /// A set from already-built keys (tests and embedding).
    pub fn from_keys(keys: Vec<Key>) -> KeySet {
        KeySet { keys, generation: 0 }
    }

    /// Which installed set this is (0: never installed).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(Key::kid).collect()
    }

    /// The key a token's header names. Without a `kid` the set must hold exactly one key.
    pub fn find(&self, kid: Option<&str>) -> Result<&Key, Rejected> {
        if self.keys.is_empty() {
            return Err(Rejected::NoKeys);
        }
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)).ok_or(Rejected::UnknownKey),
            None if self.keys.len() == 1 => Ok(&self.keys[0]),
            None => Err(Rejected::MissingKid),
        }
    }
}

/// Builds a key from a JWK, or `None` when it must not be used for token signatures.
fn key_from_jwk(raw: &RawJwk, allowed: &[Algorithm]) -> Option<Key> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if raw.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|o| o == "verify")) {
        return None;
    }
    let b64 = |v: &Option<String>| v.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok());
    let (candidates, decoding): (&[Algorithm], DecodingKey) = match raw.kty.as_str() {
        "RSA" => {
            let (n, e) = (b64(&raw.n)?, b64(&raw.e)?);
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES || e.is_empty() {
                return None;
            }
            (
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                DecodingKey::from_rsa_raw_components(&n, &e),
            )
        }
        "EC" => {
            let (alg, len) = match raw.crv.as_deref()? {
                "P-256" => (Algorithm::ES256, 32),
                "P-384" => (Algorithm::ES384, 48),
                _ => return None,
            };
            let (x, y) = (b64(&raw.x)?, b64(&raw.y)?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let algs: &[Algorithm] = if alg == Algorithm::ES256 { &[Algorithm::ES256] } else { &[Algorithm::ES384] };
            (algs, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if raw.crv.as_deref()? != "Ed25519" {
                return None;
            }
            let x = b64(&raw.x)?;
            if x.len() != 32 {
                return None;
            }
            (&[Algorithm::EdDSA], DecodingKey::from_ed_der(&x))
        }
        // "oct" (symmetric) and anything else: never a signature key here.
        _ => return None,
    };
    let algorithms: Vec<Algorithm> = candidates
        .iter()
        .copied()
        .filter(|a| allowed.contains(a))
        .filter(|a| raw.alg.as_deref().is_none_or(|jwk_alg| jwk_alg == algorithm_name(*a)))
        .collect();
    if algorithms.is_empty() {
        return None;
    }
    Some(Key { kid: raw.kid.as_deref().map(Into::into), algorithms, decoding })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::idp::DEFAULT_ALGORITHMS;

    pub(crate) fn rsa_jwk(kid: &str, alg: Option<&str>) -> Value {
        let mut n = vec![0xC5u8; 256];
        n[255] = 0x01;
        let mut jwk = serde_json::json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"});
        if let Some(alg) = alg {
            jwk["alg"] = alg.into();
        }
        jwk
    }

    fn parse(keys: Vec<Value>) -> (KeySet, usize) {
        let body = serde_json::json!({ "keys": keys }).to_string();
        KeySet::parse(body.as_bytes(), DEFAULT_ALGORITHMS).expect("a JWKS document")
    }

    #[test]
    fn an_rsa_key_may_verify_only_rsa_algorithms_and_only_its_own_alg_when_it_has_one() {
        let (set, skipped) = parse(vec![rsa_jwk("a", None), rsa_jwk("b", Some("PS256"))]);
        assert_eq!(skipped, 0);
        let a = set.find(Some("a")).expect("a");
        assert!(a.allows(Algorithm::RS256) && a.allows(Algorithm::PS256));
        assert!(!a.allows(Algorithm::ES256) && !a.allows(Algorithm::HS256));
        let b = set.find(Some("b")).expect("b");
        assert!(b.allows(Algorithm::PS256) && !b.allows(Algorithm::RS256));
    }

    #[test]
    fn symmetric_encryption_short_and_contradictory_keys_are_skipped() {
        let mut enc = rsa_jwk("enc", None);
        enc["use"] = "enc".into();
        let mut short = rsa_jwk("short", None);
        short["n"] = URL_SAFE_NO_PAD.encode([0xC5u8; 128]).into();
        let oct = serde_json::json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0"});
        let hs = rsa_jwk("hs", Some("HS256"));
        let ec_as_rsa = rsa_jwk("es", Some("ES256"));
        let verify_only = {
            let mut k = rsa_jwk("ops", None);
            k["key_ops"] = serde_json::json!(["encrypt"]);
            k
        };
        let (set, skipped) = parse(vec![enc, short, oct, hs, ec_as_rsa, verify_only, serde_json::json!("junk")]);
        assert!(set.is_empty(), "{:?}", set.kids());
        assert_eq!(skipped, 7);
    }

    #[test]
    fn ec_keys_are_pinned_to_their_curve() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let p256 = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": x, "y": x});
        let p384_short = serde_json::json!({"kty": "EC", "crv": "P-384", "kid": "bad", "x": x, "y": x});
        let (set, skipped) = parse(vec![p256, p384_short]);
        assert_eq!(skipped, 1);
        let k = set.find(Some("ec")).expect("ec");
        assert!(k.allows(Algorithm::ES256) && !k.allows(Algorithm::ES384) && !k.allows(Algorithm::RS256));
    }

    #[test]
    fn a_kid_is_required_when_several_keys_are_published() {
        let (one, _) = parse(vec![rsa_jwk("only", None)]);
        assert!(one.find(None).is_ok());
        let (two, _) = parse(vec![rsa_jwk("a", None), rsa_jwk("b", None)]);
        assert_eq!(two.find(None).err(), Some(Rejected::MissingKid));
        assert_eq!(two.find(Some("c")).err(), Some(Rejected::UnknownKey));
        assert_eq!(KeySet::default().find(Some("a")).err(), Some(Rejected::NoKeys));
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_an_error() {
        assert!(KeySet::parse(b"{\"nokeys\":[]}", DEFAULT_ALGORITHMS).is_err());
        assert!(KeySet::parse(b"<html>", DEFAULT_ALGORITHMS).is_err());
    }
}
