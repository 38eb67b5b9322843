//! Where a YAML node is: [`Loc`] (file, line, column) and [`locate`], which finds the node
//! at a field path such as `spec.allow.mcp.tools[2]` in the n-th document of a text.
//!
//! yaml_serde exposes positions only on errors, so `locate` walks the document with a
//! deserializer that fails on purpose at the wanted node: the parser then stamps the error
//! with that node's own mark. Exact (the parser's positions, anchors and flow style
//! included), costs one parse, and runs only when there is something to report.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A position in a file; `line` 0 means unknown (the file only), `column` 0 the line only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Loc {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl Loc {
    pub fn file(file: &str) -> Self {
        Loc { file: file.to_owned(), line: 0, column: 0 }
    }

    pub fn at(file: &str, (line, column): (u32, u32)) -> Self {
        Loc { file: file.to_owned(), line, column }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}

const FOUND: &str = "\u{0}located\u{0}";

/// `(line, column)`, 1-based, of the node at `path` in document `doc` (0-based) of `text`;
/// when the path goes further than the document does, the deepest node it reaches. `None`
/// when the text does not parse or has fewer documents.
pub fn locate(text: &str, doc: usize, path: &str) -> Option<(u32, u32)> {
    let segments = segments(path);
    let document = yaml_serde::Deserializer::from_str(text).nth(doc)?;
    let err = Seek(&segments).deserialize(document).err()?;
    if !err.to_string().contains(FOUND) {
        return None;
    }
    let l = err.location()?;
    Some((u32::try_from(l.line()).ok()?, u32::try_from(l.column()).ok()?))
}

/// A multi-document text cut into its documents once, so that each lookup parses one
/// document and not every document before it (a policy of many users, many findings).
#[derive(Debug)]
pub struct Documents {
    text: String,
    /// Byte offset and line offset of each document; `None` when the `---` lines could not
    /// be matched to the parser's documents (a `---` inside a block scalar, say): lookups
    /// then parse the whole text.
    starts: Option<Vec<(usize, u32)>>,
}

impl Documents {
    pub fn new(text: String) -> Self {
        let count = yaml_serde::Deserializer::from_str(&text).count();
        let starts = split(&text).filter(|s| s.len() == count);
        Documents { text, starts }
    }

    /// As [`locate`], in document `doc`.
    pub fn locate(&self, doc: usize, path: &str) -> Option<(u32, u32)> {
        let Some(starts) = &self.starts else { return locate(&self.text, doc, path) };
        let &(start, lines_before) = starts.get(doc)?;
        let end = starts.get(doc + 1).map_or(self.text.len(), |&(e, _)| e);
        let (line, column) = locate(&self.text[start..end], 0, path)?;
        Some((line + lines_before, column))
    }
}

/// Where each document starts: at its `---` line, or at the top for a first document
/// without one.
fn split(text: &str) -> Option<Vec<(usize, u32)>> {
    let is_marker = |l: &str| l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
    let mut starts = Vec::new();
    let (mut offset, mut content_seen) = (0, false);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let content = !bare.trim().is_empty() && !bare.trim_start().starts_with('#') && !bare.starts_with('%');
        if is_marker(bare) {
            starts.push((offset, u32::try_from(i).ok()?));
            content_seen = true;
        } else if content && !content_seen {
            starts.push((0, 0));
            content_seen = true;
        }
        offset += line.len();
    }
    Some(starts)
}

/// A yaml_serde error's position, and its message without the trailing "at line …".
pub fn yaml_error(e: &yaml_serde::Error) -> (Option<(u32, u32)>, String) {
    let message = e.to_string();
    let message = match message.rfind(" at line ") {
        Some(i) if e.location().is_some() => message[..i].to_owned(),
        _ => message,
    };
    let at = e.location().and_then(|l| Some((u32::try_from(l.line()).ok()?, u32::try_from(l.column()).ok()?)));
    (at, message)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `a.b[2].c["d.e"]` → `a`, `b`, `2`, `c`, `d.e` (a key holding `.` or `[` is quoted in
/// brackets). A malformed rest ends the path: the walk stops at the deepest node found.
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[\"") {
            let Some((key, r)) = r.split_once("\"]") else { break };
            out.push(Segment::Key(key.to_owned()));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some((n, r)) = r.split_once(']') else { break };
            let Ok(i) = n.parse() else { break };
            out.push(Segment::Index(i));
            rest = r;
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                out.push(Segment::Key(r[..end].to_owned()));
            }
            rest = &r[end..];
        }
    }
    out
}

/// `key` as a path segment after `path`: `.key`, or `["key"]` when it holds `.` or `[`.
pub fn join(path: &str, key: &str) -> String {
    match (key.contains(['.', '[']), path.is_empty()) {
        (true, _) => format!("{path}[\"{key}\"]"),
        (false, true) => key.to_owned(),
        (false, false) => format!("{path}.{key}"),
    }
}

struct Seek<'p>(&'p [Segment]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn found<E: de::Error>() -> E {
    E::custom(FOUND)
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(want), rest)) = self.0.split_first() else { return Err(found()) };
        while let Some(key) = map.next_key::<KeyText>()? {
            if key.0.as_deref() == Some(want.as_str()) {
                return map.next_value_seed(Seek(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(found())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(want), rest)) = self.0.split_first() else { return Err(found()) };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(found());
            }
        }
        match seq.next_element_seed(Seek(rest))? {
            Some(()) => Ok(()),
            None => Err(found()),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(found())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(found())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(found())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(found())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(found())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(found())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(found())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(found())
    }
}

/// A mapping key: its text when it is a string, else nothing.
struct KeyText(Option<String>);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = yaml_serde::Value::deserialize(d)?;
        Ok(KeyText(match v {
            yaml_serde::Value::String(s) => Some(s),
            yaml_serde::Value::Number(n) => Some(n.to_string()),
            yaml_serde::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\nkind: role\nmetadata: {name: r}\nspec:\n  allow:\n    mcp:\n      tools:\n      - a\n      - '^(x$'\n---\nkind: user\nspec: {roles: [a, ghost]}\n";

    #[test]
    fn nodes_are_found_by_field_path_in_any_document() {
        assert_eq!(locate(TEXT, 0, "spec.allow.mcp.tools[1]"), Some((9, 9)));
        assert_eq!(locate(TEXT, 0, "metadata.name"), Some((3, 18)));
        assert_eq!(locate(TEXT, 0, "kind"), Some((2, 7)));
        assert_eq!(locate(TEXT, 1, "spec.roles[1]"), Some((12, 19)));
        assert_eq!(locate(TEXT, 1, "kind"), Some((11, 7)));
    }

    #[test]
    fn keys_holding_dots_are_quoted_in_brackets() {
        let text = "a:\n  envoy.filters.x:\n    b: [1, 2]\n";
        let path = format!("{}.b[1]", join(&join("", "a"), "envoy.filters.x"));
        assert_eq!(path, "a[\"envoy.filters.x\"].b[1]");
        assert_eq!(locate(text, 0, &path), Some((3, 12)));
    }

    #[test]
    fn a_path_past_the_document_stops_at_the_deepest_node() {
        // No index on a scalar: the scalar itself; no such key: the mapping that lacks it.
        assert_eq!(locate(TEXT, 0, "kind[3]"), Some((2, 7)));
        assert_eq!(locate(TEXT, 0, "spec.allow.mcp.prompts"), Some((7, 7)));
        assert_eq!(locate(TEXT, 0, ""), Some((2, 1)));
        assert_eq!(locate(TEXT, 5, "kind"), None);
    }

    #[test]
    fn documents_cut_once_locate_like_the_whole_text() {
        let texts = [
            TEXT,
            "---\n---\nmetadata: {name: r}\n",
            "# c\n%YAML 1.2\n---\na: 1\n--- {b: [1, 2]}\n",
            "a: |\n  ---\n  text\nb: 1\n---\nc: 2\n", // a marker inside a block scalar
        ];
        for text in texts {
            let docs = Documents::new(text.to_owned());
            for (doc, path) in
                [(0, "kind"), (0, "a"), (0, "b"), (1, "metadata.name"), (1, "b[1]"), (1, "c"), (1, "spec.roles[1]")]
            {
                assert_eq!(docs.locate(doc, path), locate(text, doc, path), "{text:?} {doc} {path}");
            }
        }
        assert!(Documents::new(TEXT.to_owned()).starts.is_some());
        assert_eq!(Documents::new(texts[3].to_owned()).starts.map(|s| s.len()), Some(2), "an indented --- is content");
    }

    #[test]
    fn yaml_errors_split_into_position_and_message() {
        let e = yaml_serde::from_str::<std::collections::BTreeMap<String, u8>>("a: 1\nb: x\n").expect_err("not u8");
        let (at, message) = yaml_error(&e);
        assert_eq!(at, Some((2, 4)));
        assert!(!message.contains("at line"), "{message}");
    }
}
