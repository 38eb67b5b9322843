//! Authentication: who is calling, from what Envoy saw — the mTLS peer identity
//! (`source.principal`), API keys (`Authorization: Bearer KEY` or `x-api-key: KEY`), and
//! JWT access tokens from the identity provider (`Authorization: Bearer <JWS>`).
//!
//! Every configured method is evaluated, in the configured order; a credential that is
//! presented but invalid fails the request, and credentials naming different identities
//! (different [`User::fingerprint`](warden_core::policy::User::fingerprint)s) are a conflict. A bearer value shaped like a JWS goes
//! to the `jwt` method when it is configured, and is an API key otherwise. Never logs or
//! returns a credential.

use std::time::SystemTime;

use serde::Deserialize;

use crate::identity::identities::{Identities, UserRef};
use crate::identity::idp::{self, Verifier};
use warden_core::headers::Headers;
use warden_core::policy::Policy;

/// How a caller may prove who it is, tried in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Mtls,
    ApiKey,
    /// A JWT access token from the identity provider in `authentication.jwt`.
    Jwt,
}

impl AuthMethod {
    /// The name used in configuration, audit and logs.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Mtls => "mtls",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
        }
    }
}

/// Why authentication failed. The messages are safe to show a client; [`AuthError::reason`]
/// is the detail for audit and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
    #[error("conflicting credentials")]
    Conflict,
    /// A JWT the `jwt` method refused, and why.
    #[error("invalid token")]
    Token(idp::Rejected),
    /// The identity provider vouched for a user the current policy cannot compile (a role
    /// from `claims_to_roles` does not exist): not the caller's fault, so not a 401.
    #[error("identity not accepted by policy")]
    Unusable,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "no_credentials",
            AuthError::Invalid => "invalid_credentials",
            AuthError::Conflict => "conflicting_credentials",
            AuthError::Token(r) => r.code(),
            AuthError::Unusable => "identity_rejected",
        }
    }
}

/// The user a request authenticated as, and how.
#[derive(Debug, Clone)]
pub struct Authenticated<'p> {
    pub user: UserRef<'p>,
    pub method: AuthMethod,
}

/// The bearer token in an `Authorization` header (scheme compared case-insensitively).
pub fn bearer<'h>(headers: &'h Headers<'_>) -> Option<&'h str> {
    let value = headers.get("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates with the methods in `order`. `principal` is Envoy's `source.principal`;
/// `jwt` is the `jwt` method's verifier when it is configured. Identities the identity
/// provider vouches for are compiled against `policy` (and cached in `identities`).
pub fn authenticate<'p>(
    policy: &'p Policy,
    identities: &Identities,
    jwt: Option<&Verifier>,
    order: &[AuthMethod],
    headers: &Headers<'_>,
    principal: &str,
) -> Result<Authenticated<'p>, AuthError> {
    let presented_bearer = bearer(headers);
    // A JWS-shaped bearer value belongs to the jwt method when it is in force.
    let jwt_token =
        presented_bearer.filter(|b| jwt.is_some() && order.contains(&AuthMethod::Jwt) && idp::looks_like_jwt(b));
    let mut found: Option<Authenticated<'p>> = None;
    let mut accept = |user: UserRef<'p>, method| match &found {
        Some(prev) if prev.user.fingerprint != user.fingerprint => Err(AuthError::Conflict),
        Some(_) => Ok(()),
        None => {
            found = Some(Authenticated { user, method });
            Ok(())
        }
    };
    for method in order {
        match method {
            AuthMethod::Mtls => {
                // A verified peer that maps to no user is not an identity claim by itself.
                if let Some(user) = (!principal.is_empty()).then(|| policy.user_by_principal(principal)).flatten() {
                    accept(UserRef::Static(user), AuthMethod::Mtls)?;
                }
            }
            AuthMethod::ApiKey => {
                let presented =
                    [presented_bearer.filter(|_| jwt_token.is_none()), headers.get("x-api-key").map(|v| v.trim())];
                for key in presented.into_iter().flatten() {
                    let user = policy.user_by_api_key(key.as_bytes()).ok_or(AuthError::Invalid)?;
                    accept(UserRef::Static(user), AuthMethod::ApiKey)?;
                }
            }
            AuthMethod::Jwt => {
                if let (Some(verifier), Some(token)) = (jwt, jwt_token) {
                    let id = verifier.verify(token, SystemTime::now()).map_err(|r| {
                        tracing::debug!(reason = r.code(), detail = %r, "JWT refused");
                        AuthError::Token(r)
                    })?;
                    let user = identities.compile(policy, &id.username, &id.roles, id.traits).map_err(|e| {
                        tracing::warn!(error = %e, "identity-provider user does not fit the policy");
                        AuthError::Unusable
                    })?;
                    accept(UserRef::Dynamic(user), AuthMethod::Jwt)?;
                }
            }
        }
    }
    match found {
        Some(a) => Ok(a),
        None if presented_bearer.is_some()
            || headers.contains_key("x-api-key")
            || headers.contains_key("authorization") =>
        {
            Err(AuthError::Invalid)
        }
        None => Err(AuthError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::idp::testkit;
    use warden_core::policy::Source;

    // sha256("key-a") and sha256("key-b")
    fn policy() -> Policy {
        let a = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"key-a");
        let b = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"key-b");
        let hex = |d: &aws_lc_rs::digest::Digest| d.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>();
        let text = format!(
            "kind: user\nmetadata: {{name: a}}\nspec: {{roles: [mcp-user], api_keys: ['sha256:{}'], mtls_principals: ['spiffe://x/a']}}\n---\nkind: user\nmetadata: {{name: b}}\nspec: {{roles: [mcp-user], api_keys: ['sha256:{}']}}\n",
            hex(&a),
            hex(&b)
        );
        Policy::load(&[Source::inline("p.yaml", &text)]).expect("policy")
    }

    /// A policy and the identity-provider identities compiled against it.
    type Users = (Policy, Identities);

    fn snapshot() -> Users {
        (policy(), Identities::default())
    }

    fn h<'a>(pairs: &[(&'a str, &'a str)]) -> Headers<'a> {
        pairs.iter().copied().collect()
    }

    const ALL: &[AuthMethod] = &[AuthMethod::Mtls, AuthMethod::ApiKey];

    fn who(headers: &[(&str, &str)], principal: &str) -> Result<String, AuthError> {
        let s = snapshot();
        authenticate(&s.0, &s.1, None, ALL, &h(headers), principal).map(|a| a.user.name.to_string())
    }

    #[test]
    fn api_key_in_either_header_authenticates() {
        assert_eq!(who(&[("authorization", "Bearer key-a")], ""), Ok("a".into()));
        assert_eq!(who(&[("authorization", "bearer key-a")], ""), Ok("a".into()));
        assert_eq!(who(&[("x-api-key", "key-b")], ""), Ok("b".into()));
    }

    #[test]
    fn mtls_principal_authenticates() {
        assert_eq!(who(&[], "spiffe://x/a"), Ok("a".into()));
    }

    #[test]
    fn missing_bad_and_conflicting_credentials_fail() {
        assert_eq!(who(&[], ""), Err(AuthError::Missing));
        assert_eq!(who(&[], "spiffe://unknown"), Err(AuthError::Missing));
        assert_eq!(who(&[("authorization", "Bearer nope")], ""), Err(AuthError::Invalid));
        assert_eq!(who(&[("authorization", "Basic abc")], ""), Err(AuthError::Invalid));
        assert_eq!(who(&[("authorization", "Bearer key-a"), ("x-api-key", "nope")], ""), Err(AuthError::Invalid));
        assert_eq!(who(&[("authorization", "Bearer key-a"), ("x-api-key", "key-b")], ""), Err(AuthError::Conflict));
        assert_eq!(who(&[("x-api-key", "key-b")], "spiffe://x/a"), Err(AuthError::Conflict));
        assert_eq!(who(&[("x-api-key", "key-a")], "spiffe://x/a"), Ok("a".into()));
    }

    #[test]
    fn disabled_methods_are_not_consulted() {
        let s = snapshot();
        let r = authenticate(&s.0, &s.1, None, &[AuthMethod::Mtls], &h(&[("x-api-key", "key-a")]), "");
        assert_eq!(r.map(|a| a.user.name.to_string()), Err(AuthError::Invalid));
    }

    const WITH_JWT: &[AuthMethod] = &[AuthMethod::Mtls, AuthMethod::ApiKey, AuthMethod::Jwt];

    /// Roles the test verifier's `claims_to_roles` grants must exist in the policy.
    fn jwt_snapshot() -> Users {
        let roles = ["admin", "reader", "employee"]
            .iter()
            .map(|r| format!("kind: role\nversion: v8\nmetadata: {{name: {r}}}\nspec: {{allow: {{app_labels: {{'*': '*'}}, mcp: {{tools: ['get_*']}}}}}}\n"))
            .collect::<Vec<_>>()
            .join("---\n");
        let text = format!(
            "{roles}---\nkind: user\nmetadata: {{name: a}}\nspec: {{roles: [mcp-user], api_keys: ['sha256:{}'], mtls_principals: ['spiffe://x/a']}}\n",
            hex_sha256(b"key-a")
        );
        (Policy::load(&[Source::inline("p.yaml", &text)]).expect("policy"), Identities::default())
    }

    fn hex_sha256(b: &[u8]) -> String {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn jwt_who(snap: &Users, headers: &[(&str, &str)], principal: &str) -> Result<(String, AuthMethod), AuthError> {
        let v = testkit::verifier();
        authenticate(&snap.0, &snap.1, Some(&v), WITH_JWT, &h(headers), principal)
            .map(|a| (a.user.name.to_string(), a.method))
    }

    #[test]
    fn a_valid_jwt_authenticates_an_identity_provider_user_with_mapped_roles() {
        let snap = jwt_snapshot();
        let token = testkit::token("RS256", &testkit::claims());
        let auth = format!("Bearer {token}");
        let v = testkit::verifier();
        let a = authenticate(&snap.0, &snap.1, Some(&v), WITH_JWT, &h(&[("authorization", &auth)]), "")
            .expect("authenticated");
        assert_eq!(a.method, AuthMethod::Jwt);
        assert!(matches!(a.user, UserRef::Dynamic(_)));
        assert_eq!(&*a.user.name, "alice@example.com");
        let roles: Vec<&str> = a.user.role_names.iter().map(|r| &**r).collect();
        assert_eq!(roles, ["admin", "reader", "employee"]);
        assert_eq!(a.user.traits["groups"], ["mcp-admins", "staff"]);
    }

    #[test]
    fn a_refused_jwt_is_a_token_error_naming_why() {
        let snap = jwt_snapshot();
        let mut claims = testkit::claims();
        claims["aud"] = "https://elsewhere.example.com".into();
        let auth = format!("Bearer {}", testkit::token("RS256", &claims));
        assert_eq!(jwt_who(&snap, &[("authorization", &auth)], ""), Err(AuthError::Token(idp::Rejected::Audience)));
        assert_eq!(AuthError::Token(idp::Rejected::Audience).reason(), "jwt_audience");
    }

    #[test]
    fn a_non_jwt_bearer_is_still_an_api_key_when_jwt_is_configured() {
        let snap = jwt_snapshot();
        assert_eq!(jwt_who(&snap, &[("authorization", "Bearer key-a")], "").map(|w| w.0), Ok("a".into()));
        assert_eq!(jwt_who(&snap, &[("authorization", "Bearer nope")], ""), Err(AuthError::Invalid));
    }

    #[test]
    fn a_jwt_bearer_is_an_api_key_when_the_jwt_method_is_not_in_force() {
        let s = snapshot();
        let auth = format!("Bearer {}", testkit::token("RS256", &testkit::claims()));
        let v = testkit::verifier();
        let r = authenticate(&s.0, &s.1, Some(&v), ALL, &h(&[("authorization", &auth)]), "");
        assert_eq!(r.map(|a| a.user.name.to_string()), Err(AuthError::Invalid));
    }

    #[test]
    fn a_jwt_next_to_another_identity_is_a_conflict() {
        let snap = jwt_snapshot();
        let auth = format!("Bearer {}", testkit::token("RS256", &testkit::claims()));
        assert_eq!(jwt_who(&snap, &[("authorization", &auth), ("x-api-key", "key-a")], ""), Err(AuthError::Conflict));
        assert_eq!(jwt_who(&snap, &[("authorization", &auth)], "spiffe://x/a"), Err(AuthError::Conflict));
        // A peer certificate that maps to no user is not an identity claim.
        assert_eq!(jwt_who(&snap, &[("authorization", &auth)], "spiffe://x/nobody").map(|w| w.1), Ok(AuthMethod::Jwt));
    }

    #[test]
    fn a_mapped_role_missing_from_the_policy_denies_without_blaming_the_token() {
        let s = snapshot(); // has no admin/reader/employee roles
        let auth = format!("Bearer {}", testkit::token("RS256", &testkit::claims()));
        let v = testkit::verifier();
        let r = authenticate(&s.0, &s.1, Some(&v), WITH_JWT, &h(&[("authorization", &auth)]), "");
        assert_eq!(r.map(|a| a.user.name.to_string()), Err(AuthError::Unusable));
    }
}
