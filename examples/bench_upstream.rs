//! A fast stand-in MCP upstream for `scripts/bench.sh`: answers every request with a fixed
//! small JSON-RPC result (a 20-tool list for `tools/list`), so the benchmark measures Envoy
//! and the authorization hop, not the upstream.
//!
//! `cargo run --release --example bench_upstream -- [--threads N] --ready-file PATH` binds
//! 127.0.0.1 on a port the kernel picks and writes `{"port":PORT}` to PATH once it listens.
//! `--threads 1` (the default) runs tokio's current-thread runtime; more runs the
//! multi-threaded one with that many workers.

use std::path::PathBuf;

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use tokio::net::TcpListener;

const RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#;

/// The answer to `tools/list`: 20 tools, so the list filter (configuration (d)) has work.
const TOOLS: &str = concat!(
    r#"{"jsonrpc":"2.0","id":7,"result":{"tools":["#,
    r#"{"name":"search_docs","description":"Search the docs","inputSchema":{"type":"object"}},"#,
    r#"{"name":"get_issue","description":"Read an issue","inputSchema":{"type":"object"}},"#,
    r#"{"name":"list_pages","description":"List pages","inputSchema":{"type":"object"}},"#,
    r#"{"name":"create_ticket","description":"Open a ticket","inputSchema":{"type":"object"}},"#,
    r#"{"name":"update_ticket","description":"Edit a ticket","inputSchema":{"type":"object"}},"#,
    r#"{"name":"delete_page","description":"Delete a page","inputSchema":{"type":"object"}},"#,
    r#"{"name":"drop_table","description":"Drop a table","inputSchema":{"type":"object"}},"#,
    r#"{"name":"run_query","description":"Run SQL","inputSchema":{"type":"object"}},"#,
    r#"{"name":"send_email","description":"Send mail","inputSchema":{"type":"object"}},"#,
    r#"{"name":"get_weather","description":"Weather","inputSchema":{"type":"object"}},"#,
    r#"{"name":"list_users","description":"List users","inputSchema":{"type":"object"}},"#,
    r#"{"name":"search_code","description":"Search code","inputSchema":{"type":"object"}},"#,
    r#"{"name":"read_file","description":"Read a file","inputSchema":{"type":"object"}},"#,
    r#"{"name":"write_file","description":"Write a file","inputSchema":{"type":"object"}},"#,
    r#"{"name":"k8s_get_pods","description":"List pods","inputSchema":{"type":"object"}},"#,
    r#"{"name":"k8s_delete_pod","description":"Delete a pod","inputSchema":{"type":"object"}},"#,
    r#"{"name":"slack_post","description":"Post to Slack","inputSchema":{"type":"object"}},"#,
    r#"{"name":"jira_create","description":"Create an issue","inputSchema":{"type":"object"}},"#,
    r#"{"name":"metrics_query","description":"Query metrics","inputSchema":{"type":"object"}},"#,
    r#"{"name":"purge_cache","description":"Purge the cache","inputSchema":{"type":"object"}}"#,
    r#"]}}"#
);

/// Reads (and so drains) the body, then answers: a tool list for `tools/list`, else a
/// small `tools/call` result.
async fn answer(body: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    let list = body.windows(12).any(|w| w == b"\"tools/list\"");
    ([(CONTENT_TYPE, "application/json")], if list { TOOLS } else { RESULT })
}

struct Args {
    threads: usize,
    ready_file: Option<PathBuf>,
}

fn args() -> Args {
    let mut out = Args { threads: 1, ready_file: None };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => out.threads = it.next().and_then(|v| v.parse().ok()).expect("--threads N (N >= 1)"),
            "--ready-file" => out.ready_file = it.next().map(PathBuf::from),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(out.threads >= 1, "--threads must be at least 1");
    out
}

fn main() {
    let args = args();
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        if let Some(path) = &args.ready_file {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{{\"port\":{}}}", addr.port())).expect("write the ready file");
            std::fs::rename(&tmp, path).expect("publish the ready file");
        }
        eprintln!("bench_upstream: listening on {addr} ({} thread(s))", args.threads);
        axum::serve(listener, Router::new().fallback(answer)).await.expect("serve");
    });
}
