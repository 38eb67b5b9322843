"""docker-compose.yml, the Dockerfile, envoy/envoy-compose.yaml and deploy/compose/ must agree.

No Docker engine runs here, so the compose stack itself cannot start in tests: instead every
file it mounts is validated by the real tools (mcp-warden check, envoy --mode validate) and the
addresses the pieces use to find each other are compared.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

import harness

ROOT = harness.REPO_ROOT
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ENVOY = yaml.safe_load((ROOT / "envoy/envoy-compose.yaml").read_text())
WARDEN = yaml.safe_load((ROOT / "deploy/compose/warden.yaml").read_text())


def _mounts(service: str) -> dict[str, Path]:
    out = {}
    for volume in COMPOSE["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            out[target] = ROOT / source
    return out


def _cluster_endpoint(name: str) -> tuple[str, int]:
    cluster = next(c for c in ENVOY["static_resources"]["clusters"] if c["name"] == name)
    addr = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    return addr["address"], int(addr["port_value"])


def test_every_mounted_file_exists() -> None:
    for service in COMPOSE["services"]:
        for target, source in _mounts(service).items():
            assert source.exists(), f"{service}: {source} (mounted at {target}) is missing"


def test_compose_warden_config_passes_check(warden_bin: Path, tmp_path: Path) -> None:
    # The config lives at /etc/mcp-warden in the container; its relative policy path resolves
    # the same way here. state_dir is only used by serve.
    result = subprocess.run(
        [str(warden_bin), "check", "--config", str(ROOT / "deploy/compose/warden.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_envoy_config_validates(envoy_bin: Path) -> None:
    result = harness.validate_envoy_config(envoy_bin, ROOT / "envoy/envoy-compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_finds_mcp_warden_and_the_demo_server_where_they_listen() -> None:
    grpc_port = int(WARDEN["listen"]["grpc"].rsplit(":", 1)[1])
    http_port = int(WARDEN["listen"]["http"].rsplit(":", 1)[1])
    # envoy_admin is Envoy's own admin socket (a pipe), not a service of the network.
    clusters = {
        c["name"]: _cluster_endpoint(c["name"]) for c in ENVOY["static_resources"]["clusters"] if c["name"] != "envoy_admin"
    }
    assert ("mcp-warden", grpc_port) in clusters.values()
    assert ("mcp-warden", http_port) in clusters.values()
    demo_port = int(COMPOSE["services"]["mcp-demo"]["environment"]["PORT"])
    assert ("mcp-demo", demo_port) in clusters.values()
    policy = "\n".join(p.read_text() for p in (ROOT / "deploy/compose/policy").glob("*.yaml"))
    assert f"mcp-demo:{demo_port}/mcp" in policy, "the app uri must name the demo server"


def test_published_port_is_envoys_listener_and_the_issuer() -> None:
    listener = ENVOY["static_resources"]["listeners"][0]["address"]["socket_address"]
    published = COMPOSE["services"]["envoy"]["ports"][0]
    assert published.split(":")[-1] == str(listener["port_value"])
    assert WARDEN["issuer"].endswith(f":{listener['port_value']}")


def test_image_serves_the_mounted_config_on_the_exposed_ports() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r'^CMD \[(.*)\]$', dockerfile, re.M)
    assert cmd and '"/etc/mcp-warden/warden.yaml"' in cmd.group(1)
    assert "/etc/mcp-warden/warden.yaml" in _mounts("mcp-warden")
    exposed = set(re.search(r"^EXPOSE (.*)$", dockerfile, re.M).group(1).split())
    assert {"9191", "9192"} <= exposed
    assert WARDEN["state_dir"] in {v.split(":")[1] for v in COMPOSE["services"]["mcp-warden"]["volumes"]}
