//! The contributor docs name real files: every repository path written in backticks in
//! CONTRIBUTING.md and docs/architecture.md (`src/a.rs`, `crates/core/src/{x,y}.rs`,
//! `tests/e2e/test_x.py`, `deploy/`) exists, so a moved or deleted file cannot leave the
//! docs pointing nowhere.

use std::path::Path;

/// The paths a backticked span names, braces expanded (`a/{b,c}.rs` is `a/b.rs`, `a/c.rs`);
/// none unless it starts with a top-level directory of the repository.
fn paths(span: &str) -> Vec<String> {
    const ROOTS: &[&str] =
        &["src/", "crates/", "tests/", "docs/", "deploy/", "envoy/", "scripts/", "benches/", "proto/"];
    let first = span.split_whitespace().next().unwrap_or("");
    if !ROOTS.iter().any(|r| first.starts_with(r)) || first.contains('*') || first.contains('<') {
        return Vec::new();
    }
    let first = first.trim_end_matches([',', '.', ')', ':', '\'']);
    match (first.find('{'), first.find('}')) {
        (Some(open), Some(close)) if open < close => first[open + 1..close]
            .split(',')
            .map(|alt| format!("{}{}{}", &first[..open], alt.trim(), &first[close + 1..]))
            .collect(),
        _ => vec![first.to_owned()],
    }
}

#[test]
fn every_path_the_contributor_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut missing = Vec::new();
    for doc in ["CONTRIBUTING.md", "docs/architecture.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"));
        for span in text.split('`').skip(1).step_by(2) {
            for p in paths(span) {
                checked += 1;
                if !root.join(&p).exists() {
                    missing.push(format!("{doc}: {p}"));
                }
            }
        }
    }
    assert!(checked > 30, "the docs' paths were read: {checked}");
    assert!(missing.is_empty(), "paths named in the docs that do not exist: {missing:#?}");
}

#[test]
fn braces_expand_and_prose_is_not_a_path() {
    assert_eq!(paths("crates/core/src/{a,b}.rs"), ["crates/core/src/a.rs", "crates/core/src/b.rs"]);
    assert_eq!(paths("tests/e2e/test_x.py -q"), ["tests/e2e/test_x.py"]);
    assert!(paths("Warden::check").is_empty());
    assert!(paths("src/*.rs").is_empty());
}
