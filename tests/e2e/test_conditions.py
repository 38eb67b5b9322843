"""Issue 24 end to end: role rules that look inside the call, through real Envoy ->
mcp-warden (ext_authz) -> the Python MCP upstream, driven by the real MCP client.

- argument conditions (`mcp.tool_rules[].where`, CEL) allowing and denying on arguments, and
  failing closed on a malformed argument;
- a role using Teleport's `app_labels_expression`;
- a deny rule in `mode: audit` that lets the call through and writes a `shadow_decision`
  audit event (and counts it in `/metrics`).

Every denial is checked against the upstream's own record: nothing denied reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import httpx
from harness import ALICE_KEY, BOB_KEY, CAROL_KEY, ERR_APP_DENIED, ERR_INVALID_PARAMS, api_key_hash, bearer
from opsupport import read_json_lines


def conditions_policy(upstream_port: int) -> str:
    return f"""\
kind: app
version: v3
metadata:
  name: demo
  labels: {{env: test, service: demo}}
spec:
  uri: "{harness.demo_app_uri(upstream_port)}"
---
kind: role
version: v8
metadata: {{name: payer}}
spec:
  allow:
    app_labels: {{service: demo}}
    mcp:
      tools: [get_weather, send_email, delete_file]
      tool_rules:
      - tools: [add]
        where: 'args.a < 500 && args.b >= 0'
  deny:
    mcp:
      tool_rules:
      - tools: [send_email]
        where: '!args.to.endsWith("@example.com")'
      - tools: [delete_file]
        where: 'args.path.startsWith("/etc")'
        mode: audit
---
kind: role
version: v8
metadata: {{name: team-apps}}
spec:
  allow:
    app_labels_expression: 'labels["env"] == "test" && contains(user.spec.traits["teams"], labels["service"])'
    mcp: {{tools: ["*"]}}
  deny:
    app_labels_expression: 'regexp.match(user.spec.traits["teams"], "banned*")'
---
kind: user
metadata: {{name: alice}}
spec:
  roles: [payer]
  api_keys: ["{api_key_hash(ALICE_KEY)}"]
---
kind: user
metadata: {{name: bob}}
spec:
  roles: [team-apps]
  traits: {{teams: [demo]}}
  api_keys: ["{api_key_hash(BOB_KEY)}"]
---
kind: user
metadata: {{name: carol}}
spec:
  roles: [team-apps]
  traits: {{teams: [demo, banned-team]}}
  api_keys: ["{api_key_hash(CAROL_KEY)}"]
"""


def start(stack_factory: Callable[..., harness.Stack], tmp_path: Path) -> tuple[harness.Stack, Path]:
    audit = tmp_path / "audit.jsonl"
    stack = stack_factory(policy=conditions_policy, config_extra={"audit": {"output": str(audit)}})
    return stack, audit


def call(stack: harness.Stack, key: str, tool: str, arguments: dict[str, Any]) -> harness.McpRun:
    return harness.run_async(harness.mcp_list_and_call(stack.mcp_url, bearer(key), tool, arguments))


def assert_denied(run: harness.McpRun, stack: harness.Stack, tool: str, before: int) -> None:
    assert run.error is not None, f"{tool} must be denied, got {run.result}"
    assert run.error.error.code == ERR_INVALID_PARAMS, run.error
    assert "denied by policy" in run.error.error.message
    assert tool not in stack.upstream.tool_calls()[before:], f"a denied {tool} reached the upstream"


def audit_events(audit: Path, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    return harness.wait_until(
        lambda: [e for e in read_json_lines(audit) if pred(e)] or None, timeout=10.0, what="waiting for audit events"
    )


def test_argument_conditions_allow_deny_and_fail_closed(
    stack_factory: Callable[..., harness.Stack], tmp_path: Path
) -> None:
    stack, audit = start(stack_factory, tmp_path)
    run = call(stack, ALICE_KEY, "add", {"a": 2, "b": 3})
    assert run.error is None and harness.tool_text(run.result) == "5", run
    assert "add" in run.tool_names, "a tool a condition may allow is listed"

    before = len(stack.upstream.tool_calls())
    assert_denied(call(stack, ALICE_KEY, "add", {"a": 900, "b": 1}), stack, "add", before)
    # Fail closed: a malformed (mistyped) or missing argument does not allow.
    assert_denied(call(stack, ALICE_KEY, "add", {"a": "lots", "b": 1}), stack, "add", before)
    assert_denied(call(stack, ALICE_KEY, "add", {"b": 1}), stack, "add", before)
    # A deny condition: mail outside the domain is refused, inside it passes.
    assert_denied(call(stack, ALICE_KEY, "send_email", {"to": "x@evil.test", "subject": "s"}), stack, "send_email", before)
    ok = call(stack, ALICE_KEY, "send_email", {"to": "a@example.com", "subject": "s"})
    assert ok.error is None, ok

    denied = audit_events(audit, lambda e: e.get("event") == "request.denied" and e.get("tool") == "add")
    reasons = sorted(e["reason"] for e in denied)
    assert reasons == ["condition_error", "condition_error", "condition_not_met"], reasons
    assert all(e["role"] == "payer" and e["rule"].startswith("tool_rules[0]: args.a < 500") for e in denied), denied
    mail = audit_events(audit, lambda e: e.get("event") == "request.denied" and e.get("tool") == "send_email")
    assert [e["reason"] for e in mail] == ["denied_by_condition"], mail


def test_a_shadow_deny_lets_the_call_through_and_is_audited_and_counted(
    stack_factory: Callable[..., harness.Stack], tmp_path: Path
) -> None:
    stack, audit = start(stack_factory, tmp_path)
    run = call(stack, ALICE_KEY, "delete_file", {"path": "/etc/passwd"})
    assert run.error is None, f"a rule in mode: audit never denies: {run.error}"
    assert "delete_file" in stack.upstream.tool_calls()
    call(stack, ALICE_KEY, "delete_file", {"path": "/tmp/x"})
    harness.wait_until(
        lambda: len([e for e in read_json_lines(audit) if e.get("event") == "shadow_decision"]) >= 2 or None,
        timeout=10.0,
        what="waiting for two shadow events",
    )
    shadows = [e for e in read_json_lines(audit) if e.get("event") == "shadow_decision"]
    assert [(e["reason"], e["decision"]) for e in shadows] == [("would_deny", "deny"), ("would_not_deny", "allow")]
    assert all(e["role"] == "payer" and e["tool"] == "delete_file" and e["user"] == "alice" for e in shadows)
    allowed = [e for e in read_json_lines(audit) if e.get("event") == "request.allowed" and e.get("tool") == "delete_file"]
    assert len(allowed) == 2, "the real decision is audited apart, and it is allow"
    metrics = httpx.get(f"{stack.warden.http_url}/metrics", timeout=10).text
    line = 'mcp_warden_shadow_decisions_total{role="payer",rule="tool_rules[1]: args.path.startsWith(\\"/etc\\")",outcome="would_deny"} 1'
    assert line in metrics, metrics


def test_app_labels_expression_role(stack_factory: Callable[..., harness.Stack], tmp_path: Path) -> None:
    stack, audit = start(stack_factory, tmp_path)
    run = call(stack, BOB_KEY, "echo", {"message": "hi"})
    assert run.error is None and harness.tool_text(run.result) == "echo: hi", run
    # carol's teams match the allow expression, and also the deny expression: the app is refused.
    with harness.http_client() as http:
        resp = harness.post_jsonrpc(http, stack.mcp_url, harness.initialize_request(id=7), bearer(CAROL_KEY))
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["id"] == 7 and body["error"]["code"] == ERR_APP_DENIED, body
    denied = audit_events(audit, lambda e: e.get("user") == "carol")
    assert [(e["reason"], e["role"]) for e in denied] == [("app_denied_by_role", "team-apps")], denied
