//! Pin drift, as the list filter reports it (issue 25): one `pin.drift` audit event and one
//! `mcp_warden_pin_drift_total` count per listed entry that was not listed as pinned.
//!
//! Owns turning [`Drift`]s into audit events and metrics; deciding is the core's
//! ([`warden_core::policy::pins`]), writing pin files is `mcp-warden pin`'s
//! ([`crate::tools::pin`]). An event carries the entry's kind and name, the app, the user whose
//! listing showed it, both digests and the changed fields; the definition itself only when the
//! app's pins set `audit_definitions`.

use crate::audit::{Event, PinDrift};
use crate::state::Warden;
use warden_core::policy::App;
use warden_core::policy::pins::{Action, Drift, PinKind};

/// Audits and counts what one list answer (or one event of a stream) showed unpinned.
pub fn report(warden: &Warden, user: &str, app: &App, drifts: &[Drift]) {
    let action = app.pins.as_deref().map_or(Action::Off, |p| p.action);
    for drift in drifts {
        let action = if drift.hidden { Action::Hide } else { action };
        warden.metrics.pin_drift(&app.name, drift.kind.as_str(), drift.reason.code(), action.as_str());
        let pin = PinDrift {
            kind: drift.kind.as_str(),
            action: action.as_str(),
            pinned: drift.pinned.map(|d| d.to_string()),
            seen: drift.seen.map(|d| d.to_string()),
            changed: &drift.changed,
            definition: drift.definition.as_deref(),
        };
        let name = Some(drift.name.as_str());
        let (tool, prompt, resource) = match drift.kind {
            PinKind::Tool => (name, None, None),
            PinKind::Prompt => (None, name, None),
            PinKind::Template => (None, None, name),
        };
        warden.emit_audit(&Event {
            user: Some(user),
            app: Some(&app.name),
            tool,
            prompt,
            resource,
            pin: Some(&pin),
            ..Event::bare("pin.drift", drift.reason.code())
        });
    }
    if !drifts.is_empty() {
        tracing::debug!(app = %app.name, count = drifts.len(), "list filter: entries not listed as pinned");
    }
}
