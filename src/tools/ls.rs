//! `mcp-warden ls`: what the policy in force holds, and what one identity may use.
//!
//! `ls apps|roles|users` lists the policy: labels, which roles allow which apps, users'
//! roles, traits and credential kinds (counts only: never a key, a hash or a principal).
//! `ls tools|prompts|resources` reads a saved list answer (JSON, or the SSE stream as
//! captured) and marks each entry: shown or hidden by the list filter — the filter itself
//! ([`filter::filter_payload`]) is run on the answer — and allowed or denied to call by
//! [`check_name`], the rule `tools/call`, `prompts/get` and `resources/read` are checked by.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use super::{ConfigArg, IdentityArgs, Loaded, Output, ToolError, fail, print_json};
use crate::extproc::sse::Reframer;
use warden_core::decision::ListKind;
use warden_core::listfilter::{self as filter, Filtered, View};
use warden_core::policy::engine::{Governed, check_app, check_name};
use warden_core::policy::{App, Policy, Traits, User};

/// `ls`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    #[command(subcommand)]
    pub what: LsWhat,
}

/// What to list.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LsWhat {
    /// Apps: URI, labels, the roles that allow them and the policy users who may use them.
    Apps(PolicyArgs),
    /// Roles: the apps each allows, the policy users holding it, the claims mapped to it.
    Roles(PolicyArgs),
    /// Users: roles, traits, credential kinds (counts, never secrets) and the apps each may use.
    Users(PolicyArgs),
    /// Which tools of a saved `tools/list` answer a user may see and call.
    Tools {
        #[command(flatten)]
        args: EntriesArgs,
        /// The saved `tools/list` answer: the JSON-RPC response, or the event stream as captured.
        #[arg(long = "tools", value_name = "FILE")]
        list: PathBuf,
    },
    /// Which prompts of a saved `prompts/list` answer a user may see and get.
    Prompts {
        #[command(flatten)]
        args: EntriesArgs,
        /// The saved `prompts/list` answer: the JSON-RPC response, or the event stream as captured.
        #[arg(long = "prompts", value_name = "FILE")]
        list: PathBuf,
    },
    /// Which resources (or templates) of a saved `resources/list` answer a user may see and read.
    Resources {
        #[command(flatten)]
        args: EntriesArgs,
        /// The saved `resources/list` (or `resources/templates/list`) answer: the JSON-RPC
        /// response, or the event stream as captured.
        #[arg(long = "resources", value_name = "FILE")]
        list: PathBuf,
    },
}

/// Arguments of the policy listings.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print a table, or a JSON array.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Arguments of the entry listings (each names its saved answer with its own flag).
#[derive(Debug, Clone, clap::Args)]
pub struct EntriesArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// The app the list came from.
    #[arg(long, value_name = "APP")]
    pub app: String,
    /// Print a table, or a JSON object.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Runs `ls`.
pub fn run(args: &LsArgs) -> ExitCode {
    match &args.what {
        LsWhat::Apps(a) => policy_listing(a, apps),
        LsWhat::Roles(a) => policy_listing(a, roles),
        LsWhat::Users(a) => policy_listing(a, users),
        LsWhat::Tools { args, list } => entries(args, list, ListKind::Tools),
        LsWhat::Prompts { args, list } => entries(args, list, ListKind::Prompts),
        LsWhat::Resources { args, list } => entries(args, list, ListKind::Resources),
    }
}

/// One listing: a header and a JSON object per row (text columns are the object's values).
type Listing = (&'static [&'static str], Vec<Value>);

fn policy_listing(args: &PolicyArgs, list: fn(&Loaded) -> Listing) -> ExitCode {
    let loaded = match Loaded::load(args.config.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(args.output, &e),
    };
    let (header, rows) = list(&loaded);
    match args.output {
        Output::Json => print_json(&Value::Array(rows)),
        Output::Text => print_table(header, &rows),
    }
    ExitCode::SUCCESS
}

/// Each role alone, compiled as a user holding only it (templates expand with no traits).
fn role_users(policy: &Policy) -> Vec<(String, Option<User>)> {
    policy
        .role_names()
        .iter()
        .map(|r| (r.to_string(), policy.build_user(&format!("role:{r}"), &[r.to_string()], Traits::new()).ok()))
        .collect()
}

fn labels(app: &App) -> Value {
    json!(app.labels)
}

fn apps(loaded: &Loaded) -> Listing {
    let policy = loaded.policy();
    let roles = role_users(policy);
    let rows = policy
        .apps()
        .iter()
        .map(|app| {
            let allowing: Vec<&str> = roles
                .iter()
                .filter(|(_, u)| u.as_ref().is_some_and(|u| check_app(u, app).allowed))
                .map(|(n, _)| n.as_str())
                .collect();
            let users: Vec<&str> =
                policy.users().iter().filter(|u| check_app(u, app).allowed).map(|u| &*u.name).collect();
            json!({"app": &*app.name, "uri": &*app.uri, "labels": labels(app), "roles": allowing, "users": users})
        })
        .collect();
    (&["app", "uri", "labels", "roles", "users"], rows)
}

fn roles(loaded: &Loaded) -> Listing {
    let policy = loaded.policy();
    let mapped = loaded.config.jwt.as_ref().map(|j| j.claims_to_roles.as_slice()).unwrap_or_default();
    let rows = role_users(policy)
        .into_iter()
        .map(|(name, user)| {
            let apps: Vec<&str> = match &user {
                Some(u) => policy.apps().iter().filter(|a| check_app(u, a).allowed).map(|a| &*a.name).collect(),
                None => Vec::new(),
            };
            let users: Vec<&str> =
                policy.users().iter().filter(|u| u.role_names.iter().any(|r| **r == *name)).map(|u| &*u.name).collect();
            let claims: Vec<String> =
                mapped.iter().filter(|m| m.roles.contains(&name)).map(|m| format!("{}={}", m.claim, m.value)).collect();
            json!({"role": name, "apps": apps, "users": users, "claims": claims})
        })
        .collect();
    (&["role", "apps", "users", "claims"], rows)
}

fn users(loaded: &Loaded) -> Listing {
    let policy = loaded.policy();
    let counts = policy.credential_counts();
    let rows = policy
        .users()
        .iter()
        .zip(counts)
        .map(|(u, (keys, principals))| {
            let mut credentials = Vec::new();
            if keys > 0 {
                credentials.push(format!("api_key×{keys}"));
            }
            if principals > 0 {
                credentials.push(format!("mtls×{principals}"));
            }
            let roles: Vec<&str> = u.role_names.iter().map(|r| &**r).collect();
            let apps: Vec<&str> = policy.apps().iter().filter(|a| check_app(u, a).allowed).map(|a| &*a.name).collect();
            json!({"user": &*u.name, "roles": roles, "traits": &*u.traits, "credentials": credentials, "apps": apps})
        })
        .collect();
    (&["user", "roles", "traits", "credentials", "apps"], rows)
}

/// A cell: strings as they are, lists joined with `,`, maps as `k=v` pairs.
fn cell(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(m) => m.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    if s.is_empty() { "-".to_owned() } else { s }
}

fn print_table(header: &[&str], rows: &[Value]) {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| header.iter().map(|h| cell(&r[*h])).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let print = |row: &[String]| {
        let last = row.len().saturating_sub(1);
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i == last { c.clone() } else { format!("{c:<w$}") })
            .collect();
        println!("{}", line.join("  "));
    };
    print(&header.iter().map(|h| h.to_ascii_uppercase()).collect::<Vec<_>>());
    for row in &cells {
        print(row);
    }
}

/// The list answer found in a saved response: its kind, its JSON text and its entries' names.
struct Answer {
    kind: ListKind,
    text: String,
    id: Option<Box<serde_json::value::RawValue>>,
    names: Vec<Option<String>>,
}

/// Where a list kind's entries are and what names them.
fn shape(kind: ListKind) -> (&'static str, &'static str) {
    match kind {
        ListKind::Prompts => ("prompts", "name"),
        ListKind::Resources => ("resources", "uri"),
        ListKind::ResourceTemplates => ("resourceTemplates", "uriTemplate"),
        _ => ("tools", "name"),
    }
}

/// The payloads of a saved answer: the JSON body, or every SSE event's data.
fn payloads(text: &str, max_event_bytes: usize) -> Result<Vec<String>, ToolError> {
    if text.trim_start().starts_with(['{', '[']) {
        return Ok(vec![text.to_owned()]);
    }
    let mut data = Vec::new();
    let mut collect = |d: &str| {
        data.push(d.to_owned());
        None
    };
    let mut reframer = Reframer::new(max_event_bytes);
    let mut sink = Vec::new();
    reframer.push(text.as_bytes(), &mut sink, &mut collect)?;
    reframer.finish(&mut sink, &mut collect);
    Ok(data)
}

/// The first payload answering with `kind`'s list (for resources, templates count too).
fn find_answer(payloads: Vec<String>, kind: ListKind) -> Option<Answer> {
    let kinds: &[ListKind] =
        if kind == ListKind::Resources { &[ListKind::Resources, ListKind::ResourceTemplates] } else { &[kind] };
    payloads.into_iter().find_map(|text| {
        let v: Value = serde_json::from_str(&text).ok()?;
        kinds.iter().find_map(|&k| {
            let (key, name_key) = shape(k);
            let list = v.get("result")?.get(key)?.as_array()?;
            let names = list.iter().map(|e| e.get(name_key).and_then(Value::as_str).map(str::to_owned)).collect();
            let id = v.get("id").and_then(|id| serde_json::value::to_raw_value(id).ok());
            Some(Answer { kind: k, text: text.clone(), id, names })
        })
    })
}

/// The names the list filter leaves in `answer` for this view.
fn shown(answer: &Answer, view: &View<'_>) -> Result<Option<Vec<Option<String>>>, ToolError> {
    match filter::filter_payload(answer.kind, view, answer.id.as_deref(), &answer.text) {
        Ok(Filtered::Unchanged) => Ok(None),
        Ok(Filtered::Rewritten(text)) => {
            let found = find_answer(vec![text], answer.kind).ok_or(ToolError::FilteredNoList)?;
            Ok(Some(found.names))
        }
        Err(e) => Err(ToolError::FilterRefused(e)),
    }
}

fn governed(kind: ListKind, name: &str) -> Governed<'_> {
    match kind {
        ListKind::Prompts => Governed::Prompt(name),
        ListKind::Resources | ListKind::ResourceTemplates => Governed::Resource(name),
        _ => Governed::Tool(name),
    }
}

fn entries(args: &EntriesArgs, list: &Path, kind: ListKind) -> ExitCode {
    let loaded = match Loaded::load(args.config.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(args.output, &e),
    };
    let prepared = args.identity.identity().and_then(|id| {
        let user = loaded.user(&id).map_err(|u| ToolError::Identity(u.message()))?;
        let app = loaded.app(&args.app)?;
        let text = std::fs::read_to_string(list).map_err(|source| ToolError::Read { path: list.to_owned(), source })?;
        let payloads = payloads(&text, loaded.config.list_filter.max_event_bytes)?;
        let answer = find_answer(payloads, kind)
            .ok_or_else(|| ToolError::NoAnswer { path: list.to_owned(), kind: kind.as_str() })?;
        Ok((user, app, answer))
    });
    let (user, app, answer) = match prepared {
        Ok(x) => x,
        Err(e) => return fail(args.output, &e),
    };
    let app_decision = check_app(&user, app);
    // The list filter runs only on a list call the check allowed.
    let visible = match app_decision.allowed {
        true => match shown(&answer, &View { user: &user, app }) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("mcp-warden: {e}");
                return ExitCode::FAILURE;
            }
        },
        false => Some(Vec::new()),
    };
    let mut remaining = visible.clone().unwrap_or_default();
    let rows: Vec<Value> = answer
        .names
        .iter()
        .map(|name| {
            let is_shown = match &visible {
                None => true,
                Some(_) => remaining.iter().position(|n| n == name).map(|i| remaining.remove(i)).is_some(),
            };
            let d = name.as_deref().map(|n| check_name(&user, app, governed(answer.kind, n)));
            let d = if app_decision.allowed { d } else { Some(app_decision) };
            json!({
                "name": name,
                "list": if is_shown { "shown" } else { "hidden" },
                "call": if d.is_some_and(|d| d.allowed) { "allow" } else { "deny" },
                "role": d.and_then(|d| d.role),
                "rule": d.and_then(|d| d.rule),
                "reason": d.map_or("no_name", |d| d.reason.code()),
            })
        })
        .collect();
    match args.output {
        Output::Json => print_json(&json!({
            "user": &*user.name,
            "app": &*app.name,
            "list": answer.kind.as_str(),
            "entries": rows,
        })),
        Output::Text => print_table(&["name", "list", "call", "role", "rule", "reason"], &rows),
    }
    ExitCode::SUCCESS
}
