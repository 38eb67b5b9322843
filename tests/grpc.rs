//! The gRPC listener (`mcp_warden::grpc::serve`) over real TCP on 127.0.0.1, talked to as
//! Envoy and operators would: a tonic client for `Check` (allow, deny, 50 concurrent calls
//! on one connection), gRPC health and an unknown method through the tonic bridge, a raw h2
//! client for what tonic would never send (wrong method or content type, compressed,
//! oversized, truncated, doubled and empty messages), the ext_proc list filter as a
//! bidirectional stream through the bridge (also with a response larger than the client's
//! flow-control window), and graceful shutdown with a check still in flight.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap as EnvoyHeaders, HeaderValue as EnvoyHeader, Metadata};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse, body_mutation, processing_request,
    processing_response,
};
use envoy_types::pb::google::protobuf::value::Kind;
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::{HeaderMap, Method, StatusCode};
use mcp_warden::authz::SERVICE_NAME;
use mcp_warden::config::{EnvoyMetadata, ListFilterSettings, OnUnparseable};
use mcp_warden::extproc::{EXT_AUTHZ_NAMESPACE, ListFilterService};
use mcp_warden::grpc::{CHECK_PATH, Listener, Services, max_check_message, serve};
use mcp_warden::state::Warden;
use prost::Message as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use warden_core::mcp::Limits;

mod common;

// ---------------------------------------------------------------------------------------
// The warden under test (tests/common: the policy of tests/check.rs)
// ---------------------------------------------------------------------------------------

/// Denials of a tool carry this HTTP status (distinct from the 400/413 of unreadable checks).
const DENIED_STATUS: u16 = 403;

const LIST_FILTER: ListFilterSettings =
    ListFilterSettings { on_unparseable: OnUnparseable::Error, max_event_bytes: 8 << 20 };

/// A test guard against hangs, never a wait for readiness: every answer here comes at once.
const GUARD: Duration = Duration::from_secs(10);

fn warden() -> Arc<Warden> {
    Arc::new(common::warden(DENIED_STATUS, EnvoyMetadata::All))
}

/// Every service but `Check`, registered as `mcp_warden::server` does.
async fn routes(warden: &Arc<Warden>) -> tonic::service::Routes {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving).await;
    reporter.set_serving::<ExternalProcessorServer<ListFilterService>>().await;
    tonic::service::Routes::new(ExternalProcessorServer::new(ListFilterService::new(warden.clone(), LIST_FILTER)))
        .add_service(health)
        .add_service(mcp_warden::grpc::reflection::service().expect("reflection"))
        .add_service(mcp_warden::grpc::reflection::service_v1alpha().expect("reflection v1alpha"))
}

/// `serve` running on a port the OS picked, in this test's runtime.
struct Server {
    addr: SocketAddr,
    warden: Arc<Warden>,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<()>,
}

async fn start() -> Server {
    start_with(warden()).await
}

async fn start_with(warden: Arc<Warden>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let services = Services { warden: warden.clone(), routes: routes(&warden).await };
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(serve(Listener::Tcp(listener), services, async move {
        let _ = stopped.await;
    }));
    Server { addr, warden, stop: Some(stop), serving }
}

impl Server {
    /// One tonic HTTP/2 connection, shared by every client made from it.
    async fn channel(&self) -> Channel {
        within(Endpoint::from_shared(format!("http://{}", self.addr)).expect("endpoint").connect())
            .await
            .expect("connect")
    }

    fn checks_counted(&self, decision: &str, reason: &str) -> Option<u64> {
        let metrics = self.warden.metrics.render(0);
        let series = format!("mcp_warden_checks_total{{decision=\"{decision}\",reason=\"{reason}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
    }
}

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(GUARD, f).await.expect("no answer within the test guard")
}

// ---------------------------------------------------------------------------------------
// Check requests and responses
// ---------------------------------------------------------------------------------------

fn call(id: &str, tool: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#)
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;

/// What Envoy sends for an MCP POST from alice (API key "foo") to the bedrock-mcp app.
fn check_request(body: &str) -> CheckRequest {
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-11-25"),
        ("x-api-key", "foo"),
    ];
    common::request("POST", &headers, body, Some("bedrock-mcp"), "")
}

/// Headers an allow sets (name → value) and the ones it removes.
fn allowed(r: &CheckResponse) -> (HashMap<String, String>, Vec<String>) {
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(0), "an allow is gRPC-status OK: {r:?}");
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else { panic!("expected an allow, got {r:?}") };
    let set = ok.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect();
    (set, ok.headers_to_remove.clone())
}

/// A denial's HTTP status and JSON-RPC body.
fn denied(r: &CheckResponse) -> (i32, serde_json::Value) {
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else { panic!("expected a denial, got {r:?}") };
    assert_ne!(r.status.as_ref().map(|s| s.code), Some(0), "a denial is not gRPC-status OK");
    let body = serde_json::from_str(&d.body).expect("a JSON body");
    (d.status.as_ref().expect("an HTTP status").code, body)
}

fn metadata(r: &CheckResponse, key: &str) -> Option<String> {
    match r.dynamic_metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn assert_bearer_token(set: &HashMap<String, String>) {
    let auth = set.get("authorization").expect("Authorization is set");
    assert!(auth.starts_with("Bearer ey") && auth.matches('.').count() == 2, "a minted JWT: {auth}");
}

// ---------------------------------------------------------------------------------------
// A raw HTTP/2 client, for requests tonic would never send
// ---------------------------------------------------------------------------------------

/// An h2 connection; the handle resolves when the connection ends.
async fn raw_client(addr: SocketAddr) -> (SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, connection) = within(h2::client::handshake(tcp)).await.expect("HTTP/2 handshake");
    (send, tokio::spawn(connection))
}

/// Opens a stream; with `end`, the request has no body.
async fn open(
    client: &SendRequest<Bytes>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    content_type: &str,
    end: bool,
) -> (ResponseFuture, SendStream<Bytes>) {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut ready = within(client.clone().ready()).await.expect("connection ready");
    ready.send_request(request, end).expect("stream opened")
}

/// A `Check` POST as a gRPC client would open it.
async fn open_check(client: &SendRequest<Bytes>, addr: SocketAddr) -> (ResponseFuture, SendStream<Bytes>) {
    open(client, addr, Method::POST, CHECK_PATH, "application/grpc", false).await
}

/// A gRPC length-prefixed message with the given compressed flag and declared length.
fn framed(flag: u8, declared: usize, message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(flag);
    out.put_u32(u32::try_from(declared).expect("fits the prefix"));
    out.put_slice(message);
    out.freeze()
}

fn message(req: &CheckRequest) -> Bytes {
    let bytes = req.encode_to_vec();
    framed(0, bytes.len(), &bytes)
}

/// A whole answer: head, body bytes and trailers.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

async fn answer(response: ResponseFuture) -> Answer {
    within(async {
        let (head, mut recv): (_, RecvStream) = response.await.expect("response headers").into_parts();
        let mut body = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.expect("response data");
            let _ = recv.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.expect("response trailers");
        Answer { status: head.status, headers: head.headers, body: body.freeze(), trailers }
    })
    .await
}

impl Answer {
    /// From the trailers, or the headers of a trailers-only answer.
    fn grpc_status(&self) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))?
            .to_str()
            .ok()
    }

    /// The one `CheckResponse` of a successful gRPC answer.
    fn check_response(&self) -> CheckResponse {
        assert_eq!(self.status, StatusCode::OK);
        assert_eq!(self.headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/grpc"[..]));
        assert_eq!(self.grpc_status(), Some("0"), "an unreadable check is still answered with grpc-status 0");
        assert!(self.body.len() >= 5 && self.body[0] == 0, "one uncompressed message: {:?}", self.body);
        let len = u32::from_be_bytes([self.body[1], self.body[2], self.body[3], self.body[4]]) as usize;
        assert_eq!(self.body.len(), 5 + len, "exactly one message");
        CheckResponse::decode(&self.body[5..]).expect("a CheckResponse")
    }
}

/// An audited refusal of an unreadable check: the HTTP status, no id to echo.
fn assert_refused(r: &CheckResponse, status: i32, message: &str, case: &str) {
    let (http_status, body) = denied(r);
    assert_eq!(http_status, status, "{case}: {body}");
    assert_eq!(body["id"], serde_json::Value::Null);
    assert_eq!(body["error"]["code"], -32600);
    assert_eq!(body["error"]["message"], message);
    assert_eq!(metadata(r, "decision").as_deref(), Some("deny"));
}

// ---------------------------------------------------------------------------------------
// ext_proc messages
// ---------------------------------------------------------------------------------------

fn envoy_headers(headers: &[(&str, &str)]) -> EnvoyHeaders {
    EnvoyHeaders {
        headers: headers
            .iter()
            .map(|(k, v)| EnvoyHeader { key: (*k).into(), raw_value: v.as_bytes().to_vec(), ..Default::default() })
            .collect(),
    }
}

fn request_headers() -> ProcessingRequest {
    ProcessingRequest {
        request: Some(processing_request::Request::RequestHeaders(HttpHeaders {
            headers: Some(envoy_headers(&[
                (":method", "POST"),
                (":path", "/mcp"),
                ("content-type", "application/json"),
            ])),
            end_of_stream: false,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The upstream's response headers, with ext_authz's decision metadata as Envoy forwards it.
/// The upstream's response headers for a JSON body of `length` bytes.
fn response_headers(decision: &CheckResponse, length: usize) -> ProcessingRequest {
    let md = decision.dynamic_metadata.clone().expect("decision metadata");
    let length = length.to_string();
    ProcessingRequest {
        request: Some(processing_request::Request::ResponseHeaders(HttpHeaders {
            headers: Some(envoy_headers(&[
                (":status", "200"),
                ("content-type", "application/json"),
                ("content-length", &length),
            ])),
            end_of_stream: false,
            ..Default::default()
        })),
        metadata_context: Some(Metadata {
            filter_metadata: [(EXT_AUTHZ_NAMESPACE.to_owned(), md)].into_iter().collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn response_body(body: &str) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(processing_request::Request::ResponseBody(HttpBody {
            body: body.as_bytes().to_vec(),
            end_of_stream: true,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The body a body response replaces the chunk with.
fn replaced_body(r: &ProcessingResponse) -> Vec<u8> {
    let Some(processing_response::Response::ResponseBody(b)) = &r.response else {
        panic!("expected a response-body answer, got {r:?}")
    };
    match b.response.as_ref().and_then(|c| c.body_mutation.as_ref()).and_then(|m| m.mutation.as_ref()) {
        Some(body_mutation::Mutation::Body(bytes)) => bytes.clone(),
        other => panic!("expected the body replaced, got {other:?}"),
    }
}

/// A `tools/list` result with `n` tools, every other one allowed (`get_…`), and the same
/// result as the filter should leave it.
fn tool_lists(n: usize) -> (String, String) {
    let tool = |name: String| format!(r#"{{"name":"{name}","description":"{}"}}"#, "d".repeat(40));
    let all: Vec<String> =
        (0..n).map(|i| tool(if i % 2 == 0 { format!("get_{i}") } else { format!("delete_{i}") })).collect();
    let kept: Vec<String> = (0..n).filter(|i| i % 2 == 0).map(|i| tool(format!("get_{i}"))).collect();
    let result = |tools: &[String]| format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"tools":[{}]}}}}"#, tools.join(","));
    (result(&all), result(&kept))
}

/// One list-filter conversation over `channel`: request headers, response headers with the
/// decision of a real `Check` of a `tools/list` call, then the whole response body; returns
/// the body the filter sends on.
async fn filter_list(channel: Channel, listed: &str) -> Vec<u8> {
    let decision =
        within(AuthorizationClient::new(channel.clone()).check(check_request(LIST))).await.expect("check").into_inner();
    let (set, _) = allowed(&decision);
    assert!(set.contains_key("authorization") && !set.contains_key("x-mcp-warden-list"), "{set:?}");

    let (to_filter, inbound) = mpsc::channel(4);
    to_filter.send(request_headers()).await.expect("queued");
    let mut answers = within(ExternalProcessorClient::new(channel).process(ReceiverStream::new(inbound)))
        .await
        .expect("stream opened")
        .into_inner();
    let mut next = async || within(answers.message()).await.expect("a stream message").expect("an answer");

    let first = next().await;
    assert!(
        matches!(first.response, Some(processing_response::Response::RequestHeaders(_))),
        "request headers are answered harmlessly: {first:?}"
    );
    to_filter.send(response_headers(&decision, listed.len())).await.expect("queued");
    let headers = next().await;
    assert!(matches!(headers.response, Some(processing_response::Response::ResponseHeaders(_))), "{headers:?}");
    let mode = headers.mode_override.as_ref().map(|m| m.response_body_mode);
    assert_eq!(mode, Some(BodySendMode::Buffered as i32), "a JSON list is asked for whole");
    to_filter.send(response_body(listed)).await.expect("queued");
    let body = replaced_body(&next().await);

    drop(to_filter);
    let end = within(answers.message()).await.expect("the stream ends with grpc-status OK");
    assert!(end.is_none(), "nothing after the last answer: {end:?}");
    body
}

// ---------------------------------------------------------------------------------------
// 1-2. Check through a tonic client
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tonic_client_gets_an_allow_with_a_minted_token_and_a_denial_echoing_the_id() {
    let server = start().await;
    let mut client = AuthorizationClient::new(server.channel().await);

    let allow = within(client.check(check_request(&call("req-1", "get_weather")))).await.expect("check").into_inner();
    let (set, remove) = allowed(&allow);
    assert_bearer_token(&set);
    assert_eq!(set.get("x-team").map(String::as_str), Some("blue,green"));
    assert!(remove.contains(&"x-api-key".to_owned()), "the client's key is not forwarded: {remove:?}");
    assert_eq!(metadata(&allow, "decision").as_deref(), Some("allow"));

    let deny = within(client.check(check_request(&call("req-2", "delete_file")))).await.expect("check").into_inner();
    let (status, body) = denied(&deny);
    assert_eq!(status, i32::from(DENIED_STATUS));
    assert_eq!(body["id"], "req-2");
    assert_eq!(body["error"]["code"], -32602);
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("delete_file")), "{body}");
    assert_eq!(metadata(&deny, "decision").as_deref(), Some("deny"));
    assert_eq!(metadata(&deny, "reason").as_deref(), Some("not_allowed_by_any_role"));
}

#[tokio::test]
async fn fifty_concurrent_checks_on_one_connection_are_each_answered_for_their_own_request() {
    let server = start().await;
    let client = AuthorizationClient::new(server.channel().await);
    let mut calls = JoinSet::new();
    for i in 0..50 {
        let mut client = client.clone();
        calls.spawn(async move {
            let id = format!("req-{i}");
            let tool = if i % 2 == 0 { format!("get_{i}") } else { format!("delete_{i}") };
            let response = client.check(check_request(&call(&id, &tool))).await.expect("check").into_inner();
            (i, id, tool, response)
        });
    }
    let mut answered = 0;
    while let Some(done) = within(calls.join_next()).await {
        let (i, id, tool, response) = done.expect("call task");
        if i % 2 == 0 {
            assert_bearer_token(&allowed(&response).0);
        } else {
            let (status, body) = denied(&response);
            assert_eq!(status, i32::from(DENIED_STATUS));
            assert_eq!(body["id"], id.as_str(), "the denial echoes its own request's id");
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(&tool)), "{body}");
        }
        assert_eq!(metadata(&response, "tool").as_deref(), Some(tool.as_str()));
        answered += 1;
    }
    assert_eq!(answered, 50);
    assert_eq!(server.checks_counted("deny", "not_allowed_by_any_role"), Some(25));
}

// ---------------------------------------------------------------------------------------
// 3. Unary tonic services through the bridge
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn health_reports_the_authorization_service_serving_through_the_bridge() {
    let server = start().await;
    let mut health = HealthClient::new(server.channel().await);
    let check = |service: &str| HealthCheckRequest { service: service.to_owned() };

    let status = within(health.check(check(SERVICE_NAME))).await.expect("health check").into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let ext_proc = "envoy.service.ext_proc.v3.ExternalProcessor";
    let status = within(health.check(check(ext_proc))).await.expect("health check").into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let unknown = within(health.check(check("nope.Svc"))).await.expect_err("an unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented() {
    let server = start().await;
    let (client, _connection) = raw_client(server.addr).await;
    let (response, mut body) =
        open(&client, server.addr, Method::POST, "/nope.Svc/Call", "application/grpc", false).await;
    body.send_data(framed(0, 0, &[]), true).expect("sent");
    let answer = answer(response).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.grpc_status(), Some("12"), "UNIMPLEMENTED");
}

// ---------------------------------------------------------------------------------------
// 4. The Check path with requests tonic would never send
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn check_path_answers_non_grpc_requests_with_http_errors() {
    let server = start().await;
    let (client, _connection) = raw_client(server.addr).await;
    let cases = [
        (Method::GET, "application/grpc", StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, "application/json", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Method::POST, "application/grpc-web", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ];
    for (method, content_type, expected) in cases {
        let (response, _body) = open(&client, server.addr, method.clone(), CHECK_PATH, content_type, false).await;
        let answer = answer(response).await;
        assert_eq!(answer.status, expected, "{method} {content_type}");
        assert!(answer.body.is_empty() && answer.grpc_status().is_none(), "a plain HTTP error");
    }
    // A content type with a codec suffix is still gRPC.
    let (response, mut body) =
        open(&client, server.addr, Method::POST, CHECK_PATH, "application/grpc+proto", false).await;
    body.send_data(message(&check_request(&call("req-1", "get_a"))), true).expect("sent");
    assert_bearer_token(&allowed(&answer(response).await.check_response()).0);
}

#[tokio::test]
async fn unreadable_check_messages_are_denied_with_400() {
    let server = start().await;
    let (client, _connection) = raw_client(server.addr).await;
    // Each would be an allow if the message were taken as it is.
    let allowed_call = check_request(&call("req-1", "get_weather")).encode_to_vec();
    let whole = framed(0, allowed_call.len(), &allowed_call);
    let cases: [(&str, Vec<Bytes>); 4] = [
        ("compressed", vec![framed(1, allowed_call.len(), &allowed_call)]),
        ("truncated", vec![framed(0, allowed_call.len() + 10, &allowed_call)]),
        ("followed by a second message", vec![whole.clone(), whole.clone()]),
        ("empty", vec![]),
    ];
    for (what, chunks) in cases {
        // No chunks: the request ends with its headers.
        let (response, mut body) =
            open(&client, server.addr, Method::POST, CHECK_PATH, "application/grpc", chunks.is_empty()).await;
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            body.send_data(chunk, i == last).expect("sent");
        }
        let response = answer(response).await.check_response();
        assert_refused(&response, 400, "invalid request", what);
    }
    assert_eq!(server.checks_counted("deny", "invalid_check_request"), Some(4));
    let metrics = server.warden.metrics.render(0);
    assert!(!metrics.contains("mcp_warden_checks_total{decision=\"allow\""), "nothing was allowed:\n{metrics}");
}

#[tokio::test]
async fn an_oversized_check_is_denied_with_413_from_its_prefix_alone() {
    let server = start().await;
    let (client, _connection) = raw_client(server.addr).await;
    let (response, mut body) = open_check(&client, server.addr).await;
    // Only the prefix: the 4 MiB + 1 bytes it declares are never sent.
    body.send_data(framed(0, max_check_message(&Limits::default()) + 1, &[]), false).expect("prefix sent");
    let response = answer(response).await.check_response();
    // The request was never ended: the answer came while the client could still send, and
    // the server then tells it to send no more (RST_STREAM NO_ERROR, RFC 9113 §8.1).
    let reset = within(std::future::poll_fn(|cx| body.poll_reset(cx))).await;
    assert_eq!(reset.expect("a reset"), h2::Reason::NO_ERROR);
    assert_refused(&response, 413, "request too large", "declared 4 MiB + 1");
    assert_eq!(server.checks_counted("deny", "check_request_too_large"), Some(1));

    // The connection is still good for the next check.
    let (response, mut body) = open_check(&client, server.addr).await;
    body.send_data(message(&check_request(&call("req-2", "get_time"))), true).expect("sent");
    assert_bearer_token(&allowed(&answer(response).await.check_response()).0);
}

// ---------------------------------------------------------------------------------------
// 4b. Checks whose answer Envoy no longer waits for (issue 19.7)
// ---------------------------------------------------------------------------------------

/// A server whose warden audits to a file in `dir`.
async fn auditing_server(dir: &std::path::Path) -> (Server, std::path::PathBuf) {
    let path = dir.join("audit.jsonl");
    let audit = mcp_warden::audit::Audit::start(&mcp_warden::config::AuditOutput::File(path.clone())).expect("audit");
    let warden = Arc::new(common::auditing(DENIED_STATUS, EnvoyMetadata::All, audit));
    (start_with(warden).await, path)
}

impl Server {
    /// Waits (within the guard) until `n` checks were counted as undelivered for `why`, then
    /// returns every audit event written.
    async fn undelivered_events(&self, why: &str, n: u64, audit: &std::path::Path) -> Vec<serde_json::Value> {
        let series = format!("mcp_warden_checks_undelivered_total{{why=\"{why}\"}} {n}");
        within(async {
            while !self.warden.metrics.render(0).lines().any(|l| l == series) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        self.warden.close_audit();
        let text = std::fs::read_to_string(audit).expect("audit file");
        text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
    }
}

/// One HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame").to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The bytes a client sends for a `Check` on stream 1 whose whole message is followed, before
/// any answer can come, by RST_STREAM CANCEL: what Envoy sends when it gives up on a check.
/// Written by hand in one piece (an h2 client would drop the queued DATA on reset).
fn check_then_cancel(message: &[u8]) -> Vec<u8> {
    // HPACK, no Huffman: :method POST and :scheme http indexed (0x83, 0x86); :path (4),
    // :authority (1) and content-type (31 = 15 + 16) literal with indexed names; te literal.
    let mut block = vec![0x83, 0x86, 0x04, CHECK_PATH.len() as u8];
    block.extend_from_slice(CHECK_PATH.as_bytes());
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(&[0x0f, 0x10, 16]);
    block.extend_from_slice(b"application/grpc");
    block.extend_from_slice(&[0x00, 2]);
    block.extend_from_slice(b"te");
    block.push(8);
    block.extend_from_slice(b"trailers");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(frame(0x0, 0x1, 1, message)); // DATA, END_STREAM
    out.extend(frame(0x3, 0, 1, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    out
}

#[tokio::test]
async fn a_check_whose_stream_envoy_reset_before_the_answer_is_audited_as_not_delivered() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().expect("dir");
    let (server, audit) = auditing_server(dir.path()).await;
    // An allowed call: decided (the message is whole) but cancelled before it could be answered.
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(&check_then_cancel(&message(&check_request(&call("req-9", "get_weather"))))).await.expect("sent");
    let events = server.undelivered_events("stream_reset", 1, &audit).await;
    drop(tcp);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["event"], "request.not_delivered", "never a plain request.allowed: {e}");
    assert_eq!(
        (&e["undelivered"], &e["decision"], &e["tool"]),
        (&"stream_reset".into(), &"allow".into(), &"get_weather".into())
    );
    assert_eq!(e["jsonrpc_id"], "req-9");
}

#[tokio::test]
async fn a_check_decided_after_the_deadline_envoy_stated_is_audited_as_not_delivered() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, audit) = auditing_server(dir.path()).await;
    let (client, _connection) = raw_client(server.addr).await;
    let timed = |timeout: &str| {
        http::Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{CHECK_PATH}", server.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", timeout)
            .body(())
            .expect("request")
    };
    // Envoy states its ext_authz timeout in grpc-timeout; one nanosecond is always over by the
    // time a check is decided. A generous one is met.
    for (timeout, id) in [("1n", "late"), ("10S", "in-time")] {
        let mut ready = within(client.clone().ready()).await.expect("ready");
        let (response, mut body) = ready.send_request(timed(timeout), false).expect("stream");
        body.send_data(message(&check_request(&call(id, "get_weather"))), true).expect("sent");
        assert_bearer_token(&allowed(&answer(response).await.check_response()).0);
    }
    let events = server.undelivered_events("deadline_exceeded", 1, &audit).await;
    let summary: Vec<_> =
        events.iter().map(|e| (e["jsonrpc_id"].clone(), e["event"].clone(), e["undelivered"].clone())).collect();
    assert_eq!(
        summary,
        [
            ("late".into(), "request.not_delivered".into(), "deadline_exceeded".into()),
            ("in-time".into(), "request.allowed".into(), serde_json::Value::Null),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// 5. A bidirectional stream through the bridge: the ext_proc list filter
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn list_filter_stream_filters_a_tools_list_through_the_bridge() {
    let server = start().await;
    let (listed, expected) = tool_lists(4);
    let body = filter_list(server.channel().await, &listed).await;
    assert_eq!(String::from_utf8(body).expect("UTF-8"), expected);
    assert!(expected.contains("get_2") && !expected.contains("delete_"));
}

#[tokio::test]
async fn list_filter_answer_larger_than_the_client_window_arrives_whole() {
    let server = start().await;
    // The HTTP/2 default 64 KiB windows: the bridge must wait for window updates.
    let channel = within(
        Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("endpoint")
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect(),
    )
    .await
    .expect("connect");
    let (listed, expected) = tool_lists(6000);
    assert!(expected.len() > 3 * 65_535, "{} bytes", expected.len());
    let body = filter_list(channel, &listed).await;
    assert_eq!(body.len(), expected.len());
    assert!(body == expected.as_bytes(), "the filtered list arrives intact");
}

// ---------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_finishes_the_check_in_flight_closes_connections_and_stops_listening() {
    let mut server = start().await;
    let (client, connection) = raw_client(server.addr).await;

    // A check in flight: its headers and the first bytes of its message.
    let whole = message(&check_request(&call("req-1", "get_weather")));
    let (in_flight, mut body) = open_check(&client, server.addr).await;
    body.send_data(whole.slice(..3), false).expect("sent");
    // A later stream answered proves the server has taken the earlier one (frames are read
    // in order).
    let (later, _later_body) = open(&client, server.addr, Method::GET, CHECK_PATH, "application/grpc", true).await;
    assert_eq!(answer(later).await.status, StatusCode::METHOD_NOT_ALLOWED);

    server.stop.take().expect("not stopped yet").send(()).expect("serve is running");
    body.send_data(whole.slice(3..), true).expect("rest sent after the shutdown signal");
    let response = answer(in_flight).await.check_response();
    assert_bearer_token(&allowed(&response).0);

    // Within the guard, well under the 5 s drain: the idle connection was closed gracefully,
    // not aborted at the end of the drain period.
    tokio::time::timeout(Duration::from_secs(3), &mut server.serving)
        .await
        .expect("serve returns once its connections are done")
        .expect("serve did not panic");
    let ended = tokio::time::timeout(Duration::from_secs(3), connection).await.expect("the client connection ends");
    assert!(ended.expect("connection task").is_ok(), "closed with GOAWAY, not an error");
    let refused = TcpStream::connect(server.addr).await.expect_err("nothing listens any more");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
