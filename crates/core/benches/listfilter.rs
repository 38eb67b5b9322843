//! The list filter on a `tools/list` answer (issue 25): 50 tools, each with a ~200-character
//! description and an input schema of three properties, for a user allowed every tool (so
//! nothing is removed and the answer passes unchanged, the common case).
//!
//! - `listfilter/tools_list/no_pins`: the app has no pin document (today's cost).
//! - `listfilter/tools_list/pins_hide`: every tool pinned and listed as pinned, as a server
//!   lists them again and again: each entry is found byte-equal to the text last found pinned.
//! - `listfilter/tools_list/pins_hide_first_sight`: the same answer against freshly loaded pins
//!   (the policy load itself not timed): each entry's pinned fields are canonicalised, hashed
//!   (SHA-256) and looked up — the cost after a reload, or for a server whose bytes vary.
//! - `listfilter/tools_list/pins_hide_after_reload`: the same answer against pins loaded again
//!   from the unchanged pin document, which took over the previous load's memo
//!   (`Policy::inherit_pins`, as a hot reload does; neither timed): the first listing after a
//!   reload.
//!
//! The cost per tool is the time over 50.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::value::RawValue;
use warden_core::decision::ListKind;
use warden_core::listfilter::{Filtered, View, filter_payload_pinned};
use warden_core::policy::pins::{PinKind, definition_of};
use warden_core::policy::{Policy, Source};

const TOOLS: usize = 50;

const BASE: &str = "kind: app\nversion: v3\nmetadata: {name: demo, labels: {service: demo}}\nspec: {uri: 'mcp+https://demo.example.com/mcp'}\n---\nkind: user\nmetadata: {name: alice}\nspec: {roles: [mcp-user]}\n";

fn tool(i: usize) -> String {
    format!(
        r#"{{"name":"tool_{i}","description":"Tool number {i}: looks things up in the catalogue and returns the matching records with their identifiers, owners and last update; read-only, safe to retry.","inputSchema":{{"type":"object","properties":{{"query":{{"type":"string","description":"what to look for"}},"limit":{{"type":"integer","minimum":1,"maximum":100}},"owner":{{"type":"string"}}}},"required":["query"]}},"annotations":{{"readOnlyHint":true}}}}"#
    )
}

fn answer() -> String {
    let tools: Vec<String> = (0..TOOLS).map(tool).collect();
    format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{}]}}}}"#, tools.join(","))
}

fn pinned_policy() -> String {
    let mut doc =
        format!("{BASE}---\nkind: pins\nversion: v1\nmetadata: {{name: demo}}\nspec:\n  action: hide\n  tools:\n");
    for i in 0..TOOLS {
        let d = definition_of(PinKind::Tool, &tool(i)).expect("definition");
        doc.push_str(&format!("    tool_{i}: {{digest: '{}'}}\n", d.digest));
    }
    doc
}

fn tools_list(c: &mut Criterion) {
    let body = answer();
    let id = RawValue::from_string("1".into()).expect("id");
    let mut group = c.benchmark_group("listfilter/tools_list");
    group.throughput(Throughput::Elements(TOOLS as u64));
    for (name, text) in [("no_pins", BASE.to_owned()), ("pins_hide", pinned_policy())] {
        let policy = Policy::load(&[Source::inline("bench.yaml", &text)]).expect("policy");
        let view = View { user: policy.user("alice").expect("user"), app: policy.app("demo").expect("app") };
        let (out, drifts) = filter_payload_pinned(ListKind::Tools, &view, Some(&id), &body);
        assert_eq!((out, drifts.len()), (Ok(Filtered::Unchanged), 0), "{name}: every tool passes");
        group.bench_function(name, |b| {
            b.iter(|| filter_payload_pinned(ListKind::Tools, black_box(&view), Some(&id), black_box(&body)))
        });
    }
    let text = pinned_policy();
    group.bench_function("pins_hide_first_sight", |b| {
        b.iter_batched(
            || Policy::load(&[Source::inline("bench.yaml", &text)]).expect("policy"),
            |policy| {
                let view = View { user: policy.user("alice").expect("user"), app: policy.app("demo").expect("app") };
                let drifts = filter_payload_pinned(ListKind::Tools, black_box(&view), Some(&id), black_box(&body)).1;
                // Dropped after the timing, not in it.
                (drifts, policy)
            },
            BatchSize::PerIteration,
        )
    });
    let warm = Policy::load(&[Source::inline("bench.yaml", &text)]).expect("policy");
    let view = View { user: warm.user("alice").expect("user"), app: warm.app("demo").expect("app") };
    assert!(filter_payload_pinned(ListKind::Tools, &view, Some(&id), &body).1.is_empty());
    group.bench_function("pins_hide_after_reload", |b| {
        b.iter_batched(
            || {
                let policy = Policy::load(&[Source::inline("bench.yaml", &text)]).expect("policy");
                policy.inherit_pins(&warm);
                policy
            },
            |policy| {
                let view = View { user: policy.user("alice").expect("user"), app: policy.app("demo").expect("app") };
                let drifts = filter_payload_pinned(ListKind::Tools, black_box(&view), Some(&id), black_box(&body)).1;
                (drifts, policy)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, tools_list);
criterion_main!(benches);
