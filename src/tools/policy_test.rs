//! `mcp-warden test`: policy test files, as `opa test` runs Rego tests.
//!
//! A test file is YAML: an optional `config:` (a service config, relative to the file; else
//! `--config` / `MCP_WARDEN_CONFIG`, else the embedded demo default) and `tests:`, a list of
//! cases. A case names an identity (`user:`, `roles:` with `traits:`, or `claims:` mapped
//! through `authentication.jwt` as the live service maps a token), an `app:`, a request
//! (`tool:`, `prompt:`, `resource:`, `method:` with `params:`, or a raw JSON-RPC `body:`),
//! and `expect: allow|deny`, optionally with the deciding `role:`, `rule:` and `reason:`.
//! Each case is evaluated by [`super::explain::evaluate`]. A case naming an unknown user,
//! app or role is an error, never a pass. Exit 0 when every case passes, 1 otherwise, 2
//! when a file or config cannot be read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::explain::{Outcome, Request, decide};
use super::{ConfigArg, Identity, Loaded, Output, ToolError, print_json};
use warden_core::policy::Traits;

/// `test`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Test files, or directories searched for `*_test.yaml` / `*_test.yml`.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Print a table, or one JSON object with every case.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    config: Option<PathBuf>,
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    traits: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
    app: String,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    body: Option<String>,
    expect: Expect,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

/// How one case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    Error,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
        }
    }
}

/// One case's result.
#[derive(Debug)]
struct CaseResult {
    file: String,
    name: String,
    status: Status,
    expected: String,
    got: String,
    /// What did not match, or why the case could not run.
    detail: Option<String>,
    outcome: Option<Outcome>,
}

impl Case {
    fn identity(&self) -> Result<Identity, ToolError> {
        let traits: Traits = self.traits.clone();
        match (&self.user, &self.roles, &self.claims) {
            (Some(u), None, None) if traits.is_empty() => Ok(Identity::User(u.clone())),
            (None, Some(r), None) => Ok(Identity::Roles(r.clone(), traits)),
            (None, None, Some(c)) if traits.is_empty() => Ok(Identity::Claims(c.clone())),
            _ => Err(ToolError::CaseIdentity),
        }
    }

    fn request(&self) -> Result<Request, ToolError> {
        let named = [self.tool.is_some(), self.prompt.is_some(), self.resource.is_some(), self.method.is_some()];
        if named.iter().filter(|x| **x).count() + usize::from(self.body.is_some()) != 1
            || (self.params.is_some() && self.method.is_none())
        {
            return Err(ToolError::CaseRequest);
        }
        Ok(match self {
            Case { tool: Some(t), .. } => Request::Tool(t.clone()),
            Case { prompt: Some(p), .. } => Request::Prompt(p.clone()),
            Case { resource: Some(r), .. } => Request::Resource(r.clone()),
            Case { method: Some(m), .. } => Request::Method(m.clone(), self.params.clone()),
            Case { body: Some(b), .. } => Request::Body(b.clone().into_bytes()),
            _ => unreachable!("one request is named"),
        })
    }

    fn expected(&self) -> String {
        let mut s = match self.expect {
            Expect::Allow => "allow".to_owned(),
            Expect::Deny => "deny".to_owned(),
        };
        describe(&mut s, self.role.as_deref(), self.rule.as_deref(), self.reason.as_deref());
        s
    }

    /// Runs the case against `loaded`.
    fn run(&self, loaded: &Loaded, file: &str) -> CaseResult {
        let mut result = CaseResult {
            file: file.to_owned(),
            name: self.name.clone(),
            status: Status::Error,
            expected: self.expected(),
            got: String::new(),
            detail: None,
            outcome: None,
        };
        let policy = loaded.policy();
        let unknown_role = self.role.as_deref().filter(|r| !policy.role_names().iter().any(|n| &**n == *r));
        let prepared = match unknown_role {
            Some(r) => Err(ToolError::CaseRole(r.to_owned())),
            None => self.identity().and_then(|id| {
                let (app, request) = (loaded.app(&self.app)?, self.request()?);
                decide(loaded, &id, app, &request)
            }),
        };
        let outcome = match prepared {
            Ok((_, outcome)) => outcome,
            Err(e) => {
                result.detail = Some(e.to_string());
                return result;
            }
        };
        let d = outcome.deciding();
        let (role, rule, reason) =
            (d.and_then(|v| v.role.as_deref()), d.and_then(|v| v.rule.as_deref()), d.map(|v| v.reason.as_str()));
        result.got = if outcome.allowed() { "allow" } else { "deny" }.to_owned();
        describe(&mut result.got, role, rule, reason);
        // Rules in `mode: audit` never decide; what they would have decided is shown.
        for v in outcome.0.iter().filter(|v| v.shadow) {
            result.got.push_str(&format!("; shadow {}", v.reason));
            describe(&mut result.got, v.role.as_deref(), v.rule.as_deref(), None);
        }
        let mut mismatches = Vec::new();
        if outcome.allowed() != (self.expect == Expect::Allow) {
            mismatches.push("decision");
        }
        for (field, want, got) in
            [("role", &self.role, role), ("rule", &self.rule, rule), ("reason", &self.reason, reason)]
        {
            if want.as_deref().is_some_and(|w| Some(w) != got) {
                mismatches.push(field);
            }
        }
        result.status = if mismatches.is_empty() { Status::Pass } else { Status::Fail };
        result.detail = (!mismatches.is_empty()).then(|| format!("{} differs", mismatches.join(", ")));
        result.outcome = Some(outcome);
        result
    }
}

/// `allow (role 'r', rule 'x', allowed_by_role)`.
fn describe(out: &mut String, role: Option<&str>, rule: Option<&str>, reason: Option<&str>) {
    let parts: Vec<String> =
        [role.map(|r| format!("role '{r}'")), rule.map(|r| format!("rule '{r}'")), reason.map(str::to_owned)]
            .into_iter()
            .flatten()
            .collect();
    if !parts.is_empty() {
        out.push_str(&format!(" ({})", parts.join(", ")));
    }
}

/// The test files under `paths`: files as given, directories searched in name order.
fn test_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ToolError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(&p, out)?;
            } else if name.ends_with("_test.yaml") || name.ends_with("_test.yml") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out).map_err(|source| ToolError::Read { path: p.clone(), source })?;
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        return Err(ToolError::NoTestFiles);
    }
    Ok(out)
}

/// Loads configs once each, by path (`None`: `--config`, else the embedded default).
#[derive(Default)]
struct Configs(HashMap<Option<PathBuf>, Result<Loaded, ToolError>>);

impl Configs {
    fn get(&mut self, path: Option<PathBuf>) -> &Result<Loaded, ToolError> {
        self.0.entry(path).or_insert_with_key(|p| Loaded::load(p.as_deref()))
    }
}

/// Reads one file's cases and runs them; `Err` when the file or its config cannot be used.
fn run_file(path: &Path, default: Option<&Path>, configs: &mut Configs) -> Result<Vec<CaseResult>, ToolError> {
    let at = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ToolError::Read { path: path.to_owned(), source })?;
    let file: TestFile =
        yaml_serde::from_str(&text).map_err(|source| ToolError::TestFile { path: path.to_owned(), source })?;
    let config = match file.config {
        Some(c) => Some(path.parent().unwrap_or(Path::new(".")).join(c)),
        None => default.map(Path::to_owned),
    };
    let loaded = configs
        .get(config)
        .as_ref()
        .map_err(|e| ToolError::TestConfig { path: path.to_owned(), message: e.to_string() })?;
    if file.tests.is_empty() {
        return Err(ToolError::NoTests(path.to_owned()));
    }
    Ok(file.tests.iter().map(|c| c.run(loaded, &at)).collect())
}

/// Runs `test`.
pub fn run(args: &TestArgs) -> ExitCode {
    let files = match test_files(&args.paths) {
        Ok(f) => f,
        Err(e) => return super::fail(args.output, &e),
    };
    let mut configs = Configs::default();
    let mut results = Vec::new();
    for f in &files {
        match run_file(f, args.config.config.as_deref(), &mut configs) {
            Ok(r) => results.extend(r),
            Err(e) => return super::fail(args.output, &e),
        }
    }
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let (passed, failed, errors) = (count(Status::Pass), count(Status::Fail), count(Status::Error));
    match args.output {
        Output::Json => print_json(&json!({
            "passed": passed,
            "failed": failed,
            "errors": errors,
            "cases": results.iter().map(case_json).collect::<Vec<_>>(),
        })),
        Output::Text => print_table(&results, passed, failed, errors),
    }
    if failed + errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn case_json(r: &CaseResult) -> Value {
    json!({
        "file": r.file,
        "name": r.name,
        "status": r.status.as_str().to_ascii_lowercase(),
        "expected": r.expected,
        "got": r.got,
        "detail": r.detail,
        "outcome": r.outcome.as_ref().map(Outcome::to_json),
    })
}

fn print_table(results: &[CaseResult], passed: usize, failed: usize, errors: usize) {
    let width = results.iter().map(|r| r.name.chars().count()).max().unwrap_or(4).max(4);
    let mut file = "";
    for r in results {
        if r.file != file {
            file = &r.file;
            println!("{file}");
        }
        println!("  {:<5} {:<width$}  {}", r.status.as_str(), r.name, r.got);
        if r.status != Status::Pass {
            if r.status == Status::Fail {
                println!("  {:<5} {:<width$}  expected {}", "", "", r.expected);
            }
            if let Some(d) = &r.detail {
                println!("  {:<5} {:<width$}  {d}", "", "");
            }
        }
    }
    println!("{passed} passed, {failed} failed, {errors} errors");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_case(yaml: &str) -> CaseResult {
        let loaded = Loaded::load(None).expect("the embedded default loads");
        let case: Case = yaml_serde::from_str(yaml).expect("a case");
        case.run(&loaded, "t.yaml")
    }

    #[test]
    fn a_matching_case_passes_and_a_mismatch_fails() {
        let pass =
            run_case("{name: n, user: bob, app: demo, tool: echo, expect: allow, role: demo-readonly, rule: echo}");
        assert_eq!(pass.status, Status::Pass, "{pass:?}");
        let fail = run_case("{name: n, user: bob, app: demo, tool: echo, expect: allow, rule: get-sum}");
        assert_eq!((fail.status, fail.detail.as_deref()), (Status::Fail, Some("rule differs")));
    }

    #[test]
    fn unknown_names_are_errors_whatever_the_case_expects() {
        for yaml in [
            "{name: n, user: mallory, app: demo, tool: echo, expect: deny}",
            "{name: n, user: bob, app: nope, tool: echo, expect: deny}",
            "{name: n, roles: [ghost], app: demo, tool: echo, expect: deny}",
            "{name: n, user: bob, app: demo, tool: get-env, expect: deny, role: no-such-role}",
            "{name: n, user: bob, roles: [mcp-user], app: demo, tool: echo, expect: deny}",
            "{name: n, user: bob, app: demo, tool: echo, prompt: p, expect: deny}",
        ] {
            assert_eq!(run_case(yaml).status, Status::Error, "{yaml}");
        }
    }
}
