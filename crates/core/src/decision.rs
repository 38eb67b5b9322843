//! The decision's vocabulary shared by the check, the list filter and the access log:
//! which list an answer carries and the reason codes that name one.

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

#[cfg(test)]
mod tests {
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
}
