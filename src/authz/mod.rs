//! The ext_authz decision: Envoy's `CheckRequest` in, `CheckResponse` out.
//!
//! Order: authenticate, inspect the MCP request (fail-closed gate; for a caller that failed
//! authentication only a body of at most [`UNAUTHENTICATED_INSPECT_BYTES`]), resolve the app
//! (route `context_extensions.app`, else the Host against `public_addr`), check app access,
//! then every governed name in the body. On allow, the app's `rewrite.headers` replace the
//! client's (`OVERWRITE_IF_EXISTS_OR_ADD`) and the client's credentials are removed; on deny,
//! a JSON-RPC error echoing the request id. Every outcome is audited. One `load()` of the
//! policy snapshot per check.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use prost::Message as _;

use crate::audit::{Audit, Event};
use crate::authn;
use crate::config::{AuthMethod, EnvoyMetadata};
use crate::keyring::KeyRing;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::token::TokenSettings;
use warden_core::bounds::Bounds;
use warden_core::decision::{AGENTCORE_SEARCH_TOOL, BATCH_ALLOWED, SESSION_END, STREAM_ALLOWED};
use warden_core::headers::Headers;
use warden_core::mcp::{self, Body, Inspection, Limits, Message, Rejection};
use warden_core::policy::condition::Vars;
use warden_core::policy::engine::{self, Shadow, check_app};
use warden_core::policy::{App, Decision, Policy, User, ValuePart};

mod record;
mod snapshot;
pub mod wire;

use record::AuditInfo;
pub use snapshot::Snapshot;
use wire::View;

/// The gRPC service name Envoy calls (and health checks name).
pub const SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";

/// What became of a decided check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written to Envoy's stream.
    Delivered,
    /// Envoy had reset the stream (or the connection was gone): nobody read the answer.
    StreamReset,
    /// Decided after the deadline Envoy stated (`grpc-timeout`): Envoy had given up and
    /// answered the client itself.
    DeadlineExceeded,
}

impl Delivery {
    /// How the audit event names an undelivered answer.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Delivery::Delivered => None,
            Delivery::StreamReset => Some("stream_reset"),
            Delivery::DeadlineExceeded => Some("deadline_exceeded"),
        }
    }
}

/// Why a `Check` message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Not an exact `CheckRequest` (bad protobuf, gRPC framing, compression, header names).
    Invalid,
    /// Larger than the gRPC listener accepts.
    TooLarge,
}

/// Settings fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub token: TokenSettings,
    pub limits: Limits,
    pub denied_status: u16,
    pub auth_order: Vec<AuthMethod>,
    /// MCP methods whose allowed requests are not audited.
    pub audit_skip_allowed: Vec<String>,
    /// Which checks carry decision metadata for Envoy.
    pub envoy_metadata: EnvoyMetadata,
    /// Longest names and URIs accepted, longest client values recorded.
    pub bounds: Bounds,
}

/// The shared state behind both gRPC services and the HTTP endpoint.
#[derive(Debug)]
pub struct Warden {
    snapshot: ArcSwap<Snapshot>,
    keys: ArcSwap<KeyRing>,
    pub settings: Settings,
    audit: Audit,
    pub metrics: Metrics,
    /// The `jwt` authentication method, when configured.
    jwt: Option<Arc<crate::jwt::Verifier>>,
}

/// Headers a client may never smuggle upstream: they carry credentials, or claim a decision
/// or a body state only Envoy or mcp-warden may state.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", LIST_HEADER, "x-envoy-auth-partial-body"];

/// A name reserved for mcp-warden, never set by it (the list filter is gated on decision
/// metadata): a client-sent copy is removed here and by Envoy, so no upstream can be misled.
pub const LIST_HEADER: &str = "x-mcp-warden-list";

/// The largest body read for a caller whose authentication failed: such a body is inspected
/// (so the answer echoes its id and the audit event names its method and tool, at a bounded
/// cost); a larger one is refused unread, its answer's id `null`.
pub const UNAUTHENTICATED_INSPECT_BYTES: usize = 4 << 10;

impl Warden {
    pub fn new(policy: Policy, keys: KeyRing, settings: Settings, audit: Audit) -> Self {
        let metrics = Metrics::default();
        metrics.set_generation(1);
        Warden {
            snapshot: ArcSwap::from_pointee(Snapshot::new(policy, 1)),
            keys: ArcSwap::from_pointee(keys),
            settings,
            audit,
            metrics,
            jwt: None,
        }
    }

    /// Enables the `jwt` authentication method with this verifier.
    pub fn with_jwt(mut self, verifier: Arc<crate::jwt::Verifier>) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// The `jwt` method's verifier, when configured (the HTTP endpoint serves its RFC 9728
    /// metadata).
    pub fn jwt(&self) -> Option<&Arc<crate::jwt::Verifier>> {
        self.jwt.as_ref()
    }

    /// Writes out buffered audit events and stops the writer (at shutdown).
    pub fn close_audit(&self) {
        self.audit.close();
    }

    /// Events the audit writer dropped (for `/metrics`).
    pub fn audit_dropped(&self) -> u64 {
        self.audit.dropped()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new policy; checks in flight finish on the snapshot they loaded.
    pub fn replace_policy(&self, policy: Policy) -> u64 {
        let generation = self.snapshot.load().generation + 1;
        self.snapshot.store(Arc::new(Snapshot::new(policy, generation)));
        self.metrics.set_generation(generation);
        generation
    }

    /// The key ring in force (JWKS publishes from it).
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.keys.load_full()
    }

    /// Swaps in a reloaded key ring.
    pub fn replace_keys(&self, ring: KeyRing) {
        self.keys.store(Arc::new(ring));
    }

    /// Writes an audit event that is not a check (reloads, key switches); `kid` names the
    /// signing key a key event is about.
    pub fn audit_event(&self, event: &'static str, reason: &str, kid: Option<&str>) {
        self.audit.emit(&Event { kid, ..Event::bare(event, reason) });
    }

    /// Writes an audit event built elsewhere (the list filter's `pin.drift`).
    pub fn emit_audit(&self, event: &Event<'_>) {
        self.audit.emit(event);
    }

    /// Decides one ext_authz check given as Envoy's generated message (tests, tools): it is
    /// encoded and read back exactly as a check off the wire.
    pub fn check(&self, req: &CheckRequest) -> CheckResponse {
        CheckResponse::decode(&*self.check_bytes(&req.encode_to_vec())).unwrap_or_default()
    }

    /// Decides one ext_authz check from the encoded `CheckRequest`; the answer is the encoded
    /// `CheckResponse` (tests, tools: an answer returned is taken as delivered).
    pub fn check_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.check_then(bytes, |answer| {
            out = answer;
            Delivery::Delivered
        });
        out
    }

    /// Decides one ext_authz check from the encoded `CheckRequest` and hands the encoded
    /// `CheckResponse` to `deliver` (the gRPC service's path); the audit event is written
    /// after, saying whether the answer reached Envoy's stream.
    pub fn check_then(&self, bytes: &[u8], deliver: impl FnOnce(Vec<u8>) -> Delivery) {
        let started = Instant::now();
        let view = match wire::view(bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "refused a check request that cannot be read exactly");
                deliver(self.refuse_unread(started, Unread::Invalid));
                return;
            }
        };
        let ctx = Context::new(&view);
        let snap = self.snapshot.load();
        let mut audit = AuditInfo::new(&ctx, started, self.settings.bounds);
        let reply = self.decide(&snap, &ctx, &mut audit);
        self.metrics.check(reply.is_allow(), audit.reason, started.elapsed());
        if let Some(cached) = audit.token_cached {
            self.metrics.token(cached);
        }
        let mut fingerprint = String::new();
        let allowed = reply.is_allow();
        let metadata = audit.metadata(allowed, self.settings.envoy_metadata, &mut fingerprint);
        let delivery = deliver(reply.encode(&metadata));
        if let Some(why) = delivery.code() {
            self.metrics.undelivered(why);
        }
        let skip = allowed
            && delivery == Delivery::Delivered
            && audit.mcp_method.as_deref().is_some_and(|m| self.settings.audit_skip_allowed.iter().any(|s| s == m));
        if !skip {
            audit.finish(&self.audit, allowed, delivery);
        }
    }

    /// Answers a `Check` whose message could not be read (see [`Unread`]) with an audited
    /// denial: there is no request id to echo.
    pub fn refuse_unread(&self, started: Instant, why: Unread) -> Vec<u8> {
        match why {
            Unread::Invalid => self.refuse(started, 400, -32600, "invalid_check_request", "invalid request"),
            Unread::TooLarge => self.refuse(started, 413, -32600, "check_request_too_large", "request too large"),
        }
    }

    /// Answers a `Check` whose check failed (a bug: it panicked) with an audited denial.
    pub fn refuse_failed(&self, started: Instant) -> Vec<u8> {
        self.refuse(started, 500, -32603, "internal_error", "internal error")
    }

    fn refuse(&self, started: Instant, status: u16, code: i32, reason: &'static str, message: &str) -> Vec<u8> {
        self.audit_event("request.denied", reason, None);
        self.metrics.check(false, reason, started.elapsed());
        Reply::error(status, None, code, message).encode(&[("decision", "deny")])
    }

    fn decide<'s>(&self, snap: &'s Snapshot, ctx: &Context<'s>, audit: &mut AuditInfo<'s>) -> Reply
    where
        Self: 's,
    {
        let policy = &snap.policy;
        let jwt = self.jwt.as_deref();
        // Authentication first: a caller without a valid credential never has a large body
        // read (see `UNAUTHENTICATED_INSPECT_BYTES`).
        let authenticated = authn::authenticate(snap, jwt, &self.settings.auth_order, ctx.http.headers, ctx.principal);
        let inspected = (authenticated.is_ok() || ctx.http.body.len() <= UNAUTHENTICATED_INSPECT_BYTES)
            .then(|| mcp::inspect(&ctx.http, &self.settings.limits));
        let echo_id = match &inspected {
            Some(Ok(Inspection::Messages { body: Body::Single(m), .. })) => m.id,
            Some(Ok(_)) | None => None,
            Some(Err(r)) => r.id,
        };
        // Recorded before any decision, so every audit event (authentication failures with a
        // body that was read too) says what was asked of which app.
        if let Some(Ok(Inspection::Messages { version, body })) = &inspected {
            audit.protocol_version = Some(version.as_str());
            if let Body::Single(m) = body {
                audit.set_message(m);
            }
        }
        let app = match ctx.app_name {
            Some(name) => policy.app(name),
            None => policy.app_by_host(&ctx.host.to_ascii_lowercase()),
        };
        audit.app = app;
        // A route that exists only to refuse (Envoy config: a client-sent partial-body marker).
        if ctx.refuse.is_some() {
            audit.reason = "body_too_large";
            return Reply::error(413, echo_id, -32600, "request body too large");
        }
        let auth = match authenticated {
            Ok(a) => a,
            Err(e) => {
                audit.event = "authentication.failed";
                audit.reason = e.reason();
                let path = ctx.http.headers.get(":path").unwrap_or("");
                let metadata = jwt.map(|j| j.resource_metadata_for(path));
                return Reply::unauthenticated(e, echo_id, metadata.as_deref());
            }
        };
        let user: &User = &auth.user;
        audit.set_user(user);
        let Some(app) = app else {
            audit.reason = "unknown_app";
            return Reply::error(403, echo_id, -32003, "no MCP app is configured for this route");
        };
        let d = check_app(user, app);
        if !d.allowed {
            audit.decision(d);
            return Reply::error(403, echo_id, -32003, "access to this MCP server is denied by policy");
        }
        // Authenticated: the body was inspected.
        let inspection = match inspected.unwrap_or_else(|| mcp::inspect(&ctx.http, &self.settings.limits)) {
            Ok(i) => i,
            Err(r) => {
                audit.reason = r.reason;
                return Reply::rejection(&r);
            }
        };
        let allow = |audit: &mut AuditInfo<'s>| self.allow(snap, user, app, ctx.http.headers, echo_id, audit);
        let body = match inspection {
            Inspection::Messages { body, .. } => body,
            Inspection::Stream => {
                // A GET stream can replay earlier answers, list answers included (resumption
                // with Last-Event-ID): the list filter reads every response on it.
                audit.reason = STREAM_ALLOWED;
                return allow(audit);
            }
            Inspection::EndSession => {
                audit.reason = SESSION_END;
                return allow(audit);
            }
        };
        match body {
            Body::Single(msg) => {
                if app.audit_arguments && msg.method.as_deref() == Some("tools/call") {
                    audit.arguments = tool_arguments(ctx.http.body);
                }
                let call = Call { body: (ctx.http.body, None), version: audit.protocol_version };
                let mut single = Single { body: ctx.http.body, denied_uri: None };
                let mut shadows = Vec::new();
                let bounds = &self.settings.bounds;
                let outcome = Self::check_message(bounds, user, app, &msg, &call, Some(&mut single), &mut shadows);
                if let Some(uri) = single.denied_uri {
                    audit.name = Some((warden_core::policy::Governed::Resource("").kind(), uri));
                }
                self.shadows(audit, &msg, &shadows);
                match outcome {
                    Ok(d) => {
                        audit.decision(d);
                        if d.allowed {
                            audit.set_rate_limits(user);
                        }
                        if d.allowed { allow(audit) } else { self.denied(&msg) }
                    }
                    Err(r) => {
                        audit.reason = r.reason;
                        Reply::rejection(&r)
                    }
                }
            }
            Body::Batch(msgs) => {
                self.check_batch(user, app, &msgs, ctx.http.body, audit).unwrap_or_else(|| allow(audit))
            }
        }
    }

    /// The decision for one message: its governed name, if any, against the user's roles
    /// (docs/mcp-methods.md), the roles' conditions reading `call`'s arguments; what rules
    /// in `mode: audit` would have decided goes to `shadows`. `single`: what a single message
    /// carries beyond itself (`None` in a batch). Public so the offline tools (`explain`,
    /// `mcp-warden test`) decide as a check does.
    pub fn check_message<'p, 'm>(
        bounds: &Bounds,
        user: &'p User,
        app: &App,
        msg: &'m Message<'m>,
        call: &Call<'_>,
        single: Option<&mut Single<'_>>,
        shadows: &mut Vec<Shadow<'p>>,
    ) -> Result<Decision<'p>, Rejection<'m>> {
        let decide = |g: warden_core::policy::Governed<'_>| {
            // Built only for a governed name: nothing is read until a condition runs.
            let mut vars = Vars::new(user, app, msg.method.as_deref().unwrap_or(""));
            vars.protocol_version = call.version;
            vars.body = Some(call.body);
            engine::check_call(user, app, g, Some(&vars), shadows)
        };
        if msg.method.as_deref() == Some("subscriptions/listen") {
            return Self::check_subscriptions(bounds, msg, single, decide);
        }
        Self::check_named(bounds, msg, decide)
    }

    /// The decision for a message's governed name, by `decide`, after the checks every
    /// named message passes.
    fn check_named<'p, 'm>(
        bounds: &Bounds,
        msg: &'m Message<'m>,
        decide: impl FnOnce(warden_core::policy::Governed<'_>) -> Decision<'p>,
    ) -> Result<Decision<'p>, Rejection<'m>> {
        match mcp::governed(msg)? {
            // A task-augmented call answers through `tasks/result`, which the list filter does
            // not read: the tool definitions this tool returns would reach the client unfiltered.
            Some(warden_core::policy::Governed::Tool(AGENTCORE_SEARCH_TOOL)) if msg.params.has_task => Err(Rejection {
                status: 400,
                code: -32602,
                message: "the search tool cannot be called as a task".into(),
                reason: "search_task_not_allowed",
                id: msg.id,
            }),
            // Longer than any name or URI the upstream is meant to serve (the MCP spec asks
            // 1–128 characters of a tool name): refused, never matched or recorded whole.
            Some(g) if !bounds.fits(g) => Err(Rejection {
                status: 400,
                code: -32602,
                message: format!("{} name is longer than mcp-warden accepts", g.kind()).into(),
                reason: "invalid_name",
                id: msg.id,
            }),
            Some(g) => Ok(decide(g)),
            None => {
                Ok(Decision { allowed: true, reason: warden_core::policy::Reason::NotGoverned, role: None, rule: None })
            }
        }
    }

    /// `subscriptions/listen`: every URI it subscribes to, as a resource; one denied denies
    /// (and is the resource audited).
    fn check_subscriptions<'p, 'm>(
        bounds: &Bounds,
        msg: &'m Message<'m>,
        single: Option<&mut Single<'_>>,
        mut decide: impl FnMut(warden_core::policy::Governed<'_>) -> Decision<'p>,
    ) -> Result<Decision<'p>, Rejection<'m>> {
        let refuse = |reason, message: String| Rejection {
            status: 400,
            code: -32602,
            message: message.into(),
            reason,
            id: msg.id,
        };
        // A batch element's own text is not at hand; the version that has this method has no batches.
        let Some((text, single)) = single.and_then(|s| Some((std::str::from_utf8(s.body).ok()?, s))) else {
            return Err(refuse("invalid_subscriptions", "subscriptions/listen cannot be sent in a batch".into()));
        };
        let uris = mcp::methods::subscriptions(text).map_err(|e| refuse("invalid_subscriptions", e.to_string()))?;
        let mut decision =
            Decision { allowed: true, reason: warden_core::policy::Reason::NotGoverned, role: None, rule: None };
        for uri in &uris {
            let what = warden_core::policy::Governed::Resource(uri);
            if uri.is_empty() || uri.chars().any(char::is_control) || !bounds.fits(what) {
                return Err(refuse(
                    "invalid_name",
                    "a subscribed resource URI is empty, too long or holds a control character".into(),
                ));
            }
            decision = decide(what);
            if !decision.allowed {
                single.denied_uri = Some(bounds.name(what).into_owned());
                break;
            }
        }
        Ok(decision)
    }

    /// A batch is forwarded only when every element is allowed; otherwise every request in
    /// it gets an error and nothing is forwarded. `None` means allow.
    fn check_batch<'s>(
        &self,
        user: &User,
        app: &App,
        msgs: &[Message<'s>],
        body: &[u8],
        audit: &mut AuditInfo<'s>,
    ) -> Option<Reply> {
        let mut shadows = Vec::new();
        let outcomes: Vec<_> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let call = Call { body: (body, Some(i)), version: audit.protocol_version };
                let outcome = Self::check_message(&self.settings.bounds, user, app, m, &call, None, &mut shadows);
                self.shadows(audit, m, &shadows);
                shadows.clear();
                match outcome {
                    Ok(d) if d.allowed && rate_limited(user, m) => Err(Rejection {
                        status: 400,
                        code: -32600,
                        message: "a rate-limited tool cannot be called in a batch".into(),
                        reason: "rate_limited_in_batch",
                        id: m.id,
                    }),
                    other => other,
                }
            })
            .collect();
        let any_denied = outcomes.iter().any(|o| !matches!(o, Ok(d) if d.allowed));
        // One audit event per element, with the batch's fate: nothing is forwarded when any
        // element is denied.
        audit.batch = true;
        for (msg, outcome) in msgs.iter().zip(&outcomes) {
            audit.batch_element(msg, outcome, any_denied);
        }
        audit.reason = if any_denied { "batch_element_denied" } else { BATCH_ALLOWED };
        any_denied.then(|| Reply::batch_denied(msgs, &outcomes, self.settings.denied_status))
    }

    /// What rules in `mode: audit` would have decided for `msg`: audited and counted, with
    /// no effect on the answer.
    fn shadows<'s>(&self, audit: &AuditInfo<'s>, msg: &Message<'s>, shadows: &[Shadow<'_>]) {
        for s in shadows {
            self.metrics.shadow(s.role, s.rule, s.outcome.code());
        }
        audit.write_shadows(&self.audit, msg, shadows);
    }

    fn denied(&self, msg: &Message<'_>) -> Reply {
        let name = mcp::governed(msg).ok().flatten();
        let message = match name {
            Some(g) => format!(
                "access to {} '{}' is denied by policy (MCP access is enforced by your roles)",
                g.kind(),
                g.name()
            ),
            None => "request denied by policy".to_owned(),
        };
        Reply::error(self.settings.denied_status, msg.id, -32602, &message)
    }

    fn allow(
        &self,
        snap: &Snapshot,
        user: &User,
        app: &App,
        headers: &Headers<'_>,
        id: Option<&serde_json::value::RawValue>,
        audit: &mut AuditInfo<'_>,
    ) -> Reply {
        let mut set = Vec::with_capacity(app.rewrite.len());
        let mut remove: Vec<&str> = Vec::new();
        for rule in &app.rewrite {
            match self.render(snap, user, app, &rule.value, audit) {
                Ok(value) => set.push((rule.name.clone(), value)),
                Err(Unfilled::Remove) => remove.push(&rule.name),
                Err(Unfilled::NoToken) => {
                    // Never forwarded without the identity the upstream verifies.
                    audit.reason = TOKEN_UNAVAILABLE;
                    return Reply::error(503, id, -32603, "no identity token can be signed right now; try again later");
                }
            }
        }
        // Only what the request carries: Envoy sent every header it has (a removal of an
        // absent header is work for nothing).
        for h in CREDENTIAL_HEADERS {
            if headers.contains_key(h) && !set.iter().any(|(n, _)| **n == **h) && !remove.contains(h) {
                remove.push(h);
            }
        }
        Reply::allow(set, remove.into_iter().map(str::to_owned).collect())
    }

    /// The ID token for `user` at `app`: cached, else minted with the active key.
    fn token(&self, snap: &Snapshot, user: &User, app: &App, audit: &mut AuditInfo<'_>) -> Result<Arc<str>, Unfilled> {
        let now = SystemTime::now();
        let ring = self.keys.load();
        let Some(key) = ring.active(now) else {
            tracing::error!("no signing key is active");
            return Err(Unfilled::NoToken);
        };
        match snap.tokens.get_or_mint(&self.settings.token, key, user, app, now) {
            Ok((token, source)) => {
                audit.token_cached = Some(source == crate::token::Source::Cache);
                Ok(token)
            }
            Err(e) => {
                tracing::error!(error = %e, "signing failed");
                Err(Unfilled::NoToken)
            }
        }
    }

    /// A header value from its template (see [`Unfilled`] for when there is none).
    fn render(
        &self,
        snap: &Snapshot,
        user: &User,
        app: &App,
        parts: &[ValuePart],
        audit: &mut AuditInfo<'_>,
    ) -> Result<String, Unfilled> {
        // The token first, so that the value is allocated once at its size.
        let token = match parts.iter().any(|p| matches!(p, ValuePart::IdToken)) {
            true => Some(self.token(snap, user, app, audit)?),
            false => None,
        };
        let size = parts
            .iter()
            .map(|p| match p {
                ValuePart::Text(t) => t.len(),
                ValuePart::IdToken => token.as_deref().map_or(0, str::len),
                ValuePart::Trait(..) => 0,
            })
            .sum();
        let mut out = String::with_capacity(size);
        for part in parts {
            match part {
                ValuePart::Text(t) => out.push_str(t),
                ValuePart::IdToken => out.push_str(token.as_deref().unwrap_or_default()),
                ValuePart::Trait(_, name) => {
                    let values = user.traits.get(&**name).ok_or(Unfilled::Remove)?;
                    // A trait may come from an identity provider's claim: a control character
                    // in it would split or smuggle a header line, and a comma (or an empty or
                    // padded value) would make `["a","b"]` and `"a,b"` one header value.
                    if values.iter().any(|v| !valid_header_list_item(v)) {
                        tracing::warn!(trait_name = &**name, "a trait value is not valid in a header; header removed");
                        return Err(Unfilled::Remove);
                    }
                    out.push_str(&values.join(","));
                }
            }
        }
        Ok(out)
    }
}

/// What [`Warden::check_message`] reads of a single message beyond the message itself.
#[derive(Debug)]
pub struct Single<'b> {
    /// The whole body (a `subscriptions/listen` is read again for its URIs).
    pub body: &'b [u8],
    /// The URI a denied `subscriptions/listen` was denied for, cut to the recorded bound.
    pub denied_uri: Option<String>,
}

/// Whether Envoy counts calls of this message: a batch cannot carry its limits (Envoy counts
/// one request), so a batch holding such a call is refused.
fn rate_limited(user: &User, msg: &Message<'_>) -> bool {
    match mcp::governed(msg) {
        Ok(Some(warden_core::policy::Governed::Tool(tool))) => {
            warden_core::policy::rate::limits(user, tool) != (None, None)
        }
        _ => false,
    }
}

/// What role conditions may read about a call besides its message: the body it came in
/// (and its position in a batch) and the negotiated protocol version.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub body: (&'a [u8], Option<usize>),
    pub version: Option<&'a str>,
}

/// Why a header of an app's `rewrite` gets no value.
enum Unfilled {
    /// A trait the user lacks, or one that is not valid in a header: the header is removed
    /// rather than forwarded from the client.
    Remove,
    /// No ID token can be signed (no active key, or signing failed): the call is refused.
    NoToken,
}

/// The decision reason when an allowed call is refused for want of an ID token.
const TOKEN_UNAVAILABLE: &str = "token_unavailable";

/// One element of a comma-separated header value whose elements can be told apart again
/// (RFC 9110 §5.5, §5.6.1): not empty, no control character, no comma, no leading or
/// trailing space or tab (which list parsers and Envoy trim).
fn valid_header_list_item(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with([' ', '\t'])
        && !s.ends_with([' ', '\t'])
        && !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == b',')
}

/// `params.arguments` of a `tools/call` body, for apps that opted into auditing them. The
/// body already passed the strict parser; this second parse happens only for such apps.
fn tool_arguments(body: &[u8]) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(v.get_mut("params")?.get_mut("arguments")?.take())
}
/// What a check needs from Envoy's request, borrowed.
struct Context<'r> {
    http: mcp::HttpRequest<'r>,
    principal: &'r str,
    app_name: Option<&'r str>,
    /// `context_extensions.refuse`: the route only exists to refuse, for this reason.
    refuse: Option<&'r str>,
    host: &'r str,
    request_id: &'r str,
    session_id: Option<&'r str>,
}

impl<'r> Context<'r> {
    fn new(view: &'r View<'r>) -> Self {
        let headers = &view.headers;
        // A map has one value per key: the last one, as protobuf map decoding keeps.
        let extension = |name: &str| view.context_extensions.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v);
        Context {
            http: mcp::HttpRequest { method: view.method, headers, body: view.body },
            principal: view.principal,
            app_name: extension("app"),
            refuse: extension("refuse"),
            host: headers.get(":authority").unwrap_or(view.host),
            request_id: headers.get("x-request-id").unwrap_or(view.id),
            session_id: headers.get("mcp-session-id"),
        }
    }
}
