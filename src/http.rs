//! The HTTP endpoint: OIDC discovery and JWKS for the upstream's JWT verifier, plus health.
//!
//! Routes:
//! - `GET /.well-known/openid-configuration` — discovery; `issuer` byte-identical to the
//!   tokens' `iss`, `jwks_uri` = `{issuer}/.well-known/jwks-oidc`;
//! - `GET /.well-known/jwks-oidc` and `GET /.well-known/jwks.json` — public keys only;
//! - `GET /healthz` — the process is up; `GET /readyz` — a policy is loaded and a key is active;
//! - `GET /metrics` — Prometheus text format.
//!
//! Never serves private key material or anything from the policy.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::authz::Warden;

#[derive(Debug, Clone)]
struct AppState {
    warden: Arc<Warden>,
    discovery: Arc<str>,
    max_age: u64,
}

/// The discovery document for `issuer`.
pub fn discovery_document(issuer: &str) -> String {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks-oidc"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "username", "roles", "traits", "client_id", "scope"],
    })
    .to_string()
}

/// The router, with no socket: tests call it directly.
pub fn router(warden: Arc<Warden>, max_age: std::time::Duration) -> Router {
    let discovery = discovery_document(&warden.settings.token.issuer).into();
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery_handler))
        .route("/.well-known/jwks-oidc", get(jwks))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
        .with_state(AppState { warden, discovery, max_age: max_age.as_secs() })
}

fn json_response(body: String, max_age: u64) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

async fn discovery_handler(State(s): State<AppState>) -> Response {
    json_response(s.discovery.to_string(), s.max_age)
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut r = s.warden.metrics.render(s.warden.audit_dropped()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

async fn jwks(State(s): State<AppState>) -> Response {
    let ring = s.warden.key_ring();
    let keys = ring.published(std::time::SystemTime::now());
    match serde_json::to_string(&json!({ "keys": keys })) {
        Ok(body) => json_response(body, s.max_age),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
