//! Envoy's `CheckRequest` as read off the wire: only the fields a check uses, each a
//! zero-copy slice of the received message (no `String` per header, no hash map).
//!
//! The messages below are wire-compatible subsets of `envoy.service.auth.v3.CheckRequest`
//! (same field numbers and types; protobuf `string` and `bytes` share one encoding, and a
//! `map` is a repeated key/value message). Fields not declared are skipped. Text fields are
//! checked for UTF-8 when the request is viewed: a request that fails is refused, never
//! guessed at.

use bytes::Bytes;
use prost::Message as _;

use crate::headers::Headers;

/// `CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireCheckRequest {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<WireAttributes>,
}

/// `AttributeContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireAttributes {
    #[prost(message, optional, tag = "1")]
    pub source: Option<WirePeer>,
    #[prost(message, optional, tag = "4")]
    pub request: Option<WireRequest>,
    /// `map<string, string> context_extensions`.
    #[prost(message, repeated, tag = "10")]
    pub context_extensions: Vec<WireEntry>,
}

/// `AttributeContext.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePeer {
    #[prost(bytes = "bytes", tag = "4")]
    pub principal: Bytes,
}

/// `AttributeContext.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireRequest {
    #[prost(message, optional, tag = "2")]
    pub http: Option<WireHttp>,
}

/// `AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHttp {
    #[prost(bytes = "bytes", tag = "1")]
    pub id: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub method: Bytes,
    /// `map<string, string> headers` (repeated headers already joined by Envoy).
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<WireEntry>,
    #[prost(bytes = "bytes", tag = "5")]
    pub host: Bytes,
    #[prost(bytes = "bytes", tag = "11")]
    pub body: Bytes,
    #[prost(bytes = "bytes", tag = "12")]
    pub raw_body: Bytes,
    /// `config.core.v3.HeaderMap header_map` (`encode_raw_headers: true`).
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<WireHeaderMap>,
}

/// A map entry (`key` = 1, `value` = 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEntry {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHeaderMap {
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<WireHeaderValue>,
}

/// `config.core.v3.HeaderValue`: Envoy fills `key` and `raw_value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHeaderValue {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    pub raw_value: Bytes,
}

/// Why a request could not be viewed.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("the check request is not a valid protobuf message")]
    Decode,
    #[error("the check request has no HTTP request attributes")]
    NoHttp,
    #[error("a header name or value, or a request attribute, is not UTF-8")]
    NotUtf8,
    #[error("a header name is not lower-case")]
    HeaderCase,
}

/// What a check reads from Envoy's request, borrowed from a [`WireCheckRequest`].
#[derive(Debug)]
pub struct View<'r> {
    pub method: &'r str,
    pub headers: Headers<'r>,
    pub body: &'r [u8],
    /// `HttpRequest.host`, used when there is no `:authority` header.
    pub host: &'r str,
    /// `HttpRequest.id`, used when there is no `x-request-id` header.
    pub id: &'r str,
    pub principal: &'r str,
    pub context_extensions: Vec<(&'r str, &'r str)>,
}

impl WireCheckRequest {
    pub fn decode_from(bytes: Bytes) -> Result<Self, WireError> {
        WireCheckRequest::decode(bytes).map_err(|_| WireError::Decode)
    }

    pub fn view(&self) -> Result<View<'_>, WireError> {
        let attrs = self.attributes.as_ref().ok_or(WireError::NoHttp)?;
        let http = attrs.request.as_ref().and_then(|r| r.http.as_ref()).ok_or(WireError::NoHttp)?;
        let mut headers = Headers::new([]);
        match &http.header_map {
            Some(map) if http.headers.is_empty() => {
                for h in &map.headers {
                    add_header(&mut headers, &h.key, if h.raw_value.is_empty() { &h.value } else { &h.raw_value })?;
                }
            }
            _ => {
                for e in &http.headers {
                    add_header(&mut headers, &e.key, &e.value)?;
                }
            }
        }
        let body: &[u8] = if http.raw_body.is_empty() { &http.body } else { &http.raw_body };
        if http.raw_body.is_empty() && std::str::from_utf8(body).is_err() {
            return Err(WireError::NotUtf8);
        }
        Ok(View {
            method: text(&http.method)?,
            headers,
            body,
            host: text(&http.host)?,
            id: text(&http.id)?,
            principal: attrs.source.as_ref().map_or(Ok(""), |s| text(&s.principal))?,
            context_extensions: attrs
                .context_extensions
                .iter()
                .map(|e| Ok((text(&e.key)?, text(&e.value)?)))
                .collect::<Result<_, WireError>>()?,
        })
    }
}

/// One header line into `headers`; names must be lower-case, names and values UTF-8.
fn add_header<'a>(headers: &mut Headers<'a>, key: &'a Bytes, value: &'a Bytes) -> Result<(), WireError> {
    let key = text(key)?;
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(WireError::HeaderCase);
    }
    headers.push(key, text(value)?);
    Ok(())
}

fn text(b: &Bytes) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};

    use super::*;

    fn encode(http: HttpRequest, principal: &str, ext: &[(&str, &str)]) -> Bytes {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer { principal: principal.into(), ..Default::default() }),
                request: Some(Request { http: Some(http), ..Default::default() }),
                context_extensions: ext.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
                ..Default::default()
            }),
        }
        .encode_to_vec()
        .into()
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn the_view_reads_what_envoys_generated_types_wrote() {
        let bytes = encode(
            HttpRequest {
                id: "rid".into(),
                method: "POST".into(),
                host: "gw.example".into(),
                headers: map(&[("authorization", "Bearer k"), (":path", "/mcp")]),
                body: "{}".into(),
                ..Default::default()
            },
            "spiffe://a",
            &[("app", "demo")],
        );
        let req = WireCheckRequest::decode_from(bytes).expect("decodes");
        let v = req.view().expect("view");
        assert_eq!((v.method, v.host, v.id, v.principal), ("POST", "gw.example", "rid", "spiffe://a"));
        assert_eq!(v.headers.get("authorization"), Some("Bearer k"));
        assert_eq!(v.headers.get(":path"), Some("/mcp"));
        assert_eq!(v.body, b"{}");
        assert_eq!(v.context_extensions, [("app", "demo")]);
    }

    #[test]
    fn raw_headers_and_raw_body_are_read_and_repeats_joined() {
        let raw =
            |k: &str, v: &str| HeaderValue { key: k.into(), raw_value: v.as_bytes().to_vec(), ..Default::default() };
        let bytes = encode(
            HttpRequest {
                method: "POST".into(),
                header_map: Some(HeaderMap {
                    headers: vec![raw("x-api-key", "a"), raw("accept", "b"), raw("x-api-key", "c")],
                }),
                raw_body: b"{\"x\":1}".to_vec(),
                ..Default::default()
            },
            "",
            &[],
        );
        let req = WireCheckRequest::decode_from(bytes).expect("decodes");
        let v = req.view().expect("view");
        assert_eq!(v.headers.get("x-api-key"), Some("a,c"));
        assert_eq!(v.body, b"{\"x\":1}");
    }

    #[test]
    fn what_cannot_be_read_exactly_is_refused() {
        let raw = |k: &str, v: &[u8]| HeaderValue { key: k.into(), raw_value: v.to_vec(), ..Default::default() };
        let with = |headers| HttpRequest { header_map: Some(HeaderMap { headers }), ..Default::default() };
        let view = |bytes| WireCheckRequest::decode_from(bytes).and_then(|r| r.view().map(|_| ()));
        assert_eq!(view(encode(with(vec![raw("x-api-key", b"\xff")]), "", &[])), Err(WireError::NotUtf8));
        assert_eq!(view(encode(with(vec![raw("X-Api-Key", b"k")]), "", &[])), Err(WireError::HeaderCase));
        assert_eq!(view(Bytes::from_static(b"\x0a\x05\x22")), Err(WireError::Decode));
        assert_eq!(view(CheckRequest::default().encode_to_vec().into()), Err(WireError::NoHttp));
    }
}
