"""mTLS through real Envoy: the peer identity Envoy verified (`source.principal`, the client
certificate's URI SAN) authenticates the caller; unknown peers and conflicting credentials are
refused, and nothing reaches the upstream.

The Envoy config is envoy/envoy-test.yaml with a TLS transport socket added to its listener
(client certificates required, verified against a CA made for this test).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import harness

ALICE_SPIFFE = "spiffe://example.org/agent/alice"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def _issue(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str, sans: list[x509.GeneralName], server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca_key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-warden e2e CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    d = tmp_path / "pki"
    d.mkdir()
    ca_path = d / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = _issue(ca, ca_key, "localhost", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], True)
    alice = _issue(ca, ca_key, "alice", [x509.UniformResourceIdentifier(ALICE_SPIFFE)], False)
    stranger = _issue(ca, ca_key, "stranger", [x509.UniformResourceIdentifier("spiffe://example.org/agent/stranger")], False)
    return {
        "ca": str(ca_path),
        "server": _write(d / "server", *server),
        "alice": _write(d / "alice", *alice),
        "stranger": _write(d / "stranger", *stranger),
    }


def _policy(upstream_port: int) -> str:
    return harness.default_policy(upstream_port) + f"""---
kind: user
version: v2
metadata:
  name: alice-agent
spec:
  roles: [demo-full]
  mtls_principals: ["{ALICE_SPIFFE}"]
"""


def _mtls_envoy_config(rendered: str, pki: dict[str, Any]) -> str:
    config = yaml.safe_load(rendered)
    listener = next(
        listener for listener in config["static_resources"]["listeners"] if listener["name"] == "mcp_ingress"
    )
    cert, key = pki["server"]
    listener["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}],
                "validation_context": {"trusted_ca": {"filename": pki["ca"]}},
            },
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture
def mtls_stack(procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path, pki: dict[str, Any]):
    upstream = harness.start_upstream(procs, tmp_path / "upstream", json_response=True)
    warden = harness.start_warden(procs, tmp_path / "warden", warden_bin, _policy(upstream.port))
    rendered = harness.render_envoy_test_config(
        warden_grpc_port=warden.grpc_port, warden_http_port=warden.http_port, upstream_port=upstream.port
    )
    envoy = harness.run_envoy(procs, tmp_path / "envoy", envoy_bin, _mtls_envoy_config(rendered, pki))
    return upstream, warden, envoy


def _client(pki: dict[str, Any], who: str | None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if who:
        ctx.load_cert_chain(*pki[who])
    return httpx.Client(verify=ctx, timeout=15)


def _call(client: httpx.Client, port: int, tool: str, headers: dict[str, str] | None = None) -> httpx.Response:
    msg = harness.jsonrpc("tools/call", {"name": tool, "arguments": {}}, id=11)
    return harness.post_jsonrpc(client, f"https://127.0.0.1:{port}/mcp", msg, headers)


def test_verified_peer_identity_authenticates_without_an_api_key(mtls_stack, pki) -> None:
    upstream, warden, envoy = mtls_stack
    with _client(pki, "alice") as client:
        init = harness.post_jsonrpc(client, f"https://127.0.0.1:{envoy.port}/mcp", harness.initialize_request())
        assert init.status_code == 200, init.text
        tokens = harness.record_headers(upstream.records()[-1], "authorization")
    assert len(tokens) == 1 and tokens[0].startswith("Bearer ")
    claims = jwt.decode(tokens[0].removeprefix("Bearer "), options={"verify_signature": False})
    assert claims["sub"] == "alice-agent"
    assert claims["aud"] == harness.demo_app_uri(upstream.port)


def test_unknown_peer_without_other_credentials_is_401_and_not_forwarded(mtls_stack, pki) -> None:
    upstream, _, envoy = mtls_stack
    before = upstream.count()
    with _client(pki, "stranger") as client:
        resp = _call(client, envoy.port, "get_weather")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["id"] == 11
    assert upstream.count() == before


def test_peer_identity_and_api_key_of_another_user_conflict(mtls_stack, pki) -> None:
    upstream, _, envoy = mtls_stack
    before = upstream.count()
    with _client(pki, "alice") as client:
        resp = _call(client, envoy.port, "get_weather", harness.bearer(harness.BOB_KEY))
    assert resp.status_code == 401, resp.text
    assert upstream.count() == before


def test_a_client_without_a_certificate_never_reaches_the_upstream(mtls_stack, pki) -> None:
    upstream, _, envoy = mtls_stack
    before = upstream.count()
    with _client(pki, None) as client, pytest.raises(httpx.HTTPError):
        _call(client, envoy.port, "get_weather", harness.bearer(harness.ALICE_KEY))
    assert upstream.count() == before
