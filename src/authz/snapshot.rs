//! One policy generation and what is compiled under it: the token cache and the identities
//! an identity provider vouched for. Swapped whole on reload, so nothing cached here can
//! outlive the policy that justified it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::authn::UserRef;
use crate::policy::{Policy, Traits, User, fingerprint};
use crate::token::TokenCache;

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
    /// once per (name, roles, traits) and then reused.
    pub fn dynamic_user(&self, name: &str, roles: &[String], traits: Traits) -> Result<Arc<User>, String> {
        let fp = fingerprint(name, roles, &traits);
        if let Some(u) = self.identities.read().ok().and_then(|m| m.get(&fp).cloned()) {
            return Ok(u);
        }
        let user = Arc::new(self.policy.build_user(name, roles, traits)?);
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
