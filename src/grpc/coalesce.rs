//! Write coalescing for the gRPC listener: one `write` system call per batch of answers
//! instead of one per HTTP/2 frame run.
//!
//! The h2 crate writes a DATA frame larger than 256 bytes from the caller's buffer and
//! flushes before it encodes the next frame, so every check answer (headers, a DATA frame
//! carrying the ~1 KB ID token, trailers) cost at least one `write` of its own, and Envoy
//! read a batch of answers in as many pieces. Here a flush that follows fresh writes only
//! holds them and wakes the task (so nothing waits on a timer); h2 goes on encoding whatever
//! else is ready (the rest of the batch, answers other tasks queue meanwhile), and the bytes
//! leave in one write at the first flush with nothing new before it.
//!
//! **What it relies on.** This bends `poll_flush`'s contract (Ready before the bytes are
//! written), which is safe for h2 alone: every poll of an open h2 server connection ends with
//! a flush of its codec, even a poll that has nothing new to write (h2 0.4:
//! `Connection::poll` → `Streams::poll_complete` → `FramedWrite::flush`, which always flushes
//! its I/O), and a holding flush wakes the task, so held bytes wait until a poll that adds
//! nothing new (one scheduler round, unless other tasks keep queueing frames) or until 32 KiB
//! are held. A connection that closes writes them first (h2 shuts the codec down; a read that
//! finds the peer gone or failing tries too). During the handshake the server's SETTINGS are
//! held until the connection is first polled, right after the client's preface, which a
//! client sends without waiting.
//!
//! If an h2 upgrade stopped flushing at the end of a poll, held answers would wait for the
//! next frame from Envoy: a silent stall. Two tests guard it, run by `cargo test`:
//! `h2_flushes_at_the_end_of_every_connection_poll` records every write and flush h2 makes,
//! poll by poll, and fails if any poll (quiet ones included) ends without a flush (or a
//! write the socket could not take, whose readiness wakes the task); and
//! `every_answer_of_many_concurrent_streams_arrives_*` answers 1,000 concurrent streams on
//! one connection through the coalescer, then three one at a time (on one runtime thread and
//! on two), and fails if any answer stalls (as they do if the holding flush does not wake).
//!
//! What it saves (socket writes, the peer's reads and CPU per answer) is measured by
//! `examples/coalesce.rs`; BENCHMARKS.md, "Coalescer", has the numbers.
//!
//! Owns no protocol logic; everything else is delegated to the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};

/// Bytes held before a write goes through without waiting for a flush.
const CAPACITY: usize = 32 * 1024;

/// A connection (TCP or Unix socket) whose writes are held until a flush with no fresh
/// writes before it (or until 32 KiB are held). For h2's codec only (see the module docs).
#[derive(Debug)]
pub struct Coalesced<S> {
    inner: BufWriter<S>,
    /// Bytes were written since the last flush.
    fresh: bool,
}

impl<S: AsyncWrite> Coalesced<S> {
    pub fn new(stream: S) -> Self {
        Coalesced { inner: BufWriter::with_capacity(CAPACITY, stream), fresh: false }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        let ended = match &read {
            Poll::Ready(Ok(())) => room && buf.filled().len() == before,
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        };
        if ended && !self.inner.buffer().is_empty() {
            // The peer closed or the read failed: h2 gives up on the connection without
            // another flush, so what is held goes now if the socket takes it.
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.fresh = true;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.fresh = true;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.fresh) && !self.inner.buffer().is_empty() {
            // More may follow in this poll (the next frame, the next answer): hold the bytes
            // and come back once the runtime has run whatever else is ready.
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn pair() -> (Coalesced<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.expect("connect") });
        let (server, _) = listener.accept().await.expect("accept");
        (Coalesced::new(server), client.await.expect("join"))
    }

    /// Nothing has reached the peer (loopback delivers within the `write` call, so an empty
    /// socket now means nothing was written).
    fn nothing_arrived(peer: &TcpStream) -> bool {
        matches!(peer.try_read(&mut [0u8; 64]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// A flush after fresh writes holds them (and wakes its task); the next flush with
    /// nothing new before it writes everything held in one go.
    #[tokio::test]
    async fn writes_leave_on_the_first_flush_with_nothing_new_before_it() {
        let (mut out, mut peer) = pair().await;
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);

        out.write_all(b"headers|data|").await.expect("write");
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "a holding flush wakes its task");
        assert!(nothing_arrived(&peer), "held after a flush that followed fresh writes");
        out.write_all(b"trailers").await.expect("write");
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert!(nothing_arrived(&peer), "still held: the second flush also followed a write");
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2, "a writing flush does not wake");
        let mut got = vec![0u8; 21];
        peer.read_exact(&mut got).await.expect("read");
        assert_eq!(got, b"headers|data|trailers");

        // With nothing held a flush is a no-op.
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    }

    /// Held bytes are written when a read finds that the peer has closed its side: h2 then
    /// drops the connection without flushing again.
    #[tokio::test]
    async fn held_bytes_go_out_when_the_peer_closes() {
        let (mut out, mut peer) = pair().await;
        let waker = Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
        out.write_all(b"last answer").await.expect("write");
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        assert!(nothing_arrived(&peer));
        peer.shutdown().await.expect("FIN");
        assert_eq!(out.read(&mut [0u8; 16]).await.expect("read"), 0, "end of stream");
        let mut got = [0u8; 11];
        let arrived = tokio::time::timeout(std::time::Duration::from_secs(5), peer.read_exact(&mut got)).await;
        arrived.expect("the held bytes arrive").expect("read");
        assert_eq!(&got, b"last answer");
    }

    /// What an h2 connection did to its I/O, in order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        /// A write that took bytes.
        Write,
        Flush,
        /// A write or flush the I/O could not take (its readiness wakes the task).
        Blocked,
        /// A poll of the h2 connection returned with the connection still open.
        PollEnd,
    }

    type Log = Arc<std::sync::Mutex<Vec<Op>>>;

    /// An I/O that logs the writes and flushes made to it; with `wake_after_writes`, a flush
    /// that follows writes also wakes its task, as the coalescer's holding flush does.
    struct Recording<S> {
        inner: S,
        log: Log,
        wake_after_writes: bool,
        wrote: bool,
    }

    impl<S> Recording<S> {
        fn new(inner: S, wake_after_writes: bool) -> (Self, Log) {
            let log = Log::default();
            (Recording { inner, log: log.clone(), wake_after_writes, wrote: false }, log)
        }

        fn wrote(&mut self, r: &Poll<io::Result<usize>>) {
            match r {
                Poll::Ready(Ok(n)) if *n > 0 => {
                    self.log.lock().expect("log").push(Op::Write);
                    self.wrote = true;
                }
                Poll::Pending => self.log.lock().expect("log").push(Op::Blocked),
                Poll::Ready(_) => {}
            }
        }
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write(cx, buf);
            self.wrote(&r);
            r
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            self.wrote(&r);
            r
        }

        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            if std::mem::take(&mut self.wrote) && self.wake_after_writes {
                cx.waker().wake_by_ref();
            }
            let r = Pin::new(&mut self.inner).poll_flush(cx);
            let op = if r.is_pending() { Op::Blocked } else { Op::Flush };
            self.log.lock().expect("log").push(op);
            r
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// The size of a check answer's DATA frame (the ID token and the decision metadata).
    const ANSWER: usize = 1200;

    /// A check-shaped answer: headers, one DATA frame, trailers.
    fn answer(mut respond: h2::server::SendResponse<Bytes>) {
        let head = http::Response::builder().header("content-type", "application/grpc").body(()).expect("head");
        let mut body = respond.send_response(head, false).expect("headers");
        body.send_data(Bytes::from(vec![b'x'; ANSWER]), false).expect("data");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        body.send_trailers(trailers).expect("trailers");
    }

    /// Serves h2 with the listener's settings on `io` until the client goes: each stream
    /// answered in the connection's task (as an inline `Check` is) or, every third one, from a
    /// task of its own (as the bridge and a spawned check answer); the end of every poll of
    /// the open connection logged to `polls` when given (not the last, which finds it closed).
    async fn serve_h2<S>(io: S, polls: Option<Log>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut conn = super::super::settings().handshake::<_, Bytes>(io).await.expect("server handshake");
        let mut n = 0u32;
        loop {
            let next = std::future::poll_fn(|cx| {
                let r = conn.poll_accept(cx);
                if let (Some(log), Poll::Pending | Poll::Ready(Some(Ok(_)))) = (&polls, &r) {
                    log.lock().expect("log").push(Op::PollEnd);
                }
                r
            })
            .await;
            let Some(Ok((_request, respond))) = next else { return };
            n += 1;
            if n.is_multiple_of(3) {
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    answer(respond);
                });
            } else {
                answer(respond);
            }
        }
    }

    /// Sends `streams` concurrent check-shaped requests on one connection, then three one at
    /// a time (no other stream's frames to wake the connection then), and reads every answer
    /// whole; panics if any answer has not arrived after 20 s (a stall: bytes held with no
    /// flush to come).
    async fn many_streams<S>(io: S, streams: usize)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (client, conn) = h2::client::handshake(io).await.expect("client handshake");
        let driver = tokio::spawn(conn);
        let all = async {
            let mut answers = tokio::task::JoinSet::new();
            for _ in 0..streams {
                answers.spawn(call(client.clone()));
            }
            while let Some(done) = answers.join_next().await {
                done.expect("every answer arrives whole");
            }
            for _ in 0..3 {
                call(client.clone()).await;
            }
        };
        // A stall detector, not a timing assertion: every answer arrives in milliseconds.
        tokio::time::timeout(std::time::Duration::from_secs(20), all).await.expect("no answer stalls");
        drop(client);
        driver.abort();
    }

    /// One check-shaped request and its whole answer.
    async fn call(client: h2::client::SendRequest<Bytes>) {
        let mut client = client.ready().await.expect("stream capacity");
        let request =
            http::Request::post(format!("http://warden{}", super::super::CHECK_PATH)).body(()).expect("request");
        let (response, mut body) = client.send_request(request, false).expect("request sent");
        body.send_data(Bytes::from_static(b"\0\0\0\0\0"), true).expect("message");
        let mut response = response.await.expect("answer headers").into_body();
        let mut got = 0;
        while let Some(chunk) = response.data().await {
            let chunk = chunk.expect("answer data");
            got += chunk.len();
            let _ = response.flow_control().release_capacity(chunk.len());
        }
        let trailers = response.trailers().await.expect("trailers").expect("trailers sent");
        assert_eq!((got, &trailers["grpc-status"]), (ANSWER, &http::HeaderValue::from_static("0")));
    }

    /// Serves `streams` concurrent answers on one loopback TCP connection, through the
    /// coalescer or not, and counts the socket writes.
    async fn socket_writes(coalesced: bool, streams: usize) -> usize {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.set_nodelay(true).expect("TCP_NODELAY");
            many_streams(tcp, streams).await;
        });
        let (server, _) = listener.accept().await.expect("accept");
        server.set_nodelay(true).expect("TCP_NODELAY"); // as the listener sets it
        let (io, log) = Recording::new(server, false);
        let serving = match coalesced {
            true => tokio::spawn(serve_h2(Coalesced::new(io), None)),
            false => tokio::spawn(serve_h2(io, None)),
        };
        client.await.expect("every answer arrived");
        serving.abort();
        log.lock().expect("log").iter().filter(|op| **op == Op::Write).count()
    }

    /// 1,000 concurrent streams on one connection, answered in the connection's task and from
    /// other tasks, all arrive whole through the coalescer on one runtime thread, in fewer
    /// than half the socket writes h2 makes without it (it does coalesce).
    #[tokio::test]
    async fn every_answer_of_many_concurrent_streams_arrives_on_one_thread() {
        let with = socket_writes(true, 1000).await;
        let without = socket_writes(false, 1000).await;
        assert!(without >= 1000, "h2 alone writes each answer's DATA frame on its own: {without} writes");
        assert!(with * 2 < without, "socket writes for 1,000 answers: {with} coalesced, {without} not");
    }

    /// The same on two runtime threads: answers queued by tasks on the other thread while the
    /// connection's task is polling also arrive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_answer_of_many_concurrent_streams_arrives_on_several_threads() {
        assert!(socket_writes(true, 1000).await > 0);
    }

    /// What the coalescer relies on in h2 (the module docs): every poll of an open server
    /// connection ends with a flush of its I/O, also a poll with nothing new to write (here
    /// each flush after writes wakes the task, as a holding flush does, so such quiet polls
    /// follow every writing one), unless the I/O could not take a write or flush (then its
    /// readiness wakes the task). If an h2 upgrade stops doing this, the test fails before
    /// answers can stall. (The poll that finds the peer gone may end without a flush: the
    /// coalescer's read writes what it holds then.)
    #[tokio::test]
    async fn h2_flushes_at_the_end_of_every_connection_poll() {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let (io, log) = Recording::new(server_io, true);
        let serving = tokio::spawn(serve_h2(io, Some(log.clone())));
        many_streams(client_io, 200).await;
        serving.abort();
        let log = log.lock().expect("log").clone();
        let mut polls: Vec<&[Op]> = log.split(|op| *op == Op::PollEnd).collect();
        polls.pop(); // the poll that found the connection closed, if it ran
        assert!(polls.len() > 10, "the connection was polled many times: {}", polls.len());
        for (i, poll) in polls.iter().enumerate() {
            let end = poll.last();
            assert!(matches!(end, Some(Op::Flush | Op::Blocked)), "poll {i} did not end with a flush: {poll:?}");
        }
        let writing = polls.iter().filter(|p| p.contains(&Op::Write)).count();
        let quiet = polls.iter().filter(|p| !p.contains(&Op::Write) && p.last() == Some(&Op::Flush)).count();
        assert!(writing > 0 && quiet > 0, "polls that wrote ({writing}) and quiet polls ({quiet}) both flushed");
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
