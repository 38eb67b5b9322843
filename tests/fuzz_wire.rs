//! Differential fuzz of `authz::wire::view`, the hand-written reader of Envoy's
//! `CheckRequest`, against prost's generated decoder, which says what the bytes mean.
//!
//! The reader takes shortcuts protobuf's own decoder does not: a fast path for header
//! entries under 128 bytes, one UTF-8 check for a whole header map, and skipping every field
//! a check does not use. So generated requests must read back exactly as built, the
//! documented refusals must give their exact error, and mutated bytes must never panic the
//! reader and, where both decoders accept them, must read the same under protobuf's rules.
//! Seeds are fixed: a failure names its case and bytes, and reproduces.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::panic;
use std::sync::OnceLock;

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::{Address, HeaderMap, HeaderValue, Metadata, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request, TlsSession};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf::{Struct, Timestamp, Value, value::Kind};
use mcp_warden::authz::wire::{View, WireError, view};
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, encode_key, encode_varint, skip_field};

#[path = "../crates/core/tests/fuzz/rng.rs"]
mod rng;
use rng::Rng;

const WIDE: [&str; 3] = ["é", "€", "😀"];

/// Text of a length in `lens` (or up to 3 bytes more), cut from a fixed mix of ASCII and
/// multi-byte characters.
fn text(rng: &mut Rng, lens: Range<usize>) -> String {
    let len = lens.start + rng.below(lens.len());
    static MIX: OnceLock<String> = OnceLock::new();
    let mix = MIX.get_or_init(|| {
        let mut r = Rng(7);
        let mut char =
            || if r.chance(15) { r.pick(&WIDE).to_owned() } else { char::from(b' ' + r.below(95) as u8).into() };
        (0..4096).map(|_| char()).collect()
    });
    let start = (rng.below(mix.len() - len - 4)..).find(|&i| mix.is_char_boundary(i)).expect("a boundary");
    let end = (start + len..).find(|&i| mix.is_char_boundary(i)).expect("a boundary");
    mix[start..end].to_owned()
}

/// 0–300 bytes, often near 128 (the fast path's limit), or with a multi-byte character
/// across bytes 127 and 128.
fn header_value(rng: &mut Rng) -> String {
    if rng.chance(25) {
        let wide = rng.pick(&WIDE);
        let start = 127 - rng.below(wide.len() - 1);
        return format!("{}{wide}{}", "a".repeat(start), text(rng, 0..20));
    }
    let lens = if rng.chance(40) { 118..134 } else { 0..301 };
    text(rng, lens)
}

fn header_name(rng: &mut Rng) -> String {
    const COMMON: [&str; 5] = ["authorization", "x-api-key", "accept", ":path", "mcp-session-id"];
    if rng.chance(50) {
        return rng.pick(&COMMON).to_owned();
    }
    let mut name = String::from(char::from(b'a' + rng.below(26) as u8));
    for _ in 0..rng.below(20) {
        name.push(rng.pick(&['a', 'k', 'z', '0', '9', '-', '_', 'é']));
    }
    name
}

/// `value`, `raw_value`, both (`raw_value` wins) or neither.
fn header(rng: &mut Rng) -> HeaderValue {
    let key = header_name(rng);
    let value = if rng.chance(50) { header_value(rng) } else { String::new() };
    HeaderValue { key, value, raw_value: if rng.chance(50) { header_value(rng).into_bytes() } else { Vec::new() } }
}

fn peer(rng: &mut Rng) -> Peer {
    let socket = SocketAddress { address: "10.1.2.3".into(), ..Default::default() };
    Peer {
        address: Some(Address { address: Some(AddressKind::SocketAddress(socket)) }),
        service: text(rng, 0..10),
        labels: HashMap::from([("team".into(), text(rng, 0..10))]),
        principal: text(rng, 0..40),
        certificate: text(rng, 0..20),
    }
}

fn build(rng: &mut Rng) -> CheckRequest {
    const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "OPTIONS", "PÖST"];
    let mut http = HttpRequest {
        id: text(rng, 0..40),
        method: if rng.chance(90) { rng.pick(&METHODS).into() } else { text(rng, 0..10) },
        path: text(rng, 0..80),
        host: text(rng, 0..60),
        scheme: "https".into(),
        query: text(rng, 0..20),
        size: rng.next() as i64,
        protocol: "HTTP/1.1".into(),
        ..Default::default()
    };
    match rng.below(3) {
        0 => http.body = text(rng, 0..400),
        1 if rng.chance(50) => http.raw_body = (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        1 => http.raw_body = text(rng, 0..400).into_bytes(),
        _ => {}
    }
    if rng.chance(25) {
        http.headers = (0..rng.below(5)).map(|_| (header_name(rng), header_value(rng))).collect();
    } else if rng.chance(90) {
        http.header_map = Some(HeaderMap { headers: (0..rng.below(8)).map(|_| header(rng)).collect() });
    }
    let context_extensions = (0..rng.below(4)).map(|_| (text(rng, 0..8), text(rng, 0..30))).collect();
    let metadata = |rng: &mut Rng| {
        let fields = HashMap::from([("k".into(), Value { kind: Some(Kind::StringValue(text(rng, 0..30))) })]);
        Metadata { filter_metadata: HashMap::from([("envoy.lb".into(), Struct { fields })]), ..Default::default() }
    };
    let attributes = AttributeContext {
        source: rng.chance(80).then(|| peer(rng)),
        destination: rng.chance(50).then(|| peer(rng)),
        request: Some(Request {
            time: rng.chance(50).then(|| Timestamp { seconds: rng.next() as i64 >> 1, nanos: 999 }),
            http: Some(http),
        }),
        metadata_context: rng.chance(30).then(|| metadata(rng)),
        tls_session: rng.chance(30).then(|| TlsSession { sni: text(rng, 0..30) }),
        context_extensions,
        ..Default::default()
    };
    CheckRequest { attributes: Some(attributes) }
}

fn last_line(http: &mut HttpRequest) -> &mut HeaderValue {
    http.header_map.as_mut().and_then(|m| m.headers.last_mut()).expect("a header line")
}

fn http_of(req: &mut CheckRequest) -> &mut HttpRequest {
    let request = req.attributes.as_mut().and_then(|a| a.request.as_mut());
    request.and_then(|r| r.http.as_mut()).expect("built with HTTP attributes")
}

/// A request encoded by layers, so a mutation can land in one and the layers around it stay
/// well framed. Each layer holds its message's fields but the next layer's.
#[derive(Clone)]
struct Parts {
    attrs: Vec<u8>,
    request: Vec<u8>,
    http: Vec<u8>,
    /// The `HeaderValue`s of `header_map`, each encoded.
    entries: Option<Vec<Vec<u8>>>,
}

fn parts(req: &CheckRequest) -> Parts {
    let mut attrs = req.attributes.clone().expect("built with attributes");
    let mut request = attrs.request.take().expect("built with a request");
    let mut http = request.http.take().expect("built with HTTP attributes");
    let entries = http.header_map.take().map(|m| m.headers.iter().map(|h| h.encode_to_vec()).collect());
    let (lines, extensions) = (sorted(&http.headers), sorted(&attrs.context_extensions));
    (http.headers, attrs.context_extensions) = (HashMap::new(), HashMap::new());
    let mut http = http.encode_to_vec();
    for line in lines {
        http.extend(HttpRequest { headers: HashMap::from([line]), ..Default::default() }.encode_to_vec());
    }
    let mut attrs = attrs.encode_to_vec();
    for entry in extensions {
        attrs.extend(
            AttributeContext { context_extensions: HashMap::from([entry]), ..Default::default() }.encode_to_vec(),
        );
    }
    Parts { attrs, request: request.encode_to_vec(), http, entries }
}

/// A map's entries in key order: prost writes a `HashMap` in no fixed order, so `parts` writes
/// maps one entry at a time, sorted, and the bytes are the same on every run.
fn sorted(map: &HashMap<String, String>) -> Vec<(String, String)> {
    BTreeMap::from_iter(map.clone()).into_iter().collect()
}

/// A field no `HeaderValue` has (number 16) after some lines: skipped, off the fast path.
fn with_unknown_fields(rng: &mut Rng, mut p: Parts) -> Parts {
    for entry in p.entries.iter_mut().flatten() {
        if rng.chance(20) {
            entry.extend([0x80, 0x01, rng.below(128) as u8]);
        }
    }
    p
}

fn field(number: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    encode_key(number, WireType::LengthDelimited, &mut out);
    encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn map_of(entries: &[Vec<u8>]) -> Vec<u8> {
    entries.iter().flat_map(|e| field(1, e)).collect()
}

/// `CheckRequest { attributes { request { http { header_map } } } }` (Envoy's field numbers).
fn assemble(p: &Parts, map: Option<&[u8]>) -> Vec<u8> {
    let http = [&p.http[..], &map.map(|m| field(13, m)).unwrap_or_default()].concat();
    let request = [&p.request[..], &field(2, &http)].concat();
    field(1, &[&p.attrs[..], &field(4, &request)].concat())
}

fn bytes_of(p: &Parts) -> Vec<u8> {
    assemble(p, p.entries.as_deref().map(map_of).as_deref())
}

/// What a check reads, owned, in a form protobuf's view of a message can be compared with.
#[derive(Debug, PartialEq)]
struct Seen {
    method: String,
    host: String,
    id: String,
    principal: String,
    /// The last value of each key, as protobuf reads a map and the check reads the view's list.
    extensions: BTreeMap<String, String>,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

fn seen(v: &View<'_>) -> Seen {
    Seen {
        method: v.method.into(),
        host: v.host.into(),
        id: v.id.into(),
        principal: v.principal.into(),
        extensions: v.context_extensions.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
        body: v.body.to_vec(),
        headers: v.headers.iter().map(|(n, v)| (n.into(), v.into())).collect(),
    }
}

/// Header lines as the view keeps them: a repeated name's values joined with `,`.
fn joined(lines: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in lines {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => *joined = format!("{joined},{value}"),
            None => out.push((name, value)),
        }
    }
    out
}

/// What the view must read from bytes protobuf decodes to `msg`, or the error its own rules
/// (wire.rs's docs) give where protobuf has none.
fn expected(msg: &CheckRequest) -> Result<Seen, WireError> {
    let attrs = msg.attributes.as_ref().ok_or(WireError::NoHttp)?;
    let http = attrs.request.as_ref().and_then(|r| r.http.as_ref()).ok_or(WireError::NoHttp)?;
    if (http.header_map.is_some() && !http.headers.is_empty()) || (!http.body.is_empty() && !http.raw_body.is_empty()) {
        return Err(WireError::Decode);
    }
    let lines: Vec<(String, String)> = match &http.header_map {
        // `raw_value` wins where it is not empty; the view's rules want it UTF-8.
        Some(map) => map
            .headers
            .iter()
            .map(|h| match h.raw_value.as_slice() {
                [] => Ok((h.key.clone(), h.value.clone())),
                raw => String::from_utf8(raw.to_vec()).map(|v| (h.key.clone(), v)).map_err(|_| WireError::NotUtf8),
            })
            .collect::<Result<_, _>>()?,
        // Protobuf keeps a map in no order: sorted, here and in `agree`.
        None => sorted(&http.headers),
    };
    if lines.iter().any(|(k, _)| k.bytes().any(|b| b.is_ascii_uppercase())) {
        return Err(WireError::HeaderCase);
    }
    Ok(Seen {
        method: http.method.clone(),
        host: http.host.clone(),
        id: http.id.clone(),
        principal: attrs.source.as_ref().map(|s| s.principal.clone()).unwrap_or_default(),
        extensions: attrs.context_extensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        body: if http.raw_body.is_empty() { http.body.clone().into_bytes() } else { http.raw_body.clone() },
        headers: joined(lines),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The view of bytes that protobuf decodes to `msg` must agree with it. `canonical`: the
/// bytes are prost's own encoding, so no singular message or map key repeats and the view may
/// not refuse them for that.
fn agree(viewed: Result<Seen, WireError>, msg: &CheckRequest, canonical: bool, at: &dyn Fn() -> String) {
    match (viewed, expected(msg)) {
        (Ok(mut got), Ok(want)) => {
            if msg.attributes.as_ref().and_then(|a| a.request.as_ref()?.http.as_ref()?.header_map.as_ref()).is_none() {
                got.headers.sort(); // a protobuf map has no order
            }
            assert_eq!(got, want, "view and protobuf disagree at {}\nprotobuf: {msg:?}", at());
        }
        (Ok(got), Err(e)) => panic!("view accepted what its rules refuse ({e:?}) at {}\nview: {got:?}", at()),
        (Err(e), Ok(_)) if canonical || e != WireError::Decode => {
            panic!("view refused ({e:?}) what protobuf reads at {}\nprotobuf: {msg:?}", at())
        }
        (Err(_), _) => {}
    }
}

#[test]
fn generated_requests_read_back_as_built() {
    for case in 0..20_000u64 {
        let mut rng = Rng(0x00a1_1ce5 ^ case);
        let req = build(&mut rng);
        let bytes = bytes_of(&with_unknown_fields(&mut rng, parts(&req)));
        let at = || format!("case {case}, bytes {}", hex(&bytes));
        assert_eq!(CheckRequest::decode(&bytes[..]).expect("prost reads its own parts"), req, "{}", at());
        let v = view(&bytes).unwrap_or_else(|e| panic!("view refused ({e:?}) a valid request at {}", at()));
        // In the order written: legacy headers (in `Seen`) and extensions sorted by key.
        let got: Vec<_> = v.context_extensions.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
        let extensions = sorted(&req.attributes.as_ref().expect("built").context_extensions);
        assert_eq!(got, extensions, "extensions in order at {}", at());
        assert_eq!(Ok(seen(&v)), expected(&req), "{}", at());
    }
}

/// Valid requests made wrong in each way wire.rs's docs say the view refuses: protobuf reads
/// every one, the view gives its exact error.
#[test]
fn each_documented_refusal_gives_its_error_where_protobuf_reads_the_bytes() {
    for case in 0..3_000u64 {
        let mut rng = Rng(0x0dec_0de0 ^ case);
        let req = build(&mut rng);
        let bytes = bytes_of(&parts(&req));
        let at = || format!("case {case}, valid bytes {}", hex(&bytes));
        let http = req.attributes.as_ref().and_then(|a| a.request.as_ref()?.http.as_ref()).expect("built");
        let map_lines = http.header_map.as_ref().is_some_and(|m| !m.headers.is_empty());
        let edited = |edit: &dyn Fn(&mut HttpRequest)| {
            let mut req = req.clone();
            edit(http_of(&mut req));
            parts(&req)
        };
        let p = parts(&req);
        let twice = |layer: &[u8], number: u32, inner: &[u8]| [layer, &field(number, inner)].concat();
        let mut wrong = vec![
            ("attributes twice", [&bytes[..], &bytes[..]].concat(), WireError::Decode),
            (
                "request twice",
                bytes_of(&Parts { attrs: twice(&p.attrs, 4, &p.request), ..p.clone() }),
                WireError::Decode,
            ),
            ("http twice", bytes_of(&Parts { request: twice(&p.request, 2, &p.http), ..p.clone() }), WireError::Decode),
        ];
        let two_bodies = edited(&|h| {
            h.body.push('a');
            h.raw_body.push(b'b');
        });
        let two_header_forms = edited(&|h| {
            h.headers.insert("b".into(), String::new());
            h.header_map.get_or_insert_default();
        });
        wrong.push(("two bodies", bytes_of(&two_bodies), WireError::Decode));
        wrong.push(("two header forms", bytes_of(&two_header_forms), WireError::Decode));
        if p.attrs.first() == Some(&0x0a) {
            let source = fields(&p.attrs)[0].clone();
            let attrs = [&p.attrs[..], &p.attrs[source]].concat();
            wrong.push(("source twice", bytes_of(&Parts { attrs, ..p.clone() }), WireError::Decode));
        }
        if p.entries.is_some() {
            let http = twice(&p.http, 13, &[]);
            wrong.push(("header_map twice", bytes_of(&Parts { http, ..p.clone() }), WireError::Decode));
        }
        if map_lines || !http.headers.is_empty() {
            let upper = edited(&|h| {
                h.headers = std::mem::take(&mut h.headers).into_iter().map(|(k, v)| (k.to_uppercase(), v)).collect();
                if let Some(e) = h.header_map.as_mut().and_then(|m| m.headers.last_mut()) {
                    e.key = e.key.replacen(|c: char| c.is_ascii_lowercase(), "Q", 1);
                }
            });
            wrong.push(("an upper-case name", bytes_of(&upper), WireError::HeaderCase));
        }
        if map_lines {
            let (at, byte) = (rng.next() as usize, rng.pick(&[0xff, 0xc3, 0x80]));
            let bad = edited(&|h| {
                let e = last_line(h);
                e.raw_value = e.value.clone().into_bytes();
                e.raw_value.insert(at % (e.raw_value.len() + 1), byte);
            });
            wrong.push(("raw_value not UTF-8", bytes_of(&bad), WireError::NotUtf8));
            // Text only with the next field's tag (number 16: `80 01`) as a character's end.
            let mut split = edited(&|h| last_line(h).raw_value.push(0xc3));
            split.entries.iter_mut().flatten().last().expect("a line").extend([0x80, 0x01, 0x00]);
            wrong.push(("raw_value ending mid-character", bytes_of(&split), WireError::NotUtf8));
        }
        for (what, bytes, error) in wrong {
            assert!(CheckRequest::decode(&bytes[..]).is_ok(), "protobuf reads {what} at {}", at());
            assert_eq!(view(&bytes).map(|_| ()), Err(error), "{what} at {}, bytes {}", at(), hex(&bytes));
        }
    }
}

/// The top-level fields of `bytes` as byte ranges, as far as they parse.
fn fields(bytes: &[u8]) -> Vec<Range<usize>> {
    let (mut rest, mut out) = (bytes, Vec::new());
    while !rest.is_empty() {
        let start = bytes.len() - rest.len();
        let Ok((tag, wire_type)) = decode_key(&mut rest) else { break };
        if skip_field(wire_type, tag, &mut rest, DecodeContext::default()).is_err() {
            break;
        }
        out.push(start..bytes.len() - rest.len());
    }
    out
}

/// One random edit: a bit flipped, a byte set, the end cut, a range deleted, duplicated or
/// inserted, or a whole field duplicated or deleted.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let (len, at) = (bytes.len(), rng.below(bytes.len() + 1));
    let end = (at + 1 + rng.below(32)).min(len);
    let random = rng.next() as u8;
    match rng.below(8) {
        0 if at < len => bytes[at] ^= 1 << rng.below(8),
        1 if at < len => bytes[at] = rng.pick(&[0, 0x01, 0x0a, 0x12, 0x1a, 0x7f, 0x80, 0xc3, 0xff, random]),
        2 => bytes.truncate(at),
        3 => drop(bytes.drain(at..end)),
        4 => drop(bytes.splice(at..at, bytes[at..end].to_vec())),
        5 => drop(bytes.splice(at..at, (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect::<Vec<_>>())),
        _ => {
            let fields = fields(bytes);
            let Some(f) = (!fields.is_empty()).then(|| fields[rng.below(fields.len())].clone()) else { return };
            let to = if rng.chance(50) { f.end } else { fields[rng.below(fields.len())].start };
            if rng.chance(70) { drop(bytes.splice(to..to, bytes[f].to_vec())) } else { drop(bytes.drain(f)) }
        }
    }
}

/// A valid request's bytes with one layer edited (once, or 1 time in 4 twice) and the layers
/// around it framed anew: the whole message, the attributes, the HTTP request, the header map
/// or one header entry.
fn mutated(rng: &mut Rng, mut p: Parts) -> Vec<u8> {
    let edits = 1 + usize::from(rng.chance(25));
    let edit = |rng: &mut Rng, bytes: &mut Vec<u8>| (0..edits).for_each(|_| mutate(rng, bytes));
    match (rng.below(5), p.entries.as_mut()) {
        (1, _) => edit(rng, &mut p.attrs),
        (2, _) => edit(rng, &mut p.http),
        (3, Some(entries)) if !entries.is_empty() => {
            let i = rng.below(entries.len());
            edit(rng, &mut entries[i]);
        }
        (4, Some(entries)) => {
            let mut map = map_of(entries);
            edit(rng, &mut map);
            return assemble(&p, Some(&map));
        }
        _ => {
            let mut bytes = bytes_of(&p);
            edit(rng, &mut bytes);
            return bytes;
        }
    }
    bytes_of(&p)
}

#[test]
fn mutated_requests_never_panic_the_view_and_read_as_protobuf_does_where_both_accept() {
    const CASES: usize = 50_000;
    let (mut both_ok, mut view_only, mut prost_only, mut both_err) = (0, 0, 0, 0);
    // Mutations are where the cases differ: 2,000 requests to start from are plenty.
    let valid: Vec<Parts> = (0..2_000)
        .map(|i| {
            let mut rng = Rng(0x5ee0_0000 ^ i);
            let req = build(&mut rng);
            with_unknown_fields(&mut rng, parts(&req))
        })
        .collect();
    for case in 0..CASES as u64 {
        let mut rng = Rng(0x0b17_f11b ^ case);
        let start = valid[rng.below(valid.len())].clone();
        let bytes = mutated(&mut rng, start);
        let at = || format!("case {case}, bytes {}", hex(&bytes));
        let viewed = panic::catch_unwind(|| view(&bytes).map(|v| seen(&v)))
            .unwrap_or_else(|_| panic!("view panicked at {}", at()));
        let decoded = CheckRequest::decode(&bytes[..]);
        match (&viewed, &decoded) {
            (Ok(_), Ok(_)) => both_ok += 1,
            (Ok(_), Err(_)) => view_only += 1, // prost also checks the fields the view skips
            (Err(_), Ok(_)) => prost_only += 1,
            (Err(_), Err(_)) => both_err += 1,
        }
        if let Ok(msg) = decoded {
            agree(viewed, &msg, false, &at);
            // Prost's own encoding of what it read: merged, unknown fields dropped.
            let again = msg.encode_to_vec();
            let again_at = || format!("{}, re-encoded {}", at(), hex(&again));
            agree(view(&again).map(|v| seen(&v)), &msg, true, &again_at);
        }
    }
    println!(
        "{CASES} mutated requests: {both_ok} both ok, \
         {view_only} view only ok, {prost_only} prost only ok, {both_err} both refused"
    );
    assert!(both_ok * 20 > CASES, "only {both_ok} of {CASES} mutated requests were read by both: the test says little");
}

/// Found by the fuzz above (a legacy map entry duplicated): protobuf keeps the last value of a
/// repeated map key, and the view joined the values as if they were two header lines. Envoy
/// never repeats a key, so the view now refuses it rather than guess.
#[test]
fn a_key_repeated_in_the_legacy_headers_map_is_refused() {
    let line = |v: &str| HttpRequest { headers: HashMap::from([("x-api-key".into(), v.into())]), ..Default::default() };
    let http = [line("a").encode_to_vec(), line("b").encode_to_vec()].concat();
    let bytes = assemble(&Parts { attrs: Vec::new(), request: Vec::new(), http, entries: None }, None);
    let msg = CheckRequest::decode(&bytes[..]).expect("protobuf reads it");
    assert_eq!(expected(&msg).map(|s| s.headers), Ok(vec![("x-api-key".into(), "b".into())]));
    assert_eq!(view(&bytes).map(|v| v.method), Err(WireError::Decode), "bytes {}", hex(&bytes));
}
