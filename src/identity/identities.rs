//! Who a check can be for: a user of the policy, or an identity an identity provider vouched
//! for, compiled against the policy's roles once per (name, roles, traits) and then reused.
//!
//! Owns that compilation and its cache; one [`Identities`] lives in each policy snapshot
//! (`crate::state::Snapshot`), so a compiled identity never outlives the policy it was
//! compiled against. Depends on the core only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use warden_core::policy::{Policy, Traits, User, fingerprint};

/// A user from policy, or one an identity provider vouched for (compiled per identity).
#[derive(Debug, Clone)]
pub enum UserRef<'p> {
    Static(&'p User),
    Dynamic(Arc<User>),
}

impl std::ops::Deref for UserRef<'_> {
    type Target = User;
    fn deref(&self) -> &User {
        match self {
            UserRef::Static(u) => u,
            UserRef::Dynamic(u) => u,
        }
    }
}

/// Identities an identity provider vouched for, compiled against one policy.
#[derive(Debug, Default)]
pub struct Identities {
    compiled: RwLock<HashMap<u64, Arc<User>>>,
}

/// Compiled identities kept per snapshot before the cache starts over.
const MAX_IDENTITIES: usize = 10_000;

impl Identities {
    /// An identity vouched for by an identity provider, compiled against `policy`'s roles
    /// once per (name, roles, traits) and then reused. A name the policy gives one of its own
    /// users is refused: both would be the same `sub` upstream (as the reference system
    /// refuses a single-sign-on login that collides with a local user); so is a name equal
    /// to one after case folding and NFKC ([`Policy::name_is_taken`]), checked once per
    /// identity compiled here.
    pub fn compile(&self, policy: &Policy, name: &str, roles: &[String], traits: Traits) -> Result<Arc<User>, String> {
        if policy.user(name).is_some() {
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
        if let Some(u) = self.compiled.read().ok().and_then(|m| m.get(&fp).filter(|u| same(u)).cloned()) {
            return Ok(u);
        }
        if policy.name_is_taken(name) {
            return Err("the username looks like the name of a user defined in the policy".to_owned());
        }
        let user = Arc::new(policy.build_user(name, roles, traits).map_err(|e| e.to_string())?);
        if let Ok(mut m) = self.compiled.write() {
            if m.len() >= MAX_IDENTITIES {
                m.clear();
            }
            m.insert(fp, user.clone());
        }
        Ok(user)
    }

    /// The user a check decided for, found again by name and fingerprint: a user of
    /// `policy`, else an identity compiled here.
    pub fn find<'p>(&self, policy: &'p Policy, name: &str, fp: u64) -> Option<UserRef<'p>> {
        if let Some(u) = policy.user(name).filter(|u| u.fingerprint == fp) {
            return Some(UserRef::Static(u));
        }
        let u = self.compiled.read().ok()?.get(&fp).cloned()?;
        (*u.name == *name).then_some(UserRef::Dynamic(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::policy::Source;

    fn policy() -> Policy {
        let text = "kind: role\nversion: v8\nmetadata: {name: reader}\nspec: {allow: {mcp: {tools: ['get_*']}}}\n---\nkind: user\nmetadata: {name: alice}\nspec: {roles: [reader]}\n";
        Policy::load(&[Source::inline("p.yaml", text)]).expect("policy")
    }

    #[test]
    fn an_identity_provider_user_cannot_take_a_policy_users_name() {
        let (p, s) = (policy(), Identities::default());
        let err = s.compile(&p, "alice", &["reader".to_owned()], Traits::new()).expect_err("name taken");
        assert!(err.contains("defined in the policy"), "{err}");
        assert!(s.compile(&p, "alice@example.com", &["reader".to_owned()], Traits::new()).is_ok());
    }

    #[test]
    fn an_identity_provider_user_cannot_take_a_name_that_folds_to_a_policy_users_name() {
        let (p, s) = (policy(), Identities::default());
        for look_alike in ["Alice", "ALICE", "\u{ff41}lice"] {
            let err = s.compile(&p, look_alike, &["reader".to_owned()], Traits::new()).expect_err(look_alike);
            assert!(err.contains("looks like the name of a user defined in the policy"), "{err}");
        }
        assert!(s.compile(&p, "alicia", &["reader".to_owned()], Traits::new()).is_ok());
    }

    #[test]
    fn a_cached_identity_is_reused_only_for_the_same_name_roles_and_traits() {
        let (p, s) = (policy(), Identities::default());
        let team = |t: &str| Traits::from([("team".to_owned(), vec![t.to_owned()])]);
        let a = s.compile(&p, "bob", &["reader".to_owned()], team("x")).expect("bob");
        let again = s.compile(&p, "bob", &["reader".to_owned()], team("x")).expect("bob again");
        assert!(Arc::ptr_eq(&a, &again), "compiled once");
        // Planted under bob's fingerprint, as a hash collision would: not taken for bob.
        let other = s.compile(&p, "carol", &[], team("y")).expect("carol");
        s.compiled.write().expect("lock").insert(a.fingerprint, other);
        let found = s.compile(&p, "bob", &["reader".to_owned()], team("x")).expect("bob");
        assert_eq!((&*found.name, &*found.role_names[0]), ("bob", "reader"));
    }
}
