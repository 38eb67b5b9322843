//! The service crate's modules depend on each other in one direction only (docs/architecture.md
//! draws the graph). A module is a top-level file or directory of `src/`; it depends on every
//! module its code names through a `crate::` or `super::` path. Test code is left out: a
//! unit test may build the whole service (`#[cfg(test)]` items and the files of
//! `#[cfg(test)] mod x;`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_service_crate_has_no_import_cycle() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10 && graph["authz"].contains("state"), "the graph was read: {graph:#?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between modules of src/: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_shared_state_depends_on_no_face() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for face in ["authz", "grpc", "extproc", "http", "reload", "server", "tools", "cli"] {
        assert!(!reaches(&graph, "state", face), "state reaches {face}");
    }
    assert!(graph.contains_key("identity"), "the identity module was read: {graph:#?}");
    for face in ["authz", "grpc", "extproc", "http", "reload", "server", "tools", "cli", "config"] {
        assert!(!reaches(&graph, "identity", face), "identity reaches {face}");
    }
}

#[test]
fn the_cycle_finder_names_a_cycle_and_passes_a_layered_graph() {
    let g = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry((*a).to_owned()).or_default().insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    };
    let layered = g(&[("grpc", "authz"), ("authz", "state"), ("grpc", "state"), ("state", "authn")]);
    assert_eq!(find_cycle(&layered), None);
    let cycle = g(&[("grpc", "authz"), ("authz", "state"), ("state", "authn"), ("authn", "authz")]);
    assert_eq!(find_cycle(&cycle).expect("a cycle"), ["authn", "authz", "state", "authn"]);
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "a")])).expect("a cycle"), ["a", "b", "a"]);
}

#[test]
fn references_are_read_from_code_only() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d", "e", "f", "t"].map(str::to_owned).into();
    let code = r##"
        //! Docs name [`crate::c`], so does a /* crate::c */ comment.
        use crate::{a, b::{X, Y}};
        const S: &str = "crate::c";
        const R: &str = r#"crate::c "quoted""#;
        const Q: char = '"';
        fn f<'a>(x: &'a str) -> &'a str { super::super::d::g(x); crate :: e::h(); x }
        macro_rules! m { () => { $crate::c::x() } }
        #[cfg(test)]
        mod tests { use crate::t; fn brace() -> char { '}' } }
        #[cfg(test)]
        mod more;
        fn after() { crate::f::g() }
    "##;
    let path = ["a".to_owned(), "x".to_owned()];
    let (refs, test_only) = references(&strip(code), &path, &modules);
    assert_eq!(refs, ["a", "b", "d", "e", "f"].map(str::to_owned).into());
    assert_eq!(test_only, ["more"]);
}

/// The module graph of the crate whose sources are under `src`.
fn graph(src: &Path) -> Graph {
    let files = rust_files(src);
    let modules: BTreeSet<String> = files.iter().map(|f| module_path(src, f)[0].clone()).collect();
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    let mut read = Vec::new();
    for file in &files {
        let path = module_path(src, file);
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (refs, tests) = references(&strip(&text), &path, &modules);
        let dir = src.join(path.join("/"));
        test_only.extend(tests.iter().flat_map(|t| [dir.join(format!("{t}.rs")), dir.join(t).join("mod.rs")]));
        read.push((file, path, refs));
    }
    let mut graph = Graph::new();
    for (file, path, refs) in read {
        if test_only.iter().any(|t| file.starts_with(t.with_extension("")) || file == t) {
            continue;
        }
        let deps = graph.entry(path[0].clone()).or_default();
        deps.extend(refs.into_iter().filter(|m| *m != path[0]));
    }
    graph
}

/// Every `.rs` file under `src` but the crate roots.
fn rust_files(src: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = entry.expect("a directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs")
                && !["lib.rs", "main.rs"].map(|r| src.join(r)).contains(&p)
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module a file is: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut path: Vec<String> = rel.with_extension("").iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if path.len() > 1 && path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// `src` with comments, string literals and character literals blanked out.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |i: usize| i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if let Some(hashes) = raw_string_start(rest).filter(|_| !ident(i)) {
            let open = rest.find('"').expect("a raw string's quote") + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            i += open + rest[open..].find(&close).map_or(rest.len() - open, |e| e + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && (rest[1..].starts_with('\\') || rest[1..].chars().nth(1) == Some('\'')) {
            // A character literal (a lifetime has no closing quote right after one char).
            let len = rest[1..].find('\'').map_or(1, |e| if rest[1..].starts_with("\\'") { 4 } else { e + 2 });
            i += len;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().expect("a char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The number of `#`s of a raw string literal starting `s` (`r"`, `r#"`, `br"`…).
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s).strip_prefix('r')?;
    let hashes = s.len() - s.trim_start_matches('#').len();
    s[hashes..].starts_with('"').then_some(hashes)
}

/// The top-level modules (of `modules`) that stripped `code` of the module at `path` names,
/// outside test items, and the names of its test-only file modules (`#[cfg(test)] mod x;`).
fn references(code: &str, path: &[String], modules: &BTreeSet<String>) -> (BTreeSet<String>, Vec<String>) {
    let tokens = tokens(code);
    let (mut refs, mut test_only) = (BTreeSet::new(), Vec::new());
    // Inline modules open around the current token: (name, brace depth inside it).
    let (mut inline, mut depth): (Vec<(String, usize)>, usize) = (Vec::new(), 0);
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        match t {
            "#" if tokens[i..].starts_with(&["#", "[", "cfg", "(", "test", ")", "]"].map(str::to_owned)) => {
                i += 7;
                if let Some(name) = file_module(&tokens[i..]) {
                    test_only.push(name);
                }
                i = item_end(&tokens, i);
                continue;
            }
            "mod" if tokens.get(i + 2).is_some_and(|b| b == "{") => {
                inline.push((tokens[i + 1].clone(), depth + 1));
            }
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "crate" if i == 0 || tokens[i - 1] != "$" => refs.extend(named_after(&tokens, i + 1)),
            "super" if i == 0 || tokens[i - 1] != "::" => {
                let mut up = 0;
                while tokens.get(i + 2 * up) == Some(&"super".to_owned())
                    && tokens.get(i + 2 * up + 1).is_some_and(|c| c == "::")
                {
                    up += 1;
                }
                let here: Vec<&String> = path.iter().chain(inline.iter().map(|(n, _)| n)).collect();
                if up >= here.len() {
                    refs.extend(named_after(&tokens, i + 2 * up - 1));
                } else {
                    refs.insert(here[0].clone());
                }
            }
            _ => {}
        }
        i += 1;
    }
    refs.retain(|m| modules.contains(m));
    (refs, test_only)
}

/// Identifiers and single punctuation characters (`::` kept whole).
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some((j, d)) = chars.peek().copied().filter(|(_, d)| d.is_alphanumeric() || *d == '_') {
                end = j + d.len_utf8();
                chars.next();
            }
            out.push(code[start..end].to_owned());
        } else if c == ':' && chars.peek().is_some_and(|(_, d)| *d == ':') {
            chars.next();
            out.push("::".to_owned());
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out
}

/// The first segment of each path after `crate`/`super` at `tokens[at]` (which is `::`):
/// one for `crate::a::…`, each of a group's for `crate::{a, b::c}`.
fn named_after(tokens: &[String], at: usize) -> Vec<String> {
    if tokens.get(at).is_none_or(|t| t != "::") {
        return Vec::new();
    }
    match tokens.get(at + 1).map(String::as_str) {
        Some("{") => {
            let (mut out, mut depth, mut expect) = (Vec::new(), 0, true);
            for t in &tokens[at + 2..] {
                match t.as_str() {
                    "{" => depth += 1,
                    "}" if depth == 0 => break,
                    "}" => depth -= 1,
                    "," if depth == 0 => expect = true,
                    name if expect => {
                        out.push(name.to_owned());
                        expect = false;
                    }
                    _ => {}
                }
            }
            out
        }
        Some(name) => vec![name.to_owned()],
        None => Vec::new(),
    }
}

/// `x` when `tokens` start an item `mod x;` (after any further attributes).
fn file_module(tokens: &[String]) -> Option<String> {
    let at = tokens.iter().position(|t| t == "mod")?;
    let before = &tokens[..at];
    let only_attributes_and_visibility = before.iter().all(|t| t != ";" && t != "{" && t != "fn");
    (only_attributes_and_visibility && tokens.get(at + 2).is_some_and(|t| t == ";")).then(|| tokens[at + 1].clone())
}

/// The index after the item starting at `tokens[from]`: at its first `;` outside brackets,
/// or its closing brace.
fn item_end(tokens: &[String], from: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(from) {
        match t.as_str() {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => {
                depth = depth.saturating_sub(1);
                if depth == 0 && t == "}" {
                    return i + 1;
                }
            }
            ";" if depth == 0 => return i + 1,
            _ => {}
        }
    }
    tokens.len()
}

/// A cycle of `graph` as the modules along it (the first repeated at the end), if any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'g>(
        graph: &'g Graph,
        node: &'g str,
        marks: &mut BTreeMap<&'g str, Mark>,
        stack: &mut Vec<&'g str>,
    ) -> Option<Vec<String>> {
        marks.insert(node, Mark::Open);
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|n| n == next).expect("an open node is on the stack");
                    return Some(stack[start..].iter().chain([&next.as_str()]).map(|n| (*n).to_owned()).collect());
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(graph, next, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node.as_str())
            && let Some(cycle) = visit(graph, node, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

/// Whether `from` depends on `to`, directly or not.
fn reaches(graph: &Graph, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n) {
            todo.extend(graph.get(n).into_iter().flatten().map(String::as_str));
        }
    }
    false
}
