//! Building Envoy `CheckResponse`s: allow with header mutations, or deny with a JSON-RPC
//! error body that echoes the request id.
//!
//! Owns the wire shape of every answer a client can see. Messages are fixed strings or name
//! only what the client itself sent; nothing internal (roles, rules, errors) is included.

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encoded_len_varint, key_len};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::identity::authn::AuthError;
use warden_core::mcp::{Message, Rejection};
use warden_core::policy::Decision;

/// gRPC status codes Envoy reads from a check (an allow's status is OK, the default).
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

/// An answer to a check, before it becomes protobuf.
#[derive(Debug)]
pub enum Reply {
    Allow { set: Vec<(Arc<str>, String)>, remove: Vec<String> },
    Deny { status: u16, www_authenticate: Option<String>, body: String },
}

impl Reply {
    pub fn allow(set: Vec<(Arc<str>, String)>, remove: Vec<String>) -> Reply {
        Reply::Allow { set, remove }
    }

    pub fn error(status: u16, id: Option<&RawValue>, code: i32, message: &str) -> Reply {
        Reply::Deny { status, www_authenticate: None, body: jsonrpc_error(id, code, message) }
    }

    pub fn rejection(r: &Rejection<'_>) -> Reply {
        Reply::error(r.status, r.id, r.code, &r.message)
    }

    /// A failed authentication: 401 with `WWW-Authenticate: Bearer` (RFC 6750), carrying
    /// `error="invalid_token"` when a credential was presented and, when the `jwt` method is
    /// configured, `resource_metadata="URL"` (RFC 9728) so an MCP client can find the
    /// authorization server. An identity the policy cannot use is a 403 instead: the token
    /// itself was fine, and a 401 would only send the client to sign in again.
    pub fn unauthenticated(e: AuthError, id: Option<&RawValue>, resource_metadata: Option<&str>) -> Reply {
        if e == AuthError::Unusable {
            return Reply::error(403, id, -32003, &e.to_string());
        }
        let mut challenge = String::from("Bearer");
        if e != AuthError::Missing {
            challenge.push_str(" error=\"invalid_token\"");
        }
        if let Some(url) = resource_metadata {
            challenge.push_str(if e == AuthError::Missing { " " } else { ", " });
            challenge.push_str("resource_metadata=\"");
            challenge.extend(url.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()));
            challenge.push('"');
        }
        Reply::Deny { status: 401, www_authenticate: Some(challenge), body: jsonrpc_error(id, -32001, &e.to_string()) }
    }

    /// A batch with a denied element: an error for every request in it (notifications get
    /// none, as JSON-RPC says), -32602 for the denied ones and -32000 for the rest.
    pub fn batch_denied(msgs: &[Message<'_>], outcomes: &[Result<Decision<'_>, Rejection<'_>>], status: u16) -> Reply {
        let mut body = String::from("[");
        for (msg, outcome) in msgs.iter().zip(outcomes) {
            let Some(id) = msg.id.filter(|_| msg.method.is_some()) else { continue };
            let entry = match outcome {
                Ok(d) if d.allowed => {
                    jsonrpc_error(Some(id), -32000, "not executed: another request in this batch was denied by policy")
                }
                Ok(_) => {
                    jsonrpc_error(Some(id), -32602, "request denied by policy (MCP access is enforced by your roles)")
                }
                Err(r) => jsonrpc_error(Some(id), r.code, &r.message),
            };
            if body.len() > 1 {
                body.push(',');
            }
            body.push_str(&entry);
        }
        body.push(']');
        Reply::Deny { status, www_authenticate: None, body }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Reply::Allow { .. })
    }

    /// The encoded `CheckResponse`, carrying `metadata` as the check's dynamic metadata (Envoy
    /// files it under `envoy.filters.http.ext_authz` for later filters and access logs).
    /// Allow answers, the hot path, are encoded by hand from borrowed strings (see
    /// [`encode_allow`]); denials go through the generated types.
    pub fn encode(self, metadata: &[(&str, &str)]) -> Vec<u8> {
        match self {
            Reply::Allow { set, remove } => encode_allow(&set, &remove, metadata),
            Reply::Deny { status, www_authenticate, body } => {
                let mut response = deny(status, www_authenticate.as_deref(), &body);
                response.dynamic_metadata = Some(self::metadata(metadata.iter().copied()));
                response.encode_to_vec()
            }
        }
    }
}

/// `CheckResponse { status: OK, ok_response: { headers (overwrite), headers_to_remove },
/// dynamic_metadata }` in protobuf wire format, written straight from the strings: no
/// message tree, no hash map, one buffer of the exact size. Field numbers are those of
/// `envoy.service.auth.v3.CheckResponse`, `OkHttpResponse`, `config.core.v3.HeaderValueOption`
/// / `HeaderValue` and `google.protobuf.Struct` / `Value`; the tests decode the result with
/// the generated types.
pub fn encode_allow(set: &[(Arc<str>, String)], remove: &[String], metadata: &[(&str, &str)]) -> Vec<u8> {
    const OVERWRITE: u64 = HeaderAppendAction::OverwriteIfExistsOrAdd as u64;
    let header_len = |k: &str, v: &str| field_len(1, k.len()) + field_len(2, v.len());
    let option_len = |k: &str, v: &str| field_len(1, header_len(k, v)) + key_len(3) + encoded_len_varint(OVERWRITE);
    let ok_len = set.iter().map(|(k, v)| field_len(2, option_len(k, v))).sum::<usize>()
        + remove.iter().map(|r| field_len(5, r.len())).sum::<usize>();
    let value_len = |v: &str| field_len(3, v.len());
    let entry_len = |k: &str, v: &str| field_len(1, k.len()) + field_len(2, value_len(v));
    let struct_len = metadata.iter().map(|(k, v)| field_len(1, entry_len(k, v))).sum::<usize>();
    let total = field_len(1, 0) + field_len(3, ok_len) + if metadata.is_empty() { 0 } else { field_len(4, struct_len) };

    let mut buf = Vec::with_capacity(total);
    put_len(1, 0, &mut buf); // status: google.rpc.Status { code: OK }
    put_len(3, ok_len, &mut buf);
    for (k, v) in set {
        put_len(2, option_len(k, v), &mut buf);
        put_len(1, header_len(k, v), &mut buf);
        put_str(1, k, &mut buf);
        put_str(2, v, &mut buf);
        encode_key(3, WireType::Varint, &mut buf);
        put_varint(OVERWRITE, &mut buf);
    }
    for r in remove {
        put_str(5, r, &mut buf);
    }
    if !metadata.is_empty() {
        put_len(4, struct_len, &mut buf);
        for (k, v) in metadata {
            put_len(1, entry_len(k, v), &mut buf);
            put_str(1, k, &mut buf);
            put_len(2, value_len(v), &mut buf);
            put_str(3, v, &mut buf);
        }
    }
    debug_assert_eq!(buf.len(), total);
    buf
}

/// The size of a length-delimited field whose payload is `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

#[inline]
fn put_len(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    put_varint(len as u64, buf);
}

/// prost's `encode_varint`, inlined: most varints here are one byte.
#[inline(always)]
fn put_varint(mut v: u64, buf: &mut Vec<u8>) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    put_len(tag, s.len(), buf);
    buf.extend_from_slice(s.as_bytes());
}

/// A flat string map as a protobuf `Struct`.
fn metadata<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Struct {
    Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value { kind: Some(Kind::StringValue(v.to_owned())) }))
            .collect(),
    }
}

fn header(key: String, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key, value, ..Default::default() }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// A denied check with a JSON body.
pub fn deny(status: u16, www_authenticate: Option<&str>, body: &str) -> CheckResponse {
    let mut headers = vec![header("content-type".into(), "application/json".into())];
    if let Some(w) = www_authenticate {
        headers.push(header("www-authenticate".into(), w.into()));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: if status == 401 { UNAUTHENTICATED } else { PERMISSION_DENIED },
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(status) }),
            headers,
            body: body.to_owned(),
        })),
        dynamic_metadata: None,
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    jsonrpc: &'static str,
    id: Option<&'a RawValue>,
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i32,
    message: &'a str,
}

/// `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…}}`; `id` is `null` when unknown.
pub fn jsonrpc_error(id: Option<&RawValue>, code: i32, message: &str) -> String {
    serde_json::to_string(&ErrorEnvelope { jsonrpc: "2.0", id, error: ErrorObject { code, message } })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_echoes_string_and_number_ids_exactly() {
        let id: Box<RawValue> = RawValue::from_string("\"a-1\"".into()).expect("raw");
        assert_eq!(
            jsonrpc_error(Some(&id), -32602, "no"),
            r#"{"jsonrpc":"2.0","id":"a-1","error":{"code":-32602,"message":"no"}}"#
        );
        let id: Box<RawValue> = RawValue::from_string("42".into()).expect("raw");
        assert!(jsonrpc_error(Some(&id), -1, "x").contains(r#""id":42"#));
        assert!(jsonrpc_error(None, -1, "x").contains(r#""id":null"#));
    }

    fn challenge(e: AuthError, metadata: Option<&str>) -> (u16, Option<String>) {
        match Reply::unauthenticated(e, None, metadata) {
            Reply::Deny { status, www_authenticate, .. } => (status, www_authenticate),
            Reply::Allow { .. } => panic!("deny expected"),
        }
    }

    #[test]
    fn a_401_challenge_names_the_resource_metadata_when_the_jwt_method_is_configured() {
        let url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
        assert_eq!(challenge(AuthError::Missing, None), (401, Some("Bearer".into())));
        assert_eq!(challenge(AuthError::Invalid, None), (401, Some("Bearer error=\"invalid_token\"".into())));
        assert_eq!(
            challenge(AuthError::Missing, Some(url)),
            (401, Some(format!("Bearer resource_metadata=\"{url}\"")))
        );
        let token = AuthError::Token(crate::identity::idp::Rejected::Expired);
        assert_eq!(
            challenge(token, Some(url)),
            (401, Some(format!("Bearer error=\"invalid_token\", resource_metadata=\"{url}\"")))
        );
        assert_eq!(challenge(AuthError::Unusable, Some(url)), (403, None), "the token was fine: no challenge");
    }

    #[test]
    fn a_refused_token_tells_the_client_nothing_more_than_invalid_token() {
        let Reply::Deny { body, .. } =
            Reply::unauthenticated(AuthError::Token(crate::identity::idp::Rejected::Audience), None, None)
        else {
            panic!("deny expected")
        };
        assert!(body.contains("\"invalid token\"") && !body.contains("audience"), "{body}");
    }

    #[test]
    fn the_hand_encoded_allow_reads_back_with_the_generated_types() {
        use envoy_types::ext_authz::v3::pb::OkHttpResponse;
        let token = "Bearer ".to_owned() + &"x".repeat(900);
        let set = vec![("authorization".into(), token.clone()), ("x-team".into(), String::new())];
        let remove = vec!["x-api-key".to_owned(), "x-mcp-warden-list".to_owned()];
        let meta = [("decision", "allow"), ("user", "alice"), ("tool", "get_ü")];
        let r = CheckResponse::decode(&*Reply::allow(set, remove).encode(&meta)).expect("decodes");
        assert_eq!(r.status.map(|s| s.code), Some(0));
        let Some(HttpResponse::OkResponse(ok)) = r.http_response else { panic!("ok expected") };
        let OkHttpResponse { headers, headers_to_remove, .. } = ok;
        let headers: Vec<_> = headers
            .into_iter()
            .map(|h| {
                let hv = h.header.expect("header");
                (hv.key, hv.value, h.append_action)
            })
            .collect();
        let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
        assert_eq!(
            headers,
            [("authorization".to_owned(), token, overwrite), ("x-team".to_owned(), String::new(), overwrite)]
        );
        assert_eq!(headers_to_remove, ["x-api-key", "x-mcp-warden-list"]);
        let fields = r.dynamic_metadata.expect("metadata").fields;
        let value = |k: &str| match fields.get(k).and_then(|v| v.kind.clone()) {
            Some(Kind::StringValue(s)) => s,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!((value("decision"), value("user"), value("tool")), ("allow".into(), "alice".into(), "get_ü".into()));
        assert_eq!(fields.len(), 3);

        let bare = CheckResponse::decode(&*Reply::allow(Vec::new(), Vec::new()).encode(&[])).expect("decodes");
        assert!(bare.dynamic_metadata.is_none());
        assert!(matches!(bare.http_response, Some(HttpResponse::OkResponse(_))));
    }

    #[test]
    fn a_denial_carries_its_metadata_too() {
        let r = CheckResponse::decode(&*Reply::error(403, None, -32003, "no").encode(&[("decision", "deny")]))
            .expect("decodes");
        assert_eq!(r.status.map(|s| s.code), Some(PERMISSION_DENIED));
        assert!(r.dynamic_metadata.expect("metadata").fields.contains_key("decision"));
    }
}
