"""Every Envoy config in envoy/ passes `envoy --mode validate`, and they agree on what matters.

envoy.yaml is the production reference: its file paths are moved under the test's directory
(edge_support) and a throwaway certificate is put there so validation can load it.
envoy-test.yaml is rendered from its placeholders exactly as the e2e harness renders it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import edge_support
import harness
import pytest
import yaml

WELL_KNOWN_EXACT = {
    "/.well-known/openid-configuration",
    "/.well-known/jwks-oidc",
    "/.well-known/jwks.json",
}
WELL_KNOWN_PREFIX = "/.well-known/oauth-protected-resource"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
LIST_FILTER = "mcp_warden.list_filter"


def _prod_config(tmp_path: Path) -> str:
    text = edge_support.render_production_text(tmp_path)
    pki = edge_support.make_pki(tmp_path / "pki")
    edge_support.kubelet_publish(tmp_path / "tls", "v1", *pki.issue(tmp_path / "pki", "edge", "mcp.example.com"))
    return text


def _test_config() -> str:
    return harness.render_envoy_test_config(warden_grpc_port=9191, warden_http_port=9192, upstream_port=3001)


def _demo_config() -> str:
    return (harness.ENVOY_DIR / "envoy-demo.yaml").read_text()


def _compose_config() -> str:
    return (harness.ENVOY_DIR / "envoy-compose.yaml").read_text()


CONFIGS = {
    "envoy.yaml": _prod_config,
    "envoy-test.yaml": lambda tmp_path: _test_config(),
    "envoy-demo.yaml": lambda tmp_path: _demo_config(),
    "envoy-compose.yaml": lambda tmp_path: _compose_config(),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_envoy_config_passes_envoy_validate(name: str, envoy_bin: Path, tmp_path: Path) -> None:
    text = CONFIGS[name](tmp_path)
    assert "${" not in text, f"{name}: unrendered placeholder"
    path = tmp_path / name
    path.write_text(text)
    result = harness.validate_envoy_config(envoy_bin, path)
    assert result.returncode == 0, f"envoy --mode validate {name} failed:\n{result.stdout}\n{result.stderr}"
    assert "OK" in (result.stdout + result.stderr)


def test_envoy_test_template_rejects_missing_placeholder_values() -> None:
    with pytest.raises(harness.HarnessError, match="UPSTREAM_PORT"):
        harness.render_template(harness.ENVOY_TEST_TEMPLATE.read_text(), {"WARDEN_GRPC_PORT": 1})


def _mcp_listener(config: dict[str, Any]) -> dict[str, Any]:
    """The one listener that serves MCP clients (the others serve health and stats only)."""
    listeners = [lst for lst in config["static_resources"]["listeners"] if lst["name"].startswith("mcp_ingress")]
    assert len(listeners) == 1, [lst["name"] for lst in config["static_resources"]["listeners"]]
    return listeners[0]


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    chains = _mcp_listener(config)["filter_chains"]
    assert len(chains) == 1
    (hcm,) = [f for f in chains[0]["filters"] if f["name"] == "envoy.filters.network.http_connection_manager"]
    return hcm["typed_config"]


def _ext_authz(hcm: dict[str, Any]) -> dict[str, Any]:
    filters = hcm["http_filters"]
    assert filters[0]["name"] == EXT_AUTHZ, "ext_authz must be the first HTTP filter"
    assert filters[-1]["name"] == "envoy.filters.http.router"
    return filters[0]["typed_config"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_envoy_config_fails_closed_and_checks_every_upstream_route(name: str, tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIGS[name](tmp_path))
    hcm = _hcm(config)
    authz = _ext_authz(hcm)
    assert authz["transport_api_version"] == "V3"
    assert authz["failure_mode_allow"] is False
    assert authz["status_on_error"] == {"code": "ServiceUnavailable"}
    assert authz["with_request_body"] == {
        "max_request_bytes": 1048576,
        "allow_partial_message": False,
        "pack_as_bytes": True,
    }
    assert authz["include_peer_certificate"] is True
    assert authz.get("encode_raw_headers") is True, "header lines as received: mcp-warden joins repeats itself"
    assert authz["grpc_service"]["envoy_grpc"] == {"cluster_name": "mcp_warden_grpc", "skip_envoy_headers": True}

    # Who is external is decided by the peer's address, so a client can neither send Envoy's
    # own control headers (retries would replay allowed calls) nor pick what the upstream
    # receives compressed (a compressed list cannot be filtered).
    assert hcm.get("use_remote_address") is True, name
    for vh in hcm["route_config"]["virtual_hosts"]:
        assert {"x-mcp-warden-list", "accept-encoding"} <= set(vh["request_headers_to_remove"]), name

    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    grpc = clusters["mcp_warden_grpc"]
    assert "http2_protocol_options" in str(grpc["typed_extension_protocol_options"])

    routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]
    seen_well_known = set()
    for route in routes:
        match = route["match"]
        per_filter = route.get("typed_per_filter_config", {}).get(EXT_AUTHZ)
        assert per_filter is not None, f"{name}: route {route.get('name')} has no ext_authz per-route config"
        if "direct_response" in route:
            # The one route that answers by itself: a client claiming Envoy's partial-body
            # marker is refused — by mcp-warden's check (audited), backed by a 413 — and
            # reaches nothing.
            assert [h["name"] for h in match["headers"]] == ["x-envoy-auth-partial-body"], route
            assert route["direct_response"]["status"] == 413
            assert per_filter["check_settings"]["context_extensions"] == {"refuse": "client_partial_body_marker"}
            continue
        cluster = route["route"]["cluster"]
        path = match.get("path") or match.get("prefix")
        if cluster == "mcp_warden_http":
            # Only the public discovery documents may skip the check.
            assert match.get("path") in WELL_KNOWN_EXACT or match.get("prefix") == WELL_KNOWN_PREFIX, route
            assert per_filter.get("disabled") is True
            # Public and unauthenticated: each has a bucket of its own that limits every request.
            public_limit = route["typed_per_filter_config"][RATE_LIMIT]["token_bucket"]
            assert 0 < public_limit["max_tokens"] == public_limit["tokens_per_fill"], route
            seen_well_known.add(path)
        else:
            assert "disabled" not in per_filter, f"{name}: upstream route {route.get('name')} skips ext_authz"
            app = per_filter["check_settings"]["context_extensions"]["app"]
            assert app, route
            assert route["route"].get("timeout") == "0s", f"{name}: SSE streams need timeout: 0s"
    assert seen_well_known == WELL_KNOWN_EXACT | {WELL_KNOWN_PREFIX}
    # The last route catches everything and is checked.
    assert routes[-1]["match"] == {"prefix": "/"}


def test_production_reference_targets_agentcore_over_tls(tmp_path: Path) -> None:
    config = yaml.safe_load((harness.ENVOY_DIR / "envoy.yaml").read_text())
    hcm = _hcm(config)
    routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]
    app_route = routes[-1]
    assert app_route["route"]["cluster"] == "agentcore"
    assert app_route["route"]["auto_host_rewrite"] is True
    ctx = app_route["typed_per_filter_config"][EXT_AUTHZ]["check_settings"]["context_extensions"]
    assert ctx == {"app": "bedrock-mcp"}
    listener = _mcp_listener(config)
    assert listener["address"]["socket_address"]["port_value"] == 443
    assert "DownstreamTlsContext" in str(listener["filter_chains"][0]["transport_socket"])
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    agentcore = clusters["agentcore"]
    # The DNS cluster in its non-deprecated form (Envoy 1.40): DnsCluster as a cluster_type.
    assert "type" not in agentcore
    assert agentcore["cluster_type"]["typed_config"]["@type"].endswith("envoy.extensions.clusters.dns.v3.DnsCluster")
    tls = agentcore["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("UpstreamTlsContext")
    host = agentcore["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert host["port_value"] == 443
    assert tls["sni"] == host["address"]


def _rust_sources() -> str:
    """Every Rust source of the service and its core crate (constants move between modules)."""
    roots = [harness.REPO_ROOT / "src", harness.REPO_ROOT / "crates"]
    return "\n".join(p.read_text() for root in roots for p in sorted(root.rglob("*.rs")))


RATE_LIMIT = "envoy.filters.http.local_ratelimit"


def _rust_const(name: str) -> str:
    match = re.search(rf'pub const {name}: &str = "([^"]+)";', _rust_sources())
    assert match, f"{name} not found in the Rust sources"
    return match.group(1)


def _metadata_predicate(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(ext_authz metadata key, string matcher) of one single_predicate on decision metadata."""
    single = p["single_predicate"]
    inp = single["input"]["typed_config"]
    assert inp["@type"].endswith("envoy.extensions.matching.common_inputs.network.v3.DynamicMetadataInput")
    assert inp["filter"] == EXT_AUTHZ
    (segment,) = inp["path"]
    match = single["custom_match"]["typed_config"]
    assert match["@type"].endswith("envoy.extensions.matching.input_matchers.metadata.v3.Metadata")
    assert not match.get("invert", False)
    return segment["key"], match["value"]["string_match"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_list_filter_runs_only_on_allowed_list_calls_and_fails_closed(name: str, tmp_path: Path) -> None:
    """The ext_proc list filter sits right after ext_authz and is skipped unless ext_authz's
    decision metadata names an allowed list call; it gets that metadata and never fails open."""
    config = yaml.safe_load(CONFIGS[name](tmp_path))
    hcm = _hcm(config)
    filters = hcm["http_filters"]
    assert [f["name"] for f in filters] == [EXT_AUTHZ, LIST_FILTER, RATE_LIMIT, "envoy.filters.http.router"]
    wrapper = filters[1]["typed_config"]
    assert wrapper["@type"].endswith("envoy.extensions.common.matching.v3.ExtensionWithMatcher")

    # skip unless (decision == allow AND (a list method OR the search tool OR an allowed batch
    # OR a GET stream))
    (matcher,) = wrapper["xds_matcher"]["matcher_list"]["matchers"]
    assert matcher["on_match"]["action"]["typed_config"]["@type"].endswith("SkipFilter")
    assert "on_no_match" not in wrapper["xds_matcher"], "no match must mean: run the filter"
    decision, listed = matcher["predicate"]["not_matcher"]["and_matcher"]["predicate"]
    assert _metadata_predicate(decision) == ("decision", {"exact": "allow"})
    kinds = dict(_metadata_predicate(p) for p in listed["or_matcher"]["predicate"])
    methods = re.fullmatch(r"\^\((.*)\)\$", kinds["mcp_method"]["safe_regex"]["regex"])
    assert methods and sorted(methods.group(1).split("|")) == sorted(
        ["tools/list", "prompts/list", "resources/list", "resources/templates/list"]
    )
    assert kinds["tool"] == {"exact": _rust_const("AGENTCORE_SEARCH_TOOL")}
    reasons = re.fullmatch(r"\^\((.*)\)\$", kinds["reason"]["safe_regex"]["regex"])
    assert reasons and sorted(reasons.group(1).split("|")) == ["batch_allowed", "sse_stream"]
    assert _rust_const("BATCH_ALLOWED") == "batch_allowed", "ext_authz no longer names allowed batches so"
    assert _rust_const("STREAM_ALLOWED") == "sse_stream", "ext_authz no longer names GET streams so"

    ext_proc = wrapper["extension_config"]["typed_config"]
    assert ext_proc["@type"].endswith("envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor")
    # Its own cluster to the same mcp-warden port: a GET stream keeps its ext_proc stream open
    # for the whole session, and open sessions must never use up the checks' request budget.
    assert ext_proc["grpc_service"]["envoy_grpc"] == {"cluster_name": "mcp_warden_list", "skip_envoy_headers": True}
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    checks, lists = clusters["mcp_warden_grpc"], clusters["mcp_warden_list"]
    assert lists["load_assignment"]["endpoints"] == checks["load_assignment"]["endpoints"]
    assert lists["typed_extension_protocol_options"] == checks["typed_extension_protocol_options"]
    budget = {n: c["circuit_breakers"]["thresholds"][0]["max_requests"] for n, c in (("checks", checks), ("lists", lists))}
    assert budget["lists"] >= 50 * budget["checks"] >= 50 * 1024, budget
    assert ext_proc["failure_mode_allow"] is False
    assert ext_proc["metadata_options"]["forwarding_namespaces"]["untyped"] == [EXT_AUTHZ]
    mode = ext_proc["processing_mode"]
    assert (mode["request_header_mode"], mode["response_header_mode"]) == ("SKIP", "SEND")
    assert (mode["request_body_mode"], mode["response_body_mode"]) == ("NONE", "NONE")
    assert ext_proc["allow_mode_override"] is True
    # mcp-warden asks for exactly these two modes (src/extproc/mod.rs `body_mode`).
    allowed = {m["response_body_mode"]: m for m in ext_proc["allowed_override_modes"]}
    assert sorted(allowed) == ["BUFFERED", "STREAMED"]
    for m in allowed.values():
        assert {k: v for k, v in m.items() if k != "response_body_mode"} == {
            "request_header_mode": "SKIP",
            "response_header_mode": "SEND",
            "request_body_mode": "NONE",
            "request_trailer_mode": "SKIP",
            "response_trailer_mode": "SKIP",
        }

    list_header = _rust_const("LIST_HEADER")
    for vh in hcm["route_config"]["virtual_hosts"]:
        assert list_header in vh.get("request_headers_to_remove", []), "the upstream must not see the trigger"
        for route in vh["routes"]:
            per_filter = route.get("typed_per_filter_config", {})
            if "direct_response" in route or route["route"]["cluster"] == "mcp_warden_http":
                # No ext_authz there, so no decision metadata either: disabled all the same.
                assert per_filter.get(LIST_FILTER, {}).get("disabled") is True, route.get("name")
            else:
                assert LIST_FILTER not in per_filter, route.get("name")


# ---------------------------------------------------------------------------------------
# The edge (issue 28): limits, timeouts, local replies, logging, admin — in every config that
# faces clients. envoy-test.yaml holds them too, except the admin socket: the harness finds its
# port-0 listener through a TCP admin port (the only test-only difference).
# ---------------------------------------------------------------------------------------

SHIPPED = ("envoy.yaml", "envoy-demo.yaml", "envoy-compose.yaml")
# Statuses Envoy answers itself, each mapped to a JSON-RPC error (docs/envoy.md "Local replies").
LOCAL_REPLY_CODES = {
    **dict.fromkeys((400, 404, 408, 413, 431), -32600),
    **dict.fromkeys((500, 502, 503, 504), -32603),
}
ACCESS_LOG_OPERATORS = (
    "%DOWNSTREAM_REMOTE_ADDRESS%",
    "%RESPONSE_CODE_DETAILS%",
    "%ROUTE_NAME%",
    "%UPSTREAM_HOST%",
    "%DOWNSTREAM_TLS_VERSION%",
    "%DOWNSTREAM_PEER_URI_SAN%",
    "%BYTES_RECEIVED%",
    "%BYTES_SENT%",
    "%ACCESS_LOG_TYPE%",
)
ACCESS_LOG_METADATA = ("decision", "reason", "user", "app", "mcp_method", "tool", "prompt", "resource", "jsonrpc_id")
# Every operator that prints what a client sent, and whether it takes a `:N` length.
_CLIENT_VALUE = re.compile(r"%(REQ|DYNAMIC_METADATA)\(([^)]*)\)(:\d+)?%")
RETRY_ON = "reset-before-request,connect-failure"


def _duration(value: str) -> float:
    assert re.fullmatch(r"\d+(\.\d+)?s", value), value
    return float(value[:-1])


def _extproc_source() -> str:
    return _rust_sources()


def _json_buffered_max() -> int:
    match = re.search(r"pub const JSON_BUFFERED_MAX: u64 = (\d+) \* 1024;", _extproc_source())
    assert match, "JSON_BUFFERED_MAX not found in src/extproc/mod.rs"
    return int(match.group(1)) * 1024


def _list_filter_details() -> str:
    match = re.search(r'details: "([a-z_]+)"\.into\(\)', _extproc_source())
    assert match, "the list filter's immediate-response details not found in src/extproc/mod.rs"
    return match.group(1)


def _overload_limit(config: dict[str, Any]) -> int:
    overload = config["overload_manager"]
    monitors = {m["name"]: m["typed_config"] for m in overload["resource_monitors"]}
    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] > 0
    limit = monitors["envoy.resource_monitors.global_downstream_max_connections"]["max_active_downstream_connections"]
    actions = {a["name"]: a["triggers"] for a in overload["actions"]}
    for action in ("envoy.overload_actions.stop_accepting_requests", "envoy.overload_actions.reset_high_memory_stream"):
        assert [t["name"] for t in actions[action]] == ["envoy.resource_monitors.fixed_heap"], action
    assert overload["buffer_factory_config"]["minimum_account_to_track_power_of_two"] <= 20
    return int(limit)


def _assert_slow_clients_bounded(hcm: dict[str, Any]) -> None:
    assert 0 < _duration(hcm["request_headers_timeout"]) <= 30
    # request_timeout covers receiving the request only: set, it never cuts an SSE answer.
    assert 0 < _duration(hcm["request_timeout"]) <= 300
    assert 0 < _duration(hcm["stream_idle_timeout"]) <= 600
    common = hcm["common_http_protocol_options"]
    assert common["headers_with_underscores_action"] == "REJECT_REQUEST"
    assert 0 < _duration(common["idle_timeout"]) <= 3600
    h2 = hcm["http2_protocol_options"]
    assert h2["max_concurrent_streams"] <= 128
    assert h2["initial_stream_window_size"] <= 1048576
    assert h2["initial_connection_window_size"] <= 16 * 1048576
    assert _duration(h2["connection_keepalive"]["interval"]) > 0
    assert _duration(h2["connection_keepalive"]["timeout"]) > 0
    assert hcm["server_header_transformation"] == "PASS_THROUGH"
    assert hcm["http_filters"][-1]["typed_config"].get("suppress_envoy_headers") is True


def _assert_local_replies_are_jsonrpc(hcm: dict[str, Any]) -> None:
    keep, *mappers = hcm["local_reply_config"]["mappers"]
    assert "body_format" not in hcm["local_reply_config"], "a global body format would rewrite mcp-warden's denials"
    # First: mcp-warden's own answers, matched and left as they are.
    assert set(keep) == {"filter"}, keep
    deny, list_filter = keep["filter"]["or_filter"]["filters"]
    assert deny["metadata_filter"] == {
        "matcher": {"filter": EXT_AUTHZ, "path": [{"key": "decision"}], "value": {"string_match": {"exact": "deny"}}},
        "match_if_key_not_found": False,
    }
    cel = list_filter["extension_filter"]["typed_config"]["expression"]
    assert cel == f"response.code_details == '{_list_filter_details()}'"
    mapped: dict[tuple[str, int], int] = {}
    rate_limited, mappers = _split_rate_limit_mapper(mappers)
    assert rate_limited, "a 429 of the rate limit filter must be a JSON-RPC error echoing the id"
    for mapper in mappers:
        comparison = mapper["filter"]["status_code_filter"]["comparison"]
        override = mapper["body_format_override"]
        assert override["content_type"] == "application/json"
        body = json.loads(override["text_format_source"]["inline_string"])
        assert body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["message"], body
        assert set(mapper) == {"filter", "body_format_override"}, "a mapper may not change the status"
        mapped[(comparison["op"], comparison["value"]["default_value"])] = body["error"]["code"]
    assert {s: mapped[("EQ", s)] for s in LOCAL_REPLY_CODES} == LOCAL_REPLY_CODES
    assert list(mapped)[-2:] == [("GE", 500), ("GE", 400)], "the catch-alls come last, 5xx before 4xx"


def _split_rate_limit_mapper(mappers: list[dict[str, Any]]) -> tuple[bool, list[dict[str, Any]]]:
    """The 429 mapper (status 429 AND mcp-warden's `jsonrpc_id` metadata present), checked,
    and the other mappers."""
    found, rest = False, []
    for mapper in mappers:
        conditions = mapper["filter"].get("and_filter", {}).get("filters")
        if not conditions:
            rest.append(mapper)
            continue
        status, present = conditions
        assert status["status_code_filter"]["comparison"]["value"]["default_value"] == 429
        assert present["metadata_filter"]["matcher"]["path"] == [{"key": "jsonrpc_id"}]
        assert present["metadata_filter"]["matcher"]["value"] == {"present_match": True}
        # Envoy matches a missing key by default: a 429 with no id (a public route's own
        # limit) would get `"id":-`, which is not JSON.
        assert present["metadata_filter"].get("match_if_key_not_found") is False, present
        text = mapper["body_format_override"]["text_format_source"]["inline_string"]
        body = json.loads(text.replace(f"%DYNAMIC_METADATA({EXT_AUTHZ}:jsonrpc_id)%", "7"))
        assert body["id"] == 7 and body["error"]["code"] == -32000, body
        found = True
    return found, rest


def _rate_tiers() -> dict[str, tuple[int, int]]:
    """`policy::rate::TIERS`: name -> (calls, seconds)."""
    source = _rust_sources()
    tiers = re.findall(r'\("(\d+/\w+)", (\d+), (\d+)\)', source)
    assert tiers, "TIERS not found in the Rust sources"
    return {name: (int(calls), int(secs)) for name, calls, secs in tiers}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rate_limit_filter_has_a_bucket_for_every_tier_mcp_warden_accepts(name: str, tmp_path: Path) -> None:
    """Every rate a role may name is enforced by a per-user (and per-user-per-tool) wildcard
    descriptor; the default bucket never limits; descriptors come from mcp-warden's metadata."""
    config = yaml.safe_load(CONFIGS[name](tmp_path))
    (limit,) = [f for f in _hcm(config)["http_filters"] if f["name"] == RATE_LIMIT]
    rl = limit["typed_config"]
    assert rl["always_consume_default_token_bucket"] is False
    keys = [[a["metadata"]["metadata_key"]["path"][0]["key"] for a in r["actions"]] for r in rl["rate_limits"]]
    assert keys == [["rl_user_rate", "user"], ["rl_tool_rate", "user", "tool"]]
    assert all(a["metadata"]["source"] == "DYNAMIC" for r in rl["rate_limits"] for a in r["actions"])
    found: dict[tuple[str, str], tuple[int, int]] = {}
    for d in rl["descriptors"]:
        scope, *wild = d["entries"]
        assert all("value" not in w for w in wild), "user and tool are wildcards: a bucket each"
        bucket = d["token_bucket"]
        assert bucket["max_tokens"] == bucket["tokens_per_fill"]
        found[(scope["key"], scope["value"])] = (bucket["max_tokens"], _duration(bucket["fill_interval"]))
    for tier, (calls, secs) in _rate_tiers().items():
        for scope in ("mcp_user_rate", "mcp_tool_rate"):
            assert found.pop((scope, tier)) == (calls, secs), (scope, tier)
    assert not found, f"descriptors no role can name: {found}"


def _assert_access_log_bounded(hcm: dict[str, Any]) -> None:
    assert _duration(hcm["access_log_options"]["access_log_flush_interval"]) > 0
    (log,) = hcm["access_log"]
    text = json.dumps(log["typed_config"]["log_format"])
    for operator in ACCESS_LOG_OPERATORS:
        assert operator in text, operator
    for key in ACCESS_LOG_METADATA:
        assert f"%DYNAMIC_METADATA({EXT_AUTHZ}:{key}):" in text, key
    values = _CLIENT_VALUE.findall(text)
    assert values
    unbounded = [f"{kind}({arg})" for kind, arg, length in values if not length]
    assert not unbounded, f"client-chosen values printed whole: {unbounded}"


def _assert_app_clusters_sized(config: dict[str, Any], hcm: dict[str, Any], connection_limit: int) -> None:
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]
    apps = [r for r in routes if "route" in r and r["route"]["cluster"] != "mcp_warden_http"]
    assert apps
    for route in apps:
        assert route["route"]["retry_policy"]["retry_on"] == RETRY_ON, route["name"]
        cluster = clusters[route["route"]["cluster"]]
        (breakers,) = cluster["circuit_breakers"]["thresholds"]
        # Every open GET (SSE) stream holds one request and one HTTP/1.1 connection: the
        # breakers admit as many as Envoy admits connections at all.
        assert breakers["max_requests"] >= connection_limit, cluster["name"]
        assert breakers["max_connections"] >= connection_limit, cluster["name"]
        options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert 0 < _duration(options["common_http_protocol_options"]["idle_timeout"]) < 60
        assert "http_protocol_options" in options["explicit_http_config"]
        assert cluster["per_connection_buffer_limit_bytes"] == 1048576
        assert "tcp_keepalive" in cluster["upstream_connection_options"]
    for cluster in clusters.values():
        assert "respect_dns_ttl" not in cluster, f"{cluster['name']}: deprecated field, use cluster_type DnsCluster"
    for route in routes:
        if route.get("route", {}).get("cluster") == "mcp_warden_http":
            (method,) = route["match"]["headers"]
            assert method == {"name": ":method", "string_match": {"safe_regex": {"regex": "^(GET|HEAD)$"}}}, route


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_envoy_config_bounds_what_one_client_can_hold(name: str, tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIGS[name](tmp_path))
    hcm = _hcm(config)
    limit = _overload_limit(config)
    listener = _mcp_listener(config)
    # The list filter asks for a whole JSON list up to JSON_BUFFERED_MAX: the connection's
    # buffer must hold it with room to spare.
    assert listener["per_connection_buffer_limit_bytes"] >= 2 * _json_buffered_max()
    keepalive = {o["description"]: o["int_value"] for o in listener["socket_options"]}
    assert keepalive["SO_KEEPALIVE"] == 1 and keepalive["TCP_KEEPIDLE"] > 0
    _assert_slow_clients_bounded(hcm)
    _assert_local_replies_are_jsonrpc(hcm)
    _assert_access_log_bounded(hcm)
    _assert_app_clusters_sized(config, hcm, limit)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_envoy_config_keeps_the_admin_api_off_tcp(name: str, tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIGS[name](tmp_path))
    pipe = config["admin"]["address"]["pipe"]
    assert pipe["mode"] == 0o600 and pipe["path"].startswith("/tmp/"), pipe
    listeners = {lst["name"]: lst for lst in config["static_resources"]["listeners"]}
    health = listeners.pop("envoy_health_stats")
    assert list(listeners) == [_mcp_listener(config)["name"]]
    assert health["ignore_global_conn_limit"] is True
    (chain,) = health["filter_chains"]
    (hcm,) = chain["filters"]
    (vh,) = hcm["typed_config"]["route_config"]["virtual_hosts"]
    routes = {r["match"]["path"]: r for r in vh["routes"]}
    assert sorted(routes) == ["/ready", "/stats/prometheus"]
    for route in routes.values():
        assert route["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "GET"}}]
        assert route["route"]["cluster"] == "envoy_admin"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    admin = clusters["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert admin == {"pipe": {"path": pipe["path"]}}


def test_production_reference_reloads_its_certificate_and_speaks_tls_1_3_upstream(tmp_path: Path) -> None:
    config = yaml.safe_load((harness.ENVOY_DIR / "envoy.yaml").read_text())
    tls = _mcp_listener(config)["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    assert "tls_certificates" not in tls, "a certificate read once is never renewed"
    (sds,) = tls["tls_certificate_sds_secret_configs"]
    source = sds["sds_config"]["path_config_source"]
    assert source["path"] == edge_support.PROD_SDS_DIR + "/tls-certificate.yaml"
    assert source["watched_directory"] == {"path": edge_support.PROD_SDS_DIR}
    (secret,) = yaml.safe_load(edge_support.PROD_SDS.read_text())["resources"]
    assert secret["name"] == sds["name"]
    # Watching the directory sees the kubelet's ..data swap (the files' own names never change).
    assert secret["tls_certificate"]["watched_directory"] == {"path": edge_support.PROD_TLS_DIR}
    assert tls["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    upstream = clusters["agentcore"]["transport_socket"]["typed_config"]["common_tls_context"]["tls_params"]
    assert upstream == {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}
    assert clusters["agentcore"]["cluster_type"]["typed_config"]["all_addresses_in_single_endpoint"] is True
