//! The compiled policy: apps, users and roles after validation, with every pattern and
//! template already compiled. An invalid policy cannot exist as a [`Policy`].
//!
//! Owns the in-memory model and its lookups. Loading lives in [`load`], decisions in
//! [`engine`]; neither this module nor the engine does I/O.

pub mod engine;
pub mod load;
pub mod pattern;
mod raw;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use engine::{Decision, Governed, Reason};
use load::RoleDef;
pub use load::{PolicyError, PolicyErrors, Source};
use pattern::{NameSet, TraitNamespace};

/// User traits: name → values (Teleport's `traits`).
pub type Traits = BTreeMap<String, Vec<String>>;

/// An MCP application: an upstream URI and how requests to it are rewritten.
#[derive(Debug)]
pub struct App {
    pub name: Arc<str>,
    /// The configured URI, exactly as written (`mcp+https://…`): the ID token's `aud`.
    pub uri: Arc<str>,
    pub description: Option<Box<str>>,
    pub public_addr: Option<Box<str>>,
    pub labels: BTreeMap<String, String>,
    pub rewrite: Vec<HeaderRewrite>,
    pub client_id: Option<Arc<str>>,
    /// Whether audit events of this app carry `tools/call` arguments (off by default: they
    /// can hold secrets).
    pub audit_arguments: bool,
    pub scope: Option<Arc<str>>,
}

/// One `rewrite.headers` entry: a lower-cased header name and a value template.
#[derive(Debug)]
pub struct HeaderRewrite {
    pub name: Box<str>,
    pub value: Vec<ValuePart>,
}

/// A piece of a header value template.
#[derive(Debug, PartialEq, Eq)]
pub enum ValuePart {
    Text(Box<str>),
    /// `{{internal.id_token}}`: the freshly signed ID token.
    IdToken,
    /// `{{internal.NAME}}` / `{{external.NAME}}`: the trait's values joined with `,`.
    Trait(TraitNamespace, Box<str>),
}

/// A user after its roles were compiled against its traits.
#[derive(Debug)]
pub struct User {
    pub name: Arc<str>,
    pub role_names: Arc<[Arc<str>]>,
    pub traits: Arc<Traits>,
    /// Hash of name, roles and traits: tokens and views minted for one identity are never
    /// reused for another.
    pub fingerprint: u64,
    /// The user's roles, with `{{…}}` templates expanded from its traits.
    pub roles: Vec<Arc<CompiledRole>>,
    /// Whether any role of the user has an allow list for prompts / resources.
    pub governs_prompts: bool,
    pub governs_resources: bool,
}

/// One role's rules, compiled.
#[derive(Debug)]
pub struct CompiledRole {
    pub name: Arc<str>,
    pub allow: Rules,
    pub deny: Rules,
}

/// The `allow` or `deny` half of a role.
#[derive(Debug, Default)]
pub struct Rules {
    pub app_labels: LabelSelector,
    pub tools: NameSet,
    pub prompts: Option<NameSet>,
    pub resources: Option<NameSet>,
}

/// `app_labels`: every key must be present with a matching value; `'*': '*'` matches any app.
#[derive(Debug, Default)]
pub struct LabelSelector {
    any: bool,
    keys: Vec<(Box<str>, NameSet)>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.any {
            return true;
        }
        !self.keys.is_empty()
            && self.keys.iter().all(|(k, values)| labels.get(&**k).is_some_and(|v| values.is_match(v)))
    }
}

/// A validated policy snapshot.
#[derive(Debug, Default)]
pub struct Policy {
    apps: Vec<App>,
    app_by_name: HashMap<Box<str>, usize>,
    app_by_host: HashMap<Box<str>, usize>,
    users: Vec<User>,
    user_by_name: HashMap<Box<str>, usize>,
    /// First 16 bytes of SHA-256(key) → (user, full digest); the digest is then compared in
    /// constant time.
    api_keys: HashMap<u128, (usize, [u8; 32])>,
    principals: HashMap<Box<str>, usize>,
    role_names: Vec<Arc<str>>,
    role_defs: HashMap<Arc<str>, Arc<RoleDef>>,
}

impl Policy {
    pub fn app(&self, name: &str) -> Option<&App> {
        self.app_by_name.get(name).map(|&i| &self.apps[i])
    }

    /// The app whose `public_addr` is `host` (a `:port` suffix is ignored when needed).
    pub fn app_by_host(&self, host: &str) -> Option<&App> {
        let found = self.app_by_host.get(host).or_else(|| {
            let (bare, port) = host.rsplit_once(':')?;
            port.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            self.app_by_host.get(bare)
        });
        found.map(|&i| &self.apps[i])
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.user_by_name.get(name).map(|&i| &self.users[i])
    }

    /// The user owning an API key, compared in constant time on the full digest.
    pub fn user_by_api_key(&self, key: &[u8]) -> Option<&User> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
        let digest = digest.as_ref();
        let prefix = u128::from_be_bytes(digest[..16].try_into().ok()?);
        let (user, full) = self.api_keys.get(&prefix)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(full, digest).ok()?;
        Some(&self.users[*user])
    }

    pub fn user_by_principal(&self, principal: &str) -> Option<&User> {
        self.principals.get(principal).map(|&i| &self.users[i])
    }

    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn role_names(&self) -> &[Arc<str>] {
        &self.role_names
    }

    /// Compiles an identity that is not in policy (one an identity provider vouched for):
    /// its roles must exist here. Errors name the unknown role or bad expanded pattern.
    pub fn build_user(&self, name: &str, roles: &[String], traits: Traits) -> Result<User, String> {
        load::build_user(name, roles, traits, |r| self.role_defs.get(r).map(|d| &**d))
            .map_err(|errors| errors.into_iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))
    }
}

/// A stable hash of what a token or a filtered view says about a user.
pub fn fingerprint(name: &str, roles: &[String], traits: &Traits) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (name, roles, traits).hash(&mut h);
    h.finish()
}
