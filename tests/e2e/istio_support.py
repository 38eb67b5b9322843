"""An Istio-like config for the ingress gateway, and EnvoyFilter patches applied to it as istiod
applies them, so tests can run `envoy --mode validate` on what the gateway would load.

`gateway_config` builds, from the rendered objects of deploy/istio/gateway and the IstioOperator
of deploy/istio/mesh-config.yaml, one static bootstrap shaped like what the Istio agent and istiod
give an ingress gateway: Istio's runtime flag for the connection limit, an HTTPS listener with one
SNI filter chain per Gateway server, Istio's HTTP connection manager settings and HTTP filters
(the CUSTOM policy's shadow RBAC and the extension provider's ext_authz, fault, cors, router with
the proxyHeaders settings), the VirtualService's routes (Istio's default retry policy where none is
given; each match one Envoy route named after the http route, its `method` a `:method` header
matcher) and outbound clusters named `outbound|<port>||<host>` with the DestinationRule's
connection pool and TLS origination (Istio's upstream TLS 1.2-1.3). Endpoints are loopback.

`apply_envoy_filters` applies every patch of every EnvoyFilter that selects the gateway, in
Istio's order (priority, then name), with Istio's semantics: MERGE is a protobuf merge (messages
merged, map fields merged entry by entry, lists appended, scalars replaced; a typed_config only
onto the same @type), INSERT_* place a filter relative to a named one, HTTP_ROUTE patches apply
to each route their route configuration, virtual host and route names select. It returns how
often each patch applied: Istio skips a patch that matches nothing silently, a test must not.

`select_route` picks the route Envoy would for a request, and `custom_policy_checks` says whether
an AuthorizationPolicy with `action: CUSTOM` sends a request to its provider (any rule matches).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

GATEWAY_LABELS = {"istio": "ingressgateway"}
HCM = "envoy.filters.network.http_connection_manager"
LISTENER_PORT = 8443  # the ingress gateway's container port behind Gateway port 443
ISTIO_RUNTIME = {"overload.global_downstream_max_connections": 2147483647, "re2.max_program_size.error_level": 32768}
# Istio's retry policy for a route whose VirtualService sets none.
ISTIO_DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
MAX = 4294967295
TYPES = "type.googleapis.com/envoy.extensions"


class PatchError(AssertionError):
    """An EnvoyFilter patch Istio would refuse or apply differently than this helper can say."""


def cluster_name(host: str, port: int) -> str:
    return f"outbound|{port}||{host}"


def _seconds(duration: str) -> int:
    assert duration.endswith("s") and duration[:-1].isdigit(), duration
    return int(duration[:-1])


# ---------------------------------------------------------------------------------------------
# The generated config
# ---------------------------------------------------------------------------------------------


def _typed(name: str, type_name: str) -> dict[str, Any]:
    return {"name": name, "typed_config": {"@type": f"{TYPES}.{type_name}"}}


def _endpoints(address: str, port: int) -> dict[str, Any]:
    return {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": address, "port_value": port}}}}]}


def _provider(mesh: dict[str, Any]) -> dict[str, Any]:
    """The mesh's ext_authz provider (the one extension provider of that type)."""
    (provider,) = [p for p in mesh["spec"]["meshConfig"]["extensionProviders"] if "envoyExtAuthzGrpc" in p]
    return dict(provider)


def _access_logs(objects: list[dict[str, Any]], mesh: dict[str, Any]) -> list[dict[str, Any]]:
    """The access loggers Istio puts on the gateway's HCM: one file logger per provider a
    Telemetry selects, its `logFormat.labels` as Envoy's JSON format."""
    providers = {p["name"]: p for p in mesh["spec"]["meshConfig"]["extensionProviders"]}
    logs = []
    for telemetry in (o for o in objects if o["kind"] == "Telemetry"):
        for logging in telemetry["spec"].get("accessLogging", []):
            for chosen in logging["providers"]:
                file_log = providers[chosen["name"]]["envoyFileAccessLog"]
                logs.append(
                    {
                        "name": "envoy.access_loggers.file",
                        "typed_config": {
                            "@type": f"{TYPES}.access_loggers.file.v3.FileAccessLog",
                            "path": file_log["path"],
                            "log_format": {"json_format": dict(file_log["logFormat"]["labels"])},
                        },
                    }
                )
    return logs


def _proxy_config(mesh: dict[str, Any]) -> dict[str, Any]:
    (gateway,) = mesh["spec"]["components"]["ingressGateways"]
    return dict(yaml.safe_load(gateway["k8s"]["podAnnotations"]["proxy.istio.io/config"]))


def _ext_authz(provider: dict[str, Any]) -> list[dict[str, Any]]:
    """The shadow RBAC filter and the ext_authz filter Istio builds for a CUSTOM policy."""
    grpc = provider["envoyExtAuthzGrpc"]
    body = grpc["includeRequestBodyInCheck"]
    rbac = {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": f"{TYPES}.filters.http.rbac.v3.RBAC",
            "shadow_rules": {
                "action": "DENY",
                "policies": {
                    "istio-ext-authz-ns[istio-system]-policy[mcp-warden]-rule[0]": {
                        "permissions": [{"any": True}],
                        "principals": [{"any": True}],
                    }
                },
            },
            "shadow_rules_stat_prefix": "istio_ext_authz_",
        },
    }
    ext_authz = {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": f"{TYPES}.filters.http.ext_authz.v3.ExtAuthz",
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": cluster_name(grpc["service"], grpc["port"]),
                    "authority": grpc["service"],
                },
                "timeout": grpc["timeout"],
            },
            "transport_api_version": "V3",
            "failure_mode_allow": grpc["failOpen"],
            "status_on_error": {"code": int(grpc["statusOnError"])},
            "with_request_body": {
                "max_request_bytes": body["maxRequestBytes"],
                "allow_partial_message": body["allowPartialMessage"],
                "pack_as_bytes": body["packAsBytes"],
            },
            "filter_enabled_metadata": {
                "filter": "envoy.filters.http.rbac",
                "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
                "value": {"string_match": {"prefix": "istio-ext-authz"}},
            },
        },
    }
    return [rbac, ext_authz]


def _retry_policy(retries: dict[str, Any] | None) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "retry_on": retries["retryOn"] if retries else ISTIO_DEFAULT_RETRY_ON,
        "num_retries": retries["attempts"] if retries else 2,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": f"{TYPES}.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }
    if "retriable-status-codes" in policy["retry_on"]:
        policy["retriable_status_codes"] = [503]
    return policy


def _route_match(match: dict[str, Any] | None) -> dict[str, Any]:
    if not match:
        return {"prefix": "/"}
    out: dict[str, Any] = {}
    uri = match.get("uri", {})
    if "exact" in uri:
        out["path"] = uri["exact"]
    elif "prefix" in uri:
        out["prefix"] = uri["prefix"]
    else:
        out["prefix"] = "/"
    headers = []
    for name, value in match.get("headers", {}).items():
        (kind, pattern) = next(iter(value.items()))
        matcher = {"safe_regex": {"regex": pattern}} if kind == "regex" else {kind: pattern}
        headers.append({"name": name, "string_match": matcher})
    # Istio appends the method as a `:method` header matcher, after the match's headers.
    if "method" in match:
        (kind, pattern) = next(iter(match["method"].items()))
        matcher = {"safe_regex": {"regex": pattern}} if kind == "regex" else {kind: pattern}
        headers.append({"name": ":method", "string_match": matcher})
    if headers:
        out["headers"] = headers
    return out


def _routes(http: dict[str, Any]) -> list[dict[str, Any]]:
    """Envoy routes for one VirtualService http route: one per match, as Istio builds them."""
    routes = []
    for match in http.get("match") or [None]:
        route: dict[str, Any] = {"name": http["name"], "match": _route_match(match)}
        if "directResponse" in http:
            direct = http["directResponse"]
            route["direct_response"] = {"status": direct["status"], "body": {"inline_string": direct["body"]["string"]}}
        else:
            (dest,) = [d["destination"] for d in http["route"]]
            action: dict[str, Any] = {
                "cluster": cluster_name(dest["host"], dest["port"]["number"]),
                "timeout": http.get("timeout", "0s"),
                "retry_policy": _retry_policy(http.get("retries")),
            }
            if "rewrite" in http:
                action["host_rewrite_literal"] = http["rewrite"]["authority"]
            route["route"] = action
        headers = http.get("headers", {})
        if "remove" in headers.get("request", {}):
            route["request_headers_to_remove"] = list(headers["request"]["remove"])
        for name, value in headers.get("response", {}).get("set", {}).items():
            route.setdefault("response_headers_to_add", []).append(
                {"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            )
        routes.append(route)
    return routes


def _hcm(objects: list[dict[str, Any]], mesh: dict[str, Any], host: str) -> dict[str, Any]:
    headers = _proxy_config(mesh).get("proxyHeaders", {})
    (vs,) = [o for o in objects if o["kind"] == "VirtualService" and host in o["spec"]["hosts"]]
    routes = [r for http in vs["spec"]["http"] for r in _routes(http)]
    return {
        "name": HCM,
        "typed_config": {
            "@type": f"{TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": f"outbound_0.0.0.0_{LISTENER_PORT}",
            "use_remote_address": True,
            "normalize_path": True,
            "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
            "server_name": "istio-envoy",
            "server_header_transformation": (
                "PASS_THROUGH" if headers.get("server", {}).get("disabled") else "OVERWRITE"
            ),
            "forward_client_cert_details": "SANITIZE_SET",
            "set_current_client_cert_details": {"subject": True, "dns": True, "uri": True},
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "access_log": _access_logs(objects, mesh),
            "route_config": {
                "name": "https.443.https.mcp.istio-system",
                "validate_clusters": False,
                "virtual_hosts": [{"name": f"{host}:443", "domains": [host, f"{host}:*"], "routes": routes}],
            },
            "http_filters": [
                *_ext_authz(_provider(mesh)),
                _typed("envoy.filters.http.fault", "filters.http.fault.v3.HTTPFault"),
                _typed("envoy.filters.http.cors", "filters.http.cors.v3.Cors"),
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": f"{TYPES}.filters.http.router.v3.Router",
                        "suppress_envoy_headers": bool(headers.get("envoyDebugHeaders", {}).get("disabled")),
                    },
                },
            ],
        },
    }


def _listener(objects: list[dict[str, Any]], mesh: dict[str, Any], cert: Path, key: Path) -> dict[str, Any]:
    chains = []
    for gateway in (o for o in objects if o["kind"] == "Gateway"):
        for server in gateway["spec"]["servers"]:
            tls = server["tls"]
            versions = {"TLSV1_2": "TLSv1_2", "TLSV1_3": "TLSv1_3"}
            chains.append(
                {
                    "filter_chain_match": {"server_names": list(server["hosts"])},
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": f"{TYPES}.transport_sockets.tls.v3.DownstreamTlsContext",
                            "common_tls_context": {
                                "alpn_protocols": ["h2", "http/1.1"],
                                "tls_params": {
                                    "tls_minimum_protocol_version": versions[tls.get("minProtocolVersion", "TLSV1_2")],
                                    "tls_maximum_protocol_version": versions[tls.get("maxProtocolVersion", "TLSV1_3")],
                                },
                                "tls_certificates": [
                                    {
                                        "certificate_chain": {"filename": str(cert)},
                                        "private_key": {"filename": str(key)},
                                    }
                                ],
                            },
                        },
                    },
                    "filters": [_hcm(objects, mesh, server["hosts"][0])],
                }
            )
    return {
        "name": f"0.0.0.0_{LISTENER_PORT}",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": LISTENER_PORT}},
        "listener_filters": [
            {
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {"@type": f"{TYPES}.filters.listener.tls_inspector.v3.TlsInspector"},
            }
        ],
        "filter_chains": chains,
    }


def _breakers(pool: dict[str, Any]) -> dict[str, Any]:
    tcp, http = pool.get("tcp", {}), pool.get("http", {})
    return {
        "thresholds": [
            {
                "max_connections": tcp.get("maxConnections", MAX),
                "max_pending_requests": http.get("http1MaxPendingRequests", MAX),
                "max_requests": http.get("http2MaxRequests", MAX),
                "max_retries": http.get("maxRetries", MAX),
                "track_remaining": True,
            }
        ]
    }


def _external_cluster(entry: dict[str, Any], rule: dict[str, Any], port: dict[str, Any], ca: Path) -> dict[str, Any]:
    """A MESH_EXTERNAL DNS ServiceEntry port, with its DestinationRule's port-level settings."""
    host = entry["spec"]["hosts"][0]
    levels = rule["spec"]["trafficPolicy"]["portLevelSettings"]
    (settings,) = [s for s in levels if s["port"]["number"] == port["number"]]
    pool = settings.get("connectionPool", {})
    tcp, http = pool.get("tcp", {}), pool.get("http", {})
    name = cluster_name(host, port["number"])
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": tcp.get("connectTimeout", "10s"),
        "circuit_breakers": _breakers(pool),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": http.get("idleTimeout", "3600s")},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [_endpoints(host, port["targetPort"])],
        },
    }
    if "tcpKeepalive" in tcp:
        keepalive = tcp["tcpKeepalive"]
        cluster["upstream_connection_options"] = {
            "tcp_keepalive": {
                "keepalive_time": _seconds(keepalive["time"]),
                "keepalive_interval": _seconds(keepalive["interval"]),
                "keepalive_probes": keepalive["probes"],
            }
        }
    tls = settings["tls"]
    assert tls["mode"] == "SIMPLE", tls
    cluster["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": f"{TYPES}.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": tls["sni"],
            "common_tls_context": {
                # Istio's defaultUpstreamCommonTLSContext: Envoy's client default stops at 1.2.
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                "validation_context": {
                    "trusted_ca": {"filename": str(ca)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": san}} for san in tls["subjectAltNames"]
                    ],
                },
            },
        },
    }
    return cluster


def _mesh_cluster(host: str, port: int, grpc: bool) -> dict[str, Any]:
    name = cluster_name(host, port)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "circuit_breakers": _breakers({}),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [_endpoints("127.0.0.1", port)],
        },
    }
    if grpc:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def gateway_config(
    objects: list[dict[str, Any]], mesh: dict[str, Any], cert: Path, key: Path, ca: Path
) -> dict[str, Any]:
    """What Istio would give the ingress gateway for these objects, as one static bootstrap."""
    grpc = _provider(mesh)["envoyExtAuthzGrpc"]
    clusters = [_mesh_cluster(grpc["service"], grpc["port"], grpc=True)]
    for vs in (o for o in objects if o["kind"] == "VirtualService"):
        for http in vs["spec"]["http"]:
            for dest in (d["destination"] for d in http.get("route", [])):
                known = {c["name"] for c in clusters}
                name = cluster_name(dest["host"], dest["port"]["number"])
                if dest["host"].endswith(".svc.cluster.local") and name not in known:
                    clusters.append(_mesh_cluster(dest["host"], dest["port"]["number"], grpc=False))
    rules = {o["spec"]["host"]: o for o in objects if o["kind"] == "DestinationRule"}
    for entry in (o for o in objects if o["kind"] == "ServiceEntry"):
        for port in entry["spec"]["ports"]:
            clusters.append(_external_cluster(entry, rules[entry["spec"]["hosts"][0]], port, ca))
    return {
        "node": {
            "id": "router~10.0.0.1~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local",
            "cluster": "istio-ingressgateway.istio-system",
        },
        "layered_runtime": {
            "layers": [
                {"name": "global config", "static_layer": dict(ISTIO_RUNTIME)},
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [_listener(objects, mesh, cert, key)], "clusters": clusters},
    }


# ---------------------------------------------------------------------------------------------
# EnvoyFilter patches
# ---------------------------------------------------------------------------------------------


# Map fields of the messages patched here: protobuf merges a map entry by entry, each entry's
# value replaced whole (not merged).
MAP_FIELDS = ("typed_per_filter_config", "typed_extension_protocol_options")


def proto_merge(dst: dict[str, Any], src: dict[str, Any], where: str = "") -> None:
    """Protobuf merge of `src` into `dst`: messages merged field by field, map fields entry by
    entry, repeated fields appended, scalars replaced. An Any (typed_config) merges only onto
    the same @type."""
    if "@type" in src and "@type" in dst and src["@type"] != dst["@type"]:
        raise PatchError(f"{where}: MERGE of {src['@type']} onto {dst['@type']}")
    for k, v in src.items():
        if k in MAP_FIELDS and isinstance(v, dict) and isinstance(dst.get(k), dict):
            dst[k].update(copy.deepcopy(v))
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            proto_merge(dst[k], v, f"{where}.{k}")
        elif isinstance(v, list) and isinstance(dst.get(k), list):
            dst[k] = dst[k] + copy.deepcopy(v)
        else:
            dst[k] = copy.deepcopy(v)


def _chains(config: dict[str, Any], match: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(listener, filter chain) pairs a ListenerMatch selects."""
    want = match.get("listener", {})
    out = []
    for listener in config["static_resources"]["listeners"]:
        port = listener["address"]["socket_address"]["port_value"]
        if "portNumber" in want and want["portNumber"] != port:
            continue
        if "name" in want and want["name"] != listener["name"]:
            continue
        chain_match = want.get("filterChain", {})
        for chain in listener["filter_chains"]:
            if "sni" in chain_match and chain_match["sni"] not in chain.get("filter_chain_match", {}).get(
                "server_names", []
            ):
                continue
            out.append((listener, chain))
    return out


def _http_filters(config: dict[str, Any], match: dict[str, Any]) -> list[list[dict[str, Any]]]:
    lists = []
    for _, chain in _chains(config, match):
        for f in chain["filters"]:
            if f["name"] == match["listener"]["filterChain"]["filter"]["name"] == HCM:
                lists.append(f["typed_config"]["http_filters"])
    return lists


def _apply_http_filter(config: dict[str, Any], match: dict[str, Any], patch: dict[str, Any]) -> int:
    sub = match["listener"]["filterChain"]["filter"].get("subFilter", {}).get("name")
    op, value = patch["operation"], patch["value"]
    applied = 0
    for filters in _http_filters(config, match):
        names = [f["name"] for f in filters]
        if op == "INSERT_FIRST":
            filters.insert(0, copy.deepcopy(value))
        elif sub not in names:
            continue
        elif op == "INSERT_AFTER":
            filters.insert(names.index(sub) + 1, copy.deepcopy(value))
        elif op == "INSERT_BEFORE":
            filters.insert(names.index(sub), copy.deepcopy(value))
        elif op == "MERGE":
            proto_merge(filters[names.index(sub)], value, sub)
        else:
            raise PatchError(f"HTTP_FILTER {op} is not modelled")
        applied += 1
    return applied


def _route_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        f["typed_config"]["route_config"]
        for listener in config["static_resources"]["listeners"]
        for chain in listener["filter_chains"]
        for f in chain["filters"]
        if f["name"] == HCM and "route_config" in f["typed_config"]
    ]


def _gateway_rds_name(name: str) -> tuple[int, str, str]:
    """(port number, port name, namespace/gateway) of a gateway's RDS name, as Istio parses
    `https.<port>.<port name>.<gateway>.<namespace>`."""
    parts = name.split(".")
    if parts[0] == "https" and len(parts) == 5:
        return int(parts[1]), parts[2], f"{parts[4]}/{parts[3]}"
    raise PatchError(f"route configuration {name!r} is not a gateway's HTTPS route configuration")


def _route_config_matches(route_config: dict[str, Any], want: dict[str, Any]) -> bool:
    unknown = set(want) - {"portNumber", "portName", "gateway", "name", "vhost"}
    if unknown:
        raise PatchError(f"routeConfiguration match on {sorted(unknown)} is not modelled")
    port, port_name, gateway = _gateway_rds_name(route_config["name"])
    found = {"portNumber": port, "portName": port_name, "gateway": gateway, "name": route_config["name"]}
    return all(want[k] == v for k, v in found.items() if k in want)


def _route_matches(route: dict[str, Any], want: dict[str, Any] | None) -> bool:
    if want is None:
        return True
    if set(want) - {"name", "action"}:
        raise PatchError(f"route match on {sorted(set(want) - {'name', 'action'})} is not modelled")
    actions = {"ROUTE": "route", "REDIRECT": "redirect", "DIRECT_RESPONSE": "direct_response"}
    action = want.get("action", "ANY")
    return want.get("name", route["name"]) == route["name"] and (action == "ANY" or actions[action] in route)


def _apply_http_route(config: dict[str, Any], match: dict[str, Any], patch: dict[str, Any]) -> int:
    """HTTP_ROUTE MERGE or REMOVE on each route the match selects (Istio's patchHTTPRoute);
    the count is of routes patched."""
    if patch["operation"] not in ("MERGE", "REMOVE"):
        raise PatchError(f"HTTP_ROUTE {patch['operation']} is not modelled")
    want = match.get("routeConfiguration", {})
    vhost_want = want.get("vhost")
    applied = 0
    for route_config in _route_configs(config):
        if not _route_config_matches(route_config, want):
            continue
        for vhost in route_config["virtual_hosts"]:
            if vhost_want is not None and vhost_want.get("name", vhost["name"]) != vhost["name"]:
                continue
            routes = [r for r in vhost["routes"] if _route_matches(r, (vhost_want or {}).get("route"))]
            for route in routes:
                if patch["operation"] == "MERGE":
                    proto_merge(route, patch["value"], route["name"])
            if patch["operation"] == "REMOVE":
                vhost["routes"] = [r for r in vhost["routes"] if all(r is not x for x in routes)]
            applied += len(routes)
    return applied


def _apply_one(config: dict[str, Any], p: dict[str, Any]) -> int:
    match, patch, apply_to = p.get("match", {}), p["patch"], p["applyTo"]
    if match.get("context", "ANY") not in ("ANY", "GATEWAY"):
        return 0
    if apply_to == "BOOTSTRAP":
        if patch["operation"] != "MERGE":
            raise PatchError("Istio only MERGEs into the bootstrap")
        proto_merge(config, patch["value"], "bootstrap")
        return 1
    if apply_to == "LISTENER":
        listeners = {id(listener): listener for listener, _ in _chains(config, match)}
        for listener in listeners.values():
            proto_merge(listener, patch["value"], listener["name"])
        return len(listeners)
    if apply_to == "NETWORK_FILTER":
        applied = 0
        for _, chain in _chains(config, match):
            for f in chain["filters"]:
                if f["name"] == match["listener"]["filterChain"]["filter"]["name"] and patch["operation"] == "MERGE":
                    proto_merge(f, patch["value"], f["name"])
                    applied += 1
        return applied
    if apply_to == "HTTP_FILTER":
        return _apply_http_filter(config, match, patch)
    if apply_to == "HTTP_ROUTE":
        return _apply_http_route(config, match, patch)
    if apply_to == "CLUSTER":
        want = match["cluster"]
        name = cluster_name(want["service"], want["portNumber"])
        found = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
        for cluster in found:
            proto_merge(cluster, patch["value"], name)
        return len(found)
    raise PatchError(f"applyTo {apply_to} is not modelled")


def apply_envoy_filters(config: dict[str, Any], envoy_filters: list[dict[str, Any]]) -> dict[str, int]:
    """Apply every patch of the EnvoyFilters that select the gateway; "<name>[i] <applyTo>" →
    how many places it applied to."""
    selected = [
        f
        for f in envoy_filters
        if f["spec"].get("workloadSelector", {}).get("labels", {}).items() <= GATEWAY_LABELS.items()
    ]
    selected.sort(key=lambda f: (f["spec"].get("priority", 0), f["metadata"]["name"]))
    counts = {}
    for f in selected:
        for i, p in enumerate(f["spec"]["configPatches"]):
            counts[f"{f['metadata']['name']}[{i}] {p['applyTo']}"] = _apply_one(config, p)
    return counts


# ---------------------------------------------------------------------------------------------
# Requests: which route, and whether the CUSTOM policy checks them
# ---------------------------------------------------------------------------------------------


def _string_matches(matcher: dict[str, Any], value: str) -> bool:
    (kind, pattern) = next(iter(matcher.items()))
    if kind == "safe_regex":
        return re.fullmatch(pattern["regex"], value) is not None
    if kind in ("exact", "prefix", "suffix"):
        return {"exact": value == pattern, "prefix": value.startswith(pattern), "suffix": value.endswith(pattern)}[kind]
    raise PatchError(f"string matcher {kind} is not modelled")


def _header_matches(matcher: dict[str, Any], headers: dict[str, str]) -> bool:
    value = headers.get(matcher["name"])
    if "present_match" in matcher:
        return (value is not None) == matcher["present_match"]
    return value is not None and _string_matches(matcher["string_match"], value)


def select_route(routes: list[dict[str, Any]], method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The first route whose path match and header matchers (`:method` included) all hold, as
    Envoy's router picks it; a request no route matches is an error here (Envoy's 404)."""
    request = {**{k.lower(): v for k, v in headers.items()}, ":method": method, ":path": path}
    for route in routes:
        match = route["match"]
        if set(match) - {"path", "prefix", "headers"}:
            raise PatchError(f"route match {sorted(match)} is not modelled")
        on_path = path == match["path"] if "path" in match else path.startswith(match["prefix"])
        if on_path and all(_header_matches(h, request) for h in match.get("headers", [])):
            return route
    raise PatchError(f"no route for {method} {path}")


def _istio_string(pattern: str, value: str) -> bool:
    """Istio's AuthorizationPolicy string match: exact, `prefix*`, `*suffix` or `*`."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _any_of(patterns: list[str], value: str, fold: bool) -> bool:
    return any(_istio_string(p.lower() if fold else p, value) for p in patterns)


def _operation_matches(op: dict[str, Any], host: str, method: str, path: str) -> bool:
    unknown = set(op) - {"hosts", "notHosts", "paths", "notPaths", "methods", "notMethods"}
    if unknown:
        raise PatchError(f"operation fields {sorted(unknown)} are not modelled")
    # Hosts compare case-insensitively, on the host without a port.
    request = {"hosts": host.lower().rsplit(":", 1)[0], "paths": path, "methods": method}
    for field, value in request.items():
        negated, fold = f"not{field.capitalize()}", field == "hosts"
        if field in op and not _any_of(op[field], value, fold):
            return False
        if negated in op and _any_of(op[negated], value, fold):
            return False
    return True


def custom_policy_checks(policy: dict[str, Any], host: str, method: str, path: str) -> bool:
    """Whether an AuthorizationPolicy with `action: CUSTOM` sends this request to its provider:
    rules are ORed, a rule matches when one of its `to` operations does (every field of an
    operation must hold). `from` and `when` are not modelled (a rule using them is an error)."""
    spec = policy["spec"]
    assert spec["action"] == "CUSTOM", spec["action"]
    for rule in spec.get("rules", []):
        if set(rule) - {"to"}:
            raise PatchError(f"rule fields {sorted(rule)} are not modelled")
        if not rule.get("to") or any(_operation_matches(t["operation"], host, method, path) for t in rule["to"]):
            return True
    return False
