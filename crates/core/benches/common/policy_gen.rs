//! Generated policies for the benchmarks (criterion benches and `scripts/bench.sh`, through
//! `examples/bench_policy.rs`): YAML text that then goes through `Policy::load`, exactly as a
//! file on disk would.
//!
//! Role `i` (`role-NNNN`) allows app `demo` (`service: demo`) with 20 tool patterns: 10
//! literals, 6 globs and 4 `^regex$`. Every role's regex `^(get|list|search)_[a-z_]+$`
//! allows `search_docs` (the tool of the load test); [`tool_of_role`] names a tool only
//! role `i` allows, through one of its globs. Every 5th role also has a deny list.

use std::fmt::Write as _;

/// The app every generated role targets (its route's `context_extensions.app`).
pub(crate) const APP: &str = "demo";

/// The tool the end-to-end load calls: every generated role allows it.
pub(crate) const COMMON_TOOL: &str = "search_docs";

/// A tool that only role `i` allows (matched by a glob, so the role's `RegexSet` runs).
pub(crate) fn tool_of_role(i: usize) -> String {
    format!("search_docs_r{i}_v2")
}

/// The API key of generated user `j`.
pub(crate) fn api_key(j: usize) -> String {
    format!("bench-key-{j:05}")
}

/// One user of a generated policy.
pub(crate) struct UserSpec {
    pub(crate) name: String,
    pub(crate) roles: Vec<usize>,
    pub(crate) key: String,
}

/// `n` users, user `j` holding `per_user` roles spread over `roles` (deterministic).
pub(crate) fn spread_users(n: usize, roles: usize, per_user: usize) -> Vec<UserSpec> {
    (0..n)
        .map(|j| {
            let mut held: Vec<usize> = Vec::with_capacity(per_user);
            let mut k = 0;
            while held.len() < per_user.min(roles) {
                let r = (j * 7919 + k * 104_729 + k * k) % roles;
                if !held.contains(&r) {
                    held.push(r);
                }
                k += 1;
            }
            UserSpec { name: format!("user-{j:05}"), roles: held, key: api_key(j) }
        })
        .collect()
}

fn role_name(i: usize) -> String {
    format!("role-{i:04}")
}

/// The policy: app `demo`, `roles` roles of 20 patterns each, and `users`.
pub(crate) fn policy_yaml(upstream_uri: &str, roles: usize, users: &[UserSpec]) -> String {
    let mut y = String::with_capacity(roles * 900 + users.len() * 300 + 1024);
    let _ = write!(
        y,
        "app_service:\n  enabled: \"yes\"\n  apps:\n  - name: \"{APP}\"\n    uri: \"{upstream_uri}\"\n    \
         labels:\n      env: test\n      service: \"demo\"\n    rewrite:\n      headers:\n      \
         - \"Authorization: Bearer {{{{internal.id_token}}}}\"\n"
    );
    const NOUNS: [&str; 10] =
        ["issue", "page", "user", "ticket", "build", "commit", "invoice", "order", "metric", "alert"];
    const VERBS: [&str; 10] = ["get", "list", "read", "describe", "count", "show", "find", "query", "watch", "export"];
    for i in 0..roles {
        let _ = write!(
            y,
            "---\nkind: role\nversion: v8\nmetadata:\n  name: {}\nspec:\n  allow:\n    app_labels:\n      \
             service: demo\n      env: [test, dev]\n    mcp:\n      tools:\n",
            role_name(i)
        );
        for k in 0..10 {
            let _ = writeln!(y, "      - {}_{}_r{i}", VERBS[k], NOUNS[(k + i) % 10]);
        }
        for glob in [
            format!("search_docs_r{i}_*"),
            format!("read_*_r{i}"),
            format!("jira_{i}_*"),
            format!("slack_r{i}_*"),
            format!("*_report_r{i}"),
            format!("k8s_r{i}_get_*"),
        ] {
            let _ = writeln!(y, "      - \"{glob}\"");
        }
        for re in [
            "^(get|list|search)_[a-z_]+$".to_owned(),
            format!("^db_r{i}_(select|explain)_[a-z]+$"),
            format!("^(create|update)_ticket_r{i}$"),
            format!("^metrics_r{i}_[a-z0-9_]{{1,32}}$"),
        ] {
            let _ = writeln!(y, "      - '{re}'");
        }
        if i % 5 == 4 {
            let _ = write!(y, "  deny:\n    mcp:\n      tools: ['^drop_.*$', 'purge_r{i}']\n");
        }
    }
    for u in users {
        let _ = write!(y, "---\nkind: user\nversion: v2\nmetadata:\n  name: {}\nspec:\n  roles: [", u.name);
        for (n, r) in u.roles.iter().enumerate() {
            let _ = write!(y, "{}{}", if n == 0 { "" } else { ", " }, role_name(*r));
        }
        let _ = write!(
            y,
            "]\n  traits:\n    team: [team-{}]\n  api_keys:\n  - \"{}\"\n",
            u.name.len() % 7,
            warden_core::policy::api_key_digest(&u.key)
        );
    }
    y
}
