//! `mcp-warden explain`: the decision for one identity, one app and one request, with the
//! role, rule and reason code behind it. Also the evaluation `mcp-warden test` runs per case.
//!
//! Every request, however it is named, becomes a JSON-RPC body and goes through the live
//! check's steps in its order: app access ([`check_app`]), then the fail-closed inspection
//! ([`mcp::inspect`]), then each message ([`Warden::check_message`]: its governed name
//! against the user's roles, conditions reading its arguments). Rules in `mode: audit` are
//! shown as shadow steps that never decide.
//! Exit codes: 0 allow, 1 deny, 2 usage, a config that does not load, an unknown identity
//! or app.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::{ConfigArg, Identity, IdentityArgs, Loaded, Output, ToolError, Unresolved, fail, print_json};
use crate::authz::{Call, Named, Single};
use crate::state::Warden;
use warden_core::bounds::Bounds;
use warden_core::headers::Headers;
use warden_core::mcp::{self, Body, Inspection, Limits};
use warden_core::policy::engine::{Shadow, ShadowOutcome, check_app};
use warden_core::policy::{App, Decision, User};

/// `explain`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// The app (policy `app` name) the request goes to.
    #[arg(long, value_name = "APP")]
    pub app: String,
    #[command(flatten)]
    pub request: RequestArgs,
    /// The `tools/call`'s `arguments`, as a JSON object (with --tool): what role conditions
    /// (`where`) read.
    #[arg(long, value_name = "JSON", requires = "tool")]
    pub arguments: Option<String>,
    /// Print text, or one JSON object with decision, role, rule and reason.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// What is asked: exactly one of these.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct RequestArgs {
    /// A `tools/call` of this tool.
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
    /// A `prompts/get` of this prompt.
    #[arg(long, value_name = "NAME")]
    pub prompt: Option<String>,
    /// A `resources/read` of this URI.
    #[arg(long, value_name = "URI")]
    pub resource: Option<String>,
    /// Any other MCP method, without params (`tools/list`, `ping`…).
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
    /// A file holding a raw JSON-RPC request body (a message or a batch), inspected as the
    /// live check inspects it.
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
}

/// A request to evaluate.
#[derive(Debug, Clone)]
pub enum Request {
    Tool(String),
    Prompt(String),
    Resource(String),
    Method(String, Option<Value>),
    Body(Vec<u8>),
}

impl Request {
    /// The HTTP body the request is sent as.
    pub fn body(&self) -> Vec<u8> {
        let message = |method: &str, params: Option<Value>| {
            let mut m = json!({"jsonrpc": "2.0", "id": 1, "method": method});
            if let Some(p) = params {
                m["params"] = p;
            }
            m.to_string().into_bytes()
        };
        match self {
            Request::Tool(n) => message("tools/call", Some(json!({"name": n, "arguments": {}}))),
            Request::Prompt(n) => message("prompts/get", Some(json!({"name": n}))),
            Request::Resource(u) => message("resources/read", Some(json!({"uri": u}))),
            Request::Method(m, params) => message(m, params.clone()),
            Request::Body(b) => b.clone(),
        }
    }
}

impl RequestArgs {
    fn request(&self) -> Result<Request, ToolError> {
        Ok(match self {
            RequestArgs { tool: Some(t), .. } => Request::Tool(t.clone()),
            RequestArgs { prompt: Some(p), .. } => Request::Prompt(p.clone()),
            RequestArgs { resource: Some(r), .. } => Request::Resource(r.clone()),
            RequestArgs { method: Some(m), .. } => Request::Method(m.clone(), None),
            RequestArgs { body: Some(path), .. } => {
                Request::Body(std::fs::read(path).map_err(|source| ToolError::Read { path: path.clone(), source })?)
            }
            _ => return Err(ToolError::NoRequest),
        })
    }
}

/// `--tool NAME --arguments JSON`: the call with those arguments.
fn with_arguments(request: Request, arguments: Option<&str>) -> Result<Request, ToolError> {
    let (Request::Tool(name), Some(text)) = (&request, arguments) else { return Ok(request) };
    let args: Value = serde_json::from_str(text).map_err(ToolError::Arguments)?;
    Ok(Request::Method("tools/call".to_owned(), Some(json!({"name": name, "arguments": args}))))
}

/// One step's decision: the app, a governed name, an ungoverned method, or a refused body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// What was decided: `app 'demo'`, `tool 'echo'`, `method 'tools/list'`, `request`.
    pub subject: String,
    /// The reason code audit events carry.
    pub reason: String,
    pub role: Option<String>,
    pub rule: Option<String>,
    /// The refusal's message, for a body the inspection refused.
    pub message: Option<String>,
    /// What a rule in `mode: audit` would have decided: shown, never deciding.
    pub shadow: bool,
}

impl Verdict {
    fn of(subject: String, d: Decision<'_>) -> Self {
        Verdict {
            allowed: d.allowed,
            subject,
            reason: d.reason.code().to_owned(),
            role: d.role.map(str::to_owned),
            rule: d.rule.map(str::to_owned),
            message: None,
            shadow: false,
        }
    }

    fn shadow(subject: &str, s: &Shadow<'_>) -> Self {
        Verdict {
            allowed: matches!(s.outcome, ShadowOutcome::WouldAllow | ShadowOutcome::WouldNotDeny),
            subject: subject.to_owned(),
            reason: s.outcome.code().to_owned(),
            role: Some(s.role.to_owned()),
            rule: Some(s.rule.to_owned()),
            message: None,
            shadow: true,
        }
    }

    /// A denial before any rule: of the `request` by the inspection, or of the `identity`
    /// at authentication.
    pub fn refused(subject: &str, reason: &str, message: &str) -> Self {
        Verdict {
            allowed: false,
            subject: subject.to_owned(),
            reason: reason.to_owned(),
            role: None,
            rule: None,
            message: Some(message.to_owned()),
            shadow: false,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "decision": if self.allowed { "allow" } else { "deny" },
            "subject": self.subject,
            "reason": self.reason,
            "role": self.role,
            "rule": self.rule,
            "message": self.message,
            "shadow": self.shadow,
        })
    }
}

/// Every step's verdict; the request is allowed when all are.
#[derive(Debug, Clone)]
pub struct Outcome(pub Vec<Verdict>);

impl Outcome {
    pub fn allowed(&self) -> bool {
        self.0.iter().filter(|v| !v.shadow).all(|v| v.allowed)
    }

    /// The verdict that decided: the first denial, else the last step (shadows never decide).
    pub fn deciding(&self) -> Option<&Verdict> {
        let mut real = self.0.iter().filter(|v| !v.shadow);
        real.clone().find(|v| !v.allowed).or(real.next_back())
    }

    pub fn to_json(&self) -> Value {
        let d = self.deciding();
        json!({
            "decision": if self.allowed() { "allow" } else { "deny" },
            "role": d.and_then(|v| v.role.as_deref()),
            "rule": d.and_then(|v| v.rule.as_deref()),
            "reason": d.map(|v| v.reason.as_str()),
            "steps": self.0.iter().map(Verdict::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Decides `body` for `user` at `app` as the live check does (after authentication).
pub fn evaluate(limits: &Limits, bounds: &Bounds, user: &User, app: &App, body: &[u8]) -> Outcome {
    let d = check_app(user, app);
    let mut verdicts = vec![Verdict::of(format!("app '{}'", app.name), d)];
    if !d.allowed {
        return Outcome(verdicts);
    }
    let headers = Headers::new([("content-type", "application/json")]);
    let req = mcp::HttpRequest { method: "POST", headers: &headers, body };
    let parsed = match mcp::inspect(&req, limits) {
        Ok(Inspection::Messages { body, .. }) => body,
        Ok(_) => unreachable!("a POST is always messages"),
        Err(r) => {
            verdicts.push(Verdict::refused("request", r.reason, &r.message));
            return Outcome(verdicts);
        }
    };
    let msgs = match &parsed {
        Body::Single(m) => std::slice::from_ref(m),
        Body::Batch(v) => v.as_slice(),
    };
    let batch = matches!(parsed, Body::Batch(_));
    for (i, m) in msgs.iter().enumerate() {
        let m = Named::of(m);
        let subject = match m.name {
            Ok(Some(g)) => format!("{} '{}'", g.kind(), g.name()),
            _ => m.msg.method.as_deref().map_or("a response".to_owned(), |n| format!("method '{n}'")),
        };
        let call = Call { body: (body, batch.then_some(i)), version: None };
        let mut single = Single { body, denied_uri: None };
        let single = (!batch).then_some(&mut single);
        let mut shadows = Vec::new();
        let verdict = match Warden::check_message(bounds, user, app, &m, &call, single, &mut shadows) {
            Ok(d) => Verdict::of(subject.clone(), d),
            Err(r) => Verdict::refused("request", r.reason, &r.message),
        };
        verdicts.push(verdict);
        verdicts.extend(shadows.iter().map(|s| Verdict::shadow(&subject, s)));
    }
    Outcome(verdicts)
}

/// The user's name (when the identity names one) and the outcome; `Err` for a usage error.
/// An identity the live service would refuse at authentication is a denial.
pub fn decide(
    loaded: &Loaded,
    identity: &Identity,
    app: &App,
    request: &Request,
) -> Result<(Option<String>, Outcome), ToolError> {
    match loaded.user(identity) {
        Ok(user) => Ok((
            Some(user.name.to_string()),
            evaluate(&loaded.config.limits, &loaded.config.bounds, &user, app, &request.body()),
        )),
        Err(Unresolved::Usage(e)) => Err(ToolError::Identity(e)),
        Err(Unresolved::Refused(e, message)) => {
            Ok((None, Outcome(vec![Verdict::refused("identity", e.reason(), &message)])))
        }
    }
}

/// Runs `explain`.
pub fn run(args: &ExplainArgs) -> ExitCode {
    let output = args.output;
    let loaded = match Loaded::load(args.config.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(output, &e),
    };
    let request = args.request.request().and_then(|r| with_arguments(r, args.arguments.as_deref()));
    let prepared = args.identity.identity().and_then(|id| Ok((id, loaded.app(&args.app)?, request?)));
    let (identity, app, request) = match prepared {
        Ok(x) => x,
        Err(e) => return fail(output, &e),
    };
    let (user, outcome) = match decide(&loaded, &identity, app, &request) {
        Ok(x) => x,
        Err(e) => return fail(output, &e),
    };
    match output {
        Output::Json => {
            let mut v = outcome.to_json();
            v["user"] = json!(user);
            v["app"] = json!(&*app.name);
            print_json(&v);
        }
        Output::Text => {
            // The app step is shown only when it decided.
            let shown = outcome.0.iter().skip(usize::from(outcome.0.len() > 1));
            for v in shown {
                println!("{}", line(v));
            }
        }
    }
    if outcome.allowed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `allow: tool 'echo' — role 'r', rule 'echo' (allowed_by_role)`.
pub fn line(v: &Verdict) -> String {
    let verdict = match (v.shadow, v.allowed) {
        (true, _) => "shadow (mode: audit, not enforced)",
        (false, true) => "allow",
        (false, false) => "deny",
    };
    match (&v.role, &v.rule, &v.message) {
        (Some(role), Some(rule), _) => {
            format!("{verdict}: {} — role '{role}', rule '{rule}' ({})", v.subject, v.reason)
        }
        (_, _, Some(m)) => format!("{verdict}: {} — {m} ({})", v.subject, v.reason),
        _ => format!("{verdict}: {} — {}", v.subject, v.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::policy::{Policy, Source};

    fn policy() -> Policy {
        Policy::load(&[Source::inline("demo", include_str!("../defaults/demo-policy.yaml"))]).expect("demo policy")
    }

    fn decide(p: &Policy, user: &str, request: Request) -> Outcome {
        let (u, a) = (p.user(user).expect("user"), p.app("demo").expect("app"));
        evaluate(&Limits::default(), &Bounds::default(), u, a, &request.body())
    }

    #[test]
    fn a_named_tool_is_decided_by_the_role_and_rule_that_allow_it() {
        let p = policy();
        let o = decide(&p, "bob", Request::Tool("echo".into()));
        assert!(o.allowed());
        let d = o.deciding().expect("a step");
        assert_eq!((d.role.as_deref(), d.rule.as_deref()), (Some("demo-readonly"), Some("echo")));
        let o = decide(&p, "bob", Request::Tool("get-env".into()));
        assert_eq!(o.deciding().map(|d| d.reason.as_str()), Some("not_allowed_by_any_role"));
    }

    #[test]
    fn conditions_read_the_arguments_and_shadow_rules_are_shown_without_deciding() {
        let text = "kind: app\nversion: v3\nmetadata: {name: demo, labels: {s: d}}\nspec: {uri: 'mcp+https://x/mcp'}\n---\nkind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {s: d}\n    mcp:\n      tool_rules:\n      - {tools: [pay], where: 'args.amount < 500'}\n  deny:\n    mcp:\n      tool_rules:\n      - {tools: [pay], where: 'args.amount > 100', mode: audit}\n---\nkind: user\nmetadata: {name: u}\nspec: {roles: [r]}\n";
        let p = Policy::load(&[Source::inline("t.yaml", text)]).expect("loads");
        let (u, a) = (p.user("u").expect("user"), p.app("demo").expect("app"));
        let call = |amount: u32| {
            let r =
                with_arguments(Request::Tool("pay".into()), Some(&format!("{{\"amount\": {amount}}}"))).expect("json");
            evaluate(&Limits::default(), &Bounds::default(), u, a, &r.body())
        };
        let o = call(200);
        assert!(o.allowed(), "the shadow deny does not decide");
        assert_eq!(o.deciding().map(|d| d.reason.as_str()), Some("allowed_by_condition"));
        let shadow = o.0.iter().find(|v| v.shadow).expect("a shadow step");
        assert_eq!((shadow.reason.as_str(), shadow.allowed), ("would_deny", false));
        assert!(line(shadow).starts_with("shadow"), "{}", line(shadow));
        assert_eq!(call(900).deciding().map(|d| d.reason.as_str()), Some("condition_not_met"));
    }

    #[test]
    fn a_batch_is_denied_when_any_element_is() {
        let p = policy();
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},
            {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}]"#;
        let o = decide(&p, "bob", Request::Body(body.to_vec()));
        assert!(!o.allowed());
        assert_eq!(o.deciding().map(|d| d.subject.as_str()), Some("tool 'get-env'"));
    }

    #[test]
    fn a_body_the_inspection_refuses_is_denied_with_its_reason() {
        let p = policy();
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"get-env"}}"#;
        let o = decide(&p, "alice", Request::Body(body.to_vec()));
        assert!(!o.allowed());
        assert_eq!(o.deciding().map(|d| d.subject.as_str()), Some("request"));
    }

    #[test]
    fn the_search_tool_called_as_a_task_is_refused_as_a_check_refuses_it() {
        let p = policy();
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x_amz_bedrock_agentcore_search","task":{}}}"#;
        let o = decide(&p, "alice", Request::Body(body.to_vec()));
        assert!(!o.allowed());
        assert_eq!(o.deciding().map(|d| d.reason.as_str()), Some("search_task_not_allowed"));
    }

    #[test]
    fn an_ungoverned_method_is_allowed_for_a_user_of_the_app() {
        let p = policy();
        let o = decide(&p, "bob", Request::Method("tools/list".into(), None));
        assert!(o.allowed());
        assert_eq!(o.deciding().map(|d| d.reason.as_str()), Some("not_governed"));
    }
}
