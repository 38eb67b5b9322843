//! The ext_authz gRPC service (`envoy.service.auth.v3.Authorization/Check`), served with a
//! codec that hands the encoded request to [`Warden::check_bytes`] untouched, so the check
//! reads it zero-copy instead of through Envoy's generated types (one `String` per header, a
//! hashed map). The answer comes back encoded (see `reply::encode_allow`) and is sent as is.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf as _, BufMut as _, Bytes};
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};

use super::Warden;

/// The gRPC service name Envoy calls (and health checks name).
pub const SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The ext_authz service: a thin shell over [`Warden::check_bytes`].
#[derive(Debug, Clone)]
pub struct CheckService(pub Arc<Warden>);

impl NamedService for CheckService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for CheckService
where
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let method = Unary(self.0.clone());
        Box::pin(async move { Ok(Grpc::new(RawCheckCodec).unary(method, req).await) })
    }
}

struct Unary(Arc<Warden>);

impl UnaryService<Bytes> for Unary {
    type Response = Vec<u8>;
    type Future = Ready<Result<tonic::Response<Vec<u8>>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        ready(Ok(tonic::Response::new(self.0.check_bytes(request.into_inner()))))
    }
}

/// Passes the request's bytes in and the encoded answer out.
#[derive(Debug, Clone, Copy, Default)]
struct RawCheckCodec;

impl Codec for RawCheckCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawCheckCodec;
    type Decoder = RawCheckCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCheckCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCheckCodec
    }
}

impl Encoder for RawCheckCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCheckCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
