//! Name matching with Teleport's rules: an entry is a literal, an anchored glob where `*`
//! matches any run of characters, or a regular expression when it starts with `^` and ends
//! with `$`. Matching is case-sensitive.
//!
//! Owns compilation (once per policy load) and matching (allocation-free). Never sees a
//! request or does I/O.

use std::collections::HashSet;

use regex::RegexSet;

/// A pattern that failed to compile, naming the entry.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern '{entry}': {reason}")]
pub struct PatternError {
    pub entry: String,
    pub reason: String,
}

/// A compiled list of entries: one hash lookup for the literals, a byte scan per glob, and
/// one pass of a `RegexSet` for the `^regex$` entries. Globs are matched without the regex
/// engine: a policy of thousands of roles stays small in memory and quick to load.
#[derive(Debug, Default)]
pub struct NameSet {
    any: bool,
    literals: HashSet<Box<str>>,
    globs: Vec<Glob>,
    regexes: Option<RegexSet>,
    /// The `^regex$` entries in `regexes` order, to name the one that matched.
    regex_sources: Vec<Box<str>>,
}

/// An anchored glob: the text between its `*`s, in order.
#[derive(Debug)]
struct Glob {
    source: Box<str>,
    parts: Box<[Box<str>]>,
}

impl Glob {
    fn new(source: &str) -> Self {
        Glob { source: source.into(), parts: source.split('*').map(Into::into).collect() }
    }

    /// Prefix, suffix, and each middle part found in order between them.
    fn is_match(&self, name: &str) -> bool {
        // A glob has at least one `*`, so at least two parts.
        let [first, middle @ .., last] = &*self.parts else { return false };
        if name.len() < first.len() + last.len() || !name.starts_with(&**first) || !name.ends_with(&**last) {
            return false;
        }
        let mut hay = &name[first.len()..name.len() - last.len()];
        for part in middle {
            match hay.find(&**part) {
                Some(i) => hay = &hay[i + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Limits one compiled pattern so a hostile policy cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Lazy-DFA cache per regex set: plenty for tool names, small for policies of many roles.
const REGEX_DFA_LIMIT: usize = 1 << 16;

impl NameSet {
    /// Compiles `entries`; the first bad entry is an error.
    pub fn compile<S: AsRef<str>>(entries: &[S]) -> Result<Self, PatternError> {
        let mut out = NameSet::default();
        for entry in entries {
            let entry = entry.as_ref();
            match classify(entry) {
                Kind::Any => out.any = true,
                Kind::Literal => {
                    out.literals.insert(entry.into());
                }
                Kind::Glob => out.globs.push(Glob::new(entry)),
                Kind::Regex => out.regex_sources.push(entry.into()),
            }
        }
        if !out.regex_sources.is_empty() {
            let build = |sources: &[Box<str>]| {
                regex::RegexSetBuilder::new(sources.iter().map(|s| &**s))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_DFA_LIMIT)
                    .build()
            };
            let set = build(&out.regex_sources).map_err(|e| {
                // Name the entry at fault: the first that fails alone.
                let bad = out.regex_sources.iter().find(|s| build(std::slice::from_ref(*s)).is_err());
                PatternError {
                    entry: bad.map_or_else(|| out.regex_sources.join(", "), |b| b.to_string()),
                    reason: e.to_string(),
                }
            })?;
            out.regexes = Some(set);
        }
        Ok(out)
    }

    /// True when no entry was given: such a list matches nothing.
    pub fn is_empty(&self) -> bool {
        !self.any && self.literals.is_empty() && self.globs.is_empty() && self.regexes.is_none()
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.any
            || self.literals.contains(name)
            || self.globs.iter().any(|g| g.is_match(name))
            || self.regexes.as_ref().is_some_and(|s| s.is_match(name))
    }

    /// The entry that matches `name`, for explanations and audit.
    pub fn find(&self, name: &str) -> Option<&str> {
        if self.any {
            return Some("*");
        }
        if let Some(lit) = self.literals.get(name) {
            return Some(lit);
        }
        if let Some(g) = self.globs.iter().find(|g| g.is_match(name)) {
            return Some(&g.source);
        }
        let set = self.regexes.as_ref().filter(|s| s.is_match(name))?;
        let first = set.matches(name).into_iter().next()?;
        self.regex_sources.get(first).map(|s| &**s)
    }
}

enum Kind {
    Any,
    Literal,
    Glob,
    Regex,
}

fn classify(entry: &str) -> Kind {
    if entry == "*" {
        Kind::Any
    } else if entry.len() >= 2 && entry.starts_with('^') && entry.ends_with('$') {
        Kind::Regex
    } else if entry.contains('*') {
        Kind::Glob
    } else {
        Kind::Literal
    }
}

/// One part of a templated entry: `prefix{{internal.NAME}}suffix` or a plain entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    Plain(String),
    Trait { prefix: String, namespace: TraitNamespace, name: String, suffix: String },
}

/// `internal.*` traits come from the user resource; `external.*` from the identity provider.
/// For users defined in policy both read the user's traits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraitNamespace {
    Internal,
    External,
}

/// A template that cannot be expanded, naming the entry.
#[derive(Debug, thiserror::Error)]
#[error("invalid template '{entry}': {reason}")]
pub struct TemplateError {
    pub entry: String,
    pub reason: &'static str,
}

impl Template {
    pub fn parse(entry: &str) -> Result<Self, TemplateError> {
        let err = |reason| TemplateError { entry: entry.to_owned(), reason };
        let Some(open) = entry.find("{{") else {
            if entry.contains("}}") {
                return Err(err("'}}' without '{{'"));
            }
            return Ok(Template::Plain(entry.to_owned()));
        };
        let close = entry[open..].find("}}").map(|i| i + open).ok_or_else(|| err("'{{' without '}}'"))?;
        let suffix = &entry[close + 2..];
        if suffix.contains("{{") || suffix.contains("}}") {
            return Err(err("only one {{...}} expression is supported"));
        }
        let inner = entry[open + 2..close].trim();
        let (namespace, name) = if let Some(n) = inner.strip_prefix("internal.") {
            (TraitNamespace::Internal, n)
        } else if let Some(n) = inner.strip_prefix("external.") {
            (TraitNamespace::External, n)
        } else {
            return Err(err("expected {{internal.NAME}} or {{external.NAME}}"));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(err("a trait name is letters, digits, '_' and '-'"));
        }
        Ok(Template::Trait {
            prefix: entry[..open].to_owned(),
            namespace,
            name: name.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// Expands into `out`: a plain entry once, a trait entry once per trait value
    /// (a missing trait expands to nothing).
    pub fn expand<'a>(&self, lookup: impl Fn(TraitNamespace, &str) -> Option<&'a [String]>, out: &mut Vec<String>) {
        match self {
            Template::Plain(s) => out.push(s.clone()),
            Template::Trait { prefix, namespace, name, suffix } => {
                for value in lookup(*namespace, name).unwrap_or_default() {
                    out.push(format!("{prefix}{value}{suffix}"));
                }
            }
        }
    }

    pub fn is_plain(&self) -> bool {
        matches!(self, Template::Plain(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[&str]) -> NameSet {
        NameSet::compile(entries).expect("valid patterns")
    }

    #[test]
    fn literal_matches_exactly_and_case_sensitively() {
        let s = set(&["get_weather"]);
        assert!(s.is_match("get_weather"));
        assert!(!s.is_match("Get_weather"));
        assert!(!s.is_match("get_weather2"));
    }

    #[test]
    fn glob_is_anchored_and_star_spans_anything() {
        let s = set(&["slack_*"]);
        assert!(s.is_match("slack_post_message"));
        assert!(s.is_match("slack_"));
        assert!(!s.is_match("my_slack_post"));
        let s = set(&["*___get"]);
        assert!(s.is_match("target___get"));
        assert!(!s.is_match("target___getx"));
    }

    #[test]
    fn globs_with_several_stars_match_their_parts_in_order() {
        let s = set(&["a*b*c", "**x"]);
        assert!(s.is_match("abc") && s.is_match("a-b-c") && s.is_match("abbc") && s.is_match("x"));
        assert!(!s.is_match("acb") && !s.is_match("ab") && !s.is_match("bc"));
        let s = set(&["ab*ba"]);
        assert!(!s.is_match("aba") && s.is_match("abba"), "prefix and suffix may not overlap");
    }

    #[test]
    fn glob_metacharacters_other_than_star_are_literal() {
        let s = set(&["a.b*"]);
        assert!(s.is_match("a.bc"));
        assert!(!s.is_match("axbc"));
    }

    #[test]
    fn regex_entry_needs_both_anchors() {
        let s = set(&["^(get|list)_.*$"]);
        assert!(s.is_match("get_x"));
        assert!(!s.is_match("xget_x"));
        let s = set(&["^get"]);
        assert!(!s.is_match("get_x"), "without '$' the entry is a literal");
        assert!(s.is_match("^get"));
    }

    #[test]
    fn star_alone_matches_everything() {
        assert!(set(&["*"]).is_match(""));
        assert_eq!(set(&["*"]).find("x"), Some("*"));
    }

    #[test]
    fn empty_list_matches_nothing() {
        let s = set(&[]);
        assert!(s.is_empty());
        assert!(!s.is_match("anything"));
    }

    #[test]
    fn find_names_the_matching_entry() {
        let s = set(&["echo", "get_*", "^query_[a-z]+$"]);
        assert_eq!(s.find("echo"), Some("echo"));
        assert_eq!(s.find("get_time"), Some("get_*"));
        assert_eq!(s.find("query_db"), Some("^query_[a-z]+$"));
        assert_eq!(s.find("delete"), None);
    }

    #[test]
    fn bad_regex_is_an_error_naming_the_entry() {
        let e = NameSet::compile(&["^(unclosed$"]).expect_err("bad regex");
        assert_eq!(e.entry, "^(unclosed$");
    }

    #[test]
    fn templates_expand_per_trait_value_with_prefix_and_suffix() {
        let t = Template::parse("pre_{{internal.mcp_tools}}_x").expect("valid");
        let values = vec!["a".to_owned(), "b".to_owned()];
        let mut out = Vec::new();
        t.expand(|_, n| (n == "mcp_tools").then_some(values.as_slice()), &mut out);
        assert_eq!(out, ["pre_a_x", "pre_b_x"]);
        let mut none = Vec::new();
        t.expand(|_, _| None, &mut none);
        assert!(none.is_empty(), "a missing trait expands to nothing");
    }

    #[test]
    fn unsupported_templates_are_errors() {
        assert!(Template::parse("{{email.local(external.email)}}").is_err());
        assert!(Template::parse("{{internal.x").is_err());
        assert!(Template::parse("{{internal.a}}{{internal.b}}").is_err());
    }
}
