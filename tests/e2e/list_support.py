"""Support for test_list_filter.py: the policy with users of different roles, what each may
see, the scripted and the resumable SDK upstream's stacks, Envoy's ext_proc counters, and an
SSE parser (whole streams, or a live stream event by event).

Everything else (processes, Envoy template, MCP client) comes from harness.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
import upstream

LIST_UPSTREAM_SCRIPT = harness.E2E_DIR / "list_upstream.py"
DANA_KEY = "e2e-dana-key-5c4b3a2918f7e6d5"
SEARCH_TOOL = "x_amz_bedrock_agentcore_search"
ERR_INTERNAL = -32603
UNFILTERABLE = "list response could not be filtered"

# The Envoy stat prefix of the list filter (http.<hcm prefix>.ext_proc.<filter prefix>.).
EXT_PROC_STATS = "http.mcp_ingress.ext_proc.mcp_list."

# The twelve tools of both upstreams, in their order.
ALL_TOOLS = list(upstream.TOOL_NAMES)

# What each user may call, written out by hand from the policy below (not computed by the
# system under test).
VISIBLE = {
    "alice": set(ALL_TOOLS),
    "bob": {"get_weather", "get_time"},
    "dana": {"get_weather", "get_time", "list_files", "search_docs", "find_user"},
}
KEYS = {"alice": harness.ALICE_KEY, "bob": harness.BOB_KEY, "dana": DANA_KEY}


def visible_in_order(user: str, names: list[str] = ALL_TOOLS) -> list[str]:
    return [n for n in names if n in VISIBLE[user]]


def policy(upstream_port: int) -> str:
    """Three users on app `demo` with different roles:

    - alice: every tool;
    - bob: `^get_.*$` and AgentCore's search tool; no prompt or resource rules (not governed);
    - dana: `^(get|list|search|query|find)_.*$` minus a deny of `query_db`; prompts
      `summarize` only; resources under `file:///docs/` only.
    """
    return f"""\
kind: app
version: v3
metadata:
  name: demo
  labels: {{env: test, service: demo}}
spec:
  uri: "{harness.demo_app_uri(upstream_port)}"
  rewrite:
    headers:
    - name: Authorization
      value: "Bearer {{{{internal.id_token}}}}"
---
kind: role
version: v8
metadata: {{name: demo-full}}
spec:
  allow:
    app_labels: {{service: demo}}
    mcp: {{tools: ["*"]}}
---
kind: role
version: v8
metadata: {{name: demo-readonly}}
spec:
  allow:
    app_labels: {{service: demo}}
    mcp: {{tools: ["^get_.*$", "{SEARCH_TOOL}"]}}
---
kind: role
version: v8
metadata: {{name: demo-analyst}}
spec:
  allow:
    app_labels: {{service: demo}}
    mcp:
      tools: ["^(get|list|search|query|find)_.*$"]
      prompts: ["summarize"]
      resources: ["file:///docs/*"]
---
kind: role
version: v8
metadata: {{name: no-db}}
spec:
  deny:
    mcp: {{tools: ["query_db"]}}
---
kind: user
version: v2
metadata: {{name: alice}}
spec:
  roles: [demo-full]
  api_keys: ["{harness.api_key_hash(harness.ALICE_KEY)}"]
---
kind: user
version: v2
metadata: {{name: bob}}
spec:
  roles: [demo-readonly]
  api_keys: ["{harness.api_key_hash(harness.BOB_KEY)}"]
---
kind: user
version: v2
metadata: {{name: dana}}
spec:
  roles: [demo-analyst, no-db]
  api_keys: ["{harness.api_key_hash(DANA_KEY)}"]
"""


def headers(user: str, scenario: str | None = None, version: str = "2025-11-25") -> dict[str, str]:
    out = {**harness.bearer(KEYS[user]), "mcp-protocol-version": version}
    if scenario:
        out["x-list-scenario"] = scenario
    return out


def ext_proc_counters(envoy: harness.Envoy) -> dict[str, int]:
    """The list filter's ext_proc counters, short names (streams_started, stream_msgs_sent...)."""
    stats = envoy.stats(r"ext_proc\.mcp_list\.")
    return {name.removeprefix(EXT_PROC_STATS): value for name, value in stats.items() if name.startswith(EXT_PROC_STATS)}


def start_scripted_stack(
    group: harness.ProcessGroup,
    work_dir: Path,
    *,
    envoy_bin: Path,
    warden_bin: Path,
    config_extra: dict[str, Any] | None = None,
) -> harness.Stack:
    """list_upstream.py + mcp-warden (this module's policy) + Envoy (envoy-test.yaml)."""
    up_dir = work_dir / "upstream"
    up_dir.mkdir(parents=True, exist_ok=True)
    record = up_dir / "list-upstream.record.jsonl"
    ready = up_dir / "list-upstream.ready.json"
    proc = group.start(
        "list-upstream",
        [sys.executable, str(LIST_UPSTREAM_SCRIPT), "--record", str(record), "--ready-file", str(ready)],
        env={"PYTHONUNBUFFERED": "1"},
    )
    info = harness.wait_until(
        lambda: harness.read_json_file(ready),
        timeout=harness.UPSTREAM_READY_TIMEOUT,
        what=f"waiting for {ready}",
        procs=[proc],
    )
    upstream = harness.Upstream(proc, info["port"], info["url"], record, json_response=True, stateless=True)
    warden = harness.start_warden(
        group, work_dir / "warden", warden_bin, policy(upstream.port), config_extra=config_extra
    )
    envoy = harness.start_envoy(group, work_dir / "envoy", envoy_bin, warden, upstream)
    return harness.Stack(upstream, warden, envoy, group)


def start_resumable_stack(
    group: harness.ProcessGroup, work_dir: Path, *, envoy_bin: Path, warden_bin: Path
) -> harness.Stack:
    """upstream.py (the SDK server, SSE answers, sessions, `--resumable`: an in-memory event
    store, so a GET with Last-Event-ID replays) + mcp-warden (this module's policy) + Envoy."""
    up_dir = work_dir / "upstream"
    up_dir.mkdir(parents=True, exist_ok=True)
    record = up_dir / "upstream.record.jsonl"
    ready = up_dir / "upstream.ready.json"
    argv = [sys.executable, str(harness.UPSTREAM_SCRIPT), "--record", str(record), "--ready-file", str(ready)]
    proc = group.start("upstream", [*argv, "--resumable"], env={"PYTHONUNBUFFERED": "1"})
    info = harness.wait_until(
        lambda: harness.read_json_file(ready),
        timeout=harness.UPSTREAM_READY_TIMEOUT,
        what=f"waiting for {ready}",
        procs=[proc],
    )
    assert info["resumable"] is True, info
    up = harness.Upstream(proc, info["port"], info["url"], record, json_response=False, stateless=False)
    warden = harness.start_warden(group, work_dir / "warden", warden_bin, policy(up.port))
    envoy = harness.start_envoy(group, work_dir / "envoy", envoy_bin, warden, up)
    return harness.Stack(up, warden, envoy, group)


@dataclass
class SseEvent:
    """One dispatched SSE event: its fields as a client sees them, and its raw lines."""

    id: str | None
    event: str | None
    data: str | None
    retry: str | None
    raw: str


def parse_sse(text: str) -> list[SseEvent]:
    """Events of a complete event stream (CRLF, LF or CR line ends), per the WHATWG rules."""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    events = []
    for block in normalized.split("\n\n"):
        if not block.strip("\n"):
            continue
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        events.append(
            SseEvent(
                id=fields.get("id", [None])[-1],
                event=fields.get("event", [None])[-1],
                data="\n".join(fields["data"]) if "data" in fields else None,
                retry=fields.get("retry", [None])[-1],
                raw=block,
            )
        )
    return events


def _complete_events(text: str) -> str:
    """The part of a stream read so far that ends with a blank line (complete events only)."""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    cut = normalized.rfind("\n\n")
    return normalized[: cut + 2] if cut >= 0 else ""


class SseReader:
    """Reads a live event stream (an httpx streaming response) one complete event at a time,
    without waiting for the stream to end. `text` holds every character read so far."""

    def __init__(self, resp: httpx.Response) -> None:
        self._chunks: Iterator[str] = resp.iter_text()
        self._seen = 0
        self.text = ""
        self.ended = False

    def next_event(self) -> SseEvent | None:
        """The next complete event (comment-only blocks included); None once the stream has
        ended without another one (a trailing incomplete event is never dispatched)."""
        while True:
            events = parse_sse(_complete_events(self.text))
            if len(events) > self._seen:
                self._seen += 1
                return events[self._seen - 1]
            if self.ended:
                return None
            try:
                self.text += next(self._chunks)
            except StopIteration:
                self.ended = True

    def events_until(self, done: Callable[[SseEvent], bool]) -> list[SseEvent]:
        """Events up to and including the first for which `done(event)` is true; fails if the
        stream ends first."""
        out = []
        while True:
            event = self.next_event()
            assert event is not None, f"the stream ended before the awaited event; read so far:\n{self.text}"
            out.append(event)
            if done(event):
                return out


def jsonrpc_answer_to(id: Any) -> Callable[[SseEvent], bool]:
    """A predicate for SseReader.events_until: the event holding the JSON-RPC answer to `id`."""

    def done(event: SseEvent) -> bool:
        if not event.data:
            return False
        msg = json.loads(event.data)
        return isinstance(msg, dict) and msg.get("id") == id and ("result" in msg or "error" in msg)

    return done
