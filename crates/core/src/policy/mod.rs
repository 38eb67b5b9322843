//! The compiled policy: apps, users and roles after validation, with every pattern and
//! template already compiled. An invalid policy cannot exist as a [`Policy`].
//!
//! Owns the in-memory model and its lookups. Loading lives in [`load`], decisions in
//! [`engine`]; neither this module nor the engine does I/O.

pub mod condition;
#[cfg(test)]
mod condition_tests;
mod dfa;
pub mod engine;
pub mod load;
pub mod names;
pub mod pattern;
pub mod pins;
pub mod rate;
mod raw;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use engine::{Decision, Governed, Reason};
use load::RoleDef;
pub use load::{Files, NoFiles, PolicyError, PolicyErrors, Source};
use pattern::{NameSet, TraitNamespace};

/// User traits: name → values (Teleport's `traits`).
pub type Traits = BTreeMap<String, Vec<String>>;

/// Who wrote a user's traits, which decides how role templates read them: the policy's
/// author (values are patterns), or an identity provider's claims (values are literals in
/// `allow` rules unless the role sets `options.idp_trait_patterns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraitSource {
    Policy,
    IdentityProvider,
}

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
    /// The app's `kind: pins` document, compiled (none: its lists and calls are not looked at
    /// for pins, at no cost).
    pub pins: Option<Arc<pins::AppPins>>,
}

/// One `rewrite.headers` entry: a lower-cased header name and a value template.
#[derive(Debug)]
pub struct HeaderRewrite {
    pub name: Arc<str>,
    pub value: Vec<ValuePart>,
}

/// A piece of a header value template.
#[derive(Debug, PartialEq, Eq)]
pub enum ValuePart {
    Text(Box<str>),
    /// `{{internal.id_token}}`: the freshly signed ID token.
    IdToken,
    /// `{{internal.NAME}}` / `{{external.NAME}}`: the trait's values joined with `,` (a value
    /// that is empty, padded, or holds a comma or a control character removes the header).
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
    /// The user's roles, with `{{…}}` templates expanded from its traits. Shared by the
    /// users holding the same roles when none uses a template.
    pub roles: Arc<[Arc<CompiledRole>]>,
    /// Whether any role of the user has an allow list for prompts / resources.
    pub governs_prompts: bool,
    pub governs_resources: bool,
    /// Whether any role of the user has a rule in `mode: audit` / sets rate limits: a user
    /// with neither pays nothing for either feature on its checks.
    pub has_shadow_rules: bool,
    pub has_rate_limits: bool,
}

/// One role's rules, compiled.
#[derive(Debug)]
pub struct CompiledRole {
    pub name: Arc<str>,
    pub allow: Rules,
    pub deny: Rules,
    /// `spec.options.rate_limits`.
    pub rates: Arc<rate::RoleRates>,
}

/// The `allow` or `deny` half of a role. Lists and selectors are shared by every role
/// of a policy that has the same ones.
#[derive(Debug, Default)]
pub struct Rules {
    pub app_labels: Arc<LabelSelector>,
    pub tools: Arc<NameSet>,
    pub prompts: Option<Arc<NameSet>>,
    pub resources: Option<Arc<NameSet>>,
    /// `app_labels_expression`, when set.
    pub labels_expression: Option<Arc<condition::Condition>>,
    /// `mcp.tool_rules` / `prompt_rules` / `resource_rules` (empty for most roles).
    pub name_rules: Arc<[NameRule]>,
}

/// One `*_rules` entry, compiled: which names it covers, its condition, its mode.
#[derive(Debug)]
pub struct NameRule {
    pub kind: RuleKind,
    pub names: Arc<NameSet>,
    pub condition: Option<Arc<condition::Condition>>,
    /// `mode: audit`: computed and audited as a shadow decision, never decides.
    pub shadow: bool,
    /// How audit events name the rule: `tool_rules[0]`.
    pub label: Box<str>,
}

impl Rules {
    /// Whether some enforced `*_rules` entry governs this kind of name.
    pub fn has_rules(&self, kind: RuleKind) -> bool {
        self.name_rules.iter().any(|r| r.kind == kind && !r.shadow)
    }
}

/// What a `*_rules` entry governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Tool,
    Prompt,
    Resource,
}

/// `app_labels`: every key must be present with a matching value; `'*': '*'` matches any app.
#[derive(Debug, Default)]
pub struct LabelSelector {
    any: bool,
    keys: Box<[(Box<str>, Arc<NameSet>)]>,
}

impl LabelSelector {
    /// Whether it selects nothing (no `app_labels` written).
    pub fn is_empty(&self) -> bool {
        !self.any && self.keys.is_empty()
    }

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
    /// Positions in `users`, by name.
    user_by_name: Index,
    /// Positions in `users`, by [`names::fold`] of the name.
    user_by_folded_name: Index,
    api_keys: Vec<ApiKey>,
    /// Positions in `api_keys`, by digest prefix.
    key_index: Index,
    principals: HashMap<Box<str>, usize>,
    role_names: Vec<Arc<str>>,
    role_defs: HashMap<Arc<str>, Arc<RoleDef>>,
    /// What is legal but almost surely wrong (see [`Policy::warnings`]).
    warnings: Vec<PolicyError>,
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
        let i = self.user_by_name.find(self.user_by_name.hash(name), |i| &*self.users[i as usize].name == name)?;
        self.users.get(i as usize)
    }

    /// Whether `name` is, or looks like, the name of a user of this policy: equal to it
    /// after [`names::fold`] (case and compatibility forms). An identity provider's user
    /// with such a name is refused.
    pub fn name_is_taken(&self, name: &str) -> bool {
        if self.user(name).is_some() {
            return true;
        }
        let folded = names::fold(name);
        let hash = self.user_by_folded_name.hash(&*folded);
        self.user_by_folded_name.find(hash, |i| names::fold(&self.users[i as usize].name) == folded).is_some()
    }

    /// The user owning an API key: found by the first 16 bytes of its SHA-256, then the
    /// whole digest compared in constant time.
    pub fn user_by_api_key(&self, key: &[u8]) -> Option<&User> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
        let digest = digest.as_ref();
        let prefix = digest.get(..16)?;
        let i = self.key_index.find(self.key_index.hash(prefix), |i| self.api_keys[i as usize].prefix == prefix)?;
        let key = &self.api_keys[i as usize];
        let mut full = [0u8; 32];
        full[..16].copy_from_slice(&key.prefix);
        full[16..].copy_from_slice(&key.suffix);
        aws_lc_rs::constant_time::verify_slices_are_equal(&full, digest).ok()?;
        self.users.get(key.user as usize)
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

    /// How many API keys and mTLS principals each user has, by position in [`Policy::users`]:
    /// credential kinds for `mcp-warden ls users`, never the digests or principals themselves.
    pub fn credential_counts(&self) -> Vec<(usize, usize)> {
        let mut out = vec![(0, 0); self.users.len()];
        for k in &self.api_keys {
            if let Some(c) = out.get_mut(k.user as usize) {
                c.0 += 1;
            }
        }
        for &u in self.principals.values() {
            if let Some(c) = out.get_mut(u) {
                c.1 += 1;
            }
        }
        out
    }

    /// Legal but almost surely wrong, each located like an error: roles whose app labels
    /// match no app, users no credential can reach, non-v8 roles, files listed twice.
    pub fn warnings(&self) -> &[PolicyError] {
        &self.warnings
    }

    /// Carries over what the pins of `old` (the policy this one replaces) remember, for names
    /// of the same app and kind pinned to the same digest in both: the drifts seen
    /// ([`pins::AppPins::inherit`]) and the text last found pinned
    /// ([`pins::AppPins::carry_memo_from`]).
    pub fn inherit_pins(&self, old: &Policy) {
        for app in &self.apps {
            if let (Some(new), Some(was)) = (&app.pins, old.app(&app.name).and_then(|a| a.pins.as_deref())) {
                new.inherit(was);
                new.carry_memo_from(was);
            }
        }
    }

    /// Compiles an identity that is not in policy (one an identity provider vouched for):
    /// its roles must exist here. Errors name the unknown role or bad expanded pattern.
    pub fn build_user(&self, name: &str, roles: &[String], traits: Traits) -> Result<User, UnusableIdentity> {
        let mut shared = load::Shared::default();
        let role = |r: &str| self.role_defs.get(r).map(|d| &**d);
        load::build_user(name.into(), roles, Arc::new(traits), TraitSource::IdentityProvider, role, &mut shared)
            .map_err(|problems| UnusableIdentity { problems })
    }
}

/// Why [`Policy::build_user`] refused an identity: each problem with the field it is in (an
/// unknown role, a pattern its traits expand to that does not compile).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
pub struct UnusableIdentity {
    pub problems: Vec<(String, String)>,
}

/// How a user's `api_keys` entry names a key: `sha256:` and the hex SHA-256 of its text.
pub fn api_key_digest(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An API key's SHA-256 digest, split for lookup by its first half.
#[derive(Debug, Clone, Copy)]
struct ApiKey {
    prefix: [u8; 16],
    suffix: [u8; 16],
    /// Position in `Policy::users`.
    user: u32,
}

/// Positions of a vector's items by hash, 4 bytes a slot (open addressing, linear probing):
/// the items themselves, names or digests, are not copied into the index.
#[derive(Debug, Default)]
struct Index {
    slots: Box<[u32]>,
    len: usize,
    hasher: std::hash::RandomState,
}

impl Index {
    const EMPTY: u32 = u32::MAX;

    fn hash<K: std::hash::Hash + ?Sized>(&self, key: &K) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    /// The position whose item `is` the one sought.
    fn find(&self, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = hash as usize & mask;
        loop {
            match self.slots[i] {
                Self::EMPTY => return None,
                pos if is(pos) => return Some(pos),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Makes room for `more` positions; `hash_of` rehashes the positions already held.
    fn reserve(&mut self, more: usize, hash_of: impl Fn(&Self, u32) -> u64) {
        let want = ((self.len + more) * 4 / 3 + 1).next_power_of_two();
        if want <= self.slots.len() {
            return;
        }
        let old = std::mem::replace(&mut self.slots, vec![Self::EMPTY; want].into());
        for pos in old.iter().copied().filter(|&p| p != Self::EMPTY) {
            let hash = hash_of(self, pos);
            self.place(hash, pos);
        }
    }

    /// Adds `pos` (absent) under `hash`; `hash_of` rehashes the others when it grows.
    fn insert(&mut self, hash: u64, pos: u32, hash_of: impl Fn(&Self, u32) -> u64) {
        self.reserve(1, hash_of);
        self.place(hash, pos);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, pos: u32) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while self.slots[i] != Self::EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = pos;
    }
}

/// A stable hash of what a token or a filtered view says about a user.
pub fn fingerprint(name: &str, roles: &[String], traits: &Traits) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (name, roles, traits).hash(&mut h);
    h.finish()
}
