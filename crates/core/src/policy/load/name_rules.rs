//! Our extension of Teleport's role rules: `mcp.tool_rules` / `prompt_rules` /
//! `resource_rules` (names with a CEL condition and a mode) and Teleport's
//! `app_labels_expression`. Expressions are compiled here, once per load; a bad one is a
//! load error naming the field and CEL's message. Names may use `{{…}}` templates like
//! `mcp.tools`, expanded per user by the role compiler.

use std::sync::Arc;

use crate::policy::condition::{Condition, ConditionError};
use crate::policy::pattern::{Interner, Template, TraitNamespace, TraitValues};
use crate::policy::raw::{NameRule as RawRule, RuleMode};
use crate::policy::{NameRule, RuleKind, Traits};

/// One rule as written, its names still templates.
#[derive(Debug)]
pub(super) struct RawNameRule {
    kind: RuleKind,
    names: Vec<Template>,
    condition: Option<Arc<Condition>>,
    shadow: bool,
    label: Box<str>,
}

impl RawNameRule {
    /// Parses `{prefix}.mcp.{tool,prompt,resource}_rules`; errors are `(field, message)`.
    pub(super) fn parse_all(
        prefix: &str,
        lists: [(RuleKind, Vec<RawRule>); 3],
        errors: &mut Vec<(String, String)>,
    ) -> Vec<Self> {
        let mut out = Vec::new();
        for (kind, rules) in lists {
            let field = match kind {
                RuleKind::Tool => "tool_rules",
                RuleKind::Prompt => "prompt_rules",
                RuleKind::Resource => "resource_rules",
            };
            for (i, rule) in rules.into_iter().enumerate() {
                let label = format!("{field}[{i}]");
                let at = format!("{prefix}.mcp.{label}");
                let names = super::roles::parse_templates(at.clone(), &rule.names.into_vec(), errors);
                let condition = rule.condition.as_deref().and_then(|source| {
                    compile(source).map_err(|e| errors.push((format!("{at}.where"), e.to_string()))).ok()
                });
                let label = match &condition {
                    Some(c) => format!("{label}: {}", c.source()),
                    None => label,
                };
                let shadow = rule.mode == RuleMode::Audit;
                out.push(RawNameRule { kind, names, condition, shadow, label: label.into() });
            }
        }
        out
    }

    pub(super) fn is_static(&self) -> bool {
        self.names.iter().all(Template::is_plain)
    }

    pub(super) fn compile(
        &self,
        traits: &Traits,
        values: TraitValues,
        sets: &mut Interner,
        field: &str,
    ) -> Result<NameRule, (String, String)> {
        let lookup = |_: TraitNamespace, name: &str| traits.get(name).map(Vec::as_slice);
        let mut entries = Vec::with_capacity(self.names.len());
        for template in &self.names {
            template.expand(lookup, values, &mut entries);
        }
        let names = sets.compile(&entries).map_err(|e| (format!("{field}.{}", self.label), e.to_string()))?;
        Ok(NameRule {
            kind: self.kind,
            names,
            condition: self.condition.clone(),
            shadow: self.shadow,
            label: self.label.clone(),
        })
    }
}

/// A `where` or `app_labels_expression` that does not compile, and the expression.
#[derive(Debug, thiserror::Error)]
#[error("invalid CEL expression '{expression}': {error}")]
pub(super) struct InvalidExpression {
    expression: String,
    error: ConditionError,
}

/// Compiles an expression (`where`, `app_labels_expression`): CEL's error, with the
/// expression, on failure.
pub(super) fn compile(source: &str) -> Result<Arc<Condition>, InvalidExpression> {
    Condition::compile(source).map(Arc::new).map_err(|error| InvalidExpression { expression: source.to_owned(), error })
}
