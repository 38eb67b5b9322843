//! What the gRPC listener's write coalescer (`mcp_warden::grpc::Coalesced`) saves, for
//! BENCHMARKS.md, "Coalescer": socket writes, the peer's reads and CPU per check answer, with
//! and without it, with N streams in flight on one connection.
//!
//! One loopback TCP connection (`TCP_NODELAY` on both ends, as the listener sets it). The
//! server runs h2 with the listener's settings (`grpc::settings`) on a current-thread runtime
//! of its own thread (mcp-warden's default) and answers each stream as `grpc::check` does on
//! one thread: in the connection's task when the request's message has arrived, from a task of
//! its own otherwise. An answer has the shape of a check's: headers, one DATA frame of 1,200
//! bytes (the ID token and the decision metadata), trailers; no decision is made, so the CPU
//! is the h2 and socket work the coalescer changes. The client (an h2 client on a thread and
//! current-thread runtime of its own, standing in for Envoy) keeps N streams in flight, each
//! sending a 1,500-byte message, until all answers have arrived. CPU is each thread's own
//! (`CLOCK_THREAD_CPUTIME_ID`) from after the handshake to the end of the connection.
//!
//! `cargo run --example coalesce [-- --answers 20000 --rounds 5 --streams 1,8,32,128]`
//! prints a Markdown table of medians over the rounds (the two modes alternate in each round).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use mcp_warden::grpc::{CHECK_PATH, Coalesced, settings};
use rustix::time::{ClockId, clock_gettime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The DATA frame of an answer: about what mcp-warden answers a cached-token `tools/call`.
const ANSWER: usize = 1200;

/// A `CheckRequest`'s size for a 300-byte `tools/call` (gRPC prefix included).
const MESSAGE: usize = 1500;

/// A socket that counts the `write` and `read` calls that moved bytes.
struct Counted<S> {
    inner: S,
    calls: Arc<Calls>,
}

#[derive(Debug, Default)]
struct Calls {
    reads: AtomicUsize,
    writes: AtomicUsize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.calls.reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Counted<S> {
    fn count(&self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.calls.writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// This thread's CPU time in µs.
fn thread_cpu_us() -> f64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

/// Reads a request's message to its end (only what has arrived, with a no-op waker).
fn poll_message(body: &mut RecvStream, cx: &mut Context<'_>) -> Poll<Result<(), h2::Error>> {
    loop {
        match ready!(body.poll_data(cx)) {
            Some(Ok(chunk)) => {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Some(Err(e)) => return Poll::Ready(Err(e)),
            None => return Poll::Ready(Ok(())),
        }
    }
}

fn answer(mut respond: SendResponse<Bytes>, data: Bytes) {
    let head = http::Response::builder().header("content-type", "application/grpc").body(()).expect("head");
    let Ok(mut body) = respond.send_response(head, false) else { return };
    if body.send_data(data, false).is_err() {
        return;
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let _ = body.send_trailers(trailers);
}

/// What one side of a run cost: the socket calls that moved bytes and its thread's CPU µs.
#[derive(Clone, Copy, Debug, Default)]
struct Side {
    reads: usize,
    writes: usize,
    cpu_us: f64,
}

impl Side {
    fn of(calls: &Calls, cpu_us: f64) -> Side {
        Side { reads: calls.reads.load(Ordering::Relaxed), writes: calls.writes.load(Ordering::Relaxed), cpu_us }
    }
}

/// Serves the one connection `listener` accepts until the client closes it.
async fn serve(listener: TcpListener, coalesced: bool) -> Side {
    let (tcp, _) = listener.accept().await.expect("accept");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let calls = Arc::new(Calls::default());
    let io = Counted { inner: tcp, calls: calls.clone() };
    let cpu_us = match coalesced {
        true => serve_h2(Coalesced::new(io)).await,
        false => serve_h2(io).await,
    };
    Side::of(&calls, cpu_us)
}

/// Answers every stream of the connection; the CPU spent after the handshake.
async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> f64 {
    let mut conn = settings().handshake::<_, Bytes>(io).await.expect("server handshake");
    let data = Bytes::from(vec![b'x'; ANSWER]);
    let start = thread_cpu_us();
    while let Some(Ok((request, respond))) = conn.accept().await {
        let mut body = request.into_body();
        match poll_message(&mut body, &mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => answer(respond, data.clone()),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => {
                let data = data.clone();
                tokio::spawn(async move {
                    if std::future::poll_fn(|cx| poll_message(&mut body, cx)).await.is_ok() {
                        answer(respond, data);
                    }
                });
            }
        }
    }
    thread_cpu_us() - start
}

/// Keeps `streams` requests in flight on one connection to `addr` until `answers` answers
/// have arrived whole.
async fn client(addr: std::net::SocketAddr, streams: usize, answers: usize) -> Side {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let calls = Arc::new(Calls::default());
    let io = Counted { inner: tcp, calls: calls.clone() };
    let (send, conn) = h2::client::handshake(io).await.expect("client handshake");
    let driver = tokio::spawn(conn);
    let start = thread_cpu_us();
    let left = Arc::new(AtomicUsize::new(answers));
    let mut message = vec![0u8; MESSAGE];
    message[1..5].copy_from_slice(&((MESSAGE - 5) as u32).to_be_bytes());
    let message = Bytes::from(message);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (send, left, message) = (send.clone(), left.clone(), message.clone());
        workers.spawn(async move {
            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                one_call(send.clone(), message.clone()).await;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("worker");
    }
    let cpu_us = thread_cpu_us() - start;
    drop(send);
    driver.abort();
    Side::of(&calls, cpu_us)
}

async fn one_call(send: h2::client::SendRequest<Bytes>, message: Bytes) {
    let mut send = send.ready().await.expect("stream capacity");
    let request = http::Request::post(format!("http://warden{CHECK_PATH}")).body(()).expect("request");
    let (response, mut body) = send.send_request(request, false).expect("request sent");
    body.send_data(message, true).expect("message");
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

/// One run: server and client on threads of their own.
fn run(coalesced: bool, streams: usize, answers: usize) -> (Side, Side) {
    let rt = || tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("non-blocking");
    let addr = std_listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        rt().block_on(async move { serve(TcpListener::from_std(std_listener).expect("listener"), coalesced).await })
    });
    let client = std::thread::spawn(move || rt().block_on(client(addr, streams, answers)));
    let client = client.join().expect("client thread");
    (server.join().expect("server thread"), client)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Args {
    answers: usize,
    rounds: usize,
    streams: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args { answers: 20_000, rounds: 5, streams: vec![1, 8, 32, 128] };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} takes a value"));
        let number = |s: &str| s.parse::<usize>().unwrap_or_else(|_| panic!("{flag}: not a number: {s}"));
        match flag.as_str() {
            "--answers" => a.answers = number(&value),
            "--rounds" => a.rounds = number(&value),
            "--streams" => a.streams = value.split(',').map(number).collect(),
            _ => panic!("unknown flag {flag} (--answers N, --rounds N, --streams N,N,…)"),
        }
    }
    a
}

fn main() {
    let a = args();
    println!("{} answers per run, {} rounds, medians; CPU: each thread's own\n", a.answers, a.rounds);
    println!(
        "| streams in flight | coalescer | server writes / answer | client reads / answer | server CPU µs / answer | client CPU µs / answer |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    for &streams in &a.streams {
        // Per mode: writes, reads, server CPU, client CPU, per answer.
        let mut per =
            [[Vec::new(), Vec::new(), Vec::new(), Vec::new()], [Vec::new(), Vec::new(), Vec::new(), Vec::new()]];
        for round in 0..a.rounds {
            let order = if round % 2 == 0 { [true, false] } else { [false, true] };
            for coalesced in order {
                let (server, client) = run(coalesced, streams, a.answers);
                let n = a.answers as f64;
                let m = &mut per[usize::from(coalesced)];
                m[0].push(server.writes as f64 / n);
                m[1].push(client.reads as f64 / n);
                m[2].push(server.cpu_us / n);
                m[3].push(client.cpu_us / n);
            }
        }
        for coalesced in [true, false] {
            let [w, r, s, c] = per[usize::from(coalesced)].clone().map(median);
            let mode = if coalesced { "on" } else { "off" };
            println!("| {streams} | {mode} | {w:.3} | {r:.3} | {s:.1} | {c:.1} |");
        }
    }
}
