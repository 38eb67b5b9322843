//! Users: `kind: user` (v2) documents, built into [`User`]s as they are read, and the
//! tables of names, API-key digests and mTLS principals that find them.
//!
//! Owns the user rules (known roles, unique names, keys and principals, `sha256:` key
//! hashes) and compiling a user's roles against its traits, for policy users and for
//! identities an identity provider vouched for alike. Reads no files.

use std::collections::HashMap;
use std::sync::Arc;

use super::roles::{RoleDef, Shared};
use super::{Loader, Node, Raw};
use crate::policy::{ApiKey, CompiledRole, Index, Policy, RuleKind, Rules, TraitSource, Traits, User, names, raw};

/// The users built so far and their lookups, moved into the [`Policy`] at the end.
#[derive(Default)]
pub(super) struct UserTable {
    users: Vec<User>,
    /// Each user's document, for duplicate errors (not kept in the policy).
    nodes: Vec<Node>,
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
    pub(super) fn reserve(&mut self, more: usize) {
        let Self { users, by_name, keys, key_index, .. } = self;
        users.reserve_exact(more);
        by_name.reserve(more, |idx, p| idx.hash(&*users[p as usize].name));
        keys.reserve_exact(more);
        key_index.reserve(more, |idx, p| idx.hash(&keys[p as usize].prefix));
    }

    /// The document of the accepted user named `name`.
    fn user_node(&self, name: &str) -> Option<Node> {
        let p = self.by_name.find(self.by_name.hash(name), |p| &*self.users[p as usize].name == name)?;
        self.nodes.get(p as usize).copied()
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

    fn add_user(&mut self, user: User, node: Node) {
        self.nodes.push(node);
        let Self { users, by_name, .. } = self;
        let pos = users.len() as u32;
        let hash = by_name.hash(&*user.name);
        users.push(user);
        by_name.insert(hash, pos, |idx, p| idx.hash(&*users[p as usize].name));
    }

    /// Moves the users and their lookups into the policy.
    pub(super) fn move_into(self, policy: &mut Policy) {
        let UserTable { users, by_name, keys, key_index, principals, .. } = self;
        // Look-alike names are found by their folded form, which is not stored: a hit is
        // confirmed by folding the policy user's name again.
        let folded = |idx: &Index, p: u32| idx.hash(&*names::fold(&users[p as usize].name));
        let mut by_folded = Index::default();
        by_folded.reserve(users.len(), folded);
        for pos in 0..users.len() as u32 {
            by_folded.insert(folded(&by_folded, pos), pos, folded);
        }
        policy.user_by_folded_name = by_folded;
        policy.users = users;
        policy.user_by_name = by_name;
        policy.api_keys = keys;
        policy.key_index = key_index;
        policy.principals = principals;
    }
}

impl Loader {
    /// Builds a user now when every role it names is known, else defers it (and every
    /// later user) to the end of the load.
    pub(super) fn add_user(&mut self, node: Node, doc: raw::UserDoc) {
        if !self.deferred.is_empty() || doc.spec.roles.iter().any(|r| !self.role_index.contains_key(r.as_str())) {
            self.deferred.push(Raw { node, doc });
            return;
        }
        self.build_and_add_user(node, doc);
    }

    /// Builds and adds one user; errors and warnings name fields of its document `node`.
    pub(super) fn build_and_add_user(&mut self, node: Node, doc: raw::UserDoc) {
        let name: Arc<str> = doc.metadata.name.into();
        let mut errors: Vec<(String, String)> = Vec::new();
        if let Some(first) = self.users.user_node(&name) {
            let path = || "metadata.name".to_owned();
            self.errors.push(self.duplicate("user", &name, (node, path()), (first, path())));
            return;
        }
        if name.is_empty() {
            errors.push(("metadata.name".into(), "must not be empty".into()));
        }
        if let Some(v) = doc.version.as_deref().filter(|v| *v != "v2") {
            errors.push(("version".into(), format!("unsupported user version '{v}' (use v2)")));
        }
        if doc.spec.api_keys.is_empty() && doc.spec.mtls_principals.is_empty() {
            let message = "has no api_keys and no mtls_principals: no request can authenticate as this user (identity-provider users get their roles from authentication.jwt.claims_to_roles)".into();
            self.warnings.push(self.invalid(node, "user", &name, "spec".into(), message));
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
        let user = match build_user(name.clone(), &doc.spec.roles, traits, TraitSource::Policy, role, shared) {
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
        for (i, key) in doc.spec.api_keys.iter().enumerate() {
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
                            errors.push((
                                format!("spec.api_keys[{i}]"),
                                format!("key hash already belongs to user '{owner}'"),
                            ))
                        }
                        None => {
                            own_keys.push(self.users.keys.len());
                            self.users.add_key(prefix, suffix, pos);
                        }
                    }
                }
                Err(e) => errors.push((format!("spec.api_keys[{i}]"), e.to_string())),
            }
        }
        for (i, p) in doc.spec.mtls_principals.iter().enumerate() {
            let field = || format!("spec.mtls_principals[{i}]");
            if p.is_empty() {
                errors.push((field(), "must not be empty".into()));
            } else if self.users.principals.contains_key(p.as_str()) {
                errors.push((field(), format!("'{p}' already belongs to another user")));
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
                for (field, message) in errors {
                    self.errors.push(self.invalid(node, "user", &name, field, message));
                }
                return;
            }
        };
        for p in doc.spec.mtls_principals {
            self.users.principals.insert(p.into(), pos as usize);
        }
        self.users.add_user(user, node);
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
    source: TraitSource,
    role: impl Fn(&str) -> Option<&'r RoleDef>,
    shared: &mut Shared,
) -> Result<User, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut compiled = Vec::with_capacity(role_names.len());
    let mut names = Vec::with_capacity(role_names.len());
    for (i, role_name) in role_names.iter().enumerate() {
        match role(role_name) {
            None => errors.push((format!("spec.roles[{i}]"), format!("unknown role '{role_name}'"))),
            // Its errors are the role's, reported once; the policy is rejected anyway.
            Some(def) if def.invalid => {}
            Some(def) => {
                names.push(def.name.clone());
                match &def.compiled {
                    Some(c) => compiled.push(c.clone()),
                    None => match def.compile(&traits, source, shared) {
                        Ok(c) => compiled.push(Arc::new(c)),
                        Err((field, m)) => {
                            errors.push((format!("spec.roles[{i}]"), format!("role '{role_name}': {field}: {m}")))
                        }
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
        fingerprint: crate::policy::fingerprint(&name, role_names, &traits),
        name,
        role_names: names.into(),
        governs_prompts: governs(|r| r.prompts.is_some() || r.has_rules(RuleKind::Prompt)),
        governs_resources: governs(|r| r.resources.is_some() || r.has_rules(RuleKind::Resource)),
        has_shadow_rules: compiled
            .iter()
            .any(|r| [&r.allow, &r.deny].iter().any(|h| h.name_rules.iter().any(|x| x.shadow))),
        has_rate_limits: compiled.iter().any(|r| r.rates.per_user.is_some() || !r.rates.per_tool.is_empty()),
        traits,
        roles: compiled.into(),
    })
}

/// An `api_keys` entry that is not `sha256:` and 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum KeyHashError {
    #[error("an API key is stored as 'sha256:<64 hex digits>' (see `mcp-warden hash-key`)")]
    NoPrefix,
    #[error("'{0}': expected 64 hex digits after 'sha256:'")]
    Length(String),
    #[error("'{0}': not hex")]
    NotHex(String),
}

fn parse_key_hash(s: &str) -> Result<[u8; 32], KeyHashError> {
    let hex = s.strip_prefix("sha256:").ok_or(KeyHashError::NoPrefix)?;
    if hex.len() != 64 {
        return Err(KeyHashError::Length(s.to_owned()));
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let not_hex = || KeyHashError::NotHex(s.to_owned());
        let pair = std::str::from_utf8(chunk).map_err(|_| not_hex())?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| not_hex())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, load};

    #[test]
    fn a_name_is_taken_when_it_folds_to_a_policy_users_name() {
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("kind: user\nmetadata: {{name: user{i}}}\nspec: {{roles: [mcp-user]}}\n---\n"));
        }
        text.push_str("kind: user\nmetadata: {name: Stra\u{df}e}\nspec: {roles: [mcp-user]}\n");
        let p = load(&text).expect("loads");
        for taken in ["user7", "USER7", "User99", "\u{ff55}ser0", "strasse", "STRASSE", "Stra\u{df}e"] {
            assert!(p.name_is_taken(taken), "{taken}");
        }
        for free in ["user100", "user", "strase", "alice@example.com"] {
            assert!(!p.name_is_taken(free), "{free}");
        }
    }

    #[test]
    fn unknown_role_reference_is_an_error() {
        let e = errors("kind: user\nmetadata: {name: u}\nspec: {roles: [ghost]}\n");
        assert!(e.contains("user 'u'") && e.contains("unknown role 'ghost'"), "{e}");
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
    fn a_reused_key_names_its_first_owner_even_a_rejected_one() {
        let key = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
        let e = errors(&format!(
            "kind: user\nmetadata: {{name: bad}}\nspec: {{roles: [ghost], api_keys: ['{key}', '{key}']}}\n---\nkind: user\nmetadata: {{name: next}}\nspec: {{roles: [mcp-user], api_keys: ['{key}']}}\n"
        ));
        assert_eq!(e.matches("key hash already belongs to user 'bad'").count(), 2, "{e}");
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
}
