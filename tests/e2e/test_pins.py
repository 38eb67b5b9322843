"""Issue 25: tool definitions pinned, through real Envoy.

Real peers: pin_upstream.py, the Python SDK server of upstream.py whose `get_weather`
description is poisoned while a flag file exists (stateless, JSON answers, so the upstream's
own bytes can be fetched straight from it and compared with what Envoy delivers); the SDK's
client; the `mcp-warden pin` command writing the pin file into the policy directory the
running warden(s) watch.

Contract under test (docs/pinning.md):
- with `hide`, a changed tool disappears from tools/list and its call is refused (-32602,
  reason `tool_drifted`); an unpinned tool is hidden and refused (`tool_not_pinned`) by every
  replica; every other tool reaches the client byte for byte as the upstream wrote it;
- with `flag`, the answer passes byte for byte and a `pin.drift` audit event (digests and the
  changed field, never the text) and `mcp_warden_pin_drift_total` record the drift;
- re-pinning with the command makes the tool visible and callable again without a restart
  (the pin file is hot-reloaded with the policy; the test waits for the policy generation);
- two replicas on one pin file: the one that filtered the drifted list refuses the call, the
  other allows it until it filters a list itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
import pin_upstream
from harness import ALICE_KEY, ERR_INVALID_PARAMS, bearer, jsonrpc, post_jsonrpc, run_async
from opsupport import read_json_lines, scrape

UNPINNED = "echo"


@dataclass
class Replica:
    warden: harness.Warden
    envoy: harness.Envoy
    audit_path: Path

    def list_raw(self) -> str:
        """tools/list through Envoy as alice: the body as delivered."""
        with httpx.Client(timeout=15) as c:
            resp = post_jsonrpc(c, self.envoy.mcp_url, jsonrpc("tools/list", id=1), bearer(ALICE_KEY))
        assert resp.status_code == 200, resp.text
        return resp.text

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        message = jsonrpc("tools/call", {"name": tool, "arguments": arguments}, id=f"call-{tool}")
        with httpx.Client(timeout=15) as c:
            resp = post_jsonrpc(c, self.envoy.mcp_url, message, bearer(ALICE_KEY))
        assert resp.status_code == 200, resp.text
        return resp.json()

    def generation(self) -> float:
        return scrape(self.warden).get("mcp_warden_policy_generation")

    def audit(self, event: str) -> list[dict[str, Any]]:
        return [e for e in read_json_lines(self.audit_path) if e.get("event") == event]


@dataclass
class PinStack:
    upstream: harness.Upstream
    replicas: list[Replica]
    pin_file: Path
    poison: Path
    work: Path
    warden_bin: Path

    def direct_list(self) -> str:
        """tools/list straight from the upstream (no Envoy, no warden): its own bytes."""
        with httpx.Client(timeout=15) as c:
            resp = post_jsonrpc(c, self.upstream.url, jsonrpc("tools/list", id=1))
        assert resp.status_code == 200, resp.text
        return resp.text

    def pin(self, answer: str, *args: str) -> str:
        """`mcp-warden pin` on a captured answer; waits until every replica reloaded it."""
        capture = self.work / "captured-tools.json"
        capture.write_text(answer)
        before = [r.generation() for r in self.replicas]
        cmd = [str(self.warden_bin), "pin", "--app", "demo", "--tools", str(capture), "--file", str(self.pin_file)]
        done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        for replica, gen in zip(self.replicas, before, strict=True):
            harness.wait_until(
                lambda r=replica, g=gen: r.generation() > g,
                timeout=20,
                what="waiting for the pin file to be reloaded",
                procs=[replica.warden.proc],
            )
        return done.stdout


def _start_pin_upstream(group: harness.ProcessGroup, work: Path, poison: Path) -> harness.Upstream:
    work.mkdir(parents=True, exist_ok=True)
    record, ready = work / "upstream.record.jsonl", work / "upstream.ready.json"
    script = Path(pin_upstream.__file__)
    argv = [sys.executable, str(script), "--record", str(record), "--ready-file", str(ready)]
    env = {"PYTHONUNBUFFERED": "1", "PIN_UPSTREAM_POISON_FILE": str(poison)}
    proc = group.start("pin-upstream", [*argv, "--json-response", "--stateless"], env=env)
    info = harness.wait_until(
        lambda: harness.read_json_file(ready), timeout=harness.UPSTREAM_READY_TIMEOUT, what="pin upstream", procs=[proc]
    )
    return harness.Upstream(proc, info["port"], info["url"], record, True, True)


def start(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path, replicas: int = 1
) -> PinStack:
    poison = tmp_path / "poison"
    upstream = _start_pin_upstream(procs, tmp_path / "upstream", poison)
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "00-policy.yaml").write_text(harness.default_policy(upstream.port))
    started = []
    for i in range(replicas):
        audit_path = tmp_path / f"audit{i}.jsonl"
        warden = harness.start_warden(
            procs,
            tmp_path / f"warden{i}",
            warden_bin,
            harness.default_policy(upstream.port),
            # Every replica reads the one shared policy directory, as from one ConfigMap.
            config_extra={"policy": [str(policy_dir)], "audit": {"output": str(audit_path)}},
            name=f"mcp-warden-{i}",
        )
        envoy = harness.start_envoy(procs, tmp_path / f"envoy{i}", envoy_bin, warden, upstream)
        started.append(Replica(warden, envoy, audit_path))
    return PinStack(upstream, started, policy_dir / "10-pins-demo.yaml", poison, tmp_path, warden_bin)


def without(answer: str, names: set[str]) -> str:
    """`answer` with the tools named in `names` cut out of its raw text, the rest byte for byte
    (what the list filter does)."""
    decoder = json.JSONDecoder()
    start = answer.index('"tools":[') + len('"tools":[')
    kept, i = [], start
    while answer[i] != "]":
        entry, end = decoder.raw_decode(answer, i)
        if entry["name"] not in names:
            kept.append(answer[i:end])
        i = end + 1 if answer[end] == "," else end
    return answer[:start] + ",".join(kept) + answer[i:]


def drop_tool(answer: str, name: str) -> str:
    data = json.loads(answer)
    data["result"]["tools"] = [t for t in data["result"]["tools"] if t["name"] != name]
    return json.dumps(data)


def refused(answer: dict[str, Any]) -> bool:
    return answer.get("error", {}).get("code") == ERR_INVALID_PARAMS and "result" not in answer


def denial_reasons(replica: Replica, tool: str) -> list[str]:
    return [e["reason"] for e in replica.audit("request.denied") if e.get("tool") == tool]


def wait_audit(replica: Replica, predicate: Any, what: str) -> list[dict[str, Any]]:
    return harness.wait_until(
        lambda: [e for e in read_json_lines(replica.audit_path) if predicate(e)],
        timeout=10,
        what=what,
        procs=[replica.warden.proc],
    )


def test_with_hide_a_changed_tool_is_hidden_and_refused_until_pinned_again(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    s = start(procs, tmp_path, envoy_bin, warden_bin)
    r = s.replicas[0]
    reviewed = s.direct_list()
    out = s.pin(drop_tool(reviewed, UNPINNED), "--action", "hide")
    assert "+ get_weather (new)" in out and "wrote" in out, out

    # Pinned: every pinned tool byte for byte as the upstream wrote it; the unpinned one hidden.
    assert r.list_raw() == without(reviewed, {UNPINNED})
    assert refused(r.call(UNPINNED, {"message": "hi"}))
    assert "result" in r.call("get_weather", {"city": "Oslo"})

    # The upstream changes get_weather's description.
    s.poison.touch()
    poisoned = s.direct_list()
    assert pin_upstream.POISONED_DESCRIPTION.split("<")[1] in poisoned
    listed = r.list_raw()
    assert listed == without(poisoned, {UNPINNED, "get_weather"}), "only the drifted tool is cut"
    assert "id_rsa" not in listed

    async def sdk_names() -> list[str]:
        async with harness.mcp_session(r.envoy.mcp_url, bearer(ALICE_KEY)) as session:
            return [t.name for t in (await session.list_tools()).tools]

    names = run_async(sdk_names())
    assert "get_weather" not in names and UNPINNED not in names and "get_time" in names, names

    # Calls follow the list: refused, never forwarded.
    calls_before = s.upstream.tool_calls().count("get_weather")
    assert refused(r.call("get_weather", {"city": "Oslo"}))
    assert s.upstream.tool_calls().count("get_weather") == calls_before
    wait_audit(r, lambda e: e.get("tool") == "get_weather" and e.get("reason") == "tool_drifted", "tool_drifted")
    assert "tool_not_pinned" in denial_reasons(r, UNPINNED)

    # The audit event: digests and the changed field, never the text.
    drift = wait_audit(r, lambda e: e.get("event") == "pin.drift" and e.get("tool") == "get_weather", "pin.drift")[0]
    assert (drift["app"], drift["user"], drift["reason"]) == ("demo", "alice", "changed")
    assert drift["pin"]["changed"] == ["description"] and drift["pin"]["action"] == "hide"
    assert drift["pin"]["pinned"].startswith("sha256:") and drift["pin"]["seen"] != drift["pin"]["pinned"]
    assert "id_rsa" not in r.audit_path.read_text()
    metrics = scrape(r.warden)
    assert metrics.get("mcp_warden_pin_drift_total", app="demo", kind="tool", reason="changed", action="hide") >= 1
    assert metrics.get("mcp_warden_pin_drift_total", app="demo", kind="tool", reason="unpinned", action="hide") >= 1

    # Re-pinned after review (the operator captured the new answer from the upstream): visible
    # and callable again, no restart.
    out = s.pin(poisoned)
    assert "~ get_weather changed: description" in out and f"+ {UNPINNED} (new)" in out, out
    assert r.list_raw() == poisoned
    assert "result" in r.call("get_weather", {"city": "Oslo"})
    assert r.warden.proc.alive


def test_with_flag_a_changed_tool_stays_byte_for_byte_and_is_audited(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    s = start(procs, tmp_path, envoy_bin, warden_bin)
    r = s.replicas[0]
    s.pin(s.direct_list(), "--action", "flag")
    s.poison.touch()
    poisoned = s.direct_list()
    assert r.list_raw() == poisoned, "flag removes nothing and rewrites nothing"
    drift = wait_audit(r, lambda e: e.get("event") == "pin.drift", "pin.drift")
    assert [(e["tool"], e["reason"], e["pin"]["action"], e["pin"]["changed"]) for e in drift] == [
        ("get_weather", "changed", "flag", ["description"])
    ]
    assert "definition" not in drift[0]["pin"]
    metrics = scrape(r.warden)
    assert metrics.get("mcp_warden_pin_drift_total", app="demo", kind="tool", reason="changed", action="flag") == 1
    assert "result" in r.call("get_weather", {"city": "Oslo"}), "flag never refuses a call"


def test_two_replicas_agree_on_unpinned_tools_and_each_learns_a_drift_from_a_list(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    s = start(procs, tmp_path, envoy_bin, warden_bin, replicas=2)
    a, b = s.replicas
    s.pin(drop_tool(s.direct_list(), UNPINNED), "--action", "hide")
    s.poison.touch()

    # From the pin file alone: both refuse the unpinned tool, neither having listed anything.
    for replica in (a, b):
        assert refused(replica.call(UNPINNED, {"message": "hi"}))

    # Replica a filters a list and sees the drift; b has not.
    assert "get_weather" not in a.list_raw()
    assert refused(a.call("get_weather", {"city": "Oslo"}))
    answer = b.call("get_weather", {"city": "Oslo"})
    assert "result" in answer, "b has seen no drift: the call of the pinned name passes (docs/pinning.md)"

    # b learns it from the next list answer it filters.
    assert "get_weather" not in b.list_raw()
    assert refused(b.call("get_weather", {"city": "Oslo"}))
    for replica in (a, b):
        wait_audit(replica, lambda e: e.get("reason") == "tool_drifted", "tool_drifted")
        assert "tool_not_pinned" in denial_reasons(replica, UNPINNED)
    assert os.path.exists(s.pin_file)
