//! Who is calling: the authentication methods and the identity provider behind one of them.
//!
//! - [`authn`]: one request's credentials (mTLS peer, API key, identity-provider token),
//!   evaluated in the configured order into one user, or a refusal that says why.
//! - [`identities`]: who a check can be for — a policy user, or an identity an identity
//!   provider vouched for, compiled against the policy's roles once and cached per snapshot.
//! - [`idp`]: the `jwt` method — verification of access tokens from the company's identity
//!   provider (configuration, claims-to-roles mapping, the verifier, JWKS fetching).
//!
//! Minting mcp-warden's own ID tokens is not here: that is [`crate::token`]. Never logs or
//! returns a credential, a claim value or key material.

pub mod authn;
pub mod identities;
pub mod idp;
