//! Prints a generated policy (YAML) for `scripts/bench.sh`: app `demo`, N roles of 20 tool
//! patterns each, M users holding K roles each, user `j` owning API key `bench-key-JJJJJ`.
//! The same generator as the criterion benches (`crates/core/benches/common/policy_gen.rs`).
//!
//! `cargo run --release --example bench_policy -- ROLES USERS ROLES_PER_USER UPSTREAM_URI`

#[path = "../crates/core/benches/common/policy_gen.rs"]
#[allow(dead_code, reason = "the benches use the rest of the generator")]
mod policy_gen;

use std::io::Write as _;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [roles, users, per_user, uri] = args.as_slice() else {
        eprintln!("usage: bench_policy ROLES USERS ROLES_PER_USER UPSTREAM_URI");
        std::process::exit(2);
    };
    let n = |s: &String| s.parse::<usize>().expect("a positive number");
    let (roles, users, per_user) = (n(roles), n(users), n(per_user));
    assert!(roles >= 1 && per_user >= 1, "at least one role, and one per user");
    let specs = policy_gen::spread_users(users, roles, per_user);
    let yaml = policy_gen::policy_yaml(uri, roles, &specs);
    std::io::stdout().lock().write_all(yaml.as_bytes()).expect("write the policy to stdout");
}
