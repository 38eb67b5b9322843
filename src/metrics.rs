//! Prometheus metrics, rendered by hand from atomics: nothing on the request path takes a
//! lock after a label set's first use, and every label value is a `&'static str` from a
//! fixed set (decisions, reason codes, results), or a role or rule name of the loaded policy
//! (shadow decisions), so cardinality is bounded by construction. No user or tool names ever
//! become labels.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the check-latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] =
    [0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05];

/// A counter family keyed by `N` label values: each from a small static set, or (`V =
/// Box<str>`) a name from the policy, never from a request.
#[derive(Debug)]
struct Family<const N: usize, V = &'static str> {
    values: RwLock<HashMap<[V; N], AtomicU64>>,
}

impl<const N: usize, V> Default for Family<N, V> {
    fn default() -> Self {
        Family { values: RwLock::default() }
    }
}

impl<const N: usize, V: Eq + Ord + Clone + std::hash::Hash + AsRef<str>> Family<N, V> {
    fn inc(&self, key: [V; N]) {
        if let Ok(map) = self.values.read()
            && let Some(c) = map.get(&key)
        {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut map) = self.values.write() {
            map.entry(key).or_default().fetch_add(1, Ordering::Relaxed);
        }
    }

    fn render(&self, out: &mut String, name: &str, labels: [&str; N]) {
        let Ok(map) = self.values.read() else { return };
        let mut rows: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed))).collect();
        rows.sort();
        for (key, v) in rows {
            let _ = write!(out, "{name}{{");
            for (i, (label, value)) in labels.iter().zip(key).enumerate() {
                let value = escape(value.as_ref());
                let _ = write!(out, "{}{label}=\"{value}\"", if i == 0 { "" } else { "," });
            }
            let _ = writeln!(out, "}} {v}");
        }
    }
}

/// A label value as the exposition format quotes it.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\\', '"', '\n']) {
        value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
    } else {
        value.into()
    }
}

/// Every metric mcp-warden exports.
#[derive(Debug, Default)]
pub struct Metrics {
    checks: Family<2>,
    undelivered: Family<1>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    tokens_minted: AtomicU64,
    token_cache_hits: AtomicU64,
    jwks_fetches: Family<1>,
    reloads: Family<1>,
    policy_generation: AtomicU64,
    key_rotations: AtomicU64,
    list_filter_refusals: Family<3>,
    /// Shadow decisions by role, rule and outcome: role and rule names come from the policy
    /// (bounded by it), never from a request.
    shadows: Family<3, Box<str>>,
    /// Listed entries not listed as pinned (issue 25), by app (named by the policy), kind,
    /// reason and action.
    pin_drift: Family<4, Box<str>>,
}

impl Metrics {
    /// One ext_authz check: its decision, stable reason code and latency.
    pub fn check(&self, allowed: bool, reason: &'static str, latency: Duration) {
        self.checks.inc([if allowed { "allow" } else { "deny" }, reason]);
        let secs = latency.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A decided check whose answer never reached Envoy (`why`: `stream_reset`,
    /// `deadline_exceeded`).
    pub fn undelivered(&self, why: &'static str) {
        self.undelivered.inc([why]);
    }

    /// What a rule in `mode: audit` would have decided.
    pub fn shadow(&self, role: &str, rule: &str, outcome: &'static str) {
        self.shadows.inc([role.into(), rule.into(), outcome.into()]);
    }

    pub fn token(&self, cached: bool) {
        if cached { &self.token_cache_hits } else { &self.tokens_minted }.fetch_add(1, Ordering::Relaxed);
    }

    pub fn jwks_fetch(&self, result: &'static str) {
        self.jwks_fetches.inc([result]);
    }

    pub fn reload(&self, result: &'static str) {
        self.reloads.inc([result]);
    }

    pub fn set_generation(&self, generation: u64) {
        self.policy_generation.store(generation, Ordering::Relaxed);
    }

    pub fn key_rotated(&self) {
        self.key_rotations.fetch_add(1, Ordering::Relaxed);
    }

    /// A list response the list filter could not filter: `kind` of list (`unknown` before the
    /// decision is read), stable `reason` code, and whether it was `refused` (the client got
    /// the JSON-RPC error) or `passed` unfiltered (`list_filter.on_unparseable: pass`).
    pub fn list_filter_refusal(&self, kind: &'static str, reason: &'static str, passed: bool) {
        self.list_filter_refusals.inc([kind, reason, if passed { "passed" } else { "refused" }]);
    }

    /// A listed entry not listed as pinned: its app, kind (`tool`, `prompt`,
    /// `resource_template`), reason (`unpinned`, `changed`, `unreadable`) and action (`hide`, `flag`).
    pub fn pin_drift(&self, app: &str, kind: &'static str, reason: &'static str, action: &'static str) {
        self.pin_drift.inc([app.into(), kind.into(), reason.into(), action.into()]);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, audit_dropped: u64) -> String {
        let mut out = String::with_capacity(4096);
        help(&mut out, "mcp_warden_build_info", "gauge", "Build information.");
        let _ = writeln!(out, "mcp_warden_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        help(&mut out, "mcp_warden_checks_total", "counter", "ext_authz checks by decision and reason code.");
        self.checks.render(&mut out, "mcp_warden_checks_total", ["decision", "reason"]);
        help(
            &mut out,
            "mcp_warden_checks_undelivered_total",
            "counter",
            "Decided checks whose answer Envoy no longer waited for, by why.",
        );
        self.undelivered.render(&mut out, "mcp_warden_checks_undelivered_total", ["why"]);
        help(
            &mut out,
            "mcp_warden_shadow_decisions_total",
            "counter",
            "Rules in mode: audit, by what they would decide.",
        );
        self.shadows.render(&mut out, "mcp_warden_shadow_decisions_total", ["role", "rule", "outcome"]);
        self.render_latency(&mut out);
        self.render_tokens_and_reloads(&mut out);
        help(
            &mut out,
            "mcp_warden_list_filter_refusals_total",
            "counter",
            "List responses the list filter could not filter, by kind, reason code and action (refused or passed).",
        );
        self.list_filter_refusals.render(
            &mut out,
            "mcp_warden_list_filter_refusals_total",
            ["kind", "reason", "action"],
        );
        help(
            &mut out,
            "mcp_warden_pin_drift_total",
            "counter",
            "Listed tools, prompts and resource templates not listed as pinned, by app, kind, reason and action.",
        );
        self.pin_drift.render(&mut out, "mcp_warden_pin_drift_total", ["app", "kind", "reason", "action"]);
        simple(
            &mut out,
            "mcp_warden_audit_dropped_total",
            "counter",
            "Audit events dropped because the writer lagged.",
            audit_dropped,
        );
        out
    }

    /// `mcp_warden_check_duration_seconds`, a histogram.
    fn render_latency(&self, out: &mut String) {
        help(out, "mcp_warden_check_duration_seconds", "histogram", "Time to decide one check.");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "mcp_warden_check_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "mcp_warden_check_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "mcp_warden_check_duration_seconds_sum {sum}\nmcp_warden_check_duration_seconds_count {count}"
        );
    }

    /// Tokens minted and cached, JWKS fetches, policy reloads and generation, key rotations.
    fn render_tokens_and_reloads(&self, out: &mut String) {
        simple(
            out,
            "mcp_warden_tokens_minted_total",
            "counter",
            "ID tokens signed.",
            self.tokens_minted.load(Ordering::Relaxed),
        );
        simple(
            out,
            "mcp_warden_token_cache_hits_total",
            "counter",
            "ID tokens served from the cache.",
            self.token_cache_hits.load(Ordering::Relaxed),
        );
        help(out, "mcp_warden_jwks_fetches_total", "counter", "Identity-provider JWKS fetches by result.");
        self.jwks_fetches.render(out, "mcp_warden_jwks_fetches_total", ["result"]);
        help(out, "mcp_warden_policy_reloads_total", "counter", "Policy reloads by result.");
        self.reloads.render(out, "mcp_warden_policy_reloads_total", ["result"]);
        simple(
            out,
            "mcp_warden_policy_generation",
            "gauge",
            "Generation of the policy in force.",
            self.policy_generation.load(Ordering::Relaxed),
        );
        simple(
            out,
            "mcp_warden_key_rotations_total",
            "counter",
            "Signing-key switches.",
            self.key_rotations.load(Ordering::Relaxed),
        );
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// A metric with no labels: its `# HELP`, `# TYPE` and value.
fn simple(out: &mut String, name: &str, kind: &str, text: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}\n{name} {v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counts_checks_by_decision_and_reason() {
        let m = Metrics::default();
        m.check(true, "allowed_by_role", Duration::from_micros(3));
        m.check(false, "denied_by_role", Duration::from_micros(30));
        m.check(false, "denied_by_role", Duration::from_millis(100));
        let t = m.render(0);
        assert_eq!(value(&t, "mcp_warden_checks_total{decision=\"allow\",reason=\"allowed_by_role\"}"), Some(1.0));
        assert_eq!(value(&t, "mcp_warden_checks_total{decision=\"deny\",reason=\"denied_by_role\"}"), Some(2.0));
        assert_eq!(value(&t, "mcp_warden_check_duration_seconds_bucket{le=\"0.000005\"}"), Some(1.0));
        assert_eq!(value(&t, "mcp_warden_check_duration_seconds_bucket{le=\"0.05\"}"), Some(2.0));
        assert_eq!(value(&t, "mcp_warden_check_duration_seconds_bucket{le=\"+Inf\"}"), Some(3.0));
        assert_eq!(value(&t, "mcp_warden_check_duration_seconds_count"), Some(3.0));
    }

    #[test]
    fn list_filter_refusals_count_by_kind_reason_and_action() {
        let m = Metrics::default();
        m.list_filter_refusal("tools/list", "charset", false);
        m.list_filter_refusal("tools/list", "charset", false);
        m.list_filter_refusal("stream", "event_too_large", true);
        m.reload("ok");
        let t = m.render(0);
        let series = "mcp_warden_list_filter_refusals_total";
        assert_eq!(
            value(&t, &format!("{series}{{kind=\"tools/list\",reason=\"charset\",action=\"refused\"}}")),
            Some(2.0)
        );
        assert_eq!(
            value(&t, &format!("{series}{{kind=\"stream\",reason=\"event_too_large\",action=\"passed\"}}")),
            Some(1.0)
        );
        assert_eq!(value(&t, "mcp_warden_policy_reloads_total{result=\"ok\"}"), Some(1.0));
    }

    #[test]
    fn token_counters_split_minted_and_cached() {
        let m = Metrics::default();
        m.token(false);
        m.token(true);
        m.token(true);
        let t = m.render(0);
        assert_eq!(value(&t, "mcp_warden_tokens_minted_total"), Some(1.0));
        assert_eq!(value(&t, "mcp_warden_token_cache_hits_total"), Some(2.0));
    }
}
