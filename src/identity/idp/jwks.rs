//! The identity provider's signing keys: fetched in the background (OIDC discovery, then its
//! `jwks_uri`; or a configured JWKS URL), cached, refreshed periodically and early when a
//! token names an unknown `kid` (never more often than the minimum refresh interval), and
//! kept through an IdP outage: only a successful fetch with at least one usable key replaces
//! the cached set.
//!
//! Owns all network I/O of the `jwt` method. A check only reads the cached set (one atomic
//! load) and at most asks for a refresh; it never waits on the network. Never logs key
//! material: only URLs, `kid`s and counts.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{JwtConfig, KeySource, Rejected, algorithm_name, check_fetch_url};

/// Discovery documents and key sets larger than this are refused.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Connect timeout of one fetch.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout of one fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
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

impl KeySet {
    /// Parses a JWKS document, keeping the keys that can verify one of `allowed`. Keys for
    /// encryption, symmetric keys, short RSA keys, unknown curves, and keys whose `alg`
    /// contradicts their type are skipped; the count of skipped keys is returned.
    pub fn parse(body: &[u8], allowed: &[Algorithm]) -> Result<(KeySet, usize), String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc = serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
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

/// The cached key set, shared by the verifier (reads) and the refresh task (writes).
#[derive(Debug)]
pub struct KeyCache {
    set: ArcSwap<KeySet>,
    wake: Notify,
    /// Fetch attempts so far (successful or not).
    attempts: watch::Sender<u64>,
    /// Early refreshes asked for by checks (unknown `kid`, no keys yet).
    refresh_requests: std::sync::atomic::AtomicU64,
    /// The generation of the last installed set.
    generation: std::sync::atomic::AtomicU64,
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache {
            set: ArcSwap::from_pointee(KeySet::default()),
            wake: Notify::new(),
            attempts: watch::Sender::new(0),
            refresh_requests: std::sync::atomic::AtomicU64::new(0),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl KeyCache {
    /// The keys in force: one atomic load, no lock, no I/O.
    pub fn current(&self) -> Guard<Arc<KeySet>> {
        self.set.load()
    }

    /// Swaps in a new key set (the refresh task, and tests), under a new generation.
    pub fn replace(&self, mut set: KeySet) {
        set.generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.set.store(Arc::new(set));
    }

    /// Asks the refresh task for an early fetch; returns at once. Requests made while one
    /// is pending are merged, and the task never fetches more often than the minimum
    /// refresh interval.
    pub fn request_refresh(&self) {
        self.refresh_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Early refreshes asked for so far.
    pub fn refresh_requests(&self) -> u64 {
        self.refresh_requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetch attempts so far.
    pub fn attempts(&self) -> u64 {
        *self.attempts.borrow()
    }

    /// Waits until at least `n` fetch attempts finished, or `timeout`; true if they did.
    pub async fn wait_attempts(&self, n: u64, timeout: Duration) -> bool {
        let mut rx = self.attempts.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= n)).await.is_ok_and(|r| r.is_ok())
    }

    fn attempted(&self) {
        self.attempts.send_modify(|a| *a += 1);
    }
}

/// A fetch that failed; the cached keys stay in force.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: response larger than {MAX_BODY_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: {reason}")]
    Document { url: String, reason: String },
    #[error("{url}: discovery issuer '{found}' is not the configured issuer '{expected}'")]
    IssuerMismatch { url: String, found: String, expected: String },
    #[error("{url}: no usable signing key ({skipped} skipped)")]
    NoUsableKey { url: String, skipped: usize },
}

/// Fetches the key set from the configured source.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    source: KeySource,
    issuer: String,
    algorithms: Vec<Algorithm>,
}

impl Fetcher {
    pub fn new(config: &JwtConfig) -> Result<Self, JwksError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcp-warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Client(e.to_string()))?;
        Ok(Fetcher {
            client,
            source: config.keys.clone(),
            issuer: config.issuer.clone(),
            algorithms: config.algorithms.clone(),
        })
    }

    /// One fetch: discovery (when configured) then the key set.
    pub async fn fetch(&self) -> Result<KeySet, JwksError> {
        let jwks_url = match &self.source {
            KeySource::Jwks(url) => url.clone(),
            KeySource::Discovery(url) => self.discover(url).await?,
        };
        let body = self.get(&jwks_url).await?;
        let (set, skipped) = KeySet::parse(&body, &self.algorithms)
            .map_err(|reason| JwksError::Document { url: jwks_url.clone(), reason })?;
        if set.is_empty() {
            return Err(JwksError::NoUsableKey { url: jwks_url, skipped });
        }
        if skipped > 0 {
            tracing::debug!(url = %jwks_url, skipped, "JWKS entries skipped (not signature keys for the allowed algorithms)");
        }
        Ok(set)
    }

    async fn discover(&self, url: &str) -> Result<String, JwksError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let body = self.get(url).await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| JwksError::Document {
            url: url.to_owned(),
            reason: format!("not a discovery document: {e}"),
        })?;
        // OpenID Connect Discovery §4.3: the document must name exactly the issuer asked for.
        if doc.issuer != self.issuer {
            return Err(JwksError::IssuerMismatch {
                url: url.to_owned(),
                found: doc.issuer,
                expected: self.issuer.clone(),
            });
        }
        check_fetch_url(&doc.jwks_uri)
            .map_err(|e| JwksError::Document { url: url.to_owned(), reason: format!("jwks_uri: {e}") })?;
        Ok(doc.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let http = |e: reqwest::Error| JwksError::Http { url: url.to_owned(), reason: e.to_string() };
        let mut resp = self.client.get(url).header("accept", "application/json").send().await.map_err(http)?;
        if !resp.status().is_success() {
            return Err(JwksError::Status { url: url.to_owned(), status: resp.status().as_u16() });
        }
        if resp.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(JwksError::TooLarge { url: url.to_owned() });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(JwksError::TooLarge { url: url.to_owned() });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// How often the refresh task fetches.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Periodic refresh after a successful fetch.
    pub refresh: Duration,
    /// No two fetches start closer than this (unknown-`kid` requests, retries).
    pub min_refresh: Duration,
}

/// Starts the refresh task: fetch now, then after `schedule.refresh`, or earlier when asked
/// (but never sooner than `schedule.min_refresh` after the previous attempt). A failed
/// fetch keeps the cached keys and is retried with exponential backoff from
/// `min_refresh` up to `refresh`. `report` is called with `"ok"` or `"error"` per fetch.
pub fn spawn(
    cache: Arc<KeyCache>,
    fetcher: Fetcher,
    schedule: Schedule,
    report: impl Fn(&'static str) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            let next = match fetcher.fetch().await {
                Ok(set) => {
                    let (before, after) = (cache.current().kids().join(","), set.kids().join(","));
                    if before != after || failures > 0 {
                        tracing::info!(keys = set.len(), kids = %after, "identity-provider keys loaded");
                    }
                    cache.replace(set);
                    failures = 0;
                    report("ok");
                    schedule.refresh
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    report("error");
                    tracing::warn!(
                        error = %e,
                        cached_keys = cache.current().len(),
                        "identity-provider key fetch failed; keeping the cached keys"
                    );
                    let backoff = schedule.min_refresh.saturating_mul(1 << (failures - 1).min(16));
                    backoff.min(schedule.refresh)
                }
            };
            cache.attempted();
            tokio::select! {
                () = tokio::time::sleep_until(started + next) => {}
                () = cache.wake.notified() => {
                    tokio::time::sleep_until(started + schedule.min_refresh).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::get;

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
        KeySet::parse(body.as_bytes(), super::super::DEFAULT_ALGORITHMS).expect("a JWKS document")
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
        assert!(KeySet::parse(b"{\"nokeys\":[]}", super::super::DEFAULT_ALGORITHMS).is_err());
        assert!(KeySet::parse(b"<html>", super::super::DEFAULT_ALGORITHMS).is_err());
    }

    /// A loopback identity provider whose discovery and JWKS answers the test controls.
    #[derive(Clone, Default)]
    struct Idp {
        jwks: Arc<Mutex<(u16, String)>>,
        issuer: Arc<Mutex<String>>,
        jwks_hits: Arc<AtomicUsize>,
    }

    impl Idp {
        fn set(&self, status: u16, keys: Vec<Value>) {
            *self.jwks.lock().expect("lock") = (status, serde_json::json!({ "keys": keys }).to_string());
        }
        fn hits(&self) -> usize {
            self.jwks_hits.load(Ordering::SeqCst)
        }
    }

    async fn serve_idp(idp: Idp) -> String {
        async fn jwks(State(idp): State<Idp>) -> (StatusCode, String) {
            idp.jwks_hits.fetch_add(1, Ordering::SeqCst);
            let (status, body) = idp.jwks.lock().expect("lock").clone();
            (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body)
        }
        async fn discovery(State(idp): State<Idp>) -> String {
            let issuer = idp.issuer.lock().expect("lock").clone();
            serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}).to_string()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        *idp.issuer.lock().expect("lock") = base.clone();
        let app = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(idp);
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn config(issuer: &str, keys: KeySource) -> JwtConfig {
        JwtConfig {
            issuer: issuer.to_owned(),
            keys,
            audiences: vec!["aud".into()],
            client_ids: Vec::new(),
            algorithms: super::super::DEFAULT_ALGORITHMS.to_vec(),
            clock_skew: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(3600),
            username_claim: "email".into(),
            traits: Vec::new(),
            claims_to_roles: Vec::new(),
            refresh_interval: Duration::from_secs(3600),
            min_refresh_interval: Duration::from_millis(300),
            resource_metadata_url: None,
            scopes_supported: Vec::new(),
        }
    }

    fn start(idp_base: &str, source: KeySource, min_refresh: Duration) -> (Arc<KeyCache>, Arc<AtomicUsize>) {
        let cache = Arc::new(KeyCache::default());
        let fetcher = Fetcher::new(&config(idp_base, source)).expect("client");
        let oks = Arc::new(AtomicUsize::new(0));
        let counted = oks.clone();
        spawn(cache.clone(), fetcher, Schedule { refresh: Duration::from_secs(3600), min_refresh }, move |r| {
            if r == "ok" {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        (cache, oks)
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn keys_come_from_the_discovery_documents_jwks_uri() {
        let idp = Idp::default();
        idp.set(200, vec![rsa_jwk("k1", None)]);
        let base = serve_idp(idp.clone()).await;
        let (cache, oks) = start(
            &base,
            KeySource::Discovery(format!("{base}/.well-known/openid-configuration")),
            Duration::from_millis(300),
        );
        assert!(cache.wait_attempts(1, WAIT).await);
        assert_eq!(cache.current().kids(), ["k1"]);
        assert_eq!(oks.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_discovery_document_for_another_issuer_is_refused() {
        let idp = Idp::default();
        idp.set(200, vec![rsa_jwk("k1", None)]);
        let base = serve_idp(idp.clone()).await;
        let fetcher = Fetcher::new(&config(
            "https://elsewhere.example",
            KeySource::Discovery(format!("{base}/.well-known/openid-configuration")),
        ))
        .expect("client");
        let e = fetcher.fetch().await.expect_err("issuer mismatch");
        assert!(matches!(e, JwksError::IssuerMismatch { .. }), "{e}");
        assert_eq!(idp.hits(), 0, "the key set of a mismatched issuer is never fetched");
    }

    #[tokio::test]
    async fn cached_keys_survive_an_outage_and_an_empty_key_set() {
        let idp = Idp::default();
        idp.set(200, vec![rsa_jwk("k1", None)]);
        let base = serve_idp(idp.clone()).await;
        let (cache, _) = start(&base, KeySource::Jwks(format!("{base}/jwks")), Duration::from_millis(100));
        assert!(cache.wait_attempts(1, WAIT).await);
        idp.set(503, vec![]);
        cache.request_refresh();
        assert!(cache.wait_attempts(2, WAIT).await);
        assert_eq!(cache.current().kids(), ["k1"], "an outage keeps the cached keys");
        idp.set(200, vec![]);
        cache.request_refresh();
        assert!(cache.wait_attempts(3, WAIT).await);
        assert_eq!(cache.current().kids(), ["k1"], "an empty key set never replaces working keys");
        assert!(idp.hits() >= 3);
    }

    #[tokio::test]
    async fn a_rotation_replaces_the_key_set_on_request() {
        let idp = Idp::default();
        idp.set(200, vec![rsa_jwk("old", None)]);
        let base = serve_idp(idp.clone()).await;
        let (cache, _) = start(&base, KeySource::Jwks(format!("{base}/jwks")), Duration::from_millis(100));
        assert!(cache.wait_attempts(1, WAIT).await);
        idp.set(200, vec![rsa_jwk("new", None)]);
        cache.request_refresh();
        assert!(cache.wait_attempts(2, WAIT).await);
        assert_eq!(cache.current().kids(), ["new"], "keys the IdP stopped publishing are dropped");
    }

    #[tokio::test]
    async fn refresh_requests_are_rate_limited() {
        let idp = Idp::default();
        idp.set(200, vec![rsa_jwk("k1", None)]);
        let base = serve_idp(idp.clone()).await;
        let min = Duration::from_millis(400);
        let (cache, _) = start(&base, KeySource::Jwks(format!("{base}/jwks")), min);
        assert!(cache.wait_attempts(1, WAIT).await);
        let window = Duration::from_millis(1300);
        let begin = Instant::now();
        while begin.elapsed() < window {
            for _ in 0..50 {
                cache.request_refresh();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let hits = idp.hits();
        // At most one fetch per `min` during the window (plus the initial one and one in flight).
        assert!(hits >= 2, "a refresh was requested: {hits}");
        assert!(hits <= 2 + (window.as_millis() / min.as_millis()) as usize, "{hits} fetches in {window:?}");
    }
}
