//! What one check records: the audit event(s) and the decision metadata handed to Envoy.
//! Collected while the check runs, written once at its end (batches element by element).
//! Every client-supplied value is held as recorded: cut to the configured [`Bounds`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::value::RawValue;

use super::{Context, Delivery, Named};
use crate::audit::{self, Audit, Event};
use crate::config::EnvoyMetadata;
use warden_core::bounds::Bounds;
use warden_core::decision::{DecisionMetadata, Fingerprint};
use warden_core::mcp::Rejection;
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

    /// What `named` asks, by its governed name as read once by the check.
    pub(super) fn set_message(&mut self, named: &Named<'_, 'a>) {
        let msg = named.msg;
        self.mcp_method = msg.method.as_ref().map(|m| match m {
            Cow::Borrowed(m) => self.bounds.value(m),
            Cow::Owned(m) => Cow::Owned(self.bounds.value(m).into_owned()),
        });
        self.jsonrpc_id = msg.id.map(|id| self.bounds.id(id));
        if let Ok(Some(g)) = named.name {
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
    pub(super) fn write_shadows(&self, sink: &Audit, msg: &Named<'_, 'a>, shadows: &[Shadow<'_>]) {
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
        msg: &Named<'_, 'a>,
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

    /// What later Envoy filters (ext_proc, access log) learn about this decision. The list
    /// filter's inputs (fingerprint, JSON-RPC id, version, session) are sent only when the
    /// answer goes through it (Envoy's `mcp_warden.list_filter` matcher mirrors
    /// [`DecisionMetadata::list_kind`]): Envoy parses and stores every field of every check.
    /// With `EnvoyMetadata::ListFilter` an allowed check the list filter does not read
    /// carries none (`None`).
    pub(super) fn metadata(&self, allowed: bool, mode: EnvoyMetadata) -> Option<DecisionMetadata<'_>> {
        let (tool, prompt, resource) = self.names();
        let mut m = DecisionMetadata {
            user: self.user.as_ref().map(|(user, _)| &**user),
            app: self.app.map(|app| &*app.name),
            mcp_method: self.mcp_method.as_deref(),
            tool,
            prompt,
            resource,
            ..DecisionMetadata::new(allowed, self.reason)
        };
        // Everything Envoy's matcher sends through the list filter needs the filter's inputs
        // (an allowed batch with no list call in it too: its answers pass by shape).
        let filtered = allowed && m.list_kind().is_some();
        // Envoy's rate limiting reads the limits, and its 429 answer echoes the id.
        let limited = allowed && (self.rates.0.is_some() || self.rates.1.is_some());
        if allowed && !filtered && !limited && mode == EnvoyMetadata::ListFilter {
            return None;
        }
        if limited {
            m.rl_user_rate = self.rates.0.map(Rate::name);
            m.rl_tool_rate = self.rates.1.map(Rate::name);
        }
        if filtered || limited {
            m.jsonrpc_id = self.jsonrpc_id.as_deref().map(RawValue::get);
        }
        if filtered {
            m.user_fingerprint = self.fingerprint.map(Fingerprint::new);
            m.protocol_version = self.protocol_version;
            m.session_id = self.session_id.as_deref();
        }
        Some(m)
    }

    /// The governed name as (tool, prompt, resource): at most one is set.
    fn names(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        match &self.name {
            Some(("tool", n)) => (Some(n.as_str()), None, None),
            Some(("prompt", n)) => (None, Some(n.as_str()), None),
            Some((_, n)) => (None, None, Some(n.as_str())),
            None => (None, None, None),
        }
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
        let (tool, prompt, resource) = self.names();
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
