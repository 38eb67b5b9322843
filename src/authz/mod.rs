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

use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use prost::Message as _;
use serde_json::value::RawValue;

use crate::identity::authn::{self, AuthError};
use crate::state::{Snapshot, Warden};
use crate::token::Source;
use warden_core::bounds::Bounds;
use warden_core::decision::{AGENTCORE_SEARCH_TOOL, BATCH_ALLOWED, DecisionMetadata, SESSION_END, STREAM_ALLOWED};
use warden_core::mcp::{self, Body, Inspection, Message, Rejection};
use warden_core::policy::condition::Vars;
use warden_core::policy::engine::{self, Shadow, check_app};
use warden_core::policy::{App, Decision, Governed, Reason, User, ValuePart};

mod record;
pub mod reply;
pub mod wire;

use record::AuditInfo;
use reply::Reply;
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
    /// Decides one ext_authz check given as Envoy's generated message (tests, tools): it is
    /// encoded and read back exactly as a check off the wire.
    pub fn check(&self, req: &CheckRequest) -> CheckResponse {
        CheckResponse::decode(&*self.check_bytes(&req.encode_to_vec())).unwrap_or_default()
    }

    /// Decides one ext_authz check from the encoded `CheckRequest`; the answer is the encoded
    /// `CheckResponse` (tests, tools: an answer returned is taken as delivered).
    pub fn check_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        self.check_with(bytes, |answer| (Delivery::Delivered, answer))
    }

    /// Decides one ext_authz check from the encoded `CheckRequest` and hands the encoded
    /// `CheckResponse` to `deliver` (the gRPC service's path); the audit event is written
    /// after, saying whether the answer reached Envoy's stream.
    pub fn check_then(&self, bytes: &[u8], deliver: impl FnOnce(Vec<u8>) -> Delivery) {
        self.check_with(bytes, |answer| (deliver(answer), ()));
    }

    /// The check behind [`Warden::check_then`] and [`Warden::check_bytes`]: `deliver` says
    /// what became of the answer and may hand back a value, returned here.
    fn check_with<T>(&self, bytes: &[u8], deliver: impl FnOnce(Vec<u8>) -> (Delivery, T)) -> T {
        let started = Instant::now();
        let view = match wire::view(bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "refused a check request that cannot be read exactly");
                return deliver(self.refuse_unread(started, Unread::Invalid)).1;
            }
        };
        let ctx = Context::new(&view);
        let snap = self.load();
        let mut audit = AuditInfo::new(&ctx, started, self.settings.bounds);
        let reply = self.decide(&snap, &ctx, &mut audit);
        self.metrics.check(reply.is_allow(), audit.reason, started.elapsed());
        if let Some(cached) = audit.token_cached {
            self.metrics.token(cached);
        }
        let allowed = reply.is_allow();
        let metadata = audit.metadata(allowed, self.settings.envoy_metadata);
        let fields = metadata.as_ref().map(DecisionMetadata::fields);
        let (delivery, out) = deliver(reply.encode(fields.as_deref().unwrap_or_default()));
        if let Some(why) = delivery.code() {
            self.metrics.undelivered(why);
        }
        let skip = allowed
            && delivery == Delivery::Delivered
            && audit.mcp_method.as_deref().is_some_and(|m| self.settings.audit_skip_allowed.iter().any(|s| s == m));
        if !skip {
            audit.finish(self.audit(), allowed, delivery);
        }
        out
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
        Reply::error(status, None, code, message).encode(&DecisionMetadata::new(false, reason).fields())
    }

    /// Who is calling, to which app, asking what: authentication first (a caller without a
    /// valid credential never has a large body read, see [`UNAUTHENTICATED_INSPECT_BYTES`]),
    /// then the body's inspection, the app and the app access check; what the body asks is
    /// decided by [`Warden::decide_call`].
    fn decide<'s>(&self, snap: &'s Snapshot, ctx: &Context<'s>, audit: &mut AuditInfo<'s>) -> Reply {
        let jwt = self.jwt().map(|j| &**j);
        let (policy, headers) = (&snap.policy, ctx.http.headers);
        let authenticated =
            authn::authenticate(policy, &snap.identities, jwt, &self.settings.auth_order, headers, ctx.principal);
        let inspected = (authenticated.is_ok() || ctx.http.body.len() <= UNAUTHENTICATED_INSPECT_BYTES)
            .then(|| mcp::inspect(&ctx.http, &self.settings.limits));
        let echo_id = match &inspected {
            Some(Ok(Inspection::Messages { body: Body::Single(m), .. })) => m.id,
            Some(Ok(_)) | None => None,
            Some(Err(r)) => r.id,
        };
        // A single message's governed name is read once, here: recorded before any decision,
        // so every audit event (authentication failures with a body that was read too) says
        // what was asked of which app.
        let single = match &inspected {
            Some(Ok(Inspection::Messages { body: Body::Single(m), .. })) => Some(Named::of(m)),
            _ => None,
        };
        if let Some(Ok(Inspection::Messages { version, .. })) = &inspected {
            audit.protocol_version = Some(version.as_str());
        }
        if let Some(named) = &single {
            audit.set_message(named);
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
            Err(e) => return self.unauthenticated(e, ctx, echo_id, audit),
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
        let Some(inspected) = &inspected else {
            unreachable!("an authenticated caller's body is always inspected");
        };
        match inspected {
            Ok(inspection) => {
                let admitted = Admitted { snap, ctx, user, app, echo_id };
                self.decide_call(&admitted, inspection, single.as_ref(), audit)
            }
            Err(r) => {
                audit.reason = r.reason;
                Reply::rejection(r)
            }
        }
    }

    /// A failed authentication's answer (with the `jwt` method's RFC 9728 metadata URL).
    fn unauthenticated(
        &self,
        e: AuthError,
        ctx: &Context<'_>,
        id: Option<&RawValue>,
        audit: &mut AuditInfo<'_>,
    ) -> Reply {
        audit.event = "authentication.failed";
        audit.reason = e.reason();
        let path = ctx.http.headers.get(":path").unwrap_or("");
        let metadata = self.jwt().map(|j| j.resource_metadata_for(path));
        Reply::unauthenticated(e, id, metadata.as_deref())
    }

    /// What an admitted caller's body asks: a stream, the end of a session, one message
    /// (`single`: read by [`Warden::decide`]) or a batch.
    fn decide_call<'s>(
        &self,
        a: &Admitted<'_, 's>,
        inspection: &Inspection<'s>,
        single: Option<&Named<'_, 's>>,
        audit: &mut AuditInfo<'s>,
    ) -> Reply {
        let body = match inspection {
            Inspection::Messages { body, .. } => body,
            Inspection::Stream => {
                // A GET stream can replay earlier answers, list answers included (resumption
                // with Last-Event-ID): the list filter reads every response on it.
                audit.reason = STREAM_ALLOWED;
                return self.allow(a, audit);
            }
            Inspection::EndSession => {
                audit.reason = SESSION_END;
                return self.allow(a, audit);
            }
        };
        match (body, single) {
            (Body::Single(_), Some(msg)) => self.decide_single(a, msg, audit),
            (Body::Single(msg), None) => self.decide_single(a, &Named::of(msg), audit),
            (Body::Batch(msgs), _) => {
                self.check_batch(a.user, a.app, msgs, a.ctx.http.body, audit).unwrap_or_else(|| self.allow(a, audit))
            }
        }
    }

    /// One message: its governed name against the user's roles.
    fn decide_single<'s>(&self, a: &Admitted<'_, 's>, msg: &Named<'_, 's>, audit: &mut AuditInfo<'s>) -> Reply {
        let body = a.ctx.http.body;
        if a.app.audit_arguments && msg.msg.method.as_deref() == Some("tools/call") {
            audit.arguments = tool_arguments(body);
        }
        let call = Call { body: (body, None), version: audit.protocol_version };
        let mut single = Single { body, denied_uri: None };
        let mut shadows = Vec::new();
        let bounds = &self.settings.bounds;
        let outcome = Self::check_message(bounds, a.user, a.app, msg, &call, Some(&mut single), &mut shadows);
        if let Some(uri) = single.denied_uri {
            audit.name = Some((Governed::Resource("").kind(), uri));
        }
        self.shadows(audit, msg, &shadows);
        match outcome {
            Ok(d) if d.allowed => {
                audit.decision(d);
                audit.set_rate_limits(a.user);
                self.allow(a, audit)
            }
            Ok(d) => {
                audit.decision(d);
                self.denied(msg)
            }
            Err(r) => {
                audit.reason = r.reason;
                Reply::rejection(&r)
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
        named: &Named<'_, 'm>,
        call: &Call<'_>,
        single: Option<&mut Single<'_>>,
        shadows: &mut Vec<Shadow<'p>>,
    ) -> Result<Decision<'p>, Rejection<'m>> {
        let msg = named.msg;
        let decide = |g: Governed<'_>| {
            // Built only for a governed name: nothing is read until a condition runs.
            let mut vars = Vars::new(user, app, msg.method.as_deref().unwrap_or(""));
            vars.protocol_version = call.version;
            vars.body = Some(call.body);
            engine::check_call(user, app, g, Some(&vars), shadows)
        };
        if msg.method.as_deref() == Some("subscriptions/listen") {
            return Self::check_subscriptions(bounds, msg, single, decide);
        }
        Self::check_named(bounds, named, decide)
    }

    /// The decision for a message's governed name, by `decide`, after the checks every
    /// named message passes.
    fn check_named<'p, 'm>(
        bounds: &Bounds,
        named: &Named<'_, 'm>,
        decide: impl FnOnce(Governed<'_>) -> Decision<'p>,
    ) -> Result<Decision<'p>, Rejection<'m>> {
        let id = named.msg.id;
        match named.name.clone()? {
            // A task-augmented call answers through `tasks/result`, which the list filter does
            // not read: the tool definitions this tool returns would reach the client unfiltered.
            Some(Governed::Tool(AGENTCORE_SEARCH_TOOL)) if named.msg.params.has_task => Err(Rejection {
                status: 400,
                code: -32602,
                message: "the search tool cannot be called as a task".into(),
                reason: "search_task_not_allowed",
                id,
            }),
            // Longer than any name or URI the upstream is meant to serve (the MCP spec asks
            // 1–128 characters of a tool name): refused, never matched or recorded whole.
            Some(g) if !bounds.fits(g) => Err(Rejection {
                status: 400,
                code: -32602,
                message: format!("{} name is longer than mcp-warden accepts", g.kind()).into(),
                reason: "invalid_name",
                id,
            }),
            Some(g) => Ok(decide(g)),
            None => Ok(Decision { allowed: true, reason: Reason::NotGoverned, role: None, rule: None }),
        }
    }

    /// `subscriptions/listen`: every URI it subscribes to, as a resource; one denied denies
    /// (and is the resource audited).
    fn check_subscriptions<'p, 'm>(
        bounds: &Bounds,
        msg: &Message<'m>,
        single: Option<&mut Single<'_>>,
        mut decide: impl FnMut(Governed<'_>) -> Decision<'p>,
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
        let mut decision = Decision { allowed: true, reason: Reason::NotGoverned, role: None, rule: None };
        for uri in &uris {
            let what = Governed::Resource(uri);
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
        let named: Vec<_> = msgs.iter().map(Named::of).collect();
        let mut shadows = Vec::new();
        let outcomes: Vec<_> = named
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
                        id: m.msg.id,
                    }),
                    other => other,
                }
            })
            .collect();
        let any_denied = outcomes.iter().any(|o| !matches!(o, Ok(d) if d.allowed));
        // One audit event per element, with the batch's fate: nothing is forwarded when any
        // element is denied.
        audit.batch = true;
        for (msg, outcome) in named.iter().zip(&outcomes) {
            audit.batch_element(msg, outcome, any_denied);
        }
        audit.reason = if any_denied { "batch_element_denied" } else { BATCH_ALLOWED };
        any_denied.then(|| Reply::batch_denied(msgs, &outcomes, self.settings.denied_status))
    }

    /// What rules in `mode: audit` would have decided for `msg`: audited and counted, with
    /// no effect on the answer.
    fn shadows<'s>(&self, audit: &AuditInfo<'s>, msg: &Named<'_, 's>, shadows: &[Shadow<'_>]) {
        for s in shadows {
            self.metrics.shadow(s.role, s.rule, s.outcome.code());
        }
        audit.write_shadows(self.audit(), msg, shadows);
    }

    fn denied(&self, msg: &Named<'_, '_>) -> Reply {
        let message = match msg.name {
            Ok(Some(g)) => format!(
                "access to {} '{}' is denied by policy (MCP access is enforced by your roles)",
                g.kind(),
                g.name()
            ),
            Ok(None) | Err(_) => "request denied by policy".to_owned(),
        };
        Reply::error(self.settings.denied_status, msg.msg.id, -32602, &message)
    }

    /// An admitted caller's allowed call: the app's `rewrite` headers set (the ID token
    /// minted or taken from the cache), the client's credentials removed.
    fn allow(&self, a: &Admitted<'_, '_>, audit: &mut AuditInfo<'_>) -> Reply {
        let Admitted { snap, ctx, user, app, echo_id: id } = *a;
        let headers = ctx.http.headers;
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
        let ring = self.keys();
        let Some(key) = ring.active(now) else {
            tracing::error!("no signing key is active");
            return Err(Unfilled::NoToken);
        };
        match snap.tokens.get_or_mint(&self.settings.token, key, user, app, now) {
            Ok((token, source)) => {
                audit.token_cached = Some(source == Source::Cache);
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

/// One message of a request and the name in it that policy governs, read once
/// ([`mcp::governed`]) and handed to the audit record and to every check that needs it.
#[derive(Debug)]
pub struct Named<'m, 'a> {
    pub msg: &'m Message<'a>,
    /// What the message names, or why it is malformed.
    pub name: Result<Option<Governed<'m>>, Rejection<'a>>,
}

impl<'m, 'a> Named<'m, 'a> {
    pub fn of(msg: &'m Message<'a>) -> Self {
        Named { msg, name: mcp::governed(msg) }
    }
}

/// A caller that passed authentication and the app access check, and what its allow needs.
#[derive(Clone, Copy)]
struct Admitted<'a, 's> {
    snap: &'s Snapshot,
    ctx: &'a Context<'s>,
    user: &'a User,
    app: &'s App,
    echo_id: Option<&'s RawValue>,
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
fn rate_limited(user: &User, msg: &Named<'_, '_>) -> bool {
    match msg.name {
        Ok(Some(Governed::Tool(tool))) => warden_core::policy::rate::limits(user, tool) != (None, None),
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
