//! Differential fuzzing of the request gate, `mcp::inspect`, and of what a message names,
//! `mcp::governed`: what the policy decides on must be what everyone downstream acts on.
//!
//! Whenever `inspect` accepts a request: (1) what `governed` names is what every plausible
//! reader of the body finds at `params.name` / `params.uri` (exact keys, first or last repeat
//! winning; Go's case-folding `encoding/json`: AgentCore is Go); (2) `Mcp-Method` / `Mcp-Name`,
//! required in 2026-07-28 and checked when sent before, equal the body's method and governed
//! name however an upstream reads the lines Envoy forwards (first, last, joined) and once the
//! spec's `=?base64?…?=` form is decoded (independently here), as a router may act on them
//! alone; (3) so does every message of a 2025-03-26 batch. It also has a JSON content type on
//! every reading and a known protocol version or none (read as 2025-03-26). Requests come from
//! a seeded generator (headers in and out of step with the body, case variants, repeated lines,
//! good and broken base64; case-variant, repeated and escaped keys, look-alike and comma-holding
//! names, batches) and char-level mutations, so a failure reproduces from its seed. Its
//! findings, now refused, are the tests at the end, each its smallest case: a mirror or a
//! `Content-Type` sent as two lines, mirrors on a message with no method, and a base64-wrapped
//! `Mcp-Method`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use warden_core::headers::Headers;
use warden_core::mcp::{Body, HttpRequest, Inspection, Limits, Message, ProtocolVersion, governed, inspect};

#[path = "fuzz/json.rs"]
mod json;
#[path = "fuzz/rng.rs"]
mod rng;
use json::{J, READERS, Reader, Step, read};
use rng::Rng;

const KNOWN_VERSIONS: [&str; 5] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", STATELESS];
const STATELESS: &str = "2026-07-28";
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const LIMITS: Limits = Limits { max_body_bytes: 4096, max_depth: 16, max_batch: 100 };
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A mirrored header value as the spec defines it: `=?base64?{payload}?=` (markers lower-case
/// and case-sensitive) is standard, padded base64 of UTF-8; anything else is the value itself.
/// `None` when the payload does not decode. Leftover bits are ignored, as Go's decoder does.
fn unmirror(value: &str) -> Option<String> {
    let Some(payload) = value.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) else {
        return Some(value.to_owned());
    };
    let data = payload.trim_end_matches('=');
    if payload.len() % 4 != 0 || payload.len() - data.len() > 2 {
        return None;
    }
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in data.bytes() {
        acc = ((acc << 6) | B64.iter().position(|&a| a == c)? as u32) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// `application/json` by its media type: the part before any `;`, without blanks, any case.
fn is_json_media_type(value: &str) -> bool {
    let essence = value.find(';').map_or(value, |i| &value[..i]);
    essence.trim_matches([' ', '\t']).eq_ignore_ascii_case("application/json")
}

/// The ways an upstream reads a header Envoy forwards as several lines (Envoy's map joins
/// with `,`; Go's `Header.Get` takes the first; Node joins with `, `).
type LineReader = fn(&[&str]) -> String;
const LINE_READERS: [(&str, LineReader); 4] = [
    ("joined with ','", |l| l.join(",")),
    ("first line", |l| l[0].to_owned()),
    ("last line", |l| l[l.len() - 1].to_owned()),
    ("joined with ', '", |l| l.join(", ")),
];

/// The string `r` finds at `path`, if it finds a string.
fn text_at(r: Reader, j: &J, path: &[Step<'_>]) -> Option<String> {
    read(r, j, path).and_then(|v| if let J::Str(s) = v { Some(s.clone()) } else { None })
}

/// What a reader of the body governs: kind and name; `None` for a method naming nothing.
fn their_governed(r: Reader, j: &J) -> Option<(&'static str, Option<String>)> {
    let param = |key| text_at(r, j, &[("params", true), (key, true)]);
    let in_ref = |key| text_at(r, j, &[("params", true), ("ref", true), (key, true)]);
    Some(match text_at(r, j, &[("method", true)])?.as_str() {
        "tools/call" => ("tool", param("name")),
        "prompts/get" => ("prompt", param("name")),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => ("resource", param("uri")),
        "completion/complete" => match in_ref("type").as_deref() {
            Some("ref/prompt") => ("prompt", in_ref("name")),
            Some("ref/resource") => ("resource", in_ref("uri")),
            _ => ("unrecognised ref", None),
        },
        _ => return None,
    })
}

/// One generated HTTP request: header lines as Envoy sends them (names lower-case).
#[derive(Debug)]
struct Case {
    method: &'static str,
    lines: Vec<(&'static str, String)>,
    body: String,
}

impl Case {
    fn header(&self, name: &str) -> Vec<&str> {
        self.lines.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }
}

#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    refused: usize,
    stateless_plain_name: usize,
    stateless_base64_name: usize,
    batches: usize,
    governed: usize,
}

macro_rules! ensure {
    ($cond:expr, $($why:tt)*) => {
        if !$cond {
            return Err(format!($($why)*));
        }
    };
}

/// Runs the gate on `case`; when it accepts, checks every property above.
fn check(case: &Case, tally: &mut Tally) -> Result<(), String> {
    let headers = Headers::new(case.lines.iter().map(|(n, v)| (*n, v.as_str())));
    let req = HttpRequest { method: case.method, headers: &headers, body: case.body.as_bytes() };
    let outcome = catch_unwind(AssertUnwindSafe(|| inspect(&req, &LIMITS))).map_err(|_| "inspect panicked")?;
    let Ok(inspection) = outcome else {
        tally.refused += 1;
        return Ok(());
    };
    tally.accepted += 1;
    let (version, body) = match inspection {
        Inspection::Messages { version, body } => (version, body),
        other => {
            let method = if matches!(other, Inspection::Stream) { "GET" } else { "DELETE" };
            ensure!(case.method == method && case.body.is_empty(), "{other:?} for a {} with a body", case.method);
            return Ok(());
        }
    };
    ensure!(case.method == "POST", "messages read from a {} request", case.method);
    let content_type = case.header("content-type");
    ensure!(!content_type.is_empty(), "no Content-Type");
    for (how, read_lines) in LINE_READERS {
        let seen = read_lines(&content_type);
        ensure!(is_json_media_type(&seen), "Content-Type {content_type:?} ({how}) reads {seen:?}, not JSON");
    }
    ensure!(!case.body.is_empty() && case.body.len() <= LIMITS.max_body_bytes, "body of {} bytes", case.body.len());
    let declared = case.header("mcp-protocol-version").join(",");
    let declared = declared.trim(); // Envoy strips blanks around a value
    match declared {
        "" => ensure!(version == ProtocolVersion::V2025_03_26, "no version header read as {version:?}"),
        v => ensure!(KNOWN_VERSIONS.contains(&v) && version.as_str() == v, "version {v:?} read as {version:?}"),
    }
    let tree: J = serde_json::from_str(&case.body).map_err(|e| format!("accepted, not JSON: {e}"))?;
    let pairs: Vec<(&Message<'_>, &J)> = match (&body, &tree) {
        (Body::Single(m), J::Obj(_)) => vec![(m, &tree)],
        (Body::Batch(ms), J::Arr(items)) if ms.len() == items.len() => ms.iter().zip(items).collect(),
        _ => return Err("accepted shape differs from the document".into()),
    };
    if matches!(body, Body::Batch(_)) {
        tally.batches += 1;
        ensure!(version <= ProtocolVersion::V2025_03_26, "a batch in {version:?}");
    }
    let (mcp_method, mcp_name) = (case.header("mcp-method"), case.header("mcp-name"));
    let stateless = version.as_str() == STATELESS;
    let mirror = Mirror { declared, stateless, mcp_method, mcp_name };
    for (i, (msg, j)) in pairs.into_iter().enumerate() {
        check_message(i, msg, j, &mirror, tally)?;
    }
    Ok(())
}

/// What the request's headers declare, against which each message is checked.
struct Mirror<'a> {
    /// `MCP-Protocol-Version`, blanks trimmed; empty when absent.
    declared: &'a str,
    /// The version read is the stateless one.
    stateless: bool,
    mcp_method: Vec<&'a str>,
    mcp_name: Vec<&'a str>,
}

/// Checks message `i` of an accepted request (`j`, its JSON tree) against every reader and
/// the headers mirrored from it.
fn check_message(i: usize, msg: &Message<'_>, j: &J, mirror: &Mirror<'_>, tally: &mut Tally) -> Result<(), String> {
    let Mirror { declared, stateless, ref mcp_method, ref mcp_name } = *mirror;
    let method = msg.method.as_deref();
    for r in READERS {
        let theirs = text_at(r, j, &[("method", true)]);
        ensure!(theirs.as_deref() == method, "message {i}: {r:?} reads method {theirs:?}, we {method:?}");
        if let Some(m) = text_at(r, j, &[("params", true), ("_meta", true), (VERSION_KEY, false)]) {
            ensure!(declared.is_empty() || m == declared, "message {i}: {r:?} reads _meta version {m:?}");
        }
    }
    ensure!(!stateless || method.is_some(), "message {i}: a response POSTed in {STATELESS}");
    ensure!(!stateless || !mcp_method.is_empty(), "message {i}: no Mcp-Method in {STATELESS}");
    for (how, read_lines) in LINE_READERS.iter().filter(|_| !mcp_method.is_empty()) {
        let seen = read_lines(mcp_method);
        for (decoding, value) in [("plain", Some(seen.clone())), ("decoded", unmirror(&seen))] {
            let why = format!("message {i}: Mcp-Method {mcp_method:?} ({how}, {decoding}) reads {value:?}");
            ensure!(value.is_none() || value.as_deref() == method, "{why}, the body {method:?}");
        }
    }
    let Ok(ours) = governed(msg) else { return Ok(()) }; // refused before any policy: nothing runs
    let expected = ours.as_ref().map(|g| (g.kind(), Some(g.name().to_owned())));
    for r in READERS {
        let theirs = their_governed(r, j);
        ensure!(theirs == expected, "message {i}: {r:?} would govern {theirs:?}, governed() says {ours:?}");
    }
    let Some(g) = ours else {
        ensure!(mcp_name.is_empty(), "message {i}: Mcp-Name {mcp_name:?} on a message naming nothing");
        return Ok(());
    };
    tally.governed += 1;
    let (kind, name) = (g.kind(), g.name());
    let mirrored = matches!(method, Some("tools/call" | "prompts/get" | "resources/read"));
    ensure!(!stateless || !mirrored || !mcp_name.is_empty(), "message {i}: no Mcp-Name for the {kind} {name:?}");
    for (how, read_lines) in LINE_READERS.iter().filter(|_| !mcp_name.is_empty()) {
        let seen = unmirror(&read_lines(mcp_name));
        let why = format!("message {i}: Mcp-Name {mcp_name:?} ({how}) reads {seen:?}");
        ensure!(seen.as_deref() == Some(name), "{why}, governed() says {kind} {name:?}");
    }
    if stateless && !mcp_name.is_empty() {
        let encoded = mcp_name.iter().any(|v| v.starts_with("=?base64?"));
        *if encoded { &mut tally.stateless_base64_name } else { &mut tally.stateless_plain_name } += 1;
    }
    Ok(())
}

const SENTINEL: &str = "=?base64?ZGVsZXRlX2FsbA==?="; // a plain value that looks encoded
const NAMES: &[&str] =
    &["get_weather", "delete_all", "météo", "ſearch", "get_weather,delete_all", "a b", "x\u{1}y", ""];
const URIS: &[&str] = &["file:///etc/passwd", "db://x?y=1,2", "https://é.example/ſ"];
const ODD_METHODS: &[&str] = &["tools/list", "ping", "Tools/Call", "tools/call,ping", "=?base64?dG9vbHMvY2FsbA==?="];
const VERSIONS: &[&str] =
    &["", "2025-03-26", "2025-06-18", "2025-11-25", "2099-01-01", STATELESS, STATELESS, STATELESS];
const CONTENT_TYPES: &[&[&str]] = &[
    &[],
    &["application/json-seq"],
    &["text/json"],
    &["Application/JSON; charset=utf-8"],
    &["application/json; charset=utf-8", "text/plain"],
];
const CHARS: &[char] = &['{', '}', '[', ']', '"', ',', ':', '\\', 'u', 'e', ' ', 'M', 'N', 'ſ', 'K', '=', '?'];
const TOKENS: &[&str] = &[r#","Method":"x""#, r#","method":"ping""#, r#""name":"delete_all","#, r"\u006e", "[", "]"];

struct Gen {
    rng: Rng,
    /// Percent chance, per object member, of a repeat, of a case variant, of an escaped key.
    p: usize,
}

impl Gen {
    fn lit(&mut self, s: &str, escape: usize) -> String {
        json::literal(&mut self.rng, s, escape)
    }

    /// A literal from `pool` (`SENTINEL` too, now and then), and the text it stands for.
    fn text(&mut self, pool: &[&'static str]) -> (String, &'static str) {
        let s = if self.rng.chance(4) { SENTINEL } else { self.rng.pick(pool) };
        let escape = if self.rng.chance(10) { 30 } else { 0 };
        (self.lit(s, escape), s)
    }

    /// `key` differing in case only: an ASCII letter flipped, or `s`→`ſ` / `k`→`K`.
    fn variant(&mut self, key: &str) -> String {
        let mut chars: Vec<char> = key.chars().collect();
        let letters: Vec<usize> = (0..chars.len()).filter(|&i| chars[i].is_ascii_alphabetic()).collect();
        if let Some(&i) = letters.get(self.rng.below(letters.len().max(1))) {
            chars[i] = match chars[i] {
                's' if self.rng.chance(40) => '\u{17F}',
                'k' if self.rng.chance(40) => '\u{212A}',
                c => (c as u8 ^ 0x20) as char,
            };
        }
        chars.into_iter().collect()
    }

    fn object(&mut self, mut members: Vec<(&str, String)>) -> String {
        let mut keys: Vec<String> = members.iter().map(|(k, _)| (*k).to_owned()).collect();
        for i in 0..members.len() {
            if self.rng.chance(self.p) {
                let value = if self.rng.chance(50) { members[i].1.clone() } else { self.text(NAMES).0 };
                members.push((members[i].0, value));
                keys.push(keys[i].clone());
            }
            if self.rng.chance(self.p) {
                keys[i] = self.variant(&keys[i]);
            }
        }
        let mut out = Vec::new();
        for (key, (_, value)) in keys.iter().zip(members) {
            let escape = if self.rng.chance(self.p * 2) { 40 } else { 0 };
            out.push(format!("{}:{value}", self.lit(key, escape)));
        }
        format!("{{{}}}", out.join(","))
    }

    /// A message, and the method and name it was meant to carry (header values follow them).
    fn message(&mut self) -> (String, Option<&'static str>, Option<&'static str>) {
        let kind = self.rng.below(20);
        let mut m = vec![("jsonrpc", "\"2.0\"".to_owned())];
        if kind != 14 {
            m.push(("id", self.rng.pick(&["1", "\"r-1\"", "7.5"]).into()));
        }
        if kind == 15 {
            m.push(("result", "{}".into()));
            let mirrors = self.rng.chance(30); // sent anyway, as if it were a call
            return (self.object(m), mirrors.then_some("tools/call"), mirrors.then_some("get_weather"));
        }
        let method = match kind {
            0..=6 | 19 => "tools/call",
            7 | 8 => "prompts/get",
            9 => "resources/read",
            10 => self.rng.pick(&["resources/read", "resources/subscribe", "resources/unsubscribe"]),
            11 => "completion/complete",
            14 => "notifications/initialized",
            _ => self.rng.pick(ODD_METHODS),
        };
        m.push(("method", self.text(&[method]).0));
        let (mut params, mut name) = (Vec::new(), None);
        let key = if method.starts_with("resources/") { "uri" } else { "name" };
        if method == "completion/complete" {
            let reference = vec![("type", "\"ref/prompt\"".into()), ("name", self.text(NAMES).0)];
            params.push(("ref", self.object(reference)));
        } else if self.rng.chance(4) {
            params.push((key, self.rng.pick(&["5", "null", "[\"get_weather\"]", "{}"]).into()));
        } else if !self.rng.chance(4) {
            let (value, text) = self.text(if key == "uri" { URIS } else { NAMES });
            params.push((key, value));
            name = Some(text);
        }
        if self.rng.chance(30) {
            params.push(("arguments", r#"{"city":"Paris","name":"delete_all"}"#.into()));
        }
        if self.rng.chance(8) {
            let version = self.text(&KNOWN_VERSIONS).0;
            params.push(("_meta", self.object(vec![(VERSION_KEY, version)])));
        }
        if !params.is_empty() || self.rng.chance(50) {
            m.push(("params", self.object(params)));
        }
        (self.object(m), Some(method), name)
    }

    /// A mirrored header's lines for `value`: mostly as the spec says, else broken some way.
    fn mirror(&mut self, value: &str, other: &str) -> Vec<String> {
        let encoded = |s: &[u8]| format!("=?base64?{}?=", STANDARD.encode(s));
        let plain = value.chars().all(|c| (' '..='~').contains(&c)) && !value.starts_with("=?base64?");
        match self.rng.below(40) {
            0..=21 if plain => vec![value.to_owned()],
            0..=29 => vec![encoded(value.as_bytes())],
            30 => vec![encoded(value.as_bytes()).replace('=', "")],
            31 => vec![encoded(value.as_bytes()).replace("?=", "=?=")],
            32 => vec![encoded(&[b'a', 0xFF, 0xFE])],
            33 => vec![other.to_owned()],
            34 => vec![self.variant(value)],
            35 => vec![encoded(value.as_bytes()).replace("base64", "BASE64")],
            36 | 37 if value.contains(',') => value.split(',').map(str::to_owned).collect(),
            36 | 37 => vec![value.to_owned(), value.to_owned()],
            _ => vec![value.to_owned()],
        }
    }

    fn case(&mut self) -> Case {
        let method = if self.rng.chance(90) { "POST" } else { self.rng.pick(&["GET", "GET", "DELETE", "PUT", "post"]) };
        let content_type = if self.rng.chance(75) { &["application/json"][..] } else { self.rng.pick(CONTENT_TYPES) };
        let mut lines: Vec<(&'static str, String)> =
            content_type.iter().map(|v| ("content-type", (*v).into())).collect();
        let version = self.rng.pick(VERSIONS);
        if !version.is_empty() {
            lines.push(("mcp-protocol-version", version.into()));
        }
        let (mut body, meant_method, meant_name) = self.message();
        if self.rng.chance(12) {
            let rest: Vec<String> = (0..self.rng.below(3)).map(|_| self.message().0).collect();
            body = format!("[{}]", [body].into_iter().chain(rest).collect::<Vec<_>>().join(","));
        }
        if self.rng.chance(10) {
            body = json::mutate(&mut self.rng, &body, CHARS, TOKENS);
        }
        let sends = if version == STATELESS { 90 } else { 25 };
        for (header, meant, pool) in [("mcp-method", meant_method, ODD_METHODS), ("mcp-name", meant_name, NAMES)] {
            if let Some(value) = meant.filter(|_| self.rng.chance(sends)) {
                let other = self.rng.pick(pool);
                lines.extend(self.mirror(value, other).into_iter().map(|v| (header, v)));
            }
        }
        if method != "POST" && self.rng.chance(50) {
            body.clear();
        }
        let at = self.rng.below(lines.len() + 1);
        lines.rotate_left(at);
        Case { method, lines, body }
    }
}

const CASES: u64 = 30_000;

#[test]
fn accepted_requests_name_the_same_thing_to_every_reader_of_body_and_headers() {
    let (mut tally, mut failures) = (Tally::default(), Vec::new());
    for n in 0..CASES {
        let seed = n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x0069_6E73_7065_6374;
        let case = Gen { rng: Rng(seed), p: [0, 0, 0, 3, 12][(n % 5) as usize] }.case();
        if let Err(why) = check(&case, &mut tally) {
            failures.push(format!("case {n} (seed {seed:#x}): {why}\n  {case:?}"));
        }
    }
    println!("{tally:?}, {} disagreements", failures.len());
    let total = tally.accepted + tally.refused;
    assert!(tally.accepted * 20 > total && tally.refused * 20 > total, "vacuous mix {tally:?}");
    assert!(tally.stateless_plain_name > 200 && tally.stateless_base64_name > 200, "few mirrored names: {tally:?}");
    assert!(tally.batches > 200 && tally.governed > 3000, "few batches or governed names: {tally:?}");
    let first: Vec<&String> = failures.iter().take(6).collect();
    assert!(failures.is_empty(), "{} of {CASES} cases disagree, first:\n{first:#?}", failures.len());
}

/// Asserts the gate refuses a POST of `body` with `lines`; says what it governed if not.
fn assert_refused(lines: &[(&'static str, &'static str)], body: &str) {
    let headers = Headers::new(lines.iter().copied());
    if let Ok(Inspection::Messages { body: Body::Single(m), .. }) =
        inspect(&HttpRequest { method: "POST", headers: &headers, body: body.as_bytes() }, &LIMITS)
    {
        panic!("accepted; governed() says {:?}", governed(&m));
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const V2026: (&str, &str) = ("mcp-protocol-version", STATELESS);

/// Envoy joins repeated lines with `,`: `Mcp-Name: get_weather` + `Mcp-Name: delete_all` match
/// the body's `get_weather,delete_all` (`get_*` allows it); a router on the last line runs another.
#[test]
fn a_name_holding_a_comma_sent_as_two_mcp_name_lines_is_refused() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather,delete_all"}}"#;
    assert_refused(
        &[JSON, V2026, ("mcp-method", "tools/call"), ("mcp-name", "get_weather"), ("mcp-name", "delete_all")],
        body,
    );
}

/// Two `Mcp-Method` lines match the body's `tools/call,ping`, which governs nothing, so no
/// policy runs; a router on the first line dispatches a `tools/call` of `delete_all`.
#[test]
fn a_method_holding_a_comma_sent_as_two_mcp_method_lines_is_refused() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call,ping","params":{"name":"delete_all"}}"#;
    assert_refused(&[JSON, V2026, ("mcp-method", "tools/call"), ("mcp-method", "ping")], body);
}

/// A method wearing the `=?base64?…?=` markers is compared raw and governs nothing, while an
/// upstream decoding every mirrored `Mcp-*` value (one shared decoder) reads `tools/call`.
#[test]
fn a_method_wearing_the_base64_markers_is_refused() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"=?base64?dG9vbHMvY2FsbA==?=","params":{"name":"delete_all"}}"#;
    assert_refused(&[JSON, V2026, ("mcp-method", "=?base64?dG9vbHMvY2FsbA==?=")], body);
}

/// A response governs nothing and runs nothing, yet its `Mcp-Method` and `Mcp-Name` are not
/// compared with anything: a router on the headers sees a `tools/call` of `delete_all`.
#[test]
fn mirrored_headers_on_a_response_are_refused() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    assert_refused(&[JSON, ("mcp-method", "tools/call"), ("mcp-name", "delete_all")], body);
}

/// Two `Content-Type` lines join as `application/json; charset=utf-8,text/plain`, JSON by its
/// first part, while an upstream reading the last line sees `text/plain`.
#[test]
fn a_second_content_type_line_that_is_not_json_is_refused() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather"}}"#;
    assert_refused(&[("content-type", "application/json; charset=utf-8"), ("content-type", "text/plain")], body);
}
