//! What the in-process tests share: one policy (app `bedrock-mcp`, user `alice` with API
//! key "foo" and an mTLS principal, role `readonly` allowing `^get_.*$`), a `Warden` built on
//! it with a fresh signing key, and the `CheckRequest` Envoy would send.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};

use mcp_warden::audit::Audit;
use mcp_warden::config::EnvoyMetadata;
use mcp_warden::identity::authn::AuthMethod;
use mcp_warden::keyring::KeyRing;
use mcp_warden::keys::SigningKey;
use mcp_warden::state::{Settings, Warden};
use mcp_warden::token::TokenSettings;
use warden_core::mcp::Limits;
use warden_core::policy::{Policy, Source};

pub(crate) const POLICY: &str = r#"
app_service:
  enabled: "yes"
  apps:
  - name: "bedrock-mcp"
    uri: "mcp+https://gw.example.com/mcp"
    public_addr: "mcp.example.com"
    labels: {service: bedrock}
    rewrite:
      headers:
      - "Authorization: Bearer {{internal.id_token}}"
      - "X-Team: {{internal.team}}"
---
kind: role
version: v8
metadata: {name: readonly}
spec:
  allow:
    app_labels: {service: bedrock}
    mcp: {tools: ['^get_.*$']}
---
kind: user
metadata: {name: alice}
spec:
  roles: [readonly]
  traits: {team: [blue, green]}
  api_keys: ['sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae'] # "foo"
  mtls_principals: ['spiffe://example.org/alice']
"#;

/// The warden; tool denials carry `denied_status`; `envoy_metadata` says which checks carry
/// decision metadata.
pub(crate) fn warden(denied_status: u16, envoy_metadata: EnvoyMetadata) -> Warden {
    auditing(denied_status, envoy_metadata, Audit::disabled())
}

/// [`warden`], writing its audit events to `audit`.
pub(crate) fn auditing(denied_status: u16, envoy_metadata: EnvoyMetadata, audit: Audit) -> Warden {
    let policy = Policy::load(&[Source::inline("common.yaml", POLICY)]).expect("policy");
    let (key, _) = SigningKey::generate().expect("key");
    let settings = Settings {
        token: TokenSettings { issuer: "https://warden.example.com".into(), lifetime: Duration::from_secs(300) },
        limits: Limits::default(),
        denied_status,
        auth_order: vec![AuthMethod::Mtls, AuthMethod::ApiKey],
        audit_skip_allowed: Vec::new(),
        envoy_metadata,
        bounds: Default::default(),
    };
    Warden::new(policy, KeyRing::single(key), settings, audit)
}

/// What Envoy sends for `method` with these header lines and body, on the route naming `app`
/// (if any), from the mTLS `principal` (empty: none).
pub(crate) fn request(
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
    app: Option<&str>,
    principal: &str,
) -> CheckRequest {
    let headers: HashMap<String, String> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer { principal: principal.to_owned(), ..Default::default() }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.to_owned(),
                    host: "mcp.example.com".to_owned(),
                    headers,
                    raw_body: body.as_bytes().to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: app
                .map(|a| [("app".to_owned(), a.to_owned())].into_iter().collect())
                .unwrap_or_default(),
            ..Default::default()
        }),
    }
}
