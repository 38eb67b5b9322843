//! Bounds on what a client can make mcp-warden match or record.
//!
//! Owns two kinds of limit (`inspection` in the service config): names and URIs longer than
//! a governed object may be are refused as invalid (the MCP spec asks tool names of 1–128
//! characters), and every other client-supplied value that reaches the audit log, Envoy's
//! decision metadata or a log line is cut, at a character boundary, with a visible marker
//! (`…[truncated N bytes]`). Without them one request could make every log it reaches grow
//! by its own size. Pure: no I/O.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::value::RawValue;

use crate::policy::Governed;

/// The limits, as configured (defaults: 128 characters, 8,192 bytes, 512 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Longest tool or prompt name, in characters (Unicode scalar values).
    pub max_name_chars: usize,
    /// Longest resource URI (or URI template), in bytes.
    pub max_uri_bytes: usize,
    /// Longest other client-supplied value recorded (audit, metadata, logs), in bytes.
    pub max_recorded_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { max_name_chars: 128, max_uri_bytes: 8192, max_recorded_bytes: 512 }
    }
}

/// The marker that ends a cut value: `…[truncated N bytes]`, N the bytes left out.
const MARKER_PREFIX: &str = "…[truncated ";

impl Bounds {
    /// Whether a governed name fits its limit (tools and prompts by characters, resources
    /// by bytes).
    pub fn fits(&self, what: Governed<'_>) -> bool {
        match what {
            Governed::Tool(n) | Governed::Prompt(n) => {
                n.len() <= self.max_name_chars || {
                    // Bytes bound characters from above: count only when the bytes exceed.
                    n.chars().nth(self.max_name_chars).is_none()
                }
            }
            Governed::Resource(u) => u.len() <= self.max_uri_bytes,
        }
    }

    /// A governed name as recorded: whole when it fits its limit (so an allowed name is
    /// never cut), else cut like any other value.
    pub fn name<'s>(&self, what: Governed<'s>) -> Cow<'s, str> {
        let (Governed::Tool(name) | Governed::Prompt(name) | Governed::Resource(name)) = what;
        match self.fits(what) {
            true => Cow::Borrowed(name),
            false => cut(name, self.max_recorded_bytes),
        }
    }

    /// A client-supplied value as recorded.
    pub fn value<'s>(&self, s: &'s str) -> Cow<'s, str> {
        cut(s, self.max_recorded_bytes)
    }

    /// A JSON-RPC id as recorded: as sent when it fits, else a JSON string holding its cut
    /// text (a number or string of that size is never an id anyone needs whole).
    pub fn id<'s>(&self, id: &'s RawValue) -> Cow<'s, RawValue> {
        let text = id.get();
        if text.len() <= self.max_recorded_bytes {
            return Cow::Borrowed(id);
        }
        let cut = serde_json::to_string(&*cut(text, self.max_recorded_bytes)).unwrap_or_default();
        RawValue::from_string(cut).map_or(Cow::Borrowed(id), Cow::Owned)
    }
}

/// `s` if it is at most `max` bytes long; else its longest prefix of at most `max` bytes
/// that ends at a character boundary, followed by `…[truncated N bytes]`.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    // At most three steps back: a UTF-8 character is at most four bytes.
    let end = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    let mut out = String::with_capacity(end + MARKER_PREFIX.len() + 28);
    out.push_str(&s[..end]);
    out.push_str(MARKER_PREFIX);
    let _ = write!(out, "{} bytes]", s.len() - end); // writing to a String cannot fail
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_within_the_limit_is_kept_as_it_is() {
        assert!(matches!(cut("get_weather", 11), Cow::Borrowed("get_weather")));
        assert!(matches!(cut("", 0), Cow::Borrowed("")));
    }

    #[test]
    fn a_longer_value_is_cut_with_a_marker_naming_what_was_left_out() {
        assert_eq!(cut("abcdefgh", 3), "abc…[truncated 5 bytes]");
        assert_eq!(cut("abc", 0), "…[truncated 3 bytes]");
        let huge = "n".repeat(1 << 20);
        let cut = cut(&huge, 512);
        assert!(cut.len() < 600, "{}", cut.len());
        assert!(cut.ends_with(&format!("…[truncated {} bytes]", (1 << 20) - 512)));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes, "日" three, "😀" four: every cut point falls inside one.
        for (s, max, kept) in [("éé", 3, "é"), ("日本", 4, "日"), ("a😀", 4, "a"), ("😀", 3, "")] {
            let out = cut(s, max);
            assert!(out.starts_with(kept) && out[kept.len()..].starts_with(MARKER_PREFIX), "{s} at {max}: {out}");
            let left = s.len() - kept.len();
            assert!(out.ends_with(&format!("{left} bytes]")), "{out}");
        }
    }

    #[test]
    fn names_fit_by_characters_and_uris_by_bytes() {
        let b = Bounds { max_name_chars: 4, max_uri_bytes: 8, max_recorded_bytes: 6 };
        assert!(b.fits(Governed::Tool("abcd")));
        assert!(!b.fits(Governed::Tool("abcde")));
        assert!(b.fits(Governed::Prompt("été!")), "four characters in six bytes");
        assert!(!b.fits(Governed::Prompt("étés!")));
        assert!(b.fits(Governed::Resource("file:///")));
        assert!(!b.fits(Governed::Resource("file:///a")));
        assert!(!b.fits(Governed::Resource("f://été")), "nine bytes");
        assert_eq!(b.name(Governed::Prompt("été!")), "été!", "a name that fits is never cut");
        assert_eq!(b.name(Governed::Tool("abcdefgh")), "abcdef…[truncated 2 bytes]");
    }

    #[test]
    fn a_long_id_is_recorded_as_a_json_string_of_its_cut_text() {
        let b = Bounds { max_recorded_bytes: 4, ..Bounds::default() };
        let short = RawValue::from_string("1234".into()).expect("raw");
        assert_eq!(b.id(&short).get(), "1234");
        let long = RawValue::from_string("\"abcdef\"".into()).expect("raw");
        assert_eq!(b.id(&long).get(), r#""\"abc…[truncated 4 bytes]""#);
        let number = RawValue::from_string("123456789".into()).expect("raw");
        assert_eq!(b.id(&number).get(), r#""1234…[truncated 5 bytes]""#);
    }
}
