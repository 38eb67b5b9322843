//! Envoy's `CheckRequest` as read off the wire: only the fields a check uses, each a
//! zero-copy slice of the received message (no `String` per header, no hash map).
//!
//! A small protobuf reader walks only the fields below (field numbers from Envoy's protos; a
//! `map` is a repeated key/value message) and skips the rest. Text fields are checked for
//! UTF-8, header names for lower case; a request that is malformed, or repeats a singular
//! message field (protobuf would merge; Envoy never sends one), is refused, never guessed at.
//!
//! Cost is linear in the message (issue 19): every field is visited once per pass (the
//! `HttpRequest` message's twice at most: its scalars, then its legacy header map), the
//! header map's text is checked for UTF-8 once, and each header entry is read once and added
//! to [`Headers`] in bounded time (a scan of at most 16 names, else one hash lookup). The
//! body is a slice, never copied or scanned here. `context_extensions` is read once into a
//! list that is searched twice.

use warden_core::headers::Headers;

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

/// What a check reads from Envoy's request, borrowed from the encoded `CheckRequest`.
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

// Field numbers, from envoy/service/auth/v3/{external_auth,attribute_context}.proto and
// envoy/config/core/v3/base.proto.
const CHECK_ATTRIBUTES: u32 = 1;
const ATTR_SOURCE: u32 = 1;
const ATTR_REQUEST: u32 = 4;
const ATTR_CONTEXT_EXTENSIONS: u32 = 10;
const PEER_PRINCIPAL: u32 = 4;
const REQUEST_HTTP: u32 = 2;
const HTTP_ID: u32 = 1;
const HTTP_METHOD: u32 = 2;
const HTTP_HEADERS: u32 = 3;
const HTTP_HOST: u32 = 5;
const HTTP_BODY: u32 = 11;
const HTTP_RAW_BODY: u32 = 12;
const HTTP_HEADER_MAP: u32 = 13;
const HEADER_MAP_HEADERS: u32 = 1;
const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;
const HEADER_RAW_VALUE: u32 = 3;

/// Reads an encoded `CheckRequest`.
pub fn view(bytes: &[u8]) -> Result<View<'_>, WireError> {
    let attrs = single_message(bytes, CHECK_ATTRIBUTES)?.ok_or(WireError::NoHttp)?;
    let (mut source, mut request) = (None, None);
    let mut context_extensions = Vec::new();
    for field in Fields(attrs) {
        match field? {
            (ATTR_SOURCE, v) => once(&mut source, v.bytes()?)?,
            (ATTR_REQUEST, v) => once(&mut request, v.bytes()?)?,
            (ATTR_CONTEXT_EXTENSIONS, v) => {
                let [key, value] = strings(v.bytes()?, [ENTRY_KEY, ENTRY_VALUE])?;
                context_extensions.push((text(key)?, text(value)?));
            }
            _ => {}
        }
    }
    let http = request.map(|r| single_message(r, REQUEST_HTTP)).transpose()?.flatten().ok_or(WireError::NoHttp)?;
    let [principal] = source.map_or(Ok([&[][..]]), |s| strings(s, [PEER_PRINCIPAL]))?;

    let (mut scalars, mut header_map, mut legacy_headers) = (HttpScalars::default(), None, false);
    for field in Fields(http) {
        match field? {
            (HTTP_ID, v) => scalars.id = v.bytes()?,
            (HTTP_METHOD, v) => scalars.method = v.bytes()?,
            (HTTP_HEADERS, v) => {
                v.bytes()?;
                legacy_headers = true;
            }
            (HTTP_HOST, v) => scalars.host = v.bytes()?,
            (HTTP_BODY, v) => scalars.body = v.bytes()?,
            (HTTP_RAW_BODY, v) => scalars.raw_body = v.bytes()?,
            (HTTP_HEADER_MAP, v) => once(&mut header_map, v.bytes()?)?,
            _ => {}
        }
    }
    if (legacy_headers && header_map.is_some()) || (!scalars.body.is_empty() && !scalars.raw_body.is_empty()) {
        // Envoy sends headers one way and the body one way: both would be ambiguous.
        return Err(WireError::Decode);
    }
    let headers = read_headers(http, header_map)?;
    let body = if scalars.raw_body.is_empty() { text(scalars.body)?.as_bytes() } else { scalars.raw_body };
    Ok(View {
        method: text(scalars.method)?,
        headers,
        body,
        host: text(scalars.host)?,
        id: text(scalars.id)?,
        principal: text(principal)?,
        context_extensions,
    })
}

/// The request's headers: from the `header_map` (Envoy's current field) when there is one,
/// else from the legacy `headers` map of `http`.
fn read_headers<'r>(http: &'r [u8], header_map: Option<&'r [u8]>) -> Result<Headers<'r>, WireError> {
    let mut headers = Headers::new([]);
    match header_map {
        Some(map) => {
            // One UTF-8 check for the whole map: see `line`.
            let prefix =
                std::str::from_utf8(map).or_else(|e| std::str::from_utf8(&map[..e.valid_up_to()])).unwrap_or_default();
            for field in Fields(map) {
                if let (HEADER_MAP_HEADERS, v) = field? {
                    let entry = v.bytes()?;
                    let (key, value) = match key_and_raw_value(entry) {
                        Some(pair) => pair,
                        None => {
                            let [key, value, raw] = strings(entry, [ENTRY_KEY, ENTRY_VALUE, HEADER_RAW_VALUE])?;
                            (key, if raw.is_empty() { value } else { raw })
                        }
                    };
                    let (key, value) = line(prefix, map, entry, key, value)?;
                    add_header(&mut headers, key, value)?;
                }
            }
        }
        None => {
            for field in Fields(http) {
                if let (HTTP_HEADERS, v) = field? {
                    let [key, value] = strings(v.bytes()?, [ENTRY_KEY, ENTRY_VALUE])?;
                    let key = text(key)?;
                    if headers.contains_key(key) {
                        // A map key twice: protobuf keeps the last, a header reader would join
                        // both. Envoy writes each name once (values joined), so it is refused.
                        return Err(WireError::Decode);
                    }
                    add_header(&mut headers, key, text(value)?)?;
                }
            }
        }
    }
    Ok(headers)
}

#[derive(Default)]
struct HttpScalars<'r> {
    id: &'r [u8],
    method: &'r [u8],
    host: &'r [u8],
    body: &'r [u8],
    raw_body: &'r [u8],
}

/// One header line into `headers`; names must be lower-case.
fn add_header<'a>(headers: &mut Headers<'a>, key: &'a str, value: &'a str) -> Result<(), WireError> {
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(WireError::HeaderCase);
    }
    headers.push(key, value);
    Ok(())
}

/// A `HeaderValue` as Envoy writes it with `encode_raw_headers`: `key` then `raw_value`,
/// each under 128 bytes, and nothing else (read without the general field loop; any other
/// shape goes through it).
#[inline]
fn key_and_raw_value(entry: &[u8]) -> Option<(&[u8], &[u8])> {
    const KEY_TAG: u8 = (ENTRY_KEY << 3) as u8 | 2;
    const RAW_VALUE_TAG: u8 = (HEADER_RAW_VALUE << 3) as u8 | 2;
    let [KEY_TAG, key_len @ 0..0x80, rest @ ..] = entry else { return None };
    let (key, rest) = rest.split_at_checked(usize::from(*key_len))?;
    match rest {
        [RAW_VALUE_TAG, value_len @ 0..0x80, value @ ..] if value.len() == usize::from(*value_len) => {
            Some((key, value))
        }
        _ => None,
    }
}

/// A header line's name and value as text. `prefix` is the longest text prefix of the
/// header `map`: lines within it need no check of their own (the framing bytes are ASCII
/// while a line is under 128 bytes; a longer one, such as a JWT's, ends the prefix). Past it,
/// the entry is checked whole, else each field alone (a slice of text on character
/// boundaries is text; one that splits a character is not).
fn line<'a>(
    prefix: &'a str,
    map: &'a [u8],
    entry: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
) -> Result<(&'a str, &'a str), WireError> {
    if let (Some(k), Some(v)) = (within(prefix, map, key), within(prefix, map, value)) {
        return Ok((k, v));
    }
    if let Ok(whole) = std::str::from_utf8(entry)
        && let (Some(k), Some(v)) = (within(whole, entry, key), within(whole, entry, value))
    {
        return Ok((k, v));
    }
    Ok((text(key)?, text(value)?))
}

/// `part`, a slice of `bytes`, as the same slice of `whole` (a text prefix of `bytes`); none
/// where it lies past `whole` or splits a character.
fn within<'a>(whole: &'a str, bytes: &[u8], part: &[u8]) -> Option<&'a str> {
    if part.is_empty() {
        return Some("");
    }
    let start = (part.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
    start.checked_add(part.len()).and_then(|end| whole.get(start..end))
}

fn text(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError::NotUtf8)
}

/// A singular message field seen twice would be merged by protobuf; Envoy never sends one,
/// so it is refused rather than merged.
fn once<'r>(slot: &mut Option<&'r [u8]>, value: &'r [u8]) -> Result<(), WireError> {
    match slot.replace(value) {
        None => Ok(()),
        Some(_) => Err(WireError::Decode),
    }
}

fn single_message(message: &[u8], number: u32) -> Result<Option<&[u8]>, WireError> {
    let mut found = None;
    for field in Fields(message) {
        let (n, v) = field?;
        if n == number {
            once(&mut found, v.bytes()?)?;
        }
    }
    Ok(found)
}

/// String/bytes fields of a small message, by number; the last occurrence wins, as in
/// protobuf, and a field not present reads as empty.
#[inline]
fn strings<const N: usize>(message: &[u8], numbers: [u32; N]) -> Result<[&[u8]; N], WireError> {
    let mut out = [&[][..]; N];
    for field in Fields(message) {
        let (n, v) = field?;
        if let Some(slot) = numbers.iter().position(|&k| k == n) {
            out[slot] = v.bytes()?;
        }
    }
    Ok(out)
}

/// A field's value by wire type.
enum Value<'r> {
    Varint,
    Fixed,
    Len(&'r [u8]),
}

impl<'r> Value<'r> {
    fn bytes(self) -> Result<&'r [u8], WireError> {
        match self {
            Value::Len(b) => Ok(b),
            _ => Err(WireError::Decode),
        }
    }
}

/// The fields of one encoded message, in order; a malformed field ends it with an error.
struct Fields<'r>(&'r [u8]);

impl<'r> Iterator for Fields<'r> {
    type Item = Result<(u32, Value<'r>), WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'r> Fields<'r> {
    #[inline(always)]
    fn field(&mut self) -> Result<(u32, Value<'r>), WireError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::Decode)?;
        if number == 0 {
            return Err(WireError::Decode);
        }
        let value = match key & 7 {
            0 => self.varint().map(|_| Value::Varint)?,
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Decode)?;
                Value::Len(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            _ => return Err(WireError::Decode), // groups (3, 4) and undefined types
        };
        Ok((number, value))
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags and most lengths here are one byte.
        if let Some((&byte, rest)) = self.0.split_first()
            && byte & 0x80 == 0
        {
            self.0 = rest;
            return Ok(u64::from(byte));
        }
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == 9 && byte > 1 {
                    return Err(WireError::Decode); // more than 64 bits
                }
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError::Decode)
    }

    #[inline]
    fn take(&mut self, len: usize) -> Result<&'r [u8], WireError> {
        if len > self.0.len() {
            return Err(WireError::Decode);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};

    use bytes::Bytes;
    use prost::Message as _;

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
        let v = view(&bytes).expect("view");
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
        let v = view(&bytes).expect("view");
        assert_eq!(v.headers.get("x-api-key"), Some("a,c"));
        assert_eq!(v.body, b"{\"x\":1}");
    }

    #[test]
    fn what_cannot_be_read_exactly_is_refused() {
        let raw = |k: &str, v: &[u8]| HeaderValue { key: k.into(), raw_value: v.to_vec(), ..Default::default() };
        let with = |headers| HttpRequest { header_map: Some(HeaderMap { headers }), ..Default::default() };
        let view = |bytes: Bytes| view(&bytes).map(|_| ());
        assert_eq!(view(encode(with(vec![raw("x-api-key", b"\xff")]), "", &[])), Err(WireError::NotUtf8));
        assert_eq!(view(encode(with(vec![raw("X-Api-Key", b"k")]), "", &[])), Err(WireError::HeaderCase));
        assert_eq!(view(Bytes::from_static(b"\x0a\x05\x22")), Err(WireError::Decode));
        assert_eq!(view(CheckRequest::default().encode_to_vec().into()), Err(WireError::NoHttp));
    }

    /// Header text is checked per entry where the entry is text as a whole and per field
    /// otherwise (a value of 128 bytes or more has a non-ASCII length byte): both ways must
    /// accept and refuse the same values, whatever sits at the edges of a field.
    #[test]
    fn header_text_is_accepted_and_refused_alike_for_short_and_long_entries() {
        let raw = |k: &str, v: &[u8]| HeaderValue { key: k.into(), raw_value: v.to_vec(), ..Default::default() };
        // `lead`: a long line first ends the map's text prefix (its length needs two bytes),
        // so the line under test is checked on its own.
        let value_in = |lead: bool, value: &[u8]| {
            let mut headers = vec![raw("x-h", value), raw("accept", b"*/*")];
            if lead {
                headers.insert(0, raw("x-long", &b"l".repeat(300)));
            }
            let http = HttpRequest { header_map: Some(HeaderMap { headers }), ..Default::default() };
            let bytes = encode(http, "", &[]);
            view(&bytes).map(|v| v.headers.get("x-h").map(str::to_owned))
        };
        for (pad, lead) in [(0, false), (200, false), (0, true), (200, true)] {
            let value_of = |value: &[u8]| value_in(lead, value);
            let padded = |core: &[u8]| [&b"a".repeat(pad)[..], core].concat();
            for text in ["é", "café", "日本", "x", ""] {
                let bytes = padded(text.as_bytes());
                let expected = std::str::from_utf8(&bytes).expect("text").to_owned();
                let got = value_of(&bytes);
                assert_eq!(got, Ok(Some(expected)), "{text:?} after {pad} bytes, lead {lead}");
            }
            for bad in [&b"\xff"[..], b"\xc3", b"\xa9", b"ok\xe6\x97", b"\x80ok"] {
                assert_eq!(value_of(&padded(bad)), Err(WireError::NotUtf8), "{bad:?} after {pad} bytes, lead {lead}");
            }
        }
        let key = |k: &[u8]| {
            let http = HttpRequest {
                header_map: Some(HeaderMap {
                    headers: vec![HeaderValue {
                        key: String::from_utf8_lossy(k).into_owned(),
                        raw_value: b"v".to_vec(),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            };
            view(&encode(http, "", &[])).map(|_| ())
        };
        assert_eq!(key("x-é".as_bytes()), Ok(()));
        assert_eq!(key(b"X-A"), Err(WireError::HeaderCase));
    }

    /// `CheckRequest { attributes { request { http { <http> } } } }` by hand.
    fn nest(http: &[u8]) -> Vec<u8> {
        let wrap = |tag: u8, inner: &[u8]| {
            let mut out = vec![tag, u8::try_from(inner.len()).expect("short")];
            out.extend_from_slice(inner);
            out
        };
        wrap(0x0a, &wrap(0x22, &wrap(0x12, http)))
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped_and_the_last_scalar_wins() {
        // method "GET" then, after a varint, a fixed64, a fixed32 and an unknown string,
        // method "POST".
        let mut http = vec![0x12, 3, b'G', b'E', b'T', 0x30, 0x96, 0x01, 0x39];
        http.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0x45, 1, 2, 3, 4, 0x52, 1, b'x']);
        http.extend_from_slice(&[0x12, 4, b'P', b'O', b'S', b'T']);
        let bytes = nest(&http);
        assert_eq!(view(&bytes).expect("view").method, "POST");
    }

    #[test]
    fn malformed_protobuf_is_refused() {
        let refused = |http: &[u8]| view(&nest(http)).map(|_| ());
        assert_eq!(refused(&[0x12, 9, b'G']), Err(WireError::Decode), "length past the end");
        assert_eq!(refused(&[0x13]), Err(WireError::Decode), "start group");
        assert_eq!(refused(&[0x10, 1]), Err(WireError::Decode), "method as a varint");
        assert_eq!(refused(&[0x02, 0]), Err(WireError::Decode), "field number 0");
        assert_eq!(refused(&[0x30, 0xff]), Err(WireError::Decode), "unterminated varint");
        let mut long = vec![0x30];
        long.extend_from_slice(&[0xff; 9]);
        long.push(0x02);
        assert_eq!(refused(&long), Err(WireError::Decode), "varint over 64 bits");
        long.pop();
        long.push(0x01);
        assert_eq!(refused(&long), Ok(()), "a 64-bit varint is fine");
        // Headers both as a map and as raw lines, or a body both as text and as bytes.
        let both = |a: &[u8], b: &[u8]| view(&nest(&[a, b].concat())).map(|_| ());
        let (map_entry, raw_map) = ([0x1a, 4, 0x0a, 0, 0x12, 0], [0x6a, 0]);
        assert_eq!(both(&map_entry, &raw_map), Err(WireError::Decode), "two header forms");
        assert_eq!(both(&[0x5a, 1, b'a'], &[0x62, 1, b'b']), Err(WireError::Decode), "two body forms");
        assert_eq!(both(&map_entry, &[0x62, 1, b'b']), Ok(()), "one of each is fine");
        // `attributes` twice would be merged by protobuf: refused instead.
        let twice = [nest(&[0x12, 1, b'A']), nest(&[0x12, 1, b'B'])].concat();
        assert_eq!(view(&twice).map(|_| ()), Err(WireError::Decode));
    }
}
