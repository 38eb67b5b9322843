//! The list filter's conversation with Envoy, driven in process: the decision metadata comes
//! from a real ext_authz `Check` of the same [`Warden`], as Envoy would forward it.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, Metadata};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyResponse, HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse, body_mutation, processing_request,
    processing_response,
};

use super::*;
use crate::audit::Audit;
use crate::identity::authn::AuthMethod;
use crate::keyring::KeyRing;
use crate::keys::SigningKey;
use crate::state::Settings;
use crate::token::TokenSettings;
use warden_core::decision::STREAM_ALLOWED;
use warden_core::mcp::Limits;
use warden_core::policy::{Policy, Source};

const POLICY: &str = r#"
kind: app
version: v3
metadata: {name: demo, labels: {service: demo}}
spec: {uri: "mcp+https://demo.example.com/mcp"}
---
kind: role
version: v8
metadata: {name: readers}
spec:
  allow:
    app_labels: {service: demo}
    mcp: {tools: ['^get_.*$']}
---
kind: user
metadata: {name: bob}
spec:
  roles: [readers]
  api_keys: ['sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae'] # "foo"
"#;

const SETTINGS: ListFilterSettings = ListFilterSettings { on_unparseable: OnUnparseable::Error, max_event_bytes: 4096 };

fn warden() -> Arc<Warden> {
    let policy = Policy::load(&[Source::inline("extproc.yaml", POLICY)]).expect("policy");
    let (key, _) = SigningKey::generate().expect("key");
    let settings = Settings {
        token: TokenSettings { issuer: "https://warden.example.com".into(), lifetime: Duration::from_secs(300) },
        limits: Limits::default(),
        denied_status: 200,
        auth_order: vec![AuthMethod::ApiKey],
        audit_skip_allowed: Vec::new(),
        envoy_metadata: crate::config::EnvoyMetadata::All,
        bounds: Default::default(),
    };
    Arc::new(Warden::new(policy, KeyRing::single(key), settings, Audit::disabled()))
}

/// What Envoy would forward to ext_proc after ext_authz allowed a POST of `body` for bob.
fn decision(w: &Warden, body: &str) -> Metadata {
    decision_of(w, "POST", body)
}

/// The same for an HTTP `method` (a GET carries no body).
fn decision_of(w: &Warden, method: &str, body: &str) -> Metadata {
    let headers: HashMap<String, String> = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-11-25"),
        ("x-api-key", "foo"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    host: "mcp.example.com".into(),
                    headers,
                    raw_body: body.as_bytes().to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: [("app".to_owned(), "demo".to_owned())].into_iter().collect(),
            ..Default::default()
        }),
    };
    let resp = w.check(&req);
    assert_eq!(resp.status.as_ref().map(|s| s.code), Some(0), "the check allows: {resp:?}");
    let md = resp.dynamic_metadata.expect("decision metadata");
    Metadata { filter_metadata: [(EXT_AUTHZ_NAMESPACE.to_owned(), md)].into_iter().collect(), ..Default::default() }
}

fn response_headers(md: Option<Metadata>, headers: &[(&str, &str)]) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(processing_request::Request::ResponseHeaders(HttpHeaders {
            headers: Some(HeaderMap {
                headers: headers
                    .iter()
                    .map(|(k, v)| HeaderValue {
                        key: (*k).into(),
                        raw_value: v.as_bytes().to_vec(),
                        ..Default::default()
                    })
                    .collect(),
            }),
            end_of_stream: false,
            ..Default::default()
        })),
        metadata_context: md,
        ..Default::default()
    }
}

/// A session that has seen SSE response headers for the decision `md`, and its answer.
fn sse_session(w: &Arc<Warden>, md: Metadata) -> (Session, ProcessingResponse) {
    let mut s = Session::new(w.clone(), SETTINGS);
    let r = s
        .handle(response_headers(Some(md), &[(":status", "200"), ("content-type", "text/event-stream")]))
        .expect("answer");
    (s, r)
}

fn body(bytes: &[u8], end_of_stream: bool) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(processing_request::Request::ResponseBody(HttpBody {
            body: bytes.to_vec(),
            end_of_stream,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn body_mode(r: &ProcessingResponse) -> Option<BodySendMode> {
    r.mode_override.as_ref().and_then(|m| BodySendMode::try_from(m.response_body_mode).ok())
}

fn immediate_of(r: &ProcessingResponse) -> (i32, serde_json::Value) {
    match &r.response {
        Some(processing_response::Response::ImmediateResponse(i)) => {
            (i.status.as_ref().map_or(0, |s| s.code), serde_json::from_slice(&i.body).expect("immediate body is JSON"))
        }
        other => panic!("expected an immediate response, got {other:?}"),
    }
}

fn body_response(r: ProcessingResponse) -> BodyResponse {
    match r.response {
        Some(processing_response::Response::ResponseBody(b)) => b,
        other => panic!("expected a body response, got {other:?}"),
    }
}

/// The bytes a body response sends on: `None` when it leaves the chunk as it was.
fn sent(b: &BodyResponse) -> Option<Vec<u8>> {
    match b.response.as_ref()?.body_mutation.as_ref()?.mutation.as_ref()? {
        body_mutation::Mutation::Body(bytes) => Some(bytes.clone()),
        body_mutation::Mutation::ClearBody(_) => Some(Vec::new()),
        body_mutation::Mutation::StreamedResponse(s) => Some(s.body.clone()),
    }
}

fn set_header(b: &BodyResponse, name: &str) -> Option<String> {
    let m = b.response.as_ref()?.header_mutation.as_ref()?;
    let h = m.set_headers.iter().filter_map(|o| o.header.as_ref()).find(|h| h.key == name)?;
    Some(String::from_utf8_lossy(&h.raw_value).into_owned())
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;
const LISTED: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_weather"},{"name":"delete_file"},{"name":"get_time"}],"nextCursor":"n"}}"#;
const FILTERED: &str =
    r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_weather"},{"name":"get_time"}],"nextCursor":"n"}}"#;

#[test]
fn a_json_list_is_buffered_filtered_and_gets_its_content_length_corrected() {
    let w = warden();
    let mut s = Session::new(w.clone(), SETTINGS);
    let len = LISTED.len().to_string();
    let r = s
        .handle(response_headers(
            Some(decision(&w, LIST)),
            &[(":status", "200"), ("content-type", "application/json"), ("content-length", &len)],
        ))
        .expect("answer");
    assert_eq!(body_mode(&r), Some(BodySendMode::Buffered));
    let b = body_response(s.handle(body(LISTED.as_bytes(), true)).expect("answer"));
    assert_eq!(sent(&b).as_deref(), Some(FILTERED.as_bytes()));
    assert_eq!(set_header(&b, "content-length"), Some(FILTERED.len().to_string()));
}

#[test]
fn a_large_or_unsized_json_list_is_streamed_held_back_and_filtered_whole() {
    let w = warden();
    let big = (JSON_BUFFERED_MAX + 1).to_string();
    for length in [Some(big.as_str()), None] {
        let mut s = Session::new(w.clone(), SETTINGS);
        let mut headers = vec![(":status", "200"), ("content-type", "application/json")];
        headers.extend(length.map(|l| ("content-length", l)));
        let r = s.handle(response_headers(Some(decision(&w, LIST)), &headers)).expect("answer");
        assert_eq!(body_mode(&r), Some(BodySendMode::Streamed), "{length:?}");
        let Some(processing_response::Response::ResponseHeaders(h)) = &r.response else { panic!("headers") };
        let removed = &h.response.as_ref().and_then(|c| c.header_mutation.as_ref()).expect("mutation").remove_headers;
        assert_eq!(removed, &["content-length"], "the length changes");
        let (head, tail) = LISTED.as_bytes().split_at(20);
        let b = body_response(s.handle(body(head, false)).expect("answer"));
        assert_eq!(sent(&b).as_deref(), Some(&b""[..]), "nothing leaves before the whole is judged");
        let b = body_response(s.handle(body(tail, true)).expect("answer"));
        assert_eq!(sent(&b).as_deref(), Some(FILTERED.as_bytes()));
        assert_eq!(set_header(&b, "content-length"), None, "headers are gone when streaming");
    }
}

#[test]
fn a_streamed_json_list_over_the_limit_becomes_an_error_and_nothing_of_it_leaves() {
    let w = warden();
    let settings = ListFilterSettings { max_event_bytes: 64, ..SETTINGS };
    let mut s = Session::new(w.clone(), settings);
    s.handle(response_headers(Some(decision(&w, LIST)), &[(":status", "200"), ("content-type", "application/json")]))
        .expect("answer");
    let b = body_response(s.handle(body(&LISTED.as_bytes()[..60], false)).expect("answer"));
    assert_eq!(sent(&b).as_deref(), Some(&b""[..]));
    let b = body_response(s.handle(body(&LISTED.as_bytes()[60..], false)).expect("answer"));
    let error: serde_json::Value = serde_json::from_slice(&sent(&b).expect("error body")).expect("JSON");
    assert_eq!((error["id"].clone(), error["error"]["code"].clone()), (7.into(), (-32603).into()));
    let b = body_response(s.handle(body(b"]}}", true)).expect("answer"));
    assert_eq!(sent(&b).as_deref(), Some(&b""[..]), "the rest is dropped");
}

#[test]
fn with_pass_a_streamed_json_list_over_the_limit_goes_through_unfiltered() {
    let w = warden();
    let settings = ListFilterSettings { on_unparseable: OnUnparseable::Pass, max_event_bytes: 64 };
    let mut s = Session::new(w.clone(), settings);
    s.handle(response_headers(Some(decision(&w, LIST)), &[(":status", "200"), ("content-type", "application/json")]))
        .expect("answer");
    let b = body_response(s.handle(body(&LISTED.as_bytes()[..60], false)).expect("answer"));
    assert_eq!(sent(&b).as_deref(), Some(&b""[..]), "held back while it may still be judged");
    let b = body_response(s.handle(body(&LISTED.as_bytes()[60..100], false)).expect("answer"));
    assert_eq!(sent(&b).as_deref(), Some(&LISTED.as_bytes()[..100]), "what was held, released");
    let b = body_response(s.handle(body(&LISTED.as_bytes()[100..], true)).expect("answer"));
    assert_eq!(sent(&b), None, "the rest passes as it comes");
}

#[test]
fn a_get_stream_filters_every_list_answer_on_it_and_passes_the_rest() {
    let w = warden();
    let (mut s, r) = sse_session(&w, decision_of(&w, "GET", ""));
    assert_eq!(body_mode(&r), Some(BodySendMode::Streamed));
    // A resumed stream: a notification, a replayed tools/list answer, a server request.
    let notification = "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
    let request = "id: 5\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"roots/list\"}\n\n";
    let b = body_response(s.handle(body(notification.as_bytes(), false)).expect("answer"));
    assert_eq!(sent(&b).as_deref(), Some(notification.as_bytes()));
    let replayed = format!("id: 4\ndata: {LISTED}\n\n");
    let b = body_response(s.handle(body(replayed.as_bytes(), false)).expect("answer"));
    assert_eq!(sent(&b), Some(format!("id: 4\ndata: {FILTERED}\n\n").into_bytes()));
    let b = body_response(s.handle(body(request.as_bytes(), true)).expect("answer"));
    assert_eq!(sent(&b).as_deref(), Some(request.as_bytes()));
}

#[test]
fn an_event_stream_is_filtered_event_by_event_across_chunks() {
    let w = warden();
    let (mut s, r) = sse_session(&w, decision(&w, LIST));
    assert_eq!(body_mode(&r), Some(BodySendMode::Streamed));
    let stream = format!(
        "id: 0\ndata:\n\nid: 1\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\n\n\
         retry: 500\nid: 2\nevent: message\ndata: {LISTED}\r\n\r\n"
    );
    let bytes = stream.as_bytes();
    let mut out = Vec::new();
    for (i, piece) in bytes.chunks(13).enumerate() {
        let last = (i + 1) * 13 >= bytes.len();
        out.extend(sent(&body_response(s.handle(body(piece, last)).expect("answer"))).expect("a mutation per chunk"));
    }
    let expected = format!(
        "id: 0\ndata:\n\nid: 1\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\n\n\
         retry: 500\nid: 2\nevent: message\ndata: {FILTERED}\r\n\r\n"
    );
    assert_eq!(String::from_utf8(out).expect("utf8"), expected);
}

#[test]
fn a_call_that_lists_nothing_asks_for_no_body() {
    let w = warden();
    let mut s = Session::new(w.clone(), SETTINGS);
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{}}}"#;
    let r = s
        .handle(response_headers(Some(decision(&w, call)), &[(":status", "200"), ("content-type", "application/json")]))
        .expect("answer");
    assert_eq!(r.mode_override, None);
    assert!(matches!(r.response, Some(processing_response::Response::ResponseHeaders(_))));
}

#[test]
fn an_error_status_passes_untouched() {
    let w = warden();
    let mut s = Session::new(w.clone(), SETTINGS);
    let r = s
        .handle(response_headers(Some(decision(&w, LIST)), &[(":status", "404"), ("content-type", "application/json")]))
        .expect("answer");
    assert_eq!(r.mode_override, None);
}

#[test]
fn without_decision_metadata_the_list_is_withheld() {
    let w = warden();
    let mut s = Session::new(w, SETTINGS);
    let r =
        s.handle(response_headers(None, &[(":status", "200"), ("content-type", "application/json")])).expect("answer");
    let (status, body) = immediate_of(&r);
    assert_eq!(status, 500);
    assert_eq!(body["error"]["code"], -32603);
}

#[test]
fn a_policy_reloaded_under_the_user_withholds_the_list_with_the_request_id() {
    let w = warden();
    let md = decision(&w, LIST);
    // bob's roles change between the check and the response: his fingerprint no longer matches.
    let changed = POLICY.replace("roles: [readers]", "roles: [readers, mcp-user]");
    w.replace_policy(Policy::load(&[Source::inline("extproc.yaml", &changed)]).expect("policy"));
    let mut s = Session::new(w, SETTINGS);
    let r = s
        .handle(response_headers(Some(md), &[(":status", "200"), ("content-type", "application/json")]))
        .expect("answer");
    let (status, body) = immediate_of(&r);
    assert_eq!(status, 200);
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["message"], "list response could not be filtered");
}

#[test]
fn a_long_lived_stream_is_filtered_by_the_policy_in_force_at_each_event() {
    let w = warden();
    let (mut s, _) = sse_session(&w, decision_of(&w, "GET", ""));
    let event = format!("data: {LISTED}\n\n");
    let before = body_response(s.handle(body(event.as_bytes(), false)).expect("answer"));
    assert_eq!(sent(&before), Some(format!("data: {FILTERED}\n\n").into_bytes()));
    // The role is narrowed while the stream is open (bob's identity is unchanged).
    let narrowed = POLICY.replace("'^get_.*$'", "'^get_time$'");
    w.replace_policy(Policy::load(&[Source::inline("extproc.yaml", &narrowed)]).expect("policy"));
    let after = body_response(s.handle(body(event.as_bytes(), true)).expect("answer"));
    let only_time = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_time"}],"nextCursor":"n"}}"#;
    assert_eq!(sent(&after), Some(format!("data: {only_time}\n\n").into_bytes()));
}

#[test]
fn an_unparseable_json_list_becomes_an_error_unless_configured_to_pass() {
    let broken = br#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"delete_file"}"#;
    let w = warden();
    let len = broken.len().to_string();
    let sized = [(":status", "200"), ("content-type", "application/json"), ("content-length", len.as_str())];
    let mut s = Session::new(w.clone(), SETTINGS);
    s.handle(response_headers(Some(decision(&w, LIST)), &sized));
    let b = body_response(s.handle(body(broken, true)).expect("answer"));
    let v: serde_json::Value = serde_json::from_slice(&sent(&b).expect("replaced")).expect("JSON error");
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (serde_json::json!(7), serde_json::json!(-32603)));
    assert_eq!(set_header(&b, "content-type").as_deref(), Some("application/json"));

    let pass = ListFilterSettings { on_unparseable: OnUnparseable::Pass, ..SETTINGS };
    let mut s = Session::new(w.clone(), pass);
    s.handle(response_headers(Some(decision(&w, LIST)), &sized));
    let b = body_response(s.handle(body(broken, true)).expect("answer"));
    assert_eq!(sent(&b), None, "passed as it was");
}

#[test]
fn an_unparseable_event_is_replaced_by_an_error_event() {
    let w = warden();
    let (mut s, _) = sse_session(&w, decision(&w, LIST));
    let b = body_response(
        s.handle(body(b"id: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[\n\n", true))
            .expect("answer"),
    );
    let out = String::from_utf8(sent(&b).expect("mutation")).expect("utf8");
    assert_eq!(
        out,
        "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32603,\"message\":\"list response could not be filtered\"}}\n\n"
    );
}

#[test]
fn an_event_too_large_to_hold_ends_the_stream_with_an_error() {
    let w = warden();
    let (mut s, _) = sse_session(&w, decision(&w, LIST));
    let big = format!("data: {}", "x".repeat(5000));
    let out = sent(&body_response(s.handle(body(big.as_bytes(), false)).expect("answer"))).expect("mutation");
    assert!(String::from_utf8_lossy(&out).starts_with("data: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\""));
    let rest = sent(&body_response(s.handle(body(b"more\n\n", true)).expect("answer"))).expect("mutation");
    assert!(rest.is_empty(), "nothing after the error");
}

#[test]
fn a_compressed_list_is_withheld() {
    let w = warden();
    let mut s = Session::new(w.clone(), SETTINGS);
    let r = s
        .handle(response_headers(
            Some(decision(&w, LIST)),
            &[(":status", "200"), ("content-type", "application/json"), ("content-encoding", "gzip")],
        ))
        .expect("answer");
    assert_eq!(immediate_of(&r).1["error"]["code"], -32603);
}

#[test]
fn an_empty_body_lists_nothing_and_passes() {
    let w = warden();
    let mut s = Session::new(w.clone(), SETTINGS);
    s.handle(response_headers(Some(decision(&w, LIST)), &[(":status", "200"), ("content-type", "application/json")]));
    let b = body_response(s.handle(body(b"", true)).expect("answer"));
    assert_eq!(sent(&b), None);
}

/// The answer a session gives to a list response with these headers, for bob's POSTed
/// tools/list (`get: false`) or his GET stream.
fn headers_answer(
    w: &Arc<Warden>,
    settings: ListFilterSettings,
    get: bool,
    headers: &[(&str, &str)],
) -> ProcessingResponse {
    let md = if get { decision_of(w, "GET", "") } else { decision(w, LIST) };
    let mut s = Session::new(w.clone(), settings);
    let all: Vec<(&str, &str)> = [(":status", "200")].into_iter().chain(headers.iter().copied()).collect();
    s.handle(response_headers(Some(md), &all)).expect("answer")
}

/// Issue 26 (1): the upstream declared a charset the filter does not read (the Python SDK
/// decodes an event stream by it: in UTF-16 or UTF-7 the filter saw no `data:` line and
/// passed the whole list). Refused at the headers, POST or GET, before any byte of the body.
#[test]
fn a_list_response_in_any_charset_but_utf8_is_withheld() {
    let w = warden();
    for ct in [
        "text/event-stream; charset=utf-16le",
        "text/event-stream; charset=\"UTF-16BE\"",
        "text/event-stream; charset=utf-7",
        "text/event-stream; charset=iso-8859-1",
        "text/event-stream; charset=utf8",
        "text/event-stream; charset=utf-8; charset=utf-16",
        "text/event-stream; charset*=utf-8''utf-16",
        "application/json; charset=utf-7",
        "application/json; charset=UTF-16",
    ] {
        let r = headers_answer(&w, SETTINGS, false, &[("content-type", ct)]);
        let (status, body) = immediate_of(&r);
        assert_eq!((status, &body["id"], &body["error"]["code"]), (200, &7.into(), &(-32603).into()), "{ct}");
        let (_, on_get) = immediate_of(&headers_answer(&w, SETTINGS, true, &[("content-type", ct)]));
        assert_eq!((&on_get["id"], &on_get["error"]["code"]), (&serde_json::Value::Null, &(-32603).into()), "{ct}");
    }
    for ct in
        ["text/event-stream; charset=utf-8", "text/event-stream;charset=\"UTF-8\"", "application/json; charset=utf-8"]
    {
        let r = headers_answer(&w, SETTINGS, false, &[("content-type", ct)]);
        assert!(matches!(r.response, Some(processing_response::Response::ResponseHeaders(_))), "{ct}: {r:?}");
        assert!(r.mode_override.is_some(), "{ct}: the body is asked for");
    }
}

#[test]
fn with_pass_a_list_in_another_charset_goes_through_unfiltered() {
    let w = warden();
    let pass = ListFilterSettings { on_unparseable: OnUnparseable::Pass, ..SETTINGS };
    let r = headers_answer(&w, pass, false, &[("content-type", "text/event-stream; charset=utf-16le")]);
    assert!(matches!(r.response, Some(processing_response::Response::ResponseHeaders(_))));
    assert_eq!(r.mode_override, None, "no body asked for: it passes as it is");
}

/// Issue 26 (1): the filter looked at the first `content-encoding` line only; httpx decodes
/// every line's codings (`identity` then `gzip`: a gzipped event stream the filter saw no
/// event in).
#[test]
fn a_coding_on_any_content_encoding_line_withholds_the_list() {
    let w = warden();
    let sse = ("content-type", "text/event-stream");
    for lines in [
        &[sse, ("content-encoding", "identity"), ("content-encoding", "gzip")][..],
        &[sse, ("content-encoding", "identity, gzip")],
        &[sse, ("content-type", "text/event-stream")],
    ] {
        let (status, body) = immediate_of(&headers_answer(&w, SETTINGS, false, lines));
        assert_eq!((status, &body["error"]["code"]), (200, &(-32603).into()), "{lines:?}");
    }
}

/// A UTF-8 byte order mark opening an event stream is skipped as the WHATWG parser (browsers,
/// the TypeScript SDK) skips it, so the events behind it are filtered; it is kept in front of
/// them. (httpx keeps it as part of the first line's field name, which it then ignores: it
/// sees less than the filter, never more.) A JSON body with one is no JSON to the filter, nor
/// to the Python SDK: refused.
#[test]
fn a_byte_order_mark_is_read_as_clients_read_it() {
    let w = warden();
    let (mut s, _) = sse_session(&w, decision(&w, LIST));
    let stream = format!("\u{FEFF}event: message\ndata: {LISTED}\n\n");
    let out = sent(&body_response(s.handle(body(stream.as_bytes(), true)).expect("answer"))).expect("rewritten");
    assert_eq!(String::from_utf8(out).expect("utf8"), format!("\u{FEFF}event: message\ndata: {FILTERED}\n\n"));

    let mut s = Session::new(w.clone(), SETTINGS);
    let with_bom = format!("\u{FEFF}{LISTED}");
    let len = with_bom.len().to_string();
    s.handle(response_headers(
        Some(decision(&w, LIST)),
        &[(":status", "200"), ("content-type", "application/json"), ("content-length", &len)],
    ));
    let b = body_response(s.handle(body(with_bom.as_bytes(), true)).expect("answer"));
    let v: serde_json::Value = serde_json::from_slice(&sent(&b).expect("replaced")).expect("JSON error");
    assert_eq!((&v["id"], &v["error"]["code"]), (&7.into(), &(-32603).into()));
}

/// Issue 26 (2a): a client routes a response by its id. On the POST of a tools/list, an
/// answer with another id (maybe a pending prompts/list's, whose list this filter would not
/// look for) is refused, in JSON and in an event; a GET stream still filters every answer on
/// it by shape.
#[test]
fn an_answer_with_another_id_is_refused_where_one_call_is_answered() {
    let w = warden();
    let other = LISTED.replace("\"id\":7", "\"id\":8");
    let mut s = Session::new(w.clone(), SETTINGS);
    let len = other.len().to_string();
    s.handle(response_headers(
        Some(decision(&w, LIST)),
        &[(":status", "200"), ("content-type", "application/json"), ("content-length", &len)],
    ));
    let b = body_response(s.handle(body(other.as_bytes(), true)).expect("answer"));
    let v: serde_json::Value = serde_json::from_slice(&sent(&b).expect("replaced")).expect("JSON error");
    assert_eq!((&v["id"], &v["error"]["code"]), (&7.into(), &(-32603).into()));

    let (mut s, _) = sse_session(&w, decision(&w, LIST));
    let prompts = r#"{"jsonrpc":"2.0","id":8,"result":{"prompts":[{"name":"secret"}]}}"#;
    let out = sent(&body_response(s.handle(body(format!("data: {prompts}\n\n").as_bytes(), true)).expect("answer")));
    let out = String::from_utf8(out.expect("rewritten")).expect("utf8");
    assert!(out.starts_with("data: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32603"), "{out}");

    let (mut s, _) = sse_session(&w, decision_of(&w, "GET", ""));
    let out = sent(&body_response(s.handle(body(format!("data: {other}\n\n").as_bytes(), true)).expect("answer")));
    assert_eq!(out, Some(format!("data: {}\n\n", FILTERED.replace("\"id\":7", "\"id\":8")).into_bytes()));
}

/// The value of `mcp_warden_list_filter_refusals_total` for these labels (0 when absent).
fn refusals(w: &Warden, kind: &str, reason: &str, action: &str) -> u64 {
    let series =
        format!("mcp_warden_list_filter_refusals_total{{kind=\"{kind}\",reason=\"{reason}\",action=\"{action}\"}} ");
    w.metrics.render(0).lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or(0)
}

#[test]
fn every_list_given_up_on_is_counted_by_kind_reason_and_action() {
    let w = warden();
    let pass = ListFilterSettings { on_unparseable: OnUnparseable::Pass, ..SETTINGS };
    let utf16 = [("content-type", "application/json; charset=utf-16")];
    headers_answer(&w, SETTINGS, false, &utf16);
    headers_answer(&w, SETTINGS, false, &utf16);
    headers_answer(&w, pass, true, &utf16);
    headers_answer(&w, SETTINGS, false, &[("content-type", "application/json"), ("content-encoding", "gzip")]);
    let mut s = Session::new(w.clone(), SETTINGS);
    s.handle(response_headers(None, &[(":status", "200")]));
    let (mut s, _) = sse_session(&w, decision(&w, LIST));
    s.handle(body(b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[\n\n", false));
    s.handle(body(format!("data: {}", "x".repeat(5000)).as_bytes(), false));

    assert_eq!(refusals(&w, "tools/list", "content_type_parameter", "refused"), 2);
    assert_eq!(refusals(&w, "stream", "content_type_parameter", "passed"), 1);
    assert_eq!(refusals(&w, "tools/list", "content_type_parameter", "passed"), 0);
    assert_eq!(refusals(&w, "tools/list", "compressed", "refused"), 1);
    assert_eq!(refusals(&w, "unknown", "no_decision", "refused"), 1);
    assert_eq!(refusals(&w, "tools/list", "unparseable", "refused"), 1);
    assert_eq!(refusals(&w, "tools/list", "event_too_large", "refused"), 1);
}

/// The Struct a real check emits reads back through the one contract with the values the
/// check decided, and writing what was read gives the same Struct again.
#[test]
fn the_metadata_a_check_emits_reads_back_through_the_decision_contract() {
    let w = warden();
    let fingerprint = w.snapshot().policy.user("bob").expect("bob").fingerprint;
    let read = |md: &Metadata| -> Vec<(String, String)> {
        let fields = &md.filter_metadata[EXT_AUTHZ_NAMESPACE];
        let d = DecisionMetadata::from_fields(|k| string_field(fields, k)).expect("readable");
        let written: Vec<(String, String)> = d.fields().iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let stored: Vec<(String, String)> = DecisionMetadata::KEYS
            .iter()
            .filter_map(|k| Some(((*k).into(), string_field(fields, k)?.into())))
            .collect();
        assert_eq!(written, stored, "every emitted key is read, and read as emitted");
        assert_eq!(fields.fields.len(), stored.len(), "no key outside the contract: {fields:?}");
        written
    };
    let list = decision(&w, LIST);
    let fields = &list.filter_metadata[EXT_AUTHZ_NAMESPACE];
    let d = DecisionMetadata::from_fields(|k| string_field(fields, k)).expect("readable");
    assert_eq!(
        d,
        DecisionMetadata {
            user: Some("bob"),
            app: Some("demo"),
            mcp_method: Some("tools/list"),
            jsonrpc_id: Some("7"),
            user_fingerprint: Some(decision::Fingerprint::new(fingerprint)),
            protocol_version: Some("2025-11-25"),
            ..DecisionMetadata::new(true, "not_governed")
        }
    );
    assert_eq!(d.list_kind(), Some(ListKind::Tools));
    read(&list);

    let call = r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"get_weather","arguments":{}}}"#;
    let called = read(&decision(&w, call));
    let value = |k: &str| called.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!((value(key::TOOL), value(key::USER_FINGERPRINT)), (Some("get_weather"), None));

    let stream = read(&decision_of(&w, "GET", ""));
    assert!(stream.contains(&(key::REASON.into(), STREAM_ALLOWED.into())), "{stream:?}");
}

/// The test policy with demo's `get_weather` pinned as `{"name":"get_weather"}` (so `get_time`
/// is unpinned).
fn pin_get_weather(w: &Warden, action: &str) {
    use warden_core::policy::pins::{PinKind, definition_of};
    let pin = definition_of(PinKind::Tool, r#"{"name":"get_weather"}"#).expect("definition").digest;
    let pinned = format!(
        "{POLICY}---\nkind: pins\nversion: v1\nmetadata: {{name: demo}}\nspec:\n  action: {action}\n  tools:\n    get_weather: {{digest: '{pin}'}}\n"
    );
    w.replace_policy(Policy::load(&[Source::inline("pinned.yaml", &pinned)]).expect("policy"));
}

fn pin_drift(w: &Warden, reason: &str, action: &str) -> bool {
    let series =
        format!(r#"mcp_warden_pin_drift_total{{app="demo",kind="tool",reason="{reason}",action="{action}"}} 1"#);
    w.metrics.render(0).lines().any(|l| l == series)
}

#[test]
fn with_pins_in_hide_an_unpinned_tool_is_removed_and_counted_by_app() {
    let w = warden();
    pin_get_weather(&w, "hide");
    let mut s = Session::new(w.clone(), SETTINGS);
    let len = LISTED.len().to_string();
    s.handle(response_headers(
        Some(decision(&w, LIST)),
        &[(":status", "200"), ("content-type", "application/json"), ("content-length", &len)],
    ));
    let b = body_response(s.handle(body(LISTED.as_bytes(), true)).expect("answer"));
    let want = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_weather"}],"nextCursor":"n"}}"#;
    assert_eq!(sent(&b).as_deref(), Some(want.as_bytes()));
    assert!(pin_drift(&w, "unpinned", "hide"), "{}", w.metrics.render(0));
}

#[test]
fn with_pins_in_flag_an_event_stream_passes_untouched_and_the_drift_is_counted() {
    let w = warden();
    pin_get_weather(&w, "flag");
    let (mut s, _) = sse_session(&w, decision(&w, LIST));
    let event = format!("id: 2\nevent: message\ndata: {FILTERED}\n\n");
    let b = body_response(s.handle(body(event.as_bytes(), true)).expect("answer"));
    assert_eq!(sent(&b).as_deref(), Some(event.as_bytes()), "flag rewrites nothing");
    assert!(pin_drift(&w, "unpinned", "flag"), "{}", w.metrics.render(0));
}

#[test]
fn with_pins_in_hide_a_get_stream_drops_an_unpinned_tool_from_every_list_answer_on_it() {
    let w = warden();
    pin_get_weather(&w, "hide");
    let (mut s, _) = sse_session(&w, decision_of(&w, "GET", ""));
    let replayed = format!("id: 4\ndata: {LISTED}\n\n");
    let b = body_response(s.handle(body(replayed.as_bytes(), false)).expect("answer"));
    let want = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_weather"}],"nextCursor":"n"}}"#;
    assert_eq!(sent(&b), Some(format!("id: 4\ndata: {want}\n\n").into_bytes()));
    assert!(pin_drift(&w, "unpinned", "hide"), "{}", w.metrics.render(0));
}
