//! What a check records about what a client sent (issue 19.5): audit lines and decision
//! metadata stay small whatever the size of the names, ids and headers in the request;
//! names longer than MCP allows are refused as invalid. In process, no network.

use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use mcp_warden::audit::Audit;
use mcp_warden::config::{AuditOutput, EnvoyMetadata};

mod common;

use common::request;

const JSON: (&str, &str) = ("content-type", "application/json");
const MIB: usize = 1 << 20;

/// Every audit line written while `run` checks requests on a warden that audits to a file.
fn audited(run: impl FnOnce(&mcp_warden::state::Warden)) -> Vec<String> {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let audit = Audit::start(&AuditOutput::File(path.clone())).expect("audit");
    let warden = common::auditing(200, EnvoyMetadata::All, audit);
    run(&warden);
    warden.close_audit();
    std::fs::read_to_string(&path).expect("read").lines().map(str::to_owned).collect()
}

/// The decision metadata: every field is a string.
fn metadata(r: &CheckResponse) -> Vec<(String, String)> {
    let fields = &r.dynamic_metadata.as_ref().expect("metadata").fields;
    fields
        .iter()
        .map(|(k, v)| match v.kind.as_ref() {
            Some(Kind::StringValue(s)) => (k.clone(), s.clone()),
            other => panic!("{k}: {other:?}"),
        })
        .collect()
}

fn body_of(r: &CheckResponse) -> serde_json::Value {
    match r.http_response.as_ref().expect("an HTTP response") {
        HttpResponse::DeniedResponse(d) => serde_json::from_str(&d.body).expect("JSON"),
        other => panic!("expected a denial: {other:?}"),
    }
}

/// A `tools/call` whose name, id, session id and request id are as long as the body limit
/// and Envoy's header limits let them be (name and id share the 1 MiB body).
fn huge_call(credentials: &[(&'static str, &'static str)]) -> envoy_types::ext_authz::v3::pb::CheckRequest {
    let name = "n".repeat(MIB - 300_000);
    let id = "i".repeat(299_000);
    let body = format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"tools/call","params":{{"name":"{name}"}}}}"#);
    let session = "s".repeat(60_000);
    let request_id = "r".repeat(60_000);
    let mut headers = vec![JSON, ("mcp-session-id", session.as_str()), ("x-request-id", request_id.as_str())];
    headers.extend_from_slice(credentials);
    request("POST", &headers, &body, Some("bedrock-mcp"), "")
}

#[test]
fn a_near_one_mebibyte_name_id_and_session_make_small_audit_lines_and_metadata_unauthenticated_or_not() {
    // Issue 19: one such request wrote a 1 MB audit line and a 1 MB Envoy access-log line.
    let mut responses = Vec::new();
    let lines = audited(|w| {
        responses.push(w.check(&huge_call(&[])));
        responses.push(w.check(&huge_call(&[("x-api-key", "foo")])));
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    // Unauthenticated, a body over 4 KiB is refused unread: no tool and no id to record.
    let recorded: [&[&str]; 2] = [&["session_id", "request_id"], &["tool", "jsonrpc_id", "session_id", "request_id"]];
    for (line, fields) in lines.iter().zip(recorded) {
        assert!(line.len() < 4096, "{} bytes: {}", line.len(), &line[..300]);
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
        for field in fields {
            let value = event[field].as_str().unwrap_or_else(|| panic!("{field} in {line}"));
            assert!(value.contains("…[truncated "), "{field} is cut visibly: {value}");
        }
    }
    let unauthenticated: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON");
    assert_eq!(unauthenticated["event"], "authentication.failed");
    assert!(unauthenticated.get("tool").is_none(), "the body was not read: {unauthenticated}");
    let refused: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON");
    assert_eq!((&refused["event"], &refused["reason"]), (&"request.denied".into(), &"invalid_name".into()));
    assert_eq!(body_of(&responses[1])["error"]["code"], -32602, "refused as an invalid name");
    for r in &responses {
        for (field, value) in metadata(r) {
            assert!(value.len() <= 512 + 40, "metadata {field}: {} bytes", value.len());
        }
    }
}

#[test]
fn tool_and_prompt_names_over_128_characters_are_refused_as_invalid_and_128_pass_the_check() {
    let call = |method: &str, name: &str| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{{"name":"{name}"}}}}"#);
        request("POST", &[JSON, ("x-api-key", "foo")], &body, Some("bedrock-mcp"), "")
    };
    let w = common::warden(200, EnvoyMetadata::All);
    // `get_` + 124 characters matches the role's `^get_.*$`: 128 characters are allowed…
    let longest = format!("get_{}", "é".repeat(124));
    let r = w.check(&call("tools/call", &longest));
    assert!(matches!(r.http_response, Some(HttpResponse::OkResponse(_))), "{r:?}");
    // …129 are refused before any rule reads them, tools and prompts alike.
    for method in ["tools/call", "prompts/get"] {
        let r = w.check(&call(method, &format!("{longest}x")));
        let body = body_of(&r);
        assert_eq!((body["id"].as_i64(), body["error"]["code"].as_i64()), (Some(7), Some(-32602)), "{method}");
        let reason = metadata(&r).into_iter().find(|(k, _)| k == "reason").map(|(_, v)| v);
        assert_eq!(reason.as_deref(), Some("invalid_name"), "{method}");
    }
}

#[test]
fn resource_uris_over_the_limit_are_refused_as_invalid() {
    let w = common::warden(200, EnvoyMetadata::All);
    let read = |uri: &str| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#);
        w.check(&request("POST", &[JSON, ("x-api-key", "foo")], &body, Some("bedrock-mcp"), ""))
    };
    let fits = format!("file:///{}", "a".repeat(8192 - 8));
    assert!(matches!(read(&fits).http_response, Some(HttpResponse::OkResponse(_))), "8,192 bytes pass");
    let body = body_of(&read(&format!("{fits}a")));
    assert_eq!(body["error"]["code"], -32602);
}

#[test]
fn an_undelivered_answer_is_audited_as_not_delivered_for_every_element_of_a_batch() {
    use mcp_warden::authz::Delivery;
    use prost::Message as _;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_a"}},
                    {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_b"}}]"#;
    let single = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_c"}}"#;
    let lines = audited(|w| {
        for (body, delivery) in [(batch, Delivery::StreamReset), (single, Delivery::DeadlineExceeded)] {
            let req = request("POST", &[JSON, ("x-api-key", "foo")], body, Some("bedrock-mcp"), "");
            let mut answered = false;
            w.check_then(&req.encode_to_vec(), |answer| {
                answered = !answer.is_empty();
                delivery
            });
            assert!(answered, "the answer is still handed over");
        }
        // Delivered: a plain allowed request.
        w.check(&request("POST", &[JSON, ("x-api-key", "foo")], single, Some("bedrock-mcp"), ""));
    });
    let events: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e["jsonrpc_id"].as_i64(), e["event"].as_str(), e["decision"].as_str(), e["undelivered"].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(1), Some("request.not_delivered"), Some("allow"), Some("stream_reset")),
            (Some(2), Some("request.not_delivered"), Some("allow"), Some("stream_reset")),
            (Some(3), Some("request.not_delivered"), Some("allow"), Some("deadline_exceeded")),
            (Some(3), Some("request.allowed"), Some("allow"), None),
        ]
    );
}
