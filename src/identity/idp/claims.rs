//! Verified claims to an identity: the username claim (canonical form, verified `email`),
//! traits from configured claims, and roles through `claims_to_roles` (compiled once into
//! [`NameSet`]s), as identity-provider connectors do in the reference system.
//!
//! An `email` the token does not vouch for names nobody: `email_verified` present and anything
//! but JSON `true` or the string `"true"` makes it refused as the username and ignored by
//! `claims_to_roles` and traits, so an address a user typed but never proved grants nothing.
//! Pure; never logs a claim value.

use serde_json::{Map, Value};

use warden_core::policy::pattern::NameSet;
use warden_core::policy::{Traits, names};

use super::{ClaimMapping, JwtConfig, JwtConfigError, Rejected};

/// At most this many values per trait or per claim consulted for roles.
pub const MAX_CLAIM_VALUES: usize = 1000;

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub roles: Vec<String>,
    pub traits: Traits,
}

/// `claims_to_roles`, compiled once: every value pattern is a [`NameSet`].
#[derive(Debug, Default)]
pub struct RoleMapping {
    rules: Vec<(Box<str>, NameSet, Vec<String>)>,
}

impl RoleMapping {
    pub fn compile(entries: &[ClaimMapping]) -> Result<Self, JwtConfigError> {
        let mut rules = Vec::with_capacity(entries.len());
        for (index, e) in entries.iter().enumerate() {
            let set = NameSet::compile(std::slice::from_ref(&e.value))
                .map_err(|source| JwtConfigError::Pattern { index, source })?;
            rules.push((e.claim.as_str().into(), set, e.roles.clone()));
        }
        Ok(RoleMapping { rules })
    }

    /// The roles for a verified claim set: every rule with a claim value matching its
    /// pattern contributes its roles, in order, without duplicates.
    fn map<'c>(&self, claim: impl Fn(&str) -> Option<&'c Value>) -> Result<Vec<String>, Rejected> {
        let mut out: Vec<String> = Vec::new();
        for (name, set, roles) in &self.rules {
            let Some(value) = claim(name) else { continue };
            let mut hit = false;
            for_each_value(value, |v| hit = hit || set.is_match(v))?;
            if hit {
                for r in roles {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Calls `f` with each scalar of a claim: a string, or each string of an array; numbers and
/// booleans in their JSON form. Objects and nulls are not values.
fn for_each_value(value: &Value, mut f: impl FnMut(&str)) -> Result<(), Rejected> {
    let mut one = |v: &Value| match v {
        Value::String(s) => f(s),
        Value::Number(n) => f(&n.to_string()),
        Value::Bool(b) => f(if *b { "true" } else { "false" }),
        _ => {}
    };
    match value {
        Value::Array(items) => {
            if items.len() > MAX_CLAIM_VALUES {
                return Err(Rejected::Claims);
            }
            items.iter().for_each(&mut one);
        }
        other => one(other),
    }
    Ok(())
}

/// The identity `claims` map to under `config` (username, traits) and `roles`.
pub(super) fn identity(
    config: &JwtConfig,
    roles: &RoleMapping,
    claims: &Map<String, Value>,
) -> Result<Identity, Rejected> {
    let unverified = !email_verified(claims.get("email_verified"));
    // The claims identity is drawn from: an unverified `email` is not one of them.
    let claim = |name: &str| if unverified && name == "email" { None } else { claims.get(name) };
    let username = match claim(&config.username_claim) {
        Some(Value::String(s)) if names::check_canonical(s).is_ok() => s.clone(),
        _ if unverified && config.username_claim == "email" => return Err(Rejected::EmailUnverified),
        _ => return Err(Rejected::Username),
    };
    let mut traits = Traits::new();
    for (name, claim_name) in &config.traits {
        let Some(value) = claim(claim_name) else { continue };
        let mut values: Vec<String> = Vec::new();
        for_each_value(value, |v| {
            if !values.iter().any(|x| x == v) {
                values.push(v.to_owned());
            }
        })?;
        if !values.is_empty() {
            traits.entry(name.clone()).or_default().extend(values);
        }
    }
    let roles = roles.map(claim)?;
    Ok(Identity { username, roles, traits })
}

/// Whether the token's `email_verified` lets its `email` be used: absent (the identity
/// provider does not say; see docs/configuration.md), JSON `true`, or exactly the string
/// `"true"` some providers send. Anything else (`false`, `"TRUE"`, `"yes"`, `1`, `[true]`,
/// `null`…) says the address is unverified.
fn email_verified(flag: Option<&Value>) -> bool {
    match flag {
        None | Some(Value::Bool(true)) => true,
        Some(Value::String(s)) => s == "true",
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use aws_lc_rs::signature::RSA_PKCS1_SHA256;

    use super::*;
    use crate::identity::idp::testkit::*;

    #[test]
    fn username_comes_from_the_configured_claim() {
        let v = verifier();
        assert_eq!(verify(&v, &token("RS256", &without(claims(), "email"))), Err(Rejected::Username));
        assert_eq!(verify(&v, &token("RS256", &with(claims(), "email", json!("")))), Err(Rejected::Username));
        assert_eq!(verify(&v, &token("RS256", &with(claims(), "email", json!(["a"])))), Err(Rejected::Username));
        let unverified = with(claims(), "email_verified", json!(false));
        assert_eq!(verify(&v, &token("RS256", &unverified)), Err(Rejected::EmailUnverified));
        let unverified_text = with(claims(), "email_verified", json!("false"));
        assert_eq!(verify(&v, &token("RS256", &unverified_text)), Err(Rejected::EmailUnverified));
        let mut config = config();
        config.username_claim = "sub".into();
        let by_sub = verifier_with(config, &jwks());
        assert_eq!(verify(&by_sub, &token("RS256", &unverified)).map(|i| i.username), Ok("u-123".into()));
    }

    #[test]
    fn a_username_not_in_canonical_form_is_refused() {
        // Issue 26.4: names that look like another on screen.
        let v = verifier();
        // JSON escapes in the signed text: the decoded claim holds the characters themselves.
        for name in
            [r"admin@example.com ", r" admin@example.com", r"admin@example.com\u200b", r"bob\u00a0", r"a\u202eb"]
        {
            let text = claims().to_string().replace("\"alice@example.com\"", &format!("\"{name}\""));
            let t = sign_text(r#"{"alg":"RS256","kid":"rsa-1"}"#, &text, Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256));
            assert_eq!(verify(&v, &t), Err(Rejected::Username), "{name}");
        }
        let decomposed = with(claims(), "email", json!("jo\u{301}zef@example.com"));
        assert_eq!(verify(&v, &token("RS256", &decomposed)), Err(Rejected::Username), "not NFC");
        let composed = with(claims(), "email", json!("j\u{f3}zef@example.com"));
        assert!(verify(&v, &token("RS256", &composed)).is_ok());
    }

    #[test]
    fn email_verified_counts_only_when_true_or_the_string_true() {
        // Issue 26.6.
        let v = verifier();
        for flag in [json!(true), json!("true")] {
            let id = verify(&v, &token("RS256", &with(claims(), "email_verified", flag.clone())));
            assert_eq!(id.map(|i| i.username), Ok("alice@example.com".into()), "{flag}");
        }
        assert!(verify(&v, &token("RS256", &claims())).is_ok(), "absent: the provider does not say");
        for flag in [
            json!(false),
            json!("false"),
            json!("False "),
            json!("TRUE"),
            json!("True"),
            json!(" true"),
            json!("yes"),
            json!("no"),
            json!(0),
            json!(1),
            json!([false]),
            json!([true]),
            json!({"value": true}),
            json!(null),
        ] {
            let got = verify(&v, &token("RS256", &with(claims(), "email_verified", flag.clone())));
            assert_eq!(got, Err(Rejected::EmailUnverified), "{flag}");
        }
    }

    #[test]
    fn an_unverified_email_grants_no_role_and_no_trait() {
        let mut config = config();
        config.username_claim = "sub".into();
        config.traits.push(("mail".into(), "email".into()));
        let v = verifier_with(config, &jwks());
        let verified = verify(&v, &token("RS256", &claims())).expect("valid");
        assert!(verified.roles.iter().any(|r| r == "employee"), "the email rule applies: {:?}", verified.roles);
        assert_eq!(verified.traits["mail"], ["alice@example.com"]);
        for flag in
            [json!(false), json!("false"), json!("FALSE"), json!("False "), json!(0), json!("no"), json!([false])]
        {
            let id = verify(&v, &token("RS256", &with(claims(), "email_verified", flag.clone()))).expect("valid");
            assert!(!id.roles.iter().any(|r| r == "employee"), "{flag}: {:?}", id.roles);
            assert!(!id.traits.contains_key("mail"), "{flag}: {:?}", id.traits);
            assert_eq!(id.username, "u-123");
        }
        let id = verify(&v, &token("RS256", &with(claims(), "email_verified", json!(true)))).expect("valid");
        assert!(id.roles.iter().any(|r| r == "employee"));
    }

    #[test]
    fn claims_map_to_traits_and_roles_with_literal_glob_and_regex_values() {
        let v = verifier();
        let id = verify(&v, &token("RS256", &with(claims(), "tid", json!(42)))).expect("valid");
        assert_eq!(id.roles, ["admin", "reader", "employee"], "in rule order, without duplicates");
        assert_eq!(id.traits["groups"], ["mcp-admins", "staff"]);
        assert_eq!(id.traits["tenant"], ["42"]);

        let outsider = with(with(claims(), "email", json!("eve@example.org")), "groups", json!("staffing"));
        let id = verify(&v, &token("RS256", &outsider)).expect("valid");
        assert_eq!(id.roles, ["reader"], "a glob matches a single string claim");
        let nobody = with(with(claims(), "email", json!("eve@example.org")), "groups", json!(["Staff", "admins"]));
        let id = verify(&v, &token("RS256", &nobody)).expect("valid");
        assert!(id.roles.is_empty(), "matching is case-sensitive and anchored: {:?}", id.roles);
        assert!(!id.traits.contains_key("tenant"), "an absent claim gives no trait");
    }

    #[test]
    fn an_oversized_claim_array_is_refused() {
        let v = verifier();
        let many: Vec<String> = (0..=MAX_CLAIM_VALUES).map(|i| format!("g{i}")).collect();
        assert_eq!(verify(&v, &token("RS256", &with(claims(), "groups", json!(many)))), Err(Rejected::Claims));
    }

    #[test]
    fn a_bad_role_pattern_is_a_config_error_naming_the_entry() {
        let e =
            RoleMapping::compile(&[ClaimMapping { claim: "g".into(), value: "^(x$".into(), roles: vec!["r".into()] }])
                .expect_err("bad regex");
        assert!(e.to_string().starts_with("entry 0: invalid pattern '^(x$'"), "{e}");
    }
}
