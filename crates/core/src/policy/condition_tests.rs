//! Table tests of role conditions, `app_labels_expression` and shadow rules, through the
//! engine as a check calls it.

use super::condition::{Condition, Outcome, Vars};
use super::engine::{Governed, Reason, ShadowOutcome, check_app, check_call, check_name};
use super::{Policy, Source};

const POLICY: &str = r#"
kind: app
version: v3
metadata: {name: bank, labels: {env: staging, team: payments}}
spec: {uri: "mcp+https://bank.example.com/mcp"}
---
kind: app
version: v3
metadata: {name: prod, labels: {env: prod, team: payments}}
spec: {uri: "mcp+https://prod.example.com/mcp"}
---
kind: role
version: v8
metadata: {name: payer}
spec:
  allow:
    app_labels: {'*': '*'}
    mcp:
      tools: [get_balance]
      tool_rules:
        - tools: [transfer_funds]
          where: 'args.amount < 500'
        - tools: ['query_*']
          where: 'args.schema == "analytics" && user.traits.team.exists(t, t == "data")'
  deny:
    mcp:
      tool_rules:
        - tools: [send_email]
          where: '!args.to.endsWith("@example.com")'
        - tools: [get_balance]
          where: 'args.account == "root"'
          mode: audit
        - tools: [wire_money]
---
kind: role
version: v8
metadata: {name: staging-only}
spec:
  allow:
    app_labels_expression: 'labels["env"] == "staging" && contains(user.spec.traits["teams"], labels["team"])'
    mcp: {tools: ['*']}
  deny:
    app_labels_expression: 'regexp.match(labels["env"], "prod*")'
---
kind: role
version: v8
metadata: {name: mailer}
spec:
  allow:
    app_labels: {'*': '*'}
    mcp:
      tools: [send_email]
---
kind: user
metadata: {name: alice}
spec:
  roles: [payer, mailer]
  traits: {team: [data]}
---
kind: user
metadata: {name: bob}
spec:
  roles: [staging-only]
  traits: {teams: [payments]}
---
kind: user
metadata: {name: carol}
spec:
  roles: [staging-only]
  traits: {teams: [search]}
"#;

fn policy() -> Policy {
    Policy::load(&[Source::inline("conditions.yaml", POLICY)]).expect("valid test policy")
}

/// The decision for `tools/call` of `tool` with `args` (JSON text), and the shadows.
fn call(p: &Policy, user: &str, app: &str, tool: &str, args: &str) -> (bool, Reason, Vec<ShadowOutcome>) {
    let (u, a) = (p.user(user).expect("user"), p.app(app).expect("app"));
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#);
    let mut vars = Vars::new(u, a, "tools/call");
    vars.body = Some((body.as_bytes(), None));
    let mut shadows = Vec::new();
    let d = check_app(u, a);
    let d = if d.allowed { check_call(u, a, Governed::Tool(tool), Some(&vars), &mut shadows) } else { d };
    (d.allowed, d.reason, shadows.iter().map(|s| s.outcome).collect())
}

#[test]
fn argument_conditions_allow_deny_and_fail_closed() {
    let p = policy();
    use Reason::*;
    let table: &[(&str, &str, &str, &str, bool, Reason)] = &[
        ("a small transfer is allowed", "transfer_funds", r#"{"amount": 499}"#, "", true, ConditionAllowed),
        ("a float below the limit is allowed", "transfer_funds", r#"{"amount": 12.5}"#, "", true, ConditionAllowed),
        ("a large transfer is refused", "transfer_funds", r#"{"amount": 500}"#, "", false, ConditionNotMet),
        ("a missing argument fails closed", "transfer_funds", r#"{}"#, "", false, ConditionError),
        ("a mistyped argument fails closed", "transfer_funds", r#"{"amount": "1"}"#, "", false, ConditionError),
        ("arguments that are no object fail closed", "transfer_funds", r#"[1]"#, "", false, ConditionError),
        ("user traits are read", "query_db", r#"{"schema": "analytics"}"#, "", true, ConditionAllowed),
        ("another schema is refused", "query_db", r#"{"schema": "hr"}"#, "", false, ConditionNotMet),
        ("a deny condition that holds denies", "send_email", r#"{"to": "x@evil.test"}"#, "", false, ConditionDenied),
        (
            "a deny condition that does not hold leaves allow",
            "send_email",
            r#"{"to": "a@example.com"}"#,
            "",
            true,
            NameAllowed,
        ),
        ("a deny condition that errors denies", "send_email", r#"{"to": 5}"#, "", false, ConditionError),
        ("names no rule covers are not allowed", "delete_all", r#"{}"#, "", false, NameNotAllowed),
    ];
    for (name, tool, args, _, allowed, reason) in table {
        let (a, r, _) = call(&p, "alice", "bank", tool, args);
        assert_eq!((a, r), (*allowed, *reason), "case: {name}");
    }
}

#[test]
fn shadow_rules_are_reported_and_never_decide() {
    let p = policy();
    let (allowed, reason, shadows) = call(&p, "alice", "bank", "get_balance", r#"{"account": "root"}"#);
    assert_eq!((allowed, reason), (true, Reason::NameAllowed), "a shadow deny lets the call through");
    assert_eq!(shadows, [ShadowOutcome::WouldDeny]);
    let (_, _, shadows) = call(&p, "alice", "bank", "get_balance", r#"{"account": "me"}"#);
    assert_eq!(shadows, [ShadowOutcome::WouldNotDeny]);
    let (_, _, shadows) = call(&p, "alice", "bank", "transfer_funds", r#"{"amount": 1}"#);
    assert!(shadows.is_empty(), "rules naming other tools are not evaluated");
}

#[test]
fn app_labels_expression_allows_and_denies_like_teleport() {
    let p = policy();
    let app = |user: &str, app: &str| check_app(p.user(user).expect("user"), p.app(app).expect("app"));
    assert!(app("bob", "bank").allowed, "staging app of bob's team");
    assert_eq!(app("carol", "bank").reason, Reason::AppNotAllowed, "trait does not contain the team");
    assert_eq!(app("bob", "prod").reason, Reason::AppDeniedByRole, "deny expression with regexp.match");
    let (u, a) = (p.user("bob").expect("user"), p.app("bank").expect("app"));
    assert!(check_name(u, a, Governed::Tool("anything")).allowed, "the expression also gates tool rules");
}

#[test]
fn listings_count_conditional_allows_and_ignore_conditional_denies() {
    let p = policy();
    let (u, a) = (p.user("alice").expect("user"), p.app("bank").expect("app"));
    assert!(check_name(u, a, Governed::Tool("transfer_funds")).allowed, "some call may pass");
    assert!(check_name(u, a, Governed::Tool("send_email")).allowed, "some call is not denied");
    let d = check_name(u, a, Governed::Tool("wire_money"));
    assert_eq!((d.allowed, d.reason), (false, Reason::NameDeniedByRole), "a rule with no condition always denies");
}

#[test]
fn bad_expressions_are_load_errors_naming_field_and_cel_error() {
    let bad = |expr: &str| {
        let text = format!(
            "kind: role\nversion: v8\nmetadata: {{name: r}}\nspec:\n  allow:\n    mcp:\n      tool_rules:\n        - tools: [t]\n          where: '{expr}'\n"
        );
        Policy::load(&[Source::inline("bad.yaml", &text)]).expect_err("must be refused").to_string()
    };
    let e = bad("args.amount <");
    assert!(
        e.contains("bad.yaml") && e.contains("spec.allow.mcp.tool_rules[0].where") && e.contains("args.amount <"),
        "{e}"
    );
    let e = bad("arguments.amount < 5");
    assert!(e.contains("unknown variable 'arguments'"), "{e}");
    let text = "kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  deny:\n    app_labels_expression: 'labels[\"env\" == '\n";
    let e = Policy::load(&[Source::inline("bad.yaml", text)]).expect_err("must be refused").to_string();
    assert!(e.contains("spec.deny.app_labels_expression"), "{e}");
}

#[test]
fn teleport_functions_evaluate() {
    let p = policy();
    let (u, a) = (p.user("bob").expect("user"), p.app("bank").expect("app"));
    let vars = Vars::new(u, a, "tools/call");
    let table = [
        ("contains(user.spec.traits['teams'], 'payments')", Outcome::True),
        ("contains_any(user.spec.traits['teams'], ['x', 'payments'])", Outcome::True),
        ("contains_all(user.spec.traits['teams'], ['x', 'payments'])", Outcome::False),
        ("regexp.match(labels['team'], 'pay*')", Outcome::True),
        ("regexp.match(labels['team'], '^(a|b)$')", Outcome::False),
        ("strings.upper(app.name) == 'BANK' && strings.lower('X') == 'x'", Outcome::True),
        ("'abc'.contains('b') && method == 'tools/call' && time.hour < 24", Outcome::True),
        ("labels['missing'] == 'x'", Outcome::Error),
        ("1", Outcome::Error),
        ("user.name == 'bob' && 'staging-only' in user.roles", Outcome::True),
    ];
    for (expr, want) in table {
        let c = Condition::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(c.eval(&vars), want, "{expr}");
    }
}

#[test]
fn expressions_reading_args_whole_or_by_field_see_the_same_arguments() {
    let p = policy();
    let (u, a) = (p.user("alice").expect("user"), p.app("bank").expect("app"));
    let body = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"a":1,"b":{"c":[true]}}}}]"#;
    let mut vars = Vars::new(u, a, "tools/call");
    vars.body = Some((body, Some(1)));
    let table = [
        ("args.a == 1 && args.b.c[0]", Outcome::True),
        ("size(args) == 2 && args['a'] == 1", Outcome::True),
        ("args.exists(k, k == 'b') && has(args.b) && !has(args.z)", Outcome::True),
        ("args.z == 1", Outcome::Error),
    ];
    for (expr, want) in table {
        let c = Condition::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(c.eval(&vars), want, "{expr}");
    }
    vars = Vars::new(u, a, "tools/call");
    vars.body = Some((body, Some(0)));
    let c = Condition::compile("size(args) == 0").expect("compiles");
    assert_eq!(c.eval(&vars), Outcome::True, "absent arguments read as {{}}");
}
