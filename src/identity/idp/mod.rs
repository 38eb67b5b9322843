//! The `jwt` authentication method: access tokens from the company's identity provider,
//! verified (never minted: that is [`crate::token`]).
//!
//! - [`config`]: the validated `authentication.jwt` block and the checks on its values;
//! - [`claims`]: verified claims to an identity (username, traits, `claims_to_roles`);
//! - [`verify`]: the [`Verifier`], the rules a token must pass, in order;
//! - [`keyset`]: a published JWKS parsed into the keys that may verify tokens;
//! - [`jwks`]: fetching and caching those keys (all network I/O of the method);
//! - `strict`: the JSON reading that refuses a key named twice.
//!
//! A check is pure and synchronous: it reads the cached keys and never waits on the network.
//! Never logs or returns a token, a claim value or key material. [`Rejected`] says why a
//! token was refused, as a stable code for audit and metrics.

pub mod claims;
pub mod config;
pub mod jwks;
pub mod keyset;
mod strict;
pub mod verify;

#[cfg(test)]
mod check_tests;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

pub use claims::{Identity, MAX_CLAIM_VALUES, RoleMapping};
pub use config::{
    Algorithm, ClaimMapping, DEFAULT_ALGORITHMS, JwtConfig, JwtConfigError, KeySource, RESOURCE_METADATA_PATH,
    UnknownRoles, algorithm_name, check_fetch_url, check_mapped_roles, default_resource_metadata_url, parse_algorithm,
    resource_origin,
};
pub use verify::{MAX_TOKEN_BYTES, Verifier, looks_like_jwt};

/// Why a token was refused. The code goes to audit, metrics and logs; a client only learns
/// that its token is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("not a compact JWS with a JSON header")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("unsupported critical header")]
    Critical,
    #[error("no identity-provider keys loaded yet")]
    NoKeys,
    #[error("kid not published by the identity provider")]
    UnknownKey,
    #[error("no kid, and the identity provider publishes several keys")]
    MissingKid,
    #[error("algorithm does not match the key")]
    KeyMismatch,
    #[error("bad signature")]
    Signature,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("issued in the future")]
    IssuedInFuture,
    #[error("lifetime longer than max_lifetime")]
    Lifetime,
    #[error("malformed claims")]
    Claims,
    #[error("username claim missing, not a string, or not in canonical form")]
    Username,
    #[error("email not verified")]
    EmailUnverified,
}

impl Rejected {
    /// A stable code for audit events and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Rejected::Malformed => "jwt_malformed",
            Rejected::Algorithm => "jwt_algorithm",
            Rejected::Critical => "jwt_critical_header",
            Rejected::NoKeys => "jwt_no_keys",
            Rejected::UnknownKey => "jwt_unknown_kid",
            Rejected::MissingKid => "jwt_missing_kid",
            Rejected::KeyMismatch => "jwt_key_mismatch",
            Rejected::Signature => "jwt_signature",
            Rejected::Issuer => "jwt_issuer",
            Rejected::Audience => "jwt_audience",
            Rejected::Expired => "jwt_expired",
            Rejected::NotYetValid => "jwt_not_yet_valid",
            Rejected::IssuedInFuture => "jwt_issued_in_future",
            Rejected::Lifetime => "jwt_lifetime",
            Rejected::Claims => "jwt_claims",
            Rejected::Username => "jwt_username",
            Rejected::EmailUnverified => "jwt_email_unverified",
        }
    }
}
