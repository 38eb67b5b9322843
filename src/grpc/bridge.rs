//! Serves a stream through tonic's routes (the ext_proc list filter, health, reflection):
//! the h2 request body becomes an `http_body::Body` for tonic, and tonic's response body
//! is written back frame by frame within the peer's flow-control window, ending with its
//! trailers. A peer reset stops the stream at once; the request body then reports the error
//! to the service.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, Bytes};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::Request;
use http_body::{Body, Frame};
use tonic::codegen::Service;

pub(super) async fn serve(
    mut routes: tonic::service::Routes,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let request = request.map(|recv| H2Body { recv, data_done: false, done: false });
    // Routes never fail (their error type is `Infallible`).
    let Ok(()) = poll_fn(|cx| Service::<Request<H2Body>>::poll_ready(&mut routes, cx)).await;
    let Ok(response) = routes.call(request).await;
    let (head, body) = response.into_parts();
    let end = body.is_end_stream();
    match respond.send_response(http::Response::from_parts(head, ()), end) {
        Ok(stream) if !end => {
            if let Err(e) = send_body(body, stream).await {
                tracing::debug!(error = %e, "gRPC response stream ended early");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "gRPC response not sent"),
    }
}

/// Copies tonic's body to the stream: data within the flow-control window, then trailers
/// (or an empty end-of-stream DATA frame when there are none).
async fn send_body(mut body: tonic::body::Body, mut stream: SendStream<Bytes>) -> Result<(), h2::Error> {
    loop {
        let frame = poll_fn(|cx| {
            if let Poll::Ready(reset) = stream.poll_reset(cx) {
                return Poll::Ready(Err(reset.map_or_else(|e| e, h2::Error::from)));
            }
            Pin::new(&mut body).poll_frame(cx).map(Ok)
        })
        .await?;
        let frame = match frame {
            None => return stream.send_data(Bytes::new(), true),
            Some(Ok(frame)) => frame,
            Some(Err(status)) => {
                tracing::debug!(error = %status, "gRPC response body failed");
                stream.send_reset(Reason::INTERNAL_ERROR);
                return Ok(());
            }
        };
        match frame.into_data() {
            Ok(data) => send_data(&mut stream, data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return stream.send_trailers(trailers);
                }
            }
        }
    }
}

async fn send_data(stream: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while data.has_remaining() {
        stream.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted?,
            None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
        };
        if granted > 0 {
            stream.send_data(data.split_to(granted.min(data.len())), false)?;
        }
    }
    Ok(())
}

/// An h2 request body as an `http_body::Body`, releasing flow-control capacity as data is
/// taken.
struct H2Body {
    recv: RecvStream,
    data_done: bool,
    done: bool,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.data_done = true,
            }
        }
        let trailers = ready!(this.recv.poll_trailers(cx));
        this.done = true;
        Poll::Ready(trailers.transpose().map(|t| t.map(Frame::trailers)))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.recv.is_end_stream()
    }
}
