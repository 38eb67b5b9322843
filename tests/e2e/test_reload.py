"""Issue 6, point 5, through real Envoy: policy hot reload and signing-key rotation with
zero failed requests.

While a fixed-rate load of allowed and denied `tools/call` runs through Envoy for a user
whose permissions never change, the test performs 100 policy rewrites over three sources —
a plain file saved editor-style (temp file + rename) or by `mv`, and two Kubernetes-style
ConfigMap volumes updated by the `..data` symlink swap (one referenced by its file symlink,
one as a directory) — some of them invalid (bad regex, unknown field, unknown role, YAML
syntax), plus one full signing-key rotation with `mcp-warden keys rotate`. A relying party
with ONE PyJWKClient created before the rotation verifies every token the upstream receives.

A second test covers removing every policy file (the last good policy stays) and SIGHUP.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
import opsupport
import pytest
from harness import (
    ALICE_KEY,
    ERR_INVALID_PARAMS,
    ERR_UNAUTHENTICATED,
    api_key_hash,
    bearer,
    demo_app_uri,
    jsonrpc,
    post_jsonrpc,
    wait_until,
)
from opsupport import (
    ConfigMapDir,
    CountingJWKClient,
    FixedRateLoad,
    Poller,
    Probe,
    TokenVerifier,
    editor_save,
    mv_replace,
    reloads,
    scrape,
    wait_for_reload,
)

LOADER_KEY = "e2e-loader-key-5b7c9d1e3f5a7b9c"  # the load's user: never changed by a rewrite
PROBE_KEY = "e2e-probe-key-2c4e6a8b0d2f4a6c"  # `echo` flips from denied to allowed mid-test
DAVE_KEY = "e2e-dave-key-8f6e4d2c0b9a8f7e"  # added mid-test
MALLORY_KEY = "e2e-mallory-key-0a1b2c3d4e5f6a7b"  # only ever in INVALID rewrites
ERIN_KEY = "e2e-erin-key-3d5f7b9a1c3e5d7f"
FRANK_KEY = "e2e-frank-key-6e8a0c2e4a6c8e0a"

REWRITES = 100
DAVE_FROM = 30  # rewrites from this index on add user dave
ECHO_FROM = 60  # ... and let `probe` call `echo`
ROTATE_AFTER_GROUP = 6
INVALID_KINDS = ("bad_regex", "unknown_field", "unknown_role", "yaml_syntax")

LOAD_RATE = float(os.environ.get("E2E_LOAD_RPS", "200"))  # load shape, never asserted
LOAD_MAX_SECONDS = 90.0  # a bound, not a duration: the load runs until the rewrites are done


# ---------------------------------------------------------------------------------------
# Policy text
# ---------------------------------------------------------------------------------------


def _role(name: str, tools: list[str], extra: str = "") -> str:
    listed = ", ".join(f'"{t}"' for t in tools)
    return f"""\
---
kind: role
version: v8
metadata:
  name: {name}
spec:
  allow:
    app_labels:
      service: demo
    mcp:
      tools: [{listed}]{extra}
"""


def _user(name: str, roles: list[str], key: str | None = None, traits: dict[str, list[str]] | None = None) -> str:
    text = f"""\
---
kind: user
version: v2
metadata:
  name: {name}
spec:
  roles: [{", ".join(roles)}]
"""
    if traits:
        text += "  traits:\n" + "".join(f"    {k}: [{', '.join(repr(x) for x in v)}]\n" for k, v in traits.items())
    if key:
        text += f'  api_keys:\n  - "{api_key_hash(key)}"\n'
    return text


def _invalid(kind: str, source: str) -> str:
    """One error of `kind`, plus a poison that would let mallory in if it were ever applied."""
    poison = _user(f"mallory-{source}", ["load-role"], MALLORY_KEY)
    if kind == "bad_regex":
        return poison + _role(f"{source}-broken", ["^(unclosed$"])
    if kind == "unknown_field":
        return poison + _role(f"{source}-broken", ["x"], "\n      toolz: [y]")
    if kind == "unknown_role":
        return poison + _user(f"{source}-ghost", ["no-such-role"])
    if kind == "yaml_syntax":
        return poison + "---\nkind: role\nmetadata: {name: [unclosed\n"
    raise AssertionError(kind)


def plain_policy(uri: str, i: int, invalid: str | None = None) -> str:
    """The plain file: the app, the load user and its role, plus churn."""
    text = f"""\
app_service:
  enabled: "yes"
  apps:
  - name: "demo"
    uri: "{uri}"
    labels:
      env: test
      service: demo
    rewrite:
      headers:
      - "Authorization: Bearer {{{{internal.id_token}}}}"
"""
    text += _role("load-role", ["^get_.*$"])
    text += _user("loader", ["load-role"], LOADER_KEY)
    text += _role("plain-churn", [f"tool_plain_{i}", "^search_.*$"])
    text += _user("plain-churner", ["plain-churn"], traits={"generation": [str(i)]})
    if invalid:
        text += _invalid(invalid, "plain")
    return text


def cm_file_policy(i: int, invalid: str | None = None) -> str:
    """ConfigMap referenced by its file symlink: the probe user whose `echo` flips."""
    tools = ["^get_.*$"] + (["echo"] if i >= ECHO_FROM or invalid else [])
    text = _role("probe-role", tools)
    text += _user("probe", ["probe-role"], PROBE_KEY)
    text += _role(f"cmfile-churn-{i}", [f"tool_cmfile_{i}"])
    text += _user("cmfile-churner", [f"cmfile-churn-{i}"], traits={"generation": [str(i)]})
    if invalid:
        text += _invalid(invalid, "cmfile")
    return text


def cm_dir_policy(i: int, invalid: str | None = None) -> str:
    """ConfigMap referenced as a directory: dave appears from DAVE_FROM on."""
    text = _role("cmdir-churn", [f"tool_cmdir_{i}"])
    text += _user("cmdir-churner", ["cmdir-churn"], traits={"generation": [str(i)]})
    if i >= DAVE_FROM or invalid:
        text += _user("dave", ["load-role"], DAVE_KEY)
    if invalid:
        text += _invalid(invalid, "cmdir")
    return text


@dataclass
class Rewrite:
    index: int
    source: str  # plain | cm_file | cm_dir
    method: str  # editor | mv | symlink-swap
    invalid: str | None


def plan_rewrites(seed: int = 6) -> list[list[Rewrite]]:
    """100 rewrites in groups of 1-5 written back to back (a burst the watcher debounces into
    one reload). Invalid files get fixed again soon; the last group leaves all three valid."""
    rng = random.Random(seed)
    sources = ["plain", "cm_file", "cm_dir"]
    broken: dict[str, str | None] = dict.fromkeys(sources)
    groups: list[list[Rewrite]] = []
    i = 0
    while i < REWRITES - len(sources):
        group = []
        for _ in range(rng.choice((1, 2, 3, 4, 5))):
            if i >= REWRITES - len(sources):
                break
            pending = [s for s in sources if broken[s]]
            source = pending[0] if pending and rng.random() < 0.7 else rng.choice(sources)
            invalid = INVALID_KINDS[i % len(INVALID_KINDS)] if rng.random() < 0.25 else None
            method = "symlink-swap" if source != "plain" else rng.choice(("editor", "editor", "mv"))
            group.append(Rewrite(i, source, method, invalid))
            broken[source] = invalid
            i += 1
        groups.append(group)
    groups.append(
        [Rewrite(i + n, s, "symlink-swap" if s != "plain" else "editor", None) for n, s in enumerate(sources)]
    )
    return groups


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------


def _call(tool: str, arguments: dict[str, Any], seq: Any) -> str:
    return json.dumps(jsonrpc("tools/call", {"name": tool, "arguments": arguments}, id=seq))


def _expect_result(text: str) -> Any:
    def check(seq: int, resp: httpx.Response) -> str | None:
        if resp.status_code != 200:
            return f"HTTP {resp.status_code}: {resp.text[:200]}"
        try:
            body = resp.json()
            got = body["result"]["content"][0]["text"]
        except Exception as exc:  # noqa: BLE001
            return f"not a tools/call result ({exc!r}): {resp.text[:200]}"
        if body.get("id") != seq or got != text.format(seq=seq):
            return f"wrong result: {resp.text[:200]}"
        return None

    return check


def _expect_error(status: int, code: int) -> Any:
    def check(seq: int, resp: httpx.Response) -> str | None:
        if resp.status_code != status:
            return f"HTTP {resp.status_code} (expected {status}): {resp.text[:200]}"
        try:
            body = resp.json()
        except Exception as exc:  # noqa: BLE001
            return f"not JSON ({exc!r}): {resp.text[:200]}"
        if "result" in body or body.get("error", {}).get("code") != code or body.get("id") != seq:
            return f"expected JSON-RPC error {code} for id {seq}: {resp.text[:200]}"
        return None

    return check


def load_probes(mcp_url: str) -> list[Probe]:
    headers = {**harness.JSON_HEADERS, **bearer(LOADER_KEY)}
    allowed = Probe(
        "allowed",
        lambda seq: (mcp_url, headers, _call("get_weather", {"city": f"c{seq}"}, seq)),
        _expect_result("weather in c{seq}: sunny, 21C"),
    )
    denied = Probe(
        "denied",
        lambda seq: (mcp_url, headers, _call("delete_file", {"path": f"/tmp/{seq}"}, seq)),
        _expect_error(200, ERR_INVALID_PARAMS),
    )
    mallory = Probe(
        "mallory",
        lambda seq: (
            mcp_url,
            {**harness.JSON_HEADERS, **bearer(MALLORY_KEY)},
            _call("get_weather", {"city": "x"}, seq),
        ),
        _expect_error(401, ERR_UNAUTHENTICATED),
    )
    # 30% allowed (they reach the upstream), 60% denied, 10% a key only invalid policy knows.
    return [allowed, denied, denied, allowed, denied, denied, allowed, denied, denied, mallory]


def call_tool(client: httpx.Client, url: str, key: str, tool: str, arguments: dict[str, Any]) -> httpx.Response:
    return post_jsonrpc(client, url, jsonrpc("tools/call", {"name": tool, "arguments": arguments}, id=1), bearer(key))


def is_result(resp: httpx.Response) -> bool:
    return resp.status_code == 200 and "result" in resp.json()


def is_denied_tool(resp: httpx.Response) -> bool:
    return resp.status_code == 200 and resp.json().get("error", {}).get("code") == ERR_INVALID_PARAMS


# ---------------------------------------------------------------------------------------
# The load test
# ---------------------------------------------------------------------------------------


def test_100_policy_rewrites_and_a_key_rotation_under_load_through_envoy_fail_no_request(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    upstream = harness.start_upstream(procs, tmp_path / "upstream", json_response=True, stateless=True)
    uri = demo_app_uri(upstream.port)
    wdir = tmp_path / "warden"
    plain = wdir / "policy" / "00-policy.yaml"  # start_warden writes the first version here
    cm_file = ConfigMapDir(wdir / "cm-file")
    cm_dir = ConfigMapDir(wdir / "cm-dir")
    cm_file.write({"policy.yaml": cm_file_policy(0)})
    cm_dir.write({"policy.yaml": cm_dir_policy(0)})
    warden = harness.start_warden(
        procs,
        wdir,
        warden_bin,
        plain_policy(uri, 0),
        config_extra={
            "policy": [str(plain), str(cm_file.root / "policy.yaml"), str(cm_dir.root)],
            "token": {"lifetime": "30s"},
            # retain >= token.lifetime + jwks_max_age (config validation).
            "keys": {"jwks_max_age": "2s", "propagation_delay": "3s", "retain": "60s"},
        },
    )
    envoy = harness.start_envoy(procs, tmp_path / "envoy", envoy_bin, warden, upstream)
    mcp_url = envoy.mcp_url

    # --- before: the load user's answers, and what the rewrites will change ---
    with harness.http_client() as client:
        assert is_result(call_tool(client, mcp_url, LOADER_KEY, "get_weather", {"city": "a"}))
        assert is_denied_tool(call_tool(client, mcp_url, LOADER_KEY, "delete_file", {"path": "a"}))
        assert is_denied_tool(call_tool(client, mcp_url, PROBE_KEY, "echo", {"message": "a"}))
        assert call_tool(client, mcp_url, DAVE_KEY, "get_weather", {"city": "a"}).status_code == 401
        assert call_tool(client, mcp_url, MALLORY_KEY, "get_weather", {"city": "a"}).status_code == 401

    discovery = warden.discovery()
    issuer, jwks_uri = discovery["issuer"], discovery["jwks_uri"]
    assert issuer == warden.issuer
    first = httpx.get(jwks_uri, timeout=5)
    assert first.headers.get("cache-control") == "public, max-age=2", first.headers
    (old_kid,) = [k["kid"] for k in first.json()["keys"]]

    # The relying party: ONE PyJWKClient that caches the JWK set (and each key), created and
    # filled before the rotation, never told about the new key. It caches the set for the
    # max-age mcp-warden advertises (2s), as a verifier honouring Cache-Control does; on a
    # token with an unknown kid it fetches the JWKS again — the realistic verifier behaviour.
    # Note: PyJWT >= 2.15 rate-limits the *forced* unknown-kid refetch (cooldown_duration,
    # default 30s since the last fetch), so a verifier cannot count on it right after a
    # fetch; what makes rotation safe is mcp-warden's contract that a new key is published
    # for propagation_delay (>= jwks_max_age) before it signs, so a cache no older than
    # max-age already holds it (or has expired and refetches).
    jwk_client = CountingJWKClient(jwks_uri, cache_keys=True, cache_jwk_set=True, lifespan=2)
    assert [k.key_id for k in jwk_client.get_jwk_set().keys] == [old_kid]
    verifier = TokenVerifier(upstream.record_path, jwk_client, issuer, uri).start()

    def jwks_kids() -> frozenset[str]:
        resp = opsupport.client().get(jwks_uri)
        resp.raise_for_status()
        return frozenset(k["kid"] for k in resp.json()["keys"])

    def readyz() -> int:
        return opsupport.client().get(f"{warden.http_url}/readyz").status_code

    jwks_poller = Poller("jwks", jwks_kids, 0.1).start()
    readyz_poller = Poller("readyz", readyz, 0.05).start()
    load = FixedRateLoad(
        load_probes(mcp_url),
        rate=LOAD_RATE,
        max_requests=int(LOAD_RATE * LOAD_MAX_SECONDS),
        max_seconds=LOAD_MAX_SECONDS,
    )
    writers = {"cm_file": cm_file, "cm_dir": cm_dir}
    staging = tmp_path / "staging"  # same filesystem: `mv` is a rename
    groups = plan_rewrites()
    assert sum(len(g) for g in groups) == REWRITES
    new_kid = ""
    rotated_at = 0.0
    invalid_groups = valid_groups = 0
    state: dict[str, str | None] = {"plain": None, "cm_file": None, "cm_dir": None}  # invalid kind held
    written = {"plain": 0, "cm_file": 0, "cm_dir": 0}  # index of the rewrite each source holds
    probe_checks: list[str] = []
    mismatches: list[str] = []
    load.start()
    try:
        with harness.http_client() as client:
            for g, group in enumerate(groups):
                before = {r: reloads(warden, r) for r in ("ok", "error")}
                for rw in group:
                    if rw.source == "plain":
                        text = plain_policy(uri, rw.index, rw.invalid)
                        if rw.method == "mv":
                            mv_replace(plain, text, staging)
                        else:
                            editor_save(plain, text)
                    else:
                        gen = cm_file_policy if rw.source == "cm_file" else cm_dir_policy
                        writers[rw.source].write({"policy.yaml": gen(rw.index, rw.invalid)})
                    state[rw.source] = rw.invalid
                    written[rw.source] = rw.index
                expect = "error" if any(state.values()) else "ok"
                # Each burst is validated: the matching counter moves (polled, with a deadline).
                wait_for_reload(warden, expect, before[expect])
                if expect == "error":
                    invalid_groups += 1
                else:
                    valid_groups += 1
                    # A valid change is in force once counted: dave exists iff the cm-dir
                    # version in force has him, probe may call `echo` iff the cm-file one says so.
                    dave = call_tool(client, mcp_url, DAVE_KEY, "get_weather", {"city": "d"})
                    echo = call_tool(client, mcp_url, PROBE_KEY, "echo", {"message": "p"})
                    want_dave, want_echo = written["cm_dir"] >= DAVE_FROM, written["cm_file"] >= ECHO_FROM
                    line = f"group {g} {written}: dave {dave.status_code}, echo {echo.text[:100]}"
                    probe_checks.append(line)
                    if (is_result(dave), dave.status_code == 401) != (want_dave, not want_dave) or (
                        is_result(echo),
                        is_denied_tool(echo),
                    ) != (want_echo, not want_echo):
                        mismatches.append(line)
                if g == ROTATE_AFTER_GROUP:
                    rotated_at = time.time()
                    out = subprocess.run(
                        [str(warden_bin), "keys", "--config", str(warden.config_path), "rotate"],
                        capture_output=True,
                        text=True,
                        timeout=60,
                        stdin=subprocess.DEVNULL,
                    )
                    assert out.returncode == 0, out.stderr
                    m = re.search(r"added (\S+):", out.stdout)
                    assert m, out.stdout
                    new_kid = m.group(1)
                    assert new_kid != old_kid
        assert new_kid, "the rotation never ran"
        # Keep the load running until the upstream has received tokens signed by the new key.
        wait_until(
            lambda: verifier.kids()[new_kid] >= 3 or verifier.failures,
            timeout=30,
            what="waiting for tokens signed by the new key to reach the upstream",
            procs=[warden.proc, envoy.proc, upstream.proc],
        )
        assert not verifier.failures, verifier.failures[:10]
        after_switch = load.count()
        wait_until(
            lambda: load.count() >= after_switch + 100,
            timeout=30,
            what="waiting for more load after the key switch",
            procs=[warden.proc, envoy.proc, upstream.proc],
        )
    finally:
        load.stop()
        jwks_poller.stop()
        readyz_poller.stop()
        verifier.stop()

    # How long the new key was really published before it signed (reported, not asserted:
    # timing): from the first JWKS poll that listed it to its active_from in the manifest.
    manifest = json.loads((wdir / "state" / "keys" / "keyring.json").read_text())
    active_from = next(k["active_from"] for k in manifest["keys"] if k["kid"] == new_kid)
    first_listed = min(
        (t for t, kids in jwks_poller.results if isinstance(kids, frozenset) and new_kid in kids), default=0
    )
    summary = (
        f"{load.summary()}; {valid_groups} valid / {invalid_groups} invalid reload bursts; "
        f"{len(verifier.verified)} distinct tokens verified {dict(verifier.kids())}, "
        f"{jwk_client.fetches} JWKS fetches; new key: `keys rotate` started {active_from - rotated_at:.2f}s and "
        f"first listed in JWKS {active_from - first_listed:.2f}s before its active_from (propagation_delay 3s)"
    )
    print(summary)

    # --- zero unexpected answers ---
    problems = load.problems()
    assert not problems, f"{len(problems)} unexpected answers, e.g. {problems[:10]}\n{summary}"
    assert not load.hit_bound, f"the load stopped at its bound before the test finished: {summary}"
    by_probe = {p: sum(1 for o in load.outcomes if o.probe == p) for p in ("allowed", "denied", "mallory")}
    assert all(by_probe.values()), by_probe

    # --- /readyz stayed ready ---
    statuses = [v for _, v in readyz_poller.results]
    assert statuses and all(s == 200 for s in statuses), [s for s in statuses if s != 200][:10]

    # --- reloads: both results counted, every valid one swapped in ---
    metrics = scrape(warden)
    ok = metrics.get("mcp_warden_policy_reloads_total", result="ok")
    err = metrics.get("mcp_warden_policy_reloads_total", result="error")
    assert ok > 0 and err > 0, metrics.series("mcp_warden_policy_reloads_total")
    assert ok >= valid_groups and err >= invalid_groups, (ok, err, valid_groups, invalid_groups)
    assert metrics.get("mcp_warden_policy_generation") == 1 + ok, metrics.series("mcp_warden_policy_generation")
    assert metrics.get("mcp_warden_key_rotations_total") == 1, metrics.series("mcp_warden_key_rotations_total")

    # --- valid rewrites took effect; invalid ones never did ---
    with harness.http_client() as client:
        assert is_result(call_tool(client, mcp_url, DAVE_KEY, "get_weather", {"city": "d"})), probe_checks
        assert is_result(call_tool(client, mcp_url, PROBE_KEY, "echo", {"message": "p"})), probe_checks
        assert call_tool(client, mcp_url, MALLORY_KEY, "get_weather", {"city": "m"}).status_code == 401
    assert not mismatches, f"a valid rewrite was not in force after its reload: {mismatches}"
    assert any("dave 200" in c for c in probe_checks) and any("dave 401" in c for c in probe_checks), probe_checks

    # --- the JWKS published both keys during the rotation ---
    seen = [kids for _, kids in jwks_poller.results if isinstance(kids, frozenset)]
    assert any({old_kid, new_kid} <= kids for kids in seen), f"never both kids at once: {set(seen)}"
    assert all(kids for kids in seen)

    # --- every token the upstream received verified with the pre-rotation PyJWKClient ---
    verifier.drain()  # the final checks above reached the upstream too
    assert not verifier.failures, verifier.failures[:10]
    assert verifier.records == upstream.count() >= by_probe["allowed"], (verifier.records, by_probe)
    kids = verifier.kids()
    assert set(kids) == {old_kid, new_kid}, kids
    assert jwk_client.fetches >= 2, "the client never fetched the JWKS again for the new kid"
    subjects = Counter(v.claims["sub"] for v in verifier.verified.values())
    assert set(subjects) <= {"loader", "dave", "probe"} and subjects["loader"], subjects

    # --- the CLI agrees: the new key signs, the old one is retired but still published ---
    listed = subprocess.run(
        [str(warden_bin), "keys", "--config", str(warden.config_path), "list"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert listed.returncode == 0, listed.stderr
    states = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert states == {old_kid: "retired", new_kid: "active"}, listed.stdout
    assert {old_kid, new_kid} <= jwks_kids()


# ---------------------------------------------------------------------------------------
# Removing every file, SIGHUP
# ---------------------------------------------------------------------------------------


def _with_user(base: str, name: str, key: str) -> str:
    return base + _user(name, ["demo-readonly"], key)


def test_removing_every_policy_file_keeps_the_last_good_policy_and_sighup_reloads(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    upstream = harness.start_upstream(procs, tmp_path / "upstream", json_response=True, stateless=True)
    base = harness.default_policy(upstream.port)
    wdir = tmp_path / "warden"
    policy_dir = wdir / "policy"  # start_warden writes 00-policy.yaml into it
    warden = harness.start_warden(procs, wdir, warden_bin, base, config_extra={"policy": [str(policy_dir)]})
    envoy = harness.start_envoy(procs, tmp_path / "envoy", envoy_bin, warden, upstream)
    log = warden.proc.stderr_path

    def alive() -> list[harness.ManagedProcess]:
        return [warden.proc, envoy.proc, upstream.proc]

    with harness.http_client() as client:
        assert is_result(call_tool(client, envoy.mcp_url, ALICE_KEY, "get_weather", {"city": "a"}))

        # 1. Remove every policy file: the last good policy stays, a warning is logged.
        errors = reloads(warden, "error")
        for path in policy_dir.iterdir():
            path.unlink()
        assert not any(policy_dir.iterdir())
        wait_for_reload(warden, "error", errors)
        assert is_result(call_tool(client, envoy.mcp_url, ALICE_KEY, "get_weather", {"city": "b"}))
        assert httpx.get(f"{warden.http_url}/readyz", timeout=5).status_code == 200
        warnings = [line for line in log.read_text().splitlines() if "WARN" in line and "last good policy" in line]
        assert warnings, harness.tail(log)

        # 2. The next valid file is picked up.
        oks = reloads(warden, "ok")
        editor_save(policy_dir / "10-policy.yaml", _with_user(base, "erin", ERIN_KEY))
        wait_for_reload(warden, "ok", oks)
        assert is_result(call_tool(client, envoy.mcp_url, ERIN_KEY, "get_weather", {"city": "e"}))

        # 3. SIGHUP alone reloads (counted), with no file change at all.
        oks = reloads(warden, "ok")
        os.kill(warden.proc.pid, signal.SIGHUP)
        wait_for_reload(warden, "ok", oks)
        assert "SIGHUP" in log.read_text(), harness.tail(log)

        # 4. A change the watcher cannot see — written in place through a hard link in an
        #    unwatched directory (inotify reports it there, not in the policy directory) —
        #    is applied by SIGHUP.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        link = elsewhere / "policy-link.yaml"
        os.link(policy_dir / "10-policy.yaml", link)
        with open(link, "r+", encoding="utf-8") as f:
            f.seek(0)
            f.write(_with_user(_with_user(base, "erin", ERIN_KEY), "frank", FRANK_KEY))
            f.truncate()
        os.kill(warden.proc.pid, signal.SIGHUP)
        wait_until(
            lambda: is_result(call_tool(client, envoy.mcp_url, FRANK_KEY, "get_weather", {"city": "f"})),
            timeout=15,
            what="waiting for SIGHUP to apply the hard-link change",
            procs=alive(),
        )
        assert is_result(call_tool(client, envoy.mcp_url, ALICE_KEY, "get_weather", {"city": "g"}))


@pytest.mark.parametrize("kind", INVALID_KINDS)
def test_invalid_rewrite_texts_are_rejected_by_check(tmp_path: Path, warden_bin: Path, kind: str) -> None:
    """Guards the load test's premise: every 'invalid' rewrite really is invalid (and every
    valid one valid), judged by `mcp-warden check` on the same three files."""
    uri = "mcp+http://127.0.0.1:1/mcp"
    plain, cm_file, cm_dir = tmp_path / "plain.yaml", tmp_path / "cm-file.yaml", tmp_path / "cm-dir"
    cm_dir.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(f"policy: ['{plain}', '{cm_file}', '{cm_dir}']\n")

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(warden_bin), "check", "--config", str(config)], capture_output=True, text=True, timeout=60
        )

    for i in (0, DAVE_FROM, ECHO_FROM):
        plain.write_text(plain_policy(uri, i))
        cm_file.write_text(cm_file_policy(i))
        (cm_dir / "policy.yaml").write_text(cm_dir_policy(i))
        assert check().returncode == 0, check().stderr
    for writer in (
        lambda: plain.write_text(plain_policy(uri, 1, kind)),
        lambda: cm_file.write_text(cm_file_policy(1, kind)),
        lambda: (cm_dir / "policy.yaml").write_text(cm_dir_policy(1, kind)),
    ):
        plain.write_text(plain_policy(uri, 0))
        cm_file.write_text(cm_file_policy(0))
        (cm_dir / "policy.yaml").write_text(cm_dir_policy(0))
        writer()
        result = check()
        assert result.returncode == 1, f"{kind} was accepted: {result.stdout}"
