//! Apps: the seed's `app_service:` block and `kind: app` documents, normalised to one raw
//! form, then validated and compiled into [`App`]s.
//!
//! Owns the app rules: names, URIs, unique `public_addr`s, and `rewrite.headers` templates
//! (forbidden framing headers, `{{…}}` parts). Reads no files: documents arrive parsed.

use std::collections::{BTreeMap, HashMap};

use super::{Loader, Node, Raw};
use crate::policy::pattern::{Template, TemplateError};
use crate::policy::raw;
use crate::policy::{App, HeaderRewrite, Policy, ValuePart};

/// Both app shapes, normalised.
pub(super) struct RawApp {
    /// Field paths in its document: `app_service.apps[i].` or `metadata.`/`spec.` (see [`Form`]).
    form: Form,
    name: String,
    uri: String,
    description: Option<String>,
    public_addr: Option<String>,
    labels: BTreeMap<String, String>,
    /// Each with its position in the written list.
    headers: Vec<(usize, String, String)>,
    header_errors: Vec<(usize, String)>,
    client_id: Option<String>,
    scope: Option<String>,
    audit_arguments: bool,
}

/// Which shape an app was written in, for the field paths of its errors.
#[derive(Clone, Copy)]
enum Form {
    /// The `i`th entry of `app_service.apps`.
    Service(usize),
    /// `kind: app`.
    Resource,
}

impl Form {
    fn path(self, field: &str) -> String {
        match self {
            Form::Service(i) => format!("app_service.apps[{i}].{field}"),
            Form::Resource if field == "name" => "metadata.name".to_owned(),
            Form::Resource => format!("spec.{field}"),
        }
    }
}

impl Loader {
    pub(super) fn add_app_service(&mut self, node: Node, doc: raw::AppServiceDoc) {
        if let Some(enabled) = &doc.app_service.enabled
            && enabled.is_enabled().is_none()
        {
            let message = "app_service.enabled: expected yes/no or true/false".into();
            self.errors.push(self.parse_at(node, "app_service.enabled", message));
        }
        if doc.app_service.enabled.as_ref().and_then(|e| e.is_enabled()) == Some(false) {
            return;
        }
        for (i, app) in doc.app_service.apps.into_iter().enumerate() {
            let mut headers = Vec::new();
            let mut header_errors = Vec::new();
            for (j, h) in app.rewrite.map(|r| r.headers).unwrap_or_default().into_iter().enumerate() {
                match h.split_once(':') {
                    Some((n, v)) => headers.push((j, n.trim().to_owned(), v.trim().to_owned())),
                    None => header_errors.push((j, format!("'{h}' is not \"Name: value\""))),
                }
            }
            self.apps.push(Raw {
                node,
                doc: RawApp {
                    form: Form::Service(i),
                    name: app.name,
                    uri: app.uri,
                    description: app.description,
                    public_addr: app.public_addr,
                    labels: app.labels,
                    headers,
                    header_errors,
                    client_id: app.client_id,
                    audit_arguments: app.audit_arguments,
                    scope: app.scope,
                },
            });
        }
    }

    pub(super) fn add_app(&mut self, node: Node, doc: raw::AppDoc) {
        if let Some(v) = doc.version.as_deref().filter(|v| *v != "v3") {
            let message = format!("app '{}': version: unsupported version '{v}' (use v3)", doc.metadata.name);
            self.errors.push(self.parse_at(node, "version", message));
        }
        let headers =
            doc.spec.rewrite.map(|r| r.headers.into_iter().enumerate().map(|(j, h)| (j, h.name, h.value)).collect());
        let headers = headers.unwrap_or_default();
        self.apps.push(Raw {
            node,
            doc: RawApp {
                form: Form::Resource,
                name: doc.metadata.name,
                uri: doc.spec.uri,
                description: doc.metadata.description,
                public_addr: doc.spec.public_addr,
                labels: doc.metadata.labels,
                headers,
                header_errors: Vec::new(),
                client_id: doc.spec.client_id,
                audit_arguments: doc.spec.audit_arguments,
                scope: doc.spec.scope,
            },
        });
    }

    pub(super) fn compile_apps(&mut self, policy: &mut Policy) {
        let mut first_seen: HashMap<String, (Node, String)> = HashMap::new();
        for Raw { node, doc } in std::mem::take(&mut self.apps) {
            let name_at = (node, doc.form.path("name"));
            if let Some(first) = first_seen.get(&doc.name) {
                self.errors.push(self.duplicate("app", &doc.name, name_at, first.clone()));
                continue;
            }
            first_seen.insert(doc.name.clone(), name_at);
            let mut errors = Vec::new();
            if !valid_name(&doc.name) {
                errors.push(("name".to_owned(), "use letters, digits, '.', '_' and '-'".to_owned()));
            }
            if let Err(e) = check_uri(&doc.uri) {
                errors.push(("uri".to_owned(), e.to_string()));
            }
            for (j, m) in &doc.header_errors {
                errors.push((format!("rewrite.headers[{j}]"), m.clone()));
            }
            let mut rewrite = Vec::new();
            for (j, name, value) in &doc.headers {
                match compile_header(name, value) {
                    Ok(h) => rewrite.push(h),
                    Err(e) => errors.push((format!("rewrite.headers[{j}]"), e.to_string())),
                }
            }
            if let Some(addr) = &doc.public_addr
                && policy.app_by_host.contains_key(addr.to_ascii_lowercase().as_str())
            {
                errors.push(("public_addr".to_owned(), format!("'{addr}' is used by another app")));
            }
            if !errors.is_empty() {
                for (field, message) in errors {
                    self.errors.push(self.invalid(node, "app", &doc.name, doc.form.path(&field), message));
                }
                continue;
            }
            let idx = policy.apps.len();
            policy.app_by_name.insert(doc.name.as_str().into(), idx);
            if let Some(addr) = &doc.public_addr {
                policy.app_by_host.insert(addr.to_ascii_lowercase().into(), idx);
            }
            policy.apps.push(App {
                name: doc.name.as_str().into(),
                uri: doc.uri.as_str().into(),
                description: doc.description.map(Into::into),
                public_addr: doc.public_addr.map(Into::into),
                labels: doc.labels,
                rewrite,
                client_id: doc.client_id.map(Into::into),
                audit_arguments: doc.audit_arguments,
                scope: doc.scope.map(Into::into),
                pins: None,
            });
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An app's `uri` or a header rewrite that cannot be used, naming it.
#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("'{0}' must start with mcp+https://, mcp+http://, https:// or http://")]
    UriScheme(String),
    #[error("'{0}' has no host")]
    UriHost(String),
    #[error("'{0}' is not a valid header name")]
    HeaderName(String),
    #[error("header '{0}' cannot be rewritten")]
    ForbiddenHeader(String),
    #[error("'{0}': '{{{{' without '}}}}'")]
    Unclosed(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("'{0}': unsupported template")]
    Unsupported(String),
    #[error("header '{0}' value contains a control character")]
    ControlCharacter(String),
}

fn check_uri(uri: &str) -> Result<(), AppError> {
    let rest = ["mcp+https://", "mcp+http://", "https://", "http://"]
        .iter()
        .find_map(|s| uri.strip_prefix(s))
        .ok_or_else(|| AppError::UriScheme(uri.to_owned()))?;
    if rest.is_empty() || rest.starts_with('/') || uri.chars().any(char::is_whitespace) {
        return Err(AppError::UriHost(uri.to_owned()));
    }
    Ok(())
}

/// Headers a rewrite may never set: they would change routing or framing.
const FORBIDDEN_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection", "te", "upgrade"];

fn compile_header(name: &str, value: &str) -> Result<HeaderRewrite, AppError> {
    let lower = name.to_ascii_lowercase();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if lower.is_empty() || !lower.bytes().all(token) {
        return Err(AppError::HeaderName(name.to_owned()));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        return Err(AppError::ForbiddenHeader(name.to_owned()));
    }
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(ValuePart::Text(rest[..open].into()));
        }
        let close = rest[open..].find("}}").map(|i| i + open).ok_or_else(|| AppError::Unclosed(value.to_owned()))?;
        let inner = rest[open + 2..close].trim();
        parts.push(match inner {
            "internal.id_token" => ValuePart::IdToken,
            _ => match Template::parse(&rest[open..close + 2])? {
                Template::Trait { namespace, name, .. } => ValuePart::Trait(namespace, name.into()),
                Template::Plain(_) => return Err(AppError::Unsupported(value.to_owned())),
            },
        });
        rest = &rest[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(ValuePart::Text(rest.into()));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(AppError::ControlCharacter(name.to_owned()));
    }
    Ok(HeaderRewrite { name: lower.into(), value: parts })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, load};

    #[test]
    fn dynamic_app_form_is_accepted() {
        let p = load(
            "kind: app\nversion: v3\nmetadata: {name: a, labels: {x: y}}\nspec:\n  uri: https://h/mcp\n  public_addr: mcp.example.com\n  rewrite:\n    headers:\n    - {name: X-User, value: '{{external.email}}'}\n",
        )
        .expect("loads");
        assert!(p.app_by_host("mcp.example.com:443").is_some());
        assert!(p.app_by_host("MCP.example.com").is_none(), "lookups use the lower-cased Host the caller passes");
    }

    #[test]
    fn rewrite_of_a_framing_header_is_rejected() {
        let e =
            errors("app_service:\n  apps:\n  - name: a\n    uri: https://h\n    rewrite: {headers: ['Host: evil']}\n");
        assert!(e.contains("app 'a'") && e.contains("cannot be rewritten"), "{e}");
    }

    #[test]
    fn uri_without_supported_scheme_is_rejected() {
        let e = errors("app_service:\n  apps:\n  - name: a\n    uri: ftp://h\n");
        assert!(e.contains("field") || e.contains("uri"), "{e}");
    }
}
