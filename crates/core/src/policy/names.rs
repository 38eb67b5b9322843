//! User names that an identity provider asserts: whether one is in canonical form, and the
//! folded form under which names that look alike compare equal.
//!
//! Owns the rule documented in docs/configuration.md (*Authentication*): a canonical name is
//! non-empty, at most [`MAX_NAME_BYTES`], in Unicode normalization form C, with no leading or
//! trailing whitespace and no character a reader cannot see or tell from a space (controls,
//! format characters such as zero-width and bidi controls, default-ignorable code points,
//! whitespace other than U+0020, private-use and unassigned code points). Pure: no I/O, no
//! state; the Unicode data is compiled in.

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Longer names are refused.
pub const MAX_NAME_BYTES: usize = 256;

/// Why a name is not canonical. Says nothing of the name itself (which is never logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotCanonical {
    #[error("empty")]
    Empty,
    #[error("longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("leading or trailing whitespace")]
    Padded,
    #[error("an invisible, control or non-space whitespace character")]
    Invisible,
    #[error("not in Unicode normalization form C")]
    NotNfc,
}

/// Checks that `name` is in canonical form (see the module header).
pub fn check_canonical(name: &str) -> Result<(), NotCanonical> {
    if name.is_empty() {
        return Err(NotCanonical::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NotCanonical::TooLong);
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(NotCanonical::Padded);
    }
    if name.chars().any(invisible) {
        return Err(NotCanonical::Invisible);
    }
    if !name.is_ascii() && !ComposingNormalizerBorrowed::new_nfc().is_normalized(name) {
        return Err(NotCanonical::NotNfc);
    }
    Ok(())
}

/// A character a reader cannot see, or cannot tell from a space.
fn invisible(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    use GeneralCategory as G;
    let category = CodePointMapData::<GeneralCategory>::new().get(c);
    matches!(
        category,
        G::Control
            | G::Format
            | G::PrivateUse
            | G::Unassigned
            | G::Surrogate
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
    ) || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        // BRAILLE PATTERN BLANK: a symbol, drawn as nothing.
        || c == '\u{2800}'
}

/// The form under which names that look alike compare equal: NFKC, then every character
/// lower-, upper- and lower-cased again (so `A` and `a`, `ẞ`, `ß` and `ss`, `ſ` and `s`,
/// `ς` and `σ` meet, as Unicode case folding makes them; dotless `ı` also meets `i`), then
/// NFKC again.
pub fn fold(name: &str) -> String {
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let first = nfkc.normalize(name);
    let mut cased = String::with_capacity(first.len());
    for upper in first.chars().flat_map(char::to_lowercase).flat_map(char::to_uppercase) {
        cased.extend(upper.to_lowercase());
    }
    nfkc.normalize(&cased).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_canonical() {
        for name in ["alice@example.com", "u-123", "Alice Smith", "józef@example.pl", "山田", "Ελένη"] {
            assert_eq!(check_canonical(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn padded_invisible_and_unnormalized_names_are_not_canonical() {
        let cases: &[(&str, NotCanonical)] = &[
            ("", NotCanonical::Empty),
            ("admin@corp.example ", NotCanonical::Padded),
            (" admin@corp.example", NotCanonical::Padded),
            ("bob\u{a0}", NotCanonical::Padded),
            ("\u{3000}bob", NotCanonical::Padded),
            ("admin@corp.example\u{200b}", NotCanonical::Invisible),
            ("ad\u{200d}min", NotCanonical::Invisible),
            ("admin\u{202e}moc.elpmaxe", NotCanonical::Invisible),
            ("\u{2066}admin\u{2069}", NotCanonical::Invisible),
            ("ad\u{ad}min", NotCanonical::Invisible),
            ("\u{feff}admin", NotCanonical::Invisible),
            ("admin\u{fe0f}", NotCanonical::Invisible),
            ("a\u{a0}b", NotCanonical::Invisible),
            ("a\u{2028}b", NotCanonical::Invisible),
            ("a\u{3164}b", NotCanonical::Invisible),
            ("a\u{e000}b", NotCanonical::Invisible),
            ("a\u{2800}b", NotCanonical::Invisible),
            ("a\tb", NotCanonical::Invisible),
            ("a\u{7f}b", NotCanonical::Invisible),
            ("a\u{85}b", NotCanonical::Invisible),
            ("jo\u{301}zef", NotCanonical::NotNfc),
            ("\u{212b}ngstr\u{f6}m", NotCanonical::NotNfc),
        ];
        for (name, want) in cases {
            assert_eq!(check_canonical(name), Err(*want), "{name:?}");
        }
        assert_eq!(check_canonical(&"a".repeat(MAX_NAME_BYTES + 1)), Err(NotCanonical::TooLong));
    }

    #[test]
    fn look_alike_names_fold_to_the_same_form() {
        let same = [
            ("Admin@corp.example", "admin@corp.example"),
            ("ADMIN@CORP.EXAMPLE", "admin@corp.example"),
            ("\u{ff41}dmin", "admin"),
            ("\u{212a}elvin", "kelvin"),
            ("stra\u{df}e", "STRASSE"),
            ("STRA\u{1e9e}E", "strasse"),
            ("\u{131}", "I"),
            ("\u{17f}am", "sam"),
            ("\u{3a3}\u{3c3}\u{3c2}", "\u{3c3}\u{3c3}\u{3c3}"),
            ("\u{fb01}le", "file"),
            ("\u{2460}", "1"),
        ];
        for (a, b) in same {
            assert_eq!(fold(a), fold(b), "{a:?} vs {b:?}");
        }
        assert_ne!(fold("alice"), fold("alicia"));
        assert_ne!(fold("bob"), fold("b\u{f6}b"), "a different letter is a different name");
    }
}
