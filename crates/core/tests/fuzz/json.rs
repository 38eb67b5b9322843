//! The fuzz tests' JSON tree and reference readers: a serde_json tree that keeps every object
//! member in order, duplicates included (`serde_json::Value` drops repeats), and the ways
//! real clients and servers pick a key out of it: exact keys with the first or the last
//! repeat winning, and Go's `encoding/json` with its case folding and merging.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps every object member, in order (`serde_json::Value` drops repeats).
/// `null`, booleans and numbers are kept as text (numbers as serde_json reads them).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum J {
    Atom(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

macro_rules! atoms {
    ($($visit:ident: $t:ty),*) => {$(
        fn $visit<E>(self, v: $t) -> Result<J, E> {
            Ok(J::Atom(format!("{v:?}")))
        }
    )*};
}

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = J;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    atoms!(visit_bool: bool, visit_u64: u64, visit_i64: i64, visit_f64: f64);
    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(J::Atom("null".into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<J, E> {
        Ok(J::Str(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        std::iter::from_fn(|| seq.next_element().transpose()).collect::<Result<_, _>>().map(J::Arr)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        std::iter::from_fn(|| map.next_entry().transpose()).collect::<Result<_, _>>().map(J::Obj)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Reader {
    /// Exact keys, the first repeat wins (some streaming readers).
    ExactFirst,
    /// Exact keys, the last repeat wins: Python `json`, JavaScript `JSON.parse`.
    ExactLast,
    /// Go `encoding/json` into structs: case-folded keys, every match decoded in order into
    /// the same field (a repeated object merges into the earlier one), so the last leaf wins.
    Go,
}

pub(crate) const READERS: [Reader; 3] = [Reader::ExactFirst, Reader::ExactLast, Reader::Go];

/// Whether Go matches keys `a` and `b` (`appendFoldedName`), as far as comparing with ASCII
/// keys goes: ASCII case, and the two runes whose case orbit holds an ASCII letter (`ı` and `İ` are their own
/// orbits in Go's tables, so they do not fold to `i`).
pub(crate) fn go_eq(a: &str, b: &str) -> bool {
    let fold = |c: char| match c {
        '\u{17F}' => 'S',
        '\u{212A}' => 'K',
        c => c.to_ascii_uppercase(),
    };
    a.chars().map(fold).eq(b.chars().map(fold))
}

/// A path step: the key, and whether Go matches it as a struct field (folded) or a map key.
pub(crate) type Step<'a> = (&'a str, bool);

/// What `reader` finds at `path` in `j`, when the path leads anywhere.
pub(crate) fn read<'j>(reader: Reader, j: &'j J, path: &[Step<'_>]) -> Option<&'j J> {
    let Some(((key, folded), rest)) = path.split_first() else { return Some(j) };
    let J::Obj(members) = j else { return None };
    let matches = |k: &String| match reader {
        Reader::Go if *folded => go_eq(k, key),
        _ => k == key,
    };
    let mut hits = members.iter().filter(|(k, _)| matches(k)).map(|(_, v)| v);
    match reader {
        Reader::ExactFirst => read(reader, hits.next()?, rest),
        Reader::ExactLast => read(reader, hits.next_back()?, rest),
        Reader::Go => hits.filter_map(|v| read(reader, v, rest)).next_back(),
    }
}

/// One or two edits of `text`: a char removed, inserted or replaced (from `chars`), a span of
/// it copied elsewhere, or one of `tokens` inserted. Always valid UTF-8.
pub(crate) fn mutate(rng: &mut crate::rng::Rng, text: &str, chars: &[char], tokens: &[&str]) -> String {
    let mut out: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(2) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if at < out.len() => _ = out.remove(at),
            1 => out.insert(at, rng.pick(chars)),
            2 => {
                let from = rng.below(out.len() + 1);
                let span: Vec<char> = out[from..(from + 1 + rng.below(16)).min(out.len())].to_vec();
                drop(out.splice(at..at, span));
            }
            3 => drop(out.splice(at..at, rng.pick(tokens).chars())),
            _ if at < out.len() => out[at] = rng.pick(chars),
            _ => {}
        }
    }
    out.into_iter().collect()
}

/// A JSON string literal for `s`, each char written as `\uXXXX` (hex digits in either case)
/// with `escape` percent, control chars always.
pub(crate) fn literal(rng: &mut crate::rng::Rng, s: &str, escape: usize) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => out.extend(['\\', c]),
            c if c < ' ' || rng.chance(escape) => {
                let upper = rng.chance(50);
                for u in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&if upper { format!("\\u{u:04X}") } else { format!("\\u{u:04x}") });
                }
            }
            c => out.push(c),
        }
    }
    out + "\""
}
