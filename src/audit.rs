//! Audit events: one JSON line per decision, written off the request path by a dedicated
//! thread (stdout or a file).
//!
//! Owns the event shape and its writer. Never receives a credential or a token; tool
//! arguments are not part of the event.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::AuditOutput;

/// One decision, as written to the audit log.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub time: String,
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
    /// Present only for apps that enabled argument auditing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a serde_json::Value>,
    /// The signing key a `key.rotated` event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<&'a str>,
    pub latency_us: u64,
}

/// The audit sink. Cloning shares the writer thread.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: Option<SyncSender<Vec<u8>>>,
    dropped: Arc<AtomicU64>,
}

/// Events buffered before new ones are dropped (and counted) rather than blocking a check.
const QUEUE: usize = 16 * 1024;

impl Audit {
    /// Starts the writer thread for `output`.
    pub fn start(output: &AuditOutput) -> std::io::Result<Audit> {
        let inner: Box<dyn std::io::Write + Send> = match output {
            AuditOutput::Stdout => Box::new(std::io::stdout()),
            AuditOutput::File(p) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
        };
        // One write per burst of events, not one per event.
        let mut sink = std::io::BufWriter::with_capacity(64 * 1024, inner);
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new().name("audit".into()).spawn(move || {
            while let Ok(line) = rx.recv() {
                let mut ok = sink.write_all(&line).is_ok();
                // Drain what is queued, then flush once.
                while let Ok(more) = rx.try_recv() {
                    ok &= sink.write_all(&more).is_ok();
                }
                if !(ok && sink.flush().is_ok()) {
                    eprintln!("mcp-warden: audit write failed");
                }
            }
        })?;
        Ok(Audit { tx: Some(tx), dropped: Arc::default() })
    }

    /// An audit sink that discards events (tests and benchmarks).
    pub fn disabled() -> Audit {
        Audit { tx: None, dropped: Arc::default() }
    }

    pub fn emit(&self, event: &Event<'_>) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_vec(event) else { return };
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// RFC 3339 UTC time with milliseconds, without a date library.
pub fn rfc3339(t: SystemTime) -> String {
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_764_390_896_123)), "2025-11-29T04:34:56.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }
}
