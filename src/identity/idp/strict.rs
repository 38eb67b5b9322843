//! The strict reading of an identity-provider token's JOSE header and claims: one JSON value
//! in which no object names a key twice, at any depth (keys compared after unescaping, so
//! `"email"` and `"\u0065mail"` are the same key).
//!
//! A JSON reader that keeps the first of two equal keys and one that keeps the last see two
//! different users; request bodies are refused for the same reason (`warden_core::mcp::jsonrpc`).
//! Linear in the input: each object's keys go through one hash set. Reads and keeps nothing.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Whether `json` is exactly one JSON value with no repeated key in any object.
pub(super) fn unique_keys(json: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(json);
    Unique.deserialize(&mut de).is_ok() && de.end().is_ok()
}

/// Any JSON value, checked for repeated keys and otherwise skipped.
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(Key(key)) = map.next_key()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::unique_keys;

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        for bad in [
            r#"{"email":"eve@example.com","email":"admin@example.com"}"#,
            r#"{"groups":["readers"],"groups":["admins"]}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":[{"x":{"y":[{"k":1,"k":1}]}}]}"#,
            r#"{"email":"a","\u0065mail":"b"}"#,
            r#"[{"k":1,"k":2}]"#,
        ] {
            assert!(!unique_keys(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn equal_keys_in_different_objects_and_ordinary_values_are_fine() {
        for good in [
            r#"{"a":{"k":1},"b":{"k":1},"k":[{"k":null},{"k":true}]}"#,
            r#"{"n":-1.5e3,"u":18446744073709551615,"s":"\"q\"","e":{},"l":[]}"#,
            r#"{"E":1,"e":2,"\u00e9":3,"e\u0301":4}"#,
        ] {
            assert!(unique_keys(good.as_bytes()), "{good}");
        }
    }

    #[test]
    fn anything_but_one_json_value_is_refused() {
        for bad in ["", "{}{}", "{\"a\":1", "{\"a\":1} x", "{\"a\":\"\\ud800\"}"] {
            assert!(!unique_keys(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn many_keys_are_checked_in_linear_time() {
        // 20,000 distinct keys, then a repeat of the first: one hash set per object (a
        // pairwise scan would compare 2 * 10^8 pairs here).
        let mut text = String::from("{");
        for i in 0..20_000 {
            text.push_str(&format!("\"k{i}\":0,"));
        }
        text.push_str("\"k0\":1}");
        assert!(!unique_keys(text.as_bytes()));
        let ok = text.replace("\"k0\":1}", "\"last\":1}");
        assert!(unique_keys(ok.as_bytes()));
    }
}
