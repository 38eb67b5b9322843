//! One policy generation and what is compiled under it: the token cache and the identities
//! an identity provider vouched for. Swapped whole on reload, so nothing cached here can
//! outlive the policy that justified it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::identity::authn::UserRef;
use crate::token::TokenCache;
use warden_core::policy::{Policy, Traits, User, fingerprint};

/// One policy generation, and the tokens and identities compiled under it.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Policy,
    pub generation: u64,
    pub tokens: TokenCache,
    identities: RwLock<HashMap<u64, Arc<User>>>,
}

/// Compiled identities kept per snapshot before the cache starts over.
const MAX_IDENTITIES: usize = 10_000;

impl Snapshot {
    pub fn new(policy: Policy, generation: u64) -> Self {
        Snapshot { policy, generation, tokens: TokenCache::default(), identities: RwLock::default() }
    }

    /// An identity vouched for by an identity provider, compiled against this policy's roles
    /// once per (name, roles, traits) and then reused. A name the policy gives one of its own
    /// users is refused: both would be the same `sub` upstream (as the reference system
    /// refuses a single-sign-on login that collides with a local user); so is a name equal
    /// to one after case folding and NFKC ([`Policy::name_is_taken`]), checked once per
    /// identity compiled here.
    pub fn dynamic_user(&self, name: &str, roles: &[String], traits: Traits) -> Result<Arc<User>, String> {
        if self.policy.user(name).is_some() {
            return Err("the username is the name of a user defined in the policy".to_owned());
        }
        let fp = fingerprint(name, roles, &traits);
        // The fingerprint finds the entry; the identity itself must match too (a 64-bit hash
        // of claims a user may partly choose is no proof of sameness).
        let same = |u: &User| {
            *u.name == *name
                && u.role_names.iter().map(|r| &**r).eq(roles.iter().map(String::as_str))
                && *u.traits == traits
        };
        if let Some(u) = self.identities.read().ok().and_then(|m| m.get(&fp).filter(|u| same(u)).cloned()) {
            return Ok(u);
        }
        if self.policy.name_is_taken(name) {
            return Err("the username looks like the name of a user defined in the policy".to_owned());
        }
        let user = Arc::new(self.policy.build_user(name, roles, traits).map_err(|e| e.to_string())?);
        if let Ok(mut m) = self.identities.write() {
            if m.len() >= MAX_IDENTITIES {
                m.clear();
            }
            m.insert(fp, user.clone());
        }
        Ok(user)
    }

    /// The user a check decided for, found again by name and fingerprint (for ext_proc).
    pub fn user_by_fingerprint(&self, name: &str, fp: u64) -> Option<UserRef<'_>> {
        if let Some(u) = self.policy.user(name).filter(|u| u.fingerprint == fp) {
            return Some(UserRef::Static(u));
        }
        let u = self.identities.read().ok()?.get(&fp).cloned()?;
        (*u.name == *name).then_some(UserRef::Dynamic(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::policy::Source;

    fn snapshot() -> Snapshot {
        let text = "kind: role\nversion: v8\nmetadata: {name: reader}\nspec: {allow: {mcp: {tools: ['get_*']}}}\n---\nkind: user\nmetadata: {name: alice}\nspec: {roles: [reader]}\n";
        Snapshot::new(Policy::load(&[Source::inline("p.yaml", text)]).expect("policy"), 1)
    }

    #[test]
    fn an_identity_provider_user_cannot_take_a_policy_users_name() {
        let s = snapshot();
        let err = s.dynamic_user("alice", &["reader".to_owned()], Traits::new()).expect_err("name taken");
        assert!(err.contains("defined in the policy"), "{err}");
        assert!(s.dynamic_user("alice@example.com", &["reader".to_owned()], Traits::new()).is_ok());
    }

    #[test]
    fn an_identity_provider_user_cannot_take_a_name_that_folds_to_a_policy_users_name() {
        let s = snapshot();
        for look_alike in ["Alice", "ALICE", "\u{ff41}lice"] {
            let err = s.dynamic_user(look_alike, &["reader".to_owned()], Traits::new()).expect_err(look_alike);
            assert!(err.contains("looks like the name of a user defined in the policy"), "{err}");
        }
        assert!(s.dynamic_user("alicia", &["reader".to_owned()], Traits::new()).is_ok());
    }

    #[test]
    fn a_cached_identity_is_reused_only_for_the_same_name_roles_and_traits() {
        let s = snapshot();
        let team = |t: &str| Traits::from([("team".to_owned(), vec![t.to_owned()])]);
        let a = s.dynamic_user("bob", &["reader".to_owned()], team("x")).expect("bob");
        let again = s.dynamic_user("bob", &["reader".to_owned()], team("x")).expect("bob again");
        assert!(Arc::ptr_eq(&a, &again), "compiled once");
        // Planted under bob's fingerprint, as a hash collision would: not taken for bob.
        let other = s.dynamic_user("carol", &[], team("y")).expect("carol");
        s.identities.write().expect("lock").insert(a.fingerprint, other);
        let found = s.dynamic_user("bob", &["reader".to_owned()], team("x")).expect("bob");
        assert_eq!((&*found.name, &*found.role_names[0]), ("bob", "reader"));
    }
}
