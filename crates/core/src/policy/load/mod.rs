//! Loading: YAML files and directories → raw resources → a validated [`Policy`].
//!
//! Owns reading policy sources, multi-document parsing, the error types, and the order of
//! the stages (parse, apps, roles, users); the rules for each kind of resource live in the
//! submodules `apps`, `roles` and `users`. Files are listed and read through [`Files`],
//! which the service implements on the disk; the core itself does no I/O. All errors are
//! collected (not just the first) and each names the file, the line or the resource, and
//! the field or pattern at fault.

mod apps;
mod name_rules;
mod pins;
mod roles;
mod users;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::raw;
use super::{Policy, Traits};
use crate::located::{Documents, Loc};
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

/// One policy error (or, in [`Policy::warnings`], one warning). Each names where the
/// offending node is (file:line:column) and its field path.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{at}: cannot read: {reason}")]
    Io { at: Loc, reason: String },
    #[error("{at}: {message}")]
    Parse { at: Loc, message: String },
    #[error("{at}: {kind} '{name}': {field}: {message}")]
    Invalid { at: Loc, kind: &'static str, name: String, field: String, message: String },
    #[error("{at}: duplicate {kind} '{name}' (first defined at {first})")]
    Duplicate { at: Loc, kind: &'static str, name: String, first: Loc },
    #[error("no policy files found in {0}")]
    Empty(String),
}

impl PolicyError {
    /// Where it is; `Empty` names a directory only.
    pub fn loc(&self) -> Loc {
        match self {
            PolicyError::Io { at, .. }
            | PolicyError::Parse { at, .. }
            | PolicyError::Invalid { at, .. }
            | PolicyError::Duplicate { at, .. } => at.clone(),
            PolicyError::Empty(dir) => Loc::file(dir),
        }
    }

    fn locs_mut(&mut self) -> (Option<&mut Loc>, Option<&mut Loc>) {
        match self {
            PolicyError::Duplicate { at, first, .. } => (Some(at), Some(first)),
            PolicyError::Io { at, .. } | PolicyError::Parse { at, .. } | PolicyError::Invalid { at, .. } => {
                (Some(at), None)
            }
            PolicyError::Empty(_) => (None, None),
        }
    }
}

/// Every error found while loading, sorted by file and line, each once; displayed one per line.
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

/// What loading needs from a file system. The service implements it on the disk
/// (`mcp_warden::policy_files`); [`NoFiles`] has none.
pub trait Files {
    /// The policy files a path names: the path itself if it is a file; for a directory its
    /// `*.yaml` and `*.yml` files, recursively, in name order, skipping entries whose name
    /// starts with `.` (Kubernetes `..data` mounts).
    fn list(&self, path: &Path) -> std::io::Result<Vec<PathBuf>>;
    /// One name for every path to the same file, so a file listed twice is read once.
    fn canonical(&self, path: &Path) -> PathBuf;
    /// A file's text.
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// No file system: inline sources load, a path is an error naming it.
#[derive(Debug, Clone, Copy)]
pub struct NoFiles;

impl Files for NoFiles {
    fn list(&self, _: &Path) -> std::io::Result<Vec<PathBuf>> {
        Err(no_file_system())
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        path.to_owned()
    }

    fn read(&self, _: &Path) -> std::io::Result<String> {
        Err(no_file_system())
    }
}

fn no_file_system() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Unsupported, "no file system here: only inline policy loads")
}

impl Policy {
    /// Parses, validates and compiles inline sources, or returns every error found. A
    /// [`Source::Path`] is an error here: the service loads paths through [`Files`].
    pub fn load(sources: &[Source]) -> Result<Policy, PolicyErrors> {
        Policy::load_with(sources, &NoFiles)
    }

    /// Reads (through `files`), parses, validates and compiles every source, or returns
    /// every error found.
    pub fn load_with(sources: &[Source], files: &dyn Files) -> Result<Policy, PolicyErrors> {
        let mut loader = Loader::default();
        for source in sources {
            loader.read_source(source, files);
        }
        loader.finish(sources, files)
    }
}

struct Raw<T> {
    node: Node,
    doc: T,
}

/// A document: the file it is in (an index into `Loader::files`) and its place there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Node {
    file: u32,
    doc: u32,
}

/// A finding whose line is not known yet: the document and field path of its node (and of
/// the first definition, for a duplicate). Lines are looked up once loading is over.
struct Pending {
    error: PolicyError,
    at: Option<(Node, String)>,
    first: Option<(Node, String)>,
}

impl Pending {
    fn new(error: PolicyError) -> Self {
        Pending { error, at: None, first: None }
    }
}

/// Roles are compiled and users built as their documents are read, so the raw documents
/// of a large policy are never all held at once. Findings are sorted by file and line once
/// loading is over.
#[derive(Default)]
struct Loader {
    errors: Vec<Pending>,
    warnings: Vec<Pending>,
    /// Every file read, by name; a `Node` names one by position.
    files: Vec<Arc<str>>,
    /// Canonical paths read so far: a file listed twice is read once.
    read: HashSet<PathBuf>,
    apps: Vec<Raw<RawApp>>,
    pins: Vec<Raw<crate::policy::pins::PinsDoc>>,
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
    fn read_source(&mut self, source: &Source, fs: &dyn Files) {
        match source {
            Source::Inline { name, text } => self.parse_file(name, text),
            Source::Path(path) => match fs.list(path) {
                Ok(files) if files.is_empty() => {
                    self.errors.push(Pending::new(PolicyError::Empty(path.display().to_string())));
                }
                Ok(files) => {
                    for file in files {
                        let name = file.display().to_string();
                        if !self.read.insert(fs.canonical(&file)) {
                            self.warnings.push(Pending::new(PolicyError::Parse {
                                at: Loc::file(&name),
                                message: "listed more than once (through the config's policy entries); read once"
                                    .into(),
                            }));
                            continue;
                        }
                        match fs.read(&file) {
                            Ok(text) => self.parse_file(&name, &text),
                            Err(e) => self
                                .errors
                                .push(Pending::new(PolicyError::Io { at: Loc::file(&name), reason: e.to_string() })),
                        }
                    }
                }
                Err(e) => self.errors.push(Pending::new(PolicyError::Io {
                    at: Loc::file(&path.display().to_string()),
                    reason: e.to_string(),
                })),
            },
        }
    }

    fn parse_file(&mut self, file: &str, text: &str) {
        let parse_err = |e: yaml_serde::Error| {
            let (at, message) = crate::located::yaml_error(&e);
            let at = at.map_or_else(|| Loc::file(file), |a| Loc::at(file, a));
            Pending::new(PolicyError::Parse { at, message })
        };
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
        let file_index = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
        self.files.push(file.into());
        // Sized once: a policy of many users does not grow (and copy) its tables repeatedly.
        self.users.reserve(kinds.iter().filter(|k| matches!(k, Some(DocKind::User))).count());
        for (i, (kind, doc)) in kinds.into_iter().zip(yaml_serde::Deserializer::from_str(text)).enumerate() {
            let Some(kind) = kind else { continue }; // an empty document
            let node = Node { file: file_index, doc: u32::try_from(i).unwrap_or(u32::MAX) };
            let result = match kind {
                DocKind::AppService => raw::AppServiceDoc::deserialize(doc).map(|d| self.add_app_service(node, d)),
                DocKind::App => raw::AppDoc::deserialize(doc).map(|d| self.add_app(node, d)),
                DocKind::Role => raw::RoleDoc::deserialize(doc).map(|d| self.add_role(node, d)),
                DocKind::User => raw::UserDoc::deserialize(doc).map(|d| self.add_user(node, d)),
                DocKind::Pins => crate::policy::pins::PinsDoc::deserialize(doc).map(|d| self.add_pins(node, d)),
                DocKind::Unknown(other) => {
                    let message = format!("kind: unknown kind '{other}' (expected app, role, user or pins)");
                    self.errors.push(self.parse_at(node, "kind", message));
                    continue;
                }
                DocKind::Missing => {
                    let message = "a document needs `kind:` (app, role, user, pins) or an `app_service:` block".into();
                    self.errors.push(self.parse_at(node, "", message));
                    continue;
                }
            };
            if let Err(e) = result {
                self.errors.push(parse_err(e));
            }
        }
    }

    /// A message about the node at `path` of a document.
    fn parse_at(&self, node: Node, path: &str, message: String) -> Pending {
        let error = PolicyError::Parse { at: self.loc(node), message };
        Pending { error, at: Some((node, path.to_owned())), first: None }
    }

    /// An invalid field of a resource; the field path is shown and its node located.
    fn invalid(&self, node: Node, kind: &'static str, name: &str, field: String, message: String) -> Pending {
        let at = Some((node, field.clone()));
        let message = one_line(&message);
        Pending {
            error: PolicyError::Invalid { at: self.loc(node), kind, name: name.to_owned(), field, message },
            at,
            first: None,
        }
    }

    fn duplicate(&self, kind: &'static str, name: &str, at: (Node, String), first: (Node, String)) -> Pending {
        let error =
            PolicyError::Duplicate { at: self.loc(at.0), kind, name: name.to_owned(), first: self.loc(first.0) };
        Pending { error, at: Some(at), first: Some(first) }
    }

    fn loc(&self, node: Node) -> Loc {
        Loc::file(self.files.get(node.file as usize).map_or("", |f| f))
    }

    fn finish(mut self, sources: &[Source], fs: &dyn Files) -> Result<Policy, PolicyErrors> {
        let mut policy = Policy::default();
        self.compile_apps(&mut policy);
        self.compile_pins(&mut policy);
        if !self.role_index.contains_key(PRESET_MCP_USER) {
            self.roles.push(RoleDef::preset_mcp_user(&mut self.shared));
            self.role_index.insert(PRESET_MCP_USER.into(), self.roles.len() - 1);
        }
        for Raw { node, doc } in std::mem::take(&mut self.deferred) {
            self.build_and_add_user(node, doc);
        }
        self.warn_roles_matching_no_app(&policy);
        std::mem::take(&mut self.users).move_into(&mut policy);
        policy.role_names = self.roles.iter().map(|r| r.name.clone()).collect();
        policy.role_defs = std::mem::take(&mut self.roles).into_iter().map(|r| (r.name.clone(), Arc::new(r))).collect();
        let mut texts = Texts { sources, files: &self.files, fs, read: HashMap::new() };
        let errors = texts.resolve(std::mem::take(&mut self.errors));
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        policy.warnings = texts.resolve(std::mem::take(&mut self.warnings));
        Ok(policy)
    }
}

/// The text of each file, read again (or taken from an inline source) to find lines.
struct Texts<'a> {
    sources: &'a [Source],
    files: &'a [Arc<str>],
    fs: &'a dyn Files,
    read: HashMap<u32, Option<Documents>>,
}

impl Texts<'_> {
    /// Fills in every finding's lines, then sorts by file and line and drops repeats.
    fn resolve(&mut self, pending: Vec<Pending>) -> Vec<PolicyError> {
        let mut out: Vec<PolicyError> = Vec::with_capacity(pending.len());
        for Pending { mut error, at, first } in pending {
            let (at_loc, first_loc) = error.locs_mut();
            for (loc, node) in [(at_loc, at), (first_loc, first)] {
                if let (Some(loc), Some((node, path))) = (loc, node)
                    && let Some(found) = self.documents(node.file).and_then(|d| d.locate(node.doc as usize, &path))
                {
                    (loc.line, loc.column) = found;
                }
            }
            out.push(error);
        }
        out.sort_by_cached_key(|e| (e.loc(), e.to_string()));
        out.dedup_by(|a, b| a.to_string() == b.to_string());
        out
    }

    fn documents(&mut self, file: u32) -> Option<&Documents> {
        let (sources, files, fs) = (self.sources, self.files, self.fs);
        self.read
            .entry(file)
            .or_insert_with(|| {
                let name = files.get(file as usize)?;
                let inline = sources.iter().find_map(|s| match s {
                    Source::Inline { name: n, text } if **n == **name => Some(text.clone()),
                    _ => None,
                });
                inline.or_else(|| fs.read(Path::new(&**name)).ok()).map(Documents::new)
            })
            .as_ref()
    }
}

/// Regex errors span several lines (pattern, caret, reason): one line keeps logs whole.
fn one_line(message: &str) -> String {
    if !message.contains('\n') {
        return message.to_owned();
    }
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kind of a document, from its probe.
enum DocKind {
    AppService,
    App,
    Role,
    User,
    Pins,
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
            (Some(k), false) if k == "pins" => DocKind::Pins,
            (Some(other), _) => DocKind::Unknown(other.into()),
            (None, false) => DocKind::Missing,
        }
    }
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
        assert!(e.starts_with("test.yaml:7:7: spec.allow.mcp: unknown field `toolz`"), "{e}");
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
    fn validation_errors_name_the_offending_node_not_the_document() {
        let e = errors(
            "# roles\nkind: role\nversion: v8\nmetadata: {name: ok}\n---\nkind: user\nmetadata: {name: u}\nspec: {roles: [ghost]}\n",
        );
        assert_eq!(e, "test.yaml:8:16: user 'u': spec.roles[0]: unknown role 'ghost'");
        let e = errors(
            "kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    mcp:\n      tools:\n      - a\n      - b\n      - '^(x$'\n",
        );
        assert!(e.starts_with("test.yaml:10:9: role 'r': spec.allow.mcp.tools[2]: "), "{e}");
        assert_eq!(e.lines().count(), 1, "a regex error is one line: {e}");
    }

    /// One pinned position per kind of error, several in multi-document files.
    #[test]
    fn every_error_kind_names_its_line_and_column() {
        let app = |name: &str, uri: &str| format!("kind: app\nmetadata: {{name: {name}}}\nspec: {{uri: '{uri}'}}\n");
        for (text, want) in [
            // Duplicate app: the second name, and the first's position.
            (
                format!("{}---\n{}", app("a", "https://h"), app("a", "https://h")),
                "test.yaml:6:18: duplicate app 'a' (first defined at test.yaml:2:18)",
            ),
            (format!("---\n{}", app("a", "ftp://h")), "test.yaml:4:13: app 'a': spec.uri: 'ftp://h' must start with"),
            (
                "app_service:\n  apps:\n  - name: a\n    uri: https://h\n  - name: b\n    uri: https://h\n    rewrite: {headers: ['X: 1', 'Host: evil']}\n".into(),
                "test.yaml:7:33: app 'b': app_service.apps[1].rewrite.headers[1]: header 'Host' cannot be rewritten",
            ),
            (
                "kind: role\nversion: v8\nmetadata: {name: r}\n---\nkind: role\nversion: v8\nmetadata: {name: r}\n".into(),
                "test.yaml:7:18: duplicate role 'r' (first defined at test.yaml:3:18)",
            ),
            ("kind: role\nversion: v6\nmetadata: {name: r}\n".into(), "test.yaml:2:10: role 'r': version: unsupported"),
            (
                "kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {'*': dev}\n".into(),
                "test.yaml:6:17: role 'r': spec.allow.app_labels: the '*' key",
            ),
            (
                "kind: user\nmetadata: {name: u}\nspec:\n  roles: [mcp-user]\n  api_keys: [plain]\n".into(),
                "test.yaml:5:14: user 'u': spec.api_keys[0]: an API key is stored as",
            ),
            (
                "kind: user\nmetadata: {name: u}\nspec: {roles: [mcp-user], mtls_principals: [p]}\n---\nkind: user\nmetadata: {name: u}\nspec: {roles: [mcp-user], mtls_principals: [q]}\n".into(),
                "test.yaml:6:18: duplicate user 'u' (first defined at test.yaml:2:18)",
            ),
            ("kind: rol\nmetadata: {name: r}\n".into(), "test.yaml:1:7: kind: unknown kind 'rol'"),
            ("---\n---\nmetadata: {name: r}\n".into(), "test.yaml:3:1: a document needs `kind:`"),
            ("kind: role\nversion: v8\nmetadata: {name: r}\nspec: [\n".into(), "test.yaml:5:1: "),
        ] {
            let e = errors(&text);
            assert!(e.starts_with(want), "{text}\nwant: {want}\ngot:  {e}");
        }
    }

    #[test]
    fn a_bad_regex_in_a_role_is_reported_once_not_under_each_user() {
        let e = errors(
            "kind: role\nversion: v8\nmetadata: {name: r}\nspec: {allow: {mcp: {tools: ['{{internal.t}}', '^(x$']}}}\n---\nkind: user\nmetadata: {name: u1}\nspec: {roles: [r], api_keys: []}\n---\nkind: user\nmetadata: {name: u2}\nspec: {roles: [r]}\n",
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("test.yaml:4:48: role 'r': spec.allow.mcp.tools[1]"), "{e}");
    }

    #[test]
    fn errors_are_sorted_by_file_and_line() {
        let e = errors(
            "kind: user\nmetadata: {name: u}\nspec: {roles: [ghost]}\n---\nkind: role\nversion: v1\nmetadata: {name: r}\n---\nkind: app\nmetadata: {name: 'a b'}\nspec: {uri: 'https://h'}\n",
        );
        let lines: Vec<u32> =
            e.lines().map(|l| l.split(':').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)).collect();
        assert_eq!(lines, [3, 6, 10], "{e}");
    }

    #[test]
    fn warnings_are_located_like_errors() {
        let p = load(
            "kind: role\nversion: v7\nmetadata: {name: r}\nspec: {allow: {app_labels: {env: prod}, mcp: {tools: [a]}}}\n---\nkind: user\nmetadata: {name: u}\nspec: {roles: [r]}\n",
        )
        .expect("legal");
        let w: Vec<String> = p.warnings().iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("test.yaml:2:10: role 'r': version: a v7 role"), "{w:?}");
        assert!(w[1].starts_with("test.yaml:4:28: role 'r': spec.allow.app_labels: matches no app"), "{w:?}");
        assert!(w[2].starts_with("test.yaml:8:7: user 'u': spec: has no api_keys"), "{w:?}");
    }

    #[test]
    fn all_errors_are_reported_not_just_the_first() {
        let e = errors("kind: user\nmetadata: {name: u}\nspec: {roles: [a, b]}\n");
        assert_eq!(e.lines().count(), 2, "{e}");
    }
}
