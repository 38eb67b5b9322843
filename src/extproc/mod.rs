//! The list filter: Envoy's ext_proc `ExternalProcessor` service, on the same gRPC listener
//! as ext_authz. It rewrites `tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list` and AgentCore search results so a user sees only what
//! [`warden_core::policy::engine::check_name`] lets it use.
//!
//! Envoy runs it only for requests whose ext_authz decision metadata names an allowed list
//! call or GET stream (see `envoy/`), skips the request path, and sends the response headers
//! with that metadata. Who asked, on which app, with which JSON-RPC id, comes from the
//! metadata, never from the body; the user is found again by name and fingerprint in the
//! policy in force at each piece of the body (a GET stream lives as long as its session, and
//! a reload meanwhile applies to it). Then the body is asked for whole (`BUFFERED`: JSON of
//! a known length up to [`JSON_BUFFERED_MAX`], whose `content-length` is then corrected) or
//! chunk by chunk (`STREAMED`: larger or unsized JSON, held here up to `max_event_bytes`,
//! and SSE, re-framed by [`sse`]), and filtered by [`filter`].
//!
//! Fails closed: no usable decision, a user the current policy no longer knows, a body it
//! cannot read as its clients would ([`media`]: compressed, or a `content-type` with a charset
//! other than UTF-8 or any other parameter) or a list that cannot be parsed, or that answers
//! another request than the one awaited, gives the client a JSON-RPC error
//! (-32603) instead of the list, unless `list_filter.on_unparseable: pass` says otherwise for
//! the last two. Each list given up on is counted in `mcp_warden_list_filter_refusals_total`
//! by kind, reason code and action (`refused` or `passed`).
//! Owns the protocol conversation only; it never logs tool names or bodies.

pub mod media;
pub mod sse;

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption, Metadata, header_value_option};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::{BodySendMode, HeaderSendMode};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessor;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, BodyResponse, CommonResponse, HeaderMutation, HeadersResponse, HttpBody, HttpHeaders,
    ImmediateResponse, ProcessingRequest, ProcessingResponse, TrailersResponse, body_mutation, processing_request,
    processing_response,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::Struct;
use envoy_types::pb::google::protobuf::value::Kind;
use serde_json::value::RawValue;
use tonic::codegen::tokio_stream::Stream;

use crate::authz::reply;
use crate::config::{ListFilterSettings, OnUnparseable};
use crate::identity::identities::UserRef;
use crate::state::{Snapshot, Warden};
use media::Framing;
use sse::Reframer;
use warden_core::decision::{self, DecisionMetadata, ListKind, key};
use warden_core::listfilter::{self as filter, Filtered, View};
use warden_core::policy::App;

/// Where Envoy files ext_authz's dynamic metadata (forwarded with
/// `metadata_options.forwarding_namespaces.untyped`).
pub const EXT_AUTHZ_NAMESPACE: &str = "envoy.filters.http.ext_authz";

/// JSON-RPC "internal error": the list could not be shown.
const ERR_INTERNAL: i32 = -32603;
const UNFILTERABLE: &str = "list response could not be filtered";

/// The ext_proc gRPC service: one [`Session`] per HTTP response.
#[derive(Debug, Clone)]
pub struct ListFilterService {
    warden: Arc<Warden>,
    settings: ListFilterSettings,
}

impl ListFilterService {
    pub fn new(warden: Arc<Warden>, settings: ListFilterSettings) -> Self {
        ListFilterService { warden, settings }
    }
}

#[tonic::async_trait]
impl ExternalProcessor for ListFilterService {
    type ProcessStream = Responses;

    async fn process(
        &self,
        request: tonic::Request<tonic::Streaming<ProcessingRequest>>,
    ) -> Result<tonic::Response<Responses>, tonic::Status> {
        let session = Session::new(self.warden.clone(), self.settings);
        Ok(tonic::Response::new(Responses { inbound: request.into_inner(), session }))
    }
}

/// Answers each message of one ext_proc stream as it arrives, in order.
#[derive(Debug)]
pub struct Responses {
    inbound: tonic::Streaming<ProcessingRequest>,
    session: Session,
}

impl Stream for Responses {
    type Item = Result<ProcessingResponse, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match ready!(Pin::new(&mut this.inbound).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Err(status)) => return Poll::Ready(Some(Err(status))),
                Some(Ok(req)) => {
                    if let Some(resp) = this.session.handle(req) {
                        return Poll::Ready(Some(Ok(resp)));
                    }
                }
            }
        }
    }
}

/// The list call a response answers, as ext_authz decided it.
#[derive(Debug)]
struct Target {
    user: String,
    fingerprint: u64,
    app: String,
    kind: ListKind,
    id: Option<Box<RawValue>>,
}

/// Why a decision's metadata cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum MetadataError {
    #[error("no ext_authz metadata (is metadata_options.forwarding_namespaces set?)")]
    Missing,
    #[error("ext_authz did not allow this request")]
    NotAllowed,
    #[error(transparent)]
    Unreadable(#[from] decision::MetadataError),
}

impl Target {
    /// `Ok(None)`: the decision names no list call, so there is nothing to filter.
    fn from_metadata(metadata: Option<&Metadata>) -> Result<Option<Target>, MetadataError> {
        let fields = metadata.and_then(|m| m.filter_metadata.get(EXT_AUTHZ_NAMESPACE)).ok_or(MetadataError::Missing)?;
        let decision = DecisionMetadata::from_fields(|k| string_field(fields, k))?;
        if !decision.allowed {
            return Err(MetadataError::NotAllowed);
        }
        let Some(kind) = decision.list_kind() else {
            return Ok(None);
        };
        let missing = |name| MetadataError::Unreadable(decision::MetadataError::Missing(name));
        let user = decision.user.ok_or(missing(key::USER))?;
        let fingerprint = decision.user_fingerprint.ok_or(missing(key::USER_FINGERPRINT))?.value();
        let app = decision.app.ok_or(missing(key::APP))?;
        let id = decision.jsonrpc_id.and_then(|raw| RawValue::from_string(raw.to_owned()).ok());
        Ok(Some(Target { user: user.to_owned(), fingerprint, app: app.to_owned(), kind, id }))
    }

    /// The user and app in `snapshot` (the policy now in force). `None` when the policy
    /// changed since the check and no longer has this exact identity.
    fn resolve<'s>(&self, snapshot: &'s Snapshot) -> Option<(UserRef<'s>, &'s App)> {
        let user = snapshot.user_by_fingerprint(&self.user, self.fingerprint)?;
        Some((user, snapshot.policy.app(&self.app)?))
    }

    fn error_body(&self) -> String {
        reply::jsonrpc_error(self.id.as_deref(), ERR_INTERNAL, UNFILTERABLE)
    }
}

/// The string value of `key` in a `Struct` (anything else counts as absent).
fn string_field<'a>(fields: &'a Struct, key: &str) -> Option<&'a str> {
    match fields.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(v) => Some(v.as_str()),
        _ => None,
    }
}

/// The largest JSON list (by `content-length`) asked for whole: well inside Envoy's default
/// per-connection buffer limit (1 MiB), which a `BUFFERED` body may not exceed.
pub const JSON_BUFFERED_MAX: u64 = 512 * 1024;

#[derive(Debug)]
enum State {
    /// Waiting for the response headers.
    Start,
    /// Nothing to filter: the rest of the response passes as it is.
    Pass,
    /// Collecting a JSON body: Envoy buffers it, or (`streamed`) sends it in pieces that are
    /// held back here until the whole can be judged.
    Json { target: Box<Target>, body: Vec<u8>, chunks: usize, streamed: bool },
    /// Re-framing an event stream.
    Sse { target: Box<Target>, reframer: Reframer },
    /// An event stream was given up on in `error` mode: the rest is dropped.
    Drop,
}

/// The conversation about one HTTP response. Pure apart from reading the policy snapshot:
/// every [`ProcessingRequest`] gets its [`ProcessingResponse`] synchronously.
#[derive(Debug)]
pub struct Session {
    warden: Arc<Warden>,
    settings: ListFilterSettings,
    state: State,
}

impl Session {
    pub fn new(warden: Arc<Warden>, settings: ListFilterSettings) -> Self {
        Session { warden, settings, state: State::Start }
    }

    /// The answer to one message; `None` for a message that asks nothing.
    pub fn handle(&mut self, req: ProcessingRequest) -> Option<ProcessingResponse> {
        use processing_request::Request as In;
        use processing_response::Response as Out;
        let response = match req.request? {
            In::ResponseHeaders(h) => return Some(self.on_response_headers(req.metadata_context.as_ref(), &h)),
            In::ResponseBody(b) => Out::ResponseBody(self.on_response_body(b)),
            // Envoy is configured to skip these; answer them harmlessly if it sends them.
            In::RequestHeaders(_) => Out::RequestHeaders(HeadersResponse::default()),
            In::RequestBody(_) => Out::RequestBody(BodyResponse::default()),
            In::RequestTrailers(_) => Out::RequestTrailers(TrailersResponse::default()),
            In::ResponseTrailers(_) => Out::ResponseTrailers(TrailersResponse::default()),
        };
        Some(ProcessingResponse { response: Some(response), ..Default::default() })
    }

    fn on_response_headers(&mut self, metadata: Option<&Metadata>, headers: &HttpHeaders) -> ProcessingResponse {
        let target = match Target::from_metadata(metadata) {
            Ok(Some(t)) => t,
            Ok(None) => {
                tracing::debug!("list filter: the decision names no list call");
                return self.pass();
            }
            Err(why) => {
                tracing::error!(reason = %why, "list filter: no usable ext_authz decision; the list is withheld");
                self.warden.metrics.list_filter_refusal("unknown", "no_decision", false);
                self.state = State::Drop;
                return immediate(500, reply::jsonrpc_error(None, ERR_INTERNAL, UNFILTERABLE));
            }
        };
        let status = header(headers, ":status");
        if headers.end_of_stream || !status.as_deref().is_some_and(|s| s.starts_with('2')) {
            tracing::debug!(status = status.as_deref().unwrap_or(""), "list filter: no list body to filter");
            return self.pass();
        }
        if target.resolve(&self.warden.snapshot()).is_none() {
            tracing::warn!(
                user = %target.user,
                app = %target.app,
                "list filter: the policy changed since the check and no longer has this identity; the list is withheld"
            );
            let reason = filter::FilterError::IdentityGone.code();
            self.warden.metrics.list_filter_refusal(target.kind.as_str(), reason, false);
            self.state = State::Drop;
            return immediate(200, target.error_body());
        }
        let lines: Vec<(&str, Cow<'_, str>)> = header_lines(headers).collect();
        match media::framing(lines.iter().map(|(k, v)| (*k, v.as_ref()))) {
            Ok(framing) => self.ask_for_body(Box::new(target), framing, headers),
            Err(why) => {
                tracing::warn!(kind = target.kind.as_str(), reason = %why, "list filter: list response not readable");
                match self.give_up(target.kind, why.code()) {
                    OnUnparseable::Pass => self.pass(),
                    OnUnparseable::Error => {
                        self.state = State::Drop;
                        immediate(200, target.error_body())
                    }
                }
            }
        }
    }

    /// Asks Envoy for the body of a list response, framed as `framing`.
    fn ask_for_body(&mut self, target: Box<Target>, framing: Framing, headers: &HttpHeaders) -> ProcessingResponse {
        let (mode, mutation) = match framing {
            Framing::EventStream => {
                self.state = State::Sse { target, reframer: Reframer::new(self.settings.max_event_bytes) };
                // Events are re-written as they complete: the length is not known in advance.
                (
                    BodySendMode::Streamed,
                    Some(HeaderMutation { remove_headers: vec!["content-length".into()], ..Default::default() }),
                )
            }
            Framing::Json => {
                // Envoy buffers a body only up to its buffer limit (a larger one fails, or stalls
                // when it arrived with the headers): past that, or of unknown length, it streams.
                let length = header(headers, "content-length").and_then(|l| l.trim().parse::<u64>().ok());
                let streamed = length.is_none_or(|n| n > JSON_BUFFERED_MAX);
                self.state = State::Json { target, body: Vec::new(), chunks: 0, streamed };
                if streamed {
                    let mutation =
                        HeaderMutation { remove_headers: vec!["content-length".into()], ..Default::default() };
                    (BodySendMode::Streamed, Some(mutation))
                } else {
                    (BodySendMode::Buffered, None)
                }
            }
        };
        ProcessingResponse {
            response: Some(processing_response::Response::ResponseHeaders(HeadersResponse {
                response: Some(CommonResponse { header_mutation: mutation, ..Default::default() }),
            })),
            mode_override: Some(body_mode(mode)),
            ..Default::default()
        }
    }

    /// Counts a list response given up on for `reason`, and says what `on_unparseable` makes
    /// of it.
    fn give_up(&self, kind: ListKind, reason: &'static str) -> OnUnparseable {
        let action = self.settings.on_unparseable;
        self.warden.metrics.list_filter_refusal(kind.as_str(), reason, action == OnUnparseable::Pass);
        action
    }

    fn pass(&mut self) -> ProcessingResponse {
        self.state = State::Pass;
        ProcessingResponse {
            response: Some(processing_response::Response::ResponseHeaders(HeadersResponse::default())),
            ..Default::default()
        }
    }

    fn on_response_body(&mut self, chunk: HttpBody) -> BodyResponse {
        match std::mem::replace(&mut self.state, State::Pass) {
            State::Start | State::Pass => BodyResponse::default(),
            State::Drop => {
                self.state = State::Drop;
                replace_chunk(Vec::new())
            }
            State::Json { target, mut body, chunks, streamed } => {
                body.extend_from_slice(&chunk.body);
                if body.len() > self.settings.max_event_bytes {
                    return self.give_up_json(&target, body, streamed);
                }
                if !chunk.end_of_stream {
                    // Hold every byte back until the whole body can be judged.
                    self.state = State::Json { target, body, chunks: chunks + 1, streamed };
                    return replace_chunk(Vec::new());
                }
                self.finish_json(&target, body, chunks > 0, streamed)
            }
            State::Sse { target, reframer } => self.sse_chunk(target, reframer, &chunk),
        }
    }

    fn finish_json(&mut self, target: &Target, body: Vec<u8>, held_back: bool, streamed: bool) -> BodyResponse {
        let replace = |body, content_type| replace_whole(streamed, body, content_type);
        if body.iter().all(u8::is_ascii_whitespace) {
            // An empty body lists nothing.
            return if held_back { replace(body, None) } else { BodyResponse::default() };
        }
        let snapshot = self.warden.snapshot();
        let outcome = match (std::str::from_utf8(&body), target.resolve(&snapshot)) {
            (Ok(text), Some((user, app))) => {
                let (outcome, drifts) =
                    filter::filter_payload_pinned(target.kind, &View { user: &user, app }, target.id.as_deref(), text);
                crate::pins::report(&self.warden, &target.user, app, &drifts);
                outcome
            }
            (Err(_), _) => Err(filter::FilterError::NotJson("not UTF-8".into())),
            (_, None) => Err(filter::FilterError::IdentityGone),
        };
        match outcome {
            Ok(Filtered::Unchanged) if !held_back => BodyResponse::default(),
            Ok(Filtered::Unchanged) => replace(body, None),
            Ok(Filtered::Rewritten(new)) => {
                tracing::debug!(
                    kind = target.kind.as_str(),
                    from = body.len(),
                    to = new.len(),
                    "list response filtered"
                );
                replace(new.into_bytes(), None)
            }
            Err(e) => {
                tracing::warn!(kind = target.kind.as_str(), error = %e, "list filter: unparseable list response");
                match self.give_up(target.kind, e.code()) {
                    OnUnparseable::Pass if held_back => replace(body, None),
                    OnUnparseable::Pass => BodyResponse::default(),
                    OnUnparseable::Error => replace(target.error_body().into_bytes(), Some("application/json")),
                }
            }
        }
    }

    /// A JSON body too large to judge: the error, or with `on_unparseable: pass` what was held
    /// back and the rest as they come.
    fn give_up_json(&mut self, target: &Target, held: Vec<u8>, streamed: bool) -> BodyResponse {
        tracing::warn!(
            kind = target.kind.as_str(),
            limit = self.settings.max_event_bytes,
            "list filter: list response too large"
        );
        match (self.give_up(target.kind, "body_too_large"), streamed) {
            (OnUnparseable::Pass, true) => replace_chunk(held),
            (OnUnparseable::Pass, false) => BodyResponse::default(),
            (OnUnparseable::Error, _) => {
                self.state = State::Drop;
                replace_whole(streamed, target.error_body().into_bytes(), Some("application/json"))
            }
        }
    }

    fn sse_chunk(&mut self, target: Box<Target>, mut reframer: Reframer, chunk: &HttpBody) -> BodyResponse {
        let mut out = Vec::with_capacity(chunk.body.len() + reframer.pending());
        let snapshot = self.warden.snapshot();
        let resolved = target.resolve(&snapshot);
        let mut rewrite = |data: &str| -> Option<String> {
            // An event with empty data (the priming event servers send so a client can resume
            // with Last-Event-ID) carries nothing to filter.
            if data.trim().is_empty() {
                return None;
            }
            let outcome = match &resolved {
                Some((user, app)) => {
                    let (outcome, drifts) =
                        filter::filter_payload_pinned(target.kind, &View { user, app }, target.id.as_deref(), data);
                    crate::pins::report(&self.warden, &target.user, app, &drifts);
                    outcome
                }
                None => Err(filter::FilterError::IdentityGone),
            };
            match outcome {
                Ok(Filtered::Unchanged) => None,
                Ok(Filtered::Rewritten(new)) => {
                    tracing::debug!(
                        kind = target.kind.as_str(),
                        from = data.len(),
                        to = new.len(),
                        "list event filtered"
                    );
                    Some(new)
                }
                Err(e) => {
                    tracing::warn!(kind = target.kind.as_str(), error = %e, "list filter: unparseable event");
                    match self.give_up(target.kind, e.code()) {
                        OnUnparseable::Pass => None,
                        OnUnparseable::Error => Some(target.error_body()),
                    }
                }
            }
        };
        let pushed = reframer.push(&chunk.body, &mut out, &mut rewrite);
        if pushed.is_ok() && chunk.end_of_stream {
            reframer.finish(&mut out, &mut rewrite);
        }
        drop(resolved);
        match pushed {
            Ok(()) if chunk.end_of_stream => self.state = State::Pass,
            Ok(()) => self.state = State::Sse { target, reframer },
            Err(e) => {
                tracing::warn!(kind = target.kind.as_str(), error = %e, "list filter: event stream given up");
                match self.give_up(target.kind, e.code()) {
                    OnUnparseable::Pass => {
                        out.extend_from_slice(&reframer.take_pending());
                        self.state = State::Pass;
                    }
                    OnUnparseable::Error => {
                        out.extend_from_slice(b"data: ");
                        out.extend_from_slice(target.error_body().as_bytes());
                        out.extend_from_slice(b"\n\n");
                        self.state = State::Drop;
                    }
                }
            }
        }
        replace_chunk(out)
    }
}

/// The processing mode asking for the response body in `mode`, everything else as configured
/// (Envoy replaces the whole mode, and accepts only what `allowed_override_modes` lists:
/// `envoy/` configures exactly these two).
fn body_mode(mode: BodySendMode) -> ProcessingMode {
    ProcessingMode {
        request_header_mode: HeaderSendMode::Skip as i32,
        response_header_mode: HeaderSendMode::Send as i32,
        request_body_mode: BodySendMode::None as i32,
        response_body_mode: mode as i32,
        request_trailer_mode: HeaderSendMode::Skip as i32,
        response_trailer_mode: HeaderSendMode::Skip as i32,
    }
}

/// A response header's value, its first line (Envoy sends either `value` or `raw_value`).
fn header<'h>(headers: &'h HttpHeaders, name: &str) -> Option<Cow<'h, str>> {
    header_lines(headers).find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Every response header line, name and value (bytes that are not UTF-8 replaced, so they
/// never read as a valid token).
fn header_lines(headers: &HttpHeaders) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    headers.headers.iter().flat_map(|m| &m.headers).map(|h| {
        let value = if h.raw_value.is_empty() {
            Cow::Borrowed(h.value.as_str())
        } else {
            String::from_utf8_lossy(&h.raw_value)
        };
        (h.key.as_str(), value)
    })
}

fn set_header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_owned(), raw_value: value.into_bytes(), ..Default::default() }),
        append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// The whole (buffered) body replaced by `body`, with its `content-length` corrected (and,
/// for an error, its `content-type` set): in `BUFFERED` mode Envoy still holds the headers.
/// The whole body replaced: with its headers when Envoy still holds them, else (streamed,
/// the headers are gone) the bytes alone.
fn replace_whole(streamed: bool, body: Vec<u8>, content_type: Option<&str>) -> BodyResponse {
    match streamed {
        true => replace_chunk(body),
        false => replace_body(body, content_type),
    }
}

fn replace_body(body: Vec<u8>, content_type: Option<&str>) -> BodyResponse {
    let mut set_headers = vec![set_header("content-length", body.len().to_string())];
    if let Some(ct) = content_type {
        set_headers.push(set_header("content-type", ct.to_owned()));
    }
    let mut response = replace_chunk(body);
    if let Some(common) = response.response.as_mut() {
        common.header_mutation = Some(HeaderMutation { set_headers, ..Default::default() });
    }
    response
}

/// One streamed chunk replaced by `body` (nothing, when it is empty).
fn replace_chunk(body: Vec<u8>) -> BodyResponse {
    let mutation =
        if body.is_empty() { body_mutation::Mutation::ClearBody(true) } else { body_mutation::Mutation::Body(body) };
    BodyResponse {
        response: Some(CommonResponse {
            body_mutation: Some(BodyMutation { mutation: Some(mutation) }),
            ..Default::default()
        }),
    }
}

/// A local reply instead of the upstream's response (only possible at response headers).
fn immediate(status: i32, body: String) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(processing_response::Response::ImmediateResponse(ImmediateResponse {
            status: Some(HttpStatus { code: status }),
            headers: Some(HeaderMutation {
                set_headers: vec![set_header("content-type", "application/json".into())],
                ..Default::default()
            }),
            body: body.into_bytes(),
            details: "mcp_warden_list_unfilterable".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
