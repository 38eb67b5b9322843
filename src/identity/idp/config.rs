//! The validated `authentication.jwt` block and the checks on its values: allowed
//! algorithms (asymmetric only), the URLs mcp-warden may fetch from, the RFC 9728 resource
//! metadata URL, and roles named by `claims_to_roles` that the policy must define.
//!
//! Built by [`crate::config`] once per start; nothing here runs per request.

use std::time::Duration;

pub use jsonwebtoken::Algorithm;

use warden_core::policy::pattern::PatternError;

/// The well-known path of RFC 9728 protected-resource metadata.
pub const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Algorithms a token may be signed with when none are configured.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

/// Where the identity provider's keys are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An OIDC discovery document whose `jwks_uri` names the key set; its `issuer` must be
    /// the configured issuer.
    Discovery(String),
    /// The key set itself.
    Jwks(String),
}

/// One `claims_to_roles` entry as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    pub claim: String,
    /// A literal, a glob (`*`) or `^regex$`.
    pub value: String,
    pub roles: Vec<String>,
}

/// A validated `authentication.jwt` block (built by [`crate::config`]).
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Compared byte for byte with `iss`.
    pub issuer: String,
    pub keys: KeySource,
    /// Accepted `aud` values; a token passes when its `aud` names one of them, or when its
    /// `client_id` claim is one of `client_ids` (Cognito access tokens carry no `aud`).
    pub audiences: Vec<String>,
    /// Accepted `client_id` claim values (RFC 9068), the alternative to `audiences`.
    pub client_ids: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub clock_skew: Duration,
    pub max_lifetime: Duration,
    pub username_claim: String,
    /// (trait name, claim name), in configuration order.
    pub traits: Vec<(String, String)>,
    pub claims_to_roles: Vec<ClaimMapping>,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    /// `ORIGIN/.well-known/oauth-protected-resource`; `None`: derived from mcp-warden's issuer.
    pub resource_metadata_url: Option<String>,
    /// Listed as `scopes_supported` in the resource metadata.
    pub scopes_supported: Vec<String>,
}

/// A configuration value the verifier cannot use, naming the field and the value.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("algorithm '{0}' is not supported (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA)")]
    UnknownAlgorithm(String),
    #[error("algorithm '{0}' is refused: only asymmetric signatures are accepted (never 'none', never HMAC)")]
    RefusedAlgorithm(String),
    #[error("'{0}' must be an https URL (http only for 127.0.0.1, ::1 or localhost)")]
    InsecureUrl(String),
    #[error("'{url}' is not a URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("'{0}' must be ORIGIN/.well-known/oauth-protected-resource (no other path, query or fragment)")]
    ResourceMetadataUrl(String),
    #[error("entry {index}: {source}")]
    Pattern { index: usize, source: PatternError },
}

/// The asymmetric algorithms a token may use, by JOSE name.
const SUPPORTED: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// Parses one configured algorithm name; `none` and HMAC are refused.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, JwtConfigError> {
    if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") {
        return Err(JwtConfigError::RefusedAlgorithm(name.to_owned()));
    }
    SUPPORTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .ok_or_else(|| JwtConfigError::UnknownAlgorithm(name.to_owned()))
}

/// The JOSE name of a supported algorithm (`"?"` for any other).
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    SUPPORTED.iter().find(|(_, a)| *a == alg).map_or("?", |(n, _)| n)
}

/// Whether mcp-warden may fetch from `url`: https, or plain http to a loopback host (tests).
pub fn check_fetch_url(url: &str) -> Result<(), JwtConfigError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| JwtConfigError::BadUrl { url: url.to_owned(), reason: e.to_string() })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(JwtConfigError::BadUrl { url: url.to_owned(), reason: "credentials in a URL".into() });
    }
    let loopback = |host: &str| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    match (parsed.scheme(), parsed.host_str()) {
        ("https", Some(h)) if !h.is_empty() => Ok(()),
        ("http", Some(h)) if loopback(h) => Ok(()),
        _ => Err(JwtConfigError::InsecureUrl(url.to_owned())),
    }
}

/// Checks a configured `resource_metadata_url` and returns the origin in front of the
/// well-known path (the resource identifiers' prefix).
pub fn resource_origin(metadata_url: &str) -> Result<&str, JwtConfigError> {
    let bad = || JwtConfigError::ResourceMetadataUrl(metadata_url.to_owned());
    let origin = metadata_url.strip_suffix(RESOURCE_METADATA_PATH).ok_or_else(bad)?;
    let (scheme, host) = origin.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https")
        || host.is_empty()
        || host.contains(['/', '?', '#', '@', '"', '\\'])
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(origin)
}

/// The default metadata URL for mcp-warden's public issuer: the issuer's origin (RFC 9728
/// inserts the well-known path between the host and the resource's path).
pub fn default_resource_metadata_url(issuer: &str) -> String {
    let origin = match issuer.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            format!("{scheme}://{host}")
        }
        None => issuer.trim_end_matches('/').to_owned(),
    };
    format!("{origin}{RESOURCE_METADATA_PATH}")
}

/// Roles named by `claims_to_roles` that the policy does not define, each once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claims_to_roles names roles the policy does not define: {}", .0.join(", "))]
pub struct UnknownRoles(pub Vec<String>);

/// Refuses a `claims_to_roles` mapping that names a role `policy` does not define (for
/// start-up, and for `mcp-warden check`). The error lists every such role.
pub fn check_mapped_roles(config: &JwtConfig, policy: &warden_core::policy::Policy) -> Result<(), UnknownRoles> {
    let mut unknown: Vec<String> = Vec::new();
    for role in config.claims_to_roles.iter().flat_map(|m| m.roles.iter()) {
        if !policy.role_names().iter().any(|p| **p == **role) && !unknown.contains(role) {
            unknown.push(role.clone());
        }
    }
    if unknown.is_empty() { Ok(()) } else { Err(UnknownRoles(unknown)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::idp::testkit::config;

    #[test]
    fn configured_algorithms_never_include_none_or_hmac() {
        for name in ["none", "HS256", "hs384", "HS512"] {
            assert!(matches!(parse_algorithm(name), Err(JwtConfigError::RefusedAlgorithm(_))), "{name}");
        }
        assert!(matches!(parse_algorithm("RSA-OAEP"), Err(JwtConfigError::UnknownAlgorithm(_))));
        assert_eq!(parse_algorithm("PS256").ok(), Some(Algorithm::PS256));
    }

    #[test]
    fn identity_provider_urls_must_be_https_except_on_loopback() {
        for ok in ["https://idp.example.com", "http://127.0.0.1:8080/x", "http://localhost:1", "http://[::1]:2/"] {
            assert!(check_fetch_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://idp.example.com", "http://10.0.0.1", "ftp://x", "https://user:pw@idp.example.com", "idp"] {
            assert!(check_fetch_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_metadata_url_uses_the_issuers_origin() {
        assert_eq!(
            default_resource_metadata_url("https://a.example.com/warden"),
            "https://a.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            default_resource_metadata_url("http://127.0.0.1:9192"),
            "http://127.0.0.1:9192/.well-known/oauth-protected-resource"
        );
        for bad in [
            "https://a.example.com/x/.well-known/oauth-protected-resource",
            "https://a.example.com/.well-known/oauth-protected-resource/mcp",
            "ftp://a/.well-known/oauth-protected-resource",
            "https:///.well-known/oauth-protected-resource",
        ] {
            assert!(resource_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mapped_roles_must_exist_in_the_policy() {
        let policy = warden_core::policy::Policy::load(&[warden_core::policy::Source::inline(
            "p.yaml",
            "kind: role\nversion: v8\nmetadata: {name: admin}\nspec: {}\n",
        )])
        .expect("policy");
        let e = check_mapped_roles(&config(), &policy).expect_err("reader and employee are missing");
        assert_eq!(e, UnknownRoles(vec!["reader".into(), "employee".into()]));
        assert!(e.to_string().ends_with("reader, employee"), "{e}");
        let mut only_admin = config();
        only_admin.claims_to_roles.truncate(1);
        assert_eq!(check_mapped_roles(&only_admin, &policy), Ok(()));
    }
}
