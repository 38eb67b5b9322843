//! The whole ext_authz `Check` called in process, as Envoy would call it: no network.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckRequest, HeaderAppendAction, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use mcp_warden::config::EnvoyMetadata;
use mcp_warden::state::Warden;
use warden_core::policy::{Policy, Source};

mod common;

use common::request;

fn warden() -> Warden {
    common::warden(200, EnvoyMetadata::All)
}

fn call(tool: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":"req-1","method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#)
}

const JSON: (&str, &str) = ("content-type", "application/json");

enum Outcome {
    Allow { set: HashMap<String, (String, i32)>, remove: Vec<String> },
    Deny { status: i32, headers: HashMap<String, String>, body: serde_json::Value },
}

fn check(w: &Warden, req: &CheckRequest) -> Outcome {
    match w.check(req).http_response.expect("an HTTP response") {
        HttpResponse::OkResponse(ok) => Outcome::Allow {
            set: ok
                .headers
                .into_iter()
                .map(|h| {
                    let hv = h.header.expect("header");
                    (hv.key, (hv.value, h.append_action))
                })
                .collect(),
            remove: ok.headers_to_remove,
        },
        HttpResponse::DeniedResponse(d) => Outcome::Deny {
            status: d.status.expect("status").code,
            headers: d.headers.into_iter().filter_map(|h| h.header).map(|h| (h.key, h.value)).collect(),
            body: serde_json::from_str(&d.body).expect("JSON body"),
        },
        HttpResponse::ErrorResponse(_) => panic!("unexpected error response"),
    }
}

#[test]
fn allowed_call_replaces_authorization_and_strips_client_credentials() {
    let w = warden();
    let req = request(
        "POST",
        &[JSON, ("authorization", "Bearer foo"), ("x-api-key", "foo")],
        &call("get_weather"),
        Some("bedrock-mcp"),
        "",
    );
    let Outcome::Allow { set, remove } = check(&w, &req) else { panic!("expected allow") };
    let (auth, action) = &set["authorization"];
    assert!(auth.starts_with("Bearer ey") && auth.matches('.').count() == 2, "{auth}");
    assert_eq!(*action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32);
    assert_eq!(set["x-team"].0, "blue,green");
    assert!(remove.contains(&"x-api-key".to_owned()));
    assert!(!remove.contains(&"authorization".to_owned()), "a header that is set must not also be removed");
}

#[test]
fn second_call_reuses_the_cached_token() {
    let w = warden();
    let req = request("POST", &[JSON, ("x-api-key", "foo")], &call("get_time"), Some("bedrock-mcp"), "");
    let Outcome::Allow { set: first, .. } = check(&w, &req) else { panic!("allow") };
    let Outcome::Allow { set: second, .. } = check(&w, &req) else { panic!("allow") };
    assert_eq!(first["authorization"].0, second["authorization"].0);
    let metrics = w.metrics.render(0);
    assert!(metrics.contains("mcp_warden_tokens_minted_total 1"), "{metrics}");
    assert!(metrics.contains("mcp_warden_token_cache_hits_total 1"), "{metrics}");
}

#[test]
fn denied_tool_is_http_200_json_rpc_error_echoing_the_id() {
    let w = warden();
    let req = request("POST", &[JSON, ("x-api-key", "foo")], &call("delete_file"), Some("bedrock-mcp"), "");
    let Outcome::Deny { status, headers, body } = check(&w, &req) else { panic!("expected deny") };
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["id"], "req-1");
    assert_eq!(body["error"]["code"], -32602);
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("delete_file") && message.contains("denied by policy"), "{message}");
    assert!(!message.contains("readonly"), "no role names leak to the client");
}

#[test]
fn missing_and_bad_credentials_are_401_with_www_authenticate() {
    let w = warden();
    for (headers, www) in
        [(vec![JSON], "Bearer"), (vec![JSON, ("authorization", "Bearer nope")], "Bearer error=\"invalid_token\"")]
    {
        let req = request("POST", &headers, &call("get_weather"), Some("bedrock-mcp"), "");
        let Outcome::Deny { status, headers, body } = check(&w, &req) else { panic!("expected deny") };
        assert_eq!(status, 401);
        assert!(headers["www-authenticate"].starts_with(www), "{headers:?}");
        assert_eq!(body["id"], "req-1", "the id is echoed when the body has one");
        assert_eq!(body["error"]["code"], -32001);
    }
}

#[test]
fn an_unauthenticated_body_over_4_kib_is_refused_unread() {
    // Issue 19: the body was parsed before the caller was authenticated, so one request of
    // 1 MiB without credentials could hold the check thread for seconds. The body below
    // repeats a key past 4 KiB: read, it would be refused as malformed (400).
    let w = warden();
    let args: Vec<String> = (0..600).map(|i| format!(r#""k{i}":{i}"#)).collect();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"get_a","arguments":{{{},"k0":0}}}}}}"#,
        args.join(",")
    );
    assert!(body.len() > mcp_warden::authz::UNAUTHENTICATED_INSPECT_BYTES);
    let authenticated = request("POST", &[JSON, ("x-api-key", "foo")], &body, Some("bedrock-mcp"), "");
    let Outcome::Deny { status, body: answer, .. } = check(&w, &authenticated) else { panic!("expected deny") };
    assert_eq!((status, &answer["id"]), (400, &serde_json::json!(7)), "read when authenticated");
    for headers in [vec![JSON], vec![JSON, ("x-api-key", "nope")]] {
        let req = request("POST", &headers, &body, Some("bedrock-mcp"), "");
        let Outcome::Deny { status, body: answer, .. } = check(&w, &req) else { panic!("expected deny") };
        assert_eq!((status, answer["error"]["code"].as_i64()), (401, Some(-32001)));
        assert_eq!(answer["id"], serde_json::Value::Null, "unread: no id to echo");
    }
}

#[test]
fn a_batch_of_more_than_max_batch_messages_is_refused_whole() {
    // Issue 19: every element is decided and audited, so a 1 MiB batch of pings cost 15
    // times a 1 MiB call.
    let w = warden();
    let batch = |n: usize| {
        let elements: Vec<String> =
            (0..n).map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#)).collect();
        format!("[{}]", elements.join(","))
    };
    let max = warden_core::mcp::Limits::default().max_batch;
    let req = request("POST", &[JSON, ("x-api-key", "foo")], &batch(max), Some("bedrock-mcp"), "");
    assert!(matches!(check(&w, &req), Outcome::Allow { .. }), "{max} messages pass");
    let req = request("POST", &[JSON, ("x-api-key", "foo")], &batch(max + 1), Some("bedrock-mcp"), "");
    let Outcome::Deny { status, body, .. } = check(&w, &req) else { panic!("expected deny") };
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32600)));
    assert!(w.metrics.render(0).contains("batch_too_large"));
}

#[test]
fn mtls_principal_authenticates_and_host_names_the_app() {
    let w = warden();
    let req = request("POST", &[JSON], &call("get_weather"), None, "spiffe://example.org/alice");
    assert!(matches!(check(&w, &req), Outcome::Allow { .. }));
}

#[test]
fn unknown_app_is_denied() {
    let w = warden();
    let req = request("POST", &[JSON, ("x-api-key", "foo")], &call("get_weather"), Some("nope"), "");
    let Outcome::Deny { status, body, .. } = check(&w, &req) else { panic!("expected deny") };
    assert_eq!((status, body["error"]["code"].as_i64()), (403, Some(-32003)));
}

#[test]
fn malformed_body_is_never_allowed() {
    let w = warden();
    let req = request(
        "POST",
        &[JSON, ("x-api-key", "foo")],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","Method":"x"}"#,
        Some("bedrock-mcp"),
        "",
    );
    let Outcome::Deny { status, body, .. } = check(&w, &req) else { panic!("expected deny") };
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32600)));
}

#[test]
fn batch_with_a_denied_element_forwards_nothing_and_answers_each_request() {
    let w = warden();
    let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_a"}},
                   {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rm_b"}},
                   {"jsonrpc":"2.0","method":"notifications/progress"}]"#;
    let req = request("POST", &[JSON, ("x-api-key", "foo")], body, Some("bedrock-mcp"), "");
    let Outcome::Deny { status, body, .. } = check(&w, &req) else { panic!("expected deny") };
    assert_eq!(status, 200);
    let answers = body.as_array().expect("array");
    assert_eq!(answers.len(), 2, "notifications get no answer");
    assert_eq!((answers[0]["id"].as_i64(), answers[0]["error"]["code"].as_i64()), (Some(1), Some(-32000)));
    assert_eq!((answers[1]["id"].as_i64(), answers[1]["error"]["code"].as_i64()), (Some(2), Some(-32602)));
}

#[test]
fn the_reserved_list_header_is_never_set_and_client_copies_are_removed() {
    let w = warden();
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let req = request("POST", &[JSON, ("x-api-key", "foo")], list, Some("bedrock-mcp"), "");
    let Outcome::Allow { set, .. } = check(&w, &req) else { panic!("allow") };
    assert!(!set.contains_key("x-mcp-warden-list"), "the filter is gated on metadata, not a header");
    let req = request(
        "POST",
        &[JSON, ("x-api-key", "foo"), ("x-mcp-warden-list", "tools/list")],
        &call("get_a"),
        Some("bedrock-mcp"),
        "",
    );
    let Outcome::Allow { set, remove } = check(&w, &req) else { panic!("allow") };
    assert!(!set.contains_key("x-mcp-warden-list"));
    assert!(remove.contains(&"x-mcp-warden-list".to_owned()));
}

#[test]
fn decision_metadata_names_user_app_and_tool() {
    let w = warden();
    let req = request("POST", &[JSON, ("x-api-key", "foo")], &call("delete_file"), Some("bedrock-mcp"), "");
    let meta = w.check(&req).dynamic_metadata.expect("metadata");
    let field = |k: &str| match meta.fields.get(k).and_then(|v| v.kind.clone()) {
        Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => s,
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(field("user"), "alice");
    assert_eq!(field("app"), "bedrock-mcp");
    assert_eq!(field("tool"), "delete_file");
    assert_eq!(field("decision"), "deny");
    assert_eq!(field("reason"), "not_allowed_by_any_role");
}

#[test]
fn only_credential_headers_the_request_carries_are_removed() {
    let w = warden();
    let req = request("POST", &[JSON, ("authorization", "Bearer foo")], &call("get_a"), Some("bedrock-mcp"), "");
    let Outcome::Allow { remove, .. } = check(&w, &req) else { panic!("allow") };
    assert!(remove.is_empty(), "nothing to remove: {remove:?}");
    let req = request(
        "POST",
        &[JSON, ("x-api-key", "foo"), ("x-envoy-auth-partial-body", "false")],
        &call("get_a"),
        Some("bedrock-mcp"),
        "",
    );
    let Outcome::Allow { remove, .. } = check(&w, &req) else { panic!("allow") };
    assert_eq!(remove, ["x-api-key", "x-envoy-auth-partial-body"]);
}

#[test]
fn list_filter_inputs_are_in_the_metadata_of_what_the_list_filter_reads_only() {
    let w = warden();
    let keys = |body: &str| {
        let headers = [JSON, ("x-api-key", "foo"), ("mcp-protocol-version", "2025-03-26")];
        let req = request("POST", &headers, body, Some("bedrock-mcp"), "");
        let mut k: Vec<String> = w.check(&req).dynamic_metadata.expect("metadata").fields.into_keys().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&call("get_a")), ["app", "decision", "mcp_method", "reason", "tool", "user"]);
    assert_eq!(
        keys(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#),
        ["app", "decision", "jsonrpc_id", "mcp_method", "protocol_version", "reason", "user", "user_fingerprint"]
    );
    // Envoy's matcher sends every allowed batch through the filter, list call or not.
    let batch = format!(r#"[{{"jsonrpc":"2.0","id":1,"method":"ping"}},{}]"#, call("get_a"));
    assert_eq!(keys(&batch), ["app", "decision", "protocol_version", "reason", "user", "user_fingerprint"]);
}

#[test]
fn a_get_stream_goes_through_the_list_filter_and_a_delete_does_not() {
    let w = warden();
    let decide = |method: &str| {
        let req =
            request(method, &[("x-api-key", "foo"), ("accept", "text/event-stream")], "", Some("bedrock-mcp"), "");
        let answer = w.check(&req);
        let Some(HttpResponse::OkResponse(ok)) = answer.http_response else { panic!("{method} is allowed") };
        assert!(ok.headers.iter().all(|h| h.header.as_ref().is_some_and(|h| h.key != "x-mcp-warden-list")));
        let fields = answer.dynamic_metadata.expect("metadata").fields;
        let text = |k: &str| match fields.get(k).and_then(|v| v.kind.clone()) {
            Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => Some(s),
            _ => None,
        };
        (text("reason"), text("user_fingerprint").is_some())
    };
    // A resuming server may replay a list answer on the GET stream: the filter reads it
    // (Envoy's matcher keys on this reason; the fingerprint finds the user again).
    assert_eq!(decide("GET"), (Some("sse_stream".into()), true));
    assert_eq!(decide("DELETE"), (Some("session_end".into()), false));
}

/// With `envoy_metadata: list_filter`, an allowed call that the list filter does not read
/// carries no metadata at all (Envoy's matcher then skips the filter, as it does for a call
/// with metadata); list calls, GET streams, batches and denials keep theirs.
#[test]
fn list_filter_metadata_mode_sends_metadata_only_where_the_list_filter_or_a_denial_needs_it() {
    let w = common::warden(200, EnvoyMetadata::ListFilter);
    let reason = |method: &str, accept: &str, body: &str| {
        let req = request(method, &[JSON, ("accept", accept), ("x-api-key", "foo")], body, Some("bedrock-mcp"), "");
        let fields = w.check(&req).dynamic_metadata.map(|m| m.fields).unwrap_or_default();
        match fields.get("reason").and_then(|v| v.kind.clone()) {
            Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => Some(s),
            _ if fields.is_empty() => None,
            other => panic!("metadata without a reason: {other:?}"),
        }
    };
    let json = "application/json, text/event-stream";
    assert_eq!(reason("POST", json, &call("get_a")), None, "an allowed tools/call carries none");
    assert_eq!(reason("POST", json, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), None);
    assert_eq!(
        reason("POST", json, r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).as_deref(),
        Some("not_governed")
    );
    assert_eq!(reason("GET", "text/event-stream", "").as_deref(), Some("sse_stream"));
    assert_eq!(reason("DELETE", json, "").as_deref(), None, "ending a session is not filtered");
    assert_eq!(reason("POST", json, &call("delete_file")).as_deref(), Some("not_allowed_by_any_role"));
}

fn http(r: &mut CheckRequest) -> &mut HttpRequest {
    r.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()).expect("http")
}

#[test]
fn raw_header_lines_decide_like_the_header_map() {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let w = warden();
    let mut req = request("POST", &[], &call("get_a"), Some("bedrock-mcp"), "");
    let raw = |k: &str, v: &[u8]| HeaderValue { key: k.into(), raw_value: v.to_vec(), ..Default::default() };
    http(&mut req).header_map =
        Some(HeaderMap { headers: vec![raw("content-type", b"application/json"), raw("x-api-key", b"foo")] });
    assert!(matches!(check(&w, &req), Outcome::Allow { .. }));
    // The same key twice is joined (as Envoy's map form would): no longer a valid key.
    http(&mut req).header_map.as_mut().expect("map").headers.push(raw("x-api-key", b"foo"));
    assert!(matches!(check(&w, &req), Outcome::Deny { status: 401, .. }));
    // Bytes that are not UTF-8 are refused, never guessed at.
    http(&mut req).header_map =
        Some(HeaderMap { headers: vec![raw("content-type", b"application/json"), raw("x-api-key", b"fo\xff")] });
    let Outcome::Deny { status, body, .. } = check(&w, &req) else { panic!("deny") };
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32600)));
}

#[test]
fn policy_reload_changes_decisions_and_drops_cached_tokens() {
    let w = warden();
    let req = request("POST", &[JSON, ("x-api-key", "foo")], &call("get_weather"), Some("bedrock-mcp"), "");
    let Outcome::Allow { set: before, .. } = check(&w, &req) else { panic!("allow") };
    let stricter = common::POLICY.replace("'^get_.*$'", "'^get_time$'");
    w.replace_policy(Policy::load(&[Source::inline("v2.yaml", &stricter)]).expect("policy"));
    assert!(matches!(check(&w, &req), Outcome::Deny { .. }), "get_weather is no longer allowed");
    let time = request("POST", &[JSON, ("x-api-key", "foo")], &call("get_time"), Some("bedrock-mcp"), "");
    let Outcome::Allow { set: after, .. } = check(&w, &time) else { panic!("allow") };
    assert_ne!(before["authorization"].0, after["authorization"].0, "a new generation mints anew");
}

/// A ring whose only key signs an hour from now: nothing can sign yet.
fn ring_with_no_active_key(dir: &std::path::Path) -> mcp_warden::keyring::KeyRing {
    let keys = mcp_warden::keyring::KeyDir {
        dir: dir.join("keys"),
        read_only: false,
        propagation: std::time::Duration::from_secs(60),
        retain: std::time::Duration::from_secs(600),
    };
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let (ring, _) = keys.load_or_init(later).expect("key ring");
    assert!(ring.active(std::time::SystemTime::now()).is_none());
    ring
}

#[test]
fn without_a_key_that_can_sign_an_allowed_call_is_refused_never_forwarded_bare() {
    let w = warden();
    let tmp = tempfile::tempdir().expect("tmp");
    w.replace_keys(ring_with_no_active_key(tmp.path()));
    let req = request("POST", &[JSON, ("x-api-key", "foo")], &call("get_weather"), Some("bedrock-mcp"), "");
    let Outcome::Deny { status, body, .. } = check(&w, &req) else { panic!("no token: must not be allowed") };
    assert_eq!(status, 503);
    assert_eq!(
        (body["id"].clone(), body["error"]["code"].clone()),
        (serde_json::json!("req-1"), serde_json::json!(-32603))
    );
    let metrics = w.metrics.render(0);
    assert!(metrics.contains(r#"reason="token_unavailable""#), "{metrics}");
}

#[test]
fn a_trait_value_that_would_break_a_header_line_is_never_sent() {
    let w = warden();
    let injected =
        common::POLICY.replace("traits: {team: [blue, green]}", r#"traits: {team: ["blue\r\nx-injected: 1"]}"#);
    w.replace_policy(Policy::load(&[Source::inline("v2.yaml", &injected)]).expect("policy"));
    let req = request(
        "POST",
        &[JSON, ("x-api-key", "foo"), ("x-team", "client")],
        &call("get_weather"),
        Some("bedrock-mcp"),
        "",
    );
    let Outcome::Allow { set, remove } = check(&w, &req) else { panic!("allow") };
    assert!(set["authorization"].0.starts_with("Bearer ey"));
    assert!(!set.contains_key("x-team"), "{set:?}");
    assert!(remove.contains(&"x-team".to_owned()), "the client's own x-team is not forwarded either: {remove:?}");
}

#[test]
fn trait_values_a_comma_separated_header_could_confuse_are_never_sent() {
    // Issue 26.5: `[a, b]` and `["a,b"]` must not reach the upstream as one header value.
    let w = warden();
    for (traits, want) in [
        ("[blue, green]", Some("blue,green")),
        ("[blue]", Some("blue")),
        (r#"["blue,green"]"#, None),
        (r#"[blue, "green,red"]"#, None),
        (r#"[blue, ""]"#, None),
        (r#"[" blue", green]"#, None),
        (r#"["blue ", green]"#, None),
        (r#"["blue\tgreen"]"#, None),
    ] {
        let policy = common::POLICY.replace("traits: {team: [blue, green]}", &format!("traits: {{team: {traits}}}"));
        w.replace_policy(Policy::load(&[Source::inline("v2.yaml", &policy)]).expect("policy"));
        let req = request("POST", &[JSON, ("x-api-key", "foo")], &call("get_weather"), Some("bedrock-mcp"), "");
        let Outcome::Allow { set, remove } = check(&w, &req) else { panic!("allow") };
        assert_eq!(set.get("x-team").map(|(v, _)| v.as_str()), want, "{traits}");
        assert_eq!(remove.contains(&"x-team".to_owned()), want.is_none(), "{traits}: {remove:?}");
    }
}

#[tokio::test]
async fn readyz_answers_ready_only_while_a_key_can_sign() {
    let w = std::sync::Arc::new(warden());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/readyz", listener.local_addr().expect("addr"));
    let router = mcp_warden::http::router(w.clone(), std::time::Duration::from_secs(60));
    tokio::spawn(async move { axum::serve(listener, router).await });
    assert_eq!(reqwest::get(&url).await.expect("GET").status(), 200);
    let tmp = tempfile::tempdir().expect("tmp");
    w.replace_keys(ring_with_no_active_key(tmp.path()));
    assert_eq!(reqwest::get(&url).await.expect("GET").status(), 503);
}

#[test]
fn the_search_tool_cannot_be_called_as_a_task_whose_result_would_skip_the_list_filter() {
    let w = warden();
    let search = r#"{"jsonrpc":"2.0","id":"req-1","method":"tools/call","params":{"name":"x_amz_bedrock_agentcore_search","arguments":{"query":"x"},"task":{"ttl":60000}}}"#;
    let req = request("POST", &[JSON, ("x-api-key", "foo")], search, Some("bedrock-mcp"), "");
    let Outcome::Deny { status, body, .. } = check(&w, &req) else { panic!("refused") };
    assert_eq!((status, body["id"].clone(), body["error"]["code"].clone()), (400, "req-1".into(), (-32602).into()));
    assert!(w.metrics.render(0).contains(r#"reason="search_task_not_allowed""#));
    // Any other tool may run as a task (its answer lists no tools).
    let task = r#"{"jsonrpc":"2.0","id":"req-2","method":"tools/call","params":{"name":"get_weather","task":{}}}"#;
    let req = request("POST", &[JSON, ("x-api-key", "foo")], task, Some("bedrock-mcp"), "");
    assert!(matches!(check(&w, &req), Outcome::Allow { .. }));
}

#[test]
fn a_check_that_failed_is_a_500_denial_counted_by_its_reason() {
    use prost::Message as _;
    let w = warden();
    let answer = w.refuse_failed(std::time::Instant::now());
    let response = envoy_types::ext_authz::v3::pb::CheckResponse::decode(&answer[..]).expect("a CheckResponse");
    let Some(HttpResponse::DeniedResponse(d)) = response.http_response else { panic!("must be a denial") };
    assert_eq!(d.status.expect("status").code, 500);
    let body: serde_json::Value = serde_json::from_str(&d.body).expect("JSON body");
    assert_eq!(
        (body["id"].clone(), body["error"]["code"].clone()),
        (serde_json::Value::Null, serde_json::json!(-32603))
    );
    assert_eq!(response.dynamic_metadata.expect("metadata").fields["decision"], string_value("deny"));
    let metrics = w.metrics.render(0);
    assert!(metrics.contains(r#"reason="internal_error""#), "{metrics}");
}

fn string_value(s: &str) -> envoy_types::pb::google::protobuf::Value {
    envoy_types::pb::google::protobuf::Value {
        kind: Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s.into())),
    }
}
