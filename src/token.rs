//! ID tokens for the upstream: RS256 JWTs whose `aud` is the app URI, and a cache so the
//! steady state signs almost nothing.
//!
//! Owns claim layout and the per-(app, user) cache. A cached token is reused while it has
//! more than half its lifetime left and was signed by the key that is active now; the cache
//! lives inside one policy snapshot, so a reload (new roles, traits or apps) starts empty.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::keys::{KeyError, SigningKey};
use warden_core::policy::{App, Traits, User};

/// How `nbf` is back-dated to absorb clock skew at the verifier.
pub const NOT_BEFORE_SKEW: Duration = Duration::from_secs(10);

/// What goes into a token besides the user and app.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: Arc<str>,
    pub lifetime: Duration,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    username: &'a str,
    roles: &'a [Arc<str>],
    traits: &'a Traits,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

/// Signs a fresh token for `user` at `app`.
pub fn mint(
    settings: &TokenSettings,
    key: &SigningKey,
    user: &User,
    app: &App,
    now: SystemTime,
) -> Result<String, KeyError> {
    let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let header = Header { alg: "RS256", typ: "JWT", kid: key.kid() };
    let claims = Claims {
        iss: &settings.issuer,
        sub: &user.name,
        aud: &app.uri,
        iat,
        nbf: iat.saturating_sub(NOT_BEFORE_SKEW.as_secs()),
        exp: iat + settings.lifetime.as_secs(),
        jti: random_jti(),
        username: &user.name,
        roles: &user.role_names,
        traits: &user.traits,
        client_id: app.client_id.as_deref(),
        scope: app.scope.as_deref(),
    };
    let mut out = String::with_capacity(1024);
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&header).unwrap_or_default(), &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&claims).unwrap_or_default(), &mut out);
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    Ok(out)
}

fn random_jti() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG failing is not recoverable in a meaningful way; a zero jti is still unique enough
    // alongside iat, but it is logged nowhere and never expected.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug)]
struct Cached {
    token: Arc<str>,
    fingerprint: u64,
    kid: Box<str>,
    refresh_at: SystemTime,
}

type ByUser = HashMap<Arc<str>, Cached>;

/// Tokens by app, then by user. Lives in one policy snapshot.
#[derive(Debug, Default)]
pub struct TokenCache {
    map: RwLock<HashMap<Arc<str>, ByUser>>,
}

/// Whether a token came from the cache (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Minted,
}

impl TokenCache {
    /// A token for (user, app): cached while fresh and signed by `key`, else minted.
    pub fn get_or_mint(
        &self,
        settings: &TokenSettings,
        key: &SigningKey,
        user: &User,
        app: &App,
        now: SystemTime,
    ) -> Result<(Arc<str>, Source), KeyError> {
        if let Ok(map) = self.map.read()
            && let Some(c) = map.get(&*app.name).and_then(|m| m.get(&*user.name))
            && now < c.refresh_at
            && c.fingerprint == user.fingerprint
            && *c.kid == *key.kid()
        {
            return Ok((c.token.clone(), Source::Cache));
        }
        let token: Arc<str> = mint(settings, key, user, app, now)?.into();
        if let Ok(mut map) = self.map.write() {
            map.entry(app.name.clone()).or_default().insert(
                user.name.clone(),
                Cached {
                    token: token.clone(),
                    fingerprint: user.fingerprint,
                    kid: key.kid().into(),
                    refresh_at: now + settings.lifetime / 2,
                },
            );
        }
        Ok((token, Source::Minted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::policy::{Policy, Source as PolicySource};

    fn fixture() -> (Policy, SigningKey, TokenSettings) {
        let p = Policy::load(&[PolicySource::inline(
            "t.yaml",
            "kind: app\nmetadata: {name: a}\nspec: {uri: 'mcp+https://gw.example.com/mcp', client_id: cid}\n---\nkind: user\nmetadata: {name: alice}\nspec: {roles: [mcp-user], traits: {team: [x], empty: []}}\n",
        )])
        .expect("policy");
        let (key, _) = SigningKey::generate().expect("key");
        let settings =
            TokenSettings { issuer: "https://warden.example.com".into(), lifetime: Duration::from_secs(300) };
        (p, key, settings)
    }

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
    }

    #[test]
    fn token_carries_the_claims_agentcore_checks() {
        let (p, key, s) = fixture();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = mint(&s, &key, p.user("alice").expect("u"), p.app("a").expect("a"), now).expect("mint");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let h = decode(parts[0]);
        assert_eq!(
            (h["alg"].as_str(), h["typ"].as_str(), h["kid"].as_str()),
            (Some("RS256"), Some("JWT"), Some(key.kid()))
        );
        let c = decode(parts[1]);
        assert_eq!(c["iss"], "https://warden.example.com");
        assert_eq!(c["aud"], "mcp+https://gw.example.com/mcp");
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["username"], "alice");
        assert_eq!(c["roles"], serde_json::json!(["mcp-user"]));
        assert_eq!(c["traits"], serde_json::json!({"team": ["x"]}), "empty traits are dropped");
        assert_eq!(c["client_id"], "cid");
        assert!(c.get("scope").is_none());
        assert_eq!(c["iat"], 1_700_000_000u64);
        assert_eq!(c["nbf"], 1_700_000_000u64 - 10);
        assert_eq!(c["exp"], 1_700_000_300u64);
        assert_eq!(c["jti"].as_str().map(str::len), Some(22));
    }

    #[test]
    fn signature_verifies_with_the_published_key() {
        let (p, key, s) = fixture();
        let t = mint(&s, &key, p.user("alice").expect("u"), p.app("a").expect("a"), SystemTime::now()).expect("mint");
        let (signed, sig) = t.rsplit_once('.').expect("three parts");
        let jwk = key.jwk();
        let n = URL_SAFE_NO_PAD.decode(&jwk.n).expect("n");
        let e = URL_SAFE_NO_PAD.decode(&jwk.e).expect("e");
        let public = aws_lc_rs::rsa::PublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
        public
            .verify(
                &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(sig).expect("sig"),
            )
            .expect("signature verifies");
    }

    #[test]
    fn cache_reuses_until_half_life_then_remints() {
        let (p, key, s) = fixture();
        let (u, a) = (p.user("alice").expect("u"), p.app("a").expect("a"));
        let cache = TokenCache::default();
        let t0 = SystemTime::now();
        let (first, src) = cache.get_or_mint(&s, &key, u, a, t0).expect("mint");
        assert_eq!(src, Source::Minted);
        let (second, src) = cache.get_or_mint(&s, &key, u, a, t0 + Duration::from_secs(149)).expect("hit");
        assert_eq!((src, &*second), (Source::Cache, &*first));
        let (_, src) = cache.get_or_mint(&s, &key, u, a, t0 + Duration::from_secs(150)).expect("remint");
        assert_eq!(src, Source::Minted);
    }

    #[test]
    fn cache_never_serves_a_token_minted_for_other_roles_or_traits() {
        let (p, key, s) = fixture();
        let a = p.app("a").expect("a");
        let cache = TokenCache::default();
        let now = SystemTime::now();
        let first = p.build_user("dyn", &["mcp-user".into()], Traits::new()).expect("user");
        cache.get_or_mint(&s, &key, &first, a, now).expect("mint");
        let mut traits = Traits::new();
        traits.insert("team".into(), vec!["y".into()]);
        let changed = p.build_user("dyn", &["mcp-user".into()], traits).expect("user");
        let (token, src) = cache.get_or_mint(&s, &key, &changed, a, now).expect("mint");
        assert_eq!(src, Source::Minted);
        let claims = decode(token.split('.').nth(1).expect("claims"));
        assert_eq!(claims["traits"]["team"][0], "y");
    }

    #[test]
    fn cache_remints_after_the_signing_key_changes() {
        let (p, key, s) = fixture();
        let (u, a) = (p.user("alice").expect("u"), p.app("a").expect("a"));
        let cache = TokenCache::default();
        let now = SystemTime::now();
        cache.get_or_mint(&s, &key, u, a, now).expect("mint");
        let (other, _) = SigningKey::generate().expect("key");
        let (_, src) = cache.get_or_mint(&s, &other, u, a, now).expect("mint");
        assert_eq!(src, Source::Minted);
    }
}
