//! A `text/event-stream` re-framer for the list filter: bytes in, in whatever chunks Envoy
//! delivers them, bytes out, event by event.
//!
//! Owns SSE framing only (the WHATWG "event stream interpretation"): lines end in CRLF, LF or
//! CR; an empty line ends an event; `data:` lines of one event join with `\n`; a leading BOM
//! is skipped. It keeps the incomplete tail across chunks and hands each complete event's
//! data to a caller-supplied rewrite. An event the rewrite leaves alone is passed on byte for
//! byte; a rewritten one keeps every other line (`id:`, `event:`, `retry:`, comments, unknown
//! fields) in place and gets one `data:` line. It never parses JSON and never decides what
//! a user may see.

/// The UTF-8 byte order mark a stream may start with (the WHATWG parser skips it; httpx keeps
/// it in the first line's field name and so ignores that line).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a stream could not be re-framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event is larger than {limit} bytes")]
    EventTooLarge { limit: usize },
}

impl SseError {
    /// A stable code for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SseError::EventTooLarge { .. } => "event_too_large",
        }
    }
}

/// Re-frames one event stream. One per HTTP response.
#[derive(Debug)]
pub struct Reframer {
    /// Bytes received but not yet emitted: the start of an incomplete event.
    buf: Vec<u8>,
    /// Where in `buf` the unfinished line starts…
    line: usize,
    /// …and where the search for its end goes on: each byte is looked at once, however many
    /// chunks a long line comes in.
    searched: usize,
    /// Whether the stream's first bytes were checked for a BOM.
    started: bool,
    max_event_bytes: usize,
}

impl Reframer {
    /// A re-framer that refuses an event larger than `max_event_bytes`, complete or not, so
    /// that the answer does not depend on how the stream was cut into chunks.
    pub fn new(max_event_bytes: usize) -> Self {
        Reframer { buf: Vec::new(), line: 0, searched: 0, started: false, max_event_bytes }
    }

    /// Takes the next chunk and appends to `out` every event it completes. `rewrite` gets the
    /// data of each complete event that has any and returns its replacement, or `None` to
    /// keep the event as it was.
    pub fn push<F>(&mut self, chunk: &[u8], out: &mut Vec<u8>, rewrite: &mut F) -> Result<(), SseError>
    where
        F: FnMut(&str) -> Option<String>,
    {
        self.buf.extend_from_slice(chunk);
        if !self.started {
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return Ok(());
            }
            self.started = true;
            if self.buf.starts_with(BOM) {
                out.extend_from_slice(BOM);
                self.buf.drain(..BOM.len());
            }
        }
        self.drain_events(out, rewrite, false)?;
        if self.buf.len() > self.max_event_bytes {
            return Err(SseError::EventTooLarge { limit: self.max_event_bytes });
        }
        Ok(())
    }

    /// The stream ended: emits what is left. A trailing event with no closing blank line
    /// (which clients discard) goes through `rewrite` all the same, so nothing unfiltered
    /// slips out with it.
    pub fn finish<F>(&mut self, out: &mut Vec<u8>, rewrite: &mut F)
    where
        F: FnMut(&str) -> Option<String>,
    {
        self.started = true;
        // What is held is within the limit (`push` saw to it), so no event here is over it.
        let _ = self.drain_events(out, rewrite, true);
        if !self.buf.is_empty() {
            let tail = std::mem::take(&mut self.buf);
            emit_event(&tail, out, rewrite);
        }
        (self.line, self.searched) = (0, 0);
    }

    /// Bytes held back, waiting for the rest of their event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The raw bytes held back (used when giving up on re-framing).
    pub fn take_pending(&mut self) -> Vec<u8> {
        (self.line, self.searched) = (0, 0);
        std::mem::take(&mut self.buf)
    }

    /// Emits every complete event held; refuses one over the limit (what came before it is
    /// emitted, and it stays held, with what follows).
    fn drain_events<F>(&mut self, out: &mut Vec<u8>, rewrite: &mut F, at_end: bool) -> Result<(), SseError>
    where
        F: FnMut(&str) -> Option<String>,
    {
        let buf = &self.buf;
        let mut event_start = 0;
        let mut line_start = self.line;
        let mut from = self.searched;
        let result = loop {
            let Some(rel) = buf[from..].iter().position(|&b| b == b'\r' || b == b'\n') else {
                from = buf.len();
                break Ok(());
            };
            let end = from + rel;
            let term = if buf[end] == b'\n' {
                1
            } else if end + 1 < buf.len() {
                if buf[end + 1] == b'\n' { 2 } else { 1 }
            } else if at_end {
                1
            } else {
                // A CR at the end of what we have: it may be the first half of a CRLF.
                from = end;
                break Ok(());
            };
            let next = end + term;
            if end == line_start {
                if next - event_start > self.max_event_bytes {
                    break Err(SseError::EventTooLarge { limit: self.max_event_bytes });
                }
                emit_event(&buf[event_start..next], out, rewrite);
                event_start = next;
            }
            line_start = next;
            from = next;
        };
        self.buf.drain(..event_start);
        self.line = line_start - event_start;
        self.searched = from - event_start;
        result
    }
}

/// One line of an event and the terminator that followed it (empty for an unterminated
/// last line).
fn lines(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, term_len) = match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => (rest.len(), 0),
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => (i, 2),
            Some(i) => (i, 1),
        };
        let (l, after) = rest.split_at(line);
        let (t, after) = after.split_at(term_len);
        rest = after;
        Some((l, t))
    })
}

/// A line's field name and value (`:` starts a comment, which has no field).
fn field(line: &[u8]) -> (&[u8], &[u8]) {
    if line.first() == Some(&b':') {
        return (b"", line);
    }
    match line.iter().position(|&b| b == b':') {
        Some(i) => {
            let value = &line[i + 1..];
            (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, b""),
    }
}

/// Emits one complete event (its closing blank line included), rewritten or as it was.
fn emit_event<F>(raw: &[u8], out: &mut Vec<u8>, rewrite: &mut F)
where
    F: FnMut(&str) -> Option<String>,
{
    let mut data: Option<String> = None;
    let mut eol: &[u8] = b"\n";
    for (line, term) in lines(raw) {
        let (name, value) = field(line);
        if !line.is_empty() && name == b"data" {
            // Clients decode the stream as UTF-8 with replacement: see what they would see.
            let value = String::from_utf8_lossy(value);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&value);
                }
                None => {
                    if !term.is_empty() {
                        eol = term;
                    }
                    data = Some(value.into_owned());
                }
            }
        }
    }
    let Some(replacement) = data.as_deref().and_then(rewrite) else {
        out.extend_from_slice(raw);
        return;
    };
    let mut written = false;
    for (line, term) in lines(raw) {
        if !line.is_empty() && field(line).0 == b"data" {
            if !written {
                for piece in replacement.split('\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(piece.strip_suffix('\r').unwrap_or(piece).as_bytes());
                    out.extend_from_slice(eol);
                }
                written = true;
            } else if out.last() == Some(&b'\r') {
                // Dropping this line would put a lone CR before what follows; an LF there
                // (the closing blank line) would read as one CRLF, and the event would not end.
                // An empty comment keeps the line count.
                out.push(b':');
                out.extend_from_slice(term);
            }
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replaces the data `"list"` with `"LIST"`; every other event is left alone.
    fn upper_list(data: &str) -> Option<String> {
        (data == "list").then(|| "LIST".to_owned())
    }

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<String>) {
        let mut r = Reframer::new(1 << 20);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut rewrite = |d: &str| {
            seen.push(d.to_owned());
            upper_list(d)
        };
        for c in chunks {
            r.push(c, &mut out, &mut rewrite).expect("within limit");
        }
        r.finish(&mut out, &mut rewrite);
        (out, seen)
    }

    /// Every way of cutting `input` in two, and byte by byte, gives the same output as one chunk.
    fn same_for_every_split(input: &[u8]) -> Vec<u8> {
        let (whole, _) = run(&[input]);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(run(&[a, b]).0, whole, "split at {i} of {:?}", String::from_utf8_lossy(input));
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes).0, whole, "byte by byte");
        whole
    }

    #[test]
    fn events_are_reframed_the_same_however_the_stream_is_cut() {
        type Case<'a> = (&'a str, &'a [u8], &'a [u8]);
        let table: &[Case<'_>] = &[
            (
                "untouched event passes byte for byte",
                b"event: message\ndata: other\n\n",
                b"event: message\ndata: other\n\n",
            ),
            (
                "rewritten event keeps event and id lines",
                b"event: message\nid: 7\ndata: list\n\n",
                b"event: message\nid: 7\ndata: LIST\n\n",
            ),
            (
                "several events per chunk",
                b"data: a\n\ndata: list\n\ndata: b\n\n",
                b"data: a\n\ndata: LIST\n\ndata: b\n\n",
            ),
            (
                "CRLF line ends are kept",
                b"id: 1\r\ndata: list\r\n\r\ndata: x\r\n\r\n",
                b"id: 1\r\ndata: LIST\r\n\r\ndata: x\r\n\r\n",
            ),
            ("lone CR line ends are kept", b"id: 1\rdata: list\r\rdata: x\r\r", b"id: 1\rdata: LIST\r\rdata: x\r\r"),
            (
                "comments and retry are kept in place",
                b": keep-alive\nretry: 3000\ndata: list\n: tail\n\n",
                b": keep-alive\nretry: 3000\ndata: LIST\n: tail\n\n",
            ),
            (
                "multi-line data is joined, then written as one line",
                b"data: li\ndata: st\n\n",
                b"data: li\ndata: st\n\n",
            ),
            ("data with no space after the colon", b"data:list\n\n", b"data: LIST\n\n"),
            ("an event with no data is passed on", b"id: 9\nretry: 10\n\n", b"id: 9\nretry: 10\n\n"),
            ("blank lines between events are passed on", b"\n\ndata: list\n\n\n", b"\n\ndata: LIST\n\n\n"),
            (
                "a leading BOM is kept and skipped for parsing",
                b"\xEF\xBB\xBFdata: list\n\n",
                b"\xEF\xBB\xBFdata: LIST\n\n",
            ),
            ("an unterminated last event is still rewritten", b"data: x\n\ndata: list", b"data: x\n\ndata: LIST\n"),
            ("unknown fields are kept", b"foo: bar\ndata: list\n\n", b"foo: bar\ndata: LIST\n\n"),
        ];
        for (name, input, expected) in table {
            let got = same_for_every_split(input);
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected), "case: {name}");
        }
    }

    #[test]
    fn multi_line_data_reaches_the_rewrite_joined_with_newlines() {
        let (_, seen) = run(&[b"data: {\"a\":\ndata: 1}\n\n"]);
        assert_eq!(seen, ["{\"a\":\n1}"]);
    }

    #[test]
    fn a_rewritten_multi_line_event_gets_a_single_data_line_where_the_first_was() {
        let mut r = Reframer::new(1024);
        let mut out = Vec::new();
        let mut rewrite = |_: &str| Some("X".to_owned());
        r.push(b"id: 1\ndata: a\n: c\ndata: b\n\n", &mut out, &mut rewrite).expect("ok");
        assert_eq!(out, b"id: 1\ndata: X\n: c\n\n");
    }

    #[test]
    fn incomplete_events_are_held_back_until_their_blank_line() {
        let mut r = Reframer::new(1024);
        let mut out = Vec::new();
        r.push(b"data: list\n", &mut out, &mut upper_list).expect("ok");
        assert!(out.is_empty());
        assert_eq!(r.pending(), 11);
        r.push(b"\ndata: par", &mut out, &mut upper_list).expect("ok");
        assert_eq!(out, b"data: LIST\n\n");
        assert_eq!(r.pending(), 9);
    }

    #[test]
    fn a_cr_at_a_chunk_end_waits_for_a_possible_lf() {
        let mut r = Reframer::new(1024);
        let mut out = Vec::new();
        r.push(b"data: list\r\n\r", &mut out, &mut upper_list).expect("ok");
        assert!(out.is_empty(), "the event may still end in CRLF");
        r.push(b"\n", &mut out, &mut upper_list).expect("ok");
        assert_eq!(out, b"data: LIST\r\n\r\n");
    }

    #[test]
    fn an_event_larger_than_the_limit_is_an_error() {
        let mut r = Reframer::new(16);
        let mut out = Vec::new();
        assert_eq!(
            r.push(b"data: 0123456789abcdef", &mut out, &mut upper_list),
            Err(SseError::EventTooLarge { limit: 16 })
        );
        // A complete event counts too, so cutting the stream elsewhere gives the same answer;
        // the events before it are emitted.
        let mut r = Reframer::new(18);
        let mut out = Vec::new();
        assert_eq!(
            r.push(b"data: 0123456789\n\ndata: 0123456789a\n\n", &mut out, &mut upper_list),
            Err(SseError::EventTooLarge { limit: 18 })
        );
        assert_eq!(out, b"data: 0123456789\n\n");
        assert_eq!(r.take_pending(), b"data: 0123456789a\n\n");
    }

    #[test]
    fn a_long_line_in_many_chunks_is_searched_once() {
        let mut r = Reframer::new(1 << 20);
        let mut out = Vec::new();
        r.push(b"data: ", &mut out, &mut upper_list).expect("ok");
        for _ in 0..1000 {
            r.push(&[b'a'; 100], &mut out, &mut upper_list).expect("ok");
            assert_eq!(r.searched, r.buf.len(), "no byte is searched twice");
        }
        r.push(b"\r", &mut out, &mut upper_list).expect("ok");
        assert_eq!(r.searched, r.buf.len() - 1, "a CR at the end is looked at again");
        r.push(b"\n\n", &mut out, &mut upper_list).expect("ok");
        let mut expected = b"data: ".to_vec();
        expected.extend_from_slice(&[b'a'; 100_000]);
        expected.extend_from_slice(b"\r\n\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn invalid_utf8_is_seen_as_clients_decode_it() {
        let (_, seen) = run(&[b"data: a\xFFb\n\n"]);
        assert_eq!(seen, ["a\u{FFFD}b"]);
    }
}
