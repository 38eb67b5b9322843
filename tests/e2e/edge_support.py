"""envoy/envoy.yaml (the production reference) made runnable on loopback, for
test_envoy_config.py (validation) and test_edge.py (the edge behaviours through real Envoy).

Only addresses and file paths change: the listeners bind 127.0.0.1 port 0, the admin socket and
the certificate directories move under a short temporary directory, the clusters point at the
test's mcp-warden and upstream. Every limit, timeout, filter and route stays as shipped (the
periodic access-log interval may be shortened, to be seen within a test).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import yaml

PROD_CONFIG = harness.ENVOY_DIR / "envoy.yaml"
PROD_SDS = harness.ENVOY_DIR / "sds" / "tls-certificate.yaml"
PROD_SDS_DIR = "/etc/envoy/sds"
PROD_TLS_DIR = "/etc/envoy/tls"
PROD_ADMIN_SOCKET = "/tmp/envoy-admin.sock"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
AGENTCORE_HOST = "your-mcp-gateway.bedrock-agentcore.us-east-1.amazonaws.com"
PUBLIC_LISTENER = "mcp_ingress_tls"
HEALTH_LISTENER = "envoy_health_stats"


@dataclass
class Pki:
    """A throwaway CA and leaf certificates it signed (PEM files)."""

    ca_cert: Path
    ca_key: Any

    def issue(self, out_dir: Path, name: str, dns: str, *, serial: int | None = None) -> tuple[Path, Path]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path


def make_pki(out_dir: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-warden edge test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_cert = out_dir / "ca.crt"
    ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(ca_cert, key)


def kubelet_publish(secret_dir: Path, version: str, cert: Path, key: Path) -> None:
    """Put tls.crt/tls.key in `secret_dir` as the kubelet does for a Secret volume: the files
    live in `..<version>/`, `..data` points at it, and tls.crt -> ..data/tls.crt. A new version
    is published by renaming a fresh `..data` link over the old one (one atomic move)."""
    secret_dir.mkdir(parents=True, exist_ok=True)
    versioned = secret_dir / f"..{version}"
    versioned.mkdir()
    (versioned / "tls.crt").write_bytes(cert.read_bytes())
    (versioned / "tls.key").write_bytes(key.read_bytes())
    tmp_link = secret_dir / "..data_tmp"
    tmp_link.symlink_to(versioned.name)
    os.rename(tmp_link, secret_dir / "..data")
    for name in ("tls.crt", "tls.key"):
        link = secret_dir / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")


def render_production_text(work_dir: Path) -> str:
    """envoy.yaml with its file paths moved under `work_dir` (which must be short: the admin
    socket path lives there) and the SDS resource written beside it. The caller puts the
    certificate in `work_dir/tls` (see kubelet_publish). Addresses are left as shipped."""
    sds_dir = work_dir / "sds"
    sds_dir.mkdir(parents=True, exist_ok=True)
    text = PROD_CONFIG.read_text()
    for path in (PROD_SDS_DIR, PROD_TLS_DIR, PROD_ADMIN_SOCKET):
        assert path in text, f"envoy.yaml no longer names {path}"
    sds = PROD_SDS.read_text()
    assert PROD_TLS_DIR in sds, f"envoy/sds/tls-certificate.yaml no longer reads {PROD_TLS_DIR}"
    (sds_dir / "tls-certificate.yaml").write_text(sds.replace(PROD_TLS_DIR, str(work_dir / "tls")))
    text = (
        text.replace(PROD_SDS_DIR, str(sds_dir))
        .replace(PROD_TLS_DIR, str(work_dir / "tls"))
        .replace(PROD_ADMIN_SOCKET, str(work_dir / "admin.sock"))
    )
    if not Path(SYSTEM_CA).exists():
        text = text.replace(SYSTEM_CA, str(work_dir / "tls" / "tls.crt"))
    return text


def clusters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def listeners(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {listener["name"]: listener for listener in config["static_resources"]["listeners"]}


def public_hcm(config: dict[str, Any]) -> dict[str, Any]:
    """The HTTP connection manager of envoy.yaml's public listener."""
    (chain,) = listeners(config)[PUBLIC_LISTENER]["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]


def _socket_address(cluster: dict[str, Any]) -> dict[str, Any]:
    (group,) = cluster["load_assignment"]["endpoints"]
    (lb,) = group["lb_endpoints"]
    return lb["endpoint"]["address"]["socket_address"]


def render_production_loopback(
    work_dir: Path,
    *,
    warden: harness.Warden,
    upstream_port: int,
    upstream_host: str,
    upstream_ca: Path,
    access_log_flush_interval: str | None = None,
) -> str:
    """render_production_text, then every address on loopback: the listeners on 127.0.0.1
    port 0, mcp-warden's clusters on its real ports, AgentCore's cluster on
    `upstream_host:upstream_port` (TLS, verified against `upstream_ca`, SNI and SAN
    `upstream_host`). `access_log_flush_interval`, when given, replaces the periodic log
    interval (60 s) so a test can see a long stream logged while it lasts."""
    config = yaml.safe_load(render_production_text(work_dir))
    if access_log_flush_interval:
        public_hcm(config)["access_log_options"]["access_log_flush_interval"] = access_log_flush_interval
    for listener in listeners(config).values():
        listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
    by_name = clusters(config)
    for name in ("mcp_warden_grpc", "mcp_warden_list"):
        _socket_address(by_name[name]).update(address="127.0.0.1", port_value=warden.grpc_port)
    _socket_address(by_name["mcp_warden_http"]).update(address="127.0.0.1", port_value=warden.http_port)
    agentcore = by_name["agentcore"]
    _socket_address(agentcore).update(address=upstream_host, port_value=upstream_port)
    tls = agentcore["transport_socket"]["typed_config"]
    assert tls["sni"] == AGENTCORE_HOST
    tls["sni"] = upstream_host
    validation = tls["common_tls_context"]["validation_context"]
    validation["trusted_ca"] = {"filename": str(upstream_ca)}
    (san,) = validation["match_typed_subject_alt_names"]
    san["matcher"] = {"exact": upstream_host}
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class EdgeEnvoy:
    """Envoy running the production reference: its public TLS port, its health/stats port and
    the admin API's Unix socket (the only way to the admin API)."""

    proc: harness.ManagedProcess
    port: int
    health_port: int
    admin_socket: Path
    config_path: Path

    def admin(self) -> Any:
        import httpx

        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.admin_socket)), timeout=5)

    def admin_get(self, path: str, **params: str) -> Any:
        with self.admin() as client:
            resp = client.get(f"http://envoy-admin{path}", params=params)
            resp.raise_for_status()
            return resp


def _listener_ports(admin_socket: Path) -> dict[str, int] | None:
    import httpx

    if not admin_socket.exists():
        return None
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(admin_socket)), timeout=2) as client:
        if client.get("http://envoy-admin/ready").text.strip() != "LIVE":
            return None
        statuses = client.get("http://envoy-admin/listeners", params={"format": "json"}).json()
    ports = {
        s["name"]: int(s["local_address"]["socket_address"].get("port_value") or 0)
        for s in statuses.get("listener_statuses", [])
    }
    return ports if ports.get(PUBLIC_LISTENER) and ports.get(HEALTH_LISTENER) else None


def run_production_envoy(
    group: harness.ProcessGroup, work_dir: Path, binary: Path, config_text: str, *, name: str = "envoy-prod"
) -> EdgeEnvoy:
    """Start Envoy on a config rendered by render_production_loopback (admin socket at
    `work_dir/admin.sock`) and wait until both listeners are bound."""
    config_path = work_dir / f"{name}.yaml"
    config_path.write_text(config_text)
    admin_socket = work_dir / "admin.sock"
    proc = group.start(
        name,
        [
            str(binary),
            "-c",
            str(config_path),
            "--use-dynamic-base-id",
            "--concurrency",
            "1",
            "--log-level",
            os.environ.get("E2E_ENVOY_LOG_LEVEL", "info"),
            # The access log is read by the tests: flushed every 100 ms, not every 10 s.
            "--file-flush-interval-msec",
            "100",
        ],
        cwd=work_dir,
    )
    ports = harness.wait_until(
        lambda: _listener_ports(admin_socket),
        timeout=harness.ENVOY_READY_TIMEOUT,
        what="waiting for Envoy's listeners (admin socket)",
        procs=[proc],
    )
    return EdgeEnvoy(proc, ports[PUBLIC_LISTENER], ports[HEALTH_LISTENER], admin_socket, config_path)
