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
//! This bends `poll_flush`'s contract (Ready before the bytes are written), which is safe
//! for h2 alone: every poll of an open h2 connection ends with a flush of its codec, and a
//! holding flush wakes the task, so held bytes wait until a poll that adds nothing new (one
//! scheduler round, unless other tasks keep queueing frames) or until 32 KiB are held. A
//! connection that closes writes them first (h2 shuts the codec down; a read that finds the
//! peer gone or failing tries too). During the handshake the server's SETTINGS are held
//! until the connection is first polled, right after the client's preface, which a client
//! sends without waiting.
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
pub(super) struct Coalesced<S> {
    inner: BufWriter<S>,
    /// Bytes were written since the last flush.
    fresh: bool,
}

impl<S: AsyncWrite> Coalesced<S> {
    pub(super) fn new(stream: S) -> Self {
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

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
