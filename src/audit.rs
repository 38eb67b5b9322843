//! Audit events: one JSON line per decision, written off the request path by a dedicated
//! thread (stdout or a file).
//!
//! Owns the event shape and its writer. Never receives a credential or a token; tool
//! arguments are not part of the event.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::AuditOutput;

/// One decision, as written to the audit log by [`Event::write_json`]. The derived
/// `Serialize` is the reference form: the tests check `write_json` against it byte for byte.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub time: Timestamp,
    pub event: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<&'a [Arc<str>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub http_method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsonrpc_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub decision: &'static str,
    pub reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    /// Why the answer never reached Envoy (`stream_reset`, `deadline_exceeded`); absent when
    /// it did. The event is then `request.not_delivered`, whatever was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undelivered: Option<&'static str>,
    /// Present only for apps that enabled argument auditing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a serde_json::Value>,
    /// The signing key a `key.rotated` event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<&'a str>,
    /// What a `pin.drift` event is about (issue 25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<&'a PinDrift<'a>>,
    pub latency_us: u64,
}

/// A listed entry that was not listed as pinned: digests and field names, and the definition
/// only when the app's pins ask for it.
#[derive(Debug, Serialize)]
pub struct PinDrift<'a> {
    pub kind: &'static str,
    pub action: &'static str,
    /// The pin's digest (`sha256:…`); absent for an unpinned entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// The listed definition's digest; absent when it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<String>,
    pub changed: &'a [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<&'a str>,
}

impl<'a> Event<'a> {
    /// An event about no request (a reload, a key switch): the time now, `event` and
    /// `reason`, nothing else. Other events set their fields over it.
    pub fn bare(event: &'static str, reason: &'a str) -> Self {
        Event {
            time: rfc3339(SystemTime::now()),
            event,
            request_id: "",
            user: None,
            roles: None,
            app: None,
            http_method: "",
            mcp_method: None,
            jsonrpc_id: None,
            tool: None,
            prompt: None,
            resource: None,
            session_id: None,
            protocol_version: None,
            decision: "",
            reason,
            role: None,
            rule: None,
            undelivered: None,
            arguments: None,
            kid: None,
            pin: None,
            latency_us: 0,
        }
    }

    /// The event as one JSON object, appended to `out`: keys are constants, and a string
    /// value that needs no escape (nearly all) is copied as it is.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut w = Object(out, false);
        w.str("time", self.time.as_str());
        w.str("event", self.event);
        w.str_unless_empty("request_id", self.request_id);
        w.opt_str("user", self.user);
        if let Some(roles) = self.roles {
            w.key("roles");
            w.0.push(b'[');
            for (i, role) in roles.iter().enumerate() {
                if i > 0 {
                    w.0.push(b',');
                }
                json_str(w.0, role);
            }
            w.0.push(b']');
        }
        w.opt_str("app", self.app);
        w.str_unless_empty("http_method", self.http_method);
        w.opt_str("mcp_method", self.mcp_method);
        if let Some(id) = self.jsonrpc_id {
            w.key("jsonrpc_id");
            w.0.extend_from_slice(id.get().as_bytes());
        }
        w.opt_str("tool", self.tool);
        w.opt_str("prompt", self.prompt);
        w.opt_str("resource", self.resource);
        w.opt_str("session_id", self.session_id);
        w.opt_str("protocol_version", self.protocol_version);
        w.str_unless_empty("decision", self.decision);
        w.str("reason", self.reason);
        w.opt_str("role", self.role);
        w.opt_str("rule", self.rule);
        w.opt_str("undelivered", self.undelivered);
        if let Some(arguments) = self.arguments {
            w.key("arguments");
            // A `Value` always serialises (its map keys are strings).
            let _ = serde_json::to_writer(&mut *w.0, arguments);
        }
        w.opt_str("kid", self.kid);
        if let Some(pin) = self.pin {
            w.key("pin");
            // Plain strings and arrays: serialisation cannot fail.
            let _ = serde_json::to_writer(&mut *w.0, pin);
        }
        w.key("latency_us");
        let _ = serde_json::to_writer(&mut *w.0, &self.latency_us);
        w.0.push(b'}');
    }
}

/// A JSON object being written: `{` before the first key, `,` before every later one.
struct Object<'o>(&'o mut Vec<u8>, bool);

impl Object<'_> {
    fn key(&mut self, key: &'static str) {
        self.0.push(if self.1 { b',' } else { b'{' });
        self.1 = true;
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        json_str(self.0, value);
    }

    fn str_unless_empty(&mut self, key: &'static str, value: &str) {
        if !value.is_empty() {
            self.str(key, value);
        }
    }

    fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }
}

/// `s` as a JSON string: copied between quotes when nothing in it needs an escape, else
/// escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // A fold rather than `all`: without an early exit the compiler vectorises it.
    if s.bytes().fold(true, |clean, b| clean & (b >= 0x20) & (b != b'"') & (b != b'\\')) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(out, s); // writing to a Vec cannot fail
    }
}

/// The audit sink. Cloning shares the writer thread.
///
/// A check serialises its event straight into a shared buffer (an uncontended lock, no
/// allocation); the first event into an empty buffer wakes the writer thread, which lets
/// events gather for 20 ms (less when the buffer grows large), swaps the buffer out and
/// writes it with one call. An idle sidecar's writer sleeps. Nothing blocks a check: past
/// `MAX_PENDING` bytes, events are dropped and counted.
#[derive(Debug, Clone)]
pub struct Audit {
    shared: Option<Arc<Shared>>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    closed: AtomicBool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How long an event may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Buffered bytes that wake the writer early.
const WAKE_AT: usize = 64 * 1024;
/// Buffered bytes past which events are dropped rather than memory grown.
const MAX_PENDING: usize = 16 << 20;

impl Audit {
    /// Starts the writer thread for `output`.
    pub fn start(output: &AuditOutput) -> std::io::Result<Audit> {
        let mut sink: Box<dyn std::io::Write + Send> = match output {
            AuditOutput::Stdout => Box::new(std::io::stdout()),
            AuditOutput::File(p) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
        };
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let handle = std::thread::Builder::new().name("audit".into()).spawn(move || {
            let mut batch = Vec::with_capacity(WAKE_AT);
            loop {
                let closed = {
                    let Ok(mut guard) = theirs.pending.lock() else { return };
                    // Idle: sleep until the first event (no periodic wake-ups).
                    while guard.is_empty() && !theirs.closed.load(Ordering::Acquire) {
                        let Ok(g) = theirs.wake.wait(guard) else { return };
                        guard = g;
                    }
                    // Then let events gather for a moment, unless there are many already.
                    if guard.len() < WAKE_AT && !theirs.closed.load(Ordering::Acquire) {
                        let Ok((g, _)) = theirs.wake.wait_timeout(guard, FLUSH_EVERY) else { return };
                        guard = g;
                    }
                    std::mem::swap(&mut *guard, &mut batch);
                    theirs.closed.load(Ordering::Acquire)
                };
                if !batch.is_empty() {
                    if sink.write_all(&batch).and_then(|()| sink.flush()).is_err() {
                        eprintln!("mcp-warden: audit write failed");
                    }
                    batch.clear();
                }
                if closed {
                    return;
                }
            }
        })?;
        if let Ok(mut w) = shared.writer.lock() {
            *w = Some(handle);
        }
        Ok(Audit { shared: Some(shared), dropped: Arc::default() })
    }

    /// An audit sink that discards events (tests and benchmarks).
    pub fn disabled() -> Audit {
        Audit { shared: None, dropped: Arc::default() }
    }

    pub fn emit(&self, event: &Event<'_>) {
        let Some(shared) = &self.shared else { return };
        let Ok(mut pending) = shared.pending.lock() else { return };
        if pending.len() > MAX_PENDING {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = pending.len();
        event.write_json(&mut pending);
        pending.push(b'\n');
        // The first event after a write wakes the idle writer; a full buffer wakes it early.
        if before == 0 || pending.len() >= WAKE_AT {
            shared.wake.notify_one();
        }
    }

    /// Writes what is buffered and stops the writer (at shutdown).
    pub fn close(&self) {
        let Some(shared) = &self.shared else { return };
        shared.closed.store(true, Ordering::Release);
        shared.wake.notify_one();
        if let Some(handle) = shared.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }

    /// Events dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// An RFC 3339 UTC time with milliseconds (`2026-11-29T04:34:56.123Z`), kept on the stack:
/// one per audit event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Timestamp([u8; 24]);

impl Timestamp {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default() // ASCII digits and separators
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// RFC 3339 UTC time with milliseconds, without a date library.
pub fn rfc3339(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = u64::try_from(year).unwrap_or(0);
    // By hand, not `format!`: this runs once per audit event. (RFC 3339 years have four
    // digits; a clock past 9999 is not representable.)
    let mut out = [0u8; 24];
    let mut at = 0;
    let mut put = |n: u64, width: u32, then: u8| {
        for place in (0..width).rev() {
            out[at] = b'0' + (n / 10u64.pow(place) % 10) as u8;
            at += 1;
        }
        out[at] = then;
        at += 1;
    };
    put(year, 4, b'-');
    put(month as u64, 2, b'-');
    put(day as u64, 2, b'T');
    put(rem / 3600, 2, b':');
    put(rem % 3600 / 60, 2, b':');
    put(rem % 60, 2, b'.');
    put(u64::from(d.subsec_millis()), 3, b'Z');
    Timestamp(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn events_reach_the_file_and_close_flushes_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::start(&AuditOutput::File(path.clone())).expect("start");
        for i in 0..3 {
            let reason = format!("r{i}");
            audit.emit(&Event {
                user: Some("alice"),
                http_method: "POST",
                decision: "allow",
                latency_us: 1,
                ..Event::bare("request.allowed", &reason)
            });
        }
        audit.close();
        let text = std::fs::read_to_string(&path).expect("read");
        let reasons: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["reason"]
                    .as_str()
                    .expect("reason")
                    .to_owned()
            })
            .collect();
        assert_eq!(reasons, ["r0", "r1", "r2"]);
    }

    /// Every field set and every one unset, with strings that need each kind of escape.
    #[test]
    fn the_written_line_is_what_serde_writes() {
        let roles: Vec<Arc<str>> = vec!["mcp-user".into(), "a\"b".into()];
        let id = RawValue::from_string("\"x\\\"y\"".to_owned()).expect("raw");
        let arguments = serde_json::json!({"q": "ü\n", "n": [1, 2.5, null]});
        let texts =
            ["plain", "", "quote \" here", "back\\slash", "line\nbreak\ttab\u{1}", "üñí \u{2028} 日本", "\u{7f}"];
        for text in texts {
            let full = Event {
                time: rfc3339(UNIX_EPOCH + Duration::from_millis(1_764_390_896_123)),
                event: "request.allowed",
                request_id: text,
                user: Some(text),
                roles: Some(&roles),
                app: Some(text),
                http_method: "POST",
                mcp_method: Some(text),
                jsonrpc_id: Some(&id),
                tool: Some(text),
                prompt: Some(text),
                resource: Some(text),
                session_id: Some(text),
                protocol_version: Some("2025-11-25"),
                decision: "allow",
                reason: text,
                role: Some(text),
                rule: Some(text),
                undelivered: Some("stream_reset"),
                arguments: Some(&arguments),
                kid: Some(text),
                pin: Some(&PinDrift {
                    kind: "tool",
                    action: "flag",
                    pinned: Some(text.to_owned()),
                    seen: None,
                    changed: &["description", "inputSchema"],
                    definition: Some(text),
                }),
                latency_us: u64::MAX,
            };
            let bare = Event { time: full.time, ..Event::bare(full.event, full.reason) };
            for event in [&full, &bare] {
                let mut ours = b"earlier line\n".to_vec();
                event.write_json(&mut ours);
                let theirs = serde_json::to_vec(event).expect("serde");
                assert_eq!(
                    String::from_utf8_lossy(&ours["earlier line\n".len()..]),
                    String::from_utf8_lossy(&theirs),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH).as_str(), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_764_390_896_123)).as_str(), "2025-11-29T04:34:56.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)).as_str(), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(253_402_300_799_999)).as_str(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_798_761_599_007)).as_str(), "2026-12-31T23:59:59.007Z");
    }
}
