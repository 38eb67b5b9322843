//! Inputs shared by the benches (the core's and the service's): realistic MCP bodies, the
//! headers Envoy sends, generated policies.
#![allow(dead_code, unused_imports, reason = "each bench uses a different part")]

pub(crate) mod policy_gen;

use std::collections::HashMap;

use warden_core::policy::{Policy, Source};

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

/// Loads generated YAML as a policy file would be.
pub(crate) fn load(yaml: &str) -> Policy {
    Policy::load(&[Source::inline("bench-policy.yaml", yaml)]).expect("the generated policy is valid")
}
