//! What one check records: the audit event(s) and the decision metadata handed to Envoy.
//! Collected while the check runs, written once at its end (batches element by element).
//! Every client-supplied value is held as recorded: cut to the configured [`Bounds`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::value::RawValue;

use super::{Context, Delivery};
use crate::audit::{self, Audit, Event};
use crate::config::EnvoyMetadata;
use warden_core::bounds::Bounds;
use warden_core::decision::ListKind;
use warden_core::mcp::{self, Message, Rejection};
use warden_core::policy::engine::{Shadow, ShadowOutcome};
use warden_core::policy::rate::Rate;
use warden_core::policy::{App, Decision, User};

/// A user's name and roles, as audited.
type AuditUser = (Arc<str>, Arc<[Arc<str>]>);

/// Collects what the audit event of one check says.
pub(super) struct AuditInfo<'a> {
    pub(super) started: Instant,
    pub(super) bounds: Bounds,
    pub(super) event: &'static str,
    pub(super) request_id: Cow<'a, str>,
    pub(super) http_method: Cow<'a, str>,
    pub(super) session_id: Option<Cow<'a, str>>,
    pub(super) user: Option<AuditUser>,
    pub(super) fingerprint: Option<u64>,
    pub(super) app: Option<&'a App>,
    pub(super) mcp_method: Option<Cow<'a, str>>,
    pub(super) jsonrpc_id: Option<Cow<'a, RawValue>>,
    pub(super) name: Option<(&'static str, String)>,
    pub(super) protocol_version: Option<&'static str>,
    pub(super) reason: &'static str,
    pub(super) role: Option<String>,
    pub(super) rule: Option<String>,
    pub(super) token_cached: Option<bool>,
    /// `tools/call` arguments, only for apps with `audit_arguments: true`.
    pub(super) arguments: Option<serde_json::Value>,
    /// Batches are audited element by element: each element's record and whether it was
    /// allowed, written once the answer's fate is known.
    pub(super) batch: bool,
    elements: Vec<(AuditInfo<'a>, bool)>,
    /// The rate-limit tiers Envoy counts this call against: per user, per user and tool.
    pub(super) rates: (Option<Rate>, Option<Rate>),
}

impl<'a> AuditInfo<'a> {
    pub(super) fn new(ctx: &Context<'a>, started: Instant, bounds: Bounds) -> Self {
        AuditInfo {
            started,
            bounds,
            event: "request",
            request_id: bounds.value(ctx.request_id),
            http_method: bounds.value(ctx.http.method),
            session_id: ctx.session_id.map(|s| bounds.value(s)),
            user: None,
            fingerprint: None,
            app: None,
            mcp_method: None,
            jsonrpc_id: None,
            name: None,
            protocol_version: None,
            reason: "allowed",
            role: None,
            rule: None,
            token_cached: None,
            arguments: None,
            batch: false,
            elements: Vec::new(),
            rates: (None, None),
        }
    }

    pub(super) fn set_user(&mut self, user: &User) {
        self.user = Some((user.name.clone(), user.role_names.clone()));
        self.fingerprint = Some(user.fingerprint);
    }

    pub(super) fn set_message(&mut self, msg: &Message<'a>) {
        self.mcp_method = msg.method.as_ref().map(|m| match m {
            Cow::Borrowed(m) => self.bounds.value(m),
            Cow::Owned(m) => Cow::Owned(self.bounds.value(m).into_owned()),
        });
        self.jsonrpc_id = msg.id.map(|id| self.bounds.id(id));
        if let Ok(Some(g)) = mcp::governed(msg) {
            self.name = Some((g.kind(), self.bounds.name(g).into_owned()));
        }
    }

    pub(super) fn decision(&mut self, d: Decision<'_>) {
        self.reason = d.reason.code();
        self.role = d.role.map(str::to_owned);
        self.rule = d.rule.map(str::to_owned);
    }

    /// The limits of an allowed `tools/call` (see `policy::rate`).
    pub(super) fn set_rate_limits(&mut self, user: &User) {
        if let Some(("tool", tool)) = &self.name {
            self.rates = warden_core::policy::rate::limits(user, tool);
        }
    }

    /// One `shadow_decision` event per rule in `mode: audit` that named `msg`: what it would
    /// have decided (`decision`, `reason`), never what was decided. Written when decided.
    pub(super) fn write_shadows(&self, sink: &Audit, msg: &Message<'a>, shadows: &[Shadow<'_>]) {
        for s in shadows {
            let mut one = self.copy_for_event("shadow_decision");
            one.set_message(msg);
            one.reason = s.outcome.code();
            one.role = Some(s.role.to_owned());
            one.rule = Some(s.rule.to_owned());
            let would_allow = matches!(s.outcome, ShadowOutcome::WouldAllow | ShadowOutcome::WouldNotDeny);
            one.write(sink, would_allow, Delivery::Delivered);
        }
    }

    /// Batch elements are audited one by one, in order, when the check is.
    pub(super) fn batch_element(
        &mut self,
        msg: &Message<'a>,
        outcome: &Result<Decision<'_>, Rejection<'_>>,
        batch_denied: bool,
    ) {
        let mut one = self.copy_for_event("request");
        one.set_message(msg);
        let allowed = match outcome {
            Ok(d) => {
                one.decision(*d);
                if d.allowed && batch_denied {
                    one.reason = "batch_element_denied";
                }
                d.allowed && !batch_denied
            }
            Err(r) => {
                one.reason = r.reason;
                false
            }
        };
        self.elements.push((one, allowed));
    }

    /// The identity and request of this check, for an event of its own (a batch element,
    /// a shadow decision); what was asked and decided is left for the caller to set.
    fn copy_for_event(&self, event: &'static str) -> AuditInfo<'a> {
        AuditInfo {
            started: self.started,
            bounds: self.bounds,
            event,
            request_id: self.request_id.clone(),
            http_method: self.http_method.clone(),
            session_id: self.session_id.clone(),
            user: self.user.clone(),
            fingerprint: self.fingerprint,
            app: self.app,
            mcp_method: None,
            jsonrpc_id: None,
            name: None,
            protocol_version: self.protocol_version,
            reason: "allowed",
            role: None,
            rule: None,
            token_cached: None,
            arguments: None,
            batch: false,
            elements: Vec::new(),
            rates: (None, None),
        }
    }

    /// Whether Envoy's list-filter matcher runs ext_proc for this check once it is allowed:
    /// the list filter's own reading of the metadata (`ListKind::from_decision`), which the
    /// `mcp_warden.list_filter` matcher of the shipped Envoy configs mirrors.
    pub(super) fn read_by_list_filter(&self) -> bool {
        let tool = match &self.name {
            Some(("tool", name)) => Some(name.as_str()),
            _ => None,
        };
        ListKind::from_decision(self.mcp_method.as_deref(), tool, Some(self.reason)).is_some()
    }

    /// What later Envoy filters (ext_proc, access log) learn about this decision. The list
    /// filter's inputs (fingerprint, JSON-RPC id, version, session) are sent only when the
    /// answer goes through it: Envoy parses and stores every field of every check.
    /// With `EnvoyMetadata::ListFilter` an allowed check the list filter does not read
    /// carries none. `fingerprint` is scratch space for the hex fingerprint.
    pub(super) fn metadata<'s>(
        &'s self,
        allowed: bool,
        mode: EnvoyMetadata,
        fingerprint: &'s mut String,
    ) -> Vec<(&'static str, &'s str)> {
        // Everything Envoy's matcher sends through the list filter needs the filter's inputs
        // (an allowed batch with no list call in it too: its answers pass by shape).
        let filtered = allowed && self.read_by_list_filter();
        // Envoy's rate limiting reads the limits, and its 429 answer echoes the id.
        let limited = allowed && (self.rates.0.is_some() || self.rates.1.is_some());
        if allowed && !filtered && !limited && mode == EnvoyMetadata::ListFilter {
            return Vec::new();
        }
        let mut fields: Vec<(&'static str, &'s str)> = Vec::with_capacity(10);
        fields.push(("decision", if allowed { "allow" } else { "deny" }));
        fields.push(("reason", self.reason));
        if let Some((user, _)) = &self.user {
            fields.push(("user", user));
        }
        if let Some(app) = self.app {
            fields.push(("app", &app.name));
        }
        if let Some(m) = &self.mcp_method {
            fields.push(("mcp_method", m));
        }
        if let Some((kind, name)) = &self.name {
            fields.push((kind, name));
        }
        if limited {
            fields.extend(self.rates.0.map(|r| ("rl_user_rate", r.name())));
            fields.extend(self.rates.1.map(|r| ("rl_tool_rate", r.name())));
        }
        if let Some(id) = self.jsonrpc_id.as_ref().filter(|_| filtered || limited) {
            fields.push(("jsonrpc_id", id.get()));
        }
        if filtered {
            if let Some(f) = self.fingerprint {
                *fingerprint = format!("{f:016x}");
                fields.push(("user_fingerprint", fingerprint.as_str()));
            }
            if let Some(v) = self.protocol_version {
                fields.push(("protocol_version", v));
            }
            if let Some(s) = &self.session_id {
                fields.push(("session_id", s));
            }
        }
        fields
    }

    /// Writes the check's event (a batch: its elements' events), with what became of the
    /// answer.
    pub(super) fn finish(&self, sink: &Audit, allowed: bool, delivery: Delivery) {
        if !self.batch {
            self.write(sink, allowed, delivery);
        }
        for (element, allowed) in &self.elements {
            element.write(sink, *allowed, delivery);
        }
    }

    fn write(&self, sink: &Audit, allowed: bool, delivery: Delivery) {
        let (tool, prompt, resource) = match &self.name {
            Some(("tool", n)) => (Some(n.as_str()), None, None),
            Some(("prompt", n)) => (None, Some(n.as_str()), None),
            Some((_, n)) => (None, None, Some(n.as_str())),
            None => (None, None, None),
        };
        // An answer Envoy never read decided nothing: never a plain allowed (or denied) request.
        let event = match (self.event, allowed, delivery) {
            ("request", _, Delivery::StreamReset | Delivery::DeadlineExceeded) => "request.not_delivered",
            ("request", true, Delivery::Delivered) => "request.allowed",
            ("request", false, Delivery::Delivered) => "request.denied",
            (e, ..) => e,
        };
        sink.emit(&Event {
            time: audit::rfc3339(SystemTime::now()),
            event,
            request_id: &self.request_id,
            user: self.user.as_ref().map(|u| &*u.0),
            roles: self.user.as_ref().map(|u| &*u.1),
            app: self.app.map(|a| &*a.name),
            http_method: &self.http_method,
            mcp_method: self.mcp_method.as_deref(),
            jsonrpc_id: self.jsonrpc_id.as_deref(),
            tool,
            prompt,
            resource,
            session_id: self.session_id.as_deref(),
            protocol_version: self.protocol_version,
            decision: if allowed { "allow" } else { "deny" },
            reason: self.reason,
            role: self.role.as_deref(),
            rule: self.rule.as_deref(),
            undelivered: delivery.code(),
            arguments: self.arguments.as_ref(),
            kid: None,
            pin: None,
            latency_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
    }
}
