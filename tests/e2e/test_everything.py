"""The npm reference server `@modelcontextprotocol/server-everything` (13 tools, SSE answers
with resumability priming events) behind real Envoy + mcp-warden, driven by the Python MCP
client: each user sees exactly the tools it may call, allowed calls work, hidden tools stay
denied. A missing node or package fails the test.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

import harness

EVERYTHING = harness.REPO_ROOT / "tests/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

READONLY_TOOLS = {"echo", "get-sum", "get-tiny-image", "get-annotated-message", "get-structured-content"}


def _policy(port: int) -> str:
    return f"""\
app_service:
  apps:
  - name: demo
    uri: "mcp+http://127.0.0.1:{port}/mcp"
    labels: {{service: everything}}
    rewrite:
      headers:
      - "Authorization: Bearer {{{{internal.id_token}}}}"
---
kind: role
version: v8
metadata: {{name: readonly}}
spec:
  allow:
    app_labels: {{service: everything}}
    mcp:
      tools: [echo, get-sum, "^get-(tiny-image|annotated-message|structured-content)$"]
---
kind: user
metadata: {{name: alice}}
spec: {{roles: [mcp-user], api_keys: ["{harness.api_key_hash(harness.ALICE_KEY)}"]}}
---
kind: user
metadata: {{name: bob}}
spec: {{roles: [readonly], api_keys: ["{harness.api_key_hash(harness.BOB_KEY)}"]}}
"""


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def everything_stack(procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path):
    node = shutil.which("node")
    if node is None or not EVERYTHING.is_file():
        pytest.fail("node or @modelcontextprotocol/server-everything missing: run `npm ci --prefix tests/node`")
    with socket.socket() as s:  # server-everything takes a fixed PORT: ask the kernel for a free one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = procs.start("server-everything", [node, str(EVERYTHING), "streamableHttp"], env={"PORT": str(port)})
    harness.wait_until(lambda: _port_open(port), timeout=60, what="server-everything listening", procs=[server])
    warden = harness.start_warden(procs, tmp_path / "warden", warden_bin, _policy(port))
    config = harness.render_envoy_test_config(
        warden_grpc_port=warden.grpc_port, warden_http_port=warden.http_port, upstream_port=port
    )
    return harness.run_envoy(procs, tmp_path / "envoy", envoy_bin, config)


def test_each_user_sees_exactly_its_tools_and_hidden_tools_stay_denied(everything_stack) -> None:
    url = everything_stack.mcp_url
    alice = harness.run_async(harness.mcp_list_and_call(url, harness.bearer(harness.ALICE_KEY), "echo", {"message": "hi"}))
    assert len(alice.tool_names) >= 10, alice.tool_names
    assert "get-env" in alice.tool_names
    assert harness.tool_text(alice.result) == "Echo: hi"

    bob = harness.run_async(harness.mcp_list_and_call(url, harness.bearer(harness.BOB_KEY), "get-env"))
    assert set(bob.tool_names) == READONLY_TOOLS & set(alice.tool_names)
    assert bob.error is not None and bob.error.code == -32602, "a hidden tool is still checked when called"

    ok = harness.run_async(harness.mcp_list_and_call(url, harness.bearer(harness.BOB_KEY), "get-sum", {"a": 2, "b": 3}))
    assert "5" in harness.tool_text(ok.result)
