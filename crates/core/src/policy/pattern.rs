//! Name matching with Teleport's rules: an entry is a literal, an anchored glob where `*`
//! matches any run of characters, or a regular expression when it starts with `^` and ends
//! with `$`. Matching is case-sensitive.
//!
//! Owns compilation (once per policy load) and matching (allocation-free). Never sees a
//! request or does I/O.
//!
//! Cost of matching a name of n bytes against one list: a binary search of the literals
//! (log L comparisons, most decided by length alone), per glob a prefix and suffix compare
//! and a left-to-right search of its inner parts (linear in n: `str::find` is two-way), and
//! one pass of the DFA over the name (or of the `RegexSet` fallback, also linear). A check
//! consults at most two lists per role the user holds (deny, then allow), so it costs
//! O(roles held × (globs + 1) × n): linear in the name for a given policy, multiplied by the
//! roles a user holds (BENCHMARKS.md, *Worst-case requests*, measures a 1 MiB name).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use regex::RegexSet;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::syntax;

use super::dfa::Dfa;

/// A pattern that failed to compile, naming the entry.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern '{entry}': {reason}")]
pub struct PatternError {
    pub entry: String,
    pub reason: String,
}

/// A compiled list of entries: a binary search over the sorted literals, a prefix, suffix
/// and substring check per glob, and one pass of a small DFA for all the `^regex$` entries together. Globs are
/// matched without the regex engine, and nothing is compiled per request: a policy of
/// thousands of roles stays small in memory and quick to load.
#[derive(Debug, Default)]
pub struct NameSet {
    any: bool,
    /// Sorted (by [`by_length`]) and deduplicated.
    literals: Strs,
    globs: Globs,
    /// Shared by every list with the same `^regex$` entries in the same order.
    regexes: Option<Arc<Regexes>>,
}

/// The `^regex$` entries of a list, compiled together.
#[derive(Debug)]
struct Regexes {
    /// In list order: pattern `i` is `sources[i]`.
    sources: Strs,
    engine: Engine,
}

#[derive(Debug)]
enum Engine {
    /// Every regex of ordinary size with no assertion but `^` and `$`: no cache, no lock.
    Dfa(Dfa),
    /// The rest (other assertions, or a DFA over its size limit).
    Set(RegexSet),
}

/// Strings stored end to end in one allocation.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct Strs {
    text: Box<str>,
    /// Where each string ends in `text`.
    ends: Box<[u32]>,
}

impl Strs {
    fn new<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, PatternError> {
        let (mut text, mut ends) = (String::new(), Vec::new());
        for item in items {
            text.push_str(item);
            ends.push(
                u32::try_from(text.len())
                    .map_err(|_| PatternError { entry: item.to_owned(), reason: "the list is too large".into() })?,
            );
        }
        Ok(Strs { text: text.into(), ends: ends.into() })
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The entry equal to `name`, the entries being sorted by [`by_length`].
    fn find_sorted(&self, name: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let entry = self.get(mid);
            match by_length(entry, name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(entry),
            }
        }
        None
    }
}

/// Length first: most steps of a binary search then compare no bytes.
fn by_length(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Anchored globs: the text between a glob's `*`s must appear in order, the text before
/// its first `*` as a prefix and the text after its last as a suffix.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct Globs {
    /// In list order: `find` names the first that matches.
    globs: Strs,
    /// Where each glob's first and last `*` are.
    stars: Box<[(u32, u32)]>,
}

impl Globs {
    fn new(globs: Strs) -> Self {
        let stars = globs
            .iter()
            .map(|g| {
                // A glob has a `*`; its offsets fit in `u32` as its end did in `Strs`.
                let first = g.find('*').unwrap_or(0);
                (first as u32, g.rfind('*').unwrap_or(first) as u32)
            })
            .collect();
        Globs { globs, stars }
    }

    fn is_empty(&self) -> bool {
        self.globs.len() == 0
    }

    /// The first glob that matches `name`.
    fn find(&self, name: &str) -> Option<&str> {
        self.stars.iter().enumerate().find_map(|(i, &(first, last))| {
            let (glob, first, last) = (self.globs.get(i), first as usize, last as usize);
            let (prefix, suffix) = (&glob[..first], &glob[last + 1..]);
            if name.len() < prefix.len() + suffix.len() || !name.starts_with(prefix) || !name.ends_with(suffix) {
                return None;
            }
            let mut hay = &name[prefix.len()..name.len() - suffix.len()];
            if first < last {
                for part in glob[first + 1..last].split('*').filter(|p| !p.is_empty()) {
                    let at = hay.find(part)?;
                    hay = &hay[at + part.len()..];
                }
            }
            Some(glob)
        })
    }
}

/// Limits one compiled pattern so a hostile policy cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Lazy-DFA cache per regex set (fallback engine only).
const REGEX_DFA_LIMIT: usize = 1 << 16;

impl Regexes {
    /// Compiles `sources` into a DFA when it can, else into a `RegexSet` (which also names
    /// the entry at fault when one is invalid).
    fn compile(sources: Strs) -> Result<Self, PatternError> {
        let list: Vec<&str> = sources.iter().collect();
        let nfa = thompson::Compiler::new()
            .syntax(syntax::Config::new())
            .configure(
                thompson::Config::new().which_captures(WhichCaptures::None).nfa_size_limit(Some(REGEX_SIZE_LIMIT)),
            )
            .build_many(&list);
        if let Some(dfa) = nfa.ok().and_then(|nfa| Dfa::build(&nfa)) {
            drop(list);
            return Ok(Regexes { sources, engine: Engine::Dfa(dfa) });
        }
        let build = |sources: &[&str]| {
            regex::RegexSetBuilder::new(sources).size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_DFA_LIMIT).build()
        };
        let set = build(&list).map_err(|e| {
            // Name the entry at fault: the first that fails alone.
            let bad = list.iter().find(|s| build(std::slice::from_ref(*s)).is_err());
            PatternError { entry: bad.map_or_else(|| list.join(", "), |b| (*b).to_owned()), reason: e.to_string() }
        })?;
        drop(list);
        Ok(Regexes { sources, engine: Engine::Set(set) })
    }

    fn is_match(&self, name: &str) -> bool {
        match &self.engine {
            Engine::Dfa(dfa) => dfa.is_match(name.as_bytes()),
            // Not `RegexSet::is_match`: in regex 1.13 / regex-automata 0.4.19 it panics on some
            // sets of several `^` patterns and a non-ASCII name (tests/fuzz_patterns.rs found
            // it: `["^a\\b", "^"]` on "é"). `matches` takes another path.
            Engine::Set(set) => set.matches(name).matched_any(),
        }
    }

    /// The first entry (in list order) that matches `name`.
    fn find(&self, name: &str) -> Option<&str> {
        let first = match &self.engine {
            Engine::Dfa(dfa) => dfa.first_match(name.as_bytes())?,
            Engine::Set(set) => set.matches(name).into_iter().next()?,
        };
        (first < self.sources.len()).then(|| self.sources.get(first))
    }
}

/// A list's entries sorted by kind, before its regexes are compiled.
struct Parts {
    any: bool,
    literals: Strs,
    globs: Globs,
    regexes: Strs,
}

impl Parts {
    fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, PatternError> {
        let (mut any, mut literals, mut globs, mut regexes) = (false, Vec::new(), Vec::new(), Vec::new());
        for entry in entries {
            let entry = entry.as_ref();
            match classify(entry) {
                Kind::Any => any = true,
                Kind::Literal => literals.push(entry),
                Kind::Glob => globs.push(entry),
                Kind::Regex => regexes.push(entry),
            }
        }
        literals.sort_unstable_by(|a, b| by_length(a, b));
        literals.dedup();
        let globs = Globs::new(Strs::new(globs)?);
        Ok(Parts { any, literals: Strs::new(literals)?, globs, regexes: Strs::new(regexes)? })
    }

    fn same_as(&self, set: &NameSet) -> bool {
        self.any == set.any
            && self.literals == set.literals
            && self.globs == set.globs
            && match &set.regexes {
                Some(r) => r.sources == self.regexes,
                None => self.regexes.len() == 0,
            }
    }

    fn key(&self) -> u64 {
        let mut h = DefaultHasher::new();
        (self.any, &self.literals, &self.globs, &self.regexes).hash(&mut h);
        h.finish()
    }

    fn compile(
        self,
        regexes: impl FnOnce(Strs) -> Result<Arc<Regexes>, PatternError>,
    ) -> Result<NameSet, PatternError> {
        let regexes = if self.regexes.len() == 0 { None } else { Some(regexes(self.regexes)?) };
        Ok(NameSet { any: self.any, literals: self.literals, globs: self.globs, regexes })
    }
}

/// Compiled lists shared within one policy load: identical entry lists (up to the order of
/// their literals) compile once, and so do identical lists of `^regex$` entries.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    sets: HashMap<u64, Vec<Arc<NameSet>>>,
    regexes: HashMap<u64, Vec<Arc<Regexes>>>,
}

impl Interner {
    /// Compiles `entries`, or returns the set compiled earlier for the same entries.
    pub(crate) fn compile<S: AsRef<str>>(&mut self, entries: &[S]) -> Result<Arc<NameSet>, PatternError> {
        let parts = Parts::new(entries)?;
        let key = parts.key();
        if let Some(found) = self.sets.get(&key).and_then(|v| v.iter().find(|s| parts.same_as(s))) {
            return Ok(found.clone());
        }
        let regexes = &mut self.regexes;
        let set = Arc::new(parts.compile(|sources| {
            let mut h = DefaultHasher::new();
            sources.hash(&mut h);
            let bucket = regexes.entry(h.finish()).or_default();
            if let Some(found) = bucket.iter().find(|r| r.sources == sources) {
                return Ok(found.clone());
            }
            let compiled = Arc::new(Regexes::compile(sources)?);
            bucket.push(compiled.clone());
            Ok(compiled)
        })?);
        self.sets.entry(key).or_default().push(set.clone());
        Ok(set)
    }
}

impl NameSet {
    /// Compiles `entries`; the first bad entry is an error.
    pub fn compile<S: AsRef<str>>(entries: &[S]) -> Result<Self, PatternError> {
        Parts::new(entries)?.compile(|sources| Regexes::compile(sources).map(Arc::new))
    }

    /// True when no entry was given: such a list matches nothing.
    pub fn is_empty(&self) -> bool {
        !self.any && self.literals.len() == 0 && self.globs.is_empty() && self.regexes.is_none()
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.any
            || self.literals.find_sorted(name).is_some()
            || self.globs.find(name).is_some()
            || self.regexes.as_ref().is_some_and(|r| r.is_match(name))
    }

    /// The entry that matches `name`, for explanations and audit.
    pub fn find(&self, name: &str) -> Option<&str> {
        if self.any {
            return Some("*");
        }
        if let Some(lit) = self.literals.find_sorted(name) {
            return Some(lit);
        }
        if let Some(g) = self.globs.find(name) {
            return Some(g);
        }
        self.regexes.as_ref()?.find(name)
    }

    /// Which engine runs the regexes, if any: `Some(true)` for the DFA.
    #[cfg(test)]
    fn regex_engine_is_dfa(&self) -> Option<bool> {
        self.regexes.as_ref().map(|r| matches!(r.engine, Engine::Dfa(_)))
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

/// How a trait's values enter a templated entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraitValues {
    /// As written: a value may be a glob or a `^regex$`, as Teleport expands traits.
    Patterns,
    /// As text only: in a `^…$` entry the value is regex-escaped; elsewhere a value that
    /// would read as a pattern (holding `*`, or making the entry `^…$`) expands to nothing.
    Literals,
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

    /// Expands into `out`: a plain entry once, a trait entry once per trait value (a missing
    /// trait expands to nothing), each value read as `values` says.
    pub fn expand<'a>(
        &self,
        lookup: impl Fn(TraitNamespace, &str) -> Option<&'a [String]>,
        values: TraitValues,
        out: &mut Vec<String>,
    ) {
        match self {
            Template::Plain(s) => out.push(s.clone()),
            Template::Trait { prefix, namespace, name, suffix } => {
                let regex = prefix.starts_with('^') && suffix.ends_with('$');
                for value in lookup(*namespace, name).unwrap_or_default() {
                    match values {
                        TraitValues::Patterns => out.push(format!("{prefix}{value}{suffix}")),
                        TraitValues::Literals if regex => {
                            out.push(format!("{prefix}{}{suffix}", regex::escape(value)));
                        }
                        TraitValues::Literals => {
                            let entry = format!("{prefix}{value}{suffix}");
                            if !value.contains('*') && !matches!(classify(&entry), Kind::Regex) {
                                out.push(entry);
                            }
                        }
                    }
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
    fn regex_entries_search_unanchored_like_go_match_string() {
        // `^a|b$` is `(^a)|(b$)`: Teleport (Go's regexp.MatchString) and RegexSet agree.
        let s = set(&["^a|b$"]);
        assert_eq!(s.regex_engine_is_dfa(), Some(true));
        assert!(s.is_match("xxb") && s.is_match("abc") && s.is_match("a") && s.is_match("b"));
        assert!(!s.is_match("xbx") && !s.is_match("ba_") && !s.is_match(""));
        assert_eq!(s.find("xxb"), Some("^a|b$"));
    }

    #[test]
    fn find_names_the_first_matching_entry_of_each_kind_in_list_order() {
        let s = set(&["^.*_x$", "^get_.*$", "get_*", "get_x"]);
        assert_eq!(s.find("get_x"), Some("get_x"), "a literal first");
        assert_eq!(s.find("get_y"), Some("get_*"), "then a glob");
        assert_eq!(s.find("list_x"), Some("^.*_x$"));
        let s = set(&["^get_.*$", "^.*_x$"]);
        assert_eq!(s.find("get_x"), Some("^get_.*$"), "the first regex in list order");
        let s = set(&["^.*_x$", "^get_.*$"]);
        assert_eq!(s.find("get_x"), Some("^.*_x$"));
        assert_eq!(s.find("get_y"), Some("^get_.*$"));
        assert_eq!(s.find("put_y"), None);
    }

    #[test]
    fn regex_entries_keep_unicode_semantics() {
        let s = set(&["^.$", "^caf\\w$", "^[a-z]+$"]);
        assert_eq!(s.regex_engine_is_dfa(), Some(true));
        assert!(s.is_match("ü"), "`.` is one character, not one byte");
        assert!(!s.is_match("üü"));
        assert!(s.is_match("café"), "`\\w` is Unicode");
        assert!(!s.is_match("Abc") && s.is_match("abc"));
    }

    #[test]
    fn regex_that_would_make_a_huge_dfa_falls_back_to_a_regex_set() {
        // The 15th character from the end is `a`: a DFA needs 2^15 states.
        let s = set(&["^(a|b)*a(a|b){14}$", "^z$"]);
        assert_eq!(s.regex_engine_is_dfa(), Some(false));
        assert!(s.is_match(&format!("a{}", "b".repeat(14))));
        assert!(!s.is_match(&format!("b{}", "b".repeat(14))));
        assert_eq!(s.find("z"), Some("^z$"));
        assert_eq!(s.find(&format!("ba{}", "a".repeat(14))), Some("^(a|b)*a(a|b){14}$"));
    }

    #[test]
    fn regex_with_other_assertions_falls_back_to_a_regex_set() {
        let s = set(&["^\\bget\\b.*$"]);
        assert_eq!(s.regex_engine_is_dfa(), Some(false));
        assert!(s.is_match("get x") && !s.is_match("getx"));
        let s = set(&["^(?m)^get$"]);
        assert_eq!(s.regex_engine_is_dfa(), Some(false));
        assert!(s.is_match("get"));
    }

    #[test]
    fn dfa_agrees_with_regex_set_on_every_pattern_and_name() {
        let patterns = [
            "^a|b$",
            "^(get|list|search)_[a-z_]+$",
            "^metrics_r1_[a-z0-9_]{1,32}$",
            "^$",
            "^a*$",
            "^x$|^$",
            "^\\d{2,3}$",
            "^[^a]+$",
            "^.+é$",
            "^(?i)get$",
            "^a$$",
            "^\\Aa\\z$",
            "^(a|^b)c$",
            "^$^$",
            "^(?:$|a)b?$",
            "^.*$",
            "^(?s).$",
            "^x*|y$",
            "^[\\p{Greek}]+$",
            "^ab|cd|ef$",
        ];
        let names = [
            "",
            "a",
            "b",
            "xxb",
            "ab",
            "get_x",
            "GET",
            "gEt",
            "12",
            "1234",
            "é",
            "aé",
            "bc",
            "c",
            "\n",
            "a\n",
            "ab\n",
            "metrics_r1_",
            "metrics_r1_abc",
            "αβγ",
            "xcd",
            "cde",
            "xy",
            "yx",
            "search_docs",
        ];
        for n in 1..=3 {
            for list in patterns.windows(n) {
                let regexes = Regexes::compile(Strs::new(list.iter().copied()).expect("strs")).expect("valid");
                assert!(matches!(regexes.engine, Engine::Dfa(_)), "{list:?} compiles to a DFA");
                let reference = RegexSet::new(list).expect("valid");
                for name in names {
                    let want = reference.matches(name).into_iter().next().map(|i| list[i]);
                    assert_eq!(regexes.is_match(name), want.is_some(), "{list:?} on {name:?}");
                    assert_eq!(regexes.find(name), want, "{list:?} on {name:?}");
                }
            }
        }
    }

    #[test]
    fn a_typical_rule_of_four_regexes_compiles_to_a_small_dfa() {
        let sources = [
            "^(get|list|search)_[a-z_]+$",
            "^db_r123_(select|explain)_[a-z]+$",
            "^(create|update)_ticket_r123$",
            "^metrics_r123_[a-z0-9_]{1,32}$",
        ];
        let regexes = Regexes::compile(Strs::new(sources).expect("strs")).expect("valid");
        let Engine::Dfa(dfa) = &regexes.engine else { panic!("a DFA") };
        // RegexSet held ~55 KB of one-pass DFA for these (measured with massif).
        assert!(dfa.memory() < 1536, "{dfa:?}");
    }

    #[test]
    fn interner_shares_identical_lists_and_identical_regexes() {
        let mut interner = Interner::default();
        let a = interner.compile(&["b", "a", "^x.*$"]).expect("valid");
        let b = interner.compile(&["a", "b", "^x.*$"]).expect("valid");
        assert!(Arc::ptr_eq(&a, &b), "the same entries up to literal order");
        let c = interner.compile(&["c", "^x.*$"]).expect("valid");
        assert!(!Arc::ptr_eq(&a, &c));
        let (ra, rc) = (a.regexes.as_ref().expect("regex"), c.regexes.as_ref().expect("regex"));
        assert!(Arc::ptr_eq(ra, rc), "one compiled regex list");
        assert_eq!(c.find("xyz"), Some("^x.*$"));
        assert!(!c.is_match("a") && a.is_match("a"));
    }

    #[test]
    fn templates_expand_per_trait_value_with_prefix_and_suffix() {
        let t = Template::parse("pre_{{internal.mcp_tools}}_x").expect("valid");
        let values = vec!["a".to_owned(), "b".to_owned()];
        let mut out = Vec::new();
        t.expand(|_, n| (n == "mcp_tools").then_some(values.as_slice()), TraitValues::Patterns, &mut out);
        assert_eq!(out, ["pre_a_x", "pre_b_x"]);
        let mut none = Vec::new();
        t.expand(|_, _| None, TraitValues::Patterns, &mut none);
        assert!(none.is_empty(), "a missing trait expands to nothing");
    }

    #[test]
    fn trait_values_read_as_literals_never_become_patterns() {
        // Issue 26.7: whoever controls the claim must not choose the tool list.
        let values: Vec<String> =
            ["get_weather", "*", "^.*$", "delete_*", "a.b", "x$", "^y"].iter().map(|v| (*v).to_owned()).collect();
        let expand = |template: &str, mode: TraitValues| {
            let mut out = Vec::new();
            Template::parse(template).expect("valid").expand(|_, _| Some(values.as_slice()), mode, &mut out);
            out
        };
        assert_eq!(expand("{{external.t}}", TraitValues::Patterns), values, "Teleport's expansion");
        assert_eq!(expand("{{external.t}}", TraitValues::Literals), ["get_weather", "a.b", "x$", "^y"]);
        assert_eq!(expand("^{{external.t}}", TraitValues::Literals), ["^get_weather", "^a.b", "^^y"]);
        assert_eq!(
            expand("mcp_*_{{external.t}}", TraitValues::Literals),
            ["mcp_*_get_weather", "mcp_*_a.b", "mcp_*_x$", "mcp_*_^y"]
        );
        assert_eq!(
            expand("^(get|list)_{{internal.t}}$", TraitValues::Literals),
            [
                "^(get|list)_get_weather$",
                r"^(get|list)_\*$",
                r"^(get|list)_\^\.\*\$$",
                r"^(get|list)_delete_\*$",
                r"^(get|list)_a\.b$",
                r"^(get|list)_x\$$",
                r"^(get|list)_\^y$",
            ]
        );
        let set = NameSet::compile(&expand("{{external.t}}", TraitValues::Literals)).expect("compiles");
        for tool in ["delete_everything", "get_time", "anything"] {
            assert!(!set.is_match(tool), "{tool}");
        }
        assert!(set.is_match("get_weather") && set.is_match("a.b"));
        assert!(!set.is_match("axb"), "a literal '.' is no wildcard");
    }

    #[test]
    fn unsupported_templates_are_errors() {
        assert!(Template::parse("{{email.local(external.email)}}").is_err());
        assert!(Template::parse("{{internal.x").is_err());
        assert!(Template::parse("{{internal.a}}{{internal.b}}").is_err());
    }
}
