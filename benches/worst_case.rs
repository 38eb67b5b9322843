//! Worst-case cost of one check (issue 19): adversarial requests at the size limits, each
//! through `Warden::check_bytes` as the gRPC service calls it, as CPU µs per KiB of the
//! encoded `CheckRequest` beside a plain `tools/call` of the same size, printed as the
//! Markdown table of BENCHMARKS.md ("Worst-case bodies"). Process CPU time, so the audit
//! writer's thread (events go to a file, as `serve` writes them) is counted too.
//!
//! `cargo bench --bench worst_case [-- --quick]` (`scripts/bench.sh` runs it and puts the
//! table into BENCHMARKS.md). Every case's outcome is asserted before it is measured.
//! `WORST_CASE=text cargo bench --bench worst_case -- --count N` measures nothing: it runs
//! the check of each case whose name holds `text` `N` times, for callgrind to count its
//! instructions (`--toggle-collect='*Warden::check_bytes*'`, as CONTRIBUTING.md says).

mod common;

use std::hint::black_box;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use mcp_warden::audit::Audit;
use mcp_warden::config::AuditOutput;
use mcp_warden::state::Warden;
use prost::Message as _;
use rustix::time::{ClockId, clock_gettime};

/// The body limit (`limits.max_body_bytes`, default 1 MiB): every body is just under it.
const LIMIT: usize = 1 << 20;

/// What a case's check must answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Allow,
    /// Denied with this HTTP status.
    Deny(u32),
    /// Denied, whatever the status (a policy denial, or a refusal of the name itself).
    Denied,
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    expect: Expect,
    /// The one this case is compared with (per byte).
    baseline: &'static str,
}

/// `{"jsonrpc":"2.0","id":1,"method":METHOD,"params":{"name":"search_docs","arguments":{ARGS}}}`
/// with ARGS made of `item(i)` joined by `,`, as many as fit under the limit.
fn filled(method: &str, item: impl Fn(usize) -> String) -> String {
    let head =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"search_docs","arguments":{{"#);
    let tail = "}}}";
    let mut body = head;
    let mut i = 0;
    loop {
        let next = item(i);
        if body.len() + next.len() + 1 + tail.len() > LIMIT {
            break;
        }
        if i > 0 {
            body.push(',');
        }
        body.push_str(&next);
        i += 1;
    }
    body.push_str(tail);
    body
}

/// A 2025-03-26 batch of `max_batch` (100) `tools/call`s whose arguments are distinct keys,
/// together just under the limit.
fn full_batch() -> String {
    let max = warden_core::mcp::Limits::default().max_batch;
    let per = LIMIT / max - 100;
    let element = |i: usize| {
        let mut args = String::new();
        let mut k = 0;
        while args.len() + 12 < per {
            args.push_str(&format!("\"{k:x}\":0,"));
            k += 1;
        }
        args.pop();
        format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"search_docs","arguments":{{{args}}}}}}}"#
        )
    };
    format!("[{}]", (0..max).map(element).collect::<Vec<_>>().join(","))
}

/// A 2025-03-26 batch of `element(i)`, as many as fit under the limit.
fn batch(element: impl Fn(usize) -> String) -> String {
    let mut body = String::from("[");
    let mut i = 0;
    loop {
        let next = element(i);
        if body.len() + next.len() + 2 > LIMIT {
            break;
        }
        if i > 0 {
            body.push(',');
        }
        body.push_str(&next);
        i += 1;
    }
    body.push(']');
    body
}

/// The check request for `body` by `key`, with `version` as `MCP-Protocol-Version` and
/// `extra` header lines added.
fn request(key: Option<&str>, body: &str, version: &str, extra: Vec<(String, String)>) -> Vec<u8> {
    let mut req: CheckRequest = common::check_request(key.unwrap_or("no-such-key"), body);
    let headers = &mut req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .and_then(|h| h.header_map.as_mut())
        .expect("a header map")
        .headers;
    if key.is_none() {
        headers.retain(|h| h.key != "authorization");
    }
    for h in headers.iter_mut().filter(|h| h.key == "mcp-protocol-version") {
        h.raw_value = version.as_bytes().to_vec();
    }
    headers.extend(extra.into_iter().map(|(key, v)| HeaderValue {
        key,
        raw_value: v.into_bytes(),
        ..Default::default()
    }));
    req.encode_to_vec()
}

/// The protocol version of every case but the batches.
const VERSION: &str = "2025-11-25";

fn case(name: &'static str, request: Vec<u8>, expect: Expect, baseline: &'static str) -> Case {
    Case { name, request, expect, baseline }
}

/// Every case, in the order of the table: the 1 MiB bodies, the headers, the unauthenticated.
fn cases(key: &str) -> Vec<Case> {
    let mut all = body_cases(key);
    all.extend(header_cases(key));
    all.extend(unauthenticated_cases());
    all
}

/// Bodies just under the limit, by `key`, each against the plain 1 MiB `tools/call`.
fn body_cases(key: &str) -> Vec<Case> {
    let mut all = object_cases(key);
    all.extend(batch_and_name_cases(key));
    all
}

/// Bodies of one message shaped to cost the reader: keys, objects, nesting, escapes.
fn object_cases(key: &str) -> Vec<Case> {
    let v = VERSION;
    let call = |body: &str| request(Some(key), body, v, Vec::new());
    let plain = common::tools_call_body(common::COMMON_TOOL, LIMIT - 64);
    // Nested objects down to the depth limit (32): message 1, params 2, arguments 3.
    let (open, close) = ("{\"a\":".repeat(28), "}".repeat(28));
    let escaped = r#"\ud83d\ude00\n\t\"\\\u00e9\/"#.repeat(16);
    vec![
        case("plain `tools/call`, 1 MiB", call(&plain), Expect::Allow, "plain `tools/call`, 1 MiB"),
        case(
            "distinct keys in one object (3-char)",
            call(&filled("tools/call", |i| format!("\"{i:x}\":0"))),
            Expect::Allow,
            "plain `tools/call`, 1 MiB",
        ),
        case(
            "65,536 distinct keys in one object (issue 19)",
            call(&keys(65_536)),
            Expect::Allow,
            "plain `tools/call`, 1 MiB",
        ),
        case(
            "distinct escaped keys in one object",
            call(&filled("tools/call", |i| format!("\"\\u0041{i:x}\":0"))),
            Expect::Allow,
            "plain `tools/call`, 1 MiB",
        ),
        case(
            "small objects (`{}`)",
            call(&filled("tools/call", |i| format!("\"o{i:x}\":{{}}"))),
            Expect::Allow,
            "plain `tools/call`, 1 MiB",
        ),
        case(
            "one object of 60,000 keys, then objects of nine keys",
            call(&filled("tools/call", |i| match i {
                0 => {
                    format!("\"big\":{{{}}}", (0..60_000).map(|k| format!("\"{k:x}\":0")).collect::<Vec<_>>().join(","))
                }
                _ => format!("\"s{i:x}\":{{{}}}", (0..9).map(|k| format!("\"{k}\":0")).collect::<Vec<_>>().join(",")),
            })),
            Expect::Allow,
            "plain `tools/call`, 1 MiB",
        ),
        case("an array of empty objects", call(&many_empty_objects()), Expect::Allow, "plain `tools/call`, 1 MiB"),
        case(
            "nesting at the depth limit",
            call(&filled("tools/call", |i| format!("\"d{i}\":{open}0{close}"))),
            Expect::Allow,
            "plain `tools/call`, 1 MiB",
        ),
        case(
            "strings dense with escapes and surrogate pairs",
            call(&filled("tools/call", |i| format!("\"s{i}\":\"{escaped}\""))),
            Expect::Allow,
            "plain `tools/call`, 1 MiB",
        ),
    ]
}

/// Batches at and over `max_batch`, and one very long name.
fn batch_and_name_cases(key: &str) -> Vec<Case> {
    let call = |body: &str| request(Some(key), body, VERSION, Vec::new());
    let long_name = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_{}1","arguments":{{}}}}}}"#,
        "a".repeat(LIMIT - 120)
    );
    vec![
        case(
            "batch of 100 `tools/call` (`max_batch`) of 10 KiB, 2025-03-26",
            request(Some(key), &full_batch(), "2025-03-26", Vec::new()),
            Expect::Allow,
            "plain `tools/call`, 1 MiB",
        ),
        case(
            "batch of 14,000 `tools/call`, 2025-03-26 (refused: over `max_batch`)",
            request(
                Some(key),
                &batch(|i| {
                    format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"search_docs"}}}}"#)
                }),
                "2025-03-26",
                Vec::new(),
            ),
            Expect::Deny(400),
            "plain `tools/call`, 1 MiB",
        ),
        case(
            "batch of 21,000 `ping`, 2025-03-26 (refused: over `max_batch`)",
            request(
                Some(key),
                &batch(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#)),
                "2025-03-26",
                Vec::new(),
            ),
            Expect::Deny(400),
            "plain `tools/call`, 1 MiB",
        ),
        case("long name, denied (1 MiB)", call(&long_name), Expect::Denied, "plain `tools/call`, 1 MiB"),
    ]
}

/// A small call by `key` with many or long header lines, each against the plain 300 B call.
fn header_cases(key: &str) -> Vec<Case> {
    let v = VERSION;
    let plain_small = common::tools_call_body(common::COMMON_TOOL, 300);
    vec![
        case(
            "plain `tools/call`, 300 B",
            request(Some(key), &plain_small, v, Vec::new()),
            Expect::Allow,
            "plain `tools/call`, 300 B",
        ),
        case(
            "headers: 8,000 distinct names",
            request(Some(key), &plain_small, v, (0..8000).map(|i| (format!("x-h{i}"), "v".into())).collect()),
            Expect::Allow,
            "plain `tools/call`, 300 B",
        ),
        case(
            "headers: 8,000 lines of one name",
            request(
                Some(key),
                &plain_small,
                v,
                (0..8000).map(|_| ("x-same".to_owned(), "vvvvvvvvvvvvvvv".into())).collect(),
            ),
            Expect::Allow,
            "plain `tools/call`, 300 B",
        ),
        case(
            "headers: 4 of 50 KiB",
            request(
                Some(key),
                &plain_small,
                v,
                (0..4).map(|i| (format!("x-long-{i}"), "v".repeat(50 << 10))).collect(),
            ),
            Expect::Allow,
            "plain `tools/call`, 300 B",
        ),
    ]
}

/// 1 MiB bodies with no credential, each against the plain 1 MiB `tools/call`.
fn unauthenticated_cases() -> Vec<Case> {
    let v = VERSION;
    let plain = common::tools_call_body(common::COMMON_TOOL, LIMIT - 64);
    vec![
        case(
            "unauthenticated, plain 1 MiB",
            request(None, &plain, v, Vec::new()),
            Expect::Deny(401),
            "plain `tools/call`, 1 MiB",
        ),
        case(
            "unauthenticated, distinct keys 1 MiB",
            request(None, &filled("tools/call", |i| format!("\"{i:x}\":0")), v, Vec::new()),
            Expect::Deny(401),
            "plain `tools/call`, 1 MiB",
        ),
    ]
}

/// A call whose arguments are `n` distinct keys.
fn keys(n: usize) -> String {
    let keys: Vec<String> = (0..n).map(|i| format!("\"{i:x}\":0")).collect();
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"search_docs","arguments":{{{}}}}}}}"#,
        keys.join(",")
    )
}

/// `{"l":[{},{},…]}` as the arguments of a call, just under the limit.
fn many_empty_objects() -> String {
    let head = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"l":["#;
    let tail = "]}}}";
    let n = (LIMIT - head.len() - tail.len()) / 3;
    let mut body = String::from(head);
    body.push_str(&vec!["{}"; n].join(","));
    body.push_str(tail);
    body
}

fn outcome(w: &Warden, bytes: &[u8]) -> Expect {
    let resp =
        envoy_types::pb::envoy::service::auth::v3::CheckResponse::decode(&*w.check_bytes(bytes)).expect("an answer");
    match resp.http_response {
        Some(HttpResponse::OkResponse(_)) => Expect::Allow,
        Some(HttpResponse::DeniedResponse(d)) => Expect::Deny(d.status.map_or(0, |s| s.code as u32)),
        _ => Expect::Deny(0),
    }
}

fn cpu() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU per check: the least of `rounds` rounds of checks lasting at least `round` each.
fn measure(w: &Warden, bytes: &[u8], rounds: usize, round: Duration) -> Duration {
    (0..rounds)
        .map(|_| {
            let (start, mut n) = (cpu(), 0u32);
            while cpu() - start < round || n == 0 {
                black_box(w.check_bytes(black_box(bytes)));
                n += 1;
            }
            (cpu() - start) / n
        })
        .min()
        .unwrap_or_default()
}

/// `--count N`: how many checks of each case to run, measuring nothing.
fn count() -> Option<u32> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--count")?;
    Some(args.get(at + 1).and_then(|n| n.parse().ok()).expect("--count N: a number"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, round) = if quick { (2, Duration::from_millis(100)) } else { (5, Duration::from_millis(400)) };
    let users = common::spread_users(1, 1000, 10);
    let yaml = common::policy_yaml(common::UPSTREAM_URI, 1000, &users);
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = Audit::start(&AuditOutput::File(dir.path().join("audit.jsonl"))).expect("audit file");
    let w = common::warden(common::load(&yaml), audit);
    // `WORST_CASE=text`: only the cases whose name holds it (and their baselines).
    let only = std::env::var("WORST_CASE").unwrap_or_default();
    let mut cases = cases(&users[0].key);
    if let Some(n) = count() {
        cases.retain(|c| c.name.contains(&*only));
        for case in &cases {
            for _ in 0..n {
                black_box(w.check_bytes(black_box(&case.request)));
            }
        }
        return;
    }
    let keep: Vec<&'static str> =
        cases.iter().filter(|c| c.name.contains(&*only)).flat_map(|c| [c.name, c.baseline]).collect();
    cases.retain(|c| keep.contains(&c.name));
    let mut rows: Vec<(&Case, f64)> = Vec::new();
    for case in &cases {
        let got = outcome(&w, &case.request);
        assert!(
            got == case.expect || (case.expect == Expect::Denied && got != Expect::Allow),
            "{}: {got:?}",
            case.name
        );
        let per_check = measure(&w, &case.request, rounds, round);
        let per_kib = per_check.as_secs_f64() * 1e6 / (case.request.len() as f64 / 1024.0);
        rows.push((case, per_kib));
        eprintln!("{}: {:.0} µs per check", case.name, per_check.as_secs_f64() * 1e6);
    }
    println!(
        "| request (policy of 1,000 roles, caller holds 10) | size | outcome | CPU µs per check | CPU µs per KiB | × its baseline per byte |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: |");
    for (case, per_kib) in &rows {
        let base = rows.iter().find(|(c, _)| c.name == case.baseline).map_or(f64::NAN, |(_, b)| *b);
        let kib = case.request.len() as f64 / 1024.0;
        let outcome = match outcome(&w, &case.request) {
            Expect::Allow => "allowed".to_owned(),
            Expect::Deny(s) => format!("denied, {s}"),
            Expect::Denied => "denied".to_owned(),
        };
        println!(
            "| {} | {:.0} KiB | {outcome} | {:.0} | {:.2} | {:.2} |",
            case.name,
            kib,
            per_kib * kib,
            per_kib,
            per_kib / base
        );
    }
    let dropped = w.audit_dropped();
    if dropped > 0 {
        eprintln!("note: the audit writer dropped {dropped} events (queue full)");
    }
}
