//! `check --envoy`'s edge invariants (issue 28, docs/envoy.md): what keeps a client-facing
//! listener — one whose HTTP connection manager runs ext_authz — alive and quiet. Each is a
//! warning (legal, but unsafe at a public edge; `--strict` fails on it), at the node that
//! lacks it. The thresholds are the ones docs/envoy.md argues and the shipped configs hold.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use yaml_serde::Value;

use super::{Report, type_of, typed, walk};

const DOWNSTREAM_CONNECTIONS: &str =
    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig";
const ROUTER: &str = "envoy.extensions.filters.http.router.v3.Router";
const UPSTREAM_TLS: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// HTTP/2 streams per client connection: ext_authz holds each body (≤ 1 MiB) until it ends,
/// so one connection can park this many MiB (docs/envoy.md: 100; Envoy's default 1,024).
const MAX_CONCURRENT_STREAMS: u64 = 128;
/// What a client may send per stream before Envoy reads it (Envoy's default: 16 MiB).
const MAX_STREAM_WINDOW: u64 = 1 << 20;
/// And per connection.
const MAX_CONNECTION_WINDOW: u64 = 16 << 20;
/// Envoy's default circuit-breaker `max_requests`: ~1,024 open SSE sessions starve tools/call.
const DEFAULT_MAX_REQUESTS: u64 = 1024;

/// An access-log operator printing what a client chose, and its `:N` length if any.
static CLIENT_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"%(REQ|DYNAMIC_METADATA)\(([^)]*)\)(:\d+)?%").expect("static regex"));

/// Process-wide settings, checked once when some listener faces clients: the overload
/// manager's connection limit (returned when set), the admin interface, upstream TLS.
pub(super) fn check_process(r: &mut Report<'_>, doc: &Value) -> Option<u64> {
    let limit = match doc.get("overload_manager") {
        None => {
            r.warn("", "no overload_manager: no limit on downstream connections nor on Envoy's memory".into());
            None
        }
        Some(o) => {
            let monitors = o.get("resource_monitors").and_then(Value::as_sequence).map_or(&[][..], Vec::as_slice);
            let limit = monitors.iter().find_map(|m| {
                let c = m.get("typed_config").filter(|c| type_of(c) == Some(DOWNSTREAM_CONNECTIONS))?;
                Some(c.get("max_active_downstream_connections").and_then(Value::as_u64).unwrap_or(0))
            });
            if limit.is_none() {
                r.warn(
                    "overload_manager",
                    "no envoy.resource_monitors.global_downstream_max_connections: no limit on downstream connections"
                        .into(),
                );
            }
            limit
        }
    };
    if doc.get("admin").and_then(|a| a.get("address")).and_then(|a| a.get("socket_address")).is_some() {
        r.warn("admin.address.socket_address", "the admin API listens on TCP: any process that reaches it can /quitquitquit, /runtime_modify or /config_dump; bind it to a pipe (mode 0600)".into());
    }
    typed(doc, String::new(), &mut |path, t, v| {
        if t == UPSTREAM_TLS {
            check_upstream_tls(r, path, v);
        }
    });
    limit
}

fn check_upstream_tls(r: &mut Report<'_>, path: &str, ctx: &Value) {
    let params = ctx.get("common_tls_context").and_then(|c| c.get("tls_params"));
    let version = |k: &str| params.and_then(|p| p.get(k)).and_then(Value::as_str);
    let at = if params.is_some() { format!("{path}.common_tls_context.tls_params") } else { path.to_owned() };
    if version("tls_maximum_protocol_version") != Some("TLSv1_3") {
        r.warn(&at, "tls_maximum_protocol_version is not TLSv1_3 (Envoy's client default stops at 1.2): a TLS-1.3-only upstream refuses the handshake".into());
    }
    if matches!(version("tls_minimum_protocol_version"), Some("TLSv1_0" | "TLSv1_1")) {
        r.warn(&at, "tls_minimum_protocol_version below TLSv1_2".into());
    }
}

/// One client-facing connection manager at `path`; `upstreams` are the clusters its routes
/// send to that are not mcp-warden's, as `(index in static_resources.clusters, node)`.
pub(super) fn check_manager(
    r: &mut Report<'_>,
    doc: &Value,
    path: &str,
    hcm: &Value,
    upstreams: &[(usize, &Value)],
    limit: Option<u64>,
) {
    let field = |k: &str| format!("{path}.{k}");
    if let Some(listener) = listener_of(path)
        && doc
            .get("static_resources")
            .and_then(|s| s.get("listeners"))
            .and_then(|l| l.get(listener.1))
            .is_some_and(|l| l.get("per_connection_buffer_limit_bytes").is_none())
    {
        r.warn(&listener.0, "no explicit per_connection_buffer_limit_bytes: the list filter buffers a whole JSON list (up to 512 KiB) within it; set it (1 MiB, at least twice that)".into());
    }
    if hcm.get("server_header_transformation").and_then(Value::as_str) != Some("PASS_THROUGH") {
        r.warn(path, "server_header_transformation is not PASS_THROUGH: every answer says `server: envoy`".into());
    }
    let common = hcm.get("common_http_protocol_options");
    if common.and_then(|c| c.get("headers_with_underscores_action")).and_then(Value::as_str) != Some("REJECT_REQUEST") {
        let at = if common.is_some() { field("common_http_protocol_options") } else { path.to_owned() };
        r.warn(&at, "headers_with_underscores_action is not REJECT_REQUEST: `mcp_method: tools/list` reaches the upstream, and some servers read `_` and `-` alike".into());
    }
    if hcm.get("request_headers_timeout").and_then(Value::as_str).is_none_or(is_zero) {
        r.warn(path, "no request_headers_timeout: a client trickling its headers (slowloris) holds its connection for ever; 10s is ample".into());
    }
    if hcm.get("codec_type").and_then(Value::as_str) != Some("HTTP1") {
        check_http2(r, path, hcm);
    }
    if hcm.get("local_reply_config").is_none() {
        r.warn(
            path,
            "no local_reply_config: Envoy's own errors (413, 503, 408…) reach MCP clients as text/plain, not JSON-RPC"
                .into(),
        );
    }
    let filters = hcm.get("http_filters").and_then(Value::as_sequence).map_or(&[][..], Vec::as_slice);
    for (i, f) in filters.iter().enumerate() {
        let config = f.get("typed_config");
        if config.and_then(type_of) == Some(ROUTER)
            && config.and_then(|c| c.get("suppress_envoy_headers")).and_then(Value::as_bool) != Some(true)
        {
            r.warn(&format!("{path}.http_filters[{i}]"), "the router's suppress_envoy_headers is not true: x-envoy-upstream-service-time and the like are disclosed".into());
        }
    }
    if let Some(logs) = hcm.get("access_log") {
        check_log_lengths(r, &field("access_log"), logs);
    }
    check_breakers(r, upstreams, limit);
}

/// `static_resources.listeners[N]` and N, from a connection manager's path in it.
fn listener_of(path: &str) -> Option<(String, usize)> {
    let rest = path.strip_prefix("static_resources.listeners[")?;
    let (n, _) = rest.split_once(']')?;
    Some((format!("static_resources.listeners[{n}]"), n.parse().ok()?))
}

fn is_zero(d: &str) -> bool {
    d.trim_end_matches('s').parse::<f64>().is_ok_and(|s| s == 0.0)
}

fn check_http2(r: &mut Report<'_>, path: &str, hcm: &Value) {
    let h2 = hcm.get("http2_protocol_options");
    let at = if h2.is_some() { format!("{path}.http2_protocol_options") } else { path.to_owned() };
    let get = |k: &str| h2.and_then(|h| h.get(k)).and_then(Value::as_u64);
    let limits = [
        (
            "max_concurrent_streams",
            MAX_CONCURRENT_STREAMS,
            "Envoy's default 1,024 streams, each holding up to a whole body in ext_authz, let one connection park ~1 GiB",
        ),
        (
            "initial_stream_window_size",
            MAX_STREAM_WINDOW,
            "Envoy's default lets a client send 16 MiB per stream before Envoy reads it",
        ),
        (
            "initial_connection_window_size",
            MAX_CONNECTION_WINDOW,
            "what a client may have in flight on one connection, all its streams together, before Envoy reads it",
        ),
    ];
    for (key, max, why) in limits {
        match get(key) {
            None => r.warn(&at, format!("HTTP/2 {key} unset (at most {max}): {why}")),
            Some(v) if v > max => r.warn(&format!("{at}.{key}"), format!("{v} is above {max}: {why}")),
            Some(_) => {}
        }
    }
}

/// Every `%REQ(…)%` and `%DYNAMIC_METADATA(…)%` in an access log format carries a `:N`
/// length: those print what a client chose, and a 1 MiB tool name would make a 1 MiB line.
fn check_log_lengths(r: &mut Report<'_>, path: &str, logs: &Value) {
    walk(logs, path.to_owned(), &mut |path, v| {
        for c in v.as_str().into_iter().flat_map(|s| CLIENT_VALUE.captures_iter(s)).filter(|c| c.get(3).is_none()) {
            r.warn(path, format!("%{}({})% has no length (`:N`): a client's value is logged whole", &c[1], &c[2]));
        }
    });
}

/// The upstream cluster's circuit breakers admit as many requests as Envoy admits
/// connections: every open GET (SSE) stream holds one request for as long as it lasts.
fn check_breakers(r: &mut Report<'_>, upstreams: &[(usize, &Value)], limit: Option<u64>) {
    let floor = limit.unwrap_or(DEFAULT_MAX_REQUESTS + 1);
    let mut seen = HashSet::new();
    for &(i, cluster) in upstreams.iter().filter(|(i, _)| seen.insert(*i)) {
        let thresholds = cluster.get("circuit_breakers").and_then(|c| c.get("thresholds")).and_then(Value::as_sequence);
        let default = thresholds
            .into_iter()
            .flatten()
            .enumerate()
            .find(|(_, t)| t.get("priority").and_then(Value::as_str).is_none_or(|p| p == "DEFAULT"));
        let max =
            default.and_then(|(_, t)| t.get("max_requests")).and_then(Value::as_u64).unwrap_or(DEFAULT_MAX_REQUESTS);
        if max < floor {
            let at = match default {
                Some((j, _)) => format!("static_resources.clusters[{i}].circuit_breakers.thresholds[{j}]"),
                None => format!("static_resources.clusters[{i}]"),
            };
            let why = limit.map_or_else(
                || format!("max_requests {max} is Envoy's default or below"),
                |l| format!("max_requests {max} is below the overload manager's {l} downstream connections"),
            );
            r.warn(&at, format!("{why}: every open SSE stream holds a request, so ~{max} connected sessions make every new tools/call a 503 (UO); set max_requests and max_connections to the connection limit"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::check;
    use crate::config::Config;
    use crate::preflight::{Finding, Severity};

    fn findings(text: &str, config: &str) -> Vec<Finding> {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("envoy.yaml");
        std::fs::write(&file, text).expect("write");
        let config = Config::from_file(Path::new(config)).expect("service config");
        let mut out = Vec::new();
        check(&file, &config, None, &mut out);
        out
    }

    #[test]
    fn every_shipped_envoy_config_holds_the_edge_invariants() {
        for (envoy, config) in [
            ("envoy/envoy.yaml", "deploy/agentcore/warden.yaml"),
            ("deploy/kubernetes/base/config/envoy.yaml", "deploy/agentcore/warden.yaml"),
            ("envoy/envoy-compose.yaml", "deploy/compose/warden.yaml"),
            ("envoy/envoy-demo.yaml", "deploy/compose/warden.yaml"),
        ] {
            let text = std::fs::read_to_string(envoy).expect("shipped config");
            let f = findings(&text, config);
            assert!(f.is_empty(), "{envoy}: {f:#?}");
        }
    }

    const HCM_LINE: &str = "\"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager";

    /// Each edge setting taken out of (or weakened in) envoy/envoy.yaml: `(from, to,
    /// message, line)` replaces `from` with `to`, and the one warning expected names
    /// `message` on the line of `line` in the changed text (none checked when empty).
    const EDGE_CASES: &[(&str, &str, &str, &str)] = &[
        (
            "pipe: {path: /tmp/envoy-admin.sock, mode: 384}",
            "socket_address: {address: 127.0.0.1, port_value: 9901}",
            "admin API listens on TCP",
            "port_value: 9901",
        ),
        (
            "DownstreamConnectionsConfig",
            "FixedHeapConfig",
            "no envoy.resource_monitors.global_downstream_max_connections",
            "refresh_interval:",
        ),
        ("overload_manager:", "unused_overload_manager:", "no overload_manager", ""),
        (
            "    per_connection_buffer_limit_bytes: 1048576\n    # TCP",
            "    # TCP",
            "no explicit per_connection_buffer_limit_bytes",
            "- name: mcp_ingress_tls",
        ),
        ("request_headers_timeout: 10s", "request_headers_timeout: 0s", "no request_headers_timeout", HCM_LINE),
        (
            "server_header_transformation: PASS_THROUGH",
            "server_header_transformation: OVERWRITE",
            "server_header_transformation is not PASS_THROUGH",
            HCM_LINE,
        ),
        ("local_reply_config:", "unused_local_reply_config:", "no local_reply_config", HCM_LINE),
        (
            "headers_with_underscores_action: REJECT_REQUEST",
            "headers_with_underscores_action: ALLOW",
            "headers_with_underscores_action is not REJECT_REQUEST",
            "idle_timeout: 300s",
        ),
        (
            "max_concurrent_streams: 100",
            "max_concurrent_streams: 1024",
            "1024 is above 128",
            "max_concurrent_streams: 1024",
        ),
        (
            "            initial_stream_window_size: 65536\n",
            "",
            "initial_stream_window_size unset",
            "max_concurrent_streams: 100",
        ),
        (
            "initial_connection_window_size: 1048576",
            "initial_connection_window_size: 33554432",
            "33554432 is above 16777216",
            "initial_connection_window_size:",
        ),
        ("%REQ(USER-AGENT):128%", "%REQ(USER-AGENT)%", "%REQ(USER-AGENT)% has no length", "user_agent:"),
        (
            "ext_authz:tool):128%",
            "ext_authz:tool)%",
            "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:tool)% has no length",
            "tool: \"%DYN",
        ),
        (
            "Router\n              suppress_envoy_headers: true",
            "Router",
            "suppress_envoy_headers is not true",
            "- name: envoy.filters.http.router",
        ),
        (
            "        max_requests: 10000\n",
            "",
            "max_requests 1024 is below the overload manager's 10000",
            "- priority: DEFAULT",
        ),
        (
            "TLSv1_3}\n          validation_context",
            "TLSv1_2}\n          validation_context",
            "tls_maximum_protocol_version is not TLSv1_3",
            "tls_maximum_protocol_version: TLSv1_2}",
        ),
        (
            "tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3}\n          validation_context",
            "tls_minimum_protocol_version: TLSv1_1, tls_maximum_protocol_version: TLSv1_3}\n          validation_context",
            "below TLSv1_2",
            "TLSv1_1",
        ),
    ];

    /// Each edge setting taken out of (or weakened in) envoy/envoy.yaml: exactly one warning,
    /// naming it, on the line of `line` in the changed text: the node that lacks it (a
    /// mapping is located at its first key).
    #[test]
    fn each_missing_edge_setting_is_one_warning_at_its_node() {
        let shipped = std::fs::read_to_string("envoy/envoy.yaml").expect("envoy.yaml");
        for &(from, to, message, line) in EDGE_CASES {
            assert!(shipped.contains(from), "{from}");
            let text = shipped.replacen(from, to, 1);
            let f = findings(&text, "deploy/agentcore/warden.yaml");
            assert!(
                f.len() == 1 && f[0].severity == Severity::Warning && f[0].message.contains(message),
                "{from}: {f:#?}"
            );
            if !line.is_empty() {
                let at = text[..text.find(line).expect("line needle")].matches('\n').count() + 1;
                assert_eq!(f[0].at.line as usize, at, "{from}: {}", f[0]);
            }
        }
    }
}
