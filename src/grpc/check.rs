//! The ext_authz `Check` call on a bare HTTP/2 stream: read exactly one uncompressed gRPC
//! message (zero-copy when it arrives in one DATA frame, as a check of up to 16 KiB does),
//! hand it to
//! [`Warden::check_bytes`], and answer with headers, one DATA frame and `grpc-status: 0`.
//!
//! A message that cannot be read (compressed, cut short, followed by another, too large)
//! is answered with an audited denial from [`Warden::refuse_unread`], never with an allow;
//! a check that panics (a bug), with one from [`Warden::refuse_failed`]; a caller that is
//! not speaking gRPC at all gets a plain HTTP error.
//!
//! A decided check is audited after its answer is handed to the stream, as not delivered
//! when Envoy had reset the stream by then (or the connection was gone), or when the
//! decision came after the deadline Envoy stated in `grpc-timeout` (Envoy's own timer, started
//! before this one, had fired: it answered the client itself and resets the stream). A reset
//! that arrives after the answer was queued is not seen: the audit is exact about what
//! mcp-warden knew when it answered, and the deadline catches the checks that were late.
//!
//! A message over [`OFF_THREAD_BYTES`] is checked on the blocking pool, a bounded number at
//! a time, so that large bodies never hold up the small checks served on the runtime thread.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Instant;

use bytes::{Buf as _, Bytes, BytesMut};
use h2::RecvStream;
use h2::server::SendResponse;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use crate::authz::{Delivery, Unread};
use crate::state::Warden;
use warden_core::mcp::Limits;

/// The one path this module serves.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Room in a `CheckRequest` beyond the body: headers (Envoy allows 60 KiB by default, 96 KiB
/// at most) and the other attributes.
const CHECK_HEADROOM: usize = 256 << 10;

/// The largest `CheckRequest` read: the largest body a check accepts (`limits.max_body_bytes`;
/// a larger one would be denied anyway) plus 256 KiB for headers and attributes. What a check holds in memory
/// is bounded by this times the checks in flight (Envoy's `max_requests` for the cluster).
pub fn max_check_message(limits: &Limits) -> usize {
    limits.max_body_bytes.saturating_add(CHECK_HEADROOM)
}

/// gRPC message prefix: compressed flag and big-endian length.
const PREFIX: usize = 5;

const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// Why the message could not be taken from the stream.
enum ReadError {
    Unread(Unread),
    /// The stream failed (reset by Envoy, connection lost): nobody is waiting for an answer.
    Stream(h2::Error),
}

/// Serves one `Check` stream. When its whole message came with the headers (a check of up
/// to 16 KiB does) and `inline` (the runtime has one thread), it is answered at once, in the
/// connection's task, without spawning one of its own. Otherwise a task waits for the rest.
pub(super) fn serve(
    warden: &Arc<Warden>,
    inline: bool,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    if let Err(status) = grpc_request(&request) {
        send_http_error(&mut respond, status);
        return;
    }
    let started = Instant::now();
    let deadline = request.headers().get("grpc-timeout").and_then(grpc_timeout).and_then(|t| started.checked_add(t));
    let mut message = Message::new(request.into_body(), max_check_message(&warden.settings.limits));
    if inline {
        // Only what already arrived: the no-op waker is replaced by the task's own below if
        // the message is still incomplete.
        let mut now = Context::from_waker(Waker::noop());
        match message.poll_whole(&mut now) {
            Poll::Ready(read) => return answer(warden, started, deadline, read, respond),
            Poll::Pending => {}
        }
    }
    let warden = warden.clone();
    tokio::spawn(async move {
        let read = std::future::poll_fn(|cx| message.poll_whole(cx)).await;
        match read {
            Ok(large) if large.len() > OFF_THREAD_BYTES => {
                // Off the runtime's threads, a few at a time, in arrival order: the small
                // checks of other callers keep being answered while it runs.
                let Ok(permit) = large_checks().acquire().await else { return };
                tokio::task::spawn_blocking(move || {
                    answer(&warden, started, deadline, Ok(large), respond);
                    drop(permit);
                });
            }
            read => answer(&warden, started, deadline, read, respond),
        }
    });
}

/// A message larger than this is checked on the blocking pool, not on the runtime thread
/// that serves every connection's small checks. Reading a body is linear in its size (1.4 to
/// 10 µs per KiB by shape: BENCHMARKS.md, *Worst-case requests*), so a check this size takes
/// well under a millisecond and one at the 1 MiB body limit up to about 10 ms; without this,
/// a stream of those from one caller would queue every other caller's checks behind them on
/// a one-thread runtime.
pub(super) const OFF_THREAD_BYTES: usize = 64 << 10;

/// How many large checks run at once: one per CPU, at most four. The rest wait (in arrival
/// order, holding their message) without occupying a thread.
fn large_checks() -> &'static tokio::sync::Semaphore {
    static LARGE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    LARGE.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        tokio::sync::Semaphore::new(cpus.clamp(1, 4))
    })
}

fn answer(
    warden: &Warden,
    started: Instant,
    deadline: Option<Instant>,
    read: Result<Bytes, ReadError>,
    mut respond: SendResponse<Bytes>,
) {
    let answer = match read {
        // A panic in the check is a bug; it is still a denial, audited, never a reset stream
        // that takes the connection's other checks with it.
        Ok(message) => {
            let hand = |answer: Vec<u8>| deliver(&mut respond, deadline, &answer);
            match std::panic::catch_unwind(AssertUnwindSafe(|| warden.check_then(&message, hand))) {
                Ok(()) => return,
                Err(_) => {
                    tracing::error!("the check panicked (a bug); the request is refused");
                    warden.refuse_failed(started)
                }
            }
        }
        Err(ReadError::Unread(why)) => {
            tracing::warn!(?why, "refused a check message that cannot be read");
            warden.refuse_unread(started, why)
        }
        Err(ReadError::Stream(e)) => {
            // Nothing was decided, so there is nothing to audit; counted with the answers
            // Envoy never read.
            tracing::debug!(error = %e, "check stream ended before its message");
            warden.metrics.undelivered(Delivery::StreamReset.code().unwrap_or_default());
            return;
        }
    };
    if let Err(e) = send_answer(&mut respond, &answer) {
        tracing::debug!(error = %e, "check answer not sent");
    }
}

/// Hands a decided answer to the stream and says whether Envoy can still read it.
fn deliver(respond: &mut SendResponse<Bytes>, deadline: Option<Instant>, answer: &[u8]) -> Delivery {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        // Envoy has answered the client itself; its reset may not have arrived yet.
        send_answer(respond, answer).ok();
        return Delivery::DeadlineExceeded;
    }
    // A reset that came in before now (read by the connection's task, which runs the inline
    // checks between its reads, or concurrently on another worker).
    if respond.poll_reset(&mut Context::from_waker(Waker::noop())).is_ready() {
        return Delivery::StreamReset;
    }
    match send_answer(respond, answer) {
        Ok(()) => Delivery::Delivered,
        Err(e) => {
            tracing::debug!(error = %e, "check answer not sent");
            Delivery::StreamReset
        }
    }
}

/// gRPC's `grpc-timeout` header: up to eight digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`). Envoy sends its ext_authz `timeout` there; anything else reads as no deadline.
fn grpc_timeout(value: &HeaderValue) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (digits, unit) = value.as_bytes().split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Only gRPC over POST is served; anything else is answered the way the gRPC over HTTP/2
/// spec says (405 / 415), before its body is read.
fn grpc_request(request: &Request<RecvStream>) -> Result<(), StatusCode> {
    if request.method() != Method::POST {
        return Err(StatusCode::METHOD_NOT_ALLOWED);
    }
    let content_type = request.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
    match content_type.strip_prefix(b"application/grpc") {
        Some([] | [b';', ..]) => Ok(()),
        Some(codec) if codec.starts_with(b"+proto") && matches!(codec.get(6), None | Some(b';')) => Ok(()),
        _ => Err(StatusCode::UNSUPPORTED_MEDIA_TYPE),
    }
}

/// The stream's one message, read as it arrives; refused as soon as the bytes so far cannot
/// be one uncompressed message within the limit. Chunks are released to flow control as
/// they arrive.
struct Message {
    body: RecvStream,
    max: usize,
    /// The first chunk, as it came (zero-copy)…
    first: Bytes,
    /// …or everything so far, once a second chunk came.
    joined: Option<BytesMut>,
}

impl Message {
    fn new(body: RecvStream, max: usize) -> Self {
        Message { body, max, first: Bytes::new(), joined: None }
    }

    fn poll_whole(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes, ReadError>> {
        loop {
            let chunk = match ready!(self.body.poll_data(cx)) {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return Poll::Ready(Err(ReadError::Stream(e))),
                None => return Poll::Ready(self.finish()),
            };
            let _ = self.body.flow_control().release_capacity(chunk.len());
            if self.first.is_empty() {
                self.first = chunk;
            } else {
                let joined = self.joined.get_or_insert_with(|| BytesMut::from(&self.first[..]));
                joined.extend_from_slice(&chunk);
            }
            if let Err(e) = admit(self.joined.as_deref().unwrap_or(&self.first), self.max) {
                return Poll::Ready(Err(e));
            }
            if self.body.is_end_stream() {
                return Poll::Ready(self.finish());
            }
        }
    }

    /// The message once the stream has ended: exactly one whole message, prefix removed.
    fn finish(&mut self) -> Result<Bytes, ReadError> {
        let mut whole = self.joined.take().map_or_else(|| std::mem::take(&mut self.first), BytesMut::freeze);
        if whole.len() < PREFIX || whole.len() - PREFIX != declared_len(&whole) {
            // Empty or cut short: a unary call carries exactly one whole message.
            return Err(ReadError::Unread(Unread::Invalid));
        }
        whole.advance(PREFIX);
        Ok(whole)
    }
}

/// Whether the bytes received so far can still be the start of one acceptable message.
fn admit(received: &[u8], max: usize) -> Result<(), ReadError> {
    if received.len() < PREFIX {
        return Ok(());
    }
    let refuse = |why| Err(ReadError::Unread(why));
    if received[0] != 0 {
        return refuse(Unread::Invalid); // compressed: no encoding is negotiated
    }
    let declared = declared_len(received);
    if declared > max {
        return refuse(Unread::TooLarge);
    }
    if received.len() - PREFIX > declared {
        return refuse(Unread::Invalid); // a second message
    }
    Ok(())
}

fn declared_len(prefix: &[u8]) -> usize {
    u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize
}

fn send_answer(respond: &mut SendResponse<Bytes>, message: &[u8]) -> Result<(), h2::Error> {
    let mut head = Response::new(());
    head.headers_mut().insert(CONTENT_TYPE, GRPC);
    let mut stream = respond.send_response(head, false)?;
    let mut framed = Vec::with_capacity(PREFIX + message.len());
    framed.push(0);
    // An answer is a few KiB: its length always fits the prefix's 32 bits.
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    stream.send_data(framed.into(), false)?;
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    stream.send_trailers(trailers)
}

fn send_http_error(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let mut head = Response::new(());
    *head.status_mut() = status;
    if let Err(e) = respond.send_response(head, true) {
        tracing::debug!(error = %e, "HTTP error answer not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn verdict(bytes: &[u8]) -> Option<Unread> {
        match admit(bytes, MAX) {
            Ok(()) => None,
            Err(ReadError::Unread(why)) => Some(why),
            Err(ReadError::Stream(_)) => unreachable!("admit never sees the stream"),
        }
    }

    #[test]
    fn messages_are_admitted_only_while_they_can_still_be_one_acceptable_message() {
        assert_eq!(verdict(&[]), None);
        assert_eq!(verdict(&[1, 0, 0]), None, "too short to judge yet");
        assert_eq!(verdict(&[0, 0, 0, 1, 2]), None);
        assert_eq!(declared_len(&[0, 0, 0, 1, 2]), 258, "big-endian length");
        assert_eq!(verdict(&[1, 0, 0, 0, 1, 7]), Some(Unread::Invalid), "compressed");
        assert_eq!(verdict(&[0, 0, 0, 0, 1, 7, 0]), Some(Unread::Invalid), "a second message");
        let over = u32::try_from(MAX + 1).expect("fits").to_be_bytes();
        assert_eq!(verdict(&[0, over[0], over[1], over[2], over[3]]), Some(Unread::TooLarge));
        let max = u32::try_from(MAX).expect("fits").to_be_bytes();
        assert_eq!(verdict(&[0, max[0], max[1], max[2], max[3]]), None);
    }

    #[test]
    fn the_path_is_the_authorization_services_check() {
        assert_eq!(CHECK_PATH, format!("/{}/Check", crate::authz::SERVICE_NAME));
    }

    #[test]
    fn the_message_limit_follows_the_body_limit() {
        let limits = Limits { max_body_bytes: 1 << 20, ..Limits::default() };
        assert_eq!(max_check_message(&limits), (1 << 20) + CHECK_HEADROOM);
    }

    #[test]
    fn grpc_timeout_reads_every_unit_and_refuses_anything_else() {
        use std::time::Duration;
        let read = |s: &'static str| grpc_timeout(&HeaderValue::from_static(s));
        assert_eq!(read("250m"), Some(Duration::from_millis(250)), "Envoy's ext_authz timeout of 0.25s");
        assert_eq!(read("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(read("3M"), Some(Duration::from_secs(180)));
        assert_eq!(read("1S"), Some(Duration::from_secs(1)));
        assert_eq!(read("7u"), Some(Duration::from_micros(7)));
        assert_eq!(read("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "1x", "-1S", "1.5S", " 1S", "1 S"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
    }
}
