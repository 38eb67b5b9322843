//! Seeded fuzz of the list filter's conversation with Envoy (`extproc::Session`) for one
//! response: its headers, with the decision of a real ext_authz `Check`, then its body in
//! chunks. However Envoy cuts the body (whole; byte by byte; random sizes with empty chunks;
//! `end_of_stream` on the last chunk or on an extra empty one), the client must receive the
//! same response, and it must be the whole body filtered at once: `filter_payload` for JSON
//! (the documented -32603 error when that fails or the body is over `max_event_bytes`), the
//! re-framed stream with each event's data filtered for SSE. Envoy is simulated as it applies
//! answers (a `BUFFERED` body comes whole, a `STREAMED` chunk is replaced by its mutation,
//! header mutations apply while headers are held), a `content-length` left on the response
//! must match the body, and no client reading the body or an event's data sees a tool denied
//! by the rule `^get_.*$`, restated here. Responses: tools/list answers, batches, GET streams,
//! notifications, from tiny to past `JSON_BUFFERED_MAX` and around a small `max_event_bytes`.
//! Seeds are fixed; a failure names its case, headers, body and chunking.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, Metadata};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyResponse, HeaderMutation, HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse, body_mutation,
    processing_request, processing_response,
};
use mcp_warden::config::{EnvoyMetadata, ListFilterSettings, OnUnparseable};
use mcp_warden::extproc::sse::Reframer;
use mcp_warden::extproc::{EXT_AUTHZ_NAMESPACE, JSON_BUFFERED_MAX, Session};
use mcp_warden::state::Warden;
use serde_json::Value;
use serde_json::value::RawValue;
use warden_core::decision::ListKind::{self, Batch, Stream, Tools};
use warden_core::listfilter::{Filtered, View, filter_payload};

mod common;
#[path = "../crates/core/tests/fuzz/rng.rs"]
mod rng;
use rng::Rng;

const MAX: usize = 4096;
const SETTINGS: ListFilterSettings = ListFilterSettings { on_unparseable: OnUnparseable::Error, max_event_bytes: MAX };

/// The policy's rule for alice, restated: `^get_.*$` (`.` is anything but a newline).
fn allowed(name: &str) -> bool {
    name.strip_prefix("get_").is_some_and(|rest| !rest.contains('\n'))
}

/// A request whose response is filtered: its body (none: a GET stream), the list it names,
/// its raw id.
#[derive(Debug, Clone, Copy)]
struct Call {
    body: &'static str,
    kind: ListKind,
    id: Option<&'static str>,
}

const BATCH: &str = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
const CALLS: [Call; 4] = [
    Call { body: r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#, kind: Tools, id: Some("7") },
    Call { body: r#"{"jsonrpc":"2.0","id":"r","method":"tools/list"}"#, kind: Tools, id: Some(r#""r""#) },
    Call { body: BATCH, kind: Batch, id: None },
    Call { body: "", kind: Stream, id: None },
];

/// What Envoy forwards to ext_proc after ext_authz allowed `call` for alice.
fn decision(w: &Warden, call: Call) -> Metadata {
    let (method, accept) = match call.body {
        "" => ("GET", "text/event-stream"),
        _ => ("POST", "application/json, text/event-stream"),
    };
    let headers = [("content-type", "application/json"), ("accept", accept), ("x-api-key", "foo")];
    let answer = w.check(&common::request(method, &headers, call.body, Some("bedrock-mcp"), ""));
    let md = answer.dynamic_metadata.expect("decision metadata");
    Metadata { filter_metadata: [(EXT_AUTHZ_NAMESPACE.to_owned(), md)].into_iter().collect(), ..Default::default() }
}

/// The documented body that replaces a list that cannot be shown.
fn error_body(call: Call) -> String {
    let id = call.id.unwrap_or("null");
    let message = "list response could not be filtered";
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32603,"message":"{message}"}}}}"#)
}

const NAMES: [&str; 9] = ["get_a", "get_", "get_é", "delete_file", "Get_a", "xget_a", "get", "set_a", "get_\nx"];

/// The generator, and what it counted.
struct Gen {
    rng: Rng,
    tally: Tally,
}

impl Gen {
    fn tool(&mut self) -> String {
        if self.rng.chance(5) {
            return self.rng.pick(&[r#"{"description":"no name"}"#, r#"{"name":7}"#]).to_owned();
        }
        let name = self.rng.pick(&NAMES);
        self.tally.denied += usize::from(!allowed(name));
        let mut json = serde_json::to_string(name).expect("a string serializes");
        if self.rng.chance(20) {
            json = json.replacen('e', "\\u0065", 1);
        }
        format!(r#"{{"name":{json},"description":"does {}"}}"#, self.rng.below(100))
    }

    /// An id: often the call's own (the awaited response), else another.
    fn id(&mut self, call: Call) -> &'static str {
        let own = call.id.filter(|_| self.rng.chance(50));
        self.tally.targeted += usize::from(own.is_some());
        own.unwrap_or_else(|| self.rng.pick(&["7", r#""r""#, "8", r#""x""#]))
    }

    fn message(&mut self, call: Call) -> String {
        let id = self.id(call);
        match self.rng.below(10) {
            0 => r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#.to_owned(),
            1 => format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32000,"message":"busy"}}}}"#),
            2 => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
            _ => {
                let tools: Vec<String> = (0..self.rng.below(6)).map(|_| self.tool()).collect();
                let cursor = if self.rng.chance(30) { r#","nextCursor":"c2""# } else { "" };
                let result = format!(r#"{{"tools":[{}]{cursor}}}"#, tools.join(","));
                match self.rng.chance(20) {
                    true => format!(r#"{{"result":{result},"jsonrpc":"2.0","id":{id}}}"#),
                    false => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#),
                }
            }
        }
    }

    /// One message or a batch of them; now and then cut short.
    fn payload(&mut self, call: Call) -> String {
        let mut p = if self.rng.chance(25) {
            self.tally.batches += 1;
            let messages: Vec<String> = (0..1 + self.rng.below(4)).map(|_| self.message(call)).collect();
            format!("[{}]", messages.join(","))
        } else {
            self.message(call)
        };
        if self.rng.chance(5) {
            let at = (1 + self.rng.below(p.len() - 1)..).find(|&i| p.is_char_boundary(i)).expect("a boundary");
            p.truncate(at);
        }
        p
    }

    /// A JSON body: as generated, around `max_event_bytes`, larger, or around the largest
    /// body asked for whole.
    fn json(&mut self, call: Call) -> String {
        let mut p = self.payload(call);
        let huge = JSON_BUFFERED_MAX as usize;
        let target = match self.rng.below(100) {
            0..40 => return p,
            40..80 => MAX - 40 + self.rng.below(81),
            80..94 => self.rng.below(6 * MAX),
            94..97 => huge - 2 + self.rng.below(5),
            _ => huge + 80_000,
        };
        pad(&mut p, target);
        if self.rng.chance(10) {
            p = format!("\n{p} ");
        }
        p
    }

    /// An event stream: priming events, notifications, lists (some over several `data:`
    /// lines, some near the limit), comments, LF or CRLF; the last event maybe unterminated.
    fn sse(&mut self, call: Call) -> String {
        let n = 1 + self.rng.below(5);
        let mut stream = String::new();
        for i in 0..n {
            let eol = self.rng.pick(&["\n", "\r\n"]);
            let fields = [format!("id: {i}"), "event: message".to_owned(), ": keep-alive".to_owned()];
            let head: String = fields.iter().filter(|_| self.rng.chance(30)).map(|f| format!("{f}{eol}")).collect();
            let end = if i + 1 == n && self.rng.chance(15) { "" } else { eol };
            let split = self.rng.chance(20);
            let render = |data: &str| {
                let data = if split { data.replace("},{", &format!("}},{eol}data: {{")) } else { data.to_owned() };
                format!("{head}data:{}{data}{eol}{end}", if data.is_empty() { "" } else { " " })
            };
            let mut data = match self.rng.below(10) {
                0 => String::new(),
                1 => self.message(call),
                _ => self.payload(call),
            };
            if !data.is_empty() && self.rng.chance(if end.is_empty() { 60 } else { 25 }) {
                // Events of about the limit's size, on both sides of it, terminated or not.
                let room = MAX.saturating_sub(render(&data).len());
                let len = data.len() + (room + self.rng.below(48)).saturating_sub(self.rng.below(48));
                pad(&mut data, len);
            }
            stream += &render(&data);
        }
        stream
    }
}

/// Grows a JSON payload to `len` bytes with an unknown member in its first object.
fn pad(p: &mut String, len: usize) {
    if let Some(at) = p.find('{')
        && len >= p.len() + 10
    {
        let n = len - p.len() - 9;
        p.insert_str(at + 1, &format!(r#""pad":"{}","#, "p".repeat(n)));
    }
}

/// How Envoy cuts a body: chunk ends (a repeat is an empty chunk); `empty_end` sends
/// `end_of_stream` on an extra empty chunk.
#[derive(Debug)]
struct Chunking {
    how: &'static str,
    cuts: Vec<usize>,
    empty_end: bool,
}

fn chunkings(rng: &mut Rng, len: usize, sse: bool) -> Vec<Chunking> {
    let mut ways = vec![
        Chunking { how: "whole", cuts: Vec::new(), empty_end: false },
        Chunking { how: "whole, then an empty end", cuts: Vec::new(), empty_end: true },
    ];
    // The re-framer scans an unfinished line again at every chunk: byte by byte, a long SSE
    // line costs the square of its length. JSON always, SSE when short or now and then.
    if len <= 3 * MAX && (!sse || len <= MAX / 4 || rng.chance(12)) {
        ways.push(Chunking { how: "byte by byte", cuts: (1..len).collect(), empty_end: rng.chance(50) });
    }
    let step = if len > 16 * MAX { 64 * 1024 } else { 2 * MAX };
    for _ in 0..2 {
        let mut size = || match rng.below(10) {
            0 => 0,
            1..4 => 1 + rng.below(8),
            _ => 1 + rng.below(step),
        };
        let cuts = std::iter::successors(Some(size()), |at| Some(at + size())).take_while(|&at| at < len).collect();
        ways.push(Chunking { how: "random sizes", cuts, empty_end: rng.chance(50) });
    }
    ways
}

/// One response as generated.
struct Case {
    call: Call,
    sse: bool,
    headers: Vec<(String, String)>,
    body: String,
}

impl Case {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn show(&self) -> String {
        format!("{:?} headers {:?} body \"{}\"", self.call, self.headers, clip(self.body.as_bytes()))
    }
}

/// Bytes for a failure message, the middle of a long body left out.
fn clip(b: &[u8]) -> String {
    match b.len() > 1000 {
        true => format!("{}…[{} bytes]…{}", b[..500].escape_ascii(), b.len(), b[b.len() - 200..].escape_ascii()),
        false => b.escape_ascii().to_string(),
    }
}

fn case(g: &mut Gen) -> Case {
    let call = g.rng.pick(&CALLS);
    let sse = g.rng.chance(50);
    let body = if sse { g.sse(call) } else { g.json(call) };
    let mut headers = vec![(":status".to_owned(), "200".to_owned())];
    let types: &[&str] = match sse {
        true => &["text/event-stream", "Text/Event-Stream; charset=utf-8", " text/event-stream ;charset=\"UTF-8\""],
        false => &["application/json", "application/json; charset=utf-8", "Application/JSON", ""],
    };
    let ct = g.rng.pick(types);
    if !ct.is_empty() {
        headers.push(("content-type".to_owned(), ct.to_owned()));
    }
    if g.rng.chance(if sse { 20 } else { 70 }) {
        headers.push(("content-length".to_owned(), body.len().to_string()));
    }
    if g.rng.chance(5) {
        headers.push(("content-encoding".to_owned(), g.rng.pick(&["identity", "gzip"]).to_owned()));
    }
    if g.rng.chance(3) {
        // A charset the filter does not read (issue 26): refused at the headers.
        headers.retain(|(k, _)| k != "content-type");
        let other = if sse { "text/event-stream; charset=utf-16" } else { "application/json; charset=utf-7" };
        headers.push(("content-type".to_owned(), other.to_owned()));
    }
    Case { call, sse, headers, body }
}

/// What the client receives: the body mode asked for, headers and body.
#[derive(Debug, PartialEq)]
struct Received {
    mode: Option<i32>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn apply(headers: &mut Vec<(String, String)>, mutation: Option<HeaderMutation>) {
    let Some(m) = mutation else { return };
    headers.retain(|(k, _)| !m.remove_headers.iter().any(|r| r.eq_ignore_ascii_case(k)));
    for h in m.set_headers.into_iter().filter_map(|o| o.header) {
        let value = if h.raw_value.is_empty() { h.value } else { String::from_utf8_lossy(&h.raw_value).into_owned() };
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&h.key));
        headers.push((h.key, value));
    }
}

fn chunk(bytes: &[u8], end_of_stream: bool) -> ProcessingRequest {
    let body = HttpBody { body: bytes.to_vec(), end_of_stream, ..Default::default() };
    ProcessingRequest { request: Some(processing_request::Request::ResponseBody(body)), ..Default::default() }
}

/// The body answer to one chunk, as Envoy applies it: the chunk as it was, or replaced.
fn answer(r: Option<ProcessingResponse>, piece: &[u8]) -> (Vec<u8>, Option<HeaderMutation>) {
    let Some(processing_response::Response::ResponseBody(BodyResponse { response })) = r.and_then(|r| r.response)
    else {
        panic!("a body chunk must get a body answer")
    };
    let common = response.unwrap_or_default();
    let body = match common.body_mutation.and_then(|m| m.mutation) {
        None => piece.to_vec(),
        Some(body_mutation::Mutation::Body(b)) => b,
        Some(body_mutation::Mutation::ClearBody(_)) => Vec::new(),
        Some(other) => panic!("unexpected mutation {other:?}"),
    };
    (body, common.header_mutation)
}

/// Envoy and the session on one response, the body cut as `way` says.
fn deliver(w: &Arc<Warden>, md: &Metadata, case: &Case, way: &Chunking) -> Received {
    let mut session = Session::new(w.clone(), SETTINGS);
    let header =
        |(k, v): &(String, String)| HeaderValue { key: k.clone(), raw_value: v.clone().into(), ..Default::default() };
    let headers = HeaderMap { headers: case.headers.iter().map(header).collect() };
    let headers = HttpHeaders { headers: Some(headers), ..Default::default() };
    let request = ProcessingRequest {
        request: Some(processing_request::Request::ResponseHeaders(headers)),
        metadata_context: Some(md.clone()),
        ..Default::default()
    };
    let r = session.handle(request).expect("headers are answered");
    let mut got = Received { mode: None, headers: case.headers.clone(), body: Vec::new() };
    match r.response {
        Some(processing_response::Response::ImmediateResponse(i)) => {
            let status = i.status.map_or(0, |s| s.code).to_string();
            got.headers = vec![(":status".to_owned(), status)];
            apply(&mut got.headers, i.headers);
            got.body = i.body;
            return got;
        }
        Some(processing_response::Response::ResponseHeaders(h)) => {
            apply(&mut got.headers, h.response.and_then(|c| c.header_mutation));
        }
        other => panic!("unexpected answer to headers: {other:?}"),
    }
    got.mode = r.mode_override.map(|m| m.response_body_mode);
    let body = case.body.as_bytes();
    if got.mode.is_none() {
        got.body = body.to_vec(); // no body asked for: it passes
        return got;
    }
    // A `BUFFERED` body comes whole, while Envoy still holds the headers.
    let buffered = got.mode == Some(BodySendMode::Buffered as i32);
    let (cuts, empty_end) = if buffered { (&[][..], false) } else { (&way.cuts[..], way.empty_end) };
    let ends = cuts.iter().map(|&to| (to, false)).chain([(body.len(), !empty_end)]);
    let mut from = 0;
    for (to, eos) in ends.chain(empty_end.then_some((body.len(), true))) {
        let (new, mutation) = answer(session.handle(chunk(&body[from..to], eos)), &body[from..to]);
        assert!(buffered || mutation.is_none(), "a header mutation after the headers left: {mutation:?}");
        apply(&mut got.headers, mutation);
        got.body.extend(new);
        from = to;
    }
    got
}

/// The whole body filtered at once, as documented, and whether it was over the limit.
fn expected(w: &Warden, case: &Case) -> (Vec<u8>, bool) {
    let error = error_body(case.call);
    let other_charset = case.header("content-type").is_some_and(|ct| ct.contains("utf-16") || ct.contains("utf-7"));
    if case.header("content-encoding") == Some("gzip") || other_charset {
        return (error.into_bytes(), false);
    }
    let snapshot = w.snapshot();
    let user = snapshot.policy.user("alice").expect("alice");
    let view = View { user, app: snapshot.policy.app("bedrock-mcp").expect("app") };
    let id: Option<Box<RawValue>> = case.call.id.map(|id| RawValue::from_string(id.to_owned()).expect("raw id"));
    let filter = |data: &str| match filter_payload(case.call.kind, &view, id.as_deref(), data) {
        Ok(Filtered::Unchanged) => None,
        Ok(Filtered::Rewritten(new)) => Some(new),
        Err(_) => Some(error.clone()),
    };
    if case.sse {
        let mut rewrite = |data: &str| if data.trim().is_empty() { None } else { filter(data) };
        let (mut reframer, mut out) = (Reframer::new(MAX), Vec::new());
        let pushed = reframer.push(case.body.as_bytes(), &mut out, &mut rewrite);
        match pushed {
            Ok(()) => reframer.finish(&mut out, &mut rewrite),
            Err(_) => out.extend(format!("data: {error}\n\n").bytes()),
        }
        return (out, pushed.is_err());
    }
    if case.body.len() > MAX {
        return (error.into_bytes(), true);
    }
    (filter(&case.body).unwrap_or_else(|| case.body.clone()).into_bytes(), false)
}

/// The JSON a client reads: the body, or each event's data (an unterminated last event too).
fn client_json(sse: bool, body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    if !sse {
        return vec![text];
    }
    let data = |event: &str| {
        let lines = event.lines().filter_map(|l| l.strip_prefix("data:"));
        lines.map(|v| v.strip_prefix(' ').unwrap_or(v)).collect::<Vec<_>>().join("\n")
    };
    text.split("\n\n").map(data).collect()
}

/// The tool names a client sees in `result.tools` of every message.
fn visible_tools(json: &Value) -> Vec<String> {
    let messages = json.as_array().cloned().unwrap_or_else(|| vec![json.clone()]);
    let tools = messages.iter().filter_map(|m| m["result"]["tools"].as_array().cloned()).flatten();
    tools.filter_map(|t| t["name"].as_str().map(str::to_owned)).collect()
}

#[derive(Debug, Default)]
struct Tally {
    targeted: usize,
    batches: usize,
    denied: usize,
    buffered: usize,
    streamed: usize,
    sse: usize,
    rewritten: usize,
    errors: usize,
    over_limit: usize,
    sse_over_limit: usize,
    deliveries: usize,
    bytewise_over_limit: usize,
    empty_chunks: usize,
    allowed_seen: usize,
}

fn check(w: &Arc<Warden>, md: &Metadata, case: &Case, rng: &mut Rng, tally: &mut Tally) -> Result<(), String> {
    let (want, over_limit) = expected(w, case);
    tally.rewritten += usize::from(want != case.body.as_bytes());
    tally.errors += usize::from(want.windows(6).any(|w| w == b"-32603"));
    tally.over_limit += usize::from(over_limit && !case.sse);
    tally.sse_over_limit += usize::from(over_limit && case.sse);
    let mut first: Option<(&Chunking, Received)> = None;
    let ways = chunkings(rng, case.body.len(), case.sse);
    for way in &ways {
        let got = deliver(w, md, case, way);
        let cuts = &way.cuts[..way.cuts.len().min(12)];
        let at =
            || format!("cut {} at {cuts:?}… ({} chunks, empty end: {})", way.how, way.cuts.len() + 1, way.empty_end);
        tally.deliveries += 1;
        tally.bytewise_over_limit += usize::from(way.how == "byte by byte" && case.body.len() > MAX);
        if got.mode == Some(BodySendMode::Streamed as i32) {
            let starts = [0].iter().chain(&way.cuts);
            tally.empty_chunks += starts.zip(&way.cuts).filter(|(a, b)| a == b).count() + usize::from(way.empty_end);
        }
        if got.body != want {
            return Err(format!("{}:\n  got  \"{}\"\n  want \"{}\"", at(), clip(&got.body), clip(&want)));
        }
        let length = got.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        if let Some((_, n)) = length.filter(|(_, n)| n.parse() != Ok(got.body.len())) {
            return Err(format!("{}: content-length {n} for {} bytes", at(), got.body.len()));
        }
        for json in client_json(case.sse, &got.body).iter().filter(|j| !j.trim().is_empty()) {
            let value: Value = serde_json::from_str(json).map_err(|e| format!("{}: {e} in {json:?}", at()))?;
            let names = visible_tools(&value);
            if let Some(leak) = names.iter().find(|n| !allowed(n)) {
                return Err(format!("{}: the client sees the denied tool {leak:?} in {json}", at()));
            }
            tally.allowed_seen += names.len();
        }
        match &first {
            Some((way0, got0)) if *got0 != got => {
                let (h0, h) = ((got0.mode, &got0.headers), (got.mode, &got.headers));
                return Err(format!("{} gave {h0:?}, {}: {h:?}", way0.how, at()));
            }
            Some(_) => {}
            None => first = Some((way, got)),
        }
    }
    let mode = first.and_then(|(_, got)| got.mode);
    let length = case.header("content-length").and_then(|n| n.parse::<u64>().ok());
    let buffered = !case.sse && length.is_some_and(|n| n <= JSON_BUFFERED_MAX);
    match mode.and_then(|m| BodySendMode::try_from(m).ok()) {
        None => {} // gzip, another charset: answered at once
        Some(BodySendMode::Buffered) if buffered => tally.buffered += 1,
        Some(BodySendMode::Streamed) if !buffered => {
            *(if case.sse { &mut tally.sse } else { &mut tally.streamed }) += 1
        }
        Some(other) => return Err(format!("body mode {other:?} for this framing")),
    }
    Ok(())
}

#[test]
fn the_client_gets_the_whole_body_filtered_however_envoy_cuts_it() {
    const CASES: u64 = 500;
    let w = Arc::new(common::warden(200, EnvoyMetadata::All));
    let decisions: Vec<Metadata> = CALLS.iter().map(|&c| decision(&w, c)).collect();
    let mut g = Gen { rng: Rng(0), tally: Tally::default() };
    let (mut failures, mut shortest): (usize, Option<(usize, String)>) = (0, None);
    for n in 0..CASES {
        g.rng = Rng(0xe7_9c0c ^ n);
        let case = case(&mut g);
        let md = &decisions[CALLS.iter().position(|c| c.body == case.call.body).expect("a known call")];
        let mut rng = Rng(0xc075 ^ n);
        if let Err(why) = check(&w, md, &case, &mut rng, &mut g.tally) {
            failures += 1;
            if shortest.as_ref().is_none_or(|(len, _)| case.body.len() < *len) {
                shortest = Some((case.body.len(), format!("case {n}: {}\n  {why}", case.show())));
            }
        }
    }
    println!("{CASES} responses: {failures} disagreements; {:?}", g.tally);
    if let Some((_, report)) = shortest {
        panic!("{failures} of {CASES} responses disagree; the shortest: {report}");
    }
    let t = &g.tally;
    assert!(t.buffered > 20 && t.streamed > 20 && t.sse > 100, "vacuous framing mix {t:?}");
    assert!(t.rewritten > 100 && t.errors > 20 && t.over_limit > 20 && t.empty_chunks > 100, "vacuous {t:?}");
    assert!(t.sse_over_limit > 5 && t.bytewise_over_limit > 20, "the limit is seldom reached {t:?}");
    assert!(t.targeted > 50 && t.batches > 50 && t.denied > 200 && t.allowed_seen > 200, "vacuous input mix {t:?}");
}

/// Found by the fuzz above: only the unfinished tail of an event counted against
/// `max_event_bytes`, so an event over the limit that arrived complete in one chunk was
/// filtered and sent, while the same event cut before its last byte became the error event
/// and ended the stream. Every event over the limit now gets the error, however it is cut.
#[test]
fn an_sse_event_over_the_limit_gets_the_same_answer_whole_or_cut_before_its_last_byte() {
    let w = Arc::new(common::warden(200, EnvoyMetadata::All));
    let list = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_a"},{"name":"delete_file"}]}}"#;
    let mut data = list.to_owned();
    pad(&mut data, MAX + 2 - "data: \n\n".len());
    let body = format!("data: {data}\n\n");
    assert_eq!(body.len(), MAX + 2);
    let headers = [(":status", "200"), ("content-type", "text/event-stream")];
    let headers = headers.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec();
    let case = Case { call: CALLS[0], sse: true, headers, body };
    let md = decision(&w, CALLS[0]);
    let whole = deliver(&w, &md, &case, &Chunking { how: "whole", cuts: Vec::new(), empty_end: false });
    let cut = deliver(&w, &md, &case, &Chunking { how: "two", cuts: vec![MAX + 1], empty_end: false });
    let whole_shown = String::from_utf8_lossy(&whole.body);
    assert!(whole_shown.starts_with("data: {") && !whole_shown.contains("delete_file"), "filtered whole");
    let (whole, cut) = (clip(&whole.body), clip(&cut.body));
    assert!(whole == cut, "{}\n  whole: \"{whole}\"\n  cut at {}: \"{cut}\"", case.show(), MAX + 1);
}
