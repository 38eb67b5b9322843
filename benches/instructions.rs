//! Instructions per check, counted rather than timed: the cached-token `tools/call` (300 B),
//! the denied one and a `tools/list` through `Warden::check_bytes`, each `N` times (audit
//! to a file, as `serve` does; the writer thread's work is not counted). Run under callgrind
//! collecting inside `check_bytes` only, the count is the same on every run and every
//! machine of one architecture, whatever the VM's speed is doing: `scripts/bench.sh` does
//! so, and a change to the check can be weighed before a load run.
//!
//! `cargo bench --bench instructions -- CASE N` (CASE: call, denied, list; keys: issue 19's
//! body of 65,536 distinct keys in one object).

mod common;

use std::hint::black_box;

use bytes::Bytes;
use mcp_warden::audit::Audit;
use mcp_warden::config::AuditOutput;
use prost::Message as _;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let case = args.next().unwrap_or_else(|| "call".to_owned());
    let n: u32 = args.next().map_or(1000, |n| n.parse().expect("N: a count"));
    let users = common::spread_users(1, 1, 1);
    let yaml = common::policy_yaml(common::UPSTREAM_URI, 1, &users);
    let body = match case.as_str() {
        "call" => common::tools_call_body(common::COMMON_TOOL, 300),
        "denied" => common::tools_call_body("delete_everything", 300),
        "list" => common::TOOLS_LIST.to_owned(),
        // Issue 19's body: one object of 65,536 distinct keys.
        "keys" => {
            let keys: Vec<String> = (0..65_536).map(|i| format!("\"{i:x}\":0")).collect();
            common::tools_call_body(common::COMMON_TOOL, 300).replacen(
                "\"arguments\":{",
                &format!("\"arguments\":{{{},", keys.join(",")),
                1,
            )
        }
        other => panic!("unknown case {other:?} (call, denied, list, keys)"),
    };
    let request = Bytes::from(common::check_request(&users[0].key, &body).encode_to_vec());
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = Audit::start(&AuditOutput::File(dir.path().join("audit.jsonl"))).expect("audit file");
    let w = common::warden(common::load(&yaml), audit);
    // The first check mints the token; every later one is the cached path that is counted.
    let first = w.check_bytes(&request);
    for _ in 0..n {
        assert_eq!(black_box(w.check_bytes(black_box(&request))).len(), first.len());
    }
}
