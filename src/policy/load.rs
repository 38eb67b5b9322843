//! Loading: YAML files and directories → raw resources → a validated [`Policy`].
//!
//! Owns reading policy sources, multi-document parsing, and every validation rule. All
//! errors are collected (not just the first) and each names the file, the line or the
//! resource, and the field or pattern at fault. Directories are read in name order;
//! entries starting with `.` are skipped (Kubernetes `..data` mounts).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::pattern::{Interner, NameSet, Template, TraitNamespace};
use super::raw::{self, OneOrMany};
use super::{ApiKey, App, CompiledRole, HeaderRewrite, Index, LabelSelector, Policy, Rules, Traits, User, ValuePart};

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

/// Roles are compiled and users built as their documents are read, so the raw documents
/// of a large policy are never all held at once. Errors are kept per stage and reported
/// in the order of the stages: parse, apps, roles, users.
#[derive(Default)]
struct Loader {
    /// Parse errors, in reading order.
    errors: Vec<PolicyError>,
    app_errors: Vec<PolicyError>,
    role_errors: Vec<PolicyError>,
    user_errors: Vec<PolicyError>,
    apps: Vec<Raw<RawApp>>,
    roles: Vec<RoleDef>,
    role_index: HashMap<Arc<str>, usize>,
    /// Users read before one of their roles was: built at the end, with every user after
    /// them (users are built in document order, which duplicate checks depend on).
    deferred: Vec<Raw<raw::UserDoc>>,
    users: UserTable,
    shared: Shared,
    /// One copy of each distinct trait map.
    traits: HashSet<Arc<Traits>>,
}

/// The users built so far and their lookups, moved into the [`Policy`] at the end.
#[derive(Default)]
struct UserTable {
    users: Vec<User>,
    by_name: Index,
    /// Owners are positions in `users`, or from [`FAILED`] on in `failed`: a rejected
    /// user's keys still name it when reused (and a policy with one is rejected whole).
    keys: Vec<ApiKey>,
    key_index: Index,
    failed: Vec<Arc<str>>,
    principals: HashMap<Box<str>, usize>,
    /// Users holding the same roles, none templated, share one list.
    role_lists: HashMap<RoleNames, Arc<[Arc<CompiledRole>]>>,
}

type RoleNames = Arc<[Arc<str>]>;

const FAILED: u32 = 1 << 31;

impl UserTable {
    fn reserve(&mut self, more: usize) {
        let Self { users, by_name, keys, key_index, .. } = self;
        users.reserve_exact(more);
        by_name.reserve(more, |idx, p| idx.hash(&*users[p as usize].name));
        keys.reserve_exact(more);
        key_index.reserve(more, |idx, p| idx.hash(&keys[p as usize].prefix));
    }

    fn has_user(&self, name: &str) -> bool {
        self.by_name.find(self.by_name.hash(name), |p| &*self.users[p as usize].name == name).is_some()
    }

    fn key(&self, prefix: &[u8; 16]) -> Option<&ApiKey> {
        let p = self.key_index.find(self.key_index.hash(prefix), |p| &self.keys[p as usize].prefix == prefix)?;
        self.keys.get(p as usize)
    }

    fn add_key(&mut self, prefix: [u8; 16], suffix: [u8; 16], user: u32) {
        let Self { keys, key_index, .. } = self;
        let pos = keys.len() as u32;
        keys.push(ApiKey { prefix, suffix, user });
        key_index.insert(key_index.hash(&prefix), pos, |idx, p| idx.hash(&keys[p as usize].prefix));
    }

    fn add_user(&mut self, user: User) {
        let Self { users, by_name, .. } = self;
        let pos = users.len() as u32;
        let hash = by_name.hash(&*user.name);
        users.push(user);
        by_name.insert(hash, pos, |idx, p| idx.hash(&*users[p as usize].name));
    }
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
        // A first pass checks every document before any is used: a file with a syntax error
        // contributes that error only.
        let mut kinds = Vec::new();
        for doc in yaml_serde::Deserializer::from_str(text) {
            match Option::<raw::Probe>::deserialize(doc) {
                Ok(p) => kinds.push(p.map(DocKind::of)),
                Err(e) => {
                    self.errors.push(parse_err(e));
                    return;
                }
            }
        }
        // Sized once: a policy of many users does not grow (and copy) its tables repeatedly.
        self.users.reserve(kinds.iter().filter(|k| matches!(k, Some(DocKind::User))).count());
        let starts = document_lines(text, kinds.len());
        let lines = (0..kinds.len()).map(|i| starts.as_ref().map(|s| s[i]));
        for ((kind, doc), line) in kinds.into_iter().zip(yaml_serde::Deserializer::from_str(text)).zip(lines) {
            let Some(kind) = kind else { continue }; // an empty document
            // Resource errors found later name the line where the resource's document starts.
            let at = || match line {
                Some(l) => format!("{file}:{l}"),
                None => file.to_owned(),
            };
            let result = match kind {
                DocKind::AppService => raw::AppServiceDoc::deserialize(doc).map(|d| self.add_app_service(&at(), d)),
                DocKind::App => raw::AppDoc::deserialize(doc).map(|d| self.add_app(&at(), d)),
                DocKind::Role => raw::RoleDoc::deserialize(doc).map(|d| self.add_role(at(), d)),
                DocKind::User => raw::UserDoc::deserialize(doc).map(|d| self.add_user(&at, d)),
                DocKind::Unknown(other) => {
                    self.errors.push(PolicyError::Parse {
                        file: at(),
                        message: format!("unknown kind '{other}' (expected app, role or user)"),
                    });
                    continue;
                }
                DocKind::Missing => {
                    self.errors.push(PolicyError::Parse {
                        file: at(),
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
        if !self.role_index.contains_key(PRESET_MCP_USER) {
            self.roles.push(RoleDef::preset_mcp_user(&mut self.shared));
            self.role_index.insert(PRESET_MCP_USER.into(), self.roles.len() - 1);
        }
        for Raw { file, doc } in std::mem::take(&mut self.deferred) {
            self.build_and_add_user(&|| file.clone(), doc);
        }
        let UserTable { users, by_name, keys, key_index, principals, .. } = std::mem::take(&mut self.users);
        policy.users = users;
        policy.user_by_name = by_name;
        policy.api_keys = keys;
        policy.key_index = key_index;
        policy.principals = principals;
        policy.role_names = self.roles.iter().map(|r| r.name.clone()).collect();
        policy.role_defs = std::mem::take(&mut self.roles).into_iter().map(|r| (r.name.clone(), Arc::new(r))).collect();
        let mut errors = self.errors;
        errors.extend(self.app_errors);
        errors.extend(self.role_errors);
        errors.extend(self.user_errors);
        if errors.is_empty() { Ok(policy) } else { Err(PolicyErrors(errors)) }
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
                self.app_errors.push(PolicyError::Duplicate {
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
                self.app_errors.push(invalid("name", "use letters, digits, '.', '_' and '-'".into()));
                ok = false;
            }
            if let Err(m) = check_uri(&doc.uri) {
                self.app_errors.push(invalid("uri", m));
                ok = false;
            }
            for m in &doc.header_errors {
                self.app_errors.push(invalid("rewrite.headers", m.clone()));
                ok = false;
            }
            let mut rewrite = Vec::new();
            for (name, value) in &doc.headers {
                match compile_header(name, value) {
                    Ok(h) => rewrite.push(h),
                    Err(m) => {
                        self.app_errors.push(invalid("rewrite.headers", m));
                        ok = false;
                    }
                }
            }
            if let Some(addr) = &doc.public_addr {
                let key = addr.to_ascii_lowercase();
                if policy.app_by_host.contains_key(key.as_str()) {
                    self.app_errors.push(invalid("public_addr", format!("'{addr}' is used by another app")));
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

    /// Validates and (when it uses no template) compiles a role as soon as it is read.
    fn add_role(&mut self, file: String, doc: raw::RoleDoc) {
        let name = doc.metadata.name;
        if let Some(&first) = self.role_index.get(name.as_str()) {
            let first = self.roles[first].file.to_string();
            self.role_errors.push(PolicyError::Duplicate { file, kind: "role", name, first });
            return;
        }
        let mut errors = Vec::new();
        if !matches!(doc.version.as_str(), "v7" | "v8") {
            errors.push(("version".to_owned(), format!("unsupported role version '{}' (use v8)", doc.version)));
        }
        let allow = RawRules::parse("spec.allow", doc.spec.allow, &mut errors);
        let deny = RawRules::parse("spec.deny", doc.spec.deny, &mut errors);
        let mut def = RoleDef {
            name: name.as_str().into(),
            file: file.as_str().into(),
            rules: Some(Box::new([allow, deny])),
            compiled: None,
        };
        if errors.is_empty() && def.is_static() {
            match def.compile(&Traits::new(), &mut self.shared) {
                Ok(c) => def.set_compiled(c),
                Err((field, m)) => errors.push((field, m)),
            }
        }
        for (field, message) in errors {
            self.role_errors.push(PolicyError::Invalid {
                file: file.clone(),
                kind: "role",
                name: name.clone(),
                field,
                message,
            });
        }
        self.role_index.insert(def.name.clone(), self.roles.len());
        self.roles.push(def);
    }

    /// Builds a user now when every role it names is known, else defers it (and every
    /// later user) to the end of the load.
    fn add_user(&mut self, at: &dyn Fn() -> String, doc: raw::UserDoc) {
        if !self.deferred.is_empty() || doc.spec.roles.iter().any(|r| !self.role_index.contains_key(r.as_str())) {
            self.deferred.push(Raw { file: at(), doc });
            return;
        }
        self.build_and_add_user(at, doc);
    }

    /// `at` names where the document starts, formatted only for an error.
    fn build_and_add_user(&mut self, at: &dyn Fn() -> String, doc: raw::UserDoc) {
        let name: Arc<str> = doc.metadata.name.into();
        let mut errors: Vec<(String, String)> = Vec::new();
        if self.users.has_user(&name) {
            self.user_errors.push(PolicyError::Duplicate {
                file: at(),
                kind: "user",
                name: name.to_string(),
                first: "an earlier document".into(),
            });
            return;
        }
        if name.is_empty() {
            errors.push(("metadata.name".into(), "must not be empty".into()));
        }
        if let Some(v) = doc.version.as_deref().filter(|v| *v != "v2") {
            errors.push(("version".into(), format!("unsupported user version '{v}' (use v2)")));
        }
        let traits: Traits =
            doc.spec.traits.into_iter().map(|(k, v)| (k, v.into_vec())).filter(|(_, v)| !v.is_empty()).collect();
        let traits = match self.traits.get(&traits) {
            Some(t) => t.clone(),
            None => {
                let t = Arc::new(traits);
                self.traits.insert(t.clone());
                t
            }
        };
        let (roles, role_index, shared) = (&self.roles, &self.role_index, &mut self.shared);
        let role = |r: &str| role_index.get(r).map(|&i| &roles[i]);
        let all_static = doc.spec.roles.iter().all(|r| role(r).is_some_and(|d| d.compiled.is_some()));
        let user = match build_user(name.clone(), &doc.spec.roles, traits, role, shared) {
            Ok(mut u) => {
                if all_static {
                    let lists = &mut self.users.role_lists;
                    match lists.get_key_value(&*u.role_names) {
                        Some((names, roles)) => (u.role_names, u.roles) = (names.clone(), roles.clone()),
                        None => {
                            lists.insert(u.role_names.clone(), u.roles.clone());
                        }
                    }
                }
                Some(u)
            }
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        // This user's position if it is accepted, else its place among the rejected.
        let (pos, failed) = (self.users.users.len() as u32, FAILED + self.users.failed.len() as u32);
        let mut own_keys = Vec::new();
        for key in &doc.spec.api_keys {
            match parse_key_hash(key) {
                Ok(d) => {
                    let (prefix, suffix) = split_digest(&d);
                    match self.users.key(&prefix) {
                        Some(k) => {
                            let owner = match k.user.checked_sub(FAILED) {
                                Some(f) => self.users.failed.get(f as usize),
                                None => self.users.users.get(k.user as usize).map(|u| &u.name),
                            };
                            // An owner not built yet is this user: a key listed twice.
                            let owner = owner.unwrap_or(&name);
                            errors.push(("spec.api_keys".into(), format!("key hash already belongs to user '{owner}'")))
                        }
                        None => {
                            own_keys.push(self.users.keys.len());
                            self.users.add_key(prefix, suffix, pos);
                        }
                    }
                }
                Err(m) => errors.push(("spec.api_keys".into(), m)),
            }
        }
        for p in &doc.spec.mtls_principals {
            if p.is_empty() {
                errors.push(("spec.mtls_principals".into(), "must not be empty".into()));
            } else if self.users.principals.contains_key(p.as_str()) {
                errors.push(("spec.mtls_principals".into(), format!("'{p}' already belongs to another user")));
            }
        }
        let user = match user {
            Some(u) if errors.is_empty() => u,
            _ => {
                // Keys taken above stay taken, named after this user.
                for k in own_keys {
                    self.users.keys[k].user = failed;
                }
                self.users.failed.push(name.clone());
                let file = at();
                for (field, message) in errors {
                    self.user_errors.push(PolicyError::Invalid {
                        file: file.clone(),
                        kind: "user",
                        name: name.to_string(),
                        field,
                        message,
                    });
                }
                return;
            }
        };
        for p in doc.spec.mtls_principals {
            self.users.principals.insert(p.into(), pos as usize);
        }
        self.users.add_user(user);
    }
}

/// The kind of a document, from its probe.
enum DocKind {
    AppService,
    App,
    Role,
    User,
    Unknown(Box<str>),
    Missing,
}

impl DocKind {
    fn of(probe: raw::Probe) -> Self {
        match (probe.kind, probe.app_service.is_some()) {
            (None, true) => DocKind::AppService,
            (Some(k), false) if k == "app" => DocKind::App,
            (Some(k), false) if k == "role" => DocKind::Role,
            (Some(k), false) if k == "user" => DocKind::User,
            (Some(other), _) => DocKind::Unknown(other.into()),
            (None, false) => DocKind::Missing,
        }
    }
}

fn split_digest(d: &[u8; 32]) -> ([u8; 16], [u8; 16]) {
    let (mut prefix, mut suffix) = ([0; 16], [0; 16]);
    prefix.copy_from_slice(&d[..16]);
    suffix.copy_from_slice(&d[16..]);
    (prefix, suffix)
}

/// Compiles a user's roles against its traits. `role` resolves a role name.
pub(crate) fn build_user<'r>(
    name: Arc<str>,
    role_names: &[String],
    traits: Arc<Traits>,
    role: impl Fn(&str) -> Option<&'r RoleDef>,
    shared: &mut Shared,
) -> Result<User, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut compiled = Vec::with_capacity(role_names.len());
    let mut names = Vec::with_capacity(role_names.len());
    for role_name in role_names {
        match role(role_name) {
            None => errors.push(("spec.roles".into(), format!("unknown role '{role_name}'"))),
            Some(def) => {
                names.push(def.name.clone());
                match &def.compiled {
                    Some(c) => compiled.push(c.clone()),
                    None => match def.compile(&traits, shared) {
                        Ok(c) => compiled.push(Arc::new(c)),
                        Err((field, m)) => errors.push((format!("role '{role_name}' {field}"), m)),
                    },
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let governs = |f: fn(&Rules) -> bool| compiled.iter().any(|r| f(&r.allow));
    Ok(User {
        fingerprint: super::fingerprint(&name, role_names, &traits),
        name,
        role_names: names.into(),
        governs_prompts: governs(|r| r.prompts.is_some()),
        governs_resources: governs(|r| r.resources.is_some()),
        traits,
        roles: compiled.into(),
    })
}

/// A role as written, with its templates parsed but not expanded.
#[derive(Debug)]
pub(crate) struct RoleDef {
    name: Arc<str>,
    /// Where the role's document starts, for duplicate errors.
    file: Box<str>,
    /// The templates, kept only while the role is not compiled: per user, from its traits.
    rules: Option<Box<[RawRules; 2]>>,
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

/// What one policy load compiles once and shares: name lists, their regexes, and label
/// selectors.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    sets: Interner,
    labels: HashMap<u64, Vec<Arc<LabelSelector>>>,
}

impl Shared {
    fn label_selector(&mut self, any: bool, keys: Vec<(Box<str>, Arc<NameSet>)>) -> Arc<LabelSelector> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        any.hash(&mut h);
        for (k, v) in &keys {
            (k, Arc::as_ptr(v)).hash(&mut h);
        }
        let same = |l: &LabelSelector| {
            l.any == any
                && l.keys.len() == keys.len()
                && l.keys.iter().zip(&keys).all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
        };
        let bucket = self.labels.entry(h.finish()).or_default();
        if let Some(found) = bucket.iter().find(|l| same(l)) {
            return found.clone();
        }
        let selector = Arc::new(LabelSelector { any, keys: keys.into() });
        bucket.push(selector.clone());
        selector
    }
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

    fn compile(&self, traits: &Traits, shared: &mut Shared) -> Result<Rules, (String, String)> {
        let lookup = |_: TraitNamespace, name: &str| traits.get(name).map(Vec::as_slice);
        let p = self.prefix;
        let mut compile = |field: &dyn Fn() -> String, t: &[Template]| -> Result<Arc<NameSet>, (String, String)> {
            let mut entries = Vec::with_capacity(t.len());
            for template in t {
                template.expand(lookup, &mut entries);
            }
            shared.sets.compile(&entries).map_err(|e| (field(), e.to_string()))
        };
        let mut keys = Vec::with_capacity(self.labels.len());
        for (k, v) in &self.labels {
            keys.push((k.as_str().into(), compile(&|| format!("{p}.app_labels.{k}"), v)?));
        }
        let tools = compile(&|| format!("{p}.mcp.tools"), &self.tools)?;
        let prompts = self.prompts.as_deref().map(|t| compile(&|| format!("{p}.mcp.prompts"), t)).transpose()?;
        let resources = self.resources.as_deref().map(|t| compile(&|| format!("{p}.mcp.resources"), t)).transpose()?;
        Ok(Rules { app_labels: shared.label_selector(self.any_app, keys), tools, prompts, resources })
    }
}

impl RoleDef {
    fn compile(&self, traits: &Traits, shared: &mut Shared) -> Result<CompiledRole, (String, String)> {
        let Some([allow, deny]) = self.rules.as_deref() else {
            // Only compiled roles drop their templates.
            return Err(("spec".into(), "role has no rules".into()));
        };
        Ok(CompiledRole {
            name: self.name.clone(),
            allow: allow.compile(traits, shared)?,
            deny: deny.compile(traits, shared)?,
        })
    }

    fn is_static(&self) -> bool {
        self.rules.as_deref().is_some_and(|[allow, deny]| allow.is_static() && deny.is_static())
    }

    /// Keeps the compiled form, shared by every user, and drops the templates.
    fn set_compiled(&mut self, compiled: CompiledRole) {
        self.compiled = Some(Arc::new(compiled));
        self.rules = None;
    }

    fn preset_mcp_user(shared: &mut Shared) -> Self {
        let allow = RawRules {
            any_app: true,
            tools: vec![Template::Plain("*".into())],
            prefix: "spec.allow",
            ..Default::default()
        };
        let deny = RawRules { prefix: "spec.deny", ..Default::default() };
        let mut def = RoleDef {
            name: PRESET_MCP_USER.into(),
            file: "(preset)".into(),
            rules: Some(Box::new([allow, deny])),
            compiled: None,
        };
        if let Ok(c) = def.compile(&Traits::new(), shared) {
            def.set_compiled(c);
        }
        def
    }
}

/// The 1-based line where each of `count` YAML documents starts (its `---`, or line 1 for a
/// first document without one). `None` when the markers cannot be matched to the parser's
/// documents (a `---` inside a block scalar, say): errors then name the file only.
fn document_lines(text: &str, count: usize) -> Option<Vec<u32>> {
    let is_marker = |l: &str| l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
    let mut starts = Vec::with_capacity(count);
    let mut content_seen = false;
    for (i, line) in text.lines().enumerate() {
        let first_content =
            !content_seen && !line.trim().is_empty() && !line.trim_start().starts_with('#') && !line.starts_with('%');
        if is_marker(line) || first_content {
            starts.push(u32::try_from(i + 1).ok()?);
            content_seen = true;
        }
    }
    (starts.len() == count).then_some(starts)
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
    fn users_read_before_their_roles_are_built_at_the_end() {
        let p = load(
            "kind: user\nmetadata: {name: early}\nspec: {roles: [r]}\n---\nkind: role\nversion: v8\nmetadata: {name: r}\nspec: {allow: {mcp: {tools: [a]}}}\n---\nkind: user\nmetadata: {name: late}\nspec: {roles: [r]}\n",
        )
        .expect("loads");
        let names: Vec<&str> = p.users().iter().map(|u| &*u.name).collect();
        assert_eq!(names, ["early", "late"], "document order");
        assert_eq!(p.user("early").map(|u| u.roles.len()), Some(1));
    }

    #[test]
    fn roles_and_users_with_the_same_rules_share_them() {
        let role = |n: &str| {
            format!(
                "kind: role\nversion: v8\nmetadata: {{name: {n}}}\nspec: {{allow: {{app_labels: {{env: dev}}, mcp: {{tools: [b, a, '^x.*$']}}}}}}\n---\n"
            )
        };
        let text = format!(
            "{}{}kind: user\nmetadata: {{name: u1}}\nspec: {{roles: [r1, r2]}}\n---\nkind: user\nmetadata: {{name: u2}}\nspec: {{roles: [r1, r2]}}\n",
            role("r1"),
            role("r2")
        );
        let p = load(&text).expect("loads");
        let (u1, u2) = (p.user("u1").expect("u1"), p.user("u2").expect("u2"));
        let (r1, r2) = (&u1.roles[0], &u1.roles[1]);
        assert!(Arc::ptr_eq(&r1.allow.tools, &r2.allow.tools), "one compiled tool list");
        assert!(Arc::ptr_eq(&r1.allow.app_labels, &r2.allow.app_labels), "one label selector");
        assert!(Arc::ptr_eq(&u1.roles, &u2.roles) && Arc::ptr_eq(&u1.role_names, &u2.role_names));
    }

    #[test]
    fn a_reused_key_names_its_first_owner_even_a_rejected_one() {
        let key = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
        let e = errors(&format!(
            "kind: user\nmetadata: {{name: bad}}\nspec: {{roles: [ghost], api_keys: ['{key}', '{key}']}}\n---\nkind: user\nmetadata: {{name: next}}\nspec: {{roles: [mcp-user], api_keys: ['{key}']}}\n"
        ));
        assert_eq!(e.matches("key hash already belongs to user 'bad'").count(), 2, "{e}");
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
