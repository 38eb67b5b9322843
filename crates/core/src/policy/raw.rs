//! Raw policy resources exactly as written in YAML: the seed's `app_service:` block, the
//! dynamic `kind: app`, Teleport `kind: role` (v7/v8) and `kind: user`.
//!
//! Owns only the serde shapes. Every struct rejects unknown fields; nothing here is
//! validated or compiled — `load` turns these into a [`super::Policy`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// What a YAML document is, read before the typed parse so errors name the right shape.
#[derive(Debug, Deserialize)]
pub(crate) struct Probe {
    pub(crate) kind: Option<String>,
    pub(crate) app_service: Option<serde::de::IgnoredAny>,
}

/// The seed's `app_service:` block (a Teleport file-configuration fragment).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppServiceDoc {
    pub(crate) app_service: AppService,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppService {
    #[serde(default)]
    pub(crate) enabled: Option<YesNo>,
    #[serde(default)]
    pub(crate) apps: Vec<ServiceApp>,
}

/// Teleport accepts `enabled: "yes"`, `true`, `"true"`…
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum YesNo {
    Bool(bool),
    Text(String),
}

impl YesNo {
    pub(crate) fn is_enabled(&self) -> Option<bool> {
        match self {
            YesNo::Bool(b) => Some(*b),
            YesNo::Text(t) => match t.as_str() {
                "yes" | "true" | "on" | "1" => Some(true),
                "no" | "false" | "off" | "0" => Some(false),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceApp {
    pub(crate) name: String,
    pub(crate) uri: String,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) public_addr: Option<String>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) rewrite: Option<ServiceRewrite>,
    #[serde(default)]
    pub(crate) client_id: Option<String>,
    /// Our extension: write `tools/call` arguments into audit events for this app.
    #[serde(default)]
    pub(crate) audit_arguments: bool,
    #[serde(default)]
    pub(crate) scope: Option<String>,
}

/// `rewrite.headers` as `"Name: value"` strings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceRewrite {
    #[serde(default)]
    pub(crate) headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metadata {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

/// `kind: app` — the dynamic-registration form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppDoc {
    #[allow(dead_code, reason = "checked by the probe")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) version: Option<String>,
    pub(crate) metadata: Metadata,
    pub(crate) spec: AppSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSpec {
    pub(crate) uri: String,
    #[serde(default)]
    pub(crate) public_addr: Option<String>,
    #[serde(default)]
    pub(crate) rewrite: Option<AppRewrite>,
    #[serde(default)]
    pub(crate) client_id: Option<String>,
    /// Our extension: write `tools/call` arguments into audit events for this app.
    #[serde(default)]
    pub(crate) audit_arguments: bool,
    #[serde(default)]
    pub(crate) scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppRewrite {
    #[serde(default)]
    pub(crate) headers: Vec<HeaderPair>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderPair {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// `kind: role`, Teleport role versions v7 and v8.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleDoc {
    #[allow(dead_code, reason = "checked by the probe")]
    pub(crate) kind: String,
    pub(crate) version: String,
    pub(crate) metadata: Metadata,
    #[serde(default)]
    pub(crate) spec: RoleSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleSpec {
    #[serde(default)]
    pub(crate) allow: Conditions,
    #[serde(default)]
    pub(crate) deny: Conditions,
    #[serde(default)]
    pub(crate) options: RoleOptions,
}

/// `spec.options`: of Teleport's role options, only our extension.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleOptions {
    /// Our extension: trait values an identity provider supplied expand into this role's
    /// `allow` templates as patterns (globs, `^regex$`), as in Teleport, instead of as
    /// literals (`deny` templates always read them as patterns).
    #[serde(default)]
    pub(crate) idp_trait_patterns: bool,
    /// Our extension: limits Envoy counts per user, and per user and tool.
    #[serde(default)]
    pub(crate) rate_limits: Option<RateLimits>,
}

/// `spec.options.rate_limits`: tier names (`60/minute`), see `policy::rate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimits {
    #[serde(default)]
    pub(crate) per_user: Option<String>,
    #[serde(default)]
    pub(crate) per_tool: Vec<ToolRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolRate {
    pub(crate) tools: OneOrMany,
    pub(crate) per_user: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Conditions {
    #[serde(default)]
    pub(crate) app_labels: BTreeMap<String, OneOrMany>,
    /// Teleport role v8's predicate form of `app_labels` (a CEL expression).
    #[serde(default)]
    pub(crate) app_labels_expression: Option<String>,
    #[serde(default)]
    pub(crate) mcp: Option<McpRules>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct McpRules {
    #[serde(default)]
    pub(crate) tools: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) prompts: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) resources: Option<OneOrMany>,
    /// Our extension: tool rules with a condition on the call and/or a mode.
    #[serde(default)]
    pub(crate) tool_rules: Vec<NameRule>,
    #[serde(default)]
    pub(crate) prompt_rules: Vec<NameRule>,
    #[serde(default)]
    pub(crate) resource_rules: Vec<NameRule>,
}

/// One entry of `tool_rules` / `prompt_rules` / `resource_rules`: names (as in `tools`),
/// an optional CEL condition, and whether the rule decides or is only audited.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameRule {
    #[serde(alias = "tools", alias = "prompts", alias = "resources")]
    pub(crate) names: OneOrMany,
    #[serde(default, rename = "where")]
    pub(crate) condition: Option<String>,
    #[serde(default)]
    pub(crate) mode: RuleMode,
}

/// `enforce` (the default) decides; `audit` is computed and audited, never decides.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RuleMode {
    #[default]
    Enforce,
    Audit,
}

/// A label value or rule list: Teleport accepts a single string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `kind: user`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserDoc {
    #[allow(dead_code, reason = "checked by the probe")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) version: Option<String>,
    pub(crate) metadata: Metadata,
    #[serde(default)]
    pub(crate) spec: UserSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserSpec {
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) traits: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub(crate) api_keys: Vec<String>,
    #[serde(default)]
    pub(crate) mtls_principals: Vec<String>,
}
