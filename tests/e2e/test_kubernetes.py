"""deploy/kubernetes/ (and deploy/istio/, deploy/observability/) are tested, not only written.

- The Envoy configs kustomize ships are envoy/envoy.yaml (scripts/sync-deploy.sh --check).
- Every object every kustomization renders, and every Istio / Prometheus-operator object,
  validates against the Kubernetes API and CRD schemas, unknown fields refused
  (tests/node/validate-manifests.mjs).
- Under Istio, envoy/envoy.yaml's edge settings and rate limits reach the ingress gateway: every
  EnvoyFilter patch, applied with Istio's semantics to an Istio-like gateway config
  (istio_support.py), lands where intended and the result passes `envoy --mode validate`.
- The pod's security and wiring hold: non-root, read-only root, no capabilities, seccomp,
  gRPC on loopback and in no Service, a NetworkPolicy admitting the public listener only.
- The pod runs: tests/e2e/pod.py starts the rendered Deployment's containers with the
  manifest's own command, args, env, ports and mounts (ConfigMaps and Secrets in the
  kubelet's layout), then an allowed and a denied MCP call go through that Envoy, the public
  discovery routes answer, and the probes the manifest names pass.
"""

from __future__ import annotations

import base64
import copy
import datetime
import importlib.util
import json
import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import harness
import httpx
import istio_support
import kubernetes_validate
import kustomize
import pod as podlib
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import ERR_INVALID_PARAMS, ERR_UNAUTHENTICATED, bearer, jsonrpc, post_jsonrpc
from opsupport import ConfigMapDir

ROOT = harness.REPO_ROOT
K8S = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = ["base", "overlays/agentcore", "overlays/demo"]
ISTIO = ROOT / "deploy" / "istio"
ISTIO_KUSTOMIZATIONS = ["mcp-warden", "gateway"]
VALIDATOR = ROOT / "tests" / "node" / "validate-manifests.mjs"
PLAIN_MANIFEST_DIRS = [ROOT / "deploy" / "istio", ROOT / "deploy" / "observability"]
# Kubernetes releases the core objects must be valid for, unknown fields refused as
# `kubectl apply` (strict server-side field validation) refuses them.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# scripts/sync_deploy.py, for the lists of envoy.yaml settings it copies into the Istio patches.
_SYNC_SPEC = importlib.util.spec_from_file_location("sync_deploy", ROOT / "scripts" / "sync_deploy.py")
assert _SYNC_SPEC is not None and _SYNC_SPEC.loader is not None
sync_deploy = importlib.util.module_from_spec(_SYNC_SPEC)
_SYNC_SPEC.loader.exec_module(sync_deploy)


def render(name: str) -> list[dict[str, Any]]:
    return kustomize.render(K8S / name)


def validate(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each object's schema verdict from the Node validator; fails when Node is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: Node.js >= 20 is a test requirement", pytrace=False)
    out = subprocess.run(
        [node, str(VALIDATOR)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=VALIDATOR.parent,
    )
    if not out.stdout.strip():
        pytest.fail(
            f"validate-manifests.mjs printed nothing (exit {out.returncode}): {out.stderr[-2000:]}", pytrace=False
        )
    return json.loads(out.stdout)


def strict_errors(objects: list[dict[str, Any]]) -> list[str]:
    """kubernetes-validate's strict verdict on every core object (CRDs have no schema there)."""
    errors = []
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        if "." in group and (not group.endswith(".k8s.io") or group.startswith("gateway.")):
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {exc.message}")
    return errors


def plain_manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object in deploy/istio/ and deploy/observability/."""
    out = []
    for d in PLAIN_MANIFEST_DIRS:
        for path in sorted(d.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                    out.append((path, doc))
    return out


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return kustomize.find(objects, "Deployment")["spec"]["template"]["spec"]


def public_listener(envoy_config: dict[str, Any]) -> dict[str, Any]:
    """Envoy's public listener: the one that terminates TLS (others, such as a stats
    listener, do not)."""
    found = [
        listener
        for listener in envoy_config["static_resources"]["listeners"]
        if any("transport_socket" in chain for chain in listener["filter_chains"])
    ]
    assert len(found) == 1, [listener["name"] for listener in envoy_config["static_resources"]["listeners"]]
    return found[0]


def public_routes(envoy_config: dict[str, Any]) -> list[dict[str, Any]]:
    hcm = public_listener(envoy_config)["filter_chains"][0]["filters"][0]["typed_config"]
    return list(hcm["route_config"]["virtual_hosts"][0]["routes"])


# ---------------------------------------------------------------------------------------
# One source, schemas
# ---------------------------------------------------------------------------------------


def test_the_envoy_configs_kustomize_ships_are_envoy_yaml() -> None:
    out = subprocess.run(
        [str(ROOT / "scripts" / "sync-deploy.sh"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    base = kustomize.find(render("base"), "ConfigMap", "mcp-warden-envoy")
    assert base["data"]["envoy.yaml"] == (ROOT / "envoy" / "envoy.yaml").read_text()


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(name: str) -> None:
    objects = render(name)
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    results = validate(objects)
    assert len(results) == len(objects)
    assert [r for r in results if r["error"]] == []
    assert strict_errors(objects) == []


def test_every_istio_and_observability_object_validates_against_its_crd_schema() -> None:
    found = plain_manifests() + [
        (ISTIO / name, o) for name in ISTIO_KUSTOMIZATIONS for o in kustomize.render(ISTIO / name)
    ]
    kinds = {doc["kind"] for _, doc in found}
    expected = {"AuthorizationPolicy", "EnvoyFilter", "IstioOperator", "Gateway", "VirtualService", "ServiceEntry"}
    assert expected | {"DestinationRule", "PodMonitor", "PrometheusRule", "Deployment"} <= kinds, kinds
    results = validate([doc for _, doc in found])
    bad = [(str(p.relative_to(ROOT)), r) for (p, _), r in zip(found, results, strict=True) if r["error"]]
    assert bad == []
    assert strict_errors([doc for _, doc in found]) == []


def test_the_validator_refuses_a_wrong_type_and_an_unknown_kind() -> None:
    deployment = kustomize.find(render("base"), "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9192"
    results = validate([broken, {"apiVersion": "example.invalid/v1", "kind": "Nothing", "metadata": {"name": "x"}}])
    assert "containerPort must be integer" in (results[0]["error"] or ""), results
    assert "no schema" in (results[1]["error"] or ""), results
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {
        "httpGet": {"path": "/readyz", "port": "http"}
    }
    assert any("'readinesProbe' was unexpected" in e for e in strict_errors([typo])), strict_errors([typo])
    # A misspelt field in a custom resource: the CRD schemas name no additionalProperties, so
    # only validate-manifests.mjs's unknown-field check refuses it, as `kubectl apply` would.
    rule = json.loads(json.dumps(kustomize.find(kustomize.render(ISTIO / "gateway"), "DestinationRule")))
    assert [r["error"] for r in validate([rule])] == [None]
    pool = rule["spec"]["trafficPolicy"]["portLevelSettings"][0]["connectionPool"]["http"]
    pool["http2MaxRequest"] = pool.pop("http2MaxRequests")
    (result,) = validate([rule])
    assert "unknown field(s): spec.trafficPolicy.portLevelSettings.0.connectionPool.http.http2MaxRequest" in (
        result["error"] or ""
    ), result
    typo["spec"]["template"]["spec"]["containers"][0].pop("readinesProbe")
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert "imagePullPolicyy" in (validate([typo])[0]["error"] or ""), validate([typo])


def test_mcp_warden_check_accepts_every_rendered_service_config_and_policy(tmp_path: Path, warden_bin: Path) -> None:
    for name in KUSTOMIZATIONS:
        objects = render(name)
        config = yaml.safe_load(kustomize.find(objects, "ConfigMap", "mcp-warden-config")["data"]["warden.yaml"])
        policy_dir = tmp_path / name / "policy"
        policy_dir.mkdir(parents=True)
        for file, text in kustomize.find(objects, "ConfigMap", "mcp-warden-policy")["data"].items():
            (policy_dir / file).write_text(text)
        assert config["policy"] == ["/etc/mcp-warden/policy/"]
        config["policy"] = [str(policy_dir)]
        config["keys"] = {**config["keys"], "dir": str(initialized_keys(warden_bin, tmp_path / name / "keys"))}
        path = tmp_path / name / "warden.yaml"
        path.write_text(json.dumps(config))
        out = subprocess.run(
            [str(warden_bin), "check", "--config", str(path)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, f"{name}: {out.stderr}"


# ---------------------------------------------------------------------------------------
# Security and wiring, read from the rendered manifests
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_runs_non_root_read_only_without_capabilities(name: str) -> None:
    spec = pod_spec(render(name))
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert len(spec["containers"]) >= 2
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"], c["name"]


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (`512Mi`, `1Gi`, `1000M`, plain bytes) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_envoys_heap_limit_fires_before_its_container_is_killed(name: str) -> None:
    """The overload manager's heap monitor acts on a fraction of Envoy's container memory
    limit: a heap limit above it would never fire (the kubelet kills Envoy first)."""
    objects = render(name)
    envoy = next(c for c in pod_spec(objects)["containers"] if c["name"] == "envoy")
    limit = memory_bytes(envoy["resources"]["limits"]["memory"])
    config = yaml.safe_load(kustomize.find(objects, "ConfigMap", "mcp-warden-envoy")["data"]["envoy.yaml"])
    (heap,) = [
        m["typed_config"]["max_heap_size_bytes"]
        for m in config["overload_manager"]["resource_monitors"]
        if m["name"] == "envoy.resource_monitors.fixed_heap"
    ]
    assert 0.5 * limit <= heap <= 0.85 * limit, (heap, limit)


def test_memory_quantities_are_read_in_bytes() -> None:
    assert [memory_bytes(q) for q in ("512Mi", "1Gi", "1280Mi", "1000M", "64")] == [
        512 * 2**20, 2**30, 1280 * 2**20, 10**9, 64]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_only_envoys_listener_is_exposed_and_grpc_stays_on_loopback(name: str) -> None:
    objects = render(name)
    spec = pod_spec(objects)
    containers = {c["name"]: c for c in spec["containers"]}
    envoy_config = yaml.safe_load(kustomize.find(objects, "ConfigMap", "mcp-warden-envoy")["data"]["envoy.yaml"])
    warden_config = yaml.safe_load(kustomize.find(objects, "ConfigMap", "mcp-warden-config")["data"]["warden.yaml"])
    grpc_host, grpc_port = warden_config["listen"]["grpc"].rsplit(":", 1)
    assert grpc_host == "127.0.0.1"
    assert warden_config["keys"]["read_only"] is True
    # Envoy's public listener is the container port the Service targets; nothing else is.
    envoy_port = int(public_listener(envoy_config)["address"]["socket_address"]["port_value"])
    https = next(p for p in containers["envoy"]["ports"] if p["name"] == "https")
    assert https["containerPort"] == envoy_port
    service = kustomize.find(objects, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["https"]
    assert all(int(grpc_port) not in [p["containerPort"] for p in c.get("ports", [])] for c in containers.values())
    # NetworkPolicy: the public listener from anywhere; the metrics port from Prometheus only.
    policy = kustomize.find(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    open_rules = [r for r in policy["spec"]["ingress"] if "from" not in r]
    assert [p["port"] for r in open_rules for p in r["ports"]] == ["https"]
    for rule in policy["spec"]["ingress"]:
        for p in rule["ports"]:
            assert any(p["port"] == q["name"] for c in containers.values() for q in c.get("ports", [])), p
    labels = spec and kustomize.find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], policy["spec"]["podSelector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    pdb = kustomize.find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_agentcore_overlay_has_an_https_issuer_the_app_uri_as_audience_and_upstream_tls() -> None:
    objects = render("overlays/agentcore")
    config = yaml.safe_load(kustomize.find(objects, "ConfigMap", "mcp-warden-config")["data"]["warden.yaml"])
    assert config["issuer"].startswith("https://")
    policy = kustomize.find(objects, "ConfigMap", "mcp-warden-policy")["data"]
    assert set(policy) == {"policy.yaml", "users.yaml"}
    (app,) = next(yaml.safe_load_all(policy["policy.yaml"]))["app_service"]["apps"]
    envoy = yaml.safe_load(kustomize.find(objects, "ConfigMap", "mcp-warden-envoy")["data"]["envoy.yaml"])
    upstream = next(c for c in envoy["static_resources"]["clusters"] if c["name"] == "agentcore")
    host = upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    # The token's audience is the app URI: the gateway's MCP URL, reached over TLS with SNI.
    assert app["uri"] == f"mcp+https://{host['address']}/mcp" and host["port_value"] == 443
    tls = upstream["transport_socket"]["typed_config"]
    assert tls["sni"] == host["address"]
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]["matcher"] == {
        "exact": host["address"]
    }
    # The route to it names the app the policy defines.
    (route,) = [r for r in public_routes(envoy) if r.get("route", {}).get("cluster") == "agentcore"]
    ext = route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["check_settings"]["context_extensions"]
    assert ext == {"app": app["name"]}


def test_the_image_entrypoint_is_the_manifests_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT \[(.*)\]$", dockerfile, re.M)
    assert entry and json.loads(f"[{entry.group(1)}]") == [podlib.WARDEN_ENTRYPOINT]
    user = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    spec = pod_spec(render("base"))
    assert user and user[-1].split(":")[0] == str(spec["securityContext"]["runAsUser"])


# ---------------------------------------------------------------------------------------
# The pod, run
# ---------------------------------------------------------------------------------------


def tls_secret(host: str) -> tuple[dict[str, str], bytes]:
    """A self-signed certificate for Envoy's listener, as `kubectl create secret tls` holds it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"tls.crt": pem.decode(), "tls.key": key_pem.decode()}, pem


def initialized_keys(warden_bin: Path, keys: Path) -> Path:
    """A key directory holding one signing key, where the Secret would be mounted: `check`
    runs serve's own start-up steps, and a read-only directory with no key fails them."""
    out = subprocess.run(
        [str(warden_bin), "keys", "--dir", str(keys), "init"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return keys


def keys_secret(warden_bin: Path, work: Path, name: str) -> dict[str, Any]:
    """The key Secret as the runbook makes it: `keys init` on a local dir, `keys secret`."""
    keys = work / "keys-copy"
    for argv in (["init"], ["secret", "--name", name]):
        out = subprocess.run(
            [str(warden_bin), "keys", "--dir", str(keys), *argv], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def secret_files(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def start_pod(
    procs: harness.ProcessGroup, tmp_path: Path, name: str, envoy_bin: Path, warden_bin: Path
) -> tuple[podlib.Pod, Path, list[dict[str, Any]], dict[str, Any]]:
    objects = render(name)
    keys = keys_secret(warden_bin, tmp_path, "mcp-warden-keys")
    tls_files, ca_pem = tls_secret("localhost")
    tls = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "mcp-warden-tls"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in tls_files.items()},
    }
    assert [r["error"] for r in validate([keys, tls])] == [None, None]
    ca = tmp_path / "ca.pem"
    ca.write_bytes(ca_pem)
    pod = podlib.start(
        procs,
        tmp_path / "pod",
        objects,
        secrets={"mcp-warden-keys": secret_files(keys), "mcp-warden-tls": tls_files},
        binaries={podlib.ENVOY_ENTRYPOINT: envoy_bin, podlib.WARDEN_ENTRYPOINT: warden_bin},
    )
    podlib.wait_ready(pod)
    return pod, ca, objects, keys


def probe_everything(pod: podlib.Pod) -> None:
    for name, c in pod.containers.items():
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in c.spec:
                assert pod.probe(name, kind), f"{name} {kind}"
    warden = pod.containers["mcp-warden"].spec
    assert {warden["readinessProbe"]["httpGet"]["path"], warden["livenessProbe"]["httpGet"]["path"]} == {
        "/readyz",
        "/healthz",
    }


def call(client: httpx.Client, url: str, key: str, tool: str, arguments: dict[str, Any]) -> httpx.Response:
    """An MCP session (initialize, initialized) then `tools/call` as id 7."""
    init = post_jsonrpc(client, url, harness.initialize_request(), bearer(key))
    if init.status_code != 200:
        return init
    session = {"mcp-session-id": init.headers["mcp-session-id"]} if "mcp-session-id" in init.headers else {}
    headers = {**bearer(key), **session, "mcp-protocol-version": "2025-11-25"}
    done = post_jsonrpc(client, url, jsonrpc("notifications/initialized", id=None), headers)
    assert done.status_code == 202, done.text
    return post_jsonrpc(client, url, jsonrpc("tools/call", {"name": tool, "arguments": arguments}, id=7), headers)


def test_the_demo_pod_runs_from_its_manifest_and_enforces_policy(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    pod, ca, objects, secret = start_pod(procs, tmp_path, "overlays/demo", envoy_bin, warden_bin)
    probe_everything(pod)
    base = f"https://localhost:{pod.real_port('envoy', 'https')}"
    issuer = yaml.safe_load(kustomize.find(objects, "ConfigMap", "mcp-warden-config")["data"]["warden.yaml"])["issuer"]
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=30) as client:
        # Public discovery through Envoy's listener, without credentials (AgentCore's view).
        discovery = client.get(f"{base}/.well-known/openid-configuration")
        assert discovery.status_code == 200 and discovery.json()["issuer"] == issuer
        jwks_path = httpx.URL(discovery.json()["jwks_uri"]).path
        keys = client.get(base + jwks_path).json()["keys"]
        manifest = json.loads(secret_files(secret)["keyring.json"])
        assert [k["kid"] for k in keys] == [k["kid"] for k in manifest["keys"]]
        url = f"{base}/mcp"
        allowed = call(client, url, "demo-alice-key", "echo", {"message": "from the pod"})
        assert allowed.status_code == 200, allowed.text
        assert "from the pod" in _result_text(allowed), allowed.text
        denied = call(client, url, "demo-bob-key", "get-env", {})
        assert denied.status_code == 200 and denied.json()["error"]["code"] == ERR_INVALID_PARAMS, denied.text
        assert denied.json()["id"] == 7
        anonymous = call(client, url, "not-a-key", "echo", {"message": "x"})
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == ERR_UNAUTHENTICATED

        # `kubectl apply` of a changed policy: the kubelet swaps the volume's `..data`, and the
        # replica reloads it through the manifest's mount (bob may now call get-env).
        (volume,) = [
            v["name"] for v in pod_spec(objects)["volumes"] if v.get("configMap", {}).get("name") == "mcp-warden-policy"
        ]
        policy = kustomize.find(objects, "ConfigMap", "mcp-warden-policy")["data"]["policy.yaml"]
        assert "      - echo\n" in policy
        ConfigMapDir(pod.volumes[volume]).write(
            {"policy.yaml": policy.replace("      - echo\n", "      - echo\n      - get-env\n")}
        )
        harness.wait_until(
            lambda: "result" in _body(call(client, url, "demo-bob-key", "get-env", {})),
            timeout=30,
            what="the policy swapped into the ConfigMap volume to be in force",
            procs=[c.proc for c in pod.containers.values() if c.proc],
        )


def _body(resp: httpx.Response) -> dict[str, Any]:
    """A JSON-RPC answer sent as JSON or as one SSE event."""
    text = resp.text
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        text = "".join(line[5:].strip() for line in text.splitlines() if line.startswith("data:"))
    return dict(json.loads(text))


def _result_text(resp: httpx.Response) -> str:
    """The text of a tools/call result."""
    return "".join(c.get("text", "") for c in _body(resp)["result"]["content"])


def test_the_agentcore_pod_runs_envoy_yaml_unchanged_and_serves_discovery_publicly(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    pod, ca, _, _ = start_pod(procs, tmp_path, "overlays/agentcore", envoy_bin, warden_bin)
    probe_everything(pod)
    base = f"https://localhost:{pod.real_port('envoy', 'https')}"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=30) as client:
        discovery = client.get(f"{base}/.well-known/openid-configuration")
        assert discovery.status_code == 200 and discovery.json()["issuer"] == "https://mcp.example.com"
        assert client.get(f"{base}/.well-known/jwks-oidc").json()["keys"]
        # The gateway is not reachable from here: what the check decides is.
        anonymous = call(client, f"{base}/mcp", "not-a-key", "get_weather", {})
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == ERR_UNAUTHENTICATED


def _typo(spec: dict[str, Any], what: str) -> None:
    containers = {c["name"]: c for c in spec["containers"]}
    if what == "mount":
        mount = next(m for m in containers["mcp-warden"]["volumeMounts"] if m["mountPath"] == "/etc/mcp-warden/policy")
        mount["mountPath"] = "/etc/mcp-warden/polcy"
    elif what == "port":
        next(p for p in containers["envoy"]["ports"] if p["name"] == "https")["containerPort"] = 8443
    elif what == "arg":
        args = containers["mcp-warden"]["args"]
        args[args.index("/etc/mcp-warden/config/warden.yaml")] = "/etc/mcp-warden/warden.yaml"
    elif what == "volume":
        next(m for m in containers["envoy"]["volumeMounts"] if m["name"] == "envoy-tls")["name"] = "envoy-cert"


@pytest.mark.parametrize(
    ("what", "error"),
    [
        ("mount", "mcp-warden exited"),
        ("port", "declares port 8443, but no process in the pod listens on it"),
        ("arg", "reads /etc/mcp-warden/warden.yaml, which none of its mounts provides"),
        ("volume", "mounts volume 'envoy-cert', which the pod does not have"),
    ],
)
def test_a_typo_in_the_manifest_fails_the_pod(
    what: str, error: str, procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    objects = render("overlays/demo")
    _typo(pod_spec(objects), what)
    keys = keys_secret(warden_bin, tmp_path, "mcp-warden-keys")
    tls_files, _ = tls_secret("localhost")
    with pytest.raises((harness.HarnessError, podlib.PodError), match=re.escape(error)):
        pod = podlib.start(
            procs,
            tmp_path / "pod",
            objects,
            secrets={"mcp-warden-keys": secret_files(keys), "mcp-warden-tls": tls_files},
            binaries={podlib.ENVOY_ENTRYPOINT: envoy_bin, podlib.WARDEN_ENTRYPOINT: warden_bin},
        )
        podlib.wait_ready(pod)


# ---------------------------------------------------------------------------------------
# Istio: the pieces name each other
# ---------------------------------------------------------------------------------------


def test_istio_provider_policy_filter_and_routes_name_mcp_warden_consistently(tmp_path: Path, warden_bin: Path) -> None:
    (provider,) = [p for p in istio_operator()["spec"]["meshConfig"]["extensionProviders"] if "envoyExtAuthzGrpc" in p]
    grpc = provider["envoyExtAuthzGrpc"]
    warden = kustomize.render(ISTIO / "mcp-warden")
    gateway = kustomize.render(ISTIO / "gateway")
    config = yaml.safe_load(kustomize.find(warden, "ConfigMap", "mcp-warden-config")["data"]["warden.yaml"])
    # Fail closed, the body whole and as bytes, within mcp-warden's limit.
    assert grpc["failOpen"] is False and grpc["statusOnError"] == "503"
    body = grpc["includeRequestBodyInCheck"]
    assert body["packAsBytes"] is True and body["allowPartialMessage"] is False
    assert body["maxRequestBytes"] == config["inspection"]["max_body_bytes"]
    # The provider and the list filter reach the Service's gRPC port, which mcp-warden listens on.
    service = kustomize.find(warden, "Service")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert (grpc["service"], grpc["port"]) == (host, ports["grpc"]["port"])
    assert config["listen"]["grpc"].endswith(f":{ports['grpc']['port']}")
    container = next(
        c
        for c in kustomize.find(warden, "Deployment")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "mcp-warden"
    )
    assert [c["name"] for c in kustomize.find(warden, "Deployment")["spec"]["template"]["spec"]["containers"]] == [
        "mcp-warden"
    ]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": ports["http"]["port"],
        "grpc": ports["grpc"]["port"],
    }
    envoy_filter = kustomize.find(gateway, "EnvoyFilter", "mcp-warden-list-filter")
    (patch,) = envoy_filter["spec"]["configPatches"]
    assert patch["patch"]["operation"] == "INSERT_AFTER"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.ext_authz"
    ext_proc = patch["patch"]["value"]["typed_config"]["extension_config"]["typed_config"]
    assert ext_proc["grpc_service"]["envoy_grpc"]["cluster_name"] == f"outbound|{ports['grpc']['port']}||{host}"
    assert ext_proc["failure_mode_allow"] is False
    # CUSTOM on the gateway, by that provider, for the app's public_addr: every path but the
    # public ones, and the public ones for any method but GET and HEAD.
    policy = kustomize.find(gateway, "AuthorizationPolicy")
    assert policy["spec"]["action"] == "CUSTOM" and policy["spec"]["provider"]["name"] == provider["name"]
    (operation, other_methods) = [t["operation"] for rule in policy["spec"]["rules"] for t in rule["to"]]
    assert len(policy["spec"]["rules"]) == 2
    policy_docs = list(
        yaml.safe_load_all(kustomize.find(warden, "ConfigMap", "mcp-warden-policy")["data"]["policy.yaml"])
    )
    (app,) = policy_docs[0]["app_service"]["apps"]
    gateway_hosts = [h for s in kustomize.find(gateway, "Gateway")["spec"]["servers"] for h in s["hosts"]]
    assert (
        operation["hosts"]
        == other_methods["hosts"]
        == gateway_hosts
        == kustomize.find(gateway, "VirtualService")["spec"]["hosts"]
        == [app["public_addr"]]
    )
    public = next(
        r for r in kustomize.find(gateway, "VirtualService")["spec"]["http"] if r["name"] == "mcp-warden-public"
    )
    assert [r["destination"]["host"] for r in public["route"]] == [host]
    assert public["route"][0]["destination"]["port"]["number"] == ports["http"]["port"]
    public_paths = {m["uri"].get("exact") or m["uri"]["prefix"] + "*" for m in public["match"]}
    assert public_paths == set(operation["notPaths"]) == set(other_methods["paths"])
    assert other_methods["notMethods"] == ["GET", "HEAD"]
    envoy = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    routes = public_routes(envoy)
    envoy_public = {
        r["match"].get("path") or r["match"]["prefix"] + "*"
        for r in routes
        if r.get("route", {}).get("cluster") == "mcp_warden_http"
    }
    assert public_paths == envoy_public
    # mcp-warden accepts the mesh service config.
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "policy.yaml").write_text(
        kustomize.find(warden, "ConfigMap", "mcp-warden-policy")["data"]["policy.yaml"]
    )
    path = tmp_path / "warden.yaml"
    keys = {**config["keys"], "dir": str(initialized_keys(warden_bin, tmp_path / "keys"))}
    path.write_text(json.dumps({**config, "policy": [str(policy_dir)], "keys": keys}))
    out = subprocess.run([str(warden_bin), "check", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def istio_gateway() -> list[dict[str, Any]]:
    return kustomize.render(ISTIO / "gateway")


def istio_operator() -> dict[str, Any]:
    (mesh,) = [d for p, d in plain_manifests() if p.parent == ISTIO and d["kind"] == "IstioOperator"]
    return mesh


def envoy_yaml() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text()))


def envoy_yaml_hcm(config: dict[str, Any]) -> dict[str, Any]:
    return dict(public_listener(config)["filter_chains"][0]["filters"][0]["typed_config"])


def edge_patches() -> dict[str, dict[str, Any]]:
    """The edge EnvoyFilter's patches by applyTo (one of each)."""
    patches = kustomize.find(istio_gateway(), "EnvoyFilter", "mcp-warden-edge")["spec"]["configPatches"]
    by_kind = {p["applyTo"]: p for p in patches}
    assert len(by_kind) == len(patches), [p["applyTo"] for p in patches]
    return by_kind


def istio_gateway_config(tmp_path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The Istio-like config of the ingress gateway with every EnvoyFilter patch applied, and
    how often each patch applied."""
    objects = istio_gateway()
    files, ca_pem = tls_secret("mcp.example.com")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    config = istio_support.gateway_config(
        objects, istio_operator(), tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.pem"
    )
    counts = istio_support.apply_envoy_filters(config, [o for o in objects if o["kind"] == "EnvoyFilter"])
    return config, counts


def istio_public_http_route() -> dict[str, Any]:
    vs = kustomize.find(istio_gateway(), "VirtualService")
    return next(r for r in vs["spec"]["http"] if r["name"] == sync_deploy.ISTIO_PUBLIC_ROUTE)


def test_every_istio_gateway_patch_lands_where_istio_puts_it_and_envoy_accepts_the_result(
    tmp_path: Path, envoy_bin: Path
) -> None:
    """Every EnvoyFilter patch of deploy/istio/gateway, applied with Istio's semantics to an
    Istio-like config of the ingress gateway (tests/e2e/istio_support.py), applies where it is
    meant to, yields envoy.yaml's filter order and settings, and passes `envoy --mode validate`."""
    objects = istio_gateway()
    config, counts = istio_gateway_config(tmp_path)
    # Istio skips a patch that matches nothing without a word: here each one must land, once
    # (the listener patch on each of the gateway's listeners), the route patch on each Envoy
    # route Istio builds from the public http route (one per match).
    public_matches = len(istio_public_http_route()["match"])
    expected = {key: public_matches if key.endswith(" HTTP_ROUTE") else 1 for key in counts}
    assert counts and counts == expected and public_matches > 1, counts
    assert len(counts) == sum(len(o["spec"]["configPatches"]) for o in objects if o["kind"] == "EnvoyFilter")
    envoy = envoy_yaml()
    ours = envoy_yaml_hcm(envoy)
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    hcm = chain["filters"][0]["typed_config"]
    # envoy.yaml's filters in envoy.yaml's order, Istio's own ones (RBAC shadow, fault, cors) aside.
    names = [f["name"] for f in hcm["http_filters"]]
    assert [n for n in names if n in {f["name"] for f in ours["http_filters"]}] == [
        f["name"] for f in ours["http_filters"]
    ], names
    assert names[names.index("envoy.filters.http.ext_authz") + 1] == "mcp_warden.list_filter", names
    for f in ours["http_filters"]:
        if f["name"] in ("mcp_warden.list_filter", "envoy.filters.http.local_ratelimit"):
            placed = json.loads(json.dumps(hcm["http_filters"][names.index(f["name"])]))
            if f["name"] == "mcp_warden.list_filter":  # calls mcp-warden's Service, Istio's cluster
                grpc = placed["typed_config"]["extension_config"]["typed_config"]["grpc_service"]["envoy_grpc"]
                assert grpc["cluster_name"] in {c["name"] for c in config["static_resources"]["clusters"]}
                grpc["cluster_name"] = "mcp_warden_list"
            assert placed == f, f["name"]
    for key in sync_deploy.ISTIO_HCM_KEYS:
        assert hcm[key] == ours[key], key
    for key in sync_deploy.ISTIO_LISTENER_KEYS:
        assert listener[key] == public_listener(envoy)[key], key
    assert config["overload_manager"] == envoy["overload_manager"]
    upstream = next(c for c in config["static_resources"]["clusters"] if "bedrock-agentcore" in c["name"])
    agentcore = next(c for c in envoy["static_resources"]["clusters"] if c["name"] == "agentcore")
    for key in sync_deploy.ISTIO_CLUSTER_KEYS + ("connect_timeout", "upstream_connection_options"):
        assert upstream[key] == agentcore[key], key
    path = tmp_path / "envoy-istio-gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    result = harness.validate_envoy_config(envoy_bin, path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def envoy_yaml_public_routes() -> list[dict[str, Any]]:
    """envoy.yaml's public routes: to mcp-warden's HTTP port, ext_authz off."""
    return [r for r in public_routes(envoy_yaml()) if r.get("route", {}).get("cluster") == "mcp_warden_http"]


def istio_gateway_routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (vhost,) = chain["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
    return list(vhost["routes"])


def test_the_istio_public_routes_are_get_head_only_and_rate_limited_as_envoy_yamls(tmp_path: Path) -> None:
    """The gateway's public routes (built by Istio from the VirtualService, patched by
    envoyfilter-edge.yaml) match what envoy.yaml's do, path and `:method` alike, and each
    carries envoy.yaml's per-route rate limit; no other route has one."""
    config, _ = istio_gateway_config(tmp_path)
    routes = istio_gateway_routes(config)
    public = [r for r in routes if r["name"] == sync_deploy.ISTIO_PUBLIC_ROUTE]
    ours = envoy_yaml_public_routes()
    assert len(public) == len(ours) == 4
    # Path and GET/HEAD-only method matcher, route for route.
    assert [r["match"] for r in public] == [r["match"] for r in ours]
    methods = [h for r in public for h in r["match"]["headers"] if h["name"] == ":method"]
    assert len(methods) == len(public) and all(h["string_match"]["safe_regex"] for h in methods)
    limit = sync_deploy.RATE_LIMIT_FILTER
    for istio_route, envoy_route in zip(public, ours, strict=True):
        assert istio_route["typed_per_filter_config"] == {limit: envoy_route["typed_per_filter_config"][limit]}
    assert [r["name"] for r in routes if "typed_per_filter_config" in r] == [r["name"] for r in public]


# Requests tried against envoy.yaml's routes and the Istio gateway's routes and policy.
PROBE_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"]
PROBE_PATHS = [
    "/.well-known/openid-configuration",
    "/.well-known/jwks-oidc",
    "/.well-known/jwks.json",
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
    "/.well-known/jwks.json/x",
    "/.WELL-KNOWN/jwks.json",
    "/.well-known/other",
    "/mcp",
    "/",
]
PROBE_HEADERS: list[dict[str, str]] = [{}, {"x-envoy-auth-partial-body": "true"}]


def _envoy_yaml_outcome(routes: list[dict[str, Any]], method: str, path: str, headers: dict[str, str]) -> tuple:
    """(where the request goes, whether ext_authz checks it) through envoy.yaml."""
    route = istio_support.select_route(routes, method, path, headers)
    per_route = route.get("typed_per_filter_config", {}).get("envoy.filters.http.ext_authz", {})
    where = "direct"
    if "route" in route:
        where = {"mcp_warden_http": "public", "agentcore": "app"}[route["route"]["cluster"]]
    return where, per_route.get("disabled") is not True


def _istio_outcome(
    routes: list[dict[str, Any]], policy: dict[str, Any], method: str, path: str, headers: dict[str, str]
) -> tuple:
    """(where the request goes, whether the CUSTOM policy sends it to mcp-warden) on the gateway."""
    route = istio_support.select_route(routes, method, path, headers)
    where = "direct"
    if "route" in route:
        where = "public" if route["route"]["cluster"].endswith("||mcp-warden.mcp-warden.svc.cluster.local") else "app"
    return where, istio_support.custom_policy_checks(policy, "mcp.example.com", method, path)


def test_the_istio_policy_checks_every_request_envoy_yaml_checks(tmp_path: Path) -> None:
    """Evaluated as Istio's CUSTOM action does (the request goes to the provider when any rule
    matches), the AuthorizationPolicy spares exactly GET and HEAD on the public paths: a request
    the VirtualService routes to the app (any other method included) is checked, as in envoy.yaml."""
    config, _ = istio_gateway_config(tmp_path)
    istio_routes = istio_gateway_routes(config)
    envoy_routes = public_routes(envoy_yaml())
    policy = kustomize.find(istio_gateway(), "AuthorizationPolicy")
    unchecked = set()
    for method in PROBE_METHODS:
        for path in PROBE_PATHS:
            for headers in PROBE_HEADERS:
                ours = _envoy_yaml_outcome(envoy_routes, method, path, headers)
                istio = _istio_outcome(istio_routes, policy, method, path, headers)
                assert istio[0] == ours[0], (method, path, headers, istio, ours)
                if ours[0] == "direct":  # refused by a direct response, checked or not
                    continue
                assert istio[1] == ours[1], (method, path, headers, istio, ours)
                # Only the public routes skip the check, and nothing routed there is checked.
                assert (ours[0] == "public") == (not ours[1]), (method, path, ours)
                if not istio[1]:
                    unchecked.add((method, path))
    assert unchecked == {(m, p) for m in ("GET", "HEAD") for p in PROBE_PATHS[:5]}
    # The second rule is what checks the other methods: without it a POST to JWKS went unchecked.
    first_rule_only = copy.deepcopy(policy)
    first_rule_only["spec"]["rules"] = policy["spec"]["rules"][:1]
    assert istio_support.custom_policy_checks(policy, "mcp.example.com", "POST", "/.well-known/jwks.json")
    assert not istio_support.custom_policy_checks(first_rule_only, "mcp.example.com", "POST", "/.well-known/jwks.json")


def test_the_istio_rate_limit_filter_and_its_429_reply_are_envoy_yamls() -> None:
    """The local_ratelimit filter the gateway gets is envoy.yaml's, descriptors and buckets
    included, and so is the 429 mapper that echoes the JSON-RPC id."""
    patches = edge_patches()
    ours = envoy_yaml_hcm(envoy_yaml())
    (limit,) = [f for f in ours["http_filters"] if f["name"] == "envoy.filters.http.local_ratelimit"]
    value = patches["HTTP_FILTER"]["patch"]["value"]
    assert value["typed_config"]["descriptors"] == limit["typed_config"]["descriptors"]
    assert value["typed_config"]["rate_limits"] == limit["typed_config"]["rate_limits"]
    assert value == limit
    # The descriptors are keyed on mcp-warden's decision metadata, one tier per descriptor.
    sources = {
        a["metadata"]["metadata_key"]["path"][0]["key"]
        for r in value["typed_config"]["rate_limits"]
        for a in r["actions"]
    }
    assert sources == {"rl_user_rate", "rl_tool_rate", "user", "tool"}
    assert len(value["typed_config"]["descriptors"]) >= 2
    mappers = patches["NETWORK_FILTER"]["patch"]["value"]["typed_config"]["local_reply_config"]["mappers"]
    assert mappers == ours["local_reply_config"]["mappers"]
    (too_many,) = [m for m in mappers if "429" in json.dumps(m["filter"])]
    body = too_many["body_format_override"]["text_format_source"]["inline_string"]
    assert '"id":%DYNAMIC_METADATA(envoy.filters.http.ext_authz:jsonrpc_id)%' in body
    # mcp-warden's own denials pass untouched: the first mapper is gated on its decision metadata.
    assert mappers[0]["filter"]["or_filter"]["filters"][0]["metadata_filter"]["matcher"] == {
        "filter": "envoy.filters.http.ext_authz",
        "path": [{"key": "decision"}],
        "value": {"string_match": {"exact": "deny"}},
    }
    assert "body_format_override" not in mappers[0]


# Issue 28's edge settings (point 1) that apply to the Istio gateway. Each is either set by the
# Istio objects (checked against envoy.yaml below) or named in docs/deployment.md's "What Istio
# cannot express" table, with what it costs.
EDGE_SETTINGS = [
    "overload_manager",
    "global_downstream_max_connections",
    "ignore_global_conn_limit",
    "http2_protocol_options",
    "request_headers_timeout",
    "request_timeout",
    "connection_keepalive",
    "tcp keepalive",
    "circuit_breakers",
    "upstream TLS 1.2-1.3",
    "headers_with_underscores_action",
    "local_reply_config",
    "server header",
    "x-envoy headers",
    "idle_timeout",
    "retry_policy",
    "per_connection_buffer_limit_bytes",
    "local_ratelimit",
    "public route methods",
    "public route rate limit",
]


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(quantity[:-2]) * units[quantity[-2:]]


def _istio_edge_values() -> dict[str, tuple[Any, Any]]:
    """Setting → (envoy.yaml's value, the Istio objects' value)."""
    envoy = envoy_yaml()
    hcm, listener = envoy_yaml_hcm(envoy), public_listener(envoy)
    agentcore = next(c for c in envoy["static_resources"]["clusters"] if c["name"] == "agentcore")
    (breakers,) = agentcore["circuit_breakers"]["thresholds"]
    keepalive = agentcore["upstream_connection_options"]["tcp_keepalive"]
    patches = edge_patches()
    istio_hcm = patches["NETWORK_FILTER"]["patch"]["value"]["typed_config"]
    gateway = istio_gateway()
    (port,) = kustomize.find(gateway, "DestinationRule")["spec"]["trafficPolicy"]["portLevelSettings"]
    pool = port["connectionPool"]
    app = next(r for r in kustomize.find(gateway, "VirtualService")["spec"]["http"] if r["name"] == "app-bedrock-mcp")
    (component,) = istio_operator()["spec"]["components"]["ingressGateways"]
    proxy = yaml.safe_load(component["k8s"]["podAnnotations"]["proxy.istio.io/config"])["proxyHeaders"]
    env = {e["name"]: e["value"] for e in component["k8s"]["env"]}
    (route,) = [r for r in public_routes(envoy) if r.get("route", {}).get("cluster") == "agentcore"]
    retry = route["route"]["retry_policy"]
    monitors = {m["name"]: m["typed_config"] for m in envoy["overload_manager"]["resource_monitors"]}
    limit = monitors["envoy.resource_monitors.global_downstream_max_connections"]["max_active_downstream_connections"]
    heap = monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"]
    tls = agentcore["transport_socket"]["typed_config"]["common_tls_context"]["tls_params"]
    per_route = sync_deploy.RATE_LIMIT_FILTER
    return {
        # Applied by the bootstrap patch only when the agent fetches its bootstrap from istiod,
        # on a heap that is 80% of the gateway's memory limit.
        "overload_manager": (
            (envoy["overload_manager"], "true", True),
            (
                patches["BOOTSTRAP"]["patch"]["value"]["overload_manager"],
                env["BOOTSTRAP_XDS_AGENT"],
                heap <= 0.8 * _memory_bytes(component["k8s"]["resources"]["limits"]["memory"]),
            ),
        ),
        "global_downstream_max_connections": (limit, pool["tcp"]["maxConnections"]),
        "http2_protocol_options": (hcm["http2_protocol_options"], istio_hcm["http2_protocol_options"]),
        "request_headers_timeout": (hcm["request_headers_timeout"], istio_hcm["request_headers_timeout"]),
        "request_timeout": ((hcm["request_timeout"], "0s"), (istio_hcm["request_timeout"], app["timeout"])),
        "connection_keepalive": (
            hcm["http2_protocol_options"]["connection_keepalive"],
            istio_hcm["http2_protocol_options"]["connection_keepalive"],
        ),
        "tcp keepalive": (
            (listener["socket_options"], keepalive),
            (
                patches["LISTENER"]["patch"]["value"]["socket_options"],
                {
                    "keepalive_time": int(pool["tcp"]["tcpKeepalive"]["time"].rstrip("s")),
                    "keepalive_interval": int(pool["tcp"]["tcpKeepalive"]["interval"].rstrip("s")),
                    "keepalive_probes": pool["tcp"]["tcpKeepalive"]["probes"],
                },
            ),
        ),
        "circuit_breakers": (
            tuple(breakers[k] for k in ("max_connections", "max_requests", "max_pending_requests", "max_retries")),
            (
                pool["tcp"]["maxConnections"],
                pool["http"]["http2MaxRequests"],
                pool["http"]["http1MaxPendingRequests"],
                pool["http"]["maxRetries"],
            ),
        ),
        "connect_timeout": (agentcore["connect_timeout"], pool["tcp"]["connectTimeout"]),
        # Istio's SIMPLE origination is TLS 1.2-1.3 (istio_support.py builds it so).
        "upstream TLS 1.2-1.3": (
            (tls["tls_minimum_protocol_version"], tls["tls_maximum_protocol_version"], "SIMPLE"),
            ("TLSv1_2", "TLSv1_3", port["tls"]["mode"]),
        ),
        "headers_with_underscores_action": (
            hcm["common_http_protocol_options"]["headers_with_underscores_action"],
            istio_hcm["common_http_protocol_options"]["headers_with_underscores_action"],
        ),
        "local_reply_config": (hcm["local_reply_config"], istio_hcm["local_reply_config"]),
        "server header": ((hcm["server_header_transformation"], True), ("PASS_THROUGH", proxy["server"]["disabled"])),
        "x-envoy headers": (True, proxy["envoyDebugHeaders"]["disabled"]),
        "idle_timeout": (
            (
                hcm["common_http_protocol_options"]["idle_timeout"],
                agentcore["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
                    "common_http_protocol_options"
                ]["idle_timeout"],
            ),
            (istio_hcm["common_http_protocol_options"]["idle_timeout"], pool["http"]["idleTimeout"]),
        ),
        "retry_policy": (
            (retry["retry_on"], retry["num_retries"]),
            (app["retries"]["retryOn"], app["retries"]["attempts"]),
        ),
        "per_connection_buffer_limit_bytes": (
            (listener["per_connection_buffer_limit_bytes"], agentcore["per_connection_buffer_limit_bytes"]),
            (
                patches["LISTENER"]["patch"]["value"]["per_connection_buffer_limit_bytes"],
                patches["CLUSTER"]["patch"]["value"]["per_connection_buffer_limit_bytes"],
            ),
        ),
        "local_ratelimit": (
            next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.local_ratelimit"),
            patches["HTTP_FILTER"]["patch"]["value"],
        ),
        "public route methods": (
            [h["string_match"] for r in envoy_yaml_public_routes() for h in r["match"]["headers"]],
            [{"safe_regex": m["method"]} for m in istio_public_http_route()["match"]],
        ),
        "public route rate limit": (
            [{per_route: r["typed_per_filter_config"][per_route]} for r in envoy_yaml_public_routes()],
            [patches["HTTP_ROUTE"]["patch"]["value"]["typed_per_filter_config"]] * len(envoy_yaml_public_routes()),
        ),
    }


def cost_table_settings() -> str:
    """The first column of docs/deployment.md's "What Istio cannot express" table."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    table = doc.split("**What Istio cannot express, and what it costs**", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    return "\n".join(row.split(" | ")[0] for row in rows[1:])


def test_each_edge_setting_is_in_the_istio_objects_or_in_the_cost_table() -> None:
    values = _istio_edge_values()
    for setting, (expected, actual) in values.items():
        assert actual == expected, setting
    table = cost_table_settings()
    documented = [s for s in EDGE_SETTINGS if s in table]
    missing = [s for s in EDGE_SETTINGS if s not in values and s not in documented]
    assert missing == [], f"neither set for Istio nor in docs/deployment.md's table: {missing}"
    # What the table names is really not set: a setting is not both.
    assert [s for s in documented if s in values and s != "overload_manager"] == []


def envoy_yaml_access_log_format() -> dict[str, str]:
    """envoy/envoy.yaml's public listener's access-log JSON format."""
    config = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    hcm = public_listener(config)["filter_chains"][0]["filters"][0]["typed_config"]
    (log,) = hcm["access_log"]
    return log["typed_config"]["log_format"]["json_format"]


def test_the_istio_gateway_logs_envoy_yamls_bounded_access_log_fields() -> None:
    """The gateway's access log is envoy.yaml's: mcp-warden's decision fields, every client-chosen
    value cut to a length (a `:N` on each request header and metadata field), logged through a
    mesh provider that a Telemetry on the gateway selects, and flushed for long streams."""
    providers = {p["name"]: p for p in istio_operator()["spec"]["meshConfig"]["extensionProviders"]}
    gateway = kustomize.render(ISTIO / "gateway")
    telemetry = kustomize.find(gateway, "Telemetry")
    (logging,) = telemetry["spec"]["accessLogging"]
    (chosen,) = logging["providers"]
    labels = providers[chosen["name"]]["envoyFileAccessLog"]["logFormat"]["labels"]
    assert labels == envoy_yaml_access_log_format()
    client_chosen = [v for v in labels.values() if v.startswith(("%REQ(", "%DYNAMIC_METADATA("))]
    assert len(client_chosen) > 10 and all(re.search(r"\):\d+%$", v) for v in client_chosen), client_chosen
    filters = [o for o in gateway if o["kind"] == "EnvoyFilter"]
    selectors = {tuple(sorted(f["spec"]["workloadSelector"]["labels"].items())) for f in filters}
    assert selectors == {tuple(sorted(telemetry["spec"]["selector"]["matchLabels"].items()))}
    edge = kustomize.find(gateway, "EnvoyFilter", "mcp-warden-edge")
    merged = [p["patch"]["value"]["typed_config"] for p in edge["spec"]["configPatches"] if p["applyTo"] == "NETWORK_FILTER"]
    assert [m["access_log_options"]["access_log_flush_interval"] for m in merged] == ["60s"], merged
