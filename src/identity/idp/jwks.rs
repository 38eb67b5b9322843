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
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::keyset::{KeySet, KeySetError};
use super::{JwtConfig, KeySource, check_fetch_url};

/// Discovery documents and key sets larger than this are refused.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Connect timeout of one fetch.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout of one fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

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
        set.set_generation(self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
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
    #[error("{url}: {source}")]
    KeySet { url: String, source: KeySetError },
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
            .map_err(|source| JwksError::KeySet { url: jwks_url.clone(), source })?;
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

    use crate::identity::idp::keyset::tests::rsa_jwk;
    use serde_json::Value;

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::get;

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
