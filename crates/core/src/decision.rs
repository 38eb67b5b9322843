//! The decision's vocabulary shared by the check, the list filter and the access log: the
//! decision metadata itself ([`DecisionMetadata`], the one definition of its keys, written by
//! the check and read by the list filter), which list an answer carries and the reason codes
//! that name one. Knows nothing of protobuf: the service turns the fields into Envoy's
//! `google.protobuf.Struct` and back.

/// The decision reason of an allowed batch: Envoy sends every answer of one through the list
/// filter, which rewrites the list answers in it (by shape) and passes the rest unchanged.
pub const BATCH_ALLOWED: &str = "batch_allowed";
/// The decision reason of an allowed GET (the server-to-client SSE stream): every answer on
/// it is filtered, since a resuming server may replay a list answer there.
pub const STREAM_ALLOWED: &str = "sse_stream";
/// The decision reason of an allowed DELETE (end of session).
pub const SESSION_END: &str = "session_end";

/// AgentCore Gateway's built-in semantic search tool: its result lists tool definitions.
pub const AGENTCORE_SEARCH_TOOL: &str = "x_amz_bedrock_agentcore_search";

/// Which list a response carries, as the ext_authz decision named the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
    /// A `tools/call` of AgentCore's semantic search tool.
    Search,
    /// A batch with at least one list call: every response in it is filtered by shape.
    Batch,
    /// A GET stream: it may replay any earlier answer, so every response on it is filtered
    /// by shape, as in a batch.
    Stream,
}

impl ListKind {
    /// The list a decision's metadata names, or `None` for a call that lists nothing.
    pub fn from_decision(mcp_method: Option<&str>, tool: Option<&str>, reason: Option<&str>) -> Option<ListKind> {
        match mcp_method {
            Some("tools/list") => Some(ListKind::Tools),
            Some("prompts/list") => Some(ListKind::Prompts),
            Some("resources/list") => Some(ListKind::Resources),
            Some("resources/templates/list") => Some(ListKind::ResourceTemplates),
            Some("tools/call") if tool == Some(AGENTCORE_SEARCH_TOOL) => Some(ListKind::Search),
            None if reason == Some(BATCH_ALLOWED) => Some(ListKind::Batch),
            None if reason == Some(STREAM_ALLOWED) => Some(ListKind::Stream),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
            ListKind::Search => "search",
            ListKind::Batch => "batch",
            ListKind::Stream => "stream",
        }
    }
}

/// The keys of the decision metadata, each named once. The access log and Envoy's matchers
/// read them by these names: they never change name or meaning.
pub mod key {
    pub const DECISION: &str = "decision";
    pub const REASON: &str = "reason";
    pub const USER: &str = "user";
    pub const APP: &str = "app";
    pub const MCP_METHOD: &str = "mcp_method";
    pub const TOOL: &str = "tool";
    pub const PROMPT: &str = "prompt";
    pub const RESOURCE: &str = "resource";
    pub const RL_USER_RATE: &str = "rl_user_rate";
    pub const RL_TOOL_RATE: &str = "rl_tool_rate";
    pub const JSONRPC_ID: &str = "jsonrpc_id";
    pub const USER_FINGERPRINT: &str = "user_fingerprint";
    pub const PROTOCOL_VERSION: &str = "protocol_version";
    pub const SESSION_ID: &str = "session_id";
}

/// What one ext_authz check tells later Envoy filters: the list filter, the rate limiter and
/// the access log. Every value is a string in Envoy's `google.protobuf.Struct`; an absent
/// field is omitted, never sent empty. Borrowed from the check's own record, so writing it
/// allocates nothing. `proto/mcp_warden/v1/decision.proto` documents it (tested against
/// [`DecisionMetadata::KEYS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionMetadata<'a> {
    /// `decision`: `allow` or `deny`.
    pub allowed: bool,
    /// `reason`: the reason code of the decision (`allowed`, `batch_allowed`, `tool_denied`…).
    pub reason: &'a str,
    pub user: Option<&'a str>,
    pub app: Option<&'a str>,
    pub mcp_method: Option<&'a str>,
    /// The name the call governs: at most one of `tool`, `prompt` (name) and `resource` (URI).
    pub tool: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub resource: Option<&'a str>,
    /// The rate-limit tiers Envoy counts an allowed `tools/call` against.
    pub rl_user_rate: Option<&'a str>,
    pub rl_tool_rate: Option<&'a str>,
    /// The JSON-RPC id as JSON text (a string id keeps its quotes).
    pub jsonrpc_id: Option<&'a str>,
    pub user_fingerprint: Option<Fingerprint>,
    pub protocol_version: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

/// A user's policy fingerprint, as the list filter finds the user again: 16 lowercase hex
/// digits in the metadata.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    value: u64,
    hex: [u8; 16],
}

impl Fingerprint {
    pub fn new(value: u64) -> Fingerprint {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 16];
        for (i, digit) in hex.iter_mut().enumerate() {
            *digit = DIGITS[((value >> (60 - 4 * i)) & 0xf) as usize];
        }
        Fingerprint { value, hex }
    }

    /// Exactly 16 lowercase hex digits, as written.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if text.len() != 16 || !text.bytes().all(|b| lower_hex(&b)) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Fingerprint::new)
    }

    pub fn value(self) -> u64 {
        self.value
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Fingerprint").field(&self.as_str()).finish()
    }
}

/// Why decision metadata cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("decision metadata lacks '{0}'")]
    Missing(&'static str),
    #[error("decision metadata has an invalid '{key}': {value:?}")]
    Invalid { key: &'static str, value: String },
}

impl<'a> DecisionMetadata<'a> {
    /// Every key, in the order [`DecisionMetadata::fields`] writes them.
    pub const KEYS: [&'static str; 14] = [
        key::DECISION,
        key::REASON,
        key::USER,
        key::APP,
        key::MCP_METHOD,
        key::TOOL,
        key::PROMPT,
        key::RESOURCE,
        key::RL_USER_RATE,
        key::RL_TOOL_RATE,
        key::JSONRPC_ID,
        key::USER_FINGERPRINT,
        key::PROTOCOL_VERSION,
        key::SESSION_ID,
    ];

    /// A decision with nothing else to say.
    pub fn new(allowed: bool, reason: &'a str) -> DecisionMetadata<'a> {
        DecisionMetadata {
            allowed,
            reason,
            user: None,
            app: None,
            mcp_method: None,
            tool: None,
            prompt: None,
            resource: None,
            rl_user_rate: None,
            rl_tool_rate: None,
            jsonrpc_id: None,
            user_fingerprint: None,
            protocol_version: None,
            session_id: None,
        }
    }

    /// The fields that are set, as (key, value) pairs in [`DecisionMetadata::KEYS`] order.
    pub fn fields(&self) -> Fields<'_> {
        let values = [
            Some(if self.allowed { "allow" } else { "deny" }),
            Some(self.reason),
            self.user,
            self.app,
            self.mcp_method,
            self.tool,
            self.prompt,
            self.resource,
            self.rl_user_rate,
            self.rl_tool_rate,
            self.jsonrpc_id,
            self.user_fingerprint.as_ref().map(Fingerprint::as_str),
            self.protocol_version,
            self.session_id,
        ];
        let mut fields = Fields { pairs: [("", ""); Self::KEYS.len()], len: 0 };
        for (key, value) in Self::KEYS.into_iter().zip(values) {
            if let Some(value) = value {
                fields.pairs[fields.len] = (key, value);
                fields.len += 1;
            }
        }
        fields
    }

    /// Reads the metadata back through `get` (the value of a key, `None` when absent).
    ///
    /// # Errors
    ///
    /// No `decision` or `reason`, a `decision` other than `allow` or `deny`, or a
    /// `user_fingerprint` that is not 16 lowercase hex digits.
    pub fn from_fields(get: impl Fn(&str) -> Option<&'a str>) -> Result<DecisionMetadata<'a>, MetadataError> {
        let invalid = |key: &'static str, value: &str| MetadataError::Invalid { key, value: value.to_owned() };
        let allowed = match get(key::DECISION) {
            Some("allow") => true,
            Some("deny") => false,
            Some(other) => return Err(invalid(key::DECISION, other)),
            None => return Err(MetadataError::Missing(key::DECISION)),
        };
        let reason = get(key::REASON).ok_or(MetadataError::Missing(key::REASON))?;
        let user_fingerprint = match get(key::USER_FINGERPRINT) {
            Some(f) => Some(Fingerprint::parse(f).ok_or_else(|| invalid(key::USER_FINGERPRINT, f))?),
            None => None,
        };
        Ok(DecisionMetadata {
            user: get(key::USER),
            app: get(key::APP),
            mcp_method: get(key::MCP_METHOD),
            tool: get(key::TOOL),
            prompt: get(key::PROMPT),
            resource: get(key::RESOURCE),
            rl_user_rate: get(key::RL_USER_RATE),
            rl_tool_rate: get(key::RL_TOOL_RATE),
            jsonrpc_id: get(key::JSONRPC_ID),
            user_fingerprint,
            protocol_version: get(key::PROTOCOL_VERSION),
            session_id: get(key::SESSION_ID),
            ..DecisionMetadata::new(allowed, reason)
        })
    }

    /// The list this decision's answer carries (allowed or not), as the list filter and
    /// Envoy's matcher in front of it read it; `None` for a call that lists nothing.
    pub fn list_kind(&self) -> Option<ListKind> {
        ListKind::from_decision(self.mcp_method, self.tool, Some(self.reason))
    }
}

/// The set fields of a [`DecisionMetadata`], on the stack: a slice of (key, value) pairs.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'s> {
    pairs: [(&'static str, &'s str); DecisionMetadata::KEYS.len()],
    len: usize,
}

impl<'s> std::ops::Deref for Fields<'s> {
    type Target = [(&'static str, &'s str)];

    fn deref(&self) -> &Self::Target {
        &self.pairs[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn list_kinds_come_from_the_decision() {
        assert_eq!(ListKind::from_decision(Some("tools/list"), None, None), Some(ListKind::Tools));
        assert_eq!(
            ListKind::from_decision(Some("tools/call"), Some(AGENTCORE_SEARCH_TOOL), None),
            Some(ListKind::Search)
        );
        assert_eq!(ListKind::from_decision(Some("tools/call"), Some("get_weather"), None), None);
        assert_eq!(ListKind::from_decision(None, None, Some("batch_allowed")), Some(ListKind::Batch));
        assert_eq!(ListKind::from_decision(Some("ping"), None, Some("batch_allowed")), None);
        assert_eq!(ListKind::from_decision(None, None, Some("sse_stream")), Some(ListKind::Stream));
        assert_eq!(ListKind::from_decision(None, None, Some("session_end")), None);
    }

    /// Every field set, with values a naive encoding would get wrong.
    fn full() -> DecisionMetadata<'static> {
        DecisionMetadata {
            allowed: true,
            reason: "batch_allowed",
            user: Some("al\"ice ü\n%DYNAMIC_METADATA(x)%"),
            app: Some("demo:app=1"),
            mcp_method: Some("tools/list"),
            tool: Some("get_\u{0}weather"),
            prompt: Some("p,r;o\\mpt"),
            resource: Some("file:///tmp/a b?c=d#e"),
            rl_user_rate: Some("100/minute"),
            rl_tool_rate: Some("5/second"),
            jsonrpc_id: Some(r#""req-\"9\"""#),
            user_fingerprint: Some(Fingerprint::new(0x00c0_ffee_0000_beef)),
            protocol_version: Some("2025-11-25"),
            session_id: Some("\u{1F512}sess"),
        }
    }

    /// `m` with its `i`-th optional field (in `KEYS` order after `reason`) unset.
    fn unset(mut m: DecisionMetadata<'static>, i: usize) -> DecisionMetadata<'static> {
        match i {
            0 => m.user = None,
            1 => m.app = None,
            2 => m.mcp_method = None,
            3 => m.tool = None,
            4 => m.prompt = None,
            5 => m.resource = None,
            6 => m.rl_user_rate = None,
            7 => m.rl_tool_rate = None,
            8 => m.jsonrpc_id = None,
            9 => m.user_fingerprint = None,
            10 => m.protocol_version = None,
            _ => m.session_id = None,
        }
        m
    }

    /// Writes `m` into a map, as Envoy stores it, and reads it back.
    fn assert_reads_back(m: &DecisionMetadata<'_>) {
        let written = m.fields();
        let stored: HashMap<String, String> = written.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(stored.len(), written.len(), "a key written twice: {written:?}");
        assert_eq!(DecisionMetadata::from_fields(|k| stored.get(k).map(String::as_str)).as_ref(), Ok(m));
    }

    #[test]
    fn a_fully_populated_decision_writes_every_key_once_in_order() {
        let keys: Vec<&str> = full().fields().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, DecisionMetadata::KEYS);
        let full = full();
        let fields = full.fields();
        let value = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        assert_eq!(value(key::DECISION), Some("allow"));
        assert_eq!(value(key::USER_FINGERPRINT), Some("00c0ffee0000beef"));
        assert_eq!(value(key::JSONRPC_ID), Some(r#""req-\"9\"""#));
    }

    #[test]
    fn every_combination_of_set_and_unset_fields_reads_back_as_written() {
        let optional = DecisionMetadata::KEYS.len() - 2;
        for allowed in [true, false] {
            for mask in 0u32..(1 << optional) {
                let m =
                    (0..optional).filter(|i| mask & (1 << i) != 0).fold(DecisionMetadata { allowed, ..full() }, unset);
                assert_eq!(m.fields().len(), 2 + optional - mask.count_ones() as usize, "{mask:b}");
                assert_reads_back(&m);
            }
        }
        let bare = DecisionMetadata::new(false, "internal_error");
        assert_eq!(*bare.fields(), [(key::DECISION, "deny"), (key::REASON, "internal_error")]);
    }

    #[test]
    fn metadata_without_a_decision_or_reason_or_with_a_bad_fingerprint_is_refused() {
        let read = |pairs: &[(&'static str, &'static str)]| {
            let pairs = pairs.to_vec();
            DecisionMetadata::from_fields(move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v))
        };
        assert_eq!(read(&[(key::REASON, "allowed")]), Err(MetadataError::Missing(key::DECISION)));
        assert_eq!(read(&[(key::DECISION, "allow")]), Err(MetadataError::Missing(key::REASON)));
        assert_eq!(
            read(&[(key::DECISION, "Allow"), (key::REASON, "allowed")]),
            Err(MetadataError::Invalid { key: key::DECISION, value: "Allow".into() })
        );
        for bad in ["00C0FFEE0000BEEF", "c0ffee0000beef", "+0c0ffee0000beef", "00c0ffee0000beeg", ""] {
            let got = read(&[(key::DECISION, "allow"), (key::REASON, "allowed"), (key::USER_FINGERPRINT, bad)]);
            assert_eq!(got, Err(MetadataError::Invalid { key: key::USER_FINGERPRINT, value: bad.into() }), "{bad}");
        }
    }

    #[test]
    fn fingerprints_are_sixteen_lowercase_hex_digits() {
        assert_eq!(Fingerprint::new(0).as_str(), "0000000000000000");
        assert_eq!(Fingerprint::new(u64::MAX).as_str(), "ffffffffffffffff");
        assert_eq!(Fingerprint::new(0x0123_4567_89ab_cdef).as_str(), "0123456789abcdef");
        for v in [0, 1, 0x8000_0000_0000_0000, u64::MAX, 0x00c0_ffee_0000_beef] {
            assert_eq!(Fingerprint::parse(Fingerprint::new(v).as_str()).map(Fingerprint::value), Some(v));
        }
    }

    #[test]
    fn the_list_kind_comes_from_the_method_the_search_tool_or_the_reason() {
        let kind = |mcp_method, tool, reason| {
            DecisionMetadata { mcp_method, tool, ..DecisionMetadata::new(true, reason) }.list_kind()
        };
        assert_eq!(kind(Some("resources/templates/list"), None, "allowed"), Some(ListKind::ResourceTemplates));
        assert_eq!(kind(Some("tools/call"), Some(AGENTCORE_SEARCH_TOOL), "allowed"), Some(ListKind::Search));
        assert_eq!(kind(None, None, STREAM_ALLOWED), Some(ListKind::Stream));
        assert_eq!(kind(Some("tools/call"), Some("get_weather"), "allowed"), None);
        assert_eq!(kind(None, None, SESSION_END), None);
    }
}
