//! `check --envoy`: an Envoy config cross-checked against ours. Filters are found by their
//! `typed_config` `@type` wherever they sit (plain, wrapped in an `ExtensionWithMatcher`,
//! reordered, commented), never by the shape of lines, so hardened configs read like the
//! shipped ones.
//!
//! Checked: the ext_authz filter fails closed, sends the body unmodified
//! (`with_request_body` + `pack_as_bytes`) with `max_request_bytes` equal to
//! `inspection.max_body_bytes`; every route's `context_extensions.app` names an app; the
//! list filter (ext_proc) comes after ext_authz inside its matcher, which reads ext_authz's
//! decision, forwarded to it; discovery and JWKS
//! routes exist with ext_authz disabled; the clusters they use point at our listeners. A
//! client-facing listener (its manager runs ext_authz) is also held to the edge limits
//! (`edge.rs`, warnings).

mod edge;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use yaml_serde::Value;

use super::{Finding, Severity};
use crate::config::{Config, GrpcListen};
use crate::extproc::EXT_AUTHZ_NAMESPACE;
use warden_core::located::{Loc, join, locate};
use warden_core::policy::Policy;

const EXT_AUTHZ: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
const EXT_AUTHZ_PER_ROUTE: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
const EXT_PROC: &str = "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor";
const WITH_MATCHER: &str = "envoy.extensions.common.matching.v3.ExtensionWithMatcher";
const DYNAMIC_METADATA_INPUT: &str = "envoy.extensions.matching.common_inputs.network.v3.DynamicMetadataInput";
const HCM: &str = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// Paths AgentCore fetches; both must reach mcp-warden's HTTP listener unchecked.
const WELL_KNOWN: [&str; 2] = ["/.well-known/openid-configuration", "/.well-known/jwks-oidc"];

/// Where a finding points: the file and the node at a field path.
struct Report<'a> {
    file: String,
    text: String,
    out: &'a mut Vec<Finding>,
}

impl Report<'_> {
    fn push(&mut self, severity: Severity, path: &str, message: String) {
        let at = locate(&self.text, 0, path).map_or_else(|| Loc::file(&self.file), |a| Loc::at(&self.file, a));
        let field = if path.is_empty() { "(document)" } else { path };
        self.out.push(Finding { severity, at, message: format!("{field}: {message}") });
    }
    fn error(&mut self, path: &str, message: String) {
        self.push(Severity::Error, path, message);
    }
    fn warn(&mut self, path: &str, message: String) {
        self.push(Severity::Warning, path, message);
    }
}

/// Cross-checks one Envoy config; findings go to `out`.
pub(super) fn check(file: &Path, config: &Config, policy: Option<&Policy>, out: &mut Vec<Finding>) {
    let name = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            out.push(Finding { severity: Severity::Error, at: Loc::file(&name), message: format!("cannot read: {e}") });
            return;
        }
    };
    let doc: Value = match yaml_serde::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let (at, message) = warden_core::located::yaml_error(&e);
            let at = at.map_or_else(|| Loc::file(&name), |a| Loc::at(&name, a));
            out.push(Finding { severity: Severity::Error, at, message });
            return;
        }
    };
    let mut r = Report { file: name, text, out };
    let clusters = clusters(&doc);
    let mut managers = Vec::new();
    typed(&doc, String::new(), &mut |path, t, v| {
        if t == HCM {
            managers.push((path.to_owned(), v.clone()));
        }
    });
    if managers.is_empty() {
        r.error("", "no http_connection_manager: not an Envoy config for mcp-warden".into());
    }
    for (path, hcm) in &managers {
        check_manager(&mut r, path, hcm, config, policy, &clusters);
    }
    let facing: Vec<_> = managers.iter().filter(|(_, hcm)| has_authz(hcm)).collect();
    if let (true, Some((path, _))) = (facing.is_empty(), managers.first()) {
        r.error(&format!("{path}.http_filters"), "no ext_authz filter: nothing asks mcp-warden".into());
    } else if !facing.is_empty() {
        let limit = edge::check_process(&mut r, &doc);
        for (path, hcm) in facing {
            let upstreams = upstreams(&doc, hcm, config, &clusters);
            edge::check_manager(&mut r, &doc, path, hcm, &upstreams, limit);
        }
    }
}

/// Whether a connection manager faces clients: it runs ext_authz.
fn has_authz(hcm: &Value) -> bool {
    let filters = hcm.get("http_filters").and_then(Value::as_sequence);
    filters.into_iter().flatten().any(|f| matches!(filter_kind(f), Some((_, Kind::Authz))))
}

/// The upstream MCP servers: the clusters `hcm`'s checked routes (ext_authz not disabled)
/// send to, but for mcp-warden's HTTP listener, with their index in static_resources.clusters.
fn upstreams<'a>(
    doc: &'a Value,
    hcm: &Value,
    config: &Config,
    clusters: &HashMap<String, Vec<Endpoint>>,
) -> Vec<(usize, &'a Value)> {
    let unchecked = |route: &Value| {
        let per_filter = route.get("typed_per_filter_config").and_then(Value::as_mapping);
        per_filter.into_iter().flatten().any(|(_, c)| {
            type_of(c) == Some(EXT_AUTHZ_PER_ROUTE) && c.get("disabled").and_then(Value::as_bool) == Some(true)
        })
    };
    let defined = doc.get("static_resources").and_then(|s| s.get("clusters")).and_then(Value::as_sequence);
    let hosts = hcm.get("route_config").and_then(|c| c.get("virtual_hosts")).and_then(Value::as_sequence);
    let routes = hosts.into_iter().flatten().filter_map(|h| h.get("routes")?.as_sequence()).flatten();
    routes
        .filter(|r| !unchecked(r))
        .filter_map(|r| r.get("route")?.get("cluster")?.as_str())
        .filter(|name| reaches(clusters, name, &Listener::Http(config.http_listen)).is_err())
        .filter_map(|name| {
            defined?.iter().enumerate().find(|(_, c)| c.get("name").and_then(Value::as_str) == Some(name))
        })
        .collect()
}

/// Each node with a typed `@type`, with its field path: `(path, type name, node)`.
fn typed(v: &Value, path: String, f: &mut dyn FnMut(&str, &str, &Value)) {
    walk(v, path, &mut |path, node| {
        if let Some(t) = type_of(node) {
            f(path, t, node);
        }
    });
}

/// Every node under `v` (itself included), with its field path.
fn walk(v: &Value, path: String, f: &mut dyn FnMut(&str, &Value)) {
    if let Value::Tagged(t) = v {
        return walk(&t.value, path, f);
    }
    f(&path, v);
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                if let Some(k) = k.as_str() {
                    walk(child, join(&path, k), f);
                }
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), f);
            }
        }
        _ => {}
    }
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("@type")?.as_str().map(|t| t.rsplit('/').next().unwrap_or(t))
}

/// An http filter's role: `(name, is ext_authz, ext_proc inside a matcher?)`.
fn filter_kind(filter: &Value) -> Option<(&str, Kind)> {
    let name = filter.get("name").and_then(Value::as_str).unwrap_or("");
    let config = filter.get("typed_config")?;
    match type_of(config)? {
        EXT_AUTHZ => Some((name, Kind::Authz)),
        EXT_PROC => Some((name, Kind::List { matcher: false })),
        WITH_MATCHER => {
            let inner = config.get("extension_config")?.get("typed_config")?;
            (type_of(inner)? == EXT_PROC).then_some((name, Kind::List { matcher: true }))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Authz,
    List { matcher: bool },
}

fn check_manager(
    r: &mut Report<'_>,
    path: &str,
    hcm: &Value,
    config: &Config,
    policy: Option<&Policy>,
    clusters: &HashMap<String, Vec<Endpoint>>,
) {
    let filters = hcm.get("http_filters").and_then(Value::as_sequence).map_or(&[][..], Vec::as_slice);
    let mut authz: Option<(usize, &str)> = None;
    let mut list = None;
    for (i, f) in filters.iter().enumerate() {
        let fpath = format!("{path}.http_filters[{i}]");
        match filter_kind(f) {
            Some((name, Kind::Authz)) => {
                authz = Some((i, name));
                check_authz(r, &format!("{fpath}.typed_config"), &f["typed_config"], config, clusters);
            }
            Some((_, Kind::List { matcher })) => {
                list = Some(i);
                if authz.is_none() {
                    r.error(
                        &fpath,
                        "the list filter runs before ext_authz: it would act on unchecked requests' decisions".into(),
                    );
                }
                if !matcher {
                    r.error(&fpath, "the list filter (ext_proc) is not wrapped in its ExtensionWithMatcher: every response would be sent to it, including ones ext_authz never allowed as list calls".into());
                }
                let inner =
                    if matcher { &f["typed_config"]["extension_config"]["typed_config"] } else { &f["typed_config"] };
                let ipath = if matcher {
                    format!("{fpath}.typed_config.extension_config.typed_config")
                } else {
                    format!("{fpath}.typed_config")
                };
                check_grpc_cluster(r, &ipath, inner, config, clusters);
                check_list_inputs(r, &fpath, f, &ipath, inner, matcher);
                if inner.get("failure_mode_allow").and_then(Value::as_bool) == Some(true) {
                    r.error(
                        &format!("{ipath}.failure_mode_allow"),
                        "must be false: a list filter that fails open shows hidden tools".into(),
                    );
                }
            }
            None => {}
        }
    }
    // Without ext_authz a manager is not mcp-warden's (a health listener, say): `check`
    // reports when none has it.
    let Some((_, authz_name)) = authz else { return };
    if list.is_none() {
        r.warn(
            &format!("{path}.http_filters"),
            "no list filter (ext_proc after ext_authz): tools/list answers are not filtered".into(),
        );
    }
    check_routes(r, path, hcm, authz_name, config, policy, clusters);
}

/// The list filter acts on ext_authz's decision: its matcher must read that metadata, and
/// the metadata must be forwarded to it (else every list answer becomes an error).
fn check_list_inputs(r: &mut Report<'_>, fpath: &str, filter: &Value, ipath: &str, inner: &Value, matcher: bool) {
    let reads_decision = |v: &Value| {
        let mut found = false;
        typed(v, String::new(), &mut |_, t, node| {
            found |=
                t == DYNAMIC_METADATA_INPUT && node.get("filter").and_then(Value::as_str) == Some(EXT_AUTHZ_NAMESPACE);
        });
        found
    };
    if matcher && !filter["typed_config"].get("xds_matcher").is_some_and(reads_decision) {
        r.error(
            &format!("{fpath}.typed_config.xds_matcher"),
            format!("the matcher does not read {EXT_AUTHZ_NAMESPACE} metadata: the list filter would run without ext_authz's decision"),
        );
    }
    let forwarded = inner
        .get("metadata_options")
        .and_then(|m| m.get("forwarding_namespaces"))
        .and_then(|n| n.get("untyped"))
        .and_then(Value::as_sequence)
        .is_some_and(|l| l.iter().any(|n| n.as_str() == Some(EXT_AUTHZ_NAMESPACE)));
    if !forwarded {
        r.error(
            &format!("{ipath}.metadata_options"),
            format!("forwarding_namespaces.untyped lacks {EXT_AUTHZ_NAMESPACE}: the list filter cannot see who asked and answers every list with an error"),
        );
    }
}

fn check_authz(r: &mut Report<'_>, path: &str, c: &Value, config: &Config, clusters: &HashMap<String, Vec<Endpoint>>) {
    if c.get("failure_mode_allow").and_then(Value::as_bool) == Some(true) {
        r.error(
            &format!("{path}.failure_mode_allow"),
            "must be false: with mcp-warden down every request would pass".into(),
        );
    }
    match c.get("with_request_body") {
        None => {
            r.error(path, "no with_request_body: mcp-warden cannot see the JSON-RPC body and denies every call".into())
        }
        Some(b) => {
            let bpath = format!("{path}.with_request_body");
            if b.get("pack_as_bytes").and_then(Value::as_bool) != Some(true) {
                r.error(
                    &format!("{bpath}.pack_as_bytes"),
                    "must be true: the body must arrive unmodified in raw_body".into(),
                );
            }
            let max = b.get("max_request_bytes").and_then(Value::as_u64);
            let ours = config.limits.max_body_bytes as u64;
            if max != Some(ours) {
                let theirs = max.map_or_else(|| "unset".to_owned(), |m| m.to_string());
                r.error(
                    &format!("{bpath}.max_request_bytes"),
                    format!("{theirs} differs from inspection.max_body_bytes ({ours}): set both to the same value"),
                );
            }
        }
    }
    check_grpc_cluster(r, path, c, config, clusters);
}

/// A gRPC filter's `envoy_grpc.cluster_name` must reach our gRPC listener.
fn check_grpc_cluster(
    r: &mut Report<'_>,
    path: &str,
    c: &Value,
    config: &Config,
    clusters: &HashMap<String, Vec<Endpoint>>,
) {
    let Some(name) = c
        .get("grpc_service")
        .and_then(|g| g.get("envoy_grpc"))
        .and_then(|e| e.get("cluster_name"))
        .and_then(Value::as_str)
    else {
        r.error(&format!("{path}.grpc_service"), "no grpc_service.envoy_grpc.cluster_name".into());
        return;
    };
    let field = format!("{path}.grpc_service.envoy_grpc.cluster_name");
    if let Err(e) = reaches(clusters, name, &Listener::Grpc(&config.grpc_listen)) {
        r.error(&field, e.to_string());
    }
}

fn check_routes(
    r: &mut Report<'_>,
    path: &str,
    hcm: &Value,
    authz_name: &str,
    config: &Config,
    policy: Option<&Policy>,
    clusters: &HashMap<String, Vec<Endpoint>>,
) {
    let mut served = [false; 2];
    let hosts = hcm.get("route_config").and_then(|c| c.get("virtual_hosts")).and_then(Value::as_sequence);
    for (h, host) in hosts.into_iter().flatten().enumerate() {
        let routes = host.get("routes").and_then(Value::as_sequence);
        for (i, route) in routes.into_iter().flatten().enumerate() {
            let rpath = format!("{path}.route_config.virtual_hosts[{h}].routes[{i}]");
            let per_route = route.get("typed_per_filter_config").and_then(|t| t.get(authz_name));
            let per_route_path = join(&format!("{rpath}.typed_per_filter_config"), authz_name);
            let disabled = per_route.and_then(|p| p.get("disabled")).and_then(Value::as_bool) == Some(true);
            let app = per_route
                .filter(|p| type_of(p) == Some(EXT_AUTHZ_PER_ROUTE))
                .and_then(|p| p.get("check_settings")?.get("context_extensions")?.get("app")?.as_str());
            if let (Some(app), Some(policy)) = (app, policy)
                && policy.app(app).is_none()
            {
                let field = format!("{per_route_path}.check_settings.context_extensions.app");
                r.error(&field, format!("'{app}' is not an app in the policy: every request on this route is denied"));
            }
            let m = route.get("match");
            let exact = m.and_then(|m| m.get("path")).and_then(Value::as_str);
            let prefix = m.and_then(|m| m.get("prefix")).and_then(Value::as_str);
            for (k, wk) in WELL_KNOWN.iter().enumerate() {
                let hit = exact == Some(wk) || prefix.is_some_and(|p| p != "/" && wk.starts_with(p));
                if !hit || served[k] {
                    continue;
                }
                served[k] = true;
                if !disabled {
                    r.error(&rpath, format!("{wk}: ext_authz is not disabled on this route: AgentCore fetches it without credentials and is refused"));
                }
                let cluster = route.get("route").and_then(|x| x.get("cluster")).and_then(Value::as_str);
                match cluster {
                    Some(c) => {
                        if let Err(e) = reaches(clusters, c, &Listener::Http(config.http_listen)) {
                            r.error(&format!("{rpath}.route.cluster"), e.to_string());
                        }
                    }
                    None => r.error(&rpath, format!("{wk}: the route does not forward to a cluster")),
                }
            }
        }
    }
    for (k, wk) in WELL_KNOWN.iter().enumerate() {
        if !served[k] {
            r.error(
                &format!("{path}.route_config"),
                format!("no route for {wk}: AgentCore cannot fetch it through Envoy"),
            );
        }
    }
}

/// One cluster endpoint.
#[derive(Debug)]
enum Endpoint {
    Socket { address: String, port: Option<u64> },
    Pipe(String),
}

enum Listener<'a> {
    Grpc(&'a GrpcListen),
    Http(std::net::SocketAddr),
}

/// Clusters by name with their endpoints (static_resources.clusters).
fn clusters(doc: &Value) -> HashMap<String, Vec<Endpoint>> {
    let mut out = HashMap::new();
    let list = doc.get("static_resources").and_then(|s| s.get("clusters")).and_then(Value::as_sequence);
    for c in list.into_iter().flatten() {
        let Some(name) = c.get("name").and_then(Value::as_str) else { continue };
        let mut endpoints = Vec::new();
        let groups = c.get("load_assignment").and_then(|l| l.get("endpoints")).and_then(Value::as_sequence);
        for lb in groups.into_iter().flatten().filter_map(|g| g.get("lb_endpoints")?.as_sequence()).flatten() {
            let Some(addr) = lb.get("endpoint").and_then(|e| e.get("address")) else { continue };
            if let Some(s) = addr.get("socket_address") {
                let address = s.get("address").and_then(Value::as_str).unwrap_or("").to_owned();
                endpoints.push(Endpoint::Socket { address, port: s.get("port_value").and_then(Value::as_u64) });
            } else if let Some(p) = addr.get("pipe").and_then(|p| p.get("path")).and_then(Value::as_str) {
                endpoints.push(Endpoint::Pipe(p.to_owned()));
            }
        }
        out.insert(name.to_owned(), endpoints);
    }
    out
}

/// Why a cluster does not reach one of our listeners, naming the cluster and the listener.
#[derive(Debug, thiserror::Error)]
enum Unreached {
    #[error("cluster '{0}' is not defined in static_resources.clusters")]
    Undefined(String),
    #[error("cluster '{cluster}' has no static endpoint to compare with {listener}")]
    NoEndpoint { cluster: String, listener: String },
    #[error("cluster '{cluster}' does not point at {listener}: {endpoints}")]
    Elsewhere { cluster: String, listener: String, endpoints: String },
}

/// Whether cluster `name` reaches `listener`: same port (same IP, unless ours listens on
/// every address or theirs is a host name), or the same Unix socket path.
fn reaches(clusters: &HashMap<String, Vec<Endpoint>>, name: &str, listener: &Listener<'_>) -> Result<(), Unreached> {
    let Some(endpoints) = clusters.get(name) else {
        return Err(Unreached::Undefined(name.to_owned()));
    };
    let ours = match listener {
        Listener::Grpc(GrpcListen::Tcp(a)) | Listener::Http(a) => Some(*a),
        Listener::Grpc(GrpcListen::Unix(_)) => None,
    };
    let ok = |e: &Endpoint| match (e, ours, listener) {
        (Endpoint::Socket { address, port }, Some(a), _) => {
            *port == Some(u64::from(a.port()))
                && (a.ip().is_unspecified() || address.parse::<IpAddr>().map_or(true, |ip| ip == a.ip()))
        }
        (Endpoint::Pipe(p), None, Listener::Grpc(GrpcListen::Unix(path))) => Path::new(p) == path.as_path(),
        _ => false,
    };
    let what = match listener {
        Listener::Grpc(g) => format!("listen.grpc ({g})"),
        Listener::Http(a) => format!("listen.http ({a})"),
    };
    match endpoints.as_slice() {
        [] => Err(Unreached::NoEndpoint { cluster: name.to_owned(), listener: what }),
        all if all.iter().all(ok) => Ok(()),
        _ => {
            Err(Unreached::Elsewhere { cluster: name.to_owned(), listener: what, endpoints: format!("{endpoints:?}") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "type.googleapis.com/";
    const CONNECTIONS: &str =
        "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig";

    /// A minimal Envoy config written as JSON (valid YAML), with the edge settings
    /// (`edge.rs`) and keys in another order than the shipped files: only the structure is read.
    fn envoy(authz_extra: &str, list: &str) -> String {
        let cluster = |name: &str, port: u16| {
            format!(
                r#"{{"name": "{name}", "load_assignment": {{"cluster_name": "{name}", "endpoints": [{{"lb_endpoints": [{{"endpoint": {{"address": {{"socket_address": {{"port_value": {port}, "address": "127.0.0.1"}}}}}}}}]}}]}}}}"#
            )
        };
        let well_known = |path: &str| {
            format!(
                r#"{{"typed_per_filter_config": {{"envoy.filters.http.ext_authz": {{"@type": "{T}{EXT_AUTHZ_PER_ROUTE}", "disabled": true}}}}, "route": {{"cluster": "w_http"}}, "match": {{"path": "{path}"}}}}"#
            )
        };
        format!(
            r#"{{"admin": {{"address": {{"pipe": {{"path": "/tmp/a.sock"}}}}}},
"overload_manager": {{"resource_monitors": [{{"typed_config": {{"@type": "{T}{CONNECTIONS}", "max_active_downstream_connections": 2000}}}}]}},
"static_resources": {{
  "clusters": [{}, {}, {{"name": "up", "circuit_breakers": {{"thresholds": [{{"max_requests": 2000}}]}}}}],
  "listeners": [{{"per_connection_buffer_limit_bytes": 1048576, "filter_chains": [{{"filters": [{{"typed_config": {{
    "@type": "{T}{HCM}", "server_header_transformation": "PASS_THROUGH", "request_headers_timeout": "10s",
    "common_http_protocol_options": {{"headers_with_underscores_action": "REJECT_REQUEST"}},
    "http2_protocol_options": {{"max_concurrent_streams": 100, "initial_stream_window_size": 65536, "initial_connection_window_size": 1048576}},
    "local_reply_config": {{"mappers": [{{"filter": {{"status_code_filter": {{"comparison": {{"op": "EQ", "value": {{"default_value": 503}}}}}}}}}}]}},
    "http_filters": [
      {{"name": "envoy.filters.http.ext_authz", "typed_config": {{"@type": "{T}{EXT_AUTHZ}", {authz_extra}
        "grpc_service": {{"envoy_grpc": {{"cluster_name": "w_grpc"}}}}}}}},
      {list}
      {{"name": "router", "typed_config": {{"@type": "{T}envoy.extensions.filters.http.router.v3.Router", "suppress_envoy_headers": true}}}}],
    "route_config": {{"virtual_hosts": [{{"routes": [{}, {},
      {{"match": {{"prefix": "/"}}, "route": {{"cluster": "up"}}, "typed_per_filter_config": {{"envoy.filters.http.ext_authz": {{"@type": "{T}{EXT_AUTHZ_PER_ROUTE}", "check_settings": {{"context_extensions": {{"app": "demo"}}}}}}}}}}]}}]}}
  }}}}]}}]}}]}}}}"#,
            cluster("w_grpc", 9191),
            cluster("w_http", 9192),
            well_known("/.well-known/openid-configuration"),
            well_known("/.well-known/jwks-oidc"),
        )
    }

    const BODY: &str =
        r#""with_request_body": {"pack_as_bytes": true, "max_request_bytes": 1048576}, "failure_mode_allow": false,"#;

    fn list(matcher: bool) -> String {
        let proc = format!(
            r#"{{"@type": "{T}{EXT_PROC}", "grpc_service": {{"envoy_grpc": {{"cluster_name": "w_grpc"}}}}, "metadata_options": {{"forwarding_namespaces": {{"untyped": ["{EXT_AUTHZ_NAMESPACE}"]}}}}}}"#
        );
        let input = format!(
            r#"{{"input": {{"typed_config": {{"@type": "{T}{DYNAMIC_METADATA_INPUT}", "filter": "{EXT_AUTHZ_NAMESPACE}"}}}}}}"#
        );
        if matcher {
            format!(
                r#"{{"name": "list", "typed_config": {{"@type": "{T}{WITH_MATCHER}", "xds_matcher": {input}, "extension_config": {{"name": "p", "typed_config": {proc}}}}}}},"#
            )
        } else {
            format!(r#"{{"name": "list", "typed_config": {proc}}},"#)
        }
    }

    fn findings(text: &str) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("envoy.yaml");
        std::fs::write(&file, text).expect("write");
        let config = Config::embedded_default();
        let policy = crate::policy_files::load(&config.policy).expect("demo policy");
        let mut out = Vec::new();
        check(&file, &config, Some(&policy), &mut out);
        out.iter().map(|f| format!("{:?} {}", f.severity, f.message)).collect()
    }

    #[test]
    fn a_config_read_by_structure_passes_whatever_its_layout() {
        assert_eq!(findings(&envoy(BODY, &list(true))), Vec::<String>::new());
    }

    #[test]
    fn each_mismatch_is_named() {
        let open = BODY.replace(r#""failure_mode_allow": false"#, r#""failure_mode_allow": true"#);
        let f = findings(&envoy(&open, &list(true)));
        assert!(f.len() == 1 && f[0].contains("failure_mode_allow: must be false"), "{f:?}");
        let f = findings(&envoy(&BODY.replace("1048576", "65536"), &list(true)));
        assert!(f.len() == 1 && f[0].contains("65536 differs from inspection.max_body_bytes (1048576)"), "{f:?}");
        let f = findings(&envoy(r#""failure_mode_allow": false,"#, &list(true)));
        assert!(f.len() == 1 && f[0].contains("no with_request_body"), "{f:?}");
        let f = findings(&envoy(BODY, &list(false)));
        assert!(f.len() == 1 && f[0].contains("not wrapped in its ExtensionWithMatcher"), "{f:?}");
        let f = findings(&envoy(
            BODY,
            &list(true).replace(&format!(r#""filter": "{EXT_AUTHZ_NAMESPACE}""#), r#""filter": "x""#),
        ));
        assert!(f.len() == 1 && f[0].contains("the matcher does not read"), "{f:?}");
        let f = findings(&envoy(BODY, &list(true).replace(&format!(r#"["{EXT_AUTHZ_NAMESPACE}"]"#), "[]")));
        assert!(f.len() == 1 && f[0].contains("forwarding_namespaces.untyped lacks"), "{f:?}");
        let f = findings(&envoy(BODY, ""));
        assert!(f.len() == 1 && f[0].starts_with("Warning") && f[0].contains("no list filter"), "{f:?}");
        let f = findings(&envoy(BODY, &list(true)).replace(r#""app": "demo""#, r#""app": "nope""#));
        assert!(f.len() == 1 && f[0].contains("'nope' is not an app"), "{f:?}");
        let f = findings(&envoy(BODY, &list(true)).replace("9192", "9999"));
        assert!(f.len() == 2 && f[0].contains("cluster 'w_http' does not point at listen.http"), "{f:?}");
        let f = findings(&envoy(BODY, &list(true)).replace(
            r#""disabled": true}}, "route": {"cluster": "w_http"}, "match": {"path": "/.well-known/jwks-oidc"}"#,
            r#""disabled": false}}, "route": {"cluster": "w_http"}, "match": {"path": "/.well-known/jwks-oidc"}"#,
        ));
        assert!(f.len() == 1 && f[0].contains("ext_authz is not disabled"), "{f:?}");
        let f = findings(&envoy(BODY, &list(true)).replace("/.well-known/openid-configuration", "/other"));
        assert!(f.len() == 1 && f[0].contains("no route for /.well-known/openid-configuration"), "{f:?}");
        let f = findings(&envoy(BODY, "").replace(&format!("{EXT_AUTHZ}\""), "other\""));
        assert!(f.len() == 1 && f[0].contains("no ext_authz filter: nothing asks mcp-warden"), "{f:?}");
    }
}
