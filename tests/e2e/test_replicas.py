"""Several replicas, one key Secret (issue 21, point 2): any replica's tokens verify against
any replica's JWKS at every moment, including during a rotation.

Two mcp-warden replicas run behind one real Envoy (two endpoints per mcp-warden cluster,
round-robin) on one read-only key directory laid out exactly as the kubelet lays out a
Secret volume (`..data` -> timestamped dir, a symlink per key). The Secret's content is
made the way docs/deployment.md's runbook makes it: `mcp-warden keys --dir COPY rotate` on
a local copy, then `mcp-warden keys --dir COPY secret`, whose manifest's files replace the
volume's by one atomic `..data` swap — under a continuous fixed-rate load of allowed and
denied calls. Two relying parties, each with one PyJWKClient bound (through discovery) to
ONE replica's JWKS, verify every token the upstream receives.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import harness
import httpx
import opsupport
import yaml
from harness import ALICE_KEY, BOB_KEY, ERR_INVALID_PARAMS, bearer, default_policy, demo_app_uri, wait_until
from opsupport import ConfigMapDir, CountingJWKClient, FixedRateLoad, Poller, Probe, TokenVerifier
from test_reload import _call, _expect_error, _expect_result

ISSUER = "https://mcp.example.test"  # the public URL every replica names as `iss`
SCHEDULE = {
    "token": {"lifetime": "30s"},
    # retain >= token.lifetime + jwks_max_age; propagation_delay >= jwks_max_age.
    "keys": {"read_only": True, "jwks_max_age": "2s", "propagation_delay": "3s", "retain": "60s"},
}
LOAD_RATE = float(os.environ.get("E2E_LOAD_RPS", "100"))  # the load's shape, never asserted
LOAD_MAX_SECONDS = 60.0  # a bound, not a duration


def keys_cli(warden_bin: Path, config: Path, copy: Path, *args: str) -> str:
    """`mcp-warden keys --config CONFIG --dir COPY ARGS...` (the runbook's commands)."""
    out = subprocess.run(
        [str(warden_bin), "keys", "--config", str(config), "--dir", str(copy), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def secret_files(manifest: str) -> dict[str, str]:
    """The files a Secret manifest holds, as its volume shows them."""
    secret = yaml.safe_load(manifest)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "mcp-warden-keys", secret
    return {name: base64.b64decode(value).decode() for name, value in secret["data"].items()}


def two_endpoint_envoy(wardens: list[harness.Warden], upstream: harness.Upstream) -> str:
    """envoy-test.yaml with every mcp-warden cluster balanced round-robin over both replicas."""
    config = yaml.safe_load(
        harness.render_envoy_test_config(
            warden_grpc_port=wardens[0].grpc_port, warden_http_port=wardens[0].http_port, upstream_port=upstream.port
        )
    )
    ports = {"mcp_warden_grpc": "grpc_port", "mcp_warden_list": "grpc_port", "mcp_warden_http": "http_port"}
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] in ports:
            cluster["lb_policy"] = "ROUND_ROBIN"
            cluster["load_assignment"]["endpoints"] = [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": getattr(w, ports[cluster["name"]]),
                                    }
                                }
                            }
                        }
                        for w in wardens
                    ]
                }
            ]
    return yaml.safe_dump(config, sort_keys=False)


def replica_jwks_client(warden: harness.Warden) -> CountingJWKClient:
    """A relying party's key client for ONE replica: discovery from that replica, the JWKS at
    the path discovery names, on that replica (the issuer's host is Envoy's public name)."""
    discovery = httpx.get(f"{warden.http_url}/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"] == ISSUER
    jwks_path = httpx.URL(discovery["jwks_uri"]).path
    return CountingJWKClient(f"{warden.http_url}{jwks_path}", cache_keys=True, cache_jwk_set=True, lifespan=2)


def probes(mcp_url: str) -> list[Probe]:
    def request(key: str, tool: str, args: Any) -> Any:
        return lambda seq: (mcp_url, {**harness.JSON_HEADERS, **bearer(key)}, _call(tool, args(seq), seq))

    weather = _expect_result("weather in c{seq}: sunny, 21C")
    alice = Probe("alice", request(ALICE_KEY, "get_weather", lambda s: {"city": f"c{s}"}), weather)
    bob = Probe("bob", request(BOB_KEY, "get_weather", lambda s: {"city": f"c{s}"}), weather)
    denied = Probe(
        "denied",
        request(BOB_KEY, "delete_file", lambda s: {"path": f"/tmp/{s}"}),
        _expect_error(200, ERR_INVALID_PARAMS),
    )
    return [alice, bob, denied]


# Tokens are cached per (app, user) on each replica and re-minted when the signing key
# changes: two users through two replicas make at least four distinct tokens per key.
TOKENS_PER_KEY = 4


def test_two_replicas_on_one_secret_rotate_together_under_load_and_every_token_verifies_against_both(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    upstream = harness.start_upstream(procs, tmp_path / "upstream", json_response=True, stateless=True)
    uri = demo_app_uri(upstream.port)
    volume = ConfigMapDir(tmp_path / "secret-volume")  # the kubelet's view of Secret mcp-warden-keys
    copy = tmp_path / "keys-copy"  # the operator's local copy
    schedule_config = tmp_path / "warden-schedule.yaml"
    schedule_config.write_text(json.dumps({**SCHEDULE, "keys": {**SCHEDULE["keys"], "read_only": False}}))

    # --- the first Secret, as the runbook creates it ---
    keys_cli(warden_bin, schedule_config, copy, "init")
    volume.write(secret_files(keys_cli(warden_bin, schedule_config, copy, "secret", "--name", "mcp-warden-keys")))
    (old_kid,) = [k["kid"] for k in json.loads((volume.root / "keyring.json").read_text())["keys"]]

    wardens = [
        harness.start_warden(
            procs,
            tmp_path / f"replica-{i}",
            warden_bin,
            default_policy(upstream.port),
            config_extra={"issuer": ISSUER, **SCHEDULE, "keys": {**SCHEDULE["keys"], "dir": str(volume.root)}},
            name=f"mcp-warden-{i}",
        )
        for i in range(2)
    ]
    envoy = harness.run_envoy(procs, tmp_path / "envoy", envoy_bin, two_endpoint_envoy(wardens, upstream))
    all_procs = [*(w.proc for w in wardens), envoy.proc, upstream.proc]

    clients = [replica_jwks_client(w) for w in wardens]
    verifiers = [TokenVerifier(upstream.record_path, c, ISSUER, uri).start() for c in clients]

    def kids(w: harness.Warden) -> frozenset[str]:
        resp = opsupport.client().get(f"{w.http_url}/.well-known/jwks-oidc")
        resp.raise_for_status()
        return frozenset(k["kid"] for k in resp.json()["keys"])

    jwks_pollers = [Poller(f"jwks-{i}", lambda w=w: kids(w), 0.1).start() for i, w in enumerate(wardens)]
    load = FixedRateLoad(
        probes(envoy.mcp_url),
        rate=LOAD_RATE,
        max_requests=int(LOAD_RATE * LOAD_MAX_SECONDS),
        max_seconds=LOAD_MAX_SECONDS,
    )
    load.start()
    try:
        wait_until(
            lambda: all(v.kids()[old_kid] >= TOKENS_PER_KEY for v in verifiers) or any(v.failures for v in verifiers),
            timeout=30,
            what="tokens of the first key from both replicas",
            procs=all_procs,
        )
        minted_before = [opsupport.scrape(w).get("mcp_warden_tokens_minted_total") for w in wardens]

        # --- the rotation, by the runbook: rotate the local copy, swap the Secret's content ---
        added = keys_cli(warden_bin, schedule_config, copy, "rotate")
        new_kid = added.split()[1].rstrip(":")
        volume.write(secret_files(keys_cli(warden_bin, schedule_config, copy, "secret", "--name", "mcp-warden-keys")))
        shutil.rmtree(copy)  # the copy is not what the replicas read

        wait_until(
            lambda: all(v.kids()[new_kid] >= TOKENS_PER_KEY for v in verifiers) or any(v.failures for v in verifiers),
            timeout=45,
            what="tokens of the new key verified by both relying parties",
            procs=all_procs,
        )
        after = load.count()
        wait_until(lambda: load.count() >= after + 200, timeout=30, what="more load after the switch", procs=all_procs)
    finally:
        load.stop()
        for p in jwks_pollers:
            p.stop()
        for v in verifiers:
            v.stop()

    # The new key was in BOTH replicas' JWKS before either signed with it (iat: whole seconds).
    first_listed = [min(t for t, k in p.results if isinstance(k, frozenset) and new_kid in k) for p in jwks_pollers]
    first_signed = min(v.claims["iat"] for v in verifiers[0].verified.values() if v.kid == new_kid)
    summary = (
        f"{load.summary()}; tokens verified per replica JWKS: {[dict(v.kids()) for v in verifiers]}; "
        f"new key listed by the replicas {[round(first_signed - t, 2) for t in first_listed]}s before it first signed"
    )
    print(summary)
    assert first_signed + 1 >= max(first_listed), summary
    assert not load.problems(), f"{load.problems()[:10]}\n{summary}"
    assert not load.hit_bound, summary
    for i, v in enumerate(verifiers):
        v.drain()
        assert not v.failures, f"replica {i}'s JWKS: {v.failures[:10]}"
        assert set(v.kids()) == {old_kid, new_kid}, v.kids()
        assert v.records == upstream.count(), (v.records, upstream.count())
    # Both replicas minted with each key (round-robin reached both), and both published both
    # keys at once.
    for w, before in zip(wardens, minted_before, strict=True):
        assert before >= 2 and opsupport.scrape(w).get("mcp_warden_tokens_minted_total") >= before + 2
    for p in jwks_pollers:
        seen = [k for _, k in p.results if isinstance(k, frozenset)]
        assert seen and all(seen), "a JWKS poll failed or was empty"
        assert any({old_kid, new_kid} <= k for k in seen), set(seen)
