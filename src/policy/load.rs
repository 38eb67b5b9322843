//! Loading: YAML files and directories → raw resources → a validated [`Policy`].
//!
//! Owns reading policy sources, multi-document parsing, and every validation rule. All
//! errors are collected (not just the first) and each names the file, the line or the
//! resource, and the field or pattern at fault. Directories are read in name order;
//! entries starting with `.` are skipped (Kubernetes `..data` mounts).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::pattern::{NameSet, Template, TraitNamespace};
use super::raw::{self, OneOrMany};
use super::{App, CompiledRole, HeaderRewrite, LabelSelector, Policy, Rules, Traits, User, ValuePart};

/// Name of the preset role granting every app and every tool.
pub const PRESET_MCP_USER: &str = "mcp-user";

/// Where policy comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file, or a directory of `*.yaml` / `*.yml` files.
    Path(PathBuf),
    /// Text embedded in the binary or given by a test.
    Inline { name: String, text: String },
}

impl Source {
    pub fn inline(name: &str, text: &str) -> Self {
        Source::Inline { name: name.to_owned(), text: text.to_owned() }
    }
}

/// One policy error.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read: {reason}")]
    Io { file: String, reason: String },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {kind} '{name}': {field}: {message}")]
    Invalid { file: String, kind: &'static str, name: String, field: String, message: String },
    #[error("{file}: duplicate {kind} '{name}' (first defined in {first})")]
    Duplicate { file: String, kind: &'static str, name: String, first: String },
    #[error("no policy files found in {0}")]
    Empty(String),
}

/// Every error found while loading; displayed one per line.
#[derive(Debug)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl Policy {
    /// Reads, parses, validates and compiles every source, or returns every error found.
    pub fn load(sources: &[Source]) -> Result<Policy, PolicyErrors> {
        let mut loader = Loader::default();
        for source in sources {
            loader.read_source(source);
        }
        loader.finish()
    }
}

struct Raw<T> {
    file: String,
    doc: T,
}

#[derive(Default)]
struct Loader {
    errors: Vec<PolicyError>,
    apps: Vec<Raw<RawApp>>,
    roles: Vec<Raw<raw::RoleDoc>>,
    users: Vec<Raw<raw::UserDoc>>,
}

/// Both app shapes, normalised.
struct RawApp {
    name: String,
    uri: String,
    description: Option<String>,
    public_addr: Option<String>,
    labels: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    header_errors: Vec<String>,
    client_id: Option<String>,
    scope: Option<String>,
    audit_arguments: bool,
}

impl Loader {
    fn read_source(&mut self, source: &Source) {
        match source {
            Source::Inline { name, text } => self.parse_file(name, text),
            Source::Path(path) => match files_in(path) {
                Ok(files) if files.is_empty() => self.errors.push(PolicyError::Empty(path.display().to_string())),
                Ok(files) => {
                    for file in files {
                        let name = file.display().to_string();
                        match std::fs::read_to_string(&file) {
                            Ok(text) => self.parse_file(&name, &text),
                            Err(e) => self.errors.push(PolicyError::Io { file: name, reason: e.to_string() }),
                        }
                    }
                }
                Err(e) => self.errors.push(PolicyError::Io { file: path.display().to_string(), reason: e.to_string() }),
            },
        }
    }

    fn parse_file(&mut self, file: &str, text: &str) {
        let parse_err = |e: yaml_serde::Error| PolicyError::Parse { file: file.to_owned(), message: e.to_string() };
        let mut probes = Vec::new();
        for doc in yaml_serde::Deserializer::from_str(text) {
            match Option::<raw::Probe>::deserialize(doc) {
                Ok(p) => probes.push(p),
                Err(e) => {
                    self.errors.push(parse_err(e));
                    return;
                }
            }
        }
        let starts = document_lines(text, probes.len());
        for ((probe, doc), line) in probes.into_iter().zip(yaml_serde::Deserializer::from_str(text)).zip(starts) {
            let Some(probe) = probe else { continue }; // an empty document
            // Resource errors found later name the line where the resource's document starts.
            let at = match line {
                Some(l) => format!("{file}:{l}"),
                None => file.to_owned(),
            };
            let file = at.as_str();
            let result = match (probe.kind.as_deref(), probe.app_service.is_some()) {
                (None, true) => raw::AppServiceDoc::deserialize(doc).map(|d| self.add_app_service(file, d)),
                (Some("app"), false) => raw::AppDoc::deserialize(doc).map(|d| self.add_app(file, d)),
                (Some("role"), false) => {
                    raw::RoleDoc::deserialize(doc).map(|d| self.roles.push(Raw { file: file.to_owned(), doc: d }))
                }
                (Some("user"), false) => {
                    raw::UserDoc::deserialize(doc).map(|d| self.users.push(Raw { file: file.to_owned(), doc: d }))
                }
                (Some(other), _) => {
                    self.errors.push(PolicyError::Parse {
                        file: file.to_owned(),
                        message: format!("unknown kind '{other}' (expected app, role or user)"),
                    });
                    continue;
                }
                (None, false) => {
                    self.errors.push(PolicyError::Parse {
                        file: file.to_owned(),
                        message: "a document needs `kind:` (app, role, user) or an `app_service:` block".into(),
                    });
                    continue;
                }
            };
            if let Err(e) = result {
                self.errors.push(parse_err(e));
            }
        }
    }

    fn add_app_service(&mut self, file: &str, doc: raw::AppServiceDoc) {
        if let Some(enabled) = &doc.app_service.enabled
            && enabled.is_enabled().is_none()
        {
            self.errors.push(PolicyError::Parse {
                file: file.to_owned(),
                message: "app_service.enabled: expected yes/no or true/false".into(),
            });
        }
        if doc.app_service.enabled.as_ref().and_then(|e| e.is_enabled()) == Some(false) {
            return;
        }
        for app in doc.app_service.apps {
            let mut headers = Vec::new();
            let mut header_errors = Vec::new();
            for h in app.rewrite.map(|r| r.headers).unwrap_or_default() {
                match h.split_once(':') {
                    Some((n, v)) => headers.push((n.trim().to_owned(), v.trim().to_owned())),
                    None => header_errors.push(format!("'{h}' is not \"Name: value\"")),
                }
            }
            self.apps.push(Raw {
                file: file.to_owned(),
                doc: RawApp {
                    name: app.name,
                    uri: app.uri,
                    description: app.description,
                    public_addr: app.public_addr,
                    labels: app.labels,
                    headers,
                    header_errors,
                    client_id: app.client_id,
                    audit_arguments: app.audit_arguments,
                    scope: app.scope,
                },
            });
        }
    }

    fn add_app(&mut self, file: &str, doc: raw::AppDoc) {
        if let Some(v) = doc.version.as_deref().filter(|v| *v != "v3") {
            self.errors.push(PolicyError::Parse {
                file: file.to_owned(),
                message: format!("app '{}': unsupported version '{v}' (use v3)", doc.metadata.name),
            });
        }
        let headers =
            doc.spec.rewrite.map(|r| r.headers.into_iter().map(|h| (h.name, h.value)).collect()).unwrap_or_default();
        self.apps.push(Raw {
            file: file.to_owned(),
            doc: RawApp {
                name: doc.metadata.name,
                uri: doc.spec.uri,
                description: doc.metadata.description,
                public_addr: doc.spec.public_addr,
                labels: doc.metadata.labels,
                headers,
                header_errors: Vec::new(),
                client_id: doc.spec.client_id,
                audit_arguments: doc.spec.audit_arguments,
                scope: doc.spec.scope,
            },
        });
    }

    fn finish(mut self) -> Result<Policy, PolicyErrors> {
        let mut policy = Policy::default();
        self.compile_apps(&mut policy);
        let roles = self.compile_roles();
        self.compile_users(&mut policy, &roles);
        policy.role_names = roles.iter().map(|r| r.name.clone()).collect();
        policy.role_defs = roles.into_iter().map(|r| (r.name.clone(), Arc::new(r))).collect();
        if self.errors.is_empty() { Ok(policy) } else { Err(PolicyErrors(self.errors)) }
    }

    fn compile_apps(&mut self, policy: &mut Policy) {
        let mut first_seen: HashMap<String, String> = HashMap::new();
        for Raw { file, doc } in std::mem::take(&mut self.apps) {
            let invalid = |field: &str, message: String| PolicyError::Invalid {
                file: file.clone(),
                kind: "app",
                name: doc.name.clone(),
                field: field.to_owned(),
                message,
            };
            if let Some(first) = first_seen.get(&doc.name) {
                self.errors.push(PolicyError::Duplicate {
                    file: file.clone(),
                    kind: "app",
                    name: doc.name.clone(),
                    first: first.clone(),
                });
                continue;
            }
            first_seen.insert(doc.name.clone(), file.clone());
            let mut ok = true;
            if !valid_name(&doc.name) {
                self.errors.push(invalid("name", "use letters, digits, '.', '_' and '-'".into()));
                ok = false;
            }
            if let Err(m) = check_uri(&doc.uri) {
                self.errors.push(invalid("uri", m));
                ok = false;
            }
            for m in &doc.header_errors {
                self.errors.push(invalid("rewrite.headers", m.clone()));
                ok = false;
            }
            let mut rewrite = Vec::new();
            for (name, value) in &doc.headers {
                match compile_header(name, value) {
                    Ok(h) => rewrite.push(h),
                    Err(m) => {
                        self.errors.push(invalid("rewrite.headers", m));
                        ok = false;
                    }
                }
            }
            if let Some(addr) = &doc.public_addr {
                let key = addr.to_ascii_lowercase();
                if policy.app_by_host.contains_key(key.as_str()) {
                    self.errors.push(invalid("public_addr", format!("'{addr}' is used by another app")));
                    ok = false;
                }
            }
            if !ok {
                continue;
            }
            let idx = policy.apps.len();
            policy.app_by_name.insert(doc.name.as_str().into(), idx);
            if let Some(addr) = &doc.public_addr {
                policy.app_by_host.insert(addr.to_ascii_lowercase().into(), idx);
            }
            policy.apps.push(App {
                name: doc.name.as_str().into(),
                uri: doc.uri.as_str().into(),
                description: doc.description.map(Into::into),
                public_addr: doc.public_addr.map(Into::into),
                labels: doc.labels,
                rewrite,
                client_id: doc.client_id.map(Into::into),
                audit_arguments: doc.audit_arguments,
                scope: doc.scope.map(Into::into),
            });
        }
    }

    fn compile_roles(&mut self) -> Vec<RoleDef> {
        let mut defs: Vec<RoleDef> = Vec::new();
        let mut first_seen: HashMap<String, String> = HashMap::new();
        for Raw { file, doc } in std::mem::take(&mut self.roles) {
            let name = doc.metadata.name.clone();
            if let Some(first) = first_seen.get(&name) {
                self.errors.push(PolicyError::Duplicate { file, kind: "role", name, first: first.clone() });
                continue;
            }
            first_seen.insert(name.clone(), file.clone());
            let mut errors = Vec::new();
            if !matches!(doc.version.as_str(), "v7" | "v8") {
                errors.push(("version".to_owned(), format!("unsupported role version '{}' (use v8)", doc.version)));
            }
            let allow = RawRules::parse("spec.allow", doc.spec.allow, &mut errors);
            let deny = RawRules::parse("spec.deny", doc.spec.deny, &mut errors);
            let mut def = RoleDef { name: name.as_str().into(), file: file.clone(), allow, deny, compiled: None };
            if errors.is_empty() && def.allow.is_static() && def.deny.is_static() {
                match def.compile(&Traits::new()) {
                    Ok(c) => def.compiled = Some(Arc::new(c)),
                    Err((field, m)) => errors.push((field, m)),
                }
            }
            for (field, message) in errors {
                self.errors.push(PolicyError::Invalid {
                    file: file.clone(),
                    kind: "role",
                    name: name.clone(),
                    field,
                    message,
                });
            }
            defs.push(def);
        }
        if !first_seen.contains_key(PRESET_MCP_USER) {
            defs.push(RoleDef::preset_mcp_user());
        }
        defs
    }

    fn compile_users(&mut self, policy: &mut Policy, roles: &[RoleDef]) {
        let role_index: HashMap<&str, &RoleDef> = roles.iter().map(|r| (&*r.name, r)).collect();
        let mut key_owner: HashMap<[u8; 32], String> = HashMap::new();
        for Raw { file, doc } in std::mem::take(&mut self.users) {
            let name = doc.metadata.name.clone();
            let mut errors: Vec<(String, String)> = Vec::new();
            if policy.user_by_name.contains_key(name.as_str()) {
                self.errors.push(PolicyError::Duplicate {
                    file,
                    kind: "user",
                    name,
                    first: "an earlier document".into(),
                });
                continue;
            }
            if name.is_empty() {
                errors.push(("metadata.name".into(), "must not be empty".into()));
            }
            if let Some(v) = doc.version.as_deref().filter(|v| *v != "v2") {
                errors.push(("version".into(), format!("unsupported user version '{v}' (use v2)")));
            }
            let traits: Traits =
                doc.spec.traits.into_iter().map(|(k, v)| (k, v.into_vec())).filter(|(_, v)| !v.is_empty()).collect();
            let built = build_user(&name, &doc.spec.roles, traits, |r| role_index.get(r).copied());
            let user = match built {
                Ok(u) => Some(u),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            };
            let mut digests = Vec::new();
            for key in &doc.spec.api_keys {
                match parse_key_hash(key) {
                    Ok(d) => match key_owner.get(&d) {
                        Some(owner) => {
                            errors.push(("spec.api_keys".into(), format!("key hash already belongs to user '{owner}'")))
                        }
                        None => {
                            key_owner.insert(d, name.clone());
                            digests.push(d);
                        }
                    },
                    Err(m) => errors.push(("spec.api_keys".into(), m)),
                }
            }
            for p in &doc.spec.mtls_principals {
                if p.is_empty() {
                    errors.push(("spec.mtls_principals".into(), "must not be empty".into()));
                } else if policy.principals.contains_key(p.as_str()) {
                    errors.push(("spec.mtls_principals".into(), format!("'{p}' already belongs to another user")));
                }
            }
            if !errors.is_empty() || user.is_none() {
                for (field, message) in errors {
                    self.errors.push(PolicyError::Invalid {
                        file: file.clone(),
                        kind: "user",
                        name: name.clone(),
                        field,
                        message,
                    });
                }
                continue;
            }
            let idx = policy.users.len();
            for d in digests {
                let prefix = u128::from_be_bytes(d[..16].try_into().unwrap_or_default());
                policy.api_keys.insert(prefix, (idx, d));
            }
            for p in doc.spec.mtls_principals {
                policy.principals.insert(p.into(), idx);
            }
            policy.user_by_name.insert(name.as_str().into(), idx);
            if let Some(user) = user {
                policy.users.push(user);
            }
        }
    }
}

/// Compiles a user's roles against its traits. `role` resolves a role name.
pub(crate) fn build_user<'r>(
    name: &str,
    role_names: &[String],
    traits: Traits,
    role: impl Fn(&str) -> Option<&'r RoleDef>,
) -> Result<User, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut compiled = Vec::with_capacity(role_names.len());
    for role_name in role_names {
        match role(role_name) {
            None => errors.push(("spec.roles".into(), format!("unknown role '{role_name}'"))),
            Some(def) => match &def.compiled {
                Some(c) => compiled.push(c.clone()),
                None => match def.compile(&traits) {
                    Ok(c) => compiled.push(Arc::new(c)),
                    Err((field, m)) => errors.push((format!("role '{role_name}' {field}"), m)),
                },
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let governs = |f: fn(&Rules) -> bool| compiled.iter().any(|r| f(&r.allow));
    Ok(User {
        name: name.into(),
        role_names: role_names.iter().map(|r| Arc::from(r.as_str())).collect(),
        fingerprint: super::fingerprint(name, role_names, &traits),
        governs_prompts: governs(|r| r.prompts.is_some()),
        governs_resources: governs(|r| r.resources.is_some()),
        traits: Arc::new(traits),
        roles: compiled,
    })
}

/// A role as written, with its templates parsed but not expanded.
#[derive(Debug)]
pub(crate) struct RoleDef {
    name: Arc<str>,
    #[allow(dead_code, reason = "kept for error messages of dynamic identities")]
    file: String,
    allow: RawRules,
    deny: RawRules,
    /// Shared by every user when the role uses no templates.
    compiled: Option<Arc<CompiledRole>>,
}

#[derive(Debug, Default)]
struct RawRules {
    any_app: bool,
    labels: Vec<(String, Vec<Template>)>,
    tools: Vec<Template>,
    prompts: Option<Vec<Template>>,
    resources: Option<Vec<Template>>,
    prefix: &'static str,
}

impl RawRules {
    fn parse(prefix: &'static str, c: raw::Conditions, errors: &mut Vec<(String, String)>) -> Self {
        let mut out = RawRules { prefix, ..Default::default() };
        for (key, values) in c.app_labels {
            let values = values.into_vec();
            if key == "*" {
                if values.iter().all(|v| v == "*") {
                    out.any_app = true;
                } else {
                    errors.push((format!("{prefix}.app_labels"), "the '*' key only accepts the value '*'".into()));
                }
                continue;
            }
            let parsed = parse_templates(format!("{prefix}.app_labels.{key}"), &values, errors);
            out.labels.push((key, parsed));
        }
        if let Some(mcp) = c.mcp {
            let mut list = |field: &str, v: Option<OneOrMany>| {
                v.map(|v| parse_templates(format!("{prefix}.mcp.{field}"), &v.into_vec(), errors))
            };
            out.tools = list("tools", mcp.tools).unwrap_or_default();
            out.prompts = list("prompts", mcp.prompts);
            out.resources = list("resources", mcp.resources);
        }
        out
    }

    fn is_static(&self) -> bool {
        let plain = |t: &[Template]| t.iter().all(Template::is_plain);
        self.labels.iter().all(|(_, v)| plain(v))
            && plain(&self.tools)
            && self.prompts.as_deref().is_none_or(plain)
            && self.resources.as_deref().is_none_or(plain)
    }

    fn compile(&self, traits: &Traits) -> Result<Rules, (String, String)> {
        let lookup = |_: TraitNamespace, name: &str| traits.get(name).map(Vec::as_slice);
        let compile = |field: String, t: &[Template]| -> Result<NameSet, (String, String)> {
            let mut entries = Vec::with_capacity(t.len());
            for template in t {
                template.expand(lookup, &mut entries);
            }
            NameSet::compile(&entries).map_err(|e| (field, e.to_string()))
        };
        let p = self.prefix;
        let mut keys = Vec::with_capacity(self.labels.len());
        for (k, v) in &self.labels {
            keys.push((k.as_str().into(), compile(format!("{p}.app_labels.{k}"), v)?));
        }
        Ok(Rules {
            app_labels: LabelSelector { any: self.any_app, keys },
            tools: compile(format!("{p}.mcp.tools"), &self.tools)?,
            prompts: self.prompts.as_deref().map(|t| compile(format!("{p}.mcp.prompts"), t)).transpose()?,
            resources: self.resources.as_deref().map(|t| compile(format!("{p}.mcp.resources"), t)).transpose()?,
        })
    }
}

impl RoleDef {
    fn compile(&self, traits: &Traits) -> Result<CompiledRole, (String, String)> {
        Ok(CompiledRole {
            name: self.name.clone(),
            allow: self.allow.compile(traits)?,
            deny: self.deny.compile(traits)?,
        })
    }

    fn preset_mcp_user() -> Self {
        let allow = RawRules {
            any_app: true,
            tools: vec![Template::Plain("*".into())],
            prefix: "spec.allow",
            ..Default::default()
        };
        let mut def = RoleDef {
            name: PRESET_MCP_USER.into(),
            file: "(preset)".into(),
            allow,
            deny: RawRules { prefix: "spec.deny", ..Default::default() },
            compiled: None,
        };
        def.compiled = def.compile(&Traits::new()).ok().map(Arc::new);
        def
    }
}

/// The 1-based line where each of `count` YAML documents starts (its `---`, or line 1 for a
/// first document without one). `None` for all when the markers cannot be matched to the
/// parser's documents (a `---` inside a block scalar, say): errors then name the file only.
fn document_lines(text: &str, count: usize) -> Vec<Option<usize>> {
    let is_marker = |l: &str| l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
    let mut starts = Vec::new();
    let mut content_seen = false;
    for (i, line) in text.lines().enumerate() {
        let first_content =
            !content_seen && !line.trim().is_empty() && !line.trim_start().starts_with('#') && !line.starts_with('%');
        if is_marker(line) || first_content {
            starts.push(i + 1);
            content_seen = true;
        }
    }
    if starts.len() == count { starts.into_iter().map(Some).collect() } else { vec![None; count] }
}

fn parse_templates(field: String, values: &[String], errors: &mut Vec<(String, String)>) -> Vec<Template> {
    values
        .iter()
        .filter_map(|v| Template::parse(v).map_err(|e| errors.push((field.clone(), e.to_string()))).ok())
        .collect()
}

fn files_in(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let p = entry.path();
        if std::fs::metadata(&p)?.is_dir() {
            out.extend(files_in(&p)?);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(p);
        }
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_uri(uri: &str) -> Result<(), String> {
    let rest = ["mcp+https://", "mcp+http://", "https://", "http://"]
        .iter()
        .find_map(|s| uri.strip_prefix(s))
        .ok_or_else(|| format!("'{uri}' must start with mcp+https://, mcp+http://, https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') || uri.chars().any(char::is_whitespace) {
        return Err(format!("'{uri}' has no host"));
    }
    Ok(())
}

/// Headers a rewrite may never set: they would change routing or framing.
const FORBIDDEN_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection", "te", "upgrade"];

fn compile_header(name: &str, value: &str) -> Result<HeaderRewrite, String> {
    let lower = name.to_ascii_lowercase();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if lower.is_empty() || !lower.bytes().all(token) {
        return Err(format!("'{name}' is not a valid header name"));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        return Err(format!("header '{name}' cannot be rewritten"));
    }
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(ValuePart::Text(rest[..open].into()));
        }
        let close =
            rest[open..].find("}}").map(|i| i + open).ok_or_else(|| format!("'{value}': '{{{{' without '}}}}'"))?;
        let inner = rest[open + 2..close].trim();
        parts.push(match inner {
            "internal.id_token" => ValuePart::IdToken,
            _ => match Template::parse(&rest[open..close + 2]).map_err(|e| e.to_string())? {
                Template::Trait { namespace, name, .. } => ValuePart::Trait(namespace, name.into()),
                Template::Plain(_) => return Err(format!("'{value}': unsupported template")),
            },
        });
        rest = &rest[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(ValuePart::Text(rest.into()));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header '{name}' value contains a control character"));
    }
    Ok(HeaderRewrite { name: lower.into(), value: parts })
}

fn parse_key_hash(s: &str) -> Result<[u8; 32], String> {
    let hex = s
        .strip_prefix("sha256:")
        .ok_or_else(|| "an API key is stored as 'sha256:<64 hex digits>' (see `mcp-warden hash-key`)".to_owned())?;
    if hex.len() != 64 {
        return Err(format!("'{s}': expected 64 hex digits after 'sha256:'"));
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).map_err(|_| format!("'{s}': not hex"))?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| format!("'{s}': not hex"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_APP_SERVICE: &str = r#"app_service:
  enabled: "yes"
  apps:
  - name: "bedrock-mcp"
    uri: "mcp+https://your-mcp-gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp"
    labels:
      env: dev
      service: "bedrock"
    rewrite:
      headers:
      - "Authorization: Bearer {{internal.id_token}}"
"#;

    const SEED_ROLE: &str = r#"kind: role
version: v8
metadata:
  name: bedrock-mcp-readonly
spec:
  allow:
    app_labels:
      'service': 'bedrock'
    mcp:
      # Adjust this list based on the MCP tools exposed by the gateway’s targets.
      tools:
      - ^(get|query|list|search|find)_.*$
"#;

    fn load(text: &str) -> Result<Policy, PolicyErrors> {
        Policy::load(&[Source::inline("test.yaml", text)])
    }

    fn errors(text: &str) -> String {
        load(text).expect_err("policy must be rejected").to_string()
    }

    #[test]
    fn accepts_both_seed_snippets_verbatim() {
        let text = format!("{SEED_APP_SERVICE}---\n{SEED_ROLE}");
        let p = load(&text).expect("seed snippets load");
        let app = p.app("bedrock-mcp").expect("app");
        assert_eq!(&*app.uri, "mcp+https://your-mcp-gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp");
        assert_eq!(app.rewrite[0].name.as_ref(), "authorization");
        assert_eq!(app.rewrite[0].value, vec![ValuePart::Text("Bearer ".into()), ValuePart::IdToken]);
        assert!(p.role_names().iter().any(|r| &**r == "bedrock-mcp-readonly"));
    }

    #[test]
    fn dynamic_app_form_is_accepted() {
        let p = load(
            "kind: app\nversion: v3\nmetadata: {name: a, labels: {x: y}}\nspec:\n  uri: https://h/mcp\n  public_addr: mcp.example.com\n  rewrite:\n    headers:\n    - {name: X-User, value: '{{external.email}}'}\n",
        )
        .expect("loads");
        assert!(p.app_by_host("mcp.example.com:443").is_some());
        assert!(p.app_by_host("MCP.example.com").is_none(), "lookups use the lower-cased Host the caller passes");
    }

    #[test]
    fn unknown_field_names_the_file_line_and_field() {
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    mcp:\n      toolz: [a]\n");
        assert!(e.starts_with("test.yaml:"), "{e}");
        assert!(e.contains("toolz"), "{e}");
        assert!(e.contains("line 7"), "{e}");
    }

    #[test]
    fn bad_regex_names_role_field_and_pattern() {
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    mcp: {tools: ['^(get$']}\n");
        assert!(e.contains("role 'r'") && e.contains("spec.allow.mcp.tools") && e.contains("^(get$"), "{e}");
    }

    #[test]
    fn unknown_role_reference_is_an_error() {
        let e = errors("kind: user\nmetadata: {name: u}\nspec: {roles: [ghost]}\n");
        assert!(e.contains("user 'u'") && e.contains("unknown role 'ghost'"), "{e}");
    }

    #[test]
    fn duplicate_names_are_errors() {
        let e = errors(
            "kind: app\nmetadata: {name: a}\nspec: {uri: 'https://h'}\n---\nkind: app\nmetadata: {name: a}\nspec: {uri: 'https://h'}\n",
        );
        assert!(e.contains("duplicate app 'a'"), "{e}");
        let e =
            errors("kind: role\nversion: v8\nmetadata: {name: r}\n---\nkind: role\nversion: v8\nmetadata: {name: r}\n");
        assert!(e.contains("duplicate role 'r'"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_line_where_the_resource_starts() {
        let e = errors(
            "# roles\nkind: role\nversion: v8\nmetadata: {name: ok}\n---\nkind: user\nmetadata: {name: u}\nspec: {roles: [ghost]}\n",
        );
        assert!(e.starts_with("test.yaml:5: user 'u'"), "{e}");
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    mcp: {tools: ['^(x$']}\n");
        assert!(e.starts_with("test.yaml:1: role 'r'"), "{e}");
    }

    #[test]
    fn all_errors_are_reported_not_just_the_first() {
        let e = errors("kind: user\nmetadata: {name: u}\nspec: {roles: [a, b]}\n");
        assert_eq!(e.lines().count(), 2, "{e}");
    }

    #[test]
    fn api_keys_are_hashes_and_match_in_constant_time() {
        // sha256("foo")
        let p = load("kind: user\nmetadata: {name: u}\nspec:\n  roles: [mcp-user]\n  api_keys: ['sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae']\n")
            .expect("loads");
        assert_eq!(p.user_by_api_key(b"foo").map(|u| &*u.name), Some("u"));
        assert!(p.user_by_api_key(b"fo").is_none());
        let e = errors("kind: user\nmetadata: {name: u}\nspec: {api_keys: [plaintext-key]}\n");
        assert!(e.contains("sha256:"), "{e}");
    }

    #[test]
    fn rewrite_of_a_framing_header_is_rejected() {
        let e =
            errors("app_service:\n  apps:\n  - name: a\n    uri: https://h\n    rewrite: {headers: ['Host: evil']}\n");
        assert!(e.contains("app 'a'") && e.contains("cannot be rewritten"), "{e}");
    }

    #[test]
    fn uri_without_supported_scheme_is_rejected() {
        let e = errors("app_service:\n  apps:\n  - name: a\n    uri: ftp://h\n");
        assert!(e.contains("field") || e.contains("uri"), "{e}");
    }

    #[test]
    fn wildcard_label_key_needs_wildcard_value() {
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {'*': dev}\n");
        assert!(e.contains("'*' key"), "{e}");
    }

    #[test]
    fn directory_sources_skip_hidden_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), SEED_ROLE).expect("write");
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        std::fs::write(dir.path().join("..data/a.yaml"), SEED_ROLE).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not yaml").expect("write");
        Policy::load(&[Source::Path(dir.path().to_owned())]).expect("hidden copies are not loaded twice");
    }
}
