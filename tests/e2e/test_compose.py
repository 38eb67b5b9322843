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
    grpc = WARDEN["listen"]["grpc"].rsplit(":", 1)
    http = WARDEN["listen"]["http"].rsplit(":", 1)
    # envoy_admin is Envoy's own admin socket (a pipe), not a service of the network.
    clusters = {
        c["name"]: _cluster_endpoint(c["name"]) for c in ENVOY["static_resources"]["clusters"] if c["name"] != "envoy_admin"
    }
    # Envoy shares mcp-warden's network namespace: the same loopback address and port.
    assert (grpc[0], int(grpc[1])) in clusters.values()
    assert (http[0], int(http[1])) in clusters.values()
    demo_port = int(COMPOSE["services"]["mcp-demo"]["environment"]["PORT"])
    assert ("mcp-demo", demo_port) in clusters.values()
    policy = "\n".join(p.read_text() for p in (ROOT / "deploy/compose/policy").glob("*.yaml"))
    assert f"mcp-demo:{demo_port}/mcp" in policy, "the app uri must name the demo server"


LOOPBACK = ("127.", "::1", "[::1]", "localhost")


def _namespace(compose: dict, service: str, seen: tuple[str, ...] = ()) -> str:
    """The network namespace a service runs in: its own, another service's, or the host's."""
    mode = compose["services"][service].get("network_mode", "")
    if mode.startswith("service:") and mode[8:] not in seen:
        return _namespace(compose, mode[8:], (*seen, service))
    if mode == "host" or mode.startswith("container:"):
        return mode  # shared with the host or with a container outside this file
    return f"service:{service}"


def grpc_reachers(compose: dict, warden: dict, warden_service: str = "mcp-warden") -> set[str]:
    """Who besides the services named could reach mcp-warden's gRPC listener: service names,
    plus "host" (a published port or the host's namespace) and "network" (every container
    on its networks). Only Envoy may."""
    listen = warden["listen"]["grpc"]
    services = compose["services"]
    if listen.startswith("unix:"):
        path = listen[5:]
        mounts = {s: [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in c.get("volumes", [])]
                  for s, c in services.items()}
        holding = [v.split(":")[0] for v in mounts[warden_service]
                   if path.startswith(v.split(":")[1].rstrip("/") + "/")]
        assert holding, f"the socket {path} is on no volume: only mcp-warden's own filesystem"
        return {s for s, vs in mounts.items() if any(v.split(":")[0] in holding for v in vs)}
    host, port = listen.rsplit(":", 1)
    if not host.startswith(LOOPBACK):
        return {"network", *services}  # 0.0.0.0 or an interface address: every container on it
    ns = _namespace(compose, warden_service)
    if ns == "host" or ns.startswith("container:"):
        return {"host", *services}
    sharing = {s for s in services if _namespace(compose, s) == ns}
    published = any(str(p).split(":")[-1].split("/")[0] == port
                    for s in sharing for p in services[s].get("ports", []))
    return sharing | ({"host"} if published else set())


def test_only_envoy_can_reach_the_grpc_listener() -> None:
    # Issue 19: the gRPC port answers checks with freshly minted ID tokens for any user the
    # check names; the upstream (mcp-demo) shared a network with it.
    assert grpc_reachers(COMPOSE, WARDEN) == {"envoy", "mcp-warden"}


def test_the_reachability_check_catches_each_way_of_exposing_the_port() -> None:
    import copy

    def compose(**warden_service) -> dict:
        c = copy.deepcopy(COMPOSE)
        c["services"]["mcp-warden"] = {k: v for k, v in c["services"]["mcp-warden"].items() if k != "network_mode"}
        c["services"]["mcp-warden"].update(warden_service)
        return c

    def listen(address: str) -> dict:
        return {**WARDEN, "listen": {**WARDEN["listen"], "grpc": address}}

    # The shipped layout before issue 19: every container on the compose network.
    assert "mcp-demo" in grpc_reachers(compose(), listen("0.0.0.0:9191"))
    assert "mcp-demo" in grpc_reachers(COMPOSE, listen("0.0.0.0:9191"))
    # Loopback in a namespace that mcp-demo joins as well.
    joined = copy.deepcopy(COMPOSE)
    joined["services"]["mcp-demo"]["network_mode"] = "service:envoy"
    assert "mcp-demo" in grpc_reachers(joined, WARDEN)
    # Published on the host by Envoy, or the host's own namespace.
    published = copy.deepcopy(COMPOSE)
    published["services"]["envoy"]["ports"].append("127.0.0.1:9191:9191")
    assert "host" in grpc_reachers(published, WARDEN)
    assert "host" in grpc_reachers(compose(network_mode="host"), WARDEN)
    # A Unix socket on a volume that mcp-demo mounts too, and one only Envoy shares.
    shared = compose(volumes=["grpc:/run/mcp-warden"])
    shared["services"]["envoy"]["volumes"] = ["grpc:/run/envoy-side"]
    assert grpc_reachers(shared, listen("unix:/run/mcp-warden/grpc.sock")) == {"envoy", "mcp-warden"}
    shared["services"]["mcp-demo"]["volumes"] = ["grpc:/data"]
    assert "mcp-demo" in grpc_reachers(shared, listen("unix:/run/mcp-warden/grpc.sock"))


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
    assert {WARDEN["listen"]["grpc"].rsplit(":", 1)[1], WARDEN["listen"]["http"].rsplit(":", 1)[1]} <= exposed
    assert WARDEN["state_dir"] in {v.split(":")[1] for v in COMPOSE["services"]["mcp-warden"]["volumes"]}
