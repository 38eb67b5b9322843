//! Inputs shared by the criterion benches: realistic MCP bodies, the headers Envoy sends,
//! generated policies and a ready [`Warden`]. Each bench uses part of this.
#![allow(dead_code, unused_imports, reason = "each bench uses a different part")]

#[path = "../../crates/core/benches/common/mod.rs"]
mod inputs;

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use mcp_warden::audit::Audit;
use mcp_warden::identity::authn::AuthMethod;
use mcp_warden::keyring::KeyRing;
use mcp_warden::keys::SigningKey;
use mcp_warden::state::{Settings, Warden};
use mcp_warden::token::TokenSettings;
use warden_core::mcp::Limits;
use warden_core::policy::{Policy, Source};

pub(crate) use inputs::*;

/// A `CheckRequest` as the shipped Envoy configs send it for `body` on the route of app `demo`.
pub(crate) fn check_request(key: &str, body: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer::default()),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "8172636451827364".to_owned(),
                    method: "POST".to_owned(),
                    host: "127.0.0.1:10000".to_owned(),
                    path: "/mcp".to_owned(),
                    scheme: "http".to_owned(),
                    protocol: "HTTP/1.1".to_owned(),
                    size: body.len() as i64,
                    // `encode_raw_headers: true`, as the shipped Envoy configs send them.
                    header_map: Some(HeaderMap {
                        headers: envoy_headers(key, body.len())
                            .into_iter()
                            .map(|(key, v)| HeaderValue { key, raw_value: v.into_bytes(), ..Default::default() })
                            .collect(),
                    }),
                    raw_body: body.as_bytes().to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: [("app".to_owned(), APP.to_owned())].into_iter().collect(),
            ..Default::default()
        }),
    }
}

/// A Warden over `policy` with a fresh RSA key, audit `audit`, default limits.
pub(crate) fn warden(policy: Policy, audit: Audit) -> Warden {
    let (key, _) = SigningKey::generate().expect("RSA key generation");
    let settings = Settings {
        token: TokenSettings { issuer: "https://warden.example.com".into(), lifetime: Duration::from_secs(300) },
        limits: Limits::default(),
        denied_status: 200,
        auth_order: vec![AuthMethod::Mtls, AuthMethod::ApiKey],
        audit_skip_allowed: Vec::new(),
        envoy_metadata: mcp_warden::config::EnvoyMetadata::All,
        bounds: Default::default(),
    };
    Warden::new(policy, KeyRing::single(key), settings, audit)
}
