//! How a list response's body must be read, from its `content-type` and `content-encoding`
//! response headers — or why the list filter cannot read it as its clients would.
//!
//! The filter reads UTF-8 only, uncompressed only. Clients decode by what the headers say:
//! the Python MCP SDK (httpx) decodes an event stream by the declared `charset` (RFC 2231
//! `charset*` and unknown parameters included, through Python's `email` parser), and a
//! compressed body by every `content-encoding` line; the TypeScript SDK and browsers always
//! read UTF-8 (older TypeScript SDKs picked the framing by a substring of the whole
//! `content-type`). So only what
//! every one of them reads the same way is accepted: no `content-encoding` other than
//! `identity` on any line; at most one `content-type` line, a well-formed
//! `type/subtype` (RFC 9110) whose only parameter, if any, is one `charset` naming UTF-8
//! exactly (`utf-8`, any case, quoted or not). Anything else — `utf8`, `utf-16`, `utf-7`,
//! `iso-8859-1`, two charsets, any other parameter, a comma, a second line — is refused. Pure:
//! no I/O, no logging.

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`: re-framed event by event.
    EventStream,
    /// Anything else that claims success: read as one JSON payload (a client may parse it).
    Json,
}

/// Why a response's body cannot be read as its clients read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("compressed body (content-encoding '{0}')")]
    Compressed(String),
    #[error("content-type sent as {0} lines")]
    RepeatedContentType(usize),
    #[error("malformed content-type '{0}'")]
    MalformedContentType(String),
    #[error("content-type parameter '{0}' (only charset=utf-8 is read)")]
    Parameter(String),
}

impl Unreadable {
    /// A stable code for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Unreadable::Compressed(_) => "compressed",
            Unreadable::RepeatedContentType(_) | Unreadable::MalformedContentType(_) => "content_type",
            Unreadable::Parameter(_) => "content_type_parameter",
        }
    }
}

/// The framing of a body with these response headers (each line as Envoy sent it, lower-case
/// names), or why it cannot be read.
pub fn framing<'h>(headers: impl Iterator<Item = (&'h str, &'h str)> + Clone) -> Result<Framing, Unreadable> {
    for (_, value) in headers.clone().filter(|(k, _)| k.eq_ignore_ascii_case("content-encoding")) {
        if value.split(',').any(|coding| !coding.trim().eq_ignore_ascii_case("identity")) {
            return Err(Unreadable::Compressed(value.to_owned()));
        }
    }
    let mut types = headers.filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v);
    let Some(content_type) = types.next() else {
        return Ok(Framing::Json);
    };
    let more = types.count();
    if more > 0 {
        return Err(Unreadable::RepeatedContentType(more + 1));
    }
    let (media, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    let malformed = || Unreadable::MalformedContentType(content_type.to_owned());
    let (kind, subtype) = media.trim_matches(is_ows).split_once('/').ok_or_else(malformed)?;
    if !is_token(kind) || !is_token(subtype) {
        return Err(malformed());
    }
    check_parameters(params).map_err(|e| e.unwrap_or_else(malformed))?;
    let event_stream = kind.eq_ignore_ascii_case("text") && subtype.eq_ignore_ascii_case("event-stream");
    Ok(if event_stream { Framing::EventStream } else { Framing::Json })
}

/// `*( OWS ";" OWS [ parameter ] )` after the first `;`: nothing but one `charset=utf-8`.
/// `Err(None)` when the syntax is broken.
fn check_parameters(mut rest: &str) -> Result<(), Option<Unreadable>> {
    let mut charset_seen = false;
    loop {
        rest = rest.trim_start_matches(is_ows);
        if rest.is_empty() {
            return Ok(());
        }
        if let Some(after) = rest.strip_prefix(';') {
            rest = after;
            continue;
        }
        let (name, after) = rest.split_once('=').ok_or(None)?;
        let (value, after) = parameter_value(after).ok_or(None)?;
        if !is_token(name) {
            return Err(None);
        }
        rest = after.trim_start_matches(is_ows);
        if !(rest.is_empty() || rest.starts_with(';')) {
            return Err(None);
        }
        let utf8 = name.eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8");
        if !utf8 || charset_seen {
            return Err(Some(Unreadable::Parameter(format!("{name}={value}"))));
        }
        charset_seen = true;
    }
}

/// A parameter's value, a token or a quoted string (unescaped), and what follows it.
fn parameter_value(s: &str) -> Option<(String, &str)> {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find(|c: char| !is_tchar(c)).unwrap_or(s.len());
        return (end > 0).then(|| (s[..end].to_owned(), &s[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &quoted[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c if c == '\t' || (' '..='~').contains(&c) => value.push(c),
            _ => return None,
        }
    }
    None
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_tchar)
}

/// RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(headers: &[(&str, &str)]) -> Result<Framing, Unreadable> {
        framing(headers.iter().copied())
    }

    fn content_type(value: &str) -> Result<Framing, Unreadable> {
        of(&[("content-type", value)])
    }

    #[test]
    fn utf8_event_streams_and_json_are_read() {
        use Framing::{EventStream, Json};
        let table: &[(&str, Framing)] = &[
            ("text/event-stream", EventStream),
            ("Text/Event-Stream", EventStream),
            (" text/event-stream ", EventStream),
            ("text/event-stream; charset=utf-8", EventStream),
            ("text/event-stream;charset=UTF-8", EventStream),
            ("text/event-stream ;\tcharset=\"utf-8\"", EventStream),
            ("text/event-stream; charset=\"u\\tf-8\"", EventStream),
            ("text/event-stream;", EventStream),
            ("text/event-stream; ; charset=utf-8 ;", EventStream),
            ("application/json", Json),
            ("application/json; charset=utf-8", Json),
            ("Application/JSON;CHARSET=Utf-8", Json),
            ("text/html", Json),
            ("text/event-streams", Json),
        ];
        for (value, want) in table {
            assert_eq!(content_type(value), Ok(*want), "{value:?}");
        }
        assert_eq!(of(&[]), Ok(Json), "no content-type: read as JSON");
    }

    #[test]
    fn any_other_charset_or_parameter_is_refused() {
        for value in [
            "text/event-stream; charset=utf-16-le",
            "text/event-stream; charset=utf-16le",
            "text/event-stream; charset=\"UTF-16BE\"",
            "text/event-stream; charset=utf-16",
            "text/event-stream; charset=utf-7",
            "text/event-stream; charset=iso-8859-1",
            "text/event-stream; charset=latin-1",
            "text/event-stream; charset=utf8",
            "text/event-stream; charset=utf-8-sig",
            "text/event-stream; charset=\"utf-8 \"",
            "text/event-stream; charset=utf-8; charset=utf-16",
            "text/event-stream; charset=utf-8; charset=utf-8",
            "text/event-stream; charset*=utf-8''utf-16",
            "text/event-stream; x=1",
            "application/json; charset=utf-16",
            "application/json; charset=utf-7",
            "application/json; x=\"text/event-stream\"",
        ] {
            assert!(matches!(content_type(value), Err(Unreadable::Parameter(_))), "{value:?}");
        }
    }

    #[test]
    fn a_malformed_content_type_is_refused() {
        for value in [
            "",
            "text",
            "text/",
            "/json",
            "text/event-stream, application/json",
            "application/json, text/event-stream; charset=utf-16",
            "text/event-stream; charset = utf-8",
            "text/event-stream; charset",
            "text/event-stream; charset=",
            "text/event-stream; charset=\"utf-8",
            "text/event-stream; charset=utf-8 x",
            "text/event stream",
            "text/event-stream\u{0}",
            "text/ event-stream",
            "application/json; x=text/event-stream",
        ] {
            assert!(matches!(content_type(value), Err(Unreadable::MalformedContentType(_))), "{value:?}");
        }
    }

    #[test]
    fn a_content_type_sent_twice_is_refused() {
        let two = [("content-type", "text/event-stream"), ("Content-Type", "text/event-stream")];
        assert_eq!(of(&two), Err(Unreadable::RepeatedContentType(2)));
    }

    #[test]
    fn any_coding_but_identity_on_any_line_is_refused() {
        let sse = ("content-type", "text/event-stream");
        assert_eq!(of(&[sse, ("content-encoding", "identity")]), Ok(Framing::EventStream));
        assert_eq!(of(&[sse, ("content-encoding", " IDENTITY , identity")]), Ok(Framing::EventStream));
        for lines in [
            &[("content-encoding", "gzip")][..],
            &[("content-encoding", "identity, gzip")],
            &[("content-encoding", "identity"), ("content-encoding", "gzip")],
            &[("Content-Encoding", "br")],
            &[("content-encoding", "")],
            &[("content-encoding", "identity,")],
        ] {
            let headers: Vec<_> = [sse].into_iter().chain(lines.iter().copied()).collect();
            assert!(matches!(of(&headers), Err(Unreadable::Compressed(_))), "{lines:?}");
        }
    }
}
