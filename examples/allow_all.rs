//! A do-nothing ext_authz server for `scripts/bench.sh` configuration (b): every `Check` is
//! answered OK with no header mutations. Written the default way on purpose (tonic's
//! defaults, tokio's multi-threaded runtime), so it is the baseline an authorization hop is
//! compared against.
//!
//! `cargo run --release --example allow_all -- --ready-file PATH [--current-thread]
//! [--same-answer]` binds 127.0.0.1 on a port the kernel picks and writes
//! `{"grpc":"127.0.0.1:PORT"}` to PATH once it listens. `--current-thread` runs it on one
//! runtime thread, as mcp-warden runs by default: the cost floor of a tonic server on this
//! machine, for reference. `--same-answer` (configuration (b″)) answers what mcp-warden
//! answers the bench's request: an `Authorization` header as long as its ID token and the same
//! six decision-metadata fields. Envoy's work on an answer depends on what the answer holds,
//! so (c) against (b″) compares the two servers with that work equal. The ready file then
//! also carries those fields (`"metadata"`), and `bench.sh` checks them against mcp-warden's
//! audit event for the same request.

use std::path::PathBuf;

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{Authorization, AuthorizationServer};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, OkHttpResponse};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc::Status;
use tokio::net::TcpListener;

/// The length of mcp-warden's ID token for the bench's user and app (RS256, 2048-bit key; read
/// off the request Envoy forwards upstream).
const TOKEN_LEN: usize = 780;

/// The decision metadata mcp-warden sends for the bench's allowed `tools/call` (user and app
/// of `examples/bench_policy.rs`).
const METADATA: [(&str, &str); 6] = [
    ("decision", "allow"),
    ("reason", "allowed_by_role"),
    ("user", "user-00000"),
    ("app", "demo"),
    ("mcp_method", "tools/call"),
    ("tool", "search_docs"),
];

#[derive(Debug)]
struct AllowAll {
    answer: CheckResponse,
}

impl AllowAll {
    fn new(same_answer: bool) -> AllowAll {
        let mut ok = OkHttpResponse::default();
        let mut answer = CheckResponse { status: Some(Status { code: 0, ..Default::default() }), ..Default::default() };
        if same_answer {
            ok.headers.push(HeaderValueOption {
                header: Some(HeaderValue {
                    key: "authorization".into(),
                    value: format!("Bearer {}", "x".repeat(TOKEN_LEN)),
                    ..Default::default()
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..Default::default()
            });
            let fields = METADATA
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value { kind: Some(Kind::StringValue((*v).to_owned())) }));
            answer.dynamic_metadata = Some(Struct { fields: fields.collect() });
        }
        answer.http_response = Some(HttpResponse::OkResponse(ok));
        AllowAll { answer }
    }
}

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.answer.clone()))
    }
}

fn ready_file() -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--ready-file" {
            return args.next().map(PathBuf::from);
        }
    }
    None
}

fn main() {
    let mut runtime = if std::env::args().any(|a| a == "--current-thread") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    runtime.enable_all().build().expect("tokio runtime").block_on(serve());
}

async fn serve() {
    let same_answer = std::env::args().any(|a| a == "--same-answer");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    if let Some(path) = ready_file() {
        let tmp = path.with_extension("tmp");
        let mut ready = format!("{{\"grpc\":\"{addr}\"");
        if same_answer {
            let fields: Vec<String> = METADATA.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
            ready.push_str(&format!(",\"metadata\":{{{}}}", fields.join(",")));
        }
        ready.push('}');
        std::fs::write(&tmp, ready).expect("write the ready file");
        std::fs::rename(&tmp, &path).expect("publish the ready file");
    }
    eprintln!("allow_all: listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(AllowAll::new(same_answer)))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .expect("serve");
}
