//! Inputs shared by the criterion benches: realistic MCP bodies, the headers Envoy sends,
//! generated policies and a ready [`Warden`]. Each bench uses part of this.
#![allow(dead_code, unused_imports, reason = "each bench uses a different part")]

pub(crate) mod policy_gen;

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use mcp_warden::audit::Audit;
use mcp_warden::authz::{Settings, Warden};
use mcp_warden::config::AuthMethod;
use mcp_warden::keyring::KeyRing;
use mcp_warden::keys::SigningKey;
use mcp_warden::mcp::Limits;
use mcp_warden::policy::{Policy, Source};
use mcp_warden::token::TokenSettings;

pub(crate) use policy_gen::{APP, COMMON_TOOL, UserSpec, api_key, policy_yaml, spread_users, tool_of_role};

pub(crate) const UPSTREAM_URI: &str = "mcp+http://127.0.0.1:8080/mcp";

/// A `tools/call` body of exactly `len` bytes (when `len` is at least ~200) calling `tool`,
/// with arguments shaped like a search/RAG tool's: a query, filters, and as many documents
/// (with escapes and non-ASCII text) as fit, padded to the byte.
pub(crate) fn tools_call_body(tool: &str, len: usize) -> String {
    let head = format!(r#"{{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"#);
    let tail = r#"},"_meta":{"progressToken":"p-42"}}}"#;
    let mut args = String::from(
        r#""query":"latency budget for the ext_authz hop","limit":10,"filters":{"space":"ENG","updated_after":"2026-01-01"}"#,
    );
    let mut doc = 0;
    loop {
        let next = format!(
            r#","doc_{doc}":{{"id":"doc-{doc:05}","title":"Runbook \"{doc}\": Envoy ext_authz","text":"Step {doc}: check the \u00e9cart p99\nthen compare with the baseline — übersicht.","score":0.{doc:03}}}"#
        );
        if head.len() + args.len() + next.len() + tail.len() + 16 > len {
            break;
        }
        args.push_str(&next);
        doc += 1;
    }
    let used = head.len() + args.len() + tail.len() + r#","note":"""#.len();
    let pad = len.saturating_sub(used);
    args.push_str(r#","note":""#);
    args.extend(std::iter::repeat_n('x', pad));
    args.push('"');
    let body = format!("{head}{args}{tail}");
    debug_assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok(), "the body is JSON");
    body
}

/// A small `tools/list` body.
pub(crate) const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}"#;

/// The headers Envoy puts in a `CheckRequest` for an MCP client's POST, with `key` as the
/// API key (`Authorization: Bearer`).
pub(crate) fn envoy_headers(key: &str, body_len: usize) -> HashMap<String, String> {
    [
        (":authority", "127.0.0.1:10000"),
        (":method", "POST"),
        (":path", "/mcp"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("content-length", &body_len.to_string()),
        ("user-agent", "python-httpx/0.28.1"),
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-session-id", "5b0c3e8e6f3c4a58b8f3f6f4d2a1c9e7"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
        ("authorization", &format!("Bearer {key}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

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

/// Loads generated YAML as a policy file would be.
pub(crate) fn load(yaml: &str) -> Policy {
    Policy::load(&[Source::inline("bench-policy.yaml", yaml)]).expect("the generated policy is valid")
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
