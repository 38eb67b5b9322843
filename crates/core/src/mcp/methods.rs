//! Every MCP method a client may send, in every supported protocol version, and how each is
//! governed: the code's copy of the table in docs/mcp-methods.md (a test holds the two
//! equal, and another runs a message of every row through [`super::governed`]).
//!
//! Also reads the one governed list a message can hold, `subscriptions/listen`'s
//! `params.notifications.resourceSubscriptions` (2026-07-28), from a body the strict reader
//! already accepted. Pure: no I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::ProtocolVersion::{self, V2024_11_05, V2025_03_26, V2025_06_18, V2025_11_25, V2026_07_28};
use super::jsonrpc::folds_to;

/// How a client sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentAs {
    Request,
    Notification,
    /// The client's answer to a request of the server's (a JSON-RPC response; it carries no
    /// method, so its row names the server's request).
    Response,
}

/// What the check reads in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governance {
    /// `params.name` as a tool.
    Tool,
    /// `params.name` as a prompt.
    Prompt,
    /// `params.uri` as a resource.
    Resource,
    /// `params.ref`: `ref/prompt` → `name` as a prompt; `ref/resource` → `uri` (a URI
    /// template) as a resource, as the list filter reads `uriTemplate`.
    CompletionRef,
    /// Every `params.notifications.resourceSubscriptions[]` as a resource; all must be allowed.
    Subscriptions,
    /// Names nothing; its answer lists tools, prompts or resources and goes through the list
    /// filter.
    ListFiltered,
    /// Names nothing a policy governs.
    None,
    /// Refused in this form (a 2026-07-28 client may not POST a response).
    Refused,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub name: &'static str,
    pub sent_as: SentAs,
    pub versions: &'static [ProtocolVersion],
    pub governance: Governance,
}

const ALL: &[ProtocolVersion] = &[V2024_11_05, V2025_03_26, V2025_06_18, V2025_11_25, V2026_07_28];
const SESSIONS: &[ProtocolVersion] = &[V2024_11_05, V2025_03_26, V2025_06_18, V2025_11_25];
const FROM_2025_06: &[ProtocolVersion] = &[V2025_06_18, V2025_11_25];
const TASKS: &[ProtocolVersion] = &[V2025_11_25];
const STATELESS: &[ProtocolVersion] = &[V2026_07_28];

const fn row(name: &'static str, sent_as: SentAs, versions: &'static [ProtocolVersion], g: Governance) -> Method {
    Method { name, sent_as, versions, governance: g }
}

use Governance as G;
use SentAs::{Notification as N, Request as R, Response as A};

/// The table (docs/mcp-methods.md), in its order.
pub const METHODS: &[Method] = &[
    row("initialize", R, SESSIONS, G::None),
    row("ping", R, SESSIONS, G::None),
    row("server/discover", R, STATELESS, G::None),
    row("tools/list", R, ALL, G::ListFiltered),
    row("tools/call", R, ALL, G::Tool),
    row("prompts/list", R, ALL, G::ListFiltered),
    row("prompts/get", R, ALL, G::Prompt),
    row("resources/list", R, ALL, G::ListFiltered),
    row("resources/templates/list", R, ALL, G::ListFiltered),
    row("resources/read", R, ALL, G::Resource),
    row("resources/subscribe", R, SESSIONS, G::Resource),
    row("resources/unsubscribe", R, SESSIONS, G::Resource),
    row("subscriptions/listen", R, STATELESS, G::Subscriptions),
    row("completion/complete", R, ALL, G::CompletionRef),
    row("logging/setLevel", R, SESSIONS, G::None),
    row("tasks/get", R, TASKS, G::None),
    row("tasks/result", R, TASKS, G::None),
    row("tasks/list", R, TASKS, G::None),
    row("tasks/cancel", R, TASKS, G::None),
    row("notifications/initialized", N, SESSIONS, G::None),
    row("notifications/cancelled", N, ALL, G::None),
    row("notifications/progress", N, SESSIONS, G::None),
    row("notifications/roots/list_changed", N, SESSIONS, G::None),
    row("notifications/tasks/status", N, TASKS, G::None),
    row("ping", A, SESSIONS, G::None),
    row("sampling/createMessage", A, SESSIONS, G::None),
    row("roots/list", A, SESSIONS, G::None),
    row("elicitation/create", A, FROM_2025_06, G::None),
    row("tasks/get", A, TASKS, G::None),
    row("tasks/result", A, TASKS, G::None),
    row("tasks/list", A, TASKS, G::None),
    row("tasks/cancel", A, TASKS, G::None),
    row("any server request", A, STATELESS, G::Refused),
];

/// Why `subscriptions/listen`'s list of URIs cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionsError {
    #[error("params.notifications.resourceSubscriptions must be an array of strings")]
    NotStrings,
    #[error("a key differs from 'params', 'notifications' or 'resourceSubscriptions' only by case")]
    CaseVariant,
}

/// `params.notifications.resourceSubscriptions` of a `subscriptions/listen` body (the strict
/// reader accepted it already: one JSON-RPC object, no duplicate key at any level). Keys an
/// upstream matching keys case-insensitively would read the same are refused, as everywhere.
pub fn subscriptions(body: &str) -> Result<Vec<Cow<'_, str>>, SubscriptionsError> {
    type Object<'a> = BTreeMap<Cow<'a, str>, &'a RawValue>;
    fn object<'a>(raw: Option<&'a RawValue>) -> Result<Object<'a>, SubscriptionsError> {
        match raw {
            None => Ok(Object::new()),
            Some(raw) => serde_json::from_str(raw.get()).map_err(|_| SubscriptionsError::NotStrings),
        }
    }
    fn member<'a>(object: &Object<'a>, key: &str) -> Result<Option<&'a RawValue>, SubscriptionsError> {
        if object.keys().any(|k| k != key && folds_to(k, key)) {
            return Err(SubscriptionsError::CaseVariant);
        }
        Ok(object.get(key).copied())
    }
    let top: Object<'_> = serde_json::from_str(body).map_err(|_| SubscriptionsError::NotStrings)?;
    let params = object(member(&top, "params")?)?;
    let notifications = object(member(&params, "notifications")?)?;
    match member(&notifications, "resourceSubscriptions")? {
        None => Ok(Vec::new()),
        Some(list) => serde_json::from_str(list.get()).map_err(|_| SubscriptionsError::NotStrings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::ListKind;
    use crate::mcp::{Body, governed, jsonrpc};
    use crate::policy::Governed;

    /// docs/mcp-methods.md's table: method, sent as, versions, governed as.
    fn doc_rows() -> Vec<(String, String, String, String)> {
        let doc = include_str!("../../../../docs/mcp-methods.md");
        let table = doc.split("<!-- methods table -->").nth(1).expect("the table marker");
        table
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| method") && !l.starts_with("| ---"))
            .map(|l| {
                let cells: Vec<String> =
                    l.split('|').map(|c| c.trim().trim_matches('`').to_owned()).filter(|c| !c.is_empty()).collect();
                (cells[0].clone(), cells[1].clone(), cells[2].clone(), cells[3].clone())
            })
            .collect()
    }

    fn code(g: Governance) -> &'static str {
        match g {
            G::Tool => "tool",
            G::Prompt => "prompt",
            G::Resource => "resource",
            G::CompletionRef => "completion ref",
            G::Subscriptions => "resource subscriptions",
            G::ListFiltered => "list filter",
            G::None => "none",
            G::Refused => "refused",
        }
    }

    fn sent(s: SentAs) -> &'static str {
        match s {
            R => "request",
            N => "notification",
            A => "response",
        }
    }

    #[test]
    fn the_code_table_is_the_documented_table() {
        let ours: Vec<_> = METHODS
            .iter()
            .map(|m| {
                let versions: Vec<_> = m.versions.iter().map(|v| v.as_str()).collect();
                (m.name.to_owned(), sent(m.sent_as).to_owned(), versions.join(", "), code(m.governance).to_owned())
            })
            .collect();
        assert_eq!(doc_rows(), ours);
    }

    /// One message of each request and notification row, through `governed`: what it names
    /// must be what its row says.
    #[test]
    fn every_row_is_governed_as_the_table_says() {
        for m in METHODS.iter().filter(|m| m.sent_as != A) {
            let id = if m.sent_as == N { "" } else { r#""id":1,"# };
            let params = match m.governance {
                G::CompletionRef => r#"{"ref":{"type":"ref/prompt","name":"p"}}"#,
                _ => r#"{"name":"n","uri":"u://x"}"#,
            };
            let body = format!(r#"{{"jsonrpc":"2.0",{id}"method":"{}","params":{params}}}"#, m.name);
            let Ok(Body::Single(msg)) = jsonrpc::parse(&body, 8, 100) else { panic!("{body}") };
            let got = governed(&msg).unwrap_or_else(|r| panic!("{}: refused {}", m.name, r.reason));
            let expected = match m.governance {
                G::Tool => Some(Governed::Tool("n")),
                G::Prompt => Some(Governed::Prompt("n")),
                G::CompletionRef => Some(Governed::Prompt("p")),
                G::Resource => Some(Governed::Resource("u://x")),
                G::Subscriptions | G::ListFiltered | G::None | G::Refused => None,
            };
            let listed = ListKind::from_decision(Some(m.name), None, None).is_some();
            assert_eq!(listed, m.governance == G::ListFiltered, "{}: read by the list filter", m.name);
            assert_eq!(got, expected, "{}", m.name);
        }
    }

    #[test]
    fn listen_reads_every_subscribed_uri_and_refuses_case_variants() {
        let body =
            |params: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{params}}}"#);
        let listen = body(r#"{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["a://1","b:\/\/2"]}}"#);
        assert_eq!(subscriptions(&listen).expect("read"), ["a://1", "b://2"]);
        assert_eq!(
            subscriptions(&body(r#"{"notifications":{"toolsListChanged":true}}"#)).expect("none"),
            Vec::<Cow<'_, str>>::new()
        );
        for bad in [
            r#"{"notifications":{"resourcesubscriptions":["a://1"]}}"#,
            r#"{"Notifications":{"resourceSubscriptions":["a://1"]}}"#,
        ] {
            assert_eq!(subscriptions(&body(bad)), Err(SubscriptionsError::CaseVariant), "{bad}");
        }
        for bad in [
            r#"{"notifications":{"resourceSubscriptions":"a://1"}}"#,
            r#"{"notifications":{"resourceSubscriptions":[1]}}"#,
        ] {
            assert_eq!(subscriptions(&body(bad)), Err(SubscriptionsError::NotStrings), "{bad}");
        }
    }
}
