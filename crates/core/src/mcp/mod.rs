//! MCP Streamable HTTP request inspection: everything about a request that must hold before
//! a policy may look at it, for every protocol version (2024-11-05 … 2026-07-28).
//!
//! Owns the fail-closed gate: HTTP method, content type and encoding, size, partial bodies,
//! batch rules per version, and the 2026-07-28 `Mcp-Method` / `Mcp-Name` mirrors. Anything
//! it cannot prove well-formed is a [`Rejection`]; it never lets a request through because
//! parsing failed. Pure: no I/O, no policy.
//!
//! A batch of more than `max_batch` messages is refused where message `max_batch + 1`
//! starts, unread (issue 19): `batch_too_large`, or `batch_not_allowed` in a version without
//! batches, even when what follows that message is not JSON (then no `invalid_json`).

pub mod jsonrpc;
pub mod methods;

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::value::RawValue;

pub use jsonrpc::{Body, JsonRpcError, Message};

use crate::headers::Headers;
use crate::policy::Governed;

/// Bounds applied before and during parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_depth: usize,
    /// Messages in one (2025-03-26) batch: each is decided and audited on its own, so a
    /// batch costs per message, not only per byte.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 1 << 20, max_depth: 32, max_batch: 100 }
    }
}

/// MCP protocol versions this gate knows; an unknown one is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolVersion {
    V2024_11_05,
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

impl ProtocolVersion {
    const ALL: [(&'static str, ProtocolVersion); 5] = [
        ("2024-11-05", ProtocolVersion::V2024_11_05),
        ("2025-03-26", ProtocolVersion::V2025_03_26),
        ("2025-06-18", ProtocolVersion::V2025_06_18),
        ("2025-11-25", ProtocolVersion::V2025_11_25),
        ("2026-07-28", ProtocolVersion::V2026_07_28),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, v)| *v == self).map_or("", |(n, _)| n)
    }

    /// JSON-RPC batches were allowed up to 2025-03-26 and removed in 2025-06-18.
    pub fn allows_batch(self) -> bool {
        self <= ProtocolVersion::V2025_03_26
    }

    /// 2026-07-28: stateless, mirrored `Mcp-Method`/`Mcp-Name` headers.
    pub fn is_stateless(self) -> bool {
        self >= ProtocolVersion::V2026_07_28
    }
}

/// Why a request was refused, ready to be answered as a JSON-RPC error.
#[derive(Debug, Clone)]
pub struct Rejection<'a> {
    pub status: u16,
    pub code: i32,
    pub message: Cow<'static, str>,
    /// A stable reason code for audit and metrics.
    pub reason: &'static str,
    pub id: Option<&'a RawValue>,
}

impl Rejection<'_> {
    fn new(status: u16, code: i32, reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Rejection { status, code, message: message.into(), reason, id: None }
    }
}

/// The JSON-RPC error code of a header/body mismatch (MCP 2026-07-28).
pub const HEADER_MISMATCH: i32 = -32020;

/// A request that passed the gate.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "lives on the stack for one check; boxing would allocate per request")]
pub enum Inspection<'a> {
    /// GET: the server-to-client SSE stream.
    Stream,
    /// DELETE: end of a session.
    EndSession,
    /// POST: one message or a batch.
    Messages { version: ProtocolVersion, body: Body<'a> },
}

/// The parts of an HTTP request the gate reads. Header names are lower-case (Envoy's form).
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub headers: &'a Headers<'a>,
    pub body: &'a [u8],
}

impl<'a> HttpRequest<'a> {
    fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name)
    }
}

/// The protocol version a request declares (`MCP-Protocol-Version`; absent → 2025-03-26).
pub fn protocol_version<'a>(req: &HttpRequest<'a>) -> Result<ProtocolVersion, Rejection<'a>> {
    match req.header("mcp-protocol-version") {
        None => Ok(ProtocolVersion::V2025_03_26),
        Some(v) => ProtocolVersion::parse(v.trim()).ok_or_else(|| {
            Rejection::new(400, -32600, "unsupported_protocol_version", "unsupported MCP-Protocol-Version")
        }),
    }
}

/// Headers some frameworks read as the request's real method.
const METHOD_OVERRIDES: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

/// Runs every fail-closed check and parses the body.
pub fn inspect<'a>(req: &HttpRequest<'a>, limits: &Limits) -> Result<Inspection<'a>, Rejection<'a>> {
    // A server honouring one would act on a method the check did not see.
    if METHOD_OVERRIDES.iter().any(|h| req.header(h).is_some()) {
        return Err(Rejection::new(400, -32600, "method_override", "method-override headers are not allowed"));
    }
    match req.method {
        "POST" => {}
        // Their bodies are never inspected, so they may not have one: a server that read it
        // would run what no check saw.
        "GET" | "DELETE" if !req.body.is_empty() || req.header("x-envoy-auth-partial-body").is_some() => {
            return Err(Rejection::new(400, -32600, "body_not_allowed", "a GET or DELETE request has no body"));
        }
        "GET" => return Ok(Inspection::Stream),
        "DELETE" => return Ok(Inspection::EndSession),
        _ => return Err(Rejection::new(405, -32600, "method_not_allowed", "HTTP method not allowed")),
    }
    let version = protocol_version(req)?;
    if req.header("x-envoy-auth-partial-body").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(Rejection::new(413, -32600, "body_too_large", "request body too large"));
    }
    if let Some(enc) = req.header("content-encoding")
        && !enc.trim().eq_ignore_ascii_case("identity")
    {
        return Err(Rejection::new(400, -32600, "content_encoding", "Content-Encoding is not supported"));
    }
    if !req.header("content-type").is_some_and(is_json) || req.headers.is_joined("content-type") {
        return Err(Rejection::new(400, -32600, "content_type", "Content-Type must be application/json"));
    }
    if req.body.is_empty() {
        return Err(Rejection::new(400, -32600, "empty_body", "request body is empty"));
    }
    if req.body.len() > limits.max_body_bytes {
        return Err(Rejection::new(413, -32600, "body_too_large", "request body too large"));
    }
    let Ok(text) = std::str::from_utf8(req.body) else {
        return Err(Rejection::new(400, -32700, "not_utf8", "request body is not UTF-8"));
    };
    let body = jsonrpc::parse(text, limits.max_depth, limits.max_batch).map_err(|e| {
        let reason = match e {
            // Read up to message `max_batch + 1` only: the answer of a well-formed one.
            JsonRpcError::TooManyMessages(_) => return batch_refusal(version),
            JsonRpcError::Syntax(_) => "invalid_json",
            JsonRpcError::DuplicateKey(_) => "duplicate_key",
            JsonRpcError::CaseVariant(_) => "case_variant_key",
            JsonRpcError::TooDeep(_) => "too_deep",
            JsonRpcError::NotJsonRpc2 => "not_jsonrpc_2",
            JsonRpcError::Invalid(_) | JsonRpcError::EmptyBatch => "invalid_jsonrpc",
        };
        Rejection { id: probe_id(req.body), ..Rejection::new(400, e.code(), reason, e.to_string()) }
    })?;
    match &body {
        Body::Batch(_) if !version.allows_batch() => return Err(batch_refusal(version)),
        Body::Batch(msgs) => {
            for m in msgs {
                check_mirrors(req, version, m)?;
            }
        }
        Body::Single(m) => check_mirrors(req, version, m)?,
    }
    Ok(Inspection::Messages { version, body })
}

/// The answer to a batch that may not pass: none in `version`, or one of more than
/// `max_batch` messages (the reader stops at message `max_batch + 1`, so such a batch is
/// refused whatever follows it, malformed JSON included). Batches have no single id: null.
fn batch_refusal(version: ProtocolVersion) -> Rejection<'static> {
    if !version.allows_batch() {
        return Rejection::new(
            400,
            -32600,
            "batch_not_allowed",
            "JSON-RPC batches are not allowed in this protocol version",
        );
    }
    Rejection::new(400, -32600, "batch_too_large", "too many messages in one JSON-RPC batch")
}

/// The `id` of a body the strict reader refused, for the error answer only: read leniently
/// from a single top-level object, and only when it is one unambiguous string or number
/// that reads as one (a duplicate `id`, an unparseable body or an id out of range yields
/// none, and the answer carries `null`).
fn probe_id(body: &[u8]) -> Option<&RawValue> {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    let id = serde_json::from_slice::<Probe<'_>>(body).ok()?.id?;
    jsonrpc::read_id(id).is_ok().then_some(id)
}

/// `application/json`, case-insensitive, parameters allowed.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// 2026-07-28 mirrored headers must match the body; in earlier versions, if a client sends
/// them anyway, they must match too (an upstream may route on them).
fn check_mirrors<'a>(req: &HttpRequest<'a>, version: ProtocolVersion, msg: &Message<'a>) -> Result<(), Rejection<'a>> {
    let mismatch =
        |what: &'static str| Rejection { id: msg.id, ..Rejection::new(400, HEADER_MISMATCH, "header_mismatch", what) };
    let stateless = version.is_stateless();
    // A mirror sent as several lines reads as one value here and as its first or last line
    // to a router; a method is never base64-wrapped (only names are).
    for name in ["mcp-method", "mcp-name"] {
        if req.headers.is_joined(name) {
            return Err(mismatch("Mcp-Method and Mcp-Name may be sent once each"));
        }
    }
    if req.header("mcp-method").is_some_and(|h| h.starts_with("=?base64?")) {
        return Err(mismatch("Mcp-Method header is never base64-wrapped"));
    }
    let Some(method) = msg.method.as_deref() else {
        if stateless {
            return Err(Rejection {
                id: msg.id,
                ..Rejection::new(
                    400,
                    -32600,
                    "response_not_allowed",
                    "clients must not POST JSON-RPC responses in this protocol version",
                )
            });
        }
        if req.header("mcp-method").is_some() || req.header("mcp-name").is_some() {
            return Err(mismatch("Mcp-Method or Mcp-Name header on a message with no method"));
        }
        return Ok(());
    };
    match req.header("mcp-method") {
        Some(h) if h != method => return Err(mismatch("Mcp-Method header does not match the body")),
        None if stateless => return Err(mismatch("Mcp-Method header is required")),
        _ => {}
    }
    let body_name = match method {
        "tools/call" | "prompts/get" => msg.params.name.as_ref(),
        "resources/read" => msg.params.uri.as_ref(),
        _ => None,
    };
    let body_name = body_name.and_then(|n| n.as_deref().ok());
    match (req.header("mcp-name"), body_name) {
        (Some(h), Some(b)) if decode_mirror(h).as_deref() != Some(b) => {
            return Err(mismatch("Mcp-Name header does not match the body"));
        }
        (Some(_), None) => return Err(mismatch("Mcp-Name header given but the body names nothing")),
        (None, Some(_)) if stateless => return Err(mismatch("Mcp-Name header is required")),
        _ => {}
    }
    if let (Some(header), Some(meta)) =
        (req.header("mcp-protocol-version"), msg.params.meta_protocol_version.as_deref())
        && header.trim() != meta
    {
        return Err(mismatch("MCP-Protocol-Version header does not match params._meta"));
    }
    Ok(())
}

/// A mirrored header value: plain, or `=?base64?…?=` for non-ASCII values.
fn decode_mirror(h: &str) -> Option<Cow<'_, str>> {
    match h.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        None => Some(Cow::Borrowed(h)),
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
    }
}

/// What a message names that policy governs, or why it is malformed (docs/mcp-methods.md;
/// `subscriptions/listen`'s list is read by [`methods::subscriptions`]).
pub fn governed<'m, 'a>(msg: &'m Message<'a>) -> Result<Option<Governed<'m>>, Rejection<'a>> {
    let Some(method) = msg.method.as_deref() else {
        return Ok(None);
    };
    let invalid = |what: &'static str| Rejection { id: msg.id, ..Rejection::new(400, -32600, "missing_name", what) };
    // No name or URI holds a control character: a glob's `*` would match across one where
    // the reference system's does not (and a line break in a name is never meant).
    let named = |s: &'m str| match s.chars().any(char::is_control) {
        false => Ok(s),
        true => Err(Rejection {
            id: msg.id,
            ..Rejection::new(400, -32602, "invalid_name", "a name or URI holds a control character")
        }),
    };
    let required = |v: &'m Option<Result<Cow<'a, str>, ()>>, what| match v {
        Some(Ok(s)) if !s.is_empty() => named(s),
        _ => Err(invalid(what)),
    };
    Ok(Some(match method {
        "tools/call" => Governed::Tool(required(&msg.params.name, "tools/call needs a non-empty params.name")?),
        "prompts/get" => Governed::Prompt(required(&msg.params.name, "prompts/get needs a non-empty params.name")?),
        // Subscribing names the resource as reading it does: the server then pushes
        // `notifications/resources/updated` for it.
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Governed::Resource(required(&msg.params.uri, "this method needs a non-empty params.uri")?)
        }
        "completion/complete" => {
            let r = msg.params.reference.as_ref().ok_or_else(|| invalid("completion/complete needs params.ref"))?;
            match (r.kind.as_deref(), r.name.as_deref(), r.uri.as_deref()) {
                (Some("ref/prompt"), Some(n), _) if !n.is_empty() => Governed::Prompt(named(n)?),
                (Some("ref/resource"), _, Some(u)) if !u.is_empty() => Governed::Resource(named(u)?),
                _ => return Err(invalid("completion/complete has an unrecognised params.ref")),
            }
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Headers<'a> {
        pairs.iter().copied().collect()
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather"}}"#;

    fn run<'a>(method: &'a str, h: &'a Headers<'a>, body: &'a str) -> Result<Inspection<'a>, Rejection<'a>> {
        inspect(
            &HttpRequest { method, headers: h, body: body.as_bytes() },
            &Limits { max_body_bytes: 4096, max_depth: 16, max_batch: 100 },
        )
    }

    fn reason(method: &str, pairs: &[(&str, &str)], body: &str) -> (&'static str, u16) {
        let h = headers(pairs);
        let r = run(method, &h, body).expect_err("must be rejected");
        (r.reason, r.status)
    }

    /// A batch of `n` pings followed by `tail`, inspected with `max_batch: 3`.
    fn batch_of(n: usize, tail: &str, version: &str) -> Result<usize, (&'static str, u16, i32, String, bool)> {
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let body = format!("[{}{tail}", vec![ping; n].join(","));
        let h = headers(&[("content-type", "application/json"), ("mcp-protocol-version", version)]);
        let limits = Limits { max_body_bytes: 4096, max_depth: 16, max_batch: 3 };
        match inspect(&HttpRequest { method: "POST", headers: &h, body: body.as_bytes() }, &limits) {
            Ok(Inspection::Messages { body: Body::Batch(m), .. }) => Ok(m.len()),
            Ok(_) => panic!("not a batch: {body}"),
            Err(r) => Err((r.reason, r.status, r.code, r.message.to_string(), r.id.is_none())),
        }
    }

    #[test]
    fn batch_limit_is_enforced_where_the_extra_message_starts() {
        let too_large = ("batch_too_large", 400, -32600, "too many messages in one JSON-RPC batch".into(), true);
        assert_eq!(batch_of(3, "]", "2025-03-26"), Ok(3), "exactly max_batch messages pass");
        assert_eq!(batch_of(4, "]", "2025-03-26"), Err(too_large.clone()));
        // Early: what follows message max_batch + 1 is never read, so a syntax error there
        // changes nothing; one before it is still invalid JSON.
        assert_eq!(batch_of(4, ",{]", "2025-03-26"), Err(too_large.clone()));
        assert_eq!(batch_of(3, ",{]", "2025-03-26").map_err(|e| e.0), Err("batch_too_large"));
        assert_eq!(batch_of(3, "}]", "2025-03-26").map_err(|e| e.0), Err("invalid_json"));
        let not_allowed = (
            "batch_not_allowed",
            400,
            -32600,
            "JSON-RPC batches are not allowed in this protocol version".into(),
            true,
        );
        assert_eq!(batch_of(2, "]", "2025-06-18"), Err(not_allowed.clone()));
        assert_eq!(batch_of(4, "]", "2025-06-18"), Err(not_allowed.clone()));
        assert_eq!(batch_of(4, ",{]", "2025-06-18"), Err(not_allowed));
    }

    #[test]
    fn accepts_a_plain_tools_call() {
        let h = headers(&[("content-type", "application/json")]);
        assert!(matches!(run("POST", &h, CALL), Ok(Inspection::Messages { .. })));
    }

    #[test]
    fn content_type_is_compared_case_insensitively_with_parameters() {
        let h = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
        assert!(run("POST", &h, CALL).is_ok());
    }

    #[test]
    fn fail_closed_table() {
        let json = ("content-type", "application/json");
        let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#, "a".repeat(5000));
        type Case<'t> = (&'t str, &'t str, Vec<(&'t str, &'t str)>, &'t str, (&'t str, u16));
        let table: &[Case<'_>] = &[
            ("other HTTP methods", "PUT", vec![json], CALL, ("method_not_allowed", 405)),
            ("gzip encoding", "POST", vec![json, ("content-encoding", "gzip")], CALL, ("content_encoding", 400)),
            ("missing content type", "POST", vec![], CALL, ("content_type", 400)),
            ("text content type", "POST", vec![("content-type", "text/plain")], CALL, ("content_type", 400)),
            ("partial body", "POST", vec![json, ("x-envoy-auth-partial-body", "true")], CALL, ("body_too_large", 413)),
            ("empty body", "POST", vec![json], "", ("empty_body", 400)),
            ("oversize body", "POST", vec![json], &big, ("body_too_large", 413)),
            ("invalid JSON", "POST", vec![json], "{", ("invalid_json", 400)),
            (
                "unknown protocol version",
                "POST",
                vec![json, ("mcp-protocol-version", "1999-01-01")],
                CALL,
                ("unsupported_protocol_version", 400),
            ),
            (
                "batch after 2025-03-26",
                "POST",
                vec![json, ("mcp-protocol-version", "2025-06-18")],
                "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
                ("batch_not_allowed", 400),
            ),
            (
                "stateless without Mcp-Method",
                "POST",
                vec![json, ("mcp-protocol-version", "2026-07-28"), ("mcp-name", "get_weather")],
                CALL,
                ("header_mismatch", 400),
            ),
            (
                "stateless without Mcp-Name",
                "POST",
                vec![json, ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")],
                CALL,
                ("header_mismatch", 400),
            ),
            ("Mcp-Method mismatch", "POST", vec![json, ("mcp-method", "ping")], CALL, ("header_mismatch", 400)),
            ("Mcp-Name mismatch", "POST", vec![json, ("mcp-name", "other")], CALL, ("header_mismatch", 400)),
        ];
        for (name, method, pairs, body, expected) in table {
            assert_eq!(reason(method, pairs, body), *expected, "case: {name}");
        }
    }

    #[test]
    fn refused_bodies_echo_an_unambiguous_id() {
        let h = headers(&[("content-type", "application/json")]);
        let id = |body| run("POST", &h, body).expect_err("refused").id.map(|i| i.get().to_owned());
        assert_eq!(id(r#"{"id":31,"jsonrpc":"2.0","Method":"x"}"#).as_deref(), Some("31"));
        assert_eq!(id(r#"{"id":"a","jsonrpc":"1.0","method":"ping"}"#).as_deref(), Some("\"a\""));
        assert_eq!(id(r#"{"id":1,"id":2,"jsonrpc":"2.0","method":"ping"}"#), None, "ambiguous: null");
        assert_eq!(id(r#"{"id":1,"#), None, "unparseable: null");
        assert_eq!(id(r#"{"id":null,"jsonrpc":"2.0","method":"ping"}"#), None);
        assert_eq!(id(r#"{"id":1e999,"jsonrpc":"2.0","method":"ping"}"#), None, "out of range: null");
        assert_eq!(id(r#"{"id":"\ud800","jsonrpc":"2.0","method":"ping"}"#), None, "lone surrogate: null");
        assert_eq!(id(r#"{"id":-2E3,"jsonrpc":"1.0","method":"ping"}"#).as_deref(), Some("-2E3"));
    }

    #[test]
    fn non_utf8_is_rejected() {
        let h = headers(&[("content-type", "application/json")]);
        let body = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}";
        let r = inspect(&HttpRequest { method: "POST", headers: &h, body }, &Limits::default()).expect_err("rejected");
        assert_eq!(r.reason, "not_utf8");
    }

    #[test]
    fn stateless_mirrors_accept_base64_names() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"météo"}}"#;
        let encoded = format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode("météo"));
        let h = headers(&[
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", &encoded),
        ]);
        assert!(run("POST", &h, body).is_ok());
    }

    #[test]
    fn stateless_rejects_meta_version_mismatch_and_responses() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#;
        let h = headers(&[
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "ping"),
        ]);
        let r = run("POST", &h, body).expect_err("rejected");
        assert_eq!((r.code, r.id.map(|i| i.get())), (HEADER_MISMATCH, Some("1")));
        let resp = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert_eq!(run("POST", &h, resp).expect_err("rejected").reason, "response_not_allowed");
    }

    #[test]
    fn get_and_delete_pass_the_gate() {
        let h = headers(&[]);
        assert!(matches!(run("GET", &h, ""), Ok(Inspection::Stream)));
        assert!(matches!(run("DELETE", &h, ""), Ok(Inspection::EndSession)));
    }

    #[test]
    fn a_get_or_delete_with_a_body_and_any_method_override_are_refused() {
        let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delete_all"}}"#;
        let json = headers(&[("content-type", "application/json")]);
        for method in ["GET", "DELETE"] {
            let r = run(method, &json, call).expect_err("a body no check reads");
            assert_eq!((r.status, r.reason), (400, "body_not_allowed"), "{method}");
            let partial = headers(&[("x-envoy-auth-partial-body", "true")]);
            assert_eq!(run(method, &partial, "").expect_err("cut body").reason, "body_not_allowed", "{method}");
        }
        for name in METHOD_OVERRIDES {
            let h = headers(&[("content-type", "application/json"), (name, "DELETE")]);
            assert_eq!(run("POST", &h, call).expect_err("override").reason, "method_override", "{name}");
            assert_eq!(run("GET", &headers(&[(name, "POST")]), "").expect_err("override").reason, "method_override");
        }
    }

    #[test]
    fn governed_names_and_missing_names() {
        let body = jsonrpc::parse(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":""}}"#, 8, 100)
            .expect("parses");
        let Body::Single(m) = body else { panic!() };
        let r = governed(&m).expect_err("empty name");
        assert_eq!((r.code, r.id.map(|i| i.get())), (-32600, Some("3")));
        let body = jsonrpc::parse(
            r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///x"}}"#,
            8,
            100,
        )
        .expect("parses");
        let Body::Single(m) = body else { panic!() };
        assert_eq!(governed(&m).expect("ok"), Some(Governed::Resource("file:///x")));
    }

    #[test]
    fn names_and_uris_with_control_characters_are_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_x\ndelete_all"}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"p\u0000"}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:///a\tb"}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p\r"}}}"#,
        ] {
            let Body::Single(m) = jsonrpc::parse(body, 8, 100).expect("parses") else { panic!() };
            let r = governed(&m).expect_err(body);
            assert_eq!((r.reason, r.code, r.id.map(|i| i.get())), ("invalid_name", -32602, Some("4")), "{body}");
        }
    }

    #[test]
    fn subscribing_and_completing_name_the_resource_or_prompt_the_upstream_reads() {
        let named = |body: &str| {
            let Body::Single(m) = jsonrpc::parse(body, 8, 100).expect("parses") else { panic!() };
            governed(&m).map(|g| g.map(|g| (g.kind(), g.name().to_owned()))).map_err(|r| r.reason)
        };
        for method in ["resources/subscribe", "resources/unsubscribe"] {
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"uri":"file:///secret/x"}}}}"#);
            assert_eq!(named(&body), Ok(Some(("resource", "file:///secret/x".to_owned()))), "{method}");
            let empty = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"uri":""}}}}"#);
            assert_eq!(named(&empty), Err("missing_name"), "{method}");
        }
        // ref/resource names a URI template, checked as the template string itself (as the
        // list filter checks `uriTemplate`); its `name` is not what the upstream reads.
        let template = r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///docs/{path}","name":"x"},"argument":{"name":"path","value":"a"}}}"#;
        assert_eq!(named(template), Ok(Some(("resource", "file:///docs/{path}".to_owned()))));
        let prompt = r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p","uri":"u://x"}}}"#;
        assert_eq!(named(prompt), Ok(Some(("prompt", "p".to_owned()))));
        for unreadable in [
            r#"{"type":"ref/tool","name":"t"}"#,
            r#"{"type":"ref/resource","name":"r"}"#,
            r#"{"type":"ref/prompt","uri":"u://x"}"#,
            r#"{"name":"p"}"#,
        ] {
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{{"ref":{unreadable}}}}}"#);
            assert_eq!(named(&body), Err("missing_name"), "{unreadable}");
        }
    }
}
