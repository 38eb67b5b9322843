//! `mcp::inspect` — the fail-closed gate and strict JSON-RPC parse — on `tools/call` bodies
//! of 300 B, 4 KB and 64 KB with realistic arguments.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warden_core::headers::Headers;
use warden_core::mcp::{HttpRequest, Inspection, Limits, inspect};

fn inspect_tools_call(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("inspect/tools_call");
    for (label, len) in [("300B", 300), ("4KB", 4 << 10), ("64KB", 64 << 10)] {
        let body = common::tools_call_body(common::COMMON_TOOL, len);
        assert_eq!(body.len(), len, "body of the intended size");
        let headers = common::envoy_headers("k", len);
        let headers: Headers<'_> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let req = HttpRequest { method: "POST", headers: &headers, body: body.as_bytes() };
        assert!(matches!(inspect(&req, &limits), Ok(Inspection::Messages { .. })), "the body passes the gate");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &req, |b, req| {
            b.iter(|| inspect(black_box(req), &limits).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, inspect_tools_call);
criterion_main!(benches);
