//! The state every face of the service shares: the policy [`Snapshot`] (with the token cache
//! and the identity-provider identities compiled under it), the signing key ring, the audit
//! sink, the metrics, the settings fixed at start and the `jwt` method's verifier. Reload
//! swaps the snapshot and the key ring whole; everything else is fixed for the process.
//!
//! Owns holding and swapping that state, nothing about a request: the check that reads it is
//! [`crate::authz`]'s (`Warden::check*`), the list filter that reads it is
//! [`crate::extproc`]'s. Depends only on the modules below it (identity, token, key ring,
//! audit, metrics, the core), never on a face.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::audit::{Audit, Event};
use crate::config::EnvoyMetadata;
use crate::identity::authn::AuthMethod;
use crate::identity::identities::{Identities, IdentityError, UserRef};
use crate::identity::idp::Verifier;
use crate::keyring::KeyRing;
use crate::metrics::Metrics;
use crate::token::{TokenCache, TokenSettings};
use warden_core::bounds::Bounds;
use warden_core::mcp::Limits;
use warden_core::policy::{Policy, Traits, User};

/// Settings fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub token: TokenSettings,
    pub limits: Limits,
    pub denied_status: u16,
    pub auth_order: Vec<AuthMethod>,
    /// MCP methods whose allowed requests are not audited.
    pub audit_skip_allowed: Vec<String>,
    /// Which checks carry decision metadata for Envoy.
    pub envoy_metadata: EnvoyMetadata,
    /// Longest names and URIs accepted, longest client values recorded.
    pub bounds: Bounds,
}

/// The shared state behind both gRPC services and the HTTP endpoint.
#[derive(Debug)]
pub struct Warden {
    snapshot: ArcSwap<Snapshot>,
    keys: ArcSwap<KeyRing>,
    pub settings: Settings,
    audit: Audit,
    pub metrics: Metrics,
    /// The `jwt` authentication method, when configured.
    jwt: Option<Arc<Verifier>>,
}

impl Warden {
    pub fn new(policy: Policy, keys: KeyRing, settings: Settings, audit: Audit) -> Self {
        let metrics = Metrics::default();
        metrics.set_generation(1);
        Warden {
            snapshot: ArcSwap::from_pointee(Snapshot::new(policy, 1)),
            keys: ArcSwap::from_pointee(keys),
            settings,
            audit,
            metrics,
            jwt: None,
        }
    }

    /// Enables the `jwt` authentication method with this verifier.
    pub fn with_jwt(mut self, verifier: Arc<Verifier>) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// The `jwt` method's verifier, when configured (the check authenticates with it, the
    /// HTTP endpoint serves its RFC 9728 metadata).
    pub fn jwt(&self) -> Option<&Arc<Verifier>> {
        self.jwt.as_ref()
    }

    /// The audit sink (the check writes its events here).
    pub(crate) fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Writes out buffered audit events and stops the writer (at shutdown).
    pub fn close_audit(&self) {
        self.audit.close();
    }

    /// Events the audit writer dropped (for `/metrics`).
    pub fn audit_dropped(&self) -> u64 {
        self.audit.dropped()
    }

    /// The snapshot in force, held for as long as the caller needs it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The snapshot in force for one check: the single `load()` a check makes.
    pub(crate) fn load(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Swaps in a new policy; checks in flight finish on the snapshot they loaded.
    pub fn replace_policy(&self, policy: Policy) -> u64 {
        let generation = self.snapshot.load().generation + 1;
        self.snapshot.store(Arc::new(Snapshot::new(policy, generation)));
        self.metrics.set_generation(generation);
        generation
    }

    /// The key ring in force (JWKS publishes from it).
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.keys.load_full()
    }

    /// The key ring in force for one check (minting signs with its active key).
    pub(crate) fn keys(&self) -> Guard<Arc<KeyRing>> {
        self.keys.load()
    }

    /// Swaps in a reloaded key ring.
    pub fn replace_keys(&self, ring: KeyRing) {
        self.keys.store(Arc::new(ring));
    }

    /// Writes an audit event that is not a check (reloads, key switches); `kid` names the
    /// signing key a key event is about.
    pub fn audit_event(&self, event: &'static str, reason: &str, kid: Option<&str>) {
        self.audit.emit(&Event { kid, ..Event::bare(event, reason) });
    }

    /// Writes an audit event built elsewhere (the list filter's `pin.drift`).
    pub fn emit_audit(&self, event: &Event<'_>) {
        self.audit.emit(event);
    }
}

/// One policy generation, and the tokens and identities compiled under it. Swapped whole on
/// reload, so nothing cached here can outlive the policy that justified it.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Policy,
    pub generation: u64,
    pub tokens: TokenCache,
    /// Identities an identity provider vouched for, compiled against `policy`.
    pub identities: Identities,
}

impl Snapshot {
    pub fn new(policy: Policy, generation: u64) -> Self {
        Snapshot { policy, generation, tokens: TokenCache::default(), identities: Identities::default() }
    }

    /// An identity vouched for by an identity provider, compiled against this policy (see
    /// [`Identities::compile`]).
    pub fn dynamic_user(&self, name: &str, roles: &[String], traits: Traits) -> Result<Arc<User>, IdentityError> {
        self.identities.compile(&self.policy, name, roles, traits)
    }

    /// The user a check decided for, found again by name and fingerprint (for ext_proc).
    pub fn user_by_fingerprint(&self, name: &str, fp: u64) -> Option<UserRef<'_>> {
        self.identities.find(&self.policy, name, fp)
    }
}
