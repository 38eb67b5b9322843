"""A kubelet for tests: runs a rendered Deployment's pod as local processes.

No cluster runs here, so this does what the kubelet would, from the manifest alone:

- every volume is a temp directory: ConfigMap and Secret volumes laid out as the kubelet's
  AtomicWriter lays them out (`..data` -> timestamped dir, one symlink per key; see
  opsupport.ConfigMapDir), with the ConfigMap named by the volume taken from the rendered
  objects and the Secret from the ones the test created; emptyDir an empty directory;
- every container runs its image's binary (IMAGES maps an image's entrypoint to the local
  binary) with the manifest's own command, args and env, its volume mounts mapped to those
  directories: a path under a mountPath, in an argument, an env value or a mounted file,
  is rewritten to the same path under the volume's directory; any other path is left alone
  and so fails if the manifest got it wrong;
- a pod has its own network namespace, the test machine does not: every port the pod's
  processes listen on is mapped to a free loopback port (Envoy's listeners and admin to
  port 0, read back from its admin API), in Envoy's config, mcp-warden's `listen` and env
  values; the manifest's containerPorts, probes and Service are resolved through that map,
  so a port no process listens on has no mapping and fails;
- probes are run as the kubelet runs them (httpGet: 200-399; tcpSocket: a connection).

Test plumbing added to the manifest's arguments: Envoy also gets `--admin-address-path`,
`--use-dynamic-base-id` and `--concurrency 1` (to find its ports, and to share the machine);
nothing is added to the other containers.

What it does not emulate: resources, security contexts (checked statically by the tests),
image pulls.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx
import yaml
from opsupport import ConfigMapDir

# An image's entrypoint (the manifest's command[0]) -> the local binary that plays it.
ENVOY_ENTRYPOINT = "/usr/local/bin/envoy"
WARDEN_ENTRYPOINT = "/usr/local/bin/mcp-warden"
NODE_PEERS = harness.REPO_ROOT / "tests" / "node"
LOOPBACK = {"127.0.0.1", "0.0.0.0", "localhost", "::", "::1"}


class PodError(AssertionError):
    """The manifest is not runnable as written."""


def free_port() -> int:
    """A loopback port the kernel just handed out (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Container:
    spec: dict[str, Any]
    mounts: list[tuple[str, Path]]  # (mountPath, host dir), longest mountPath first
    proc: harness.ManagedProcess | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def host_path(self, text: str) -> str:
        """`text` with every container path under a mountPath rewritten to the host dir (in one
        pass: a rewritten path is never rewritten again)."""
        if not self.mounts:
            return text
        hosts = dict(self.mounts)
        alternatives = "|".join(re.escape(m) for m, _ in self.mounts)  # longest first
        pattern = rf"(?<![\w.-])({alternatives})(?=/|\b|$)"
        return re.sub(pattern, lambda m: str(hosts[m.group(1)]), text)

    def port(self, port: int | str) -> int:
        """A containerPort, by number or by name."""
        for p in self.spec.get("ports", []):
            if port in (p.get("name"), p["containerPort"]):
                return int(p["containerPort"])
        raise PodError(f"container {self.name} has no port {port!r}")


@dataclass
class Pod:
    """The running pod: its containers and the map from its ports to the real ones."""

    deployment: dict[str, Any]
    containers: dict[str, Container]
    ports: dict[int, int] = field(default_factory=dict)
    volumes: dict[str, Path] = field(default_factory=dict)

    def real_port(self, container: str, port: int | str) -> int:
        declared = self.containers[container].port(port)
        if declared not in self.ports:
            raise PodError(f"container {container} declares port {declared}, but no process in the pod listens on it")
        return self.ports[declared]

    def probe(self, container: str, kind: str, *, ca: Path | None = None) -> bool:
        """Runs the container's `kind` probe once, as the kubelet would."""
        spec = self.containers[container].spec.get(kind)
        if spec is None:
            raise PodError(f"container {container} has no {kind}")
        if "httpGet" in spec:
            get = spec["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            url = f"{scheme}://127.0.0.1:{self.real_port(container, get['port'])}{get['path']}"
            # The kubelet does not verify a probe's certificate.
            resp = httpx.get(url, timeout=spec.get("timeoutSeconds", 1) + 2, verify=False)
            return 200 <= resp.status_code < 400
        if "tcpSocket" in spec:
            with socket.create_connection(
                ("127.0.0.1", self.real_port(container, spec["tcpSocket"]["port"])), timeout=3
            ):
                return True
        raise PodError(f"container {container}: {kind} kind not supported: {sorted(spec)}")


def _volume_files(
    volume: dict[str, Any], objects: list[dict[str, Any]], secrets: dict[str, dict[str, str]]
) -> dict[str, str] | None:
    """The files a ConfigMap/Secret volume holds; None for an emptyDir."""
    if "configMap" in volume:
        name = volume["configMap"]["name"]
        found = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
        if len(found) != 1:
            raise PodError(f"volume {volume['name']}: no ConfigMap {name} in the rendered objects")
        return dict(found[0].get("data", {}))
    if "secret" in volume:
        name = volume["secret"]["secretName"]
        if name not in secrets:
            raise PodError(f"volume {volume['name']}: no Secret {name} (have {sorted(secrets)})")
        return secrets[name]
    if "emptyDir" in volume:
        return None
    raise PodError(f"volume {volume['name']}: kind not supported: {sorted(volume)}")


def _mounts(spec: dict[str, Any], volumes: dict[str, Path]) -> list[tuple[str, Path]]:
    out = []
    for m in spec.get("volumeMounts", []):
        if set(m) - {"name", "mountPath", "readOnly"}:
            raise PodError(f"container {spec['name']}: mount fields not supported: {sorted(m)}")
        if m["name"] not in volumes:
            raise PodError(f"container {spec['name']} mounts volume {m['name']!r}, which the pod does not have")
        out.append((m["mountPath"].rstrip("/"), volumes[m["name"]]))
    return sorted(out, key=lambda m: -len(m[0]))


def _arg_after(args: list[str], *flags: str) -> str:
    for i, a in enumerate(args[:-1]):
        if a in flags:
            return args[i + 1]
    raise PodError(f"none of {flags} in {args}")


def _map_envoy_ports(config: dict[str, Any], ports: dict[int, int]) -> tuple[list[tuple[str, int]], str | None]:
    """Rewrites Envoy's loopback cluster endpoints through `ports`, its listeners and a TCP
    admin to 127.0.0.1:0; returns the (listener name, declared port) pairs and the admin's
    Unix socket path (already mapped through the mounts) when it has one."""
    listeners = []
    for listener in config["static_resources"]["listeners"]:
        addr = listener["address"]["socket_address"]
        listeners.append((listener["name"], int(addr["port_value"])))
        addr.update(address="127.0.0.1", port_value=0)
    admin = config["admin"]["address"]
    if "socket_address" in admin:
        admin["socket_address"].update(address="127.0.0.1", port_value=0)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            sa = node.get("socket_address")
            if isinstance(sa, dict) and sa.get("address") in LOOPBACK and int(sa["port_value"]) in ports:
                sa.update(address="127.0.0.1", port_value=ports[int(sa["port_value"])])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config["static_resources"]["clusters"])
    return listeners, admin.get("pipe", {}).get("path")


def _listener_port(admin: httpx.Client, name: str) -> int | None:
    resp = admin.get("/listeners", params={"format": "json"})
    resp.raise_for_status()
    for status in resp.json().get("listener_statuses", []):
        if status.get("name") == name:
            port = status["local_address"]["socket_address"].get("port_value")
            return int(port) if port else None
    return None


def _loopback_ports(envoy: dict[str, Any], warden: dict[str, Any]) -> set[int]:
    """Ports the pod's processes reach each other on: Envoy's loopback cluster endpoints and
    mcp-warden's listeners."""
    ports = {int(a.rsplit(":", 1)[1]) for a in warden.get("listen", {}).values()}
    for c in envoy["static_resources"]["clusters"]:
        for group in c["load_assignment"]["endpoints"]:
            for ep in group["lb_endpoints"]:
                sa = ep["endpoint"]["address"].get("socket_address")  # a pipe is path-mapped
                if sa is not None and sa["address"] in LOOPBACK:
                    ports.add(int(sa["port_value"]))
    return ports


def _read(container: Container, path_in_container: str) -> str:
    try:
        return Path(container.host_path(path_in_container)).read_text()
    except FileNotFoundError:
        raise PodError(
            f"container {container.name} reads {path_in_container}, which none of its mounts provides"
        ) from None


def _rewrite_volume_file(container: Container, path_in_container: str, edit: Callable[[dict[str, Any]], Any]) -> Any:
    """Loads a YAML file the container reads (through its mounts), edits it, writes it back
    as the kubelet would write a new version (a `..data` swap)."""
    host = Path(container.host_path(path_in_container))
    root = host.parent
    if not (root / "..data").is_symlink():
        raise PodError(f"{path_in_container} is not in a ConfigMap/Secret volume of {container.name}")
    files = {p.name: p.read_text() for p in root.iterdir() if not p.name.startswith("..")}
    doc = yaml.safe_load(files[host.name])
    result = edit(doc)
    files[host.name] = yaml.safe_dump(doc, sort_keys=False)
    ConfigMapDir(root).write(files)
    return result


def _command(spec: dict[str, Any], binaries: dict[str, Path]) -> tuple[list[str], Path | None]:
    command = spec.get("command")
    if not command:
        raise PodError(f"container {spec['name']} relies on its image's entrypoint: name it in the manifest")
    if command[0] in binaries:
        return [str(binaries[command[0]]), *command[1:]], None
    if command[0] == "npx":  # the node image: packages come from tests/node (no download)
        found = shutil.which("npx")
        if found is None:
            raise PodError("npx not found (Node.js >= 20 is a test requirement)")
        return [found, *command[1:]], NODE_PEERS
    raise PodError(f"container {spec['name']}: no local binary plays {command[0]!r}")


def start(
    group: harness.ProcessGroup,
    work: Path,
    objects: list[dict[str, Any]],
    *,
    secrets: dict[str, dict[str, str]],
    binaries: dict[str, Path],
) -> Pod:
    """Lays out the volumes and starts every container of the one Deployment's pod: the
    upstreams first, then mcp-warden, then Envoy; returns once Envoy listens."""
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    volumes: dict[str, Path] = {}
    for v in spec.get("volumes", []):
        root = work / "volumes" / v["name"]
        root.mkdir(parents=True)
        volumes[v["name"]] = root
    containers = {c["name"]: Container(c, _mounts(c, volumes)) for c in spec["containers"]}
    for v in spec.get("volumes", []):
        files = _volume_files(v, objects, secrets)
        if files is None:
            continue
        users = [c for c in containers.values() if any(h == volumes[v["name"]] for _, h in c.mounts)]
        mapped = {name: (users[0].host_path(text) if len(users) == 1 else text) for name, text in files.items()}
        ConfigMapDir(volumes[v["name"]]).write(mapped)
    pod = Pod(deployment, containers, volumes=volumes)

    by_entry = {c.spec["command"][0] if c.spec.get("command") else "": c for c in containers.values()}
    envoy, warden = by_entry.get(ENVOY_ENTRYPOINT), by_entry.get(WARDEN_ENTRYPOINT)
    if envoy is None or warden is None:
        raise PodError(f"the pod needs an Envoy ({ENVOY_ENTRYPOINT}) and an mcp-warden ({WARDEN_ENTRYPOINT}) container")
    envoy_config_path = _arg_after(envoy.spec.get("args", []), "-c", "--config-path")
    warden_config_path = _arg_after(warden.spec.get("args", []), "--config")
    envoy_doc = yaml.safe_load(_read(envoy, envoy_config_path))
    warden_doc = yaml.safe_load(_read(warden, warden_config_path))
    pod.ports = {p: free_port() for p in sorted(_loopback_ports(envoy_doc, warden_doc))}

    def map_listen(doc: dict[str, Any]) -> None:
        for key, addr in doc.get("listen", {}).items():
            doc["listen"][key] = f"127.0.0.1:{pod.ports[int(addr.rsplit(':', 1)[1])]}"

    _rewrite_volume_file(warden, warden_config_path, map_listen)
    listeners, admin_pipe = _rewrite_volume_file(envoy, envoy_config_path, lambda d: _map_envoy_ports(d, pod.ports))

    others = [c for c in containers.values() if c not in (envoy, warden)]
    for c in [*others, warden]:
        _run(group, c, pod, binaries)
    wait = [c.proc for c in containers.values() if c.proc is not None]
    admin_path = work / "envoy.admin-address"
    extra = ["--admin-address-path", str(admin_path), "--use-dynamic-base-id", "--concurrency", "1"]
    _run(group, envoy, pod, binaries, extra)
    assert envoy.proc is not None
    procs = [*wait, envoy.proc]
    if admin_pipe is None:
        address = harness.wait_until(
            lambda: harness._envoy_admin_address(admin_path),
            timeout=harness.ENVOY_READY_TIMEOUT,
            what="Envoy's admin address",
            procs=procs,
        )
        admin = httpx.Client(base_url=f"http://{address}", timeout=5)
    else:
        admin = httpx.Client(base_url="http://envoy-admin", transport=httpx.HTTPTransport(uds=admin_pipe), timeout=5)
    with admin:
        for name, declared in listeners:
            pod.ports[declared] = harness.wait_until(
                lambda name=name: _listener_port(admin, name),
                timeout=harness.ENVOY_READY_TIMEOUT,
                what=f"Envoy listener {name}",
                procs=procs,
            )
    return pod


def _run(
    group: harness.ProcessGroup, c: Container, pod: Pod, binaries: dict[str, Path], extra: list[str] | None = None
) -> None:
    argv, cwd = _command(c.spec, binaries)
    # argv[0] is the local binary playing the image's command: a host path already (rewriting
    # it would break a checkout that itself lives under a mountPath such as /tmp).
    argv = argv[:1] + [c.host_path(a) for a in [*argv[1:], *c.spec.get("args", [])]] + (extra or [])
    env = {}
    for e in c.spec.get("env", []):
        if set(e) != {"name", "value"}:
            raise PodError(f"container {c.name}: env {e.get('name')} uses valueFrom, not supported")
        value = c.host_path(e["value"])
        env[e["name"]] = str(pod.ports[int(value)]) if value.isdigit() and int(value) in pod.ports else value
    c.proc = group.start(c.name, argv, env=env, cwd=cwd)


def wait_ready(pod: Pod, *, timeout: float = 90.0) -> None:
    """Polls every container's readiness probe until all pass, as the kubelet marks a pod Ready."""
    procs = [c.proc for c in pod.containers.values() if c.proc is not None]
    for name, c in pod.containers.items():
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.spec.get(kind, {})
            action = probe.get("httpGet") or probe.get("tcpSocket")
            if action is not None:
                pod.real_port(name, action["port"])  # a port nothing listens on fails now, not at the deadline
        if "readinessProbe" in c.spec:
            harness.wait_until(
                lambda name=name: pod.probe(name, "readinessProbe"),
                timeout=timeout,
                what=f"{name} readinessProbe",
                procs=procs,
            )
