//! Differential fuzzing of the JSON-RPC reader, `mcp::jsonrpc::parse`.
//!
//! The property: whenever `parse` accepts a body, every plausible reader of the same bytes
//! sees the same `method`, `id`, `params.name`, `params.uri`, `params.ref` and `_meta`
//! protocol version as we do. Otherwise the upstream could run another tool than the one we
//! authorised: AgentCore is Go, whose `encoding/json` matches struct keys case-insensitively
//! (`ſ`≡`s` and `K`≡`k` included) and lets the last match win; MCP servers in Python or
//! TypeScript match keys exactly and let the last duplicate win. Three reference readers
//! (exact/first, exact/last, Go) work on a serde_json tree that keeps every object member in
//! order, duplicates included. Bodies come from a seeded generator (case variants, duplicates,
//! escaped keys, deep nesting, batches) and from char-level mutations of valid bodies, so
//! every run sees the same cases; a failure names the case and prints the body. It found
//! one: an out-of-range number (`1e999`) was accepted as an `id`; it is now refused, as it is
//! anywhere else in a body (the test at the end).

use std::borrow::Cow;
use std::panic::catch_unwind;

use warden_core::mcp::jsonrpc::{Body, JsonRpcError, Message, parse};

#[path = "fuzz/json.rs"]
mod json;
#[path = "fuzz/rng.rs"]
mod rng;
use json::{J, READERS, Reader, Step, read};
use rng::Rng;

/// A governed field as a decision sees it: absent, present but not a string, or a string.
type Field = Option<Option<String>>;

fn field(v: Option<&J>) -> Field {
    v.map(|j| if let J::Str(s) = j { Some(s.clone()) } else { None })
}

/// Everything an access decision reads from one message.
#[derive(Debug, PartialEq)]
struct View {
    method: Field,
    id: Option<J>,
    name: Field,
    uri: Field,
    ref_type: Field,
    ref_name: Field,
    ref_uri: Field,
    protocol_version: Field,
}

const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

fn their_view(reader: Reader, j: &J) -> View {
    let at = |path: &[Step<'_>]| field(read(reader, j, path));
    let param = |key| at(&[("params", true), (key, true)]);
    let in_ref = |key| at(&[("params", true), ("ref", true), (key, true)]);
    View {
        method: at(&[("method", true)]),
        id: read(reader, j, &[("id", true)]).cloned(),
        name: param("name"),
        uri: param("uri"),
        ref_type: in_ref("type"),
        ref_name: in_ref("name"),
        ref_uri: in_ref("uri"),
        protocol_version: at(&[("params", true), ("_meta", true), (VERSION_KEY, false)]),
    }
}

fn our_view(m: &Message<'_>) -> View {
    let text = |v: &Option<Cow<'_, str>>| v.as_deref().map(|s| Some(s.to_owned()));
    let maybe = |v: &Option<Result<Cow<'_, str>, ()>>| v.as_ref().map(|r| r.as_deref().ok().map(str::to_owned));
    let r = m.params.reference.as_ref();
    View {
        method: text(&m.method),
        id: m.id.map(|raw| serde_json::from_str(raw.get()).expect("our id is JSON")),
        name: maybe(&m.params.name),
        uri: maybe(&m.params.uri),
        ref_type: r.and_then(|r| text(&r.kind)),
        ref_name: r.and_then(|r| text(&r.name)),
        ref_uri: r.and_then(|r| text(&r.uri)),
        protocol_version: text(&m.params.meta_protocol_version),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Refused,
    Accepted,
}

/// Parses `body`; when accepted, checks every reader's view of every message against ours.
fn check(case: &str, body: &str, max_depth: usize) -> Outcome {
    let parsed = catch_unwind(|| parse(body, max_depth, usize::MAX))
        .unwrap_or_else(|_| panic!("{case}: parse panicked: {body:?}"));
    let Ok(parsed) = parsed else { return Outcome::Refused };
    let ours: Vec<&Message<'_>> = match &parsed {
        Body::Single(m) => vec![m],
        Body::Batch(ms) => ms.iter().collect(),
    };
    let tree: J = serde_json::from_str(body).unwrap_or_else(|e| panic!("{case}: accepted, not JSON ({e}): {body:?}"));
    let theirs: Vec<&J> = match (&parsed, &tree) {
        (Body::Single(_), J::Obj(_)) => vec![&tree],
        (Body::Batch(_), J::Arr(items)) if items.len() == ours.len() => items.iter().collect(),
        _ => panic!("{case}: accepted shape differs from the document: {body:?}"),
    };
    for (i, (m, j)) in ours.into_iter().zip(theirs).enumerate() {
        let ours = our_view(m);
        for reader in READERS {
            assert_eq!(ours, their_view(reader, j), "{case}, message {i}, {reader:?} reads differently: {body:?}");
        }
    }
    Outcome::Accepted
}

/// Counts outcomes by `Outcome as usize`, and fails unless over 5 % of the bodies were
/// accepted and over 5 % refused: the run cannot pass by saying nothing.
fn assert_mixed(what: &str, tally: [usize; 2]) {
    let [refused, accepted] = tally;
    let total = refused + accepted;
    println!("{what}: {accepted} accepted, {refused} refused of {total}");
    assert!(accepted * 20 > total && refused * 20 > total, "{what}: vacuous mix {tally:?}");
}

const METHODS: &[&str] =
    &["tools/call", "tools/list", "prompts/get", "resources/read", "completion/complete", "ping", "initialize"];
const NAMES: &[&str] = &["get_weather", "delete_all", "a___b", "Get_Weather", "métée", "ſearch", "\u{212A}ill", ""];
const URIS: &[&str] = &["file:///etc/passwd", "db://x?y=1", "https://é.example/ſ"];
const UNKNOWN_KEYS: &[&str] = &["x", "meta", "methods", "method ", "ıd", "İD", "méthod", "nam", "", "\u{0}", "😀"];
const NUMBERS: &[&str] =
    &["0", "1", "-1", "1.0", "1e2", "1E+2", "-0", "0.5", "-1.5e-7", "12345678901234567890", "1e-999"];
/// Refused by `parse`, as an `id` too (see the test at the end).
const BAD_NUMBERS: &[&str] = &["+1", ".5", "1.", "01", "-", "NaN", "1e999", "-1E400"];
const RAW_STRINGS: &[&str] = &[r#""\ud800""#, r#""\udc00x""#, r#""\ud83d\ude00""#, r#""\u0000\t\/""#, "\"a\nb\""];
const SPACE: &[&str] = &["", "", "", "", " ", "\n", "\t", "\r\n  "];
const CHARS: &[char] = &['{', '}', '[', ']', '"', ',', ':', '\\', 'u', '0', '1', 'e', '-', ' ', 'M', 's', 'ſ', 'K'];
const TOKENS: &[&str] =
    &[r#","Method":"x""#, r#","method":"y""#, r#""name":"z","#, ",\"paramſ\":{}", r"\u006d", "[[[["];

/// Writes random JSON-RPC bodies. `p` is the percent chance, per object member, of a case
/// variant and of a repeat: 0 for clean bodies.
struct Gen {
    rng: Rng,
    p: usize,
}

impl Gen {
    fn ws(&mut self) -> &'static str {
        self.rng.pick(SPACE)
    }

    fn lit(&mut self, s: &str, escape: usize) -> String {
        json::literal(&mut self.rng, s, escape)
    }

    fn text(&mut self, pool: &[&str]) -> String {
        let (escape, s) = (if self.rng.chance(10) { 30 } else { 0 }, self.rng.pick(pool));
        self.lit(s, escape)
    }

    fn scalar(&mut self) -> String {
        match self.rng.below(40) {
            0..=3 => self.rng.pick(&["null", "true", "false", "null"]).into(),
            4..=11 => self.rng.pick(NUMBERS).into(),
            12 => self.rng.pick(BAD_NUMBERS).into(),
            13..=14 => self.rng.pick(RAW_STRINGS).into(),
            _ => self.text(&["", "abc", "tools/call", "é ſ \u{212A}", "😀", "a\"b\\c", "\u{1}"]),
        }
    }

    fn value(&mut self, depth: usize) -> String {
        match self.rng.below(if depth == 0 { 6 } else { 9 }) {
            0..=5 => self.scalar(),
            6 | 7 => {
                let items: Vec<String> = (0..self.rng.below(4)).map(|_| self.value(depth - 1)).collect();
                let sep = format!("{},{}", self.ws(), self.ws());
                format!("[{}{}{}]", self.ws(), items.join(&sep), self.ws())
            }
            _ => {
                let key = |g: &mut Gen| g.rng.pick(UNKNOWN_KEYS).to_owned();
                let members = (0..self.rng.below(4)).map(|_| (key(self), self.value(depth - 1))).collect();
                self.object(members)
            }
        }
    }

    /// `n` levels of arrays and objects around a scalar: crosses `max_depth` when `n` is big.
    fn deep(&mut self, n: usize) -> String {
        let (mut open, mut close) = (String::new(), String::new());
        for _ in 0..n {
            let (o, c) = if self.rng.chance(50) { ("[", "]") } else { (r#"{"k":"#, "}") };
            open.push_str(o);
            close.insert_str(0, c);
        }
        format!("{open}{}{close}", self.scalar())
    }

    /// Like `key` but differing in case only: ASCII case flips, or `s`→`ſ` / `k`→`K`.
    fn variant(&mut self, key: &str) -> String {
        let mut chars: Vec<char> = key.chars().collect();
        let letters: Vec<usize> = (0..chars.len()).filter(|&i| chars[i].is_ascii_alphabetic()).collect();
        let folds: Vec<usize> = letters.iter().copied().filter(|&i| matches!(chars[i], 's' | 'k')).collect();
        if !folds.is_empty() && self.rng.chance(30) {
            let i = self.rng.pick(&folds);
            chars[i] = if chars[i] == 's' { '\u{17F}' } else { '\u{212A}' };
        } else if !letters.is_empty() {
            let first = self.rng.pick(&letters);
            for i in letters.into_iter().filter(|&i| i == first || self.rng.chance(30)) {
                chars[i] = (chars[i] as u8 ^ 0x20) as char;
            }
        }
        chars.into_iter().collect()
    }

    /// Writes an object, perturbed at rate `p`: case variants, repeats, shuffled order, and
    /// keys partly written as `\u` escapes (which every reader decodes before comparing).
    fn object(&mut self, mut members: Vec<(String, String)>) -> String {
        for i in 0..members.len() {
            if self.rng.chance(self.p) {
                members[i].0 = self.variant(&members[i].0);
            }
            if self.rng.chance(self.p) {
                let value = if self.rng.chance(50) { members[i].1.clone() } else { self.value(1) };
                members.push((members[i].0.clone(), value));
            }
        }
        for i in (1..members.len()).rev() {
            members.swap(i, self.rng.below(i + 1));
        }
        let mut out = format!("{{{}", self.ws());
        for (n, (key, value)) in members.iter().enumerate() {
            let escape = if self.rng.chance(8) { 40 } else { 0 };
            let key = self.lit(key, escape);
            let comma = if n == 0 { "" } else { "," };
            out.push_str(&format!("{comma}{}{key}{}:{}{value}{}", self.ws(), self.ws(), self.ws(), self.ws()));
        }
        out.push('}');
        out
    }

    fn params(&mut self) -> String {
        if self.rng.chance(8) {
            return self.rng.pick(&["[]", "[1,{\"name\":\"x\"}]", "null", "\"tools\"", "7"]).into();
        }
        let mut m: Vec<(String, String)> = Vec::new();
        let mut add = |g: &mut Gen, percent: usize, key: &str, value: fn(&mut Gen) -> String| {
            if g.rng.chance(percent) {
                let v = value(g);
                m.push((key.into(), v));
            }
        };
        add(self, 80, "name", |g| if g.rng.chance(5) { g.value(1) } else { g.text(NAMES) });
        add(self, 25, "uri", |g| if g.rng.chance(5) { g.value(1) } else { g.text(URIS) });
        add(self, 60, "arguments", |g| {
            let n = g.rng.below(90);
            if g.rng.chance(4) { g.deep(1 + n) } else { g.value(3) }
        });
        add(self, 15, "_meta", |g| {
            let version = g.text(&["2026-07-28", "2025-06-18"]);
            g.object(vec![(VERSION_KEY.into(), version), ("progressToken".into(), "1".into())])
        });
        add(self, 10, "task", |g| g.value(1));
        add(self, 15, "ref", |g| {
            let (kind, name, uri) = (g.text(&["ref/prompt", "ref/resource"]), g.text(NAMES), g.text(URIS));
            g.object(vec![("type".into(), kind), ("name".into(), name), ("uri".into(), uri)])
        });
        add(self, 10, "cursor", |g| g.text(&["c1"]));
        let unknown = self.rng.pick(UNKNOWN_KEYS);
        add(self, 10, unknown, |g| g.value(2));
        self.object(m)
    }

    fn message(&mut self) -> String {
        let mut m: Vec<(String, String)> = Vec::new();
        if !self.rng.chance(3) {
            let version = if self.rng.chance(95) { "\"2.0\"" } else { self.rng.pick(&["\"1.0\"", "2.0", "null"]) };
            m.push(("jsonrpc".into(), version.into()));
        }
        if self.rng.chance(85) {
            let id = match self.rng.below(40) {
                0 | 1 => self.rng.pick(&["null", "true", "{}", "[1]"]).into(),
                2..=19 => self.rng.pick(NUMBERS).into(),
                20 => self.rng.pick(&["1e999", "-1E400"]).into(),
                _ => self.text(&["req-1", "a\"b", "é", "1"]),
            };
            m.push(("id".into(), id));
        }
        if self.rng.chance(8) {
            m.push((self.rng.pick(&["result", "error"]).into(), self.value(2)));
        } else if self.rng.chance(95) {
            let method = if self.rng.chance(3) { self.scalar() } else { self.text(METHODS) };
            m.push(("method".into(), method));
        }
        if self.rng.chance(75) {
            m.push(("params".into(), self.params()));
        }
        for _ in 0..self.rng.below(3) {
            m.push((self.rng.pick(UNKNOWN_KEYS).into(), self.value(2)));
        }
        self.object(m)
    }

    fn body(&mut self) -> String {
        let inner = if self.rng.chance(12) {
            let messages: Vec<String> = (0..self.rng.below(4)).map(|_| self.message()).collect();
            format!("[{}]", messages.join(","))
        } else {
            self.message()
        };
        format!("{}{inner}{}", self.ws(), self.ws())
    }

    fn mutate(&mut self, body: &str) -> String {
        json::mutate(&mut self.rng, body, CHARS, TOKENS)
    }
}

const CASES: u64 = 30_000;

/// Checks `CASES` bodies, each made by `make` from its own seed with its own depth limit.
fn run(what: &str, salt: u64, make: fn(&mut Gen) -> String) {
    let mut tally = [0; 2];
    for case in 0..CASES {
        let seed = (case ^ salt).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let mut g = Gen { rng: Rng(seed), p: [0, 0, 2, 6, 15][(case % 5) as usize] };
        let body = make(&mut g);
        let at = format!("{what} case {case} (seed {seed:#x}, p {})", g.p);
        tally[check(&at, &body, g.rng.pick(&[64, 64, 32, 8, 4])) as usize] += 1;
    }
    assert_mixed(what, tally);
}

#[test]
fn generated_bodies_read_the_same_to_every_reader_when_accepted() {
    run("generated", 0, Gen::body);
}

#[test]
fn mutated_bodies_read_the_same_to_every_reader_when_accepted() {
    run("mutated", 0x6D75_7461_7465, |g| {
        g.p = 0;
        let body = g.body();
        g.mutate(&body)
    });
}

const CALL: &str = r#""jsonrpc":"2.0","id":1,"method":"tools/call""#;

#[test]
fn ambiguous_keys_and_deep_nesting_are_refused_wherever_they_hide() {
    use JsonRpcError::{CaseVariant, DuplicateKey, TooDeep};
    let cases = [
        (format!(r#"{{{CALL},"Method":"x"}}"#), CaseVariant("Method".into())),
        (r#"{"jsonrpc":"2.0","id":1,"METHOD":"tools/call"}"#.into(), CaseVariant("METHOD".into())),
        (r#"{"jsonrpc":"2.0","ID":1,"method":"ping"}"#.into(), CaseVariant("ID".into())),
        (format!(r#"{{{CALL},"\u004dethod":"x"}}"#), CaseVariant("Method".into())),
        (format!(r#"{{{CALL},"\u006dethod":"x"}}"#), DuplicateKey("method".into())),
        (format!(r#"{{{CALL},"params":{{"name":"a","name":"b"}}}}"#), DuplicateKey("name".into())),
        (format!(r#"{{{CALL},"params":{{"name":"a","na\u006De":"b"}}}}"#), DuplicateKey("name".into())),
        (format!(r#"{{{CALL},"params":{{"name":"a","NAME":"b"}}}}"#), CaseVariant("NAME".into())),
        (format!("{{{CALL},\"param\u{17F}\":{{\"name\":\"a\"}}}}"), CaseVariant("param\u{17F}".into())),
        (format!(r#"{{{CALL},"param\u017f":{{"name":"a"}}}}"#), CaseVariant("param\u{17F}".into())),
        (format!("{{{CALL},\"params\":{{\"name\":\"a\",\"tas\u{212A}\":{{}}}}}}"), CaseVariant("tas\u{212A}".into())),
        (format!(r#"{{{CALL},"params":{{"ref":{{"type":"ref/prompt","Name":"a"}}}}}}"#), CaseVariant("Name".into())),
        (
            format!(r#"[{{{CALL}}},{{"jsonrpc":"2.0","id":2,"method":"ping","method":"tools/call"}}]"#),
            DuplicateKey("method".into()),
        ),
        (format!(r#"{{{CALL},"params":{{"name":"a","arguments":{}1{}}}}}"#, "[".repeat(8), "]".repeat(8)), TooDeep(8)),
    ];
    for (body, want) in cases {
        assert_eq!(parse(&body, 8, 100).err(), Some(want), "{body}");
    }
}

#[test]
fn plain_requests_are_accepted_and_read_alike_by_every_reader() {
    for body in [
        format!(r#"{{{CALL},"params":{{"name":"get_weather","arguments":{{"city":"Paris"}}}}}}"#),
        r#"{"jsonrpc":"2.0","id":"r","\u006dethod":"tools/call","params":{"na\u006de":"get_weather"}}"#.into(),
        format!(r#"[{{{CALL},"params":{{"name":"a"}}}},{{"jsonrpc":"2.0","id":"s","result":{{}}}}]"#),
        r#"{"jsonrpc":"2.0","id":1.50,"method":"resources/read","params":{"uri":"file:///x"}}"#.into(),
    ] {
        assert_eq!(check("plain", &body, 8), Outcome::Accepted, "{body}");
    }
}

/// The fuzzer's finding: an `id` was taken as a `RawValue`, whose number check is syntax
/// only, so `1e999` was accepted there while the same number anywhere else was refused, and
/// readers disagree on its value (Python `inf`, JavaScript `Infinity`, Go and serde_json fail).
#[test]
fn an_out_of_range_number_is_refused_as_an_id_as_it_is_everywhere_else() {
    assert!(parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping","x":1e999}"#, 8, 100).is_err());
    assert!(parse(r#"{"jsonrpc":"2.0","id":1e999,"method":"ping"}"#, 8, 100).is_err());
    assert!(parse(r#"{"jsonrpc":"2.0","id":"x","method":"ping","params":{"_meta":{"n":-1E400}}}"#, 8, 100).is_err());
}
