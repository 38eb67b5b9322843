//! Rate limits a role sets (`spec.options.rate_limits`, our extension), which mcp-warden
//! never counts itself: a decision names the limits that apply to a `tools/call` as decision
//! metadata (`rl_user_rate`, `rl_tool_rate`), and Envoy's rate limiting counts them per user
//! (and per user and tool). A limit is one of the [`TIERS`] the shipped Envoy configs define a
//! token bucket for; any other value is a load error, so no limit is ever silently unenforced.
//!
//! When several roles of a user set a limit, the strictest applies.

use std::sync::Arc;

use super::User;
use super::pattern::NameSet;

/// Every rate a role may name, as `(name, calls, seconds)`. Each one has a descriptor in the
/// local_ratelimit filter of every shipped Envoy config (`tests/e2e/test_envoy_config.py`
/// checks that they agree).
pub const TIERS: [(&str, u32, u32); 6] = [
    ("10/minute", 10, 60),
    ("60/minute", 60, 60),
    ("600/minute", 600, 60),
    ("10/hour", 10, 3600),
    ("100/hour", 100, 3600),
    ("1000/hour", 1000, 3600),
];

/// A rate that is not one of the [`TIERS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rate '{rate}' (the shipped Envoy configs define: {tiers})")]
pub struct UnknownRate {
    rate: String,
    tiers: String,
}

/// One of the [`TIERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(u8);

impl Rate {
    /// The tier named `text`; the error lists the tiers.
    pub fn parse(text: &str) -> Result<Self, UnknownRate> {
        match TIERS.iter().position(|(name, ..)| *name == text.trim()) {
            Some(i) => Ok(Rate(u8::try_from(i).unwrap_or(u8::MAX))),
            None => {
                let names: Vec<_> = TIERS.iter().map(|(n, ..)| *n).collect();
                Err(UnknownRate { rate: text.to_owned(), tiers: names.join(", ") })
            }
        }
    }

    /// The name Envoy's descriptors match.
    pub fn name(self) -> &'static str {
        TIERS.get(usize::from(self.0)).map_or("", |t| t.0)
    }

    /// Calls per hour, to find the strictest.
    fn per_hour(self) -> u64 {
        TIERS.get(usize::from(self.0)).map_or(0, |&(_, calls, secs)| u64::from(calls) * 3600 / u64::from(secs))
    }

    fn stricter(a: Option<Rate>, b: Option<Rate>) -> Option<Rate> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.per_hour() < x.per_hour() { y } else { x }),
            (x, y) => x.or(y),
        }
    }
}

/// A role's limits: on all its user's tool calls, and on the calls of some tools.
#[derive(Debug, Default)]
pub struct RoleRates {
    pub per_user: Option<Rate>,
    pub per_tool: Vec<(Arc<NameSet>, Rate)>,
}

/// The limits that apply to `user` calling `tool`: (per user, per user and tool).
pub fn limits(user: &User, tool: &str) -> (Option<Rate>, Option<Rate>) {
    let (mut per_user, mut per_tool) = (None, None);
    if !user.has_rate_limits {
        return (per_user, per_tool);
    }
    for role in user.roles.iter() {
        per_user = Rate::stricter(per_user, role.rates.per_user);
        for (names, rate) in &role.rates.per_tool {
            if names.is_match(tool) {
                per_tool = Rate::stricter(per_tool, Some(*rate));
            }
        }
    }
    (per_user, per_tool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, Source};

    #[test]
    fn the_strictest_limit_of_a_users_roles_applies_per_tool_and_per_user() {
        let text = "kind: role\nversion: v8\nmetadata: {name: a}\nspec:\n  options:\n    rate_limits:\n      per_user: 600/minute\n      per_tool:\n      - {tools: ['send_*'], per_user: 100/hour}\n---\nkind: role\nversion: v8\nmetadata: {name: b}\nspec:\n  options:\n    rate_limits:\n      per_user: 1000/hour\n      per_tool:\n      - {tools: [send_email], per_user: 10/minute}\n---\nkind: user\nmetadata: {name: u}\nspec: {roles: [a, b, mcp-user]}\n";
        let p = Policy::load(&[Source::inline("rates.yaml", text)]).expect("loads");
        let u = p.user("u").expect("user");
        let name = |(a, b): (Option<Rate>, Option<Rate>)| (a.map(Rate::name), b.map(Rate::name));
        assert_eq!(name(limits(u, "send_email")), (Some("1000/hour"), Some("100/hour")));
        assert_eq!(name(limits(u, "send_sms")), (Some("1000/hour"), Some("100/hour")));
        assert_eq!(name(limits(u, "get_time")), (Some("1000/hour"), None));
    }

    #[test]
    fn a_rate_no_envoy_config_defines_is_a_load_error() {
        let text =
            "kind: role\nversion: v8\nmetadata: {name: a}\nspec:\n  options:\n    rate_limits: {per_user: 7/minute}\n";
        let e = Policy::load(&[Source::inline("rates.yaml", text)]).expect_err("refused").to_string();
        assert!(e.contains("spec.options.rate_limits.per_user") && e.contains("unknown rate '7/minute'"), "{e}");
    }
}
