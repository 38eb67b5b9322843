//! The policy decision (`check_app` + `check_name`).
//!
//! - `policy/decide`: a user holding all of 1, 100 or 1,000 roles (20 patterns each), the
//!   tool allowed only by the last one: every role's deny and allow lists are consulted.
//! - `policy/call_1KB` (issue 3): a 1 KB `tools/call` inspected and decided against a policy
//!   of 100 or 1,000 roles × 20 patterns (literals, globs, `^regex$`), for users holding 3,
//!   10 or 100 of them: the cost follows the roles a user has, not the policy size.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use warden_core::headers::Headers;
use warden_core::mcp::{self, Body, HttpRequest, Inspection, Limits};
use warden_core::policy::engine::{check_app, check_name};
use warden_core::policy::{App, Governed, Policy, User};

use common::UserSpec;

fn user(name: &str, roles: Vec<usize>) -> UserSpec {
    UserSpec { name: name.to_owned(), roles, key: format!("key-{name}") }
}

fn decide(user: &User, app: &App, tool: &str) -> bool {
    let d = check_app(user, app);
    d.allowed && check_name(user, app, Governed::Tool(tool)).allowed
}

fn decide_user_roles(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy/decide");
    for n in [1usize, 100, 1000] {
        let policy = common::load(&common::policy_yaml(common::UPSTREAM_URI, n, &[user("holder", (0..n).collect())]));
        let (u, app) = (policy.user("holder").expect("user"), policy.app(common::APP).expect("app"));
        let tool = common::tool_of_role(n - 1);
        assert!(decide(u, app, &tool), "the last role allows its tool");
        group.bench_with_input(BenchmarkId::new("user_holds_all_roles", n), &tool, |b, tool| {
            b.iter(|| decide(black_box(u), app, black_box(tool)))
        });
    }
    group.finish();
}

/// Inspects `req` and decides its `tools/call`: what a check does besides authentication
/// and the reply.
fn inspect_and_decide(policy: &Policy, user: &User, req: &HttpRequest<'_>, limits: &Limits) -> bool {
    let Ok(Inspection::Messages { body: Body::Single(msg), .. }) = mcp::inspect(req, limits) else {
        return false;
    };
    let Some(app) = policy.app(common::APP) else { return false };
    match mcp::governed(&msg) {
        Ok(Some(g)) => check_app(user, app).allowed && check_name(user, app, g).allowed,
        _ => false,
    }
}

fn call_1kb(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("policy/call_1KB");
    // (policy roles, roles the user holds); the user's last role is the one that allows.
    let cases: [(usize, usize); 4] = [(100, 3), (1000, 3), (1000, 10), (1000, 100)];
    for (roles, held) in cases {
        // Held roles spread over the policy, the allowing one last.
        let holds: Vec<usize> = (0..held).map(|k| (k * roles / held + 7) % roles).collect();
        let allowing = *holds.last().expect("at least one role");
        let policy = common::load(&common::policy_yaml(common::UPSTREAM_URI, roles, &[user("caller", holds)]));
        let u = policy.user("caller").expect("user");
        for (outcome, tool) in [("allowed", common::tool_of_role(allowing)), ("denied", "rename_all_files".to_owned())]
        {
            let body = common::tools_call_body(&tool, 1024);
            let headers = common::envoy_headers("k", body.len());
            let headers: Headers<'_> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let req = HttpRequest { method: "POST", headers: &headers, body: body.as_bytes() };
            assert_eq!(inspect_and_decide(&policy, u, &req, &limits), outcome == "allowed");
            let id = BenchmarkId::new(format!("{roles}_roles/{outcome}"), format!("user_holds_{held}"));
            group.bench_with_input(id, &req, |b, req| {
                b.iter(|| inspect_and_decide(&policy, black_box(u), black_box(req), &limits))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decide_user_roles, call_1kb);
criterion_main!(benches);
