"""Support for test_fail_closed.py: one real stack shared by a test module, raw HTTP requests
through Envoy, and the assertions every fail-closed case makes.

The shared stack is upstream (stateless, JSON responses: a raw `tools/call` with no session
gets a real result) + mcp-warden (small inspection limits, audit to a file) + Envoy, started
once per module because every case is one request whose effect is measured as a *delta* of
the upstream's record (`UpstreamWatch`). Cases that need another config start their own
stack through the usual `stack_factory` fixture.

Nothing here sleeps: the only wait (for an audit line, which the writer flushes in batches)
goes through harness.wait_until with a deadline.
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
import jwt
from harness import ALICE_KEY, api_key_hash, default_policy, record_headers

# A user whose role carries the mcp.prompts / mcp.resources extension (see governed_policy).
DAVE_KEY = "e2e-dave-key-5c4b3a29180f7e6d"

# The shared stack's inspection limits: small, so size and depth are cheap to exceed, and
# far below Envoy's own max_request_bytes (1 MiB in envoy/envoy-test.yaml).
MAX_BODY_BYTES = 4096
MAX_DEPTH = 8
ENVOY_MAX_REQUEST_BYTES = 1048576

MCP_ACCEPT = "application/json, text/event-stream"

# Sentinel: "do not assert the id" (the body had no unambiguous, parseable id).
ANY_ID = object()

_request_ids = itertools.count(1)


def governed_policy(upstream_port: int) -> str:
    """default_policy() plus role `demo-curated` (tools, prompts and resources lists, and a
    resources deny rule) held by user dave. alice/bob/carol are unchanged: their roles have
    no prompts/resources lists, so those are not enforced for them."""
    return (
        default_policy(upstream_port)
        + f"""\
---
kind: role
version: v8
metadata:
  name: demo-curated
spec:
  allow:
    app_labels:
      service: demo
    mcp:
      tools: ["*"]
      prompts: ["summarize"]
      resources: ["file:///docs/*"]
  deny:
    mcp:
      resources: ["file:///docs/secret*"]
---
kind: user
version: v2
metadata:
  name: dave
spec:
  roles: [demo-curated]
  api_keys:
  - "{api_key_hash(DAVE_KEY)}"
"""
    )


# --------------------------------------------------------------------------------------
# The shared stack
# --------------------------------------------------------------------------------------


@dataclass
class SharedStack:
    stack: harness.Stack
    audit_path: Path

    @property
    def url(self) -> str:
        return self.stack.mcp_url

    @property
    def upstream(self) -> harness.Upstream:
        return self.stack.upstream

    def audit_events(self) -> list[dict[str, Any]]:
        try:
            text = self.audit_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]


def start_shared_stack(
    group: harness.ProcessGroup,
    work_dir: Path,
    envoy_bin: Path,
    warden_bin: Path,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> SharedStack:
    audit_path = work_dir / "audit.jsonl"
    stack = harness.start_stack(
        group,
        work_dir,
        envoy_bin=envoy_bin,
        warden_bin=warden_bin,
        policy=governed_policy,
        stateless=True,
        json_response=True,
        config_extra={
            "inspection": {"max_body_bytes": max_body_bytes, "max_depth": MAX_DEPTH},
            "audit": {"output": str(audit_path)},
        },
    )
    return SharedStack(stack, audit_path)


def module_stack(
    tmp_path_factory: Any, name: str, envoy_bin: Path, warden_bin: Path, **options: Any
) -> Iterator[SharedStack]:
    """A module fixture's body: a shared stack in a fresh directory, stopped at the end."""
    work = tmp_path_factory.mktemp(name)
    group = harness.ProcessGroup(work / "logs")
    try:
        yield start_shared_stack(group, work / "stack", envoy_bin, warden_bin, **options)
    finally:
        group.stop_all()


def checked(request: Any, shared: SharedStack) -> SharedStack:
    """The shared stack for one test: its process logs attached to the test's failure
    report, every process still alive."""
    attach_logs(request.node, shared.stack.group)
    for proc in shared.stack.group.procs:
        proc.check_alive("a test started")
    return shared


def attach_logs(node: Any, group: harness.ProcessGroup) -> None:
    """Let conftest's failure hook print this group's process logs for `node`."""
    conftest = sys.modules.get("conftest")
    key = getattr(conftest, "_GROUP_KEY", None)
    if key is not None:
        node.stash[key] = group


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------


def new_request_id(tag: str) -> str:
    return f"e2e-fc-{tag}-{next(_request_ids)}"


def headers_for(
    key: str | None = ALICE_KEY,
    *,
    content_type: str | None = "application/json",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Streamable-HTTP request headers with an API key; `content_type=None` sends none."""
    h: dict[str, str] = {"accept": MCP_ACCEPT}
    if content_type is not None:
        h["content-type"] = content_type
    if key is not None:
        h["authorization"] = f"Bearer {key}"
    h.update(extra or {})
    return h


def body_bytes(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode()
    return json.dumps(message).encode()


def raw(
    client: httpx.Client,
    url: str,
    message: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
) -> httpx.Response:
    """One raw request: the body exactly as given (bytes/str verbatim, anything else JSON)."""
    content = None if message is None else body_bytes(message)
    return client.request(method, url, content=content, headers=headers)


def call(name: str, arguments: dict[str, Any] | None = None, id: Any = 1, **params: Any) -> dict[str, Any]:
    """A `tools/call` request message."""
    p: dict[str, Any] = {"name": name, "arguments": arguments or {}}
    p.update(params)
    return harness.jsonrpc("tools/call", p, id=id)


def stateless_meta(version: str = "2026-07-28") -> dict[str, Any]:
    """`params._meta` a 2026-07-28 request carries."""
    return {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
    }


def base64_sentinel(value: str) -> str:
    """The 2026-07-28 mirror form of a non-ASCII header value."""
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


# --------------------------------------------------------------------------------------
# Upstream records
# --------------------------------------------------------------------------------------


class UpstreamWatch:
    """What the upstream received since this watch started."""

    def __init__(self, upstream: harness.Upstream) -> None:
        self.upstream = upstream
        self.before = upstream.count()

    def new(self) -> list[dict[str, Any]]:
        return self.upstream.records()[self.before :]

    def assert_nothing(self, what: str) -> None:
        new = self.new()
        assert not new, f"{what}: reached the upstream: " + "; ".join(
            f"{r['method']} {r['path']} {r['body'][:200]!r}" for r in new
        )

    def one(self, what: str) -> dict[str, Any]:
        new = self.new()
        assert len(new) == 1, f"{what}: expected exactly one forwarded request, got {len(new)}: {new}"
        return new[0]


def assert_forwarded_with_id_token(record: dict[str, Any], *, client_key: str, username: str, audience: str) -> None:
    """The forwarded request carries one `Authorization: Bearer <RS256 JWT for username>`
    and no trace of the client's API key."""
    values = record_headers(record, "authorization")
    assert len(values) == 1, f"expected one Authorization upstream, got {values}"
    scheme, _, token = values[0].partition(" ")
    assert scheme == "Bearer" and token.count(".") == 2, f"not a bearer JWT: {values[0]!r}"
    assert token != client_key
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == username and claims["aud"] == audience, claims
    assert not record_headers(record, "x-api-key"), record["headers"]
    for name, value in record["headers"]:
        assert client_key not in name and client_key not in value, f"API key reached the upstream in {name!r}"


# --------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------


def media_type(resp: httpx.Response) -> str:
    return resp.headers.get("content-type", "").split(";")[0].strip().lower()


def assert_error_object(body: Any, *, code: int) -> dict[str, Any]:
    assert isinstance(body, dict), body
    assert body.get("jsonrpc") == "2.0", body
    assert "result" not in body, body
    assert "id" in body, f"a JSON-RPC error response always has an id (null when unknown): {body}"
    err = body.get("error")
    assert isinstance(err, dict), body
    assert err.get("code") == code, f"expected JSON-RPC error {code}, got {err.get('code')}: {body}"
    assert isinstance(err.get("message"), str) and err["message"].strip(), body
    return body


def assert_jsonrpc_error(
    resp: httpx.Response, *, status: int | tuple[int, ...], code: int, id: Any = ANY_ID
) -> dict[str, Any]:
    """HTTP `status` (or one of them), `Content-Type: application/json`, one JSON-RPC error
    with `code`; `id` is compared by value and JSON type (None: must be null)."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, f"expected HTTP {status}, got {resp.status_code}: {resp.text[:500]!r}"
    assert media_type(resp) == "application/json", f"content-type {resp.headers.get('content-type')!r}"
    body = assert_error_object(resp.json(), code=code)
    if id is not ANY_ID:
        assert_same_id(body["id"], id)
    return body


def assert_same_id(actual: Any, expected: Any) -> None:
    assert actual == expected and type(actual) is type(expected), (
        f"expected the request id {expected!r} ({type(expected).__name__}) echoed, got {actual!r}"
    )


def audit_event_for(shared: SharedStack, request_id: str) -> dict[str, Any]:
    """The audit event of the check that carried `x-request-id: request_id`."""

    def find() -> dict[str, Any] | None:
        for event in shared.audit_events():
            if event.get("request_id") == request_id:
                return event
        return None

    return harness.wait_until(
        find, timeout=10.0, what=f"waiting for the audit event of request {request_id}", procs=[shared.stack.warden.proc]
    )


def iter_depth(levels: int, leaf: Any = 1) -> Any:
    """`levels` nested JSON arrays around `leaf`."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def padded_call(total_bytes: int, id: Any = 1) -> bytes:
    """A valid `tools/call` of `echo` whose JSON encoding is exactly `total_bytes` long."""
    empty = body_bytes(call("echo", {"message": ""}, id=id))
    pad = total_bytes - len(empty)
    assert pad >= 0, total_bytes
    out = body_bytes(call("echo", {"message": "x" * pad}, id=id))
    assert len(out) == total_bytes
    return out
