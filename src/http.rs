//! The HTTP endpoint: OIDC discovery and JWKS for the upstream's JWT verifier, plus health.
//!
//! Routes:
//! - `GET /.well-known/openid-configuration` — discovery; `issuer` byte-identical to the
//!   tokens' `iss`, `jwks_uri` = `{issuer}/.well-known/jwks-oidc`;
//! - `GET /.well-known/jwks-oidc` and `GET /.well-known/jwks.json` — public keys only;
//! - `GET /healthz` — the process is up; `GET /readyz` — a policy is loaded and a key is active;
//! - `GET /metrics` — Prometheus text format;
//! - `GET /.well-known/oauth-protected-resource` and `…/oauth-protected-resource/PATH` —
//!   RFC 9728 protected-resource metadata naming the identity provider as authorization
//!   server (only when the `jwt` authentication method is configured; 404 otherwise).
//!
//! Never serves private key material or anything from the policy.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::identity::idp::{RESOURCE_METADATA_PATH, Verifier};
use crate::state::Warden;

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
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(RESOURCE_METADATA_PATH, get(resource_metadata_handler))
        .route(&format!("{RESOURCE_METADATA_PATH}/{{*path}}"), get(resource_metadata_handler))
        .with_state(AppState { warden, discovery, max_age: max_age.as_secs() })
}

/// Ready only while a key can sign: without one every allowed call is refused (503, saying
/// why and when the next key signs).
async fn readyz(State(s): State<AppState>) -> Response {
    match s.warden.key_ring().inactive_reason(std::time::SystemTime::now()) {
        None => "ready\n".into_response(),
        Some(reason) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
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

/// RFC 9728 metadata for the protected resource at `path` (`""` for the origin itself):
/// `resource` is the origin followed by the path, exactly the identifier the well-known
/// path was inserted into.
pub fn resource_metadata(verifier: &Verifier, path: &str) -> serde_json::Value {
    let config = verifier.config();
    let mut doc = json!({
        "resource": format!("{}{path}", verifier.resource_origin()),
        "authorization_servers": [config.issuer],
        "bearer_methods_supported": ["header"],
    });
    if !config.scopes_supported.is_empty() {
        doc["scopes_supported"] = json!(config.scopes_supported);
    }
    doc
}

async fn resource_metadata_handler(State(s): State<AppState>, uri: Uri) -> Response {
    let path = uri.path().strip_prefix(RESOURCE_METADATA_PATH).unwrap_or_default();
    match s.warden.jwt() {
        Some(v) if path.is_empty() || path.starts_with('/') => {
            json_response(resource_metadata(v, path).to_string(), s.max_age)
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
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
