//! The Envoy side of the decision contract: every place a shipped Envoy config reads
//! mcp-warden's decision metadata (`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:KEY)%` in
//! access logs and local replies, `path: [{key: KEY}]` in matchers, metadata filters and rate
//! limit descriptors) names a key `DecisionMetadata` writes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;
use warden_core::decision::DecisionMetadata;
use yaml_serde::Value;

const NAMESPACE: &str = "envoy.filters.http.ext_authz";

/// Every `*.yaml` under `dir`, recursively.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// The keys a YAML tree reads from the namespace by path: a mapping naming it as `filter`
/// (matchers, metadata filters) or `key` (rate limit descriptors) with a `path`. Strings that
/// hold YAML themselves (a ConfigMap's embedded config) are read too.
fn path_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            let names_namespace =
                ["filter", "key"].iter().any(|k| m.get(*k).and_then(Value::as_str) == Some(NAMESPACE));
            if let (true, Some(path)) = (names_namespace, m.get("path").and_then(Value::as_sequence)) {
                let first = path.first().and_then(|p| p.get("key")).and_then(Value::as_str);
                out.push(first.unwrap_or("<no key>").to_owned());
            }
            m.values().for_each(|v| path_keys(v, out));
        }
        Value::Sequence(s) => s.iter().for_each(|v| path_keys(v, out)),
        Value::String(s) if s.contains(NAMESPACE) && s.contains('\n') => {
            if let Ok(inner) = yaml_serde::from_str::<Value>(s) {
                path_keys(&inner, out);
            }
        }
        Value::Tagged(t) => path_keys(&t.value, out),
        _ => {}
    }
}

#[test]
fn every_decision_key_a_shipped_envoy_config_reads_is_one_the_check_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&root.join("envoy"), &mut files);
    yaml_files(&root.join("deploy"), &mut files);
    let formatted = Regex::new(r"DYNAMIC_METADATA\(envoy\.filters\.http\.ext_authz:([^):]*)\)").expect("regex");
    // Test configs are templates: `${PORT}` placeholders are rendered as numbers.
    let placeholder = Regex::new(r"\$\{[A-Z0-9_]+\}").expect("regex");
    let mut read = BTreeSet::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("readable");
        let mut keys: Vec<String> = formatted.captures_iter(&text).map(|c| c[1].to_owned()).collect();
        for doc in yaml_serde::Deserializer::from_str(&placeholder.replace_all(&text, "0")) {
            let doc =
                <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            path_keys(&doc, &mut keys);
        }
        for key in keys {
            assert!(DecisionMetadata::KEYS.contains(&key.as_str()), "{} reads '{key}'", file.display());
            read.insert(key);
        }
    }
    // The configs read what the access log, the list filter's matcher and the rate limiter
    // need: a walk that found none of them would prove nothing.
    for key in ["decision", "reason", "user", "tool", "prompt", "resource", "mcp_method", "jsonrpc_id", "rl_tool_rate"]
    {
        assert!(read.contains(key), "no shipped config reads '{key}': {read:?}");
    }
}
