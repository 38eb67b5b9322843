"""Every Envoy config in envoy/ passes `envoy --mode validate`, and they agree on what matters.

envoy.yaml is the production reference: its TLS file paths are swapped for a throwaway
self-signed certificate so validation can load them. envoy-test.yaml is rendered from its
placeholders exactly as the e2e harness renders it.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import edge_support
import harness
import pytest
import yaml

PROD_CERT = "/etc/envoy/tls/tls.crt"
PROD_KEY = "/etc/envoy/tls/tls.key"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
WELL_KNOWN_EXACT = {
    "/.well-known/openid-configuration",
    "/.well-known/jwks-oidc",
    "/.well-known/jwks.json",
}
WELL_KNOWN_PREFIX = "/.well-known/oauth-protected-resource"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
LIST_FILTER = "mcp_warden.list_filter"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("mcp.example.com")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "tls.crt"
    key_path = tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _prod_config(tmp_path: Path) -> str:
    text = edge_support.render_production_text(tmp_path)
    cert, key = _self_signed(tmp_path)
    (tmp_path / "tls").mkdir()
    cert.rename(tmp_path / "tls" / "tls.crt")
    key.rename(tmp_path / "tls" / "tls.key")
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


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listeners = config["static_resources"]["listeners"]
    assert len(listeners) == 1
    chains = listeners[0]["filter_chains"]
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
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 443
    assert "DownstreamTlsContext" in str(listener["filter_chains"][0]["transport_socket"])
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    agentcore = clusters["agentcore"]
    assert agentcore["type"] in ("STRICT_DNS", "LOGICAL_DNS")
    tls = agentcore["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("UpstreamTlsContext")
    host = agentcore["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert host["port_value"] == 443
    assert tls["sni"] == host["address"]


def _authz_source() -> str:
    return (harness.REPO_ROOT / "src" / "authz" / "mod.rs").read_text()


def _rust_const(name: str) -> str:
    match = re.search(rf'pub const {name}: &str = "([^"]+)";', _authz_source())
    assert match, f"{name} not found in src/authz/mod.rs"
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
    assert [f["name"] for f in filters] == [EXT_AUTHZ, LIST_FILTER, "envoy.filters.http.router"]
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
