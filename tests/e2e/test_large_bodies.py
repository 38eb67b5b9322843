"""Issue 19, point 3, through real Envoy: one caller's large bodies never stall another's checks.

mcp-warden runs with its DEFAULT runtime settings (one runtime thread). While bob, an
authenticated user, keeps several connections busy sending bodies at the size limit (1 MiB,
Envoy's `max_request_bytes` and mcp-warden's `max_body_bytes`) in the costliest shapes a
check reads — a hundred thousand distinct keys in one object, objects nested to the depth
limit, strings dense with escapes and surrogate pairs — each a `tools/call` of a tool his
role does not allow (so every byte is read and nothing is forwarded), and an unauthenticated
sender adds 1 MiB bodies of its own, alice's sequential `tools/call`s must ALL be answered by
the upstream: a check Envoy gave up on (its shipped ext_authz timeout, 2 s) would be a 503.

The load is bounded in count and time; the attackers' answers are checked too (denied by
policy, every time), so a stack that refused them early would not pass for a fast one.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import harness
import httpx
from harness import ALICE_KEY, BOB_KEY, ERR_INVALID_PARAMS, ERR_UNAUTHENTICATED

LIMIT = 1048576  # envoy/envoy-test.yaml max_request_bytes == the default inspection.max_body_bytes
DEPTH = 32  # the default inspection.max_depth
VICTIM_CALLS = 60
ATTACK_SENDERS = 3
ATTACK_MAX_REQUESTS = 400  # per sender, a bound on the load whatever the victim does
ATTACK_MAX_SECONDS = 120.0


def _shipped_ext_authz_timeout() -> float:
    """The ext_authz gRPC timeout of envoy/envoy-test.yaml (the shipped configs use the same)."""
    text = (harness.REPO_ROOT / "envoy" / "envoy-test.yaml").read_text()
    found = re.search(r"envoy_grpc: \{cluster_name: mcp_warden_grpc[^}]*\}\s*\n\s*timeout: ([0-9.]+)s", text)
    assert found, "no ext_authz gRPC timeout in envoy/envoy-test.yaml"
    return float(found.group(1))


def _filled(item: Any) -> bytes:
    """A `tools/call` of `delete_file` whose arguments are `item(i)` for as many i as fit."""
    head = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{'
    parts, size, i = [], len(head) + 3, 0
    while True:
        nxt = item(i)
        if size + len(nxt) + 1 > LIMIT:
            break
        parts.append(nxt)
        size += len(nxt) + 1
        i += 1
    body = (head + ",".join(parts) + "}}}").encode()
    assert len(body) <= LIMIT
    json.loads(body)  # valid JSON: only the policy refuses it
    return body


def _worst_bodies() -> list[bytes]:
    nested_open, nested_close = '{"a":' * (DEPTH - 4), "}" * (DEPTH - 4)
    escaped = r"\ud83d\ude00\n\t\"\\\u00e9\/" * 16
    return [
        _filled(lambda i: f'"{i:x}":0'),
        _filled(lambda i: f'"d{i}":{nested_open}0{nested_close}'),
        _filled(lambda i: f'"s{i}":"{escaped}"'),
    ]


def _headers(key: str | None) -> dict[str, str]:
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if key is not None:
        h["authorization"] = f"Bearer {key}"
    return h


class Attack:
    """Senders of limit-sized bodies until stopped (or their bound); what they got back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[int, int | None]] = []
        self.bodies = _worst_bodies()
        self.threads = [
            threading.Thread(target=self._send, args=(n, BOB_KEY), daemon=True) for n in range(ATTACK_SENDERS)
        ] + [threading.Thread(target=self._send, args=(ATTACK_SENDERS, None), daemon=True)]

    def _send(self, n: int, key: str | None) -> None:
        deadline = time.monotonic() + ATTACK_MAX_SECONDS
        with httpx.Client(timeout=30.0) as client:
            for k in range(ATTACK_MAX_REQUESTS):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                body = self.bodies[(n + k) % len(self.bodies)]
                resp = client.post(self.url, content=body, headers=_headers(key))
                try:
                    code = resp.json()["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = None
                with self.lock:
                    self.answers.append((resp.status_code, code))

    def count(self) -> int:
        with self.lock:
            return len(self.answers)

    def __enter__(self) -> Attack:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def test_large_bodies_of_one_caller_never_stall_another_callers_checks(stack_factory: Any) -> None:
    timeout = _shipped_ext_authz_timeout()
    stack = stack_factory(stateless=True, json_response=True)  # default runtime and limits
    with httpx.Client(timeout=30.0) as http:
        def victim_call(i: int) -> tuple[httpx.Response, float]:
            message = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"message": f"v{i}"}}}
            started = time.monotonic()
            resp = http.post(stack.mcp_url, content=json.dumps(message), headers=_headers(ALICE_KEY))
            return resp, time.monotonic() - started

        first, _ = victim_call(0)
        assert first.status_code == 200 and first.json()["result"]["content"][0]["text"] == "echo: v0", first.text
        with Attack(stack.mcp_url) as attack:
            harness.wait_until(lambda: attack.count() >= ATTACK_SENDERS, timeout=60, what="the attack's first answers")
            before = attack.count()
            slowest = 0.0
            for i in range(1, VICTIM_CALLS + 1):
                resp, took = victim_call(i)
                assert resp.status_code == 200, f"call {i}: {resp.status_code} {resp.text[:200]}"
                assert resp.json()["result"]["content"][0]["text"] == f"echo: v{i}", resp.text[:200]
                slowest = max(slowest, took)
            during = attack.count() - before
        answers = list(attack.answers)
    assert during >= ATTACK_SENDERS, f"the attack overlapped the victim's calls ({during} answers during them)"
    # Every large body was read to the end and refused: by policy (bob), or unread (no key).
    assert set(answers) <= {(200, ERR_INVALID_PARAMS), (401, ERR_UNAUTHENTICATED)}, set(answers)
    assert (200, ERR_INVALID_PARAMS) in answers and (401, ERR_UNAUTHENTICATED) in answers
    assert slowest < timeout, f"slowest victim call {slowest:.2f}s vs Envoy's ext_authz timeout {timeout}s"
