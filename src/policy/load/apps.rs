//! Apps: the seed's `app_service:` block and `kind: app` documents, normalised to one raw
//! form, then validated and compiled into [`App`]s.
//!
//! Owns the app rules: names, URIs, unique `public_addr`s, and `rewrite.headers` templates
//! (forbidden framing headers, `{{…}}` parts). Reads no files: documents arrive parsed.

use std::collections::{BTreeMap, HashMap};

use super::{Loader, PolicyError, Raw};
use crate::policy::pattern::Template;
use crate::policy::raw;
use crate::policy::{App, HeaderRewrite, Policy, ValuePart};

/// Both app shapes, normalised.
pub(super) struct RawApp {
    name: String,
    uri: String,
    description: Option<String>,
    public_addr: Option<String>,
    labels: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    header_errors: Vec<String>,
    client_id: Option<String>,
    scope: Option<String>,
    audit_arguments: bool,
}

impl Loader {
    pub(super) fn add_app_service(&mut self, file: &str, doc: raw::AppServiceDoc) {
        if let Some(enabled) = &doc.app_service.enabled
            && enabled.is_enabled().is_none()
        {
            self.errors.push(PolicyError::Parse {
                file: file.to_owned(),
                message: "app_service.enabled: expected yes/no or true/false".into(),
            });
        }
        if doc.app_service.enabled.as_ref().and_then(|e| e.is_enabled()) == Some(false) {
            return;
        }
        for app in doc.app_service.apps {
            let mut headers = Vec::new();
            let mut header_errors = Vec::new();
            for h in app.rewrite.map(|r| r.headers).unwrap_or_default() {
                match h.split_once(':') {
                    Some((n, v)) => headers.push((n.trim().to_owned(), v.trim().to_owned())),
                    None => header_errors.push(format!("'{h}' is not \"Name: value\"")),
                }
            }
            self.apps.push(Raw {
                file: file.to_owned(),
                doc: RawApp {
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

    pub(super) fn add_app(&mut self, file: &str, doc: raw::AppDoc) {
        if let Some(v) = doc.version.as_deref().filter(|v| *v != "v3") {
            self.errors.push(PolicyError::Parse {
                file: file.to_owned(),
                message: format!("app '{}': unsupported version '{v}' (use v3)", doc.metadata.name),
            });
        }
        let headers =
            doc.spec.rewrite.map(|r| r.headers.into_iter().map(|h| (h.name, h.value)).collect()).unwrap_or_default();
        self.apps.push(Raw {
            file: file.to_owned(),
            doc: RawApp {
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
        let mut first_seen: HashMap<String, String> = HashMap::new();
        for Raw { file, doc } in std::mem::take(&mut self.apps) {
            let invalid = |field: &str, message: String| PolicyError::Invalid {
                file: file.clone(),
                kind: "app",
                name: doc.name.clone(),
                field: field.to_owned(),
                message,
            };
            if let Some(first) = first_seen.get(&doc.name) {
                self.app_errors.push(PolicyError::Duplicate {
                    file: file.clone(),
                    kind: "app",
                    name: doc.name.clone(),
                    first: first.clone(),
                });
                continue;
            }
            first_seen.insert(doc.name.clone(), file.clone());
            let mut ok = true;
            if !valid_name(&doc.name) {
                self.app_errors.push(invalid("name", "use letters, digits, '.', '_' and '-'".into()));
                ok = false;
            }
            if let Err(m) = check_uri(&doc.uri) {
                self.app_errors.push(invalid("uri", m));
                ok = false;
            }
            for m in &doc.header_errors {
                self.app_errors.push(invalid("rewrite.headers", m.clone()));
                ok = false;
            }
            let mut rewrite = Vec::new();
            for (name, value) in &doc.headers {
                match compile_header(name, value) {
                    Ok(h) => rewrite.push(h),
                    Err(m) => {
                        self.app_errors.push(invalid("rewrite.headers", m));
                        ok = false;
                    }
                }
            }
            if let Some(addr) = &doc.public_addr {
                let key = addr.to_ascii_lowercase();
                if policy.app_by_host.contains_key(key.as_str()) {
                    self.app_errors.push(invalid("public_addr", format!("'{addr}' is used by another app")));
                    ok = false;
                }
            }
            if !ok {
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
            });
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_uri(uri: &str) -> Result<(), String> {
    let rest = ["mcp+https://", "mcp+http://", "https://", "http://"]
        .iter()
        .find_map(|s| uri.strip_prefix(s))
        .ok_or_else(|| format!("'{uri}' must start with mcp+https://, mcp+http://, https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') || uri.chars().any(char::is_whitespace) {
        return Err(format!("'{uri}' has no host"));
    }
    Ok(())
}

/// Headers a rewrite may never set: they would change routing or framing.
const FORBIDDEN_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection", "te", "upgrade"];

fn compile_header(name: &str, value: &str) -> Result<HeaderRewrite, String> {
    let lower = name.to_ascii_lowercase();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if lower.is_empty() || !lower.bytes().all(token) {
        return Err(format!("'{name}' is not a valid header name"));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        return Err(format!("header '{name}' cannot be rewritten"));
    }
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(ValuePart::Text(rest[..open].into()));
        }
        let close =
            rest[open..].find("}}").map(|i| i + open).ok_or_else(|| format!("'{value}': '{{{{' without '}}}}'"))?;
        let inner = rest[open + 2..close].trim();
        parts.push(match inner {
            "internal.id_token" => ValuePart::IdToken,
            _ => match Template::parse(&rest[open..close + 2]).map_err(|e| e.to_string())? {
                Template::Trait { namespace, name, .. } => ValuePart::Trait(namespace, name.into()),
                Template::Plain(_) => return Err(format!("'{value}': unsupported template")),
            },
        });
        rest = &rest[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(ValuePart::Text(rest.into()));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header '{name}' value contains a control character"));
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
