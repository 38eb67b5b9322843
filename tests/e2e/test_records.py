"""Issue 19 through real Envoy -> mcp-warden -> the Python MCP upstream: what one request
can make mcp-warden record (point 5), and every method that names a governed object checked
as that object (point 6, docs/mcp-methods.md).

One stack per module (upstream stateless with JSON answers, mcp-warden auditing to a file
with the body limit at Envoy's own 1 MiB, Envoy); each case is one request judged by what the
upstream received during it (`UpstreamWatch`), its answer and its audit line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest
from harness import ALICE_KEY, BOB_KEY, ERR_INVALID_PARAMS, ERR_UNAUTHENTICATED, jsonrpc
from inspect_support import (
    DAVE_KEY,
    ENVOY_MAX_REQUEST_BYTES,
    SharedStack,
    UpstreamWatch,
    assert_forwarded_with_id_token,
    assert_jsonrpc_error,
    audit_event_for,
    call,
    checked,
    headers_for,
    new_request_id,
    raw,
    module_stack,
    stateless_meta,
)

# An audit line of a refused request, whatever it carried (issue 19: 1,048,299 bytes).
SMALL_LINE = 4096


@pytest.fixture(scope="module")
def shared_stack(
    tmp_path_factory: pytest.TempPathFactory, envoy_bin: Path, warden_bin: Path
) -> Iterator[SharedStack]:
    yield from module_stack(tmp_path_factory, "records", envoy_bin, warden_bin, max_body_bytes=ENVOY_MAX_REQUEST_BYTES)


@pytest.fixture
def rs(request: pytest.FixtureRequest, shared_stack: SharedStack) -> SharedStack:
    return checked(request, shared_stack)


def send(
    rs: SharedStack,
    http: httpx.Client,
    message: Any,
    *,
    key: str | None,
    extra: dict[str, str] | None = None,
    request_id: str | None = None,
) -> tuple[httpx.Response, str]:
    request_id = request_id or new_request_id("records")
    headers = headers_for(key, extra={"x-request-id": request_id, **(extra or {})})
    return raw(http, rs.url, message, headers=headers), request_id


def audit_line(rs: SharedStack, request_id: str) -> str:
    """The raw audit line of the check that carried `request_id` (once it is written)."""
    audit_event_for(rs, request_id)
    needle = f'"request_id":"{request_id}"'
    return next(line for line in rs.audit_path.read_text().splitlines() if needle in line)


# ---------------------------------------------------------------------------------------
# Point 5: nothing a client sends is recorded unbounded
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "status", "code", "event", "reason", "echoed_id"),
    [
        # Unauthenticated, a body over 4 KiB is refused unread (issue 19 point 2): no id to echo.
        (None, 401, ERR_UNAUTHENTICATED, "authentication.failed", "no_credentials", None),
        (ALICE_KEY, 400, ERR_INVALID_PARAMS, "request.denied", "invalid_name", "big-name"),
    ],
    ids=["unauthenticated", "authenticated"],
)
def test_a_near_one_mebibyte_tool_name_leaves_a_small_audit_line(
    rs: SharedStack,
    http: httpx.Client,
    key: str | None,
    status: int,
    code: int,
    event: str,
    reason: str,
    echoed_id: str | None,
) -> None:
    name = "n" * (ENVOY_MAX_REQUEST_BYTES - 512)
    message = call(name, id="big-name")
    assert len(json.dumps(message)) <= ENVOY_MAX_REQUEST_BYTES, "Envoy buffers the whole body"
    watch = UpstreamWatch(rs.upstream)
    resp, request_id = send(rs, http, message, key=key)
    watch.assert_nothing("a 1 MiB tool name")
    assert_jsonrpc_error(resp, status=status, code=code, id=echoed_id)
    assert len(resp.content) < SMALL_LINE, f"the answer echoes no name: {len(resp.content)} bytes"
    line = audit_line(rs, request_id)
    assert len(line.encode()) < SMALL_LINE, f"{len(line)} bytes: {line[:300]}"
    audited = json.loads(line)
    assert (audited["event"], audited["reason"]) == (event, reason), audited
    tool = audited.get("tool")
    if key is None:
        assert tool is None, f"an unauthenticated 1 MiB body is never read: {audited}"
    else:
        assert tool.startswith("nnnn") and tool.endswith(f"…[truncated {len(name) - 512} bytes]"), tool[-60:]


def test_a_tool_name_of_129_characters_is_refused_and_128_are_forwarded(rs: SharedStack, http: httpx.Client) -> None:
    watch = UpstreamWatch(rs.upstream)
    resp, _ = send(rs, http, call("e" * 129, id="n129"), key=ALICE_KEY)
    watch.assert_nothing("a 129-character tool name")
    body = assert_jsonrpc_error(resp, status=400, code=ERR_INVALID_PARAMS, id="n129")
    assert "longer than" in body["error"]["message"], body
    resp, request_id = send(rs, http, call("e" * 128, id="n128"), key=ALICE_KEY)
    record = watch.one("a 128-character tool name")
    assert_forwarded_with_id_token(record, client_key=ALICE_KEY, username="alice", audience=rs.stack.app_uri)
    assert audit_event_for(rs, request_id)["tool"] == "e" * 128, "an accepted name is recorded whole"


# ---------------------------------------------------------------------------------------
# Point 6: every method that names a governed object is governed (dave: resources
# file:///docs/* except file:///docs/secret*, prompt "summarize"; bob: tools ^get_.*$)
# ---------------------------------------------------------------------------------------

STATELESS = {"mcp-protocol-version": "2026-07-28", "mcp-method": "subscriptions/listen"}


def listen(*uris: str) -> dict[str, Any]:
    return jsonrpc(
        "subscriptions/listen",
        {"_meta": stateless_meta(), "notifications": {"toolsListChanged": True, "resourceSubscriptions": list(uris)}},
        id="g-6",
    )


def complete(ref: dict[str, str]) -> dict[str, Any]:
    return jsonrpc("completion/complete", {"ref": ref, "argument": {"name": "path", "value": "a"}}, id="g-6")


CASES: list[tuple[str, dict[str, Any], str, dict[str, str] | None, bool]] = [
    # issue 19: read denied, subscribe forwarded and audited not_governed
    ("subscribe-unreadable", jsonrpc("resources/subscribe", {"uri": "file:///secret/passwords"}, id="g-6"),
     DAVE_KEY, None, False),
    ("subscribe-readable", jsonrpc("resources/subscribe", {"uri": "file:///docs/readme.md"}, id="g-6"),
     DAVE_KEY, None, True),
    ("subscribe-deny-rule", jsonrpc("resources/subscribe", {"uri": "file:///docs/secret-plans.md"}, id="g-6"),
     DAVE_KEY, None, False),
    ("unsubscribe-unreadable", jsonrpc("resources/unsubscribe", {"uri": "file:///secret/passwords"}, id="g-6"),
     DAVE_KEY, None, False),
    ("unsubscribe-readable", jsonrpc("resources/unsubscribe", {"uri": "file:///docs/readme.md"}, id="g-6"),
     DAVE_KEY, None, True),
    ("listen-readable", listen("file:///docs/a.md"), DAVE_KEY, STATELESS, True),
    ("listen-one-unreadable", listen("file:///docs/a.md", "file:///secret/passwords"), DAVE_KEY, STATELESS, False),
    ("complete-template-covered", complete({"type": "ref/resource", "uri": "file:///docs/{path}"}),
     DAVE_KEY, None, True),
    ("complete-template-unreadable", complete({"type": "ref/resource", "uri": "file:///secret/{path}"}),
     DAVE_KEY, None, False),
    ("complete-prompt-listed", complete({"type": "ref/prompt", "name": "summarize"}), DAVE_KEY, None, True),
    ("task-call-of-a-denied-tool", call("delete_file", {"path": "/x"}, id="g-6", task={"ttl": 60000}),
     BOB_KEY, None, False),
    ("task-call-of-an-allowed-tool", call("get_weather", {"city": "Oslo"}, id="g-6", task={"ttl": 60000}),
     BOB_KEY, None, True),
    ("tasks-get", jsonrpc("tasks/get", {"taskId": "t-1"}, id="g-6"), BOB_KEY, None, True),
    ("tasks-result", jsonrpc("tasks/result", {"taskId": "t-1"}, id="g-6"), BOB_KEY, None, True),
    ("tasks-list", jsonrpc("tasks/list", {}, id="g-6"), BOB_KEY, None, True),
    ("tasks-cancel", jsonrpc("tasks/cancel", {"taskId": "t-1"}, id="g-6"), BOB_KEY, None, True),
]

USERS = {DAVE_KEY: "dave", BOB_KEY: "bob"}


@pytest.mark.parametrize(("message", "key", "extra", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_method_naming_a_governed_object_is_checked_as_that_object(
    rs: SharedStack, http: httpx.Client, message: dict[str, Any], key: str, extra: dict[str, str] | None, allowed: bool
) -> None:
    watch = UpstreamWatch(rs.upstream)
    if allowed and message["method"] == "subscriptions/listen":
        # A listen stream stays open for as long as the server has notifications to send:
        # what matters is that it reached the upstream, not when it ends.
        request_id = new_request_id("listen")
        with httpx.Client(timeout=httpx.Timeout(15.0, read=3.0)) as short:
            try:
                send(rs, short, message, key=key, extra=extra, request_id=request_id)
            except httpx.ReadTimeout:
                pass  # still streaming
        event = audit_event_for(rs, request_id)
    else:
        resp, request_id = send(rs, http, message, key=key, extra=extra)
        event = audit_event_for(rs, request_id)
    if allowed:
        record = watch.one(f"{message['method']}")
        assert_forwarded_with_id_token(record, client_key=key, username=USERS[key], audience=rs.stack.app_uri)
        assert json.loads(record["body"]) == message
        assert event["event"] == "request.allowed", event
        return
    watch.assert_nothing(f"{message['method']} {message.get('params')}")
    body = assert_jsonrpc_error(resp, status=200, code=ERR_INVALID_PARAMS, id="g-6")
    assert "denied by policy" in body["error"]["message"], body
    assert "file:///docs/*" not in resp.text and "demo-curated" not in resp.text, resp.text
    assert (event["event"], event["decision"]) == ("request.denied", "deny"), event
    if "secret/passwords" in json.dumps(message):
        assert event["resource"] == "file:///secret/passwords", f"the denied resource is audited: {event}"


# ---------------------------------------------------------------------------------------
# Point 7: a check Envoy gave up on is not audited as an allowed request
# ---------------------------------------------------------------------------------------


def test_checks_envoy_gave_up_on_are_audited_as_not_delivered(
    rs: SharedStack, http: httpx.Client, envoy_bin: Path, tmp_path: Path
) -> None:
    """A second Envoy in front of the same mcp-warden, its ext_authz timeout at 1 ms: Envoy
    answers the client itself (403) and states that deadline in `grpc-timeout`; mcp-warden,
    deciding a ~1 MiB body later than that, audits request.not_delivered."""
    config = harness.render_envoy_test_config(
        warden_grpc_port=rs.stack.warden.grpc_port,
        warden_http_port=rs.stack.warden.http_port,
        upstream_port=rs.upstream.port,
    )
    ext_authz_timeout = "                timeout: 2s\n              with_request_body:"
    assert config.count(ext_authz_timeout) == 1, "the ext_authz grpc_service timeout"
    config = config.replace(ext_authz_timeout, ext_authz_timeout.replace("2s", "0.001s"))
    hasty = harness.run_envoy(rs.stack.group, tmp_path / "envoy", envoy_bin, config, name="hasty-envoy")
    try:
        watch = UpstreamWatch(rs.upstream)
        padding = "p" * (ENVOY_MAX_REQUEST_BYTES - 1024)
        ids: list[str] = []
        before = undelivered(http, rs)
        # Until one check was decided after Envoy's deadline (others are reset before their
        # message is whole: nothing decided, nothing audited); bounded.
        while undelivered(http, rs, "deadline_exceeded") == before.get("deadline_exceeded", 0) and len(ids) < 20:
            request_id = new_request_id("late")
            message = call("echo", {"message": padding}, id=f"late-{len(ids)}")
            headers = headers_for(ALICE_KEY, extra={"x-request-id": request_id})
            resp = raw(http, f"http://127.0.0.1:{hasty.port}/mcp", message, headers=headers)
            assert resp.status_code in (403, 503), f"Envoy answered itself: {resp.status_code} {resp.text[:200]}"
            ids.append(request_id)
            harness.wait_until(
                lambda: sum(undelivered(http, rs).values()) > sum(before.values()) + len(ids) - 1 or None,
                timeout=10.0, what="the check counted as undelivered", procs=[rs.stack.warden.proc],
            )
        watch.assert_nothing("checks Envoy timed out")
        late = undelivered(http, rs, "deadline_exceeded") - before.get("deadline_exceeded", 0)
        assert late >= 1, f"no check of {len(ids)} was decided after Envoy's deadline"
        events = harness.wait_until(
            lambda: [e for e in rs.audit_events() if e.get("request_id") in ids] if sum(
                e.get("request_id") in ids for e in rs.audit_events()) >= late else None,
            timeout=10.0, what="the late checks' audit events", procs=[rs.stack.warden.proc],
        )
        assert all(e["event"] == "request.not_delivered" for e in events), events
        assert all((e["undelivered"], e["decision"]) == ("deadline_exceeded", "allow") for e in events), events
    finally:
        hasty.proc.stop()


def undelivered(http: httpx.Client, rs: SharedStack, why: str | None = None) -> Any:
    """mcp-warden's counts of checks whose answer Envoy never read, by why (or one why's)."""
    text = http.get(f"{rs.stack.warden.http_url}/metrics").text
    prefix = 'mcp_warden_checks_undelivered_total{why="'
    counts = {
        line[len(prefix):].split('"', 1)[0]: int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith(prefix)
    }
    return counts if why is None else counts.get(why, 0)
