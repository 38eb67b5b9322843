//! The pure decision engine: given a compiled user and app (and the governed name of an
//! MCP request), decide and say why. Teleport role v8 semantics:
//!
//! - app access: any role whose `deny.app_labels` match the app denies; otherwise some role
//!   whose `allow.app_labels` match must exist;
//! - a tool (prompt, resource): any role whose deny list matches denies (deny is greedy and
//!   does not look at labels); otherwise one single role must match both the app's labels
//!   and the name. Allow rules of different roles never combine.
//! - prompts and resources are governed only when some role of the user has an allow list
//!   for them.
//!
//! - our extension, `mcp.*_rules`: a rule's names match and its CEL condition holds for the
//!   call (see [`check_call`]); rules in `mode: audit` are evaluated and reported, never
//!   decide.
//! - our extension, pins (issue 25): with an app's pins in `hide`, a call of a tool or prompt
//!   without a pin, or seen drifted by this process, is refused after the roles allowed it.
//!
//! Synchronous, no I/O: everything it returns borrows from the policy. A call that no
//! conditional rule names allocates nothing.

use super::condition::{Outcome, Vars};
use super::pins::{AppPins, PinKind, Refusal};
use super::{App, CompiledRole, NameRule, RuleKind, Rules, User};
use crate::policy::pattern::NameSet;

/// What an MCP request names that a role may govern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governed<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    Resource(&'a str),
}

impl Governed<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Governed::Tool(_) => "tool",
            Governed::Prompt(_) => "prompt",
            Governed::Resource(_) => "resource",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Governed::Tool(n) | Governed::Prompt(n) | Governed::Resource(n) => n,
        }
    }
}

/// A stable reason code (audit and metrics use [`Reason::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    AppAllowed,
    AppDeniedByRole,
    AppNotAllowed,
    NameAllowed,
    NameDeniedByRole,
    NameNotAllowed,
    NotGoverned,
    ConditionAllowed,
    ConditionDenied,
    ConditionNotMet,
    ConditionError,
    /// With pins in `hide` (issue 25): the app's pin document has no pin of this name.
    NotPinned(PinKind),
    /// With pins in `hide`: this process saw the name listed with another definition.
    PinDrifted(PinKind),
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::AppAllowed => "app_allowed",
            Reason::AppDeniedByRole => "app_denied_by_role",
            Reason::AppNotAllowed => "app_not_allowed",
            Reason::NameAllowed => "allowed_by_role",
            Reason::NameDeniedByRole => "denied_by_role",
            Reason::NameNotAllowed => "not_allowed_by_any_role",
            Reason::NotGoverned => "not_governed",
            Reason::ConditionAllowed => "allowed_by_condition",
            Reason::ConditionDenied => "denied_by_condition",
            Reason::ConditionNotMet => "condition_not_met",
            Reason::ConditionError => "condition_error",
            Reason::NotPinned(PinKind::Tool) => "tool_not_pinned",
            Reason::NotPinned(PinKind::Prompt) => "prompt_not_pinned",
            Reason::NotPinned(PinKind::Template) => "resource_template_not_pinned",
            Reason::PinDrifted(PinKind::Tool) => "tool_drifted",
            Reason::PinDrifted(PinKind::Prompt) => "prompt_drifted",
            Reason::PinDrifted(PinKind::Template) => "resource_template_drifted",
        }
    }
}

/// A decision and what decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub allowed: bool,
    pub reason: Reason,
    /// The role whose rule decided, if one did.
    pub role: Option<&'p str>,
    /// The rule entry (label selector or name pattern) that decided, if one did.
    pub rule: Option<&'p str>,
}

impl<'p> Decision<'p> {
    fn new(allowed: bool, reason: Reason, role: Option<&'p CompiledRole>, rule: Option<&'p str>) -> Self {
        Decision { allowed, reason, role: role.map(|r| &*r.name), rule }
    }
}

/// May `user` use `app` at all? `app_labels_expression` counts with `app_labels`: a deny
/// matches when either does (an expression that fails to evaluate matches), an allow when
/// every one it sets does.
pub fn check_app<'p>(user: &'p User, app: &App) -> Decision<'p> {
    if let Some(role) = user.roles.iter().find(|r| deny_labels_match(&r.deny, user, app)) {
        return Decision::new(false, Reason::AppDeniedByRole, Some(role), Some("deny.app_labels"));
    }
    match user.roles.iter().find(|r| allow_labels_match(&r.allow, user, app, None)) {
        Some(role) => Decision::new(true, Reason::AppAllowed, Some(role), Some("allow.app_labels")),
        None => Decision::new(false, Reason::AppNotAllowed, None, None),
    }
}

/// `call`: the call's variables when there is one (the expression reads only `user` and the
/// app's labels either way).
fn allow_labels_match(rules: &Rules, user: &User, app: &App, call: Option<&Vars<'_>>) -> bool {
    match &rules.labels_expression {
        None => rules.app_labels.matches(&app.labels),
        Some(e) => {
            (rules.app_labels.is_empty() || rules.app_labels.matches(&app.labels))
                && call.map_or_else(|| e.eval(&Vars::new(user, app, "")), |c| e.eval(c)) == Outcome::True
        }
    }
}

fn deny_labels_match(rules: &Rules, user: &User, app: &App) -> bool {
    rules.app_labels.matches(&app.labels)
        || rules.labels_expression.as_ref().is_some_and(|e| e.eval(&Vars::new(user, app, "")) != Outcome::False)
}

/// May `user` use the named tool, prompt or resource of `app`, whatever the call's
/// arguments? Call after [`check_app`]. For listings: a conditional allow rule counts as
/// allowing (some call may pass it), a conditional deny rule as not denying.
pub fn check_name<'p>(user: &'p User, app: &App, what: Governed<'_>) -> Decision<'p> {
    check_call(user, app, what, None, &mut Vec::new())
}

/// What a rule in `mode: audit` would have decided for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadow<'p> {
    pub role: &'p str,
    pub rule: &'p str,
    pub outcome: ShadowOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    WouldAllow,
    WouldDeny,
    /// An allow rule whose condition was false (or failed): it would not allow.
    WouldNotAllow,
    /// A deny rule whose condition was false: it would not deny.
    WouldNotDeny,
}

impl ShadowOutcome {
    pub fn code(self) -> &'static str {
        match self {
            ShadowOutcome::WouldAllow => "would_allow",
            ShadowOutcome::WouldDeny => "would_deny",
            ShadowOutcome::WouldNotAllow => "would_not_allow",
            ShadowOutcome::WouldNotDeny => "would_not_deny",
        }
    }
}

/// Decides one call: [`check_name`]'s rules, with each `*_rules` condition evaluated against
/// `call` (none: a listing, see [`check_name`]). Rules in `mode: audit` never decide; what
/// they would have decided is pushed to `shadows`. Fail closed: an allow condition that
/// errors does not allow, a deny condition that errors denies. A call the roles allow is
/// then refused when the app's pins (in `hide`) refuse it; a listing is judged against the
/// pins by the list filter instead.
pub fn check_call<'p>(
    user: &'p User,
    app: &App,
    what: Governed<'_>,
    call: Option<&Vars<'_>>,
    shadows: &mut Vec<Shadow<'p>>,
) -> Decision<'p> {
    let decision = check_roles(user, app, what, call, shadows);
    match (&app.pins, call) {
        (Some(pins), Some(_)) if decision.allowed => pinned_call(pins, what).unwrap_or(decision),
        _ => decision,
    }
}

/// A call's denial by the app's pins, if any: tools and prompts only (a resource URI names
/// no template).
fn pinned_call<'p>(pins: &AppPins, what: Governed<'_>) -> Option<Decision<'p>> {
    let kind = match what {
        Governed::Tool(_) => PinKind::Tool,
        Governed::Prompt(_) => PinKind::Prompt,
        Governed::Resource(_) => return None,
    };
    let reason = match pins.refuses_call(kind, what.name())? {
        Refusal::NotPinned => Reason::NotPinned(kind),
        Refusal::Drifted => Reason::PinDrifted(kind),
    };
    Some(Decision::new(false, reason, None, None))
}

fn check_roles<'p>(
    user: &'p User,
    app: &App,
    what: Governed<'_>,
    call: Option<&Vars<'_>>,
    shadows: &mut Vec<Shadow<'p>>,
) -> Decision<'p> {
    let name = what.name();
    let kind = rule_kind(what);
    if let Some(call) = call {
        shadow_pass(user, kind, name, call, shadows);
    }
    let governed = match what {
        Governed::Tool(_) => true,
        Governed::Prompt(_) => user.governs_prompts,
        Governed::Resource(_) => user.governs_resources,
    };
    for role in user.roles.iter() {
        if let Some(entry) = list(&role.deny, what).and_then(|l| l.find(name)) {
            return Decision::new(false, Reason::NameDeniedByRole, Some(role), Some(entry));
        }
        for rule in enforced(&role.deny, kind, name) {
            // Without a call (a listing) only a rule with no condition is known to deny.
            let unknown = if rule.condition.is_some() { Outcome::False } else { Outcome::True };
            let reason = match call.map_or(unknown, |c| outcome(rule, c)) {
                Outcome::True if rule.condition.is_none() => Reason::NameDeniedByRole,
                Outcome::True => Reason::ConditionDenied,
                Outcome::Error => Reason::ConditionError,
                Outcome::False => continue,
            };
            return Decision::new(false, reason, Some(role), Some(&rule.label));
        }
    }
    if !governed {
        return Decision::new(true, Reason::NotGoverned, None, None);
    }
    let mut refused = Decision::new(false, Reason::NameNotAllowed, None, None);
    for role in user.roles.iter() {
        if !allow_labels_match(&role.allow, user, app, call) {
            continue;
        }
        if let Some(entry) = list(&role.allow, what).and_then(|l| l.find(name)) {
            return Decision::new(true, Reason::NameAllowed, Some(role), Some(entry));
        }
        for rule in enforced(&role.allow, kind, name) {
            let reason = match call.map_or(Outcome::True, |c| outcome(rule, c)) {
                Outcome::True => {
                    let why = if rule.condition.is_some() { Reason::ConditionAllowed } else { Reason::NameAllowed };
                    return Decision::new(true, why, Some(role), Some(&rule.label));
                }
                Outcome::False => Reason::ConditionNotMet,
                Outcome::Error => Reason::ConditionError,
            };
            // The first failed condition says why; an error says it louder than a "no".
            if refused.reason == Reason::NameNotAllowed || reason == Reason::ConditionError {
                refused = Decision::new(false, reason, Some(role), Some(&rule.label));
            }
        }
    }
    refused
}

/// Every `mode: audit` rule naming this call, evaluated.
fn shadow_pass<'p>(user: &'p User, kind: RuleKind, name: &str, call: &Vars<'_>, shadows: &mut Vec<Shadow<'p>>) {
    if !user.has_shadow_rules {
        return;
    }
    for role in user.roles.iter() {
        for rule in role.deny.name_rules.iter().filter(|r| r.shadow && r.kind == kind && r.names.is_match(name)) {
            let outcome = match outcome(rule, call) {
                Outcome::False => ShadowOutcome::WouldNotDeny,
                Outcome::True | Outcome::Error => ShadowOutcome::WouldDeny,
            };
            shadows.push(Shadow { role: &role.name, rule: &rule.label, outcome });
        }
        if !role.allow.name_rules.iter().any(|r| r.shadow)
            || !allow_labels_match(&role.allow, user, call.app, Some(call))
        {
            continue;
        }
        for rule in role.allow.name_rules.iter().filter(|r| r.shadow && r.kind == kind && r.names.is_match(name)) {
            let outcome = match outcome(rule, call) {
                Outcome::True => ShadowOutcome::WouldAllow,
                Outcome::False | Outcome::Error => ShadowOutcome::WouldNotAllow,
            };
            shadows.push(Shadow { role: &role.name, rule: &rule.label, outcome });
        }
    }
}

/// The enforced `*_rules` of `rules` that name this call.
fn enforced<'r, 'n>(
    rules: &'r Rules,
    kind: RuleKind,
    name: &'n str,
) -> impl Iterator<Item = &'r NameRule> + use<'r, 'n> {
    rules.name_rules.iter().filter(move |r| !r.shadow && r.kind == kind && r.names.is_match(name))
}

fn outcome(rule: &NameRule, call: &Vars<'_>) -> Outcome {
    rule.condition.as_ref().map_or(Outcome::True, |c| c.eval(call))
}

fn rule_kind(what: Governed<'_>) -> RuleKind {
    match what {
        Governed::Tool(_) => RuleKind::Tool,
        Governed::Prompt(_) => RuleKind::Prompt,
        Governed::Resource(_) => RuleKind::Resource,
    }
}

fn list<'r>(rules: &'r Rules, what: Governed<'_>) -> Option<&'r NameSet> {
    match what {
        Governed::Tool(_) => Some(&rules.tools),
        Governed::Prompt(_) => rules.prompts.as_deref(),
        Governed::Resource(_) => rules.resources.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, Source};

    const POLICY: &str = r#"
kind: app
version: v3
metadata: {name: bedrock, labels: {service: bedrock, env: dev}}
spec: {uri: "mcp+https://gw.example.com/mcp"}
---
kind: app
version: v3
metadata: {name: prod-db, labels: {service: db, env: prod}}
spec: {uri: "mcp+https://db.example.com/mcp"}
---
kind: role
version: v8
metadata: {name: readonly}
spec:
  allow:
    app_labels: {service: bedrock}
    mcp:
      tools: ['^(get|query|list|search|find)_.*$']
---
kind: role
version: v8
metadata: {name: db-writer}
spec:
  allow:
    app_labels: {service: db}
    mcp: {tools: ['write_*']}
---
kind: role
version: v8
metadata: {name: no-delete}
spec:
  deny:
    mcp: {tools: ['delete_*']}
---
kind: role
version: v8
metadata: {name: no-prod}
spec:
  deny:
    app_labels: {env: prod}
---
kind: role
version: v8
metadata: {name: trait-tools}
spec:
  allow:
    app_labels: {'*': '*'}
    mcp:
      tools: ['{{internal.mcp_tools}}']
      prompts: ['greet']
---
kind: role
version: v8
metadata: {name: labels-only}
spec:
  allow:
    app_labels: {'*': '*'}
---
kind: user
metadata: {name: reader}
spec: {roles: [readonly]}
---
kind: user
metadata: {name: split}
spec: {roles: [readonly, db-writer]}
---
kind: user
metadata: {name: admin}
spec: {roles: [mcp-user, no-delete]}
---
kind: user
metadata: {name: devonly}
spec: {roles: [mcp-user, no-prod]}
---
kind: user
metadata: {name: traity}
spec:
  roles: [trait-tools]
  traits: {mcp_tools: [echo, 'slack_*']}
---
kind: user
metadata: {name: notools}
spec: {roles: [labels-only]}
"#;

    fn policy() -> Policy {
        Policy::load(&[Source::inline("engine-test.yaml", POLICY)]).expect("valid test policy")
    }

    fn tool(p: &Policy, user: &str, app: &str, tool: &str) -> Decision<'static> {
        let u = p.user(user).expect("user");
        let a = p.app(app).expect("app");
        let d = check_app(u, a);
        let d = if d.allowed { check_name(u, a, Governed::Tool(tool)) } else { d };
        // Detach the borrow for table comparisons.
        Decision {
            allowed: d.allowed,
            reason: d.reason,
            role: d.role.map(|s| &*Box::leak(s.to_owned().into_boxed_str())),
            rule: d.rule.map(|s| &*Box::leak(s.to_owned().into_boxed_str())),
        }
    }

    /// `(case, user, app, tool)` and the decision expected: allowed, reason, role, rule.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        bool,
        Reason,
        Option<&'static str>,
        Option<&'static str>,
    );

    const DECISIONS: &[Case] = &[
        (
            "regex entry allows a read tool",
            "reader",
            "bedrock",
            "get_weather",
            true,
            Reason::NameAllowed,
            Some("readonly"),
            Some("^(get|query|list|search|find)_.*$"),
        ),
        (
            "regex entry does not allow a write tool",
            "reader",
            "bedrock",
            "delete_file",
            false,
            Reason::NameNotAllowed,
            None,
            None,
        ),
        (
            "tool matching is case-sensitive",
            "reader",
            "bedrock",
            "Get_weather",
            false,
            Reason::NameNotAllowed,
            None,
            None,
        ),
        (
            "an app whose labels match no role is denied",
            "reader",
            "prod-db",
            "get_weather",
            false,
            Reason::AppNotAllowed,
            None,
            None,
        ),
        (
            "tool of role A and app of role B do not combine",
            "split",
            "bedrock",
            "write_row",
            false,
            Reason::NameNotAllowed,
            None,
            None,
        ),
        (
            "the role matching both app and tool allows",
            "split",
            "prod-db",
            "write_row",
            true,
            Reason::NameAllowed,
            Some("db-writer"),
            Some("write_*"),
        ),
        (
            "preset mcp-user allows any tool",
            "admin",
            "bedrock",
            "send_email",
            true,
            Reason::NameAllowed,
            Some("mcp-user"),
            Some("*"),
        ),
        (
            "deny is greedy and wins over allow",
            "admin",
            "bedrock",
            "delete_file",
            false,
            Reason::NameDeniedByRole,
            Some("no-delete"),
            Some("delete_*"),
        ),
        (
            "deny app_labels denies the whole app",
            "devonly",
            "prod-db",
            "get_x",
            false,
            Reason::AppDeniedByRole,
            Some("no-prod"),
            Some("deny.app_labels"),
        ),
        (
            "deny app_labels leave other apps alone",
            "devonly",
            "bedrock",
            "get_x",
            true,
            Reason::NameAllowed,
            Some("mcp-user"),
            Some("*"),
        ),
        (
            "template expands a literal trait value",
            "traity",
            "bedrock",
            "echo",
            true,
            Reason::NameAllowed,
            Some("trait-tools"),
            Some("echo"),
        ),
        (
            "template expands a glob trait value",
            "traity",
            "prod-db",
            "slack_post",
            true,
            Reason::NameAllowed,
            Some("trait-tools"),
            Some("slack_*"),
        ),
        (
            "template does not allow other tools",
            "traity",
            "bedrock",
            "get_weather",
            false,
            Reason::NameNotAllowed,
            None,
            None,
        ),
        (
            "no mcp.tools anywhere allows no tool",
            "notools",
            "bedrock",
            "echo",
            false,
            Reason::NameNotAllowed,
            None,
            None,
        ),
    ];

    #[test]
    fn decisions_follow_teleport_v8_semantics() {
        let p = policy();
        for (name, user, app, t, allowed, reason, role, rule) in DECISIONS {
            let d = tool(&p, user, app, t);
            assert_eq!((d.allowed, d.reason, d.role, d.rule), (*allowed, *reason, *role, *rule), "case: {name}");
        }
    }

    #[test]
    fn prompts_are_not_governed_without_an_allow_list() {
        let p = policy();
        let (u, a) = (p.user("reader").expect("user"), p.app("bedrock").expect("app"));
        assert_eq!(check_name(u, a, Governed::Prompt("anything")).reason, Reason::NotGoverned);
        assert!(check_name(u, a, Governed::Resource("file:///etc/passwd")).allowed);
    }

    #[test]
    fn prompts_are_enforced_once_a_role_lists_them() {
        let p = policy();
        let (u, a) = (p.user("traity").expect("user"), p.app("bedrock").expect("app"));
        assert!(check_name(u, a, Governed::Prompt("greet")).allowed);
        assert_eq!(check_name(u, a, Governed::Prompt("other")).reason, Reason::NameNotAllowed);
    }
}
