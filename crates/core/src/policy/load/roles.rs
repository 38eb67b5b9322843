//! Roles: Teleport `kind: role` (v7/v8) documents, their `{{…}}` templates, the preset
//! `mcp-user` role, and what one load compiles once and shares between roles.
//!
//! Owns the role rules (version, `app_labels`, `mcp.tools` / `prompts` / `resources`) and
//! compiling them against a user's traits. A role without templates is compiled once, when
//! read; the others are kept as templates and compiled per user. Reads no files.

use std::collections::HashMap;
use std::sync::Arc;

use super::name_rules::{self, RawNameRule};
use super::{Loader, Node};
use crate::policy::condition::Condition;
use crate::policy::pattern::{Interner, NameSet, Template, TraitNamespace, TraitValues};
use crate::policy::rate::{Rate, RoleRates};
use crate::policy::raw::{self, OneOrMany};
use crate::policy::{CompiledRole, LabelSelector, RuleKind, Rules, TraitSource, Traits};

/// Name of the preset role granting every app and every tool.
pub const PRESET_MCP_USER: &str = "mcp-user";

impl Loader {
    /// Validates and (when it uses no template) compiles a role as soon as it is read.
    pub(super) fn add_role(&mut self, node: Node, doc: raw::RoleDoc) {
        let name = doc.metadata.name;
        if let Some(&first) = self.role_index.get(name.as_str()) {
            // Only the preset has no document, and it is added after every document is read.
            let first = (self.roles[first].node.unwrap_or(node), "metadata.name".to_owned());
            self.errors.push(self.duplicate("role", &name, (node, "metadata.name".to_owned()), first));
            return;
        }
        let mut errors = Vec::new();
        match doc.version.as_str() {
            "v8" => {}
            "v7" => {
                let message = "a v7 role: Teleport gives v7 and v8 different MCP semantics; mcp-warden applies v8's (set version: v8)".into();
                self.warnings.push(self.invalid(node, "role", &name, "version".into(), message));
            }
            v => errors.push(("version".to_owned(), format!("unsupported role version '{v}' (use v8)"))),
        }
        let allow_labels = !doc.spec.allow.app_labels.is_empty();
        let rates = self.shared.role_rates(doc.spec.options.rate_limits, &mut errors);
        let allow = RawRules::parse("spec.allow", doc.spec.allow, &mut errors);
        let deny = RawRules::parse("spec.deny", doc.spec.deny, &mut errors);
        let mut def = RoleDef {
            name: name.as_str().into(),
            node: Some(node),
            rules: Some(Box::new([allow, deny])),
            compiled: None,
            idp_trait_patterns: doc.spec.options.idp_trait_patterns,
            invalid: false,
            allow_labels,
            rates,
        };
        if errors.is_empty() && def.is_static() {
            match def.compile(&Traits::new(), TraitSource::Policy, &mut self.shared) {
                Ok(c) => def.set_compiled(c),
                Err((field, m)) => errors.push((field, m)),
            }
        } else if let Some(rules) = def.rules.as_deref() {
            // A templated role compiles per user; its literal entries are checked once here,
            // so a bad one is the role's error, not every holder's.
            rules.iter().for_each(|r| r.check_plain(&mut errors));
        }
        def.invalid = !errors.is_empty();
        for (field, message) in errors {
            self.errors.push(self.invalid(node, "role", &name, field, message));
        }
        self.role_index.insert(def.name.clone(), self.roles.len());
        self.roles.push(def);
    }

    /// A role whose `allow.app_labels` are given but match no app grants nothing.
    pub(super) fn warn_roles_matching_no_app(&mut self, policy: &crate::policy::Policy) {
        let mut found = Vec::new();
        for role in self.roles.iter().filter(|r| r.allow_labels) {
            let (Some(node), Some(c)) = (role.node, &role.compiled) else { continue };
            if !policy.apps().iter().any(|a| c.allow.app_labels.matches(&a.labels)) {
                let message = "matches no app: the role allows nothing".to_owned();
                found.push(self.invalid(node, "role", &role.name, "spec.allow.app_labels".into(), message));
            }
        }
        self.warnings.extend(found);
    }
}

/// A role as written, with its templates parsed but not expanded.
#[derive(Debug)]
pub(crate) struct RoleDef {
    pub(super) name: Arc<str>,
    /// Its document (none for the preset), for duplicate errors and warnings.
    node: Option<Node>,
    /// It has errors (reported once, for the role): users holding it report nothing more.
    pub(super) invalid: bool,
    /// `spec.allow.app_labels` is given, so matching no app is a mistake.
    allow_labels: bool,
    /// The templates, kept only while the role is not compiled: per user, from its traits.
    rules: Option<Box<[RawRules; 2]>>,
    /// Shared by every user when the role uses no templates.
    pub(super) compiled: Option<Arc<CompiledRole>>,
    /// `spec.options.idp_trait_patterns`: an identity provider's trait values expand as
    /// patterns here (else as literals).
    idp_trait_patterns: bool,
    rates: Arc<RoleRates>,
}

#[derive(Debug, Default)]
struct RawRules {
    any_app: bool,
    labels: Vec<(String, Vec<Template>)>,
    tools: Vec<Template>,
    prompts: Option<Vec<Template>>,
    resources: Option<Vec<Template>>,
    labels_expression: Option<Arc<Condition>>,
    name_rules: Vec<RawNameRule>,
    prefix: &'static str,
}

/// What one policy load compiles once and shares: name lists, their regexes, and label
/// selectors.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    sets: Interner,
    labels: HashMap<u64, Vec<Arc<LabelSelector>>>,
}

impl Shared {
    /// `spec.options.rate_limits`, validated against the tiers Envoy defines.
    fn role_rates(&mut self, raw: Option<raw::RateLimits>, errors: &mut Vec<(String, String)>) -> Arc<RoleRates> {
        let Some(raw) = raw else { return Arc::default() };
        let field = "spec.options.rate_limits";
        let rate = |at: String, text: &str, errors: &mut Vec<(String, String)>| {
            Rate::parse(text).map_err(|e| errors.push((at, e.to_string()))).ok()
        };
        let per_user = raw.per_user.as_deref().and_then(|t| rate(format!("{field}.per_user"), t, errors));
        let mut per_tool = Vec::new();
        for (i, entry) in raw.per_tool.into_iter().enumerate() {
            let at = format!("{field}.per_tool[{i}]");
            let Some(r) = rate(format!("{at}.per_user"), &entry.per_user, errors) else { continue };
            match self.sets.compile(&entry.tools.into_vec()) {
                Ok(names) => per_tool.push((names, r)),
                Err(e) => errors.push((format!("{at}.tools"), e.to_string())),
            }
        }
        Arc::new(RoleRates { per_user, per_tool })
    }

    fn label_selector(&mut self, any: bool, keys: Vec<(Box<str>, Arc<NameSet>)>) -> Arc<LabelSelector> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        any.hash(&mut h);
        for (k, v) in &keys {
            (k, Arc::as_ptr(v)).hash(&mut h);
        }
        let same = |l: &LabelSelector| {
            l.any == any
                && l.keys.len() == keys.len()
                && l.keys.iter().zip(&keys).all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
        };
        let bucket = self.labels.entry(h.finish()).or_default();
        if let Some(found) = bucket.iter().find(|l| same(l)) {
            return found.clone();
        }
        let selector = Arc::new(LabelSelector { any, keys: keys.into() });
        bucket.push(selector.clone());
        selector
    }
}

impl RawRules {
    fn parse(prefix: &'static str, c: raw::Conditions, errors: &mut Vec<(String, String)>) -> Self {
        let mut out = RawRules { prefix, ..Default::default() };
        for (key, values) in c.app_labels {
            let values = values.into_vec();
            if key == "*" {
                if !values.is_empty() && values.iter().all(|v| v == "*") {
                    out.any_app = true;
                } else {
                    errors.push((format!("{prefix}.app_labels"), "the '*' key only accepts the value '*'".into()));
                }
                continue;
            }
            let parsed = parse_templates(format!("{prefix}.app_labels.{key}"), &values, errors);
            out.labels.push((key, parsed));
        }
        if let Some(mcp) = c.mcp {
            let mut list = |field: &str, v: Option<OneOrMany>| {
                v.map(|v| parse_templates(format!("{prefix}.mcp.{field}"), &v.into_vec(), errors))
            };
            out.tools = list("tools", mcp.tools).unwrap_or_default();
            out.prompts = list("prompts", mcp.prompts);
            out.resources = list("resources", mcp.resources);
            let lists = [
                (RuleKind::Tool, mcp.tool_rules),
                (RuleKind::Prompt, mcp.prompt_rules),
                (RuleKind::Resource, mcp.resource_rules),
            ];
            out.name_rules = RawNameRule::parse_all(prefix, lists, errors);
        }
        if let Some(source) = c.app_labels_expression {
            out.labels_expression = name_rules::compile(&source)
                .map_err(|e| errors.push((format!("{prefix}.app_labels_expression"), e.to_string())))
                .ok();
        }
        out
    }

    /// Pushes an error for each entry without a template that does not compile.
    fn check_plain(&self, errors: &mut Vec<(String, String)>) {
        let p = self.prefix;
        let lists = self.labels.iter().map(|(k, v)| (format!("{p}.app_labels.{k}"), v.as_slice()));
        let rules =
            [("tools", Some(&self.tools)), ("prompts", self.prompts.as_ref()), ("resources", self.resources.as_ref())];
        let rules = rules.into_iter().filter_map(|(f, v)| Some((format!("{p}.mcp.{f}"), v?.as_slice())));
        for (field, templates) in lists.chain(rules) {
            for (i, t) in templates.iter().enumerate() {
                if let Template::Plain(text) = t
                    && let Err(e) = NameSet::compile(std::slice::from_ref(text))
                {
                    errors.push((format!("{field}[{i}]"), e.to_string()));
                }
            }
        }
    }

    fn is_static(&self) -> bool {
        let plain = |t: &[Template]| t.iter().all(Template::is_plain);
        self.labels.iter().all(|(_, v)| plain(v))
            && plain(&self.tools)
            && self.prompts.as_deref().is_none_or(plain)
            && self.resources.as_deref().is_none_or(plain)
            && self.name_rules.iter().all(RawNameRule::is_static)
    }

    fn compile(&self, traits: &Traits, values: TraitValues, shared: &mut Shared) -> Result<Rules, (String, String)> {
        let lookup = |_: TraitNamespace, name: &str| traits.get(name).map(Vec::as_slice);
        let p = self.prefix;
        let mut compile = |field: &dyn Fn() -> String, t: &[Template]| -> Result<Arc<NameSet>, (String, String)> {
            let mut entries = Vec::with_capacity(t.len());
            for template in t {
                template.expand(lookup, values, &mut entries);
            }
            shared.sets.compile(&entries).map_err(|e| {
                // The entry at fault, when one template alone fails (always, for a static role).
                let bad = t.iter().position(|template| {
                    let mut one = Vec::new();
                    template.expand(lookup, values, &mut one);
                    NameSet::compile(&one).is_err()
                });
                (bad.map_or_else(field, |i| format!("{}[{i}]", field())), e.to_string())
            })
        };
        let mut keys = Vec::with_capacity(self.labels.len());
        for (k, v) in &self.labels {
            keys.push((k.as_str().into(), compile(&|| format!("{p}.app_labels.{k}"), v)?));
        }
        let tools = compile(&|| format!("{p}.mcp.tools"), &self.tools)?;
        let prompts = self.prompts.as_deref().map(|t| compile(&|| format!("{p}.mcp.prompts"), t)).transpose()?;
        let resources = self.resources.as_deref().map(|t| compile(&|| format!("{p}.mcp.resources"), t)).transpose()?;
        let name_rules = self
            .name_rules
            .iter()
            .map(|r| r.compile(traits, values, &mut shared.sets, &format!("{p}.mcp")))
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            app_labels: shared.label_selector(self.any_app, keys),
            tools,
            prompts,
            resources,
            labels_expression: self.labels_expression.clone(),
            name_rules,
        })
    }
}

impl RoleDef {
    /// Compiles the rules against a user's traits. In `allow`, an identity provider's values
    /// are literals unless the role opted into patterns; in `deny` every value stays a
    /// pattern (a wider deny only takes from the user the claim describes).
    pub(super) fn compile(
        &self,
        traits: &Traits,
        source: TraitSource,
        shared: &mut Shared,
    ) -> Result<CompiledRole, (String, String)> {
        let Some([allow, deny]) = self.rules.as_deref() else {
            // Only compiled roles drop their templates.
            return Err(("spec".into(), "role has no rules".into()));
        };
        let values = match source {
            TraitSource::IdentityProvider if !self.idp_trait_patterns => TraitValues::Literals,
            _ => TraitValues::Patterns,
        };
        Ok(CompiledRole {
            name: self.name.clone(),
            allow: allow.compile(traits, values, shared)?,
            deny: deny.compile(traits, TraitValues::Patterns, shared)?,
            rates: self.rates.clone(),
        })
    }

    fn is_static(&self) -> bool {
        self.rules.as_deref().is_some_and(|[allow, deny]| allow.is_static() && deny.is_static())
    }

    /// Keeps the compiled form, shared by every user, and drops the templates.
    fn set_compiled(&mut self, compiled: CompiledRole) {
        self.compiled = Some(Arc::new(compiled));
        self.rules = None;
    }

    pub(super) fn preset_mcp_user(shared: &mut Shared) -> Self {
        let allow = RawRules {
            any_app: true,
            tools: vec![Template::Plain("*".into())],
            prefix: "spec.allow",
            ..Default::default()
        };
        let deny = RawRules { prefix: "spec.deny", ..Default::default() };
        let mut def = RoleDef {
            name: PRESET_MCP_USER.into(),
            node: None,
            invalid: false,
            allow_labels: false,
            rules: Some(Box::new([allow, deny])),
            compiled: None,
            idp_trait_patterns: false,
            rates: Arc::default(),
        };
        if let Ok(c) = def.compile(&Traits::new(), TraitSource::Policy, shared) {
            def.set_compiled(c);
        }
        def
    }
}

pub(super) fn parse_templates(field: String, values: &[String], errors: &mut Vec<(String, String)>) -> Vec<Template> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Template::parse(v).map_err(|e| errors.push((format!("{field}[{i}]"), e.to_string()))).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, load};
    use super::*;

    #[test]
    fn bad_regex_names_role_field_and_pattern() {
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    mcp: {tools: ['^(get$']}\n");
        assert!(e.contains("role 'r'") && e.contains("spec.allow.mcp.tools") && e.contains("^(get$"), "{e}");
    }

    #[test]
    fn roles_and_users_with_the_same_rules_share_them() {
        let role = |n: &str| {
            format!(
                "kind: role\nversion: v8\nmetadata: {{name: {n}}}\nspec: {{allow: {{app_labels: {{env: dev}}, mcp: {{tools: [b, a, '^x.*$']}}}}}}\n---\n"
            )
        };
        let text = format!(
            "{}{}kind: user\nmetadata: {{name: u1}}\nspec: {{roles: [r1, r2]}}\n---\nkind: user\nmetadata: {{name: u2}}\nspec: {{roles: [r1, r2]}}\n",
            role("r1"),
            role("r2")
        );
        let p = load(&text).expect("loads");
        let (u1, u2) = (p.user("u1").expect("u1"), p.user("u2").expect("u2"));
        let (r1, r2) = (&u1.roles[0], &u1.roles[1]);
        assert!(Arc::ptr_eq(&r1.allow.tools, &r2.allow.tools), "one compiled tool list");
        assert!(Arc::ptr_eq(&r1.allow.app_labels, &r2.allow.app_labels), "one label selector");
        assert!(Arc::ptr_eq(&u1.roles, &u2.roles) && Arc::ptr_eq(&u1.role_names, &u2.role_names));
    }

    const TEMPLATED: &str = "kind: role\nversion: v8\nmetadata: {name: lit}\nspec:\n  allow:\n    app_labels: {team: '{{external.team}}'}\n    mcp: {tools: ['{{external.mytools}}']}\n---\nkind: role\nversion: v8\nmetadata: {name: pat}\nspec:\n  options: {idp_trait_patterns: true}\n  allow:\n    mcp: {tools: ['{{external.mytools}}']}\n---\nkind: role\nversion: v8\nmetadata: {name: blocked}\nspec:\n  deny:\n    mcp: {tools: ['{{external.blocked}}']}\n---\nkind: user\nmetadata: {name: admin}\nspec:\n  roles: [lit]\n  traits: {mytools: ['delete_*'], team: ['*']}\n";

    fn traits(mytools: &[&str]) -> Traits {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Traits::from([("mytools".to_owned(), list(mytools)), ("team".to_owned(), list(&["*"]))])
    }

    #[test]
    fn identity_provider_trait_values_are_literals_unless_the_role_opts_in() {
        // Issue 26.7: a token whose `mytools` is `*`, `^.*$` or `delete_*` gets no tool by it.
        let p = load(TEMPLATED).expect("loads");
        let hostile = traits(&["*", "^.*$", "delete_*", "get_weather"]);
        let idp = p.build_user("eve@example.com", &["lit".into(), "pat".into()], hostile).expect("builds");
        let (lit, pat) = (&idp.roles[0], &idp.roles[1]);
        assert!(lit.allow.tools.is_match("get_weather"), "a literal value still names its tool");
        for tool in ["delete_everything", "get_time", "*"] {
            assert!(!lit.allow.tools.is_match(tool), "{tool}: an IdP value is no pattern by default");
        }
        let labels = |team: &str| std::collections::BTreeMap::from([("team".to_owned(), team.to_owned())]);
        assert!(!lit.allow.app_labels.matches(&labels("platform")), "nor in app_labels");
        assert!(pat.allow.tools.is_match("delete_everything"), "idp_trait_patterns: Teleport's expansion");
        // A deny keeps Teleport's reading: a wider deny only takes from this user.
        let mut blocked = traits(&[]);
        blocked.insert("blocked".to_owned(), vec!["delete_*".to_owned()]);
        let idp = p.build_user("eve@example.com", &["blocked".into()], blocked).expect("builds");
        assert!(idp.roles[0].deny.tools.is_match("delete_everything"));
        // The policy's own users: their traits are the policy author's words, patterns.
        let admin = p.user("admin").expect("admin");
        assert!(admin.roles[0].allow.tools.is_match("delete_everything"));
        assert!(admin.roles[0].allow.app_labels.matches(&labels("platform")));
    }

    #[test]
    fn role_options_other_than_ours_are_refused() {
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  options: {max_session_ttl: 8h}\n");
        assert!(e.contains("max_session_ttl"), "{e}");
    }

    #[test]
    fn wildcard_label_key_needs_wildcard_value() {
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {'*': dev}\n");
        assert!(e.contains("'*' key"), "{e}");
        // An empty list is no wildcard: it would otherwise grant every app.
        let e = errors("kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    app_labels: {'*': []}\n");
        assert!(e.contains("'*' key"), "{e}");
    }
}
