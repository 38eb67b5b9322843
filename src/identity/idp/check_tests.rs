//! The `jwt` method through a whole ext_authz check (in process, as Envoy calls it), and
//! the RFC 9728 metadata through the HTTP router on a loopback socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use serde_json::{Value, json};

use super::testkit;
use crate::audit::Audit;
use crate::identity::authn::AuthMethod;
use crate::keyring::KeyRing;
use crate::keys::SigningKey;
use crate::state::{Settings, Warden};
use crate::token::TokenSettings;
use warden_core::mcp::Limits;
use warden_core::policy::{Policy, Source};

const POLICY: &str = r#"
kind: app
version: v3
metadata: {name: demo, labels: {service: demo}}
spec:
  uri: "mcp+https://gw.example.com/mcp"
  rewrite:
    headers:
    - {name: Authorization, value: "Bearer {{internal.id_token}}"}
    - {name: X-Tenant, value: "{{external.tenant}}"}
---
kind: role
version: v8
metadata: {name: reader}
spec: {allow: {app_labels: {service: demo}, mcp: {tools: ['get_*']}}}
---
kind: role
version: v8
metadata: {name: admin}
spec: {allow: {app_labels: {service: demo}, mcp: {tools: ['*']}}}
---
kind: role
version: v8
metadata: {name: employee}
spec: {allow: {app_labels: {service: none}}}
"#;

fn warden() -> Warden {
    let policy = Policy::load(&[Source::inline("p.yaml", POLICY)]).expect("policy");
    let (key, _) = SigningKey::generate().expect("key");
    let settings = Settings {
        token: TokenSettings { issuer: "https://warden.example.com".into(), lifetime: Duration::from_secs(300) },
        limits: Limits::default(),
        denied_status: 200,
        auth_order: vec![AuthMethod::Mtls, AuthMethod::ApiKey, AuthMethod::Jwt],
        audit_skip_allowed: Vec::new(),
        envoy_metadata: crate::config::EnvoyMetadata::All,
        bounds: Default::default(),
    };
    Warden::new(policy, KeyRing::single(key), settings, Audit::disabled()).with_jwt(Arc::new(testkit::verifier()))
}

fn request(authorization: Option<&str>, tool: &str) -> CheckRequest {
    let mut headers: HashMap<String, String> = [
        (":path", "/mcp?session=1"),
        (":method", "POST"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if let Some(a) = authorization {
        headers.insert("authorization".into(), a.to_owned());
    }
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "POST".into(),
                    path: "/mcp?session=1".into(),
                    host: "mcp.example.com".into(),
                    headers,
                    raw_body: body.to_string().into_bytes(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: [("app".to_owned(), "demo".to_owned())].into_iter().collect(),
            ..Default::default()
        }),
    }
}

enum Outcome {
    Allow(HashMap<String, String>),
    Deny(i32, HashMap<String, String>, Value),
}

fn check(w: &Warden, req: &CheckRequest) -> Outcome {
    match w.check(req).http_response.expect("an HTTP response") {
        HttpResponse::OkResponse(ok) => {
            Outcome::Allow(ok.headers.into_iter().filter_map(|h| h.header).map(|h| (h.key, h.value)).collect())
        }
        HttpResponse::DeniedResponse(d) => Outcome::Deny(
            d.status.expect("status").code,
            d.headers.into_iter().filter_map(|h| h.header).map(|h| (h.key, h.value)).collect(),
            serde_json::from_str(&d.body).expect("JSON body"),
        ),
        HttpResponse::ErrorResponse(_) => panic!("unexpected error response"),
    }
}

const METADATA: &str = "https://warden.example.com/.well-known/oauth-protected-resource/mcp";

#[test]
fn no_token_is_a_401_pointing_at_the_resource_metadata() {
    let Outcome::Deny(status, headers, body) = check(&warden(), &request(None, "get_x")) else {
        panic!("deny expected")
    };
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], format!("Bearer resource_metadata=\"{METADATA}\""));
    assert_eq!((body["id"].clone(), body["error"]["code"].clone()), (json!(7), json!(-32001)));
}

#[test]
fn a_refused_token_is_a_401_invalid_token_pointing_at_the_resource_metadata() {
    let mut claims = testkit::claims();
    claims["exp"] = json!(testkit::now() - 3600);
    claims["iat"] = json!(testkit::now() - 4000);
    claims["nbf"] = json!(testkit::now() - 4000);
    let auth = format!("Bearer {}", testkit::token("RS256", &claims));
    let Outcome::Deny(status, headers, body) = check(&warden(), &request(Some(&auth), "get_x")) else {
        panic!("deny expected")
    };
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        format!("Bearer error=\"invalid_token\", resource_metadata=\"{METADATA}\"")
    );
    assert_eq!(body["error"]["message"], "invalid token");
}

#[test]
fn a_valid_token_is_replaced_by_our_id_token_carrying_the_mapped_roles() {
    let client_token = testkit::token("ES256", &testkit::claims());
    let auth = format!("Bearer {client_token}");
    let Outcome::Allow(set) = check(&warden(), &request(Some(&auth), "delete_everything")) else {
        panic!("allow expected")
    };
    let ours = set["authorization"].strip_prefix("Bearer ").expect("bearer");
    assert_ne!(ours, client_token, "the caller's token is never forwarded");
    let payload = ours.split('.').nth(1).expect("payload");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).expect("b64"),
    )
    .expect("json");
    assert_eq!(claims["iss"], "https://warden.example.com");
    assert_eq!(claims["sub"], "alice@example.com");
    assert_eq!(claims["roles"], json!(["admin", "reader", "employee"]));
    assert_eq!(claims["traits"]["groups"], json!(["mcp-admins", "staff"]));
}

#[test]
fn a_multi_valued_trait_and_a_value_with_the_separator_never_give_the_same_header() {
    // Issue 26.5: `tid: ["tenant-a","tenant-b"]` is sent as `tenant-a,tenant-b`;
    // `tid: "tenant-a,tenant-b"` could be read as the same two values, so it is not sent.
    let w = warden();
    let tenant = |tid: Value| {
        let mut claims = testkit::claims();
        claims["tid"] = tid;
        let auth = format!("Bearer {}", testkit::token("RS256", &claims));
        match check(&w, &request(Some(&auth), "get_x")) {
            Outcome::Allow(set) => set.get("x-tenant").cloned(),
            Outcome::Deny(status, ..) => panic!("allow expected, got {status}"),
        }
    };
    assert_eq!(tenant(json!(["tenant-a", "tenant-b"])).as_deref(), Some("tenant-a,tenant-b"));
    assert_eq!(tenant(json!("tenant-a")).as_deref(), Some("tenant-a"));
    assert_eq!(tenant(json!("tenant-a,tenant-b")), None);
    assert_eq!(tenant(json!(["tenant-a", "tenant-b,tenant-c"])), None);
    assert_eq!(tenant(json!(["tenant-a", " tenant-b"])), None);
}

#[test]
fn mapped_roles_decide_tools_like_any_other_roles() {
    let mut claims = testkit::claims();
    claims["groups"] = json!(["staff"]);
    claims["email"] = json!("bob@elsewhere.example");
    let auth = format!("Bearer {}", testkit::token("RS256", &claims));
    let w = warden();
    assert!(matches!(check(&w, &request(Some(&auth), "get_weather")), Outcome::Allow(_)));
    let Outcome::Deny(status, _, body) = check(&w, &request(Some(&auth), "delete_everything")) else {
        panic!("deny expected")
    };
    assert_eq!((status, body["error"]["code"].clone()), (200, json!(-32602)));
}

#[test]
fn a_token_that_maps_to_no_role_authenticates_but_reaches_no_app() {
    let mut claims = testkit::claims();
    claims["groups"] = json!(["visitors"]);
    claims["email"] = json!("eve@elsewhere.example");
    let auth = format!("Bearer {}", testkit::token("RS256", &claims));
    let Outcome::Deny(status, headers, body) = check(&warden(), &request(Some(&auth), "get_x")) else {
        panic!("deny expected")
    };
    assert_eq!((status, body["error"]["code"].clone()), (403, json!(-32003)));
    assert!(!headers.contains_key("www-authenticate"), "not an authentication failure");
}

#[tokio::test]
async fn rfc9728_metadata_names_the_identity_provider_for_every_resource_path() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = crate::http::router(Arc::new(warden()), Duration::from_secs(60));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.expect("GET") }
    };
    let json = |r: reqwest::Response| async move {
        serde_json::from_slice::<Value>(&r.bytes().await.expect("body")).expect("json")
    };
    let root = json(get("/.well-known/oauth-protected-resource").await).await;
    assert_eq!(root["resource"], "https://warden.example.com");
    assert_eq!(root["authorization_servers"], json!([testkit::ISSUER]));
    assert_eq!(root["bearer_methods_supported"], json!(["header"]));
    let mcp = get("/.well-known/oauth-protected-resource/other/mcp").await;
    assert_eq!(mcp.headers()["content-type"], "application/json");
    let mcp = json(mcp).await;
    assert_eq!(mcp["resource"], "https://warden.example.com/other/mcp");
    assert_eq!(get("/.well-known/oauth-protected-resourcex").await.status(), 404);
}
