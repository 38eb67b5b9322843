//! `kind: pins` documents (issue 25): validated and compiled into each app's
//! [`AppPins`](crate::policy::pins::AppPins) once per load.
//!
//! Owns the pin rules: one document per app, an app the policy defines, version `v1`,
//! well-formed digests, field digests only for pinned fields, and a kept `definition` that
//! is canonical and matches its digest. Reads no files: documents arrive parsed.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Loader, Node, Raw};
use crate::policy::Policy;
use crate::policy::pins::{AppPins, Digest, FieldDigest, Pin, PinEntry, PinKind, PinsDoc, canonical_json};

impl Loader {
    pub(super) fn add_pins(&mut self, node: Node, doc: PinsDoc) {
        self.pins.push(Raw { node, doc });
    }

    /// Compiles every pin document onto its app (after the apps are compiled).
    pub(super) fn compile_pins(&mut self, policy: &mut Policy) {
        let mut first_seen: HashMap<String, Node> = HashMap::new();
        for Raw { node, doc } in std::mem::take(&mut self.pins) {
            let app = doc.metadata.name.clone();
            if let Some(&first) = first_seen.get(&app) {
                let at = (node, "metadata.name".to_owned());
                self.errors.push(self.duplicate("pins", &app, at, (first, "metadata.name".to_owned())));
                continue;
            }
            first_seen.insert(app.clone(), node);
            let mut errors: Vec<(String, String)> = Vec::new();
            if doc.version != "v1" {
                errors.push(("version".into(), format!("unsupported version '{}' (use v1)", doc.version)));
            }
            let Some(&index) = policy.app_by_name.get(app.as_str()) else {
                let message = format!("no app '{app}' is defined in the policy");
                self.errors.push(self.invalid(node, "pins", &app, "metadata.name".into(), message));
                continue;
            };
            let mut tables: [Option<HashMap<Box<str>, Pin>>; 3] = [None, None, None];
            for kind in PinKind::ALL {
                let Some(section) = doc.spec.section(kind) else { continue };
                let mut table = HashMap::with_capacity(section.len());
                for (name, entry) in section {
                    let field = |f: &str| format!("spec.{}.{name}{f}", kind.section());
                    match compile_pin(kind, entry) {
                        Ok(pin) => {
                            table.insert(name.as_str().into(), pin);
                        }
                        Err((f, message)) => errors.push((field(f), message)),
                    }
                }
                tables[kind as usize] = Some(table);
            }
            if !errors.is_empty() {
                for (field, message) in errors {
                    self.errors.push(self.invalid(node, "pins", &app, field, message));
                }
                continue;
            }
            let pins = AppPins::new(doc.spec.action, doc.spec.audit_definitions, tables);
            policy.apps[index].pins = Some(Arc::new(pins));
        }
    }
}

/// One entry; the error names the entry's field (`""`, `.digest`, `.fields.x`, `.definition`).
fn compile_pin(kind: PinKind, entry: &PinEntry) -> Result<Pin, (&'static str, String)> {
    let digest = Digest::parse(&entry.digest)
        .ok_or((".digest", format!("'{}' is not sha256: and 64 lowercase hex digits", entry.digest)))?;
    let mut fields = Vec::with_capacity(entry.fields.len());
    for (name, short) in &entry.fields {
        let Some(&known) = kind.fields().iter().find(|f| **f == name.as_str()) else {
            return Err((".fields", format!("'{name}' is not a pinned field of a {}", kind.as_str())));
        };
        let d = FieldDigest::parse(short).ok_or((".fields", format!("'{short}' is not 16 lowercase hex digits")))?;
        fields.push((known, d));
    }
    if let Some(text) = &entry.definition {
        let canonical = canonical_json(text).map_err(|e| (".definition", format!("not JSON: {e}")))?;
        let seen = crate::policy::pins::definition_of(kind, &canonical).map_err(|e| (".definition", e.to_string()))?;
        if seen.digest != digest {
            return Err((".definition", "does not match the digest (edited by hand? pin it again)".into()));
        }
    }
    Ok(Pin::new(digest, fields.into()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, load};
    use crate::policy::pins::{Action, PinKind, Refusal, definition_of};

    const APP: &str = "kind: app\nmetadata: {name: demo}\nspec: {uri: 'https://h'}\n";

    fn pins_doc(body: &str) -> String {
        format!("{APP}---\nkind: pins\nversion: v1\nmetadata: {{name: demo}}\nspec:\n{body}")
    }

    #[test]
    fn a_pin_document_is_compiled_onto_its_app() {
        let d = definition_of(PinKind::Tool, r#"{"name":"get_a","description":"A"}"#).expect("definition");
        let p = load(&pins_doc(&format!("  action: hide\n  tools:\n    get_a: {{digest: '{}'}}\n", d.digest)))
            .expect("valid");
        let pins = p.app("demo").and_then(|a| a.pins.as_deref()).expect("pins");
        assert_eq!(pins.action, Action::Hide);
        assert_eq!(pins.pin(PinKind::Tool, "get_a").map(|p| p.digest), Some(d.digest));
        assert_eq!(pins.refuses_call(PinKind::Tool, "get_b"), Some(Refusal::NotPinned));
        assert!(!pins.governs(PinKind::Prompt));
    }

    #[test]
    fn apps_without_a_pin_document_have_no_pins() {
        assert!(load(APP).expect("valid").app("demo").expect("app").pins.is_none());
    }

    #[test]
    fn bad_pin_documents_name_the_field() {
        let good = format!("sha256:{}", "a".repeat(64));
        for (body, want) in [
            ("  tools:\n    t: {digest: 'md5:00'}\n".to_owned(), "pins 'demo': spec.tools.t.digest: 'md5:00'"),
            (
                format!("  tools:\n    t: {{digest: '{good}', fields: {{colour: 0011223344556677}}}}\n"),
                "spec.tools.t.fields: 'colour' is not a pinned field",
            ),
            (
                format!("  tools:\n    t: {{digest: '{good}', definition: '{{\"name\":\"t\"}}'}}\n"),
                "spec.tools.t.definition: does not match the digest",
            ),
            ("  action: block\n".to_owned(), "unknown variant `block`"),
        ] {
            let e = errors(&pins_doc(&body));
            assert!(e.contains(want), "want {want}\ngot {e}");
        }
        let e = errors("kind: pins\nversion: v1\nmetadata: {name: ghost}\nspec: {}\n");
        assert!(e.contains("pins 'ghost': metadata.name: no app 'ghost'"), "{e}");
        let twice =
            format!("{}---\nkind: pins\nversion: v1\nmetadata: {{name: demo}}\nspec: {{}}\n", pins_doc("  {}\n"));
        assert!(errors(&twice).contains("duplicate pins 'demo'"), "{}", errors(&twice));
    }
}
