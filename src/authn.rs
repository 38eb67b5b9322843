//! Authentication: who is calling, from what Envoy saw — the mTLS peer identity
//! (`source.principal`) and API keys (`Authorization: Bearer KEY` or `x-api-key: KEY`).
//!
//! Every configured method is evaluated; a credential that is presented but unknown fails
//! the request, and credentials naming different users are a conflict. Never logs or
//! returns a credential.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::AuthMethod;
use crate::policy::{Policy, User};

/// Why authentication failed; the variants are safe to show a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
    #[error("conflicting credentials")]
    Conflict,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "no_credentials",
            AuthError::Invalid => "invalid_credentials",
            AuthError::Conflict => "conflicting_credentials",
        }
    }
}

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

/// The user a request authenticated as, and how.
#[derive(Debug, Clone)]
pub struct Authenticated<'p> {
    pub user: UserRef<'p>,
    pub method: AuthMethod,
}

/// The bearer token in an `Authorization` header (scheme compared case-insensitively).
pub fn bearer(headers: &HashMap<String, String>) -> Option<&str> {
    let value = headers.get("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates with the methods in `order`. `principal` is Envoy's `source.principal`.
pub fn authenticate<'p>(
    policy: &'p Policy,
    order: &[AuthMethod],
    headers: &HashMap<String, String>,
    principal: &str,
) -> Result<Authenticated<'p>, AuthError> {
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
                let presented = [bearer(headers), headers.get("x-api-key").map(|v| v.trim())];
                for key in presented.into_iter().flatten() {
                    let user = policy.user_by_api_key(key.as_bytes()).ok_or(AuthError::Invalid)?;
                    accept(UserRef::Static(user), AuthMethod::ApiKey)?;
                }
            }
        }
    }
    match found {
        Some(a) => Ok(a),
        None if bearer(headers).is_some()
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
    use crate::policy::Source;

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

    fn h(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const ALL: &[AuthMethod] = &[AuthMethod::Mtls, AuthMethod::ApiKey];

    fn who(headers: &[(&str, &str)], principal: &str) -> Result<String, AuthError> {
        let p = policy();
        authenticate(&p, ALL, &h(headers), principal).map(|a| a.user.name.to_string())
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
        let p = policy();
        let r = authenticate(&p, &[AuthMethod::Mtls], &h(&[("x-api-key", "key-a")]), "");
        assert_eq!(r.map(|a| a.user.name.to_string()), Err(AuthError::Invalid));
    }
}
