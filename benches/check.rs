//! The whole ext_authz check handler, in process, as the gRPC service calls it: the encoded
//! `CheckRequest` in (`Warden::check_bytes`, which reads it), the encoded `CheckResponse` out
//! — no network, no gRPC framing. A cached-token `tools/call` (300 B body) that is allowed,
//! one that is denied, and a `tools/list`. Audit disabled, except in
//! `allowed_cached_300B_audit_file`, where the audit thread writes every event to a file, as
//! `serve` does. `tools_call_allowed_by_condition_300B`: the same call allowed by a rule
//! with a CEL argument condition (`args.limit < 500`) instead of a name pattern.

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use mcp_warden::audit::Audit;
use mcp_warden::config::AuditOutput;
use mcp_warden::state::Warden;
use prost::Message as _;

fn allowed(w: &Warden, req: &CheckRequest) -> bool {
    matches!(w.check(req).http_response, Some(HttpResponse::OkResponse(_)))
}

fn checks(c: &mut Criterion) {
    let users = common::spread_users(1, 1, 1);
    let yaml = common::policy_yaml(common::UPSTREAM_URI, 1, &users);
    let key = &users[0].key;
    let call = common::check_request(key, &common::tools_call_body(common::COMMON_TOOL, 300));
    let denied = common::check_request(key, &common::tools_call_body("delete_everything", 300));
    let list = common::check_request(key, common::TOOLS_LIST);

    let w = common::warden(common::load(&yaml), Audit::disabled());
    assert!(allowed(&w, &call) && allowed(&w, &call), "allowed, and the second check hits the token cache");
    assert!(w.metrics.render(0).contains("mcp_warden_token_cache_hits_total 1"), "token cached");
    assert!(!allowed(&w, &denied), "denied by policy");
    assert!(allowed(&w, &list), "tools/list allowed");

    let wire = |r: &CheckRequest| Bytes::from(r.encode_to_vec());
    let (call_b, denied_b, list_b) = (wire(&call), wire(&denied), wire(&list));
    let mut group = c.benchmark_group("check");
    group.bench_function("tools_call_allowed_cached_300B", |b| b.iter(|| w.check_bytes(black_box(&call_b))));
    group.bench_function("tools_call_denied_300B", |b| b.iter(|| w.check_bytes(black_box(&denied_b))));
    group.bench_function("tools_list", |b| b.iter(|| w.check_bytes(black_box(&list_b))));

    let dir = tempfile::tempdir().expect("temp dir");
    let audit = Audit::start(&AuditOutput::File(dir.path().join("audit.jsonl"))).expect("audit file");
    let audited = common::warden(common::load(&yaml), audit);
    assert!(allowed(&audited, &call));
    group.bench_function("tools_call_allowed_cached_300B_audit_file", |b| {
        b.iter(|| audited.check_bytes(black_box(&call_b)))
    });
    // The same call allowed only by a rule with a simple argument condition (`args.limit <
    // 500`): the cost of parsing the arguments and running the CEL program.
    let conditional = yaml.replace("      - '^(get|list|search)_[a-z_]+$'\n", "").replace(
        "    mcp:\n      tools:\n",
        "    mcp:\n      tool_rules:\n      - {tools: [search_docs], where: 'args.limit < 500'}\n      tools:\n",
    );
    let cw = common::warden(common::load(&conditional), Audit::disabled());
    assert!(allowed(&cw, &call) && allowed(&cw, &call), "allowed by the condition");
    assert!(cw.metrics.render(0).contains("reason=\"allowed_by_condition\""), "decided by the condition");
    group.bench_function("tools_call_allowed_by_condition_300B", |b| b.iter(|| cw.check_bytes(black_box(&call_b))));
    group.finish();
    let dropped = audited.audit_dropped();
    if dropped > 0 {
        eprintln!("note: the audit writer dropped {dropped} events (queue full) during the bench");
    }
}

criterion_group!(benches, checks);
criterion_main!(benches);
