//! Write coalescing for the gRPC listener: one `write` system call per flush instead of one
//! per HTTP/2 frame run.
//!
//! The h2 crate writes a DATA frame larger than 256 bytes from the caller's buffer and must
//! flush it before it encodes the next frame, so a check answer (headers, a DATA frame
//! carrying the ~1 KB ID token, then trailers) left in two writes and Envoy woke twice to
//! read one answer. Here writes are held, and a flush first yields once to the runtime (the
//! task is woken at once, so nothing waits on a timer): h2 then encodes the trailers, and
//! any other answer that became ready meanwhile, before the bytes leave in one write.
//!
//! Owns no protocol logic; everything else is delegated to the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};

/// Bytes held before a write goes through without waiting for a flush.
const CAPACITY: usize = 32 * 1024;

/// A connection (TCP or Unix socket) whose writes are held until the second flush in a row
/// (or until 32 KiB are held).
#[derive(Debug)]
pub struct Coalesced<S> {
    inner: BufWriter<S>,
    /// A flush already yielded once for the bytes now held.
    yielded: bool,
}

impl<S: AsyncWrite> Coalesced<S> {
    pub fn new(stream: S) -> Self {
        Coalesced { inner: BufWriter::with_capacity(CAPACITY, stream), yielded: false }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.inner.buffer().is_empty() && !self.yielded {
            // Let the runtime run whatever became ready (the stream task about to queue its
            // trailers, other answers), then flush all of it: woken now, polled again soon.
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let done = Pin::new(&mut self.inner).poll_flush(cx);
        if done.is_ready() {
            self.yielded = false;
        }
        done
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

    /// Writes before a flush reach the peer together, and only after the flush.
    #[tokio::test]
    async fn writes_are_held_until_the_flush() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.expect("connect") });
        let (server, _) = listener.accept().await.expect("accept");
        let mut peer = client.await.expect("join");
        let mut out = Coalesced::new(server);

        out.write_all(b"headers|").await.expect("write");
        let mut probe = [0u8; 64];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), peer.read(&mut probe)).await;
        assert!(early.is_err(), "nothing may leave before the flush");

        out.write_all(b"data|").await.expect("write");
        // The first flush yields once (and wakes its task at once); the second writes.
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "a yielding flush wakes its task");
        out.write_all(b"trailers").await.expect("write");
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        let mut got = vec![0u8; 21];
        peer.read_exact(&mut got).await.expect("read");
        assert_eq!(got, b"headers|data|trailers");

        // With nothing held a flush does not yield; `flush().await` completes either way.
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        out.write_all(b"next").await.expect("write");
        out.flush().await.expect("flush");
        let mut next = [0u8; 4];
        peer.read_exact(&mut next).await.expect("read");
        assert_eq!(&next, b"next");
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
