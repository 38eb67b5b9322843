//! The gRPC listener, served straight on the h2 crate: each connection's streams are
//! dispatched by path, `Check` to the ext_authz fast path (`check`; on one runtime thread a
//! check whose message is complete is answered within the connection's task) and everything
//! else (the ext_proc list filter, health, reflection) to tonic's routes through `bridge`.
//!
//! Why not tonic's server for `Check` too: a `Check` costs less CPU on bare h2, here and in
//! Envoy (fewer frames to read); BENCHMARKS.md has the numbers. Connections are served
//! through [`coalesce`] (one `write` per batch of answers).
//!
//! Owns connection lifetime (HTTP/2 settings, graceful shutdown; binding and accepting are
//! `listen`'s); no decisions.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::state::Warden;
use coalesce::Coalesced;

mod bridge;
mod check;
mod coalesce;
mod listen;
pub mod reflection;

pub use check::{CHECK_PATH, max_check_message};
use listen::Accepted;
pub use listen::{Listener, SocketFile};

/// How long in-flight streams may run after a shutdown signal before connections are closed.
/// Checks finish in microseconds; list-filter streams of open GET (SSE) streams last as long
/// as their MCP session and are cut here (the client's stream is reset; it reconnects).
const DRAIN: Duration = Duration::from_secs(5);

/// How long a new connection may take to send the HTTP/2 preface and settings.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// What the listener serves: the check handler and every other gRPC service.
#[derive(Clone, Debug)]
pub struct Services {
    pub warden: Arc<Warden>,
    pub routes: tonic::service::Routes,
}

/// Accepts connections until `shutdown` completes, then lets in-flight streams finish (at
/// most 5 s) and returns.
pub async fn serve(listener: Listener, services: Services, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    while connections.try_join_next().is_some() {}
                    let (services, stop) = (services.clone(), stop_rx.clone());
                    match stream {
                        Accepted::Tcp(stream) => connections.spawn(connection(stream, services, stop)),
                        Accepted::Unix(stream) => connections.spawn(connection(stream, services, stop)),
                    };
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving.
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener); // a Unix socket's file goes with it
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        tracing::info!(open = connections.len(), "closing gRPC connections still busy after the drain period");
        connections.abort_all();
    }
}

/// Serves one HTTP/2 connection until the peer closes it (or, after shutdown, until its
/// in-flight streams are done).
async fn connection<S>(stream: S, services: Services, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = tokio::time::timeout(HANDSHAKE, settings().handshake::<_, Bytes>(Coalesced::new(stream)));
    let mut conn = match handshake.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "gRPC connection ended during the HTTP/2 handshake");
            return;
        }
        Err(_) => {
            tracing::debug!("gRPC connection sent no HTTP/2 preface in time");
            return;
        }
    };
    // On one runtime thread a spawned task would run on this thread anyway, only later.
    let inline = Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread;
    let mut stopping = *stop.borrow();
    if stopping {
        conn.graceful_shutdown();
    }
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => dispatch(&services, inline, request, respond),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "gRPC connection error");
                    return;
                }
                None => return,
            },
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_err() || *stop.borrow() {
                    conn.graceful_shutdown();
                }
            }
        }
    }
}

fn dispatch(services: &Services, inline: bool, request: Request<h2::RecvStream>, respond: SendResponse<Bytes>) {
    if request.uri().path() == CHECK_PATH {
        check::serve(&services.warden, inline, request, respond);
    } else {
        tokio::spawn(bridge::serve(services.routes.clone(), request, respond));
    }
}

/// Flow-control window per stream and per connection: one `CheckRequest` carrying a buffered
/// body of up to 1 MiB arrives without waiting for a window update.
const WINDOW: u32 = 2 << 20;

fn settings() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_concurrent_streams(1024)
        .max_header_list_size(64 << 10)
        .max_send_buffer_size(1 << 20);
    builder
}
