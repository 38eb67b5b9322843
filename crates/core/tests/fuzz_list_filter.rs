//! Differential fuzzing of the list filter, `extproc::filter::filter_payload`.
//!
//! The property: whenever the filter lets a payload through (the original bytes, or its
//! rewrite), no plausible client of the bytes that go out sees an entry the user may not use.
//! Three reference readers (exact keys with the first or the last repeat winning, as streaming
//! readers, Python and JavaScript do; Go's `encoding/json`, which folds key case and merges
//! repeats) read every message of the payload at the places its list kind names:
//! `result.tools[].name` and its siblings, and for AgentCore's search tool
//! `result.structuredContent.tools[].name` and the JSON inside `result.content[].text`. What
//! the user may use is restated here from the policy's rules, never asked of the engine. Clean
//! payloads must also give the documented outcome exactly (where one call is answered, a
//! response to another id, or the awaited one without its list, is an error; anything else
//! passes) and keep every allowed entry. Payloads come from a
//! seeded generator (every list kind, batches, case variants and repeats of every key,
//! non-string names, unicode look-alikes) and from char-level mutations of generated ones, so
//! every run sees the same cases; a failure names the case and prints the payload. It found
//! one gap, now closed and kept as the two tests at the end: where the filter reads without
//! strictness (any response but the awaited one, batches, streams, search results) a repeated
//! key of any name made it pass the whole result unfiltered instead of refusing it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::value::RawValue;
use warden_core::decision::ListKind::{self, Batch, Prompts, ResourceTemplates, Resources, Search, Stream, Tools};
use warden_core::listfilter::{FilterError, Filtered, View, filter_payload};
use warden_core::policy::{Policy, Source};

#[path = "fuzz/json.rs"]
mod json;
#[path = "fuzz/rng.rs"]
mod rng;
use json::{J, READERS, Reader, Step, go_eq, read};
use rng::Rng;

const POLICY: &str = r#"
kind: app
version: v3
metadata: {name: demo, labels: {service: demo}}
spec: {uri: "mcp+https://demo.example.com/mcp"}
---
kind: role
version: v8
metadata: {name: lister}
spec:
  allow:
    app_labels: {service: demo}
    mcp: {tools: ['^get_.*$'], prompts: ['sum*'], resources: ['file:///docs/*']}
---
kind: user
metadata: {name: bob}
spec: {roles: [lister]}
"#;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Gov {
    Tool,
    Prompt,
    Resource,
}

/// The policy's rules, restated: the regex `^get_.*$` (`.` is anything but a newline) and
/// the anchored globs `sum*` and `file:///docs/*`, all case-sensitive.
fn allowed(gov: Gov, name: &str) -> bool {
    match gov {
        Gov::Tool => name.strip_prefix("get_").is_some_and(|rest| !rest.contains('\n')),
        Gov::Prompt => name.starts_with("sum"),
        Gov::Resource => name.starts_with("file:///docs/"),
    }
}

/// A list in a result: its key, the key naming an entry, and what that name governs.
#[derive(Debug, Clone, Copy)]
struct Shape {
    key: &'static str,
    name: &'static str,
    gov: Gov,
}

const TOOLS: Shape = Shape { key: "tools", name: "name", gov: Gov::Tool };
const PROMPTS: Shape = Shape { key: "prompts", name: "name", gov: Gov::Prompt };
const RESOURCES: Shape = Shape { key: "resources", name: "uri", gov: Gov::Resource };
const TEMPLATES: Shape = Shape { key: "resourceTemplates", name: "uriTemplate", gov: Gov::Resource };
const SHAPES: [Shape; 4] = [TOOLS, PROMPTS, RESOURCES, TEMPLATES];

/// The lists a client of a `kind` call reads, and whether it reads a search result too.
fn reads(kind: ListKind) -> (&'static [Shape], bool) {
    match kind {
        Tools => (&[TOOLS], false),
        Prompts => (&[PROMPTS], false),
        Resources => (&[RESOURCES], false),
        ResourceTemplates => (&[TEMPLATES], false),
        Search => (&[], true),
        Batch | Stream => (&SHAPES, true),
    }
}

/// The list a list call of `kind` answers with; `None` for search, batches and streams.
fn own_shape(kind: ListKind) -> Option<Shape> {
    if let ([shape], false) = reads(kind) { Some(*shape) } else { None }
}

/// Go decoding a slice of structs with one string field (`[]Tool{Name string}`) at the end of
/// a path of struct fields. Every key folding to a field's name decodes, in order, into that
/// same field: a repeated object merges into the earlier one; a repeated array decodes element
/// by element into the structs already there (Go keeps the backing array, stale elements
/// included); `null` empties a slice and leaves a string as it was; a value of the wrong type
/// is skipped (Go notes the error and decodes the rest).
#[derive(Default)]
struct GoSlice {
    backing: Vec<Option<String>>,
    len: usize,
}

impl GoSlice {
    fn decode(&mut self, j: &J, path: &[&str], name: &str) {
        match (path.split_first(), j) {
            (Some((key, rest)), J::Obj(members)) => {
                members.iter().filter(|(k, _)| go_eq(k, key)).for_each(|(_, v)| self.decode(v, rest, name));
            }
            (None, J::Arr(items)) => {
                self.backing.resize(self.backing.len().max(items.len()), None);
                for (slot, item) in self.backing.iter_mut().zip(items) {
                    let J::Obj(fields) = item else { continue };
                    let named = fields.iter().filter(|(k, _)| go_eq(k, name));
                    if let Some(s) =
                        named.filter_map(|(_, v)| if let J::Str(s) = v { Some(s) } else { None }).next_back()
                    {
                        *slot = Some(s.clone());
                    }
                }
                self.len = items.len();
                if items.is_empty() {
                    self.backing.clear();
                }
            }
            (None, J::Atom(null)) if null == "null" => *self = GoSlice::default(),
            _ => {}
        }
    }
}

/// The strings `reader` finds at `path[..][].{name}` in `j`.
fn strings(reader: Reader, j: &J, path: &[&str], name: &str) -> Vec<String> {
    if let Reader::Go = reader {
        let mut slice = GoSlice::default();
        slice.decode(j, path, name);
        return slice.backing.into_iter().take(slice.len).flatten().collect();
    }
    let steps: Vec<Step<'_>> = path.iter().map(|k| (*k, true)).collect();
    let Some(J::Arr(items)) = read(reader, j, &steps) else { return Vec::new() };
    let name_of = |e: &J| match read(reader, e, &[(name, true)]) {
        Some(J::Str(s)) => Some(s.clone()),
        _ => None,
    };
    items.iter().filter_map(name_of).collect()
}

/// Every name `reader` sees in a payload (one message or an array of them) for a `kind` call:
/// `result.{key}[].{name}` of the lists it reads; for a search, the tools in
/// `result.structuredContent.tools[].name` and in the JSON of `result.content[].text`.
fn names(reader: Reader, payload: &J, kind: ListKind) -> Vec<(Gov, String)> {
    let (lists, search) = reads(kind);
    let messages = if let J::Arr(items) = payload { items.as_slice() } else { std::slice::from_ref(payload) };
    let mut out = Vec::new();
    for m in messages {
        for s in lists {
            out.extend(strings(reader, m, &["result", s.key], s.name).into_iter().map(|n| (s.gov, n)));
        }
        if search {
            let texts = strings(reader, m, &["result", "content"], "text");
            let inner: Vec<J> = texts.iter().filter_map(|t| serde_json::from_str(t).ok()).collect();
            let structured = strings(reader, m, &["result", "structuredContent", "tools"], "name");
            let in_text = inner.iter().flat_map(|j| strings(reader, j, &["tools"], "name"));
            out.extend(structured.into_iter().chain(in_text).map(|n| (Gov::Tool, n)));
        }
    }
    out
}

const KINDS: [ListKind; 7] = [Tools, Prompts, Resources, ResourceTemplates, Search, Batch, Stream];
/// Target ids, each with the ways a response may write the same id.
const TARGETS: &[(&str, &[&str])] = &[("1", &["1", "1.0", "1e0"]), ("\"a\"", &["\"a\"", "\"\\u0061\""]), ("7", &["7"])];
const OTHER_IDS: &[&str] = &["2", "\"1\"", "\"A\"", "null", "-1"];
/// Names for each governed kind: some allowed, then some denied (look-alikes of allowed ones).
const TOOL_NAMES: [&[&str]; 2] = [
    &["get_weather", "get_", "get_ſ", "get_\u{212A}", "get_a\u{0}b"],
    &["delete_file", "GET_weather", "Get_x", "get", "ſet_x", "\u{212A}", " get_a", "get_a\nb", "xget_a", ""],
];
const PROMPT_NAMES: [&[&str]; 2] =
    [&["summarize", "sum", "sum ſ"], &["Summarize", "ſummarize", "code_review", "su", ""]];
const RESOURCE_NAMES: [&[&str]; 2] = [
    &["file:///docs/a.md", "file:///docs/", "file:///docs/{id}"],
    &["file:///etc/passwd", "FILE:///docs/a", "file:///Docs/a", "file:///docs", "users://{id}"],
];
const NOT_STRINGS: &[&str] = &["7", "null", "true", "[\"get_a\"]", "{\"name\":\"get_a\"}"];
/// Keys no reader looks at, in objects the filter reads (no case variant of a read key).
const JUNK_KEYS: &[&str] = &["x", "annotations", "title", "😀", "", "ſx", "toolz"];
/// Keys of junk values, where nobody reads: repeats and look-alikes are harmless there.
const DEEP_KEYS: &[&str] = &["tools", "name", "Tools", "result", "x", "x"];
/// Payloads that are no JSON-RPC message or batch.
const BROKEN: &[&str] = &["<html>bad gateway</html>", "", r#"{"id":1,"result":{"tools":["#, "null", "[1]"];
const SPACE: &[&str] = &["", "", "", " ", "\n", "\t"];
const CHARS: &[char] = &['{', '}', '[', ']', '"', ',', ':', '\\', 'u', '0', 'T', 'N', 's', 'ſ', '\u{212A}', ' '];
const TOKENS: &[&str] = &[
    r#",{"name":"delete_file"}"#,
    r#","tools":[{"name":"delete_file"}]"#,
    r#","name":"delete_file""#,
    r#""Tools""#,
    r#","result":{}"#,
    r#","nextCursor":1"#,
    r"\u0074",
    r#","text":"{\"tools\":[{\"name\":\"delete_file\"}]}""#,
];

/// Writes random payloads for one list kind. `p` is the percent chance, per object member,
/// of a case variant and of a repeat: 0 for clean payloads.
struct Gen {
    rng: Rng,
    p: usize,
    kind: ListKind,
    target: Option<(&'static str, &'static [&'static str])>,
    /// What a clean payload must give: the error of its first deliberate flaw, if any.
    expect: Option<FilterError>,
}

type Members = Vec<(String, String)>;

impl Gen {
    fn new(seed: u64, p: usize) -> Gen {
        let mut rng = Rng(seed);
        let kind = rng.pick(&KINDS);
        let target = rng.chance(if own_shape(kind).is_some() { 90 } else { 20 }).then(|| rng.pick(TARGETS));
        Gen { rng, p, kind, target, expect: None }
    }

    fn ws(&mut self) -> &'static str {
        self.rng.pick(SPACE)
    }

    fn flaw(&mut self, error: FilterError) {
        self.expect.get_or_insert(error);
    }

    /// A JSON string literal for `s`, now and then with chars written as `\uXXXX`.
    fn lit(&mut self, s: &str) -> String {
        let escape = if self.rng.chance(8) { 30 } else { 0 };
        json::literal(&mut self.rng, s, escape)
    }

    fn lit_of(&mut self, pool: &[&str]) -> String {
        let s = self.rng.pick(pool);
        self.lit(s)
    }

    /// Like `key` but differing in case only: ASCII case flips, or `s`→`ſ` / `k`→`K`.
    fn variant(&mut self, key: &str) -> String {
        loop {
            let variant: String = (key.chars())
                .map(|c| match c {
                    's' if self.rng.chance(15) => '\u{17F}',
                    'k' if self.rng.chance(15) => '\u{212A}',
                    c if c.is_ascii_alphabetic() && self.rng.chance(40) => (c as u8 ^ 0x20) as char,
                    c => c,
                })
                .collect();
            if variant != key || !key.chars().any(|c| c.is_ascii_alphabetic()) {
                return variant;
            }
        }
    }

    /// Adds `key: make()` to `m` with a chance of `percent`. At rate `p` the key becomes a case
    /// variant, and is repeated (as written or as another variant) with the same or a fresh value.
    fn member(&mut self, percent: usize, m: &mut Members, key: &str, make: impl Fn(&mut Gen) -> String) {
        if !self.rng.chance(percent) {
            return;
        }
        let value = make(self);
        let key = if self.rng.chance(self.p) { self.variant(key) } else { key.to_owned() };
        if self.rng.chance(self.p) {
            let again = if self.rng.chance(50) { key.clone() } else { self.variant(key.as_str()) };
            let value = if self.rng.chance(25) { value.clone() } else { make(self) };
            m.push((again, value));
        }
        m.push((key, value));
    }

    /// Writes an object with its members shuffled, now and then with a key nobody reads.
    fn object(&mut self, mut members: Members) -> String {
        if self.rng.chance(10) {
            members.push((self.rng.pick(JUNK_KEYS).into(), self.junk(1)));
        }
        for i in (1..members.len()).rev() {
            members.swap(i, self.rng.below(i + 1));
        }
        let mut out = format!("{{{}", self.ws());
        for (n, (key, value)) in members.iter().enumerate() {
            let (comma, key) = (if n == 0 { "" } else { "," }, self.lit(key));
            out.push_str(&format!("{comma}{}{key}:{}{value}{}", self.ws(), self.ws(), self.ws()));
        }
        out + "}"
    }

    fn array(&mut self, most: usize, item: impl Fn(&mut Gen) -> String) -> String {
        let items: Vec<String> =
            (0..self.rng.below(most + 1)).map(|_| format!("{}{}", self.ws(), item(self))).collect();
        format!("[{}]", items.join(","))
    }

    /// A value where nobody reads: repeats and look-alikes of keys are harmless there.
    fn junk(&mut self, depth: usize) -> String {
        match self.rng.below(if depth == 0 { 3 } else { 5 }) {
            0..=2 => self.rng.pick(&["null", "true", "1.5", "\"x\"", "\"delete_file\"", "\"é ſ\""]).into(),
            3 => self.array(2, |g| g.junk(depth - 1)),
            _ => {
                let m = (0..self.rng.below(3)).map(|_| (self.rng.pick(DEEP_KEYS).into(), self.junk(depth - 1)));
                let m = m.collect();
                self.object(m)
            }
        }
    }

    /// An entry's name: allowed when `clean`, else anything, strings or not.
    fn name(&mut self, gov: Gov, clean: bool) -> String {
        if !clean && self.rng.chance(10) {
            return self.rng.pick(NOT_STRINGS).into();
        }
        let [ok, denied] = match gov {
            Gov::Tool => TOOL_NAMES,
            Gov::Prompt => PROMPT_NAMES,
            Gov::Resource => RESOURCE_NAMES,
        };
        let pool = if clean || self.rng.chance(50) { ok } else { denied };
        self.lit_of(pool)
    }

    /// A list of entries; when `clean`, each with a readable, allowed name.
    fn entries(&mut self, shape: Shape, clean: bool) -> String {
        self.array(4, |g| {
            if !clean && g.rng.chance(4) {
                return g.rng.pick(&["7", "null", "\"get_a\"", "[]"]).into();
            }
            let mut m = Vec::new();
            g.member(if clean { 100 } else { 95 }, &mut m, shape.name, |g| g.name(shape.gov, clean));
            g.member(if shape.name == "name" { 0 } else { 40 }, &mut m, "name", |g| g.name(Gov::Tool, false));
            g.member(25, &mut m, "inputSchema", |g| g.junk(2));
            g.object(m)
        })
    }

    /// A result with a `shape` list. `strict`: it answers the awaited call, so a deliberate
    /// flaw (no list, a list that is no array, a result that is no object) is an error.
    fn list_result(&mut self, shape: Shape, strict: bool) -> String {
        let clean = self.rng.chance(35);
        let mut m = Vec::new();
        match self.rng.below(if strict { 30 } else { 1 }) {
            1 => self.flaw(FilterError::MissingList(shape.key)),
            2 => {
                self.flaw(FilterError::NotJson(String::new()));
                self.member(100, &mut m, shape.key, |g| g.rng.pick(&["{}", "null", "\"x\"", "7"]).into());
            }
            3 => {
                self.flaw(FilterError::NotJson(String::new()));
                return self.rng.pick(&["[]", "null", "\"tools\""]).into();
            }
            _ => self.member(100, &mut m, shape.key, |g| g.entries(shape, clean)),
        }
        let other = self.rng.pick(&SHAPES);
        self.member(if other.key == shape.key { 0 } else { 20 }, &mut m, other.key, |g| g.entries(other, clean));
        self.member(40, &mut m, "nextCursor", |g| g.lit("c2"));
        self.member(20, &mut m, "_meta", |g| g.junk(2));
        self.object(m)
    }

    /// AgentCore's search result: text blocks (prose, or JSON with a `tools` list) and/or
    /// `structuredContent.tools`.
    fn search_result(&mut self) -> String {
        let clean = self.rng.chance(35);
        let tools = |g: &mut Gen| {
            let mut m = Vec::new();
            g.member(100, &mut m, "tools", |g| g.entries(TOOLS, clean));
            g.member(30, &mut m, "query", |g| g.lit("q"));
            g.object(m)
        };
        let block = |g: &mut Gen| {
            let mut m = Vec::new();
            g.member(100, &mut m, "type", |g| g.lit_of(&["text", "text", "text", "image"]));
            g.member(100, &mut m, "text", |g| {
                let text =
                    if g.rng.chance(20) { g.rng.pick(&["3 tools", "{\"tools\":7}", "[]"]).into() } else { tools(g) };
                g.lit(&text)
            });
            g.object(m)
        };
        let mut m = Vec::new();
        self.member(70, &mut m, "content", |g| g.array(2, block));
        self.member(60, &mut m, "structuredContent", tools);
        self.member(50, &mut m, "isError", |_| "false".into());
        self.object(m)
    }

    fn result(&mut self, is_target: bool) -> String {
        let own = own_shape(self.kind);
        if let (Some(shape), true) = (own, is_target) {
            return self.list_result(shape, true);
        }
        let any = self.rng.pick(&SHAPES);
        match (self.rng.below(10), own) {
            (0..=5, Some(shape)) => self.list_result(shape, false),
            (0..=5, None) if self.kind == Search || self.rng.chance(30) => self.search_result(),
            (0..=7, _) => self.list_result(any, false),
            (8, _) => self.search_result(),
            _ => self.rng.pick(&["{}", r#"{"content":[{"type":"text","text":"x"}]}"#, "[]", "null", "7"]).into(),
        }
    }

    fn id(&mut self, is_target: bool) -> String {
        match self.target {
            Some((_, forms)) if is_target => self.rng.pick(forms).into(),
            _ => self.rng.pick(OTHER_IDS).into(),
        }
    }

    /// A response (to the awaited call or another, with a result or an error), a server's
    /// request or a notification.
    fn message(&mut self) -> String {
        let mut m = Vec::new();
        self.member(100, &mut m, "jsonrpc", |g| g.lit("2.0"));
        let is_target = self.target.is_some() && self.rng.chance(60);
        match self.rng.below(20) {
            0 | 1 => {
                self.member(50, &mut m, "id", |g| g.lit("s1"));
                self.member(100, &mut m, "method", |g| g.lit_of(&["notifications/progress", "sampling/createMessage"]));
                self.member(50, &mut m, "params", |g| g.junk(2));
            }
            n => {
                if own_shape(self.kind).is_some() || self.kind == Search {
                    // One call is answered: a response to any other id is refused (issue 26).
                    if !is_target {
                        self.flaw(FilterError::UnexpectedId);
                    }
                }
                self.member(100, &mut m, "id", |g| g.id(is_target));
                match n {
                    2 => self.member(100, &mut m, "error", |_| r#"{"code":-32601,"message":"no"}"#.into()),
                    _ => self.member(100, &mut m, "result", |g| g.result(is_target)),
                }
            }
        }
        self.object(m)
    }

    fn payload(&mut self) -> String {
        if self.rng.chance(2) {
            self.flaw(FilterError::NotJson(String::new()));
            return self.rng.pick(BROKEN).into();
        }
        let body = if self.rng.chance(25) { self.array(3, Gen::message) } else { self.message() };
        format!("{}{body}{}", self.ws(), self.ws())
    }

    fn mutate(&mut self, payload: &str) -> String {
        json::mutate(&mut self.rng, payload, CHARS, TOKENS)
    }
}

/// Each reader that sees a denied name in `output` (a payload the filter let through), with
/// the first such name it sees.
fn denied_seen(kind: ListKind, output: &J) -> Vec<(Reader, Gov, String)> {
    let first_denied = |r| names(r, output, kind).into_iter().find(|(gov, n)| !allowed(*gov, n));
    READERS.into_iter().filter_map(|r| first_denied(r).map(|(gov, name)| (r, gov, name))).collect()
}

fn policy() -> Policy {
    Policy::load(&[Source::inline("fuzz-list-filter.yaml", POLICY)]).expect("valid test policy")
}

fn bob(policy: &Policy) -> View<'_> {
    View { user: policy.user("bob").expect("bob"), app: policy.app("demo").expect("demo") }
}

fn filter(view: &View<'_>, kind: ListKind, target: Option<&str>, payload: &str) -> Result<Filtered, FilterError> {
    let target = target.map(|t| RawValue::from_string(t.to_owned()).expect("a target id is JSON"));
    filter_payload(kind, view, target.as_deref(), payload)
}

/// What became of a run's payloads.
#[derive(Debug, Default)]
struct Tally {
    refused: usize,
    unchanged: usize,
    rewritten: usize,
    /// Rewritten payloads in which some reader saw a denied name before filtering.
    denied_before: usize,
    /// Clean payloads with a deliberate flaw, refused with the documented error.
    documented: usize,
    /// One report per leaking payload, with the payload's length to show the shortest first.
    leaks: Vec<(usize, String)>,
}

/// Filters one payload and judges what goes out. `exact`: a clean generated payload, whose
/// outcome is known in advance and which must keep every allowed entry.
fn check(case: &str, g: &Gen, view: &View<'_>, payload: &str, exact: bool, tally: &mut Tally) {
    let target = g.target.map(|(t, _)| t);
    let got = catch_unwind(AssertUnwindSafe(|| filter(view, g.kind, target, payload)))
        .unwrap_or_else(|_| panic!("{case}: the filter panicked: {payload:?}"));
    if exact {
        let class = |e: &FilterError| {
            if let FilterError::NotJson(_) = e { FilterError::NotJson(String::new()) } else { e.clone() }
        };
        assert_eq!(got.as_ref().err().map(class), g.expect, "{case}: {got:?} for {:?}: {payload:?}", g.kind);
        tally.documented += usize::from(g.expect.is_some());
    }
    let (count, output) = match &got {
        Err(_) => return tally.refused += 1,
        Ok(Filtered::Unchanged) => (&mut tally.unchanged, payload),
        Ok(Filtered::Rewritten(s)) => (&mut tally.rewritten, s.as_str()),
    };
    *count += 1;
    let after: J =
        serde_json::from_str(output).unwrap_or_else(|e| panic!("{case}: passed, not JSON ({e}): {output:?}"));
    let seen = denied_seen(g.kind, &after);
    if !seen.is_empty() {
        let report = format!("{case}: {:?}, target {target:?}: {seen:?}\n in: {payload}\nout: {output}", g.kind);
        tally.leaks.push((payload.len(), report));
    }
    let before: Option<J> = serde_json::from_str(payload).ok();
    if matches!(got, Ok(Filtered::Rewritten(_))) && before.as_ref().is_some_and(|b| !denied_seen(g.kind, b).is_empty())
    {
        tally.denied_before += 1;
    }
    if exact {
        let mut kept = names(Reader::ExactLast, &before.expect("a clean payload is JSON"), g.kind);
        kept.retain(|(gov, n)| allowed(*gov, n));
        assert_eq!(
            names(Reader::ExactLast, &after, g.kind),
            kept,
            "{case}: allowed entries lost: {payload:?} → {output:?}"
        );
    }
}

const CASES: u64 = 20_000;

/// Checks `CASES` payloads, generated (at several rates of variants and repeats) or generated
/// clean and then mutated. Fails on any leak, and unless over 5 % of the payloads were each
/// refused, passed unchanged and rewritten, most rewrites having had a denied name to remove.
fn run(what: &str, salt: u64, mutated: bool) {
    let policy = policy();
    let view = bob(&policy);
    let mut tally = Tally::default();
    for case in 0..CASES {
        let seed = (case ^ salt).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let p = if mutated { 0 } else { [0, 0, 3, 8, 20][(case % 5) as usize] };
        let mut g = Gen::new(seed, p);
        let mut payload = g.payload();
        if mutated {
            payload = g.mutate(&payload);
        }
        let at = format!("{what} case {case} (seed {seed:#x}, p {p})");
        check(&at, &g, &view, &payload, p == 0 && !mutated, &mut tally);
    }
    let Tally { refused, unchanged, rewritten, denied_before, documented, .. } = tally;
    let mix = format!("{rewritten} rewritten ({denied_before} removed a denied name), {unchanged} unchanged");
    println!("{what}: {mix}, {refused} refused ({documented} with the error documented for their flaw)");
    let total = CASES as usize;
    assert!([refused, unchanged, rewritten].iter().all(|n| n * 20 > total), "{what}: vacuous mix {tally:?}");
    assert!(denied_before * 2 > rewritten, "{what}: few rewrites removed a denied name: {tally:?}");
    assert!(mutated || documented > 100, "{what}: few documented errors checked: {tally:?}");
    tally.leaks.sort();
    let shortest: Vec<&str> = tally.leaks.iter().take(3).map(|(_, l)| l.as_str()).collect();
    assert!(
        tally.leaks.is_empty(),
        "{what}: {} payloads leak; the shortest:\n{}",
        tally.leaks.len(),
        shortest.join("\n")
    );
}

#[test]
fn generated_list_responses_show_no_reader_a_denied_entry() {
    run("generated", 0, false);
}

#[test]
fn mutated_list_responses_show_no_reader_a_denied_entry() {
    run("mutated", 0x6D75_7461_7465, true);
}

/// Filters each payload for bob as the answer to a `kind` call with id 1; reports each one in
/// which a reader sees a denied entry in what the filter lets through.
fn leaks(kind: ListKind, payloads: &[&str]) -> Vec<String> {
    let policy = policy();
    let seen = |payload: &str| {
        let got = filter(&bob(&policy), kind, Some("1"), payload);
        let output = match &got {
            Ok(Filtered::Unchanged) => payload,
            Ok(Filtered::Rewritten(s)) => s.as_str(),
            Err(_) => return None,
        };
        let seen = denied_seen(kind, &serde_json::from_str(output).expect("what passes is JSON"));
        (!seen.is_empty()).then(|| format!("{kind:?} {payload}\n  → {got:?}, read as {seen:?}"))
    };
    payloads.iter().filter_map(|p| seen(p)).collect()
}

/// The fuzzer's finding (1): outside the awaited response (another id; every response in a
/// batch or on a GET stream) a result the filter cannot parse, for a repeated key of any
/// name, was taken for "not a list" and passed whole, denied entries included; now refused.
#[test]
fn a_repeated_key_does_not_unhide_a_list_outside_the_awaited_response() {
    let repeated_cursor = r#"{"id":2,"result":{"tools":[{"name":"rm"}],"nextCursor":"a","nextCursor":"b"}}"#;
    let found = [
        leaks(Tools, &[repeated_cursor]),
        leaks(Batch, &[&format!("[{repeated_cursor}]")]),
        leaks(Stream, &[r#"{"id":1,"result":{"tools":[{"name":"rm"}],"tools":[]}}"#]),
        leaks(Prompts, &[r#"{"id":2,"result":{"prompts":[{"name":"rm"}],"x":1,"x":1}}"#]),
    ]
    .concat();
    assert!(found.is_empty(), "{} leak:\n{}", found.len(), found.join("\n"));
}

/// The fuzzer's finding (2): in a search result, awaited or not, a repeated key in the
/// result, in `structuredContent`, in a content block or in the JSON of its text made the
/// filter leave that part as it is, denied tools included; now refused.
#[test]
fn a_repeated_key_does_not_unhide_the_tools_of_a_search_result() {
    let found = leaks(
        Search,
        &[
            r#"{"id":1,"result":{"structuredContent":{"tools":[{"name":"rm"}]},"isError":false,"isError":false}}"#,
            r#"{"id":1,"result":{"structuredContent":{"tools":[{"name":"rm"}],"tools":[]}}}"#,
            r#"{"id":1,"result":{"content":[{"type":"text","type":"text","text":"{\"tools\":[{\"name\":\"rm\"}]}"}]}}"#,
            r#"{"id":1,"result":{"content":[{"type":"text","text":"{\"tools\":[{\"name\":\"rm\"}],\"tools\":[]}"}]}}"#,
        ],
    );
    assert!(found.is_empty(), "{} of 4 leak:\n{}", found.len(), found.join("\n"));
}
