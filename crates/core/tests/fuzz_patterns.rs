//! Differential fuzz of `policy::pattern::NameSet`, the matcher of one rule's entries (a
//! role's allowed MCP tools, say), against a reference written here from Teleport's rules
//! alone: `*` matches everything; an entry of two or more characters that starts with `^` and
//! ends with `$` is a regex, searched as Go's `regexp.MatchString` searches (unanchored, so
//! `^a|b$` matches `xxb`); any other entry with a `*` is a glob anchored at both ends whose
//! every `*` spans any run of characters; the rest are literals, matched exactly.
//!
//! NameSet takes its own roads to those answers: a sorted list for the literals, a
//! hand-written glob matcher, and a hand-built DFA for the regexes, which falls back to
//! `RegexSet` for big ones and for assertions the DFA lacks. A wrong answer allows a tool the
//! rule does not allow, or denies one it does. So for generated lists and names, `is_match`
//! must equal the reference, `find` must name the entry pattern.rs's order gives (`*`, then a
//! literal, then the first glob, then the first regex, in list order), and a list with a regex
//! the regex crate refuses must be refused, naming that entry. Seeds are fixed: a failure
//! names its case, entries and name, and reproduces. Longer runs found one bug: `is_match`
//! panicking, in the regex crate, on some lists left to `RegexSet` (the test at the end).

use std::panic::{AssertUnwindSafe, catch_unwind};

use regex::Regex;
use warden_core::policy::pattern::NameSet;

#[path = "fuzz/rng.rs"]
mod rng;
use rng::Rng;

/// One entry as the reference reads it.
enum Entry {
    Any,
    Literal(String),
    Glob(regex::bytes::Regex),
    Regex(Regex),
}

impl Entry {
    /// `Err` when the regex crate refuses a `^…$` entry.
    fn new(entry: &str) -> Result<Entry, regex::Error> {
        if entry == "*" {
            Ok(Entry::Any)
        } else if entry.len() >= 2 && entry.starts_with('^') && entry.ends_with('$') {
            Regex::new(entry).map(Entry::Regex)
        } else if entry.contains('*') {
            // Over bytes, where `(?s-u:.*)` is cheaper to compile than `(?s:.*)`: the pieces are
            // whole UTF-8, so they can only meet a name at its character boundaries.
            let pieces: Vec<String> = entry.split('*').map(regex::escape).collect();
            let glob = format!("^{}$", pieces.join("(?s-u:.*)"));
            Ok(Entry::Glob(regex::bytes::Regex::new(&glob).expect("an escaped glob compiles")))
        } else {
            Ok(Entry::Literal(entry.to_owned()))
        }
    }

    fn is_match(&self, name: &str) -> bool {
        match self {
            Entry::Any => true,
            Entry::Literal(literal) => literal == name,
            Entry::Glob(re) => re.is_match(name.as_bytes()),
            Entry::Regex(re) => re.is_match(name),
        }
    }

    /// Where the entry's kind comes in `find`'s order.
    fn rank(&self) -> usize {
        match self {
            Entry::Any => 0,
            Entry::Literal(_) => 1,
            Entry::Glob(_) => 2,
            Entry::Regex(_) => 3,
        }
    }
}

/// The entry `find` must name: the first matching one of the first kind that matches.
fn expected<'a>(entries: &[&'a str], refs: &[Entry], name: &str) -> Option<(&'a str, usize)> {
    let matching = entries.iter().zip(refs).filter(|(_, r)| r.is_match(name));
    matching.min_by_key(|(_, r)| r.rank()).map(|(e, r)| (*e, r.rank()))
}

const NAME_CHARS: [&str; 27] = [
    "a", "b", "e", "g", "t", "x", "_", "0", "7", ".", "é", "α", "Ω", "😀", "\n", " ", "A", "G", "T",
    "\u{212A}", // KELVIN SIGN: `(?i)k` matches it
    "ſ",        // LATIN SMALL LETTER LONG S: `(?i)s` matches it
    "*", "^", "$", "?", "(", "\\",
];
const GLOB_CHARS: [&str; 19] =
    ["a", "b", "e", "g", "t", "x", "_", ".", "?", "+", "(", ")", "[", "{", "\\", "^", "$", "é", "😀"];
const LITERAL_CHARS: [&str; 16] = ["a", "e", "g", "t", "_", "7", ".", "^", "$", "?", "(", "\\", "é", "α", "😀", "A"];

fn text(rng: &mut Rng, chars: &[&str], max: usize) -> String {
    (0..rng.below(max + 1)).map(|_| rng.pick(chars)).collect()
}

fn flip_case(rng: &mut Rng, s: &str) -> String {
    let flip = |c: char| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
    s.chars().map(|c| if rng.chance(50) { flip(c) } else { c }).collect()
}

/// Pattern text and a name built to match it (where its anchors and flags allow).
type Built = (String, String);

fn regex_alternation(rng: &mut Rng, depth: usize) -> Built {
    let n = if depth < 2 && rng.chance(20) { 2 + rng.below(2) } else { 1 };
    let branches: Vec<Built> = (0..n).map(|_| regex_concatenation(rng, depth)).collect();
    let pattern = branches.iter().map(|b| b.0.as_str()).collect::<Vec<_>>().join("|");
    (pattern, branches[rng.below(n)].1.clone())
}

fn regex_concatenation(rng: &mut Rng, depth: usize) -> Built {
    let (mut pattern, mut sample) = (String::new(), String::new());
    for _ in 0..1 + rng.below(3) {
        let (p, s) = regex_repetition(rng, depth);
        pattern += &p;
        sample += &s;
    }
    (pattern, sample)
}

fn regex_repetition(rng: &mut Rng, depth: usize) -> Built {
    const OPS: [(&str, usize, usize); 7] =
        [("*", 0, 3), ("+", 1, 3), ("?", 0, 1), ("{2}", 2, 2), ("{1,3}", 1, 3), ("{0,2}", 0, 2), ("{2,}", 2, 4)];
    let (atom, sample, repeatable) = regex_atom(rng, depth);
    if !repeatable || !rng.chance(30) {
        return (atom, sample);
    }
    let (op, min, max) = rng.pick(&OPS);
    let lazy = if rng.chance(25) { "?" } else { "" };
    (format!("{atom}{op}{lazy}"), sample.repeat(min + rng.below(max - min + 1)))
}

/// An atom, a sample of it, and whether it may be repeated.
fn regex_atom(rng: &mut Rng, depth: usize) -> (String, String, bool) {
    const LITERALS: [(&str, &str); 16] = [
        ("a", "a"),
        ("g", "g"),
        ("e", "e"),
        ("t", "t"),
        ("_", "_"),
        ("7", "7"),
        ("é", "é"),
        ("α", "α"),
        ("😀", "😀"),
        ("\\.", "."),
        ("\\*", "*"),
        ("\\$", "$"),
        ("\\^", "^"),
        ("\\(", "("),
        ("\\\\", "\\"),
        ("\\n", "\n"),
    ];
    // Classes and characters to try: small ones (and one that matches nothing), and Unicode
    // ones, costlier to compile and so rarer.
    const SMALL: [(&str, &str); 5] =
        [("[a-z]", "agz"), ("[_0-9]", "_7"), ("[é-ü]", "éü"), ("[[:alpha:]]", "aG"), ("[^\\x00-\\x{10FFFF}]", "a")];
    const UNICODE: [(&str, &str); 7] = [
        (".", "aé😀._"),
        ("[^a]", "bé\n"),
        ("\\d", "07"),
        ("\\w", "aé_α"),
        ("\\s", " \n"),
        ("\\p{Greek}", "αΩ"),
        ("\\D", "a."),
    ];
    const GROUPS: [&str; 4] = ["(", "(?:", "(?i:", "(?s:"];
    match rng.below(20) {
        0..=7 => {
            let (atom, sample) = rng.pick(&LITERALS);
            (atom.to_owned(), sample.to_owned(), true)
        }
        8..=11 => {
            let (class, members) = if rng.chance(30) { rng.pick(&UNICODE) } else { rng.pick(&SMALL) };
            let members: Vec<char> = members.chars().collect();
            (class.to_owned(), rng.pick(&members).to_string(), true)
        }
        12 | 13 if depth < 2 => {
            let open = rng.pick(&GROUPS);
            let (inner, sample) = regex_alternation(rng, depth + 1);
            let sample = if open == "(?i:" { flip_case(rng, &sample) } else { sample };
            (format!("{open}{inner})"), sample, true)
        }
        14 | 15 => (rng.pick(&["^", "$", "\\A", "\\z"]).to_owned(), String::new(), false),
        // Assertions the DFA lacks: NameSet falls back to a `RegexSet`.
        17 if rng.chance(20) => (rng.pick(&["\\b", "\\B", "(?m:^)", "(?m:$)"]).to_owned(), String::new(), false),
        _ => ("_".to_owned(), "_".to_owned(), true),
    }
}

/// Assertions the DFA lacks, as the generator writes them.
const UNSUPPORTED: [&str; 3] = ["\\b", "\\B", "(?m"];

/// Regexes whose DFA would pass NameSet's limits: it falls back to a `RegexSet`.
const HUGE: [(&str, &str); 2] = [("^[a-z]{1,200}x[a-z]{1,200}$", "abxab"), ("^(a|b)*a(a|b){14}$", "aabbbbbbbbbbbbbb")];

/// Entries the regex crate refuses.
const BROKEN: [&str; 8] = ["^(a$", "^a)$", "^[z-a]$", "^a{3,1}$", "^\\p{Nope}$", "^(?<n$", "^\\xZZ$", "^*a$"];

/// Fixed entries where Teleport's reading is easy to get wrong.
const TRICKY: [(&str, &str); 10] = [
    ("^a|b$", "xxb"),
    ("^\\$", "$x"),
    ("^$", ""),
    ("^(a|^b)c$", "ac"),
    ("^x*|y$", "zz"),
    ("^$^$", ""),
    ("^a$$", "a"),
    ("^\\Aa\\z$", "a"),
    ("^(?:$|a)b?$", "ab"),
    ("^ab|cd|ef$", "_cd_"),
];

fn regex_entry(rng: &mut Rng) -> Built {
    match rng.below(200) {
        0..=3 => return (rng.pick(&BROKEN).to_owned(), String::new()),
        4 | 5 => return owned(rng.pick(&HUGE)),
        6..=15 => return owned(rng.pick(&TRICKY)),
        _ => {}
    }
    let flags = if rng.chance(10) { rng.pick(&["(?i)", "(?s)", "(?is)"]) } else { "" };
    let (body, sample) = regex_alternation(rng, 0);
    let sample = if flags.contains('i') { flip_case(rng, &sample) } else { sample };
    (format!("^{flags}{body}$"), sample)
}

fn owned((pattern, sample): (&str, &str)) -> Built {
    (pattern.to_owned(), sample.to_owned())
}

/// 1–4 stars among pieces that hold regex metacharacters; a sample fills each star.
fn glob_entry(rng: &mut Rng) -> Built {
    let pieces: Vec<String> = (0..2 + rng.below(4)).map(|_| text(rng, &GLOB_CHARS, 3)).collect();
    let fills: Vec<String> = (1..pieces.len()).map(|_| text(rng, &NAME_CHARS, 3)).collect();
    let mut sample = pieces[0].clone();
    for (fill, piece) in fills.iter().zip(&pieces[1..]) {
        sample += fill;
        sample += piece;
    }
    (pieces.join("*"), sample)
}

fn literal_entry(rng: &mut Rng) -> Built {
    const SPECIAL: [&str; 9] = ["", "^", "$", "^get", "get$", "$get^", "^a^", "get_weather", "*"];
    let literal = if rng.chance(20) { rng.pick(&SPECIAL).to_owned() } else { text(rng, &LITERAL_CHARS, 6) };
    (literal.clone(), literal)
}

/// 0–6 entries of every kind, each with a name built to match it.
fn list(rng: &mut Rng) -> Vec<Built> {
    (0..rng.below(7))
        .map(|_| match rng.below(10) {
            0..=3 => regex_entry(rng),
            4..=6 => glob_entry(rng),
            _ => literal_entry(rng),
        })
        .collect()
}

/// `name` cut, grown by a character, short of one, or with letters in the other case.
fn near_miss(rng: &mut Rng, name: &str) -> String {
    let cuts: Vec<usize> = (0..=name.len()).filter(|&i| name.is_char_boundary(i)).collect();
    let at = rng.pick(&cuts);
    let next = cuts.iter().copied().find(|&i| i > at).unwrap_or(at);
    match rng.below(5) {
        0 => name[..at].to_owned(),
        1 => name[at..].to_owned(),
        2 => format!("{}{}{}", &name[..at], rng.pick(&NAME_CHARS), &name[at..]),
        3 => format!("{}{}", &name[..at], &name[next..]),
        _ => flip_case(rng, name),
    }
}

/// Random names over an alphabet the entries share, and names built from the entries: their
/// samples, their own text, and near misses of both.
fn names(rng: &mut Rng, list: &[Built], n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            if list.is_empty() || rng.chance(30) {
                return text(rng, &NAME_CHARS, 8);
            }
            let (entry, sample) = &list[rng.below(list.len())];
            let base = if rng.chance(15) { entry } else { sample };
            if rng.chance(50) { base.clone() } else { near_miss(rng, base) }
        })
        .collect()
}

/// What the lists of one run exercised.
#[derive(Default)]
struct Counts {
    /// Lists refused for a regex the regex crate refuses.
    refused: usize,
    /// Lists with regexes only the DFA runs, with an assertion it lacks, or with a huge one.
    dfa: usize,
    unsupported: usize,
    huge: usize,
    /// Names matched, by the kind of the entry `find` names (as `Entry::rank`), and not.
    by_kind: [usize; 4],
    missed: usize,
}

impl Counts {
    fn add(mut self, other: Counts) -> Counts {
        self.refused += other.refused;
        self.dfa += other.dfa;
        self.unsupported += other.unsupported;
        self.huge += other.huge;
        (0..4).for_each(|k| self.by_kind[k] += other.by_kind[k]);
        self.missed += other.missed;
        self
    }
}

const LISTS: u64 = 1_500;
const NAMES: usize = 60;

/// Checks the lists of `cases`, each from its own seed.
fn check(cases: impl Iterator<Item = u64>) -> Counts {
    let mut c = Counts::default();
    for case in cases {
        let mut rng = Rng(0x9a77_e125 ^ case);
        let list = list(&mut rng);
        let entries: Vec<&str> = list.iter().map(|(e, _)| e.as_str()).collect();
        let at = format!("case {case}, entries {entries:?}");
        let refs: Vec<Result<Entry, regex::Error>> = entries.iter().map(|e| Entry::new(e)).collect();
        let compiled = NameSet::compile(&entries);
        if let Some(bad) = refs.iter().position(Result::is_err) {
            let e = compiled.expect_err(&format!("NameSet accepted a regex the regex crate refuses at {at}"));
            assert_eq!(e.entry, entries[bad], "the error names the first bad entry at {at}");
            c.refused += 1;
            continue;
        }
        let refs: Vec<Entry> = refs.into_iter().map(|r| r.expect("none refused")).collect();
        let set = compiled.unwrap_or_else(|e| panic!("NameSet refused ({e}) valid entries at {at}"));
        let regexes = entries.iter().zip(&refs).filter(|(_, r)| matches!(r, Entry::Regex(_)));
        let regexes: Vec<&str> = regexes.map(|(e, _)| *e).collect();
        let unsupported = regexes.iter().any(|e| UNSUPPORTED.iter().any(|u| e.contains(u)));
        let huge = regexes.iter().any(|e| HUGE.iter().any(|h| h.0 == *e));
        c.dfa += usize::from(!regexes.is_empty() && !unsupported && !huge);
        c.unsupported += usize::from(unsupported);
        c.huge += usize::from(huge);
        for name in names(&mut rng, &list, NAMES) {
            let want = expected(&entries, &refs, &name);
            let at = || format!("{at}, name {name:?}");
            let got = catch_unwind(AssertUnwindSafe(|| set.is_match(&name)))
                .unwrap_or_else(|_| panic!("is_match panicked at {}", at()));
            assert_eq!(got, want.is_some(), "is_match at {}: NameSet says {got}, the reference {want:?}", at());
            let found = catch_unwind(AssertUnwindSafe(|| set.find(&name)))
                .unwrap_or_else(|_| panic!("find panicked at {}", at()));
            assert_eq!(found, want.map(|w| w.0), "find at {}", at());
            match want {
                Some((_, kind)) => c.by_kind[kind] += 1,
                None => c.missed += 1,
            }
        }
    }
    c
}

#[test]
fn name_sets_match_as_teleport_rules_say_on_generated_lists_and_names() {
    // Compiling regexes takes most of the time: the lists are dealt out to a thread per core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let c = std::thread::scope(|s| {
        let runs: Vec<_> = (0..threads).map(|t| s.spawn(move || check((t as u64..LISTS).step_by(threads)))).collect();
        runs.into_iter().map(|r| r.join().expect("the failure is printed above")).fold(Counts::default(), Counts::add)
    });
    let pairs = (LISTS as usize - c.refused) * NAMES;
    let matched: usize = c.by_kind.iter().sum();
    let [any, literal, glob, regex] = c.by_kind;
    println!(
        "{LISTS} lists: {} refused for a bad regex; regexes on the DFA in {}, with an assertion it lacks \
         in {}, huge in {}. {pairs} names: {matched} matched ({any} by `*`, {literal} by a literal, \
         {glob} by a glob, {regex} by a regex), {} did not",
        c.refused, c.dfa, c.unsupported, c.huge, c.missed
    );
    assert!(matched * 10 > pairs && c.missed * 10 > pairs, "{matched} matched, {} missed: lopsided", c.missed);
    assert!(c.by_kind.iter().all(|&n| n * 50 > pairs), "a kind of entry rarely matched: {:?}", c.by_kind);
    assert!(c.dfa > 500 && c.unsupported > 25 && c.huge > 10 && c.refused > 20, "too few lists on some path");
}

/// Found by the fuzz above (regex 1.13.2, regex-automata 0.4.19): a list NameSet leaves to a
/// `RegexSet` (here for `\b`), whose entries all start with `^` and one of which can match the
/// empty name, panicked in `is_match` on a name it matches that holds a non-ASCII character.
/// `RegexSet::is_match` runs the set's one-pass DFA with no capture slots, which it then
/// indexes. `find` (`RegexSet::matches`) answers.
#[test]
fn a_regex_set_fallback_answers_a_non_ascii_name_without_panicking() {
    let set = NameSet::compile(&["^get\\b.*$", "^$", "^list_.*$"]).expect("valid");
    for (name, want) in [("list_é", Some("^list_.*$")), ("get é", Some("^get\\b.*$")), ("é", None)] {
        let got = catch_unwind(AssertUnwindSafe(|| set.is_match(name)));
        assert_eq!(got.ok(), Some(want.is_some()), "is_match on {name:?} (None: it panicked)");
        assert_eq!(set.find(name), want, "find on {name:?}");
    }
}
