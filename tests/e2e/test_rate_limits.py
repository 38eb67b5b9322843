"""Issue 24 point 4 end to end: rate limits a role sets are counted by real Envoy's
local_ratelimit filter (the shipped test config), from the tiers mcp-warden names in its
decision metadata. The N+1-th call in the window gets a 429 whose body is a JSON-RPC error
echoing the request's id; other users and other tools keep their own buckets.

Raw HTTP against a stateless JSON upstream, so each call is one request Envoy counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import harness
import httpx
from harness import ALICE_KEY, BOB_KEY, CAROL_KEY, api_key_hash
from inspect_support import call, headers_for, raw


def rate_policy(upstream_port: int) -> str:
    return f"""\
kind: app
version: v3
metadata:
  name: demo
  labels: {{service: demo}}
spec:
  uri: "{harness.demo_app_uri(upstream_port)}"
---
kind: role
version: v8
metadata: {{name: add-limited}}
spec:
  options:
    rate_limits:
      per_tool:
      - {{tools: [add], per_user: 10/minute}}
  allow:
    app_labels: {{service: demo}}
    mcp: {{tools: ["*"]}}
---
kind: role
version: v8
metadata: {{name: user-limited}}
spec:
  options:
    rate_limits: {{per_user: 10/hour}}
  allow:
    app_labels: {{service: demo}}
    mcp: {{tools: ["*"]}}
---
kind: user
metadata: {{name: alice}}
spec: {{roles: [add-limited], api_keys: ["{api_key_hash(ALICE_KEY)}"]}}
---
kind: user
metadata: {{name: bob}}
spec: {{roles: [add-limited], api_keys: ["{api_key_hash(BOB_KEY)}"]}}
---
kind: user
metadata: {{name: carol}}
spec: {{roles: [user-limited], api_keys: ["{api_key_hash(CAROL_KEY)}"]}}
"""


def post(http: httpx.Client, stack: harness.Stack, key: str, tool: str, args: dict[str, Any], id: Any) -> httpx.Response:
    return raw(http, stack.mcp_url, call(tool, args, id=id), headers=headers_for(key))


def assert_limited(resp: httpx.Response, id: Any) -> None:
    assert resp.status_code == 429, (resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body == {"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "rate limit exceeded"}}, body


def test_per_user_per_tool_limit_refuses_the_eleventh_call_only_for_that_user_and_tool(
    stack_factory: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    stack = stack_factory(policy=rate_policy, stateless=True, json_response=True)
    for i in range(10):
        resp = post(http, stack, ALICE_KEY, "add", {"a": i, "b": 1}, id=i)
        assert resp.status_code == 200 and resp.json()["id"] == i, resp.text
    assert_limited(post(http, stack, ALICE_KEY, "add", {"a": 1, "b": 1}, id="over-the-limit"), "over-the-limit")
    assert stack.upstream.tool_calls().count("add") == 10, "the refused call never reached the upstream"
    # Another tool of the same user, and the same tool of another user, are unaffected.
    other_tool = post(http, stack, ALICE_KEY, "echo", {"message": "x"}, id=100)
    assert other_tool.status_code == 200, other_tool.text
    other_user = post(http, stack, BOB_KEY, "add", {"a": 1, "b": 2}, id=101)
    assert other_user.status_code == 200 and other_user.json()["id"] == 101, other_user.text


def test_per_user_limit_counts_every_tool_call_of_the_user(
    stack_factory: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    stack = stack_factory(policy=rate_policy, stateless=True, json_response=True)
    tools = [("echo", {"message": "m"}), ("add", {"a": 1, "b": 1}), ("get_time", {})]
    for i in range(10):
        tool, args = tools[i % len(tools)]
        resp = post(http, stack, CAROL_KEY, tool, args, id=i)
        assert resp.status_code == 200, resp.text
    assert_limited(post(http, stack, CAROL_KEY, "get_weather", {"city": "Oslo"}, id=77), 77)
    # A list call is not a tool call: it is not counted.
    listed = raw(http, stack.mcp_url, harness.jsonrpc("tools/list", {}, id=78), headers=headers_for(CAROL_KEY))
    assert listed.status_code == 200, listed.text
    # Another user has a bucket of its own.
    assert post(http, stack, ALICE_KEY, "get_weather", {"city": "Oslo"}, id=79).status_code == 200
