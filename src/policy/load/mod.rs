//! Loading: YAML files and directories → raw resources → a validated [`Policy`].
//!
//! Owns reading policy sources, multi-document parsing, the error types, and the order of
//! the stages (parse, apps, roles, users); the rules for each kind of resource live in the
//! submodules `apps`, `roles` and `users`, and only this module does I/O. All errors are
//! collected (not just the first) and each names the file, the line or the resource, and
//! the field or pattern at fault. Directories are read in name order; entries starting
//! with `.` are skipped (Kubernetes `..data` mounts).

mod apps;
mod name_rules;
mod roles;
mod users;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::raw;
use super::{Policy, Traits};
use apps::RawApp;
pub use roles::PRESET_MCP_USER;
pub(crate) use roles::{RoleDef, Shared};
use users::UserTable;
pub(crate) use users::build_user;

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
        std::mem::take(&mut self.users).move_into(&mut policy);
        policy.role_names = self.roles.iter().map(|r| r.name.clone()).collect();
        policy.role_defs = std::mem::take(&mut self.roles).into_iter().map(|r| (r.name.clone(), Arc::new(r))).collect();
        let mut errors = self.errors;
        errors.extend(self.app_errors);
        errors.extend(self.role_errors);
        errors.extend(self.user_errors);
        if errors.is_empty() { Ok(policy) } else { Err(PolicyErrors(errors)) }
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

/// Helpers for the tests of this module and its submodules.
#[cfg(test)]
mod test_support {
    use super::{Policy, PolicyErrors, Source};

    pub(super) fn load(text: &str) -> Result<Policy, PolicyErrors> {
        Policy::load(&[Source::inline("test.yaml", text)])
    }

    pub(super) fn errors(text: &str) -> String {
        load(text).expect_err("policy must be rejected").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{errors, load};
    use super::*;
    use crate::policy::ValuePart;

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
    fn unknown_field_names_the_file_line_and_field() {
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    mcp:\n      toolz: [a]\n");
        assert!(e.starts_with("test.yaml:"), "{e}");
        assert!(e.contains("toolz"), "{e}");
        assert!(e.contains("line 7"), "{e}");
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
    fn directory_sources_skip_hidden_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), SEED_ROLE).expect("write");
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        std::fs::write(dir.path().join("..data/a.yaml"), SEED_ROLE).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not yaml").expect("write");
        Policy::load(&[Source::Path(dir.path().to_owned())]).expect("hidden copies are not loaded twice");
    }
}
