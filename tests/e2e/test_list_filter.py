"""Issue 4: list responses filtered per user by mcp-warden's ext_proc list filter, through
real Envoy.

Real peers: the Python SDK MCP server (upstream.py, 12 tools, JSON or SSE answers) with the
SDK's own client, for what each user sees; list_upstream.py, a scripted server, for byte-level
framing, pagination, AgentCore's search shape and unparseable answers the SDK never sends.

Contract under test (docs/configuration.md "List filter"):
- tools/list (and prompts/list, resources/list, resources/templates/list where the user's
  roles govern them) show exactly what the same rules allow to be called; calls stay checked;
- JSON answers are rewritten with a correct content-length; SSE answers event by event,
  other events byte for byte, ids / retry / comments kept;
- nextCursor is kept and a filtered page may be empty;
- an answer that cannot be filtered becomes a JSON-RPC error (-32603) unless
  `list_filter.on_unparseable: pass`;
- non-list requests open no ext_proc stream at all (Envoy's counters say so);
- an allowed GET (the server-to-client stream) is filtered too: a server resuming a stream
  (Last-Event-ID) may replay an earlier list answer there; every other event passes byte for
  byte, and the stream outlives Envoy's 2 s ext_proc timeouts. A DELETE is not filtered;
- with `audit.envoy_metadata: list_filter` the views are the same, an allowed call of an
  ordinary tool (and initialize, DELETE) carries no decision metadata (Envoy's access log
  shows `-`), denials and everything the list filter reads keep it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import harness
import httpx
import list_support as ls
import list_upstream as lu
import pytest
from harness import ERR_INVALID_PARAMS, bearer, jsonrpc, mcp_session, post_jsonrpc, run_async
from mcp.shared.exceptions import MCPError
from opsupport import complete_lines, read_json_lines, scrape


@pytest.fixture
def scripted(procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path) -> Callable[..., harness.Stack]:
    """list_upstream.py behind mcp-warden and Envoy; keyword arguments go to start_scripted_stack."""
    counter = 0

    def make(**kwargs: Any) -> harness.Stack:
        nonlocal counter
        counter += 1
        return ls.start_scripted_stack(
            procs, tmp_path / f"scripted{counter}", envoy_bin=envoy_bin, warden_bin=warden_bin, **kwargs
        )

    return make


def _sdk_stack(stack_factory: Any, mode: str) -> harness.Stack:
    return stack_factory(policy=ls.policy, json_response=(mode == "json"))


def _tool_names(answer: dict[str, Any]) -> list[str]:
    """The tool names in a tools/list answer, in order."""
    return [t["name"] for t in answer["result"]["tools"]]


# ---------------------------------------------------------------------------------------
# What each user sees, through the real SDK client and server
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["json", "sse"])
def test_each_user_sees_exactly_the_tools_it_may_call(stack_factory: Any, mode: str) -> None:
    stack = _sdk_stack(stack_factory, mode)

    async def list_as(user: str) -> list[str]:
        async with mcp_session(stack.mcp_url, bearer(ls.KEYS[user])) as session:
            listed = await session.list_tools()
            assert listed.next_cursor is None
            return [t.name for t in listed.tools]

    seen = {user: run_async(list_as(user)) for user in ("alice", "bob", "dana")}
    for user, names in seen.items():
        assert names == ls.visible_in_order(user), f"{user} ({mode}) saw {names}"
    assert len(seen["alice"]) == 12 and len(seen["bob"]) == 2 and len(seen["dana"]) == 5
    # The upstream answered the same full list every time: the view was made on the way back.
    assert sum(1 for m in stack.upstream.jsonrpc_messages() if m.get("method") == "tools/list") == 3


@pytest.mark.parametrize("mode", ["json", "sse"])
def test_a_hidden_tool_is_still_denied_when_called(stack_factory: Any, mode: str) -> None:
    stack = _sdk_stack(stack_factory, mode)

    async def scenario() -> tuple[list[str], MCPError | None, MCPError | None]:
        async with mcp_session(stack.mcp_url, bearer(ls.DANA_KEY)) as session:
            names = [t.name for t in (await session.list_tools()).tools]
            errors: list[MCPError | None] = []
            for tool in ("query_db", "delete_file"):
                try:
                    await session.call_tool(tool, {"sql": "select 1", "path": "/x"})
                    errors.append(None)
                except MCPError as exc:
                    errors.append(exc)
            return names, errors[0], errors[1]

    names, denied_db, denied_delete = run_async(scenario())
    assert "query_db" not in names and "delete_file" not in names
    for denied in (denied_db, denied_delete):
        assert denied is not None and denied.code == ERR_INVALID_PARAMS, denied
    assert stack.upstream.tool_calls() == []


@pytest.mark.parametrize("mode", ["json", "sse"])
def test_prompts_and_resources_are_filtered_only_for_users_whose_roles_govern_them(
    stack_factory: Any, mode: str
) -> None:
    stack = _sdk_stack(stack_factory, mode)

    async def lists_as(user: str) -> tuple[list[str], list[str], list[str]]:
        async with mcp_session(stack.mcp_url, bearer(ls.KEYS[user])) as session:
            prompts = [p.name for p in (await session.list_prompts()).prompts]
            resources = [str(r.uri) for r in (await session.list_resources()).resources]
            templates = [t.uri_template for t in (await session.list_resource_templates()).resource_templates]
            return prompts, resources, templates

    bob = run_async(lists_as("bob"))
    dana = run_async(lists_as("dana"))
    # bob's roles have no prompt or resource rules: nothing of that kind is governed for him.
    assert sorted(bob[0]) == ["code_review", "summarize"]
    assert sorted(bob[1]) == ["config://app", "file:///docs/readme.md"]
    assert bob[2] == ["users://{user_id}/profile"]
    # dana's roles govern both: she sees what prompts/get and resources/read would allow.
    assert dana == (["summarize"], ["file:///docs/readme.md"], [])


def test_non_list_requests_open_no_ext_proc_stream(stack_factory: Any, http: httpx.Client) -> None:
    """The zero-cost gate: Envoy skips the list filter unless ext_authz's decision names an
    allowed list call (or an allowed GET stream, tested below); denials, 401s and unchecked
    routes included."""
    stack = _sdk_stack(stack_factory, "json")
    envoy = stack.envoy

    before = ls.ext_proc_counters(envoy)
    assert before, "the list filter's ext_proc stats are missing"
    # Raw requests: the SDK client lists tools by itself before checking a call's output.
    bob = {**ls.headers("bob")}
    init = post_jsonrpc(http, stack.mcp_url, harness.initialize_request(), bob)
    assert init.status_code == 200, init.text
    bob["mcp-session-id"] = init.headers["mcp-session-id"]
    for msg in (
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        jsonrpc("ping", {}, id=2),
        jsonrpc("tools/call", {"name": "get_time", "arguments": {}}, id=3),
        jsonrpc("tools/call", {"name": "delete_file", "arguments": {"path": "/x"}}, id=4),  # denied
    ):
        assert post_jsonrpc(http, stack.mcp_url, msg, bob).status_code in (200, 202)
    unauthenticated = post_jsonrpc(http, stack.mcp_url, jsonrpc("tools/list", {}, id=5), {"x-api-key": "wrong"})
    assert unauthenticated.status_code == 401
    # A client-sent trigger header is stripped by ext_authz on a checked route ...
    spoofed = post_jsonrpc(http, stack.mcp_url, jsonrpc("ping", {}, id=6), {**bob, "x-mcp-warden-list": "tools/list"})
    assert spoofed.status_code == 200, spoofed.text
    # ... and the filter is disabled on the public discovery routes that skip ext_authz.
    discovery = http.get(envoy.url("/.well-known/openid-configuration"), headers={"x-mcp-warden-list": "tools/list"})
    assert discovery.status_code == 200 and "jwks_uri" in discovery.json()
    after_non_list = ls.ext_proc_counters(envoy)
    assert after_non_list == before, "a non-list request reached ext_proc"

    # One raw tools/list in the same session: the SDK client would also open its GET stream,
    # which the filter reads too (see the GET stream tests below).
    listed = post_jsonrpc(http, stack.mcp_url, jsonrpc("tools/list", {}, id=7), bob)
    assert listed.status_code == 200 and _tool_names(listed.json()) == ls.visible_in_order("bob"), listed.text
    after_list = ls.ext_proc_counters(envoy)
    assert after_list["streams_started"] - before["streams_started"] == 1
    # Response headers, then the buffered body: two messages each way, nothing failed.
    assert after_list["stream_msgs_sent"] - before["stream_msgs_sent"] == 2
    assert after_list["stream_msgs_received"] - before["stream_msgs_received"] == 2
    assert after_list["streams_failed"] == before["streams_failed"] == 0
    # The trigger header never reaches the upstream.
    for rec in stack.upstream.records():
        assert not harness.record_headers(rec, "x-mcp-warden-list"), rec["headers"]


# ---------------------------------------------------------------------------------------
# Framing, pagination, search shape, failures: the scripted upstream
# ---------------------------------------------------------------------------------------


def _list_page(http: httpx.Client, stack: harness.Stack, user: str, scenario: str, cursor: str | None, id: Any) -> httpx.Response:
    params = {"cursor": cursor} if cursor else {}
    return post_jsonrpc(http, stack.mcp_url, jsonrpc("tools/list", params, id=id), ls.headers(user, scenario))


def _answer(resp: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer in a JSON or SSE response."""
    assert resp.status_code == 200, resp.text
    if resp.headers["content-type"].startswith("text/event-stream"):
        messages = [json.loads(e.data) for e in ls.parse_sse(resp.text) if e.data]
        answers = [m for m in messages if "result" in m or "error" in m]
        assert len(answers) == 1, resp.text
        return answers[0]
    # A rewritten JSON answer carries the length of what it now is.
    assert int(resp.headers["content-length"]) == len(resp.content)
    return resp.json()


@pytest.mark.parametrize("scenario", ["json", "sse"])
def test_pagination_keeps_the_cursor_and_a_filtered_page_may_be_empty(
    scripted: Callable[..., harness.Stack], http: httpx.Client, scenario: str
) -> None:
    stack = scripted()
    for user in ("alice", "bob", "dana"):
        first = _answer(_list_page(http, stack, user, scenario, None, id=f"{user}-1"))
        assert first["id"] == f"{user}-1"
        assert first["result"]["nextCursor"] == "page-2"
        second = _answer(_list_page(http, stack, user, scenario, "page-2", id=f"{user}-2"))
        assert "nextCursor" not in second["result"]
        names = [t["name"] for t in first["result"]["tools"] + second["result"]["tools"]]
        assert names == ls.visible_in_order(user), (user, names)
    # bob's second page had nothing he may use: it is empty, not an error.
    bob_second = _answer(_list_page(http, stack, "bob", scenario, "page-2", id=9))
    assert bob_second["result"] == {"tools": []}


def test_an_event_stream_is_reframed_event_by_event_and_the_rest_passes_byte_for_byte(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    stack = scripted()
    resp = _list_page(http, stack, "bob", "sse", None, id=42)
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/event-stream"
    assert "content-length" not in resp.headers
    text = resp.text
    # Everything before the answer's event arrives exactly as the upstream wrote it (CRLF,
    # the comment, retry, the notification event with its id), cut into chunks or not.
    notification = json.dumps(
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 0.5}}
    )
    prefix = f": stream opened\r\nretry: 1500\r\n\r\nid: ev-1\r\nevent: message\r\ndata: {notification}\r\n\r\n"
    assert text.startswith(prefix), text[:300]
    events = ls.parse_sse(text)
    assert [(e.id, e.event) for e in events] == [(None, None), ("ev-1", "message"), ("ev-2", "message")]
    assert events[0].retry == "1500"
    # The answer's event keeps its id and event lines, now with one data line, CRLF kept.
    rewritten = text[len(prefix) :]
    assert rewritten.startswith("id: ev-2\r\nevent: message\r\ndata: {") and rewritten.endswith("}\r\n\r\n")
    assert rewritten.count("data:") == 1
    answer = json.loads(events[2].data or "")
    assert answer["id"] == 42
    assert [t["name"] for t in answer["result"]["tools"]] == ["get_weather", "get_time"]
    assert answer["result"]["nextCursor"] == "page-2"
    # Envoy sent the body in the upstream's pieces (four or more), each answered in turn.
    counters = ls.ext_proc_counters(stack.envoy)
    assert counters["stream_msgs_sent"] >= 5, counters


def test_agentcore_search_results_show_only_callable_tools(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    stack = scripted()
    call = jsonrpc("tools/call", {"name": ls.SEARCH_TOOL, "arguments": {"query": "weather"}}, id="s-1")
    for scenario in ("json", "sse"):
        answer = _answer(post_jsonrpc(http, stack.mcp_url, call, ls.headers("bob", scenario)))
        result = answer["result"]
        assert [t["name"] for t in result["structuredContent"]["tools"]] == ["get_weather", "get_time"]
        text = json.loads(result["content"][0]["text"])
        assert [t["name"] for t in text["tools"]] == ["get_weather", "get_time"]
        assert result["isError"] is False
    # dana may not call the search tool at all: ext_authz denies it before any list is made.
    denied = post_jsonrpc(http, stack.mcp_url, call, ls.headers("dana"))
    assert denied.json()["error"]["code"] == ERR_INVALID_PARAMS


def test_a_batch_with_a_list_call_is_filtered(scripted: Callable[..., harness.Stack], http: httpx.Client) -> None:
    stack = scripted()
    batch = [jsonrpc("tools/list", {}, id=1), jsonrpc("ping", {}, id=2)]
    resp = post_jsonrpc(http, stack.mcp_url, batch, ls.headers("bob", "json", version="2025-03-26"))
    assert resp.status_code == 200, resp.text
    answers = {a["id"]: a for a in resp.json()}
    assert [t["name"] for t in answers[1]["result"]["tools"]] == ["get_weather", "get_time"]
    assert answers[2]["result"] == {}


@pytest.mark.parametrize("envoy_metadata", ["all", "list_filter"])
def test_a_batch_with_no_list_call_passes_through_the_list_filter_unchanged(
    scripted: Callable[..., harness.Stack], http: httpx.Client, envoy_metadata: str
) -> None:
    """Envoy's matcher sends every allowed batch through the list filter; one holding no list
    call must come back as the upstream wrote it (it once got a 500 after the tool had run,
    the filter's inputs missing from the decision metadata)."""
    stack = scripted(config_extra={"audit": {"envoy_metadata": envoy_metadata}})
    batch = [jsonrpc("ping", {}, id=1), jsonrpc("tools/call", {"name": "get_time", "arguments": {}}, id=2)]
    resp = post_jsonrpc(http, stack.mcp_url, batch, ls.headers("bob", "json", version="2025-03-26"))
    assert resp.status_code == 200, resp.text
    answers = {a["id"]: a for a in resp.json()}
    assert sorted(answers) == [1, 2], resp.text
    assert all("result" in a and "error" not in a for a in answers.values()), resp.text
    assert stack.upstream.tool_calls() == ["get_time"]


@pytest.mark.parametrize("scenario", ["large", "large-late"])
def test_a_list_of_megabytes_is_filtered_whole_whenever_its_body_arrives(
    scripted: Callable[..., harness.Stack], http: httpx.Client, scenario: str
) -> None:
    # Larger than Envoy buffers: streamed to mcp-warden, held back there, and sent filtered.
    stack = scripted()
    resp = _list_page(http, stack, "bob", scenario, None, id="big-1")
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/json")
    assert "content-length" not in resp.headers or int(resp.headers["content-length"]) == len(resp.content)
    answer = resp.json()
    names = [t["name"] for t in answer["result"]["tools"]]
    page_one = lu.TOOL_NAMES[: lu.PAGE_SIZE]
    assert names == [n for n in ls.visible_in_order("bob") if n in page_one], names
    assert answer["id"] == "big-1" and answer["result"]["nextCursor"] == "page-2"
    assert len(answer["result"]["tools"][0]["description"]) > 100_000, "the padding arrived whole"


def test_a_list_over_max_event_bytes_is_an_error_not_a_stall(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    stack = scripted(config_extra={"list_filter": {"max_event_bytes": 1024 * 1024}})
    for scenario in ("large", "large-late"):
        resp = _list_page(http, stack, "bob", scenario, None, id="big-2")
        assert resp.status_code == 200, resp.text[:300]
        assert resp.json() == {"jsonrpc": "2.0", "id": "big-2", "error": {"code": ls.ERR_INTERNAL, "message": ls.UNFILTERABLE}}
        assert "delete_file" not in resp.text


def _refusals(stack: harness.Stack, kind: str, reason: str, action: str) -> float | None:
    """mcp_warden_list_filter_refusals_total for these labels, scraped from mcp-warden."""
    return scrape(stack.warden).value("mcp_warden_list_filter_refusals_total", kind=kind, reason=reason, action=action)


@pytest.mark.parametrize(("scenario", "reason"), [("broken", "unparseable"), ("gzip", "compressed")])
def test_a_list_that_cannot_be_filtered_is_an_error_not_the_full_list(
    scripted: Callable[..., harness.Stack], http: httpx.Client, scenario: str, reason: str
) -> None:
    stack = scripted()
    assert _refusals(stack, "tools/list", reason, "refused") is None
    resp = _list_page(http, stack, "bob", scenario, None, id="e-1")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body == {"jsonrpc": "2.0", "id": "e-1", "error": {"code": ls.ERR_INTERNAL, "message": ls.UNFILTERABLE}}
    assert "delete_file" not in resp.text
    # Counted for the alert (deploy/observability: McpWardenListFilterRefusals).
    assert _refusals(stack, "tools/list", reason, "refused") == 1


def test_on_unparseable_pass_lets_an_unparseable_list_through(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    stack = scripted(config_extra={"list_filter": {"on_unparseable": "pass"}})
    resp = _list_page(http, stack, "bob", "broken", None, id="p-1")
    assert resp.status_code == 200
    assert resp.text.startswith('{"jsonrpc":"2.0","id":"p-1","result":{"tools":[') and "error" not in resp.text
    # A parseable list is still filtered.
    assert [t["name"] for t in _answer(_list_page(http, stack, "bob", "json", None, id=2))["result"]["tools"]] == [
        "get_weather",
        "get_time",
    ]


# ---------------------------------------------------------------------------------------
# The server-to-client GET stream: replayed answers are filtered like any other
# ---------------------------------------------------------------------------------------


def _stream_headers(user: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A GET for the server-to-client stream, as `user`."""
    return {**ls.headers(user), "accept": "text/event-stream", **(extra or {})}


def test_a_list_answer_replayed_on_a_get_stream_is_filtered_and_the_rest_passes_byte_for_byte(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    """A GET with Last-Event-ID replays a notification, an earlier tools/list answer and a
    server-to-client request. bob gets only his tools in the answer (whole definitions, the
    event's id and type kept); alice's stream is exactly what the upstream wrote; the events
    around the answer pass byte for byte. Each GET opens one ext_proc stream."""
    stack = scripted()
    before = ls.ext_proc_counters(stack.envoy)
    texts = {}
    for user in ("bob", "alice"):
        resp = http.get(stack.mcp_url, headers=_stream_headers(user, {"last-event-id": "ev-41"}))
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "text/event-stream"
        texts[user] = resp.text
    after = ls.ext_proc_counters(stack.envoy)

    notification, _, server_request = lu.replay_events()
    head = "id: r-2\nevent: message\ndata: "
    for user, text in texts.items():
        assert text.startswith(notification) and text.endswith(server_request), (user, text)
        listed = text[len(notification) : len(text) - len(server_request)]
        # One event: id and event lines as written, one data line, a blank line.
        assert listed.startswith(head) and listed.endswith("\n\n") and listed.count("\n") == 4, (user, listed)
        answer = json.loads(listed[len(head) : -2])
        assert answer["id"] == 7 and "nextCursor" not in answer["result"]
        assert answer["result"]["tools"] == [lu.tool_def(n) for n in ls.visible_in_order(user)], user
    # alice may see every tool: nothing to rewrite, her stream is the upstream's bytes.
    assert texts["alice"] == "".join(lu.replay_events())

    assert after["streams_started"] - before["streams_started"] == 2
    assert after["streams_failed"] == before["streams_failed"] == 0
    # The upstream saw the client's resumption header on both GETs.
    gets = [r for r in stack.upstream.records() if r["method"] == "GET"]
    assert [harness.record_headers(r, "last-event-id") for r in gets] == [["ev-41"], ["ev-41"]]


def test_a_plain_get_stream_passes_unchanged_and_a_delete_opens_no_ext_proc_stream(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    """A GET without Last-Event-ID (a priming event only) goes through the filter and arrives
    as written; an unauthenticated GET and an allowed DELETE (end of session) never open an
    ext_proc stream."""
    stack = scripted()
    before = ls.ext_proc_counters(stack.envoy)
    resp = http.get(stack.mcp_url, headers=_stream_headers("bob"))
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/event-stream"
    assert resp.text == lu.PRIMING_EVENT
    after_get = ls.ext_proc_counters(stack.envoy)
    assert after_get["streams_started"] - before["streams_started"] == 1

    refused = http.get(stack.mcp_url, headers={"accept": "text/event-stream", "x-api-key": "wrong"})
    assert refused.status_code == 401
    deleted = http.delete(stack.mcp_url, headers=ls.headers("bob"))
    assert deleted.status_code == 200 and deleted.content == b""
    assert ls.ext_proc_counters(stack.envoy) == after_get
    # The DELETE was allowed and reached the upstream; the refused GET did not.
    assert [r["method"] for r in stack.upstream.records()] == ["GET", "DELETE"]


def test_a_get_stream_open_longer_than_the_ext_proc_timeouts_is_still_filtered(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    """The upstream replays, stays quiet for STREAM_HOLD (3 s, longer than the ext_proc
    grpc_service timeout and message_timeout of 2 s), then sends another tools/list answer.
    The stream stays open, the late answer is filtered, the stream ends cleanly and Envoy
    counts no failed ext_proc stream and no message timeout."""
    stack = scripted()
    before = ls.ext_proc_counters(stack.envoy)
    headers = _stream_headers("bob", {"last-event-id": "r-0", "x-list-scenario": "hold"})
    with http.stream("GET", stack.mcp_url, headers=headers) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "text/event-stream"
        reader = ls.SseReader(resp)
        replayed = reader.events_until(lambda e: e.id == "r-3")
        quiet_from = time.monotonic()
        late = reader.next_event()
        quiet = time.monotonic() - quiet_from
        assert reader.next_event() is None  # the upstream ended the stream: a clean end, no reset
    after = ls.ext_proc_counters(stack.envoy)

    assert [e.id for e in replayed] == ["r-1", "r-2", "r-3"]
    assert _tool_names(json.loads(replayed[1].data or "")) == ls.visible_in_order("bob")
    assert late is not None and late.id == "r-4", reader.text
    assert quiet >= lu.STREAM_HOLD - 0.5, quiet
    answer = json.loads(late.data or "")
    assert answer["id"] == 8 and _tool_names(answer) == ls.visible_in_order("bob")
    assert after["streams_started"] - before["streams_started"] == 1
    assert after["streams_failed"] == before["streams_failed"] == 0
    assert after.get("message_timeouts", 0) == before.get("message_timeouts", 0)


def test_a_resumed_sdk_stream_replays_the_list_answer_filtered(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path, http: httpx.Client
) -> None:
    """The attack against the real SDK server with an event store (upstream.py --resumable).
    bob lists tools over SSE (filtered), then resumes that POST's stream on a GET with
    Last-Event-ID set to its priming event: the SDK replays the stored, unfiltered answer
    on the GET. Through Envoy bob still sees only his tools; straight to the upstream the
    same replay holds all twelve (the test exercises a real replay). Ending the session with
    DELETE opens no ext_proc stream."""
    stack = ls.start_resumable_stack(procs, tmp_path / "resumable", envoy_bin=envoy_bin, warden_bin=warden_bin)
    bob = ls.headers("bob")
    init = post_jsonrpc(http, stack.mcp_url, harness.initialize_request(), bob)
    assert init.status_code == 200 and init.headers["content-type"].startswith("text/event-stream"), init.text
    session = init.headers["mcp-session-id"]
    bob["mcp-session-id"] = session
    initialized = post_jsonrpc(http, stack.mcp_url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, bob)
    assert initialized.status_code == 202, initialized.text

    listed = post_jsonrpc(http, stack.mcp_url, jsonrpc("tools/list", {}, id=2), bob)
    assert listed.status_code == 200, listed.text
    events = ls.parse_sse(listed.text)
    # The SDK's stream for the call: a priming event (an id, empty data), then the answer.
    assert len(events) == 2, listed.text
    priming, answered = events
    assert priming.id and priming.data == "" and answered.id and answered.id != priming.id, listed.text
    assert _tool_names(json.loads(answered.data or "")) == ls.visible_in_order("bob")

    def replay(url: str, headers: dict[str, str]) -> ls.SseEvent:
        """GET with Last-Event-ID = the priming event; the replayed answer to id 2. The SDK
        then keeps the stream open for live events: it is closed as soon as the answer is in."""
        resume = {**headers, "accept": "text/event-stream", "last-event-id": priming.id or ""}
        with http.stream("GET", url, headers=resume) as resp:
            assert resp.status_code == 200, resp.read()
            assert resp.headers["content-type"].startswith("text/event-stream")
            return ls.SseReader(resp).events_until(ls.jsonrpc_answer_to(2))[-1]

    before = ls.ext_proc_counters(stack.envoy)
    through_envoy = replay(stack.mcp_url, bob)
    after_replay = ls.ext_proc_counters(stack.envoy)
    direct = replay(stack.upstream.url, {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})

    # Both are the stored answer event (same event id); only Envoy's copy is filtered.
    assert through_envoy.id == direct.id == answered.id
    assert _tool_names(json.loads(direct.data or "")) == ls.ALL_TOOLS
    assert _tool_names(json.loads(through_envoy.data or "")) == ls.visible_in_order("bob")
    assert after_replay["streams_started"] - before["streams_started"] == 1
    assert after_replay["streams_failed"] == before["streams_failed"] == 0

    ended = http.delete(stack.mcp_url, headers=bob)
    assert ended.status_code == 200, ended.text
    assert ls.ext_proc_counters(stack.envoy)["streams_started"] == after_replay["streams_started"]


# ---------------------------------------------------------------------------------------
# audit.envoy_metadata: list_filter — decision metadata only where the list filter reads it
# ---------------------------------------------------------------------------------------

LIST_FILTER_METADATA = {"audit": {"envoy_metadata": "list_filter"}}

# The decision fields envoy/envoy-test.yaml's access log prints as ` key=value` (`-` when the
# check set none).
ACCESS_LOG_FIELDS = ("decision", "reason", "user", "app", "mcp_method", "tool")
_ACCESS_LOG_KV = re.compile(r"(?:^|\s)(request_id|" + "|".join(ACCESS_LOG_FIELDS) + r")=(\S*)")
NO_METADATA = dict.fromkeys(ACCESS_LOG_FIELDS, "-")


def _raw_session(http: httpx.Client, stack: harness.Stack, user: str, request_id: str | None = None) -> dict[str, str]:
    """initialize and notifications/initialized as `user`, raw (the SDK client would also list
    tools and open its GET stream); the headers for the rest of the session. `request_id`
    goes on the initialize request."""
    first = {**ls.headers(user), **({"x-request-id": request_id} if request_id else {})}
    init = post_jsonrpc(http, stack.mcp_url, harness.initialize_request(), first)
    assert init.status_code == 200, init.text
    headers = {**ls.headers(user), "mcp-session-id": init.headers["mcp-session-id"]}
    initialized = post_jsonrpc(http, stack.mcp_url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    assert initialized.status_code == 202, initialized.text
    return headers


def _access_log(envoy: harness.Envoy, request_ids: list[str]) -> dict[str, dict[str, str]]:
    """The decision fields of Envoy's access-log line (its stdout) for each request id. Envoy
    flushes the log every few seconds: waits (deadline) until every id has a complete line."""

    def rows() -> dict[str, list[dict[str, str]]]:
        found: dict[str, list[dict[str, str]]] = {rid: [] for rid in request_ids}
        for line in complete_lines(envoy.proc.stdout_path):
            row = dict(_ACCESS_LOG_KV.findall(line))
            if row.get("request_id") in found:
                found[row["request_id"]].append(row)
        return found

    def complete() -> dict[str, list[dict[str, str]]] | None:
        found = rows()
        return found if all(found.values()) else None

    found = harness.wait_until(
        complete,
        timeout=30,
        what="waiting for Envoy's access log",
        procs=[envoy.proc],
    )
    for rid, lines in found.items():
        assert len(lines) == 1, (rid, lines)
    return {rid: {f: lines[0].get(f, "<absent>") for f in ACCESS_LOG_FIELDS} for rid, lines in found.items()}


@pytest.mark.parametrize("mode", ["json", "sse"])
def test_with_list_filter_metadata_each_user_still_sees_exactly_what_it_may_use(stack_factory: Any, mode: str) -> None:
    """The views of test_each_user_sees_exactly_the_tools_it_may_call and
    test_prompts_and_resources_are_filtered_only_for_users_whose_roles_govern_them (default
    metadata), unchanged: every list call keeps its metadata. An allowed call of a permitted
    tool in the same SDK session (no metadata now) still gets its result."""
    stack = stack_factory(policy=ls.policy, json_response=(mode == "json"), config_extra=LIST_FILTER_METADATA)

    async def view_as(user: str) -> tuple[list[str], list[str], list[str], list[str], str]:
        async with mcp_session(stack.mcp_url, bearer(ls.KEYS[user])) as session:
            listed = await session.list_tools()
            assert listed.next_cursor is None
            prompts = [p.name for p in (await session.list_prompts()).prompts]
            resources = [str(r.uri) for r in (await session.list_resources()).resources]
            templates = [t.uri_template for t in (await session.list_resource_templates()).resource_templates]
            called = await session.call_tool("get_time", {"timezone": "UTC"})
            assert not called.is_error, called
            return [t.name for t in listed.tools], prompts, resources, templates, harness.tool_text(called)

    seen = {user: run_async(view_as(user)) for user in ("alice", "bob", "dana")}
    for user, (tools, _, _, _, called) in seen.items():
        assert tools == ls.visible_in_order(user), f"{user} ({mode}) saw {tools}"
        assert called == "2026-01-01T12:00:00 UTC", (user, called)
    assert [len(seen[u][0]) for u in ("alice", "bob", "dana")] == [12, 2, 5]
    # bob's roles govern no prompt or resource: he sees them all; dana's govern both.
    _, bob_prompts, bob_resources, bob_templates, _ = seen["bob"]
    assert sorted(bob_prompts) == ["code_review", "summarize"]
    assert sorted(bob_resources) == ["config://app", "file:///docs/readme.md"]
    assert bob_templates == ["users://{user_id}/profile"]
    assert seen["dana"][1:4] == (["summarize"], ["file:///docs/readme.md"], [])
    # The upstream answered the full list every time, and ran every call.
    assert sum(1 for m in stack.upstream.jsonrpc_messages() if m.get("method") == "tools/list") == 3
    assert stack.upstream.tool_calls() == ["get_time"] * 3


@pytest.mark.parametrize("mode", ["json", "sse"])
def test_with_list_filter_metadata_an_allowed_call_opens_no_ext_proc_stream_and_a_denied_call_is_still_denied(
    stack_factory: Any, http: httpx.Client, mode: str
) -> None:
    """bob's allowed tools/call reaches the upstream and succeeds without any ext_proc stream;
    his denied call is answered -32602 with its id and never forwarded; his tools/list opens
    exactly one stream and is filtered."""
    stack = stack_factory(policy=ls.policy, json_response=(mode == "json"), config_extra=LIST_FILTER_METADATA)
    bob = _raw_session(http, stack, "bob")
    before = ls.ext_proc_counters(stack.envoy)
    assert before, "the list filter's ext_proc stats are missing"

    call = jsonrpc("tools/call", {"name": "get_time", "arguments": {"timezone": "Europe/Oslo"}}, id="call-1")
    called = _answer(post_jsonrpc(http, stack.mcp_url, call, bob))
    assert called["id"] == "call-1" and "error" not in called, called
    assert called["result"]["content"][0]["text"] == "2026-01-01T12:00:00 Europe/Oslo", called
    assert stack.upstream.tool_calls() == ["get_time"]
    assert ls.ext_proc_counters(stack.envoy) == before, "an allowed tools/call reached ext_proc"

    forwarded = len(stack.upstream.records())
    deny = jsonrpc("tools/call", {"name": "delete_file", "arguments": {"path": "/x"}}, id="deny-2")
    denied = post_jsonrpc(http, stack.mcp_url, deny, bob)
    assert denied.status_code == 200 and denied.headers["content-type"].startswith("application/json"), denied.text
    body = denied.json()
    assert body["id"] == "deny-2" and body["error"]["code"] == ERR_INVALID_PARAMS, body
    assert "denied by policy" in body["error"]["message"], body
    assert len(stack.upstream.records()) == forwarded, "a denied call reached the upstream"
    assert stack.upstream.tool_calls() == ["get_time"]
    assert ls.ext_proc_counters(stack.envoy) == before, "a denial reached ext_proc"

    listed = _answer(post_jsonrpc(http, stack.mcp_url, jsonrpc("tools/list", {}, id=3), bob))
    assert listed["id"] == 3 and _tool_names(listed) == ls.visible_in_order("bob"), listed
    after_list = ls.ext_proc_counters(stack.envoy)
    assert after_list["streams_started"] - before["streams_started"] == 1
    assert after_list["streams_failed"] == before["streams_failed"] == 0


@pytest.mark.parametrize("envoy_metadata", ["all", "list_filter"])
def test_envoy_access_log_shows_decision_metadata_only_where_envoy_metadata_keeps_it(
    stack_factory: Any, http: httpx.Client, tmp_path: Path, envoy_metadata: str
) -> None:
    """One raw session of bob's. With `all` every access-log line names the decision; with
    `list_filter` the allowed initialize, tools/call and DELETE lines show `-` for every
    decision field, the denial and the tools/list still show them. The audit log records every
    decision in both modes, under the same x-request-id."""
    audit_path = tmp_path / "audit.jsonl"
    stack = stack_factory(
        policy=ls.policy,
        json_response=True,
        config_extra={"audit": {"envoy_metadata": envoy_metadata, "output": str(audit_path)}},
    )
    rid = {label: f"e2e-meta-{label}-{uuid.uuid4()}" for label in ("initialize", "call", "denied", "list", "delete")}
    bob = _raw_session(http, stack, "bob", request_id=rid["initialize"])

    def post(label: str, message: dict[str, Any]) -> dict[str, Any]:
        resp = post_jsonrpc(http, stack.mcp_url, message, {**bob, "x-request-id": rid[label]})
        assert resp.status_code == 200, resp.text
        return resp.json()

    called = post("call", jsonrpc("tools/call", {"name": "get_time", "arguments": {}}, id=2))
    assert called["result"]["content"][0]["text"] == "2026-01-01T12:00:00 UTC", called
    denied = post("denied", jsonrpc("tools/call", {"name": "delete_file", "arguments": {}}, id=3))
    assert denied["id"] == 3 and denied["error"]["code"] == ERR_INVALID_PARAMS, denied
    assert _tool_names(post("list", jsonrpc("tools/list", {}, id=4))) == ls.visible_in_order("bob")
    ended = http.delete(stack.mcp_url, headers={**bob, "x-request-id": rid["delete"]})
    assert ended.status_code == 200, ended.text

    def bobs(decision: str, reason: str, mcp_method: str, tool: str) -> dict[str, str]:
        return {"decision": decision, "reason": reason, "user": "bob", "app": "demo"} | {
            "mcp_method": mcp_method,
            "tool": tool,
        }

    full = {
        "initialize": bobs("allow", "not_governed", "initialize", "-"),
        "call": bobs("allow", "allowed_by_role", "tools/call", "get_time"),
        "denied": bobs("deny", "not_allowed_by_any_role", "tools/call", "delete_file"),
        "list": bobs("allow", "not_governed", "tools/list", "-"),
        "delete": bobs("allow", "session_end", "-", "-"),
    }
    want = dict(full)
    if envoy_metadata == "list_filter":
        want.update(initialize=NO_METADATA, call=NO_METADATA, delete=NO_METADATA)
    logged = _access_log(stack.envoy, list(rid.values()))
    assert {label: logged[r] for label, r in rid.items()} == want

    # The audit log has every decision either way, with the access log's request id.
    harness.wait_until(
        lambda: {e.get("request_id") for e in read_json_lines(audit_path)} >= set(rid.values()),
        timeout=15,
        what=f"waiting for the audit events in {audit_path}",
        procs=[stack.warden.proc],
    )
    events = {e.get("request_id"): e for e in read_json_lines(audit_path)}
    for label, r in rid.items():
        event = events[r]
        assert (event["decision"], event["reason"], event.get("user")) == (
            full[label]["decision"],
            full[label]["reason"],
            "bob",
        ), (label, event)


def test_with_list_filter_metadata_search_batches_and_get_streams_are_still_filtered(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    """The other checks the list filter reads keep their metadata: AgentCore's search result,
    a 2025-03-26 batch holding a tools/list and a GET stream replaying a list answer are each
    filtered for bob through one ext_proc stream; his allowed call of an ordinary tool opens
    none."""
    stack = scripted(config_extra=LIST_FILTER_METADATA)
    counters = [ls.ext_proc_counters(stack.envoy)]

    def streams_opened() -> int:
        counters.append(ls.ext_proc_counters(stack.envoy))
        return counters[-1]["streams_started"] - counters[-2]["streams_started"]

    plain_call = jsonrpc("tools/call", {"name": "get_time"}, id="t-1")
    plain = _answer(post_jsonrpc(http, stack.mcp_url, plain_call, ls.headers("bob")))
    assert plain == {"jsonrpc": "2.0", "id": "t-1", "result": {}}
    assert streams_opened() == 0

    search = jsonrpc("tools/call", {"name": ls.SEARCH_TOOL, "arguments": {"query": "weather"}}, id="s-1")
    result = _answer(post_jsonrpc(http, stack.mcp_url, search, ls.headers("bob")))["result"]
    assert [t["name"] for t in result["structuredContent"]["tools"]] == ls.visible_in_order("bob")
    assert [t["name"] for t in json.loads(result["content"][0]["text"])["tools"]] == ls.visible_in_order("bob")
    assert streams_opened() == 1

    batch = [jsonrpc("tools/list", {}, id=1), jsonrpc("ping", {}, id=2)]
    resp = post_jsonrpc(http, stack.mcp_url, batch, ls.headers("bob", "json", version="2025-03-26"))
    assert resp.status_code == 200, resp.text
    answers = {a["id"]: a for a in resp.json()}
    assert _tool_names(answers[1]) == ls.visible_in_order("bob") and answers[2]["result"] == {}, answers
    assert streams_opened() == 1

    replayed = http.get(stack.mcp_url, headers=_stream_headers("bob", {"last-event-id": "ev-41"}))
    assert replayed.status_code == 200 and replayed.headers["content-type"] == "text/event-stream", replayed.text
    on_stream = [json.loads(e.data) for e in ls.parse_sse(replayed.text) if e.data]
    assert [_tool_names(m) for m in on_stream if "result" in m] == [ls.visible_in_order("bob")], replayed.text
    assert streams_opened() == 1
    assert counters[-1]["streams_failed"] == counters[0]["streams_failed"] == 0


# ---------------------------------------------------------------------------------------
# Issue 26: answers the filter cannot read as its clients read them, and answers to another id
# ---------------------------------------------------------------------------------------

# Encodings the Python SDK client decodes (by the declared charset, or by every
# content-encoding line) and the list filter does not read: refused, POST or GET.
REFUSED_ENCODINGS = ["utf-16le", "utf-16be", "utf-16", "utf-7", "iso-8859-1", "utf8", "gzip-split"]


async def _sdk_list(url: str, headers: dict[str, str]) -> tuple[list[str] | None, MCPError | None]:
    """The SDK client's tools/list in a fresh session: the names, or the error it got."""
    async with mcp_session(url, headers, timeout=15) as session:
        try:
            return [t.name for t in (await session.list_tools()).tools], None
        except MCPError as exc:
            return None, exc


@pytest.mark.parametrize("where", ["post", "get"])
def test_a_list_in_an_encoding_the_filter_does_not_read_never_reaches_the_sdk_client(
    scripted: Callable[..., harness.Stack], where: str
) -> None:
    """The upstream answers bob's tools/list with the full list in each encoding: on the
    POST's event stream, or on the SDK's GET stream (with the POST's id). Straight from the
    upstream the SDK client reads every tool (it decodes by the charset, or gunzips every
    content-encoding line), so each case is a real attack; through Envoy it gets an error
    instead — the filter's -32603 on the POST; on GET the stream is refused, and the POST ends
    without an answer — and never a tool bob may not call."""
    stack = scripted()
    for encoding in REFUSED_ENCODINGS:
        scenario = ls.headers("bob", f"enc:{where}:{encoding}")
        direct, _ = run_async(_sdk_list(stack.upstream.url, scenario))
        assert direct == ls.ALL_TOOLS, f"{encoding}: the SDK client does not read this attack: {direct}"

        gets_before = sum(1 for r in stack.upstream.records() if r["method"] == "GET")
        names, error = run_async(_sdk_list(stack.mcp_url, scenario))
        assert names is None and error is not None, f"{where} {encoding}: bob's SDK client listed {names}"
        if where == "post":
            assert (error.code, error.message) == (ls.ERR_INTERNAL, ls.UNFILTERABLE), (encoding, error)
        else:
            assert sum(1 for r in stack.upstream.records() if r["method"] == "GET") > gets_before, encoding
    assert ls.ext_proc_counters(stack.envoy)["streams_failed"] == 0


def test_a_get_stream_in_an_encoding_the_filter_does_not_read_is_refused_at_its_headers(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    """What the SDK's GET above got, raw: the filter's JSON-RPC error (id null: a GET answers
    no request) instead of the stream, at once."""
    stack = scripted()
    for encoding in ("utf-16le", "utf-7", "gzip-split"):
        resp = http.get(stack.mcp_url, headers=_stream_headers("bob", {"x-list-scenario": f"enc:get:{encoding}"}))
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json", resp.text
        assert resp.json() == {"jsonrpc": "2.0", "id": None, "error": {"code": ls.ERR_INTERNAL, "message": ls.UNFILTERABLE}}
    assert _refusals(stack, "stream", "content_type_parameter", "refused") == 2
    assert _refusals(stack, "stream", "compressed", "refused") == 1


@pytest.mark.parametrize("encoding", ["utf-7", "iso-8859-1", "utf-16le", "utf-8-bom"])
def test_a_json_list_with_another_charset_or_a_byte_order_mark_is_refused(
    scripted: Callable[..., harness.Stack], http: httpx.Client, encoding: str
) -> None:
    """A JSON answer that declares another charset (a reader decoding by it, UTF-7 say, sees
    other JSON than the filter would), or opens with a UTF-8 BOM (JavaScript's response.json()
    skips it; the filter does not read it): the SDK client gets -32603, raw clients the error
    with the request's id."""
    stack = scripted()
    names, error = run_async(_sdk_list(stack.mcp_url, ls.headers("bob", f"enc:json:{encoding}")))
    assert names is None and error is not None and error.code == ls.ERR_INTERNAL, (names, error)
    resp = _list_page(http, stack, "bob", f"enc:json:{encoding}", None, id="j-1")
    assert resp.json() == {"jsonrpc": "2.0", "id": "j-1", "error": {"code": ls.ERR_INTERNAL, "message": ls.UNFILTERABLE}}


def test_with_pass_a_list_in_another_charset_goes_through_as_documented(
    scripted: Callable[..., harness.Stack], http: httpx.Client
) -> None:
    """`on_unparseable: pass` lets such an answer through unfiltered, bytes as written."""
    stack = scripted(config_extra={"list_filter": {"on_unparseable": "pass"}})
    resp = _list_page(http, stack, "bob", "enc:post:utf-16le", None, id=5)
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-16le"
    assert resp.content == lu.encoded_event("utf-16le", lu.full_list_answer(5))
    assert _refusals(stack, "tools/list", "content_type_parameter", "passed") == 1
    assert _refusals(stack, "tools/list", "content_type_parameter", "refused") is None


@pytest.mark.parametrize("where", ["post", "get"])
def test_an_event_stream_opening_with_a_byte_order_mark_is_filtered(
    scripted: Callable[..., harness.Stack], where: str
) -> None:
    """A UTF-8 BOM in front of the stream is skipped as clients skip it (WHATWG; httpx keeps it
    in the first line's field name, here `event`, which it then ignores): the events behind it
    are filtered, and the SDK client lists bob's tools — all twelve straight from the upstream."""
    stack = scripted()
    scenario = ls.headers("bob", f"enc:{where}:utf-8-bom")
    assert run_async(_sdk_list(stack.upstream.url, scenario)) == (ls.ALL_TOOLS, None)
    assert run_async(_sdk_list(stack.mcp_url, scenario)) == (ls.visible_in_order("bob"), None)


@pytest.mark.parametrize("scenario", ["other-id", "sse-other-id"])
def test_a_list_answer_with_another_id_is_refused(
    scripted: Callable[..., harness.Stack], http: httpx.Client, scenario: str
) -> None:
    """Issue 26 (2): on a tools/list POST, an answer carrying another id — here a prompts
    list, which a client would route to a pending prompts/list of that id, and which the
    filter, awaiting tools, would not look at — becomes the -32603 error with the request's id."""
    stack = scripted()
    resp = _list_page(http, stack, "dana", scenario, None, id="l-1")
    assert resp.status_code == 200, resp.text
    answer = _answer(resp)
    assert answer == {"jsonrpc": "2.0", "id": "l-1", "error": {"code": ls.ERR_INTERNAL, "message": ls.UNFILTERABLE}}
    assert "code_review" not in resp.text


def test_a_list_smuggled_into_a_call_answer_is_shown_but_its_tools_stay_denied(
    scripted: Callable[..., harness.Stack],
) -> None:
    """The residual risk docs/configuration.md states ("What the filter cannot hide"), pinned:
    while bob's tools/list is pending, the upstream answers his concurrent, allowed tools/call
    with the list's id and the full list. The filter does not read tools/call answers, and the
    SDK client routes the response by id: list_tools() returns every tool. What that cannot do:
    bob's call of a tool from it is denied (-32602) and never reaches the upstream."""
    stack = scripted()

    async def scenario() -> tuple[list[str], MCPError | None]:
        async with mcp_session(stack.mcp_url, ls.headers("bob", "smuggle"), timeout=15) as session:
            async with anyio.create_task_group() as tasks:

                async def call() -> None:
                    with contextlib.suppress(MCPError):
                        await session.call_tool("get_time", {})

                tasks.start_soon(call)
                listed = [t.name for t in (await session.list_tools()).tools]
                tasks.cancel_scope.cancel()
            try:
                await session.call_tool("delete_file", {"path": "/x"})
            except MCPError as exc:
                return listed, exc
            return listed, None

    listed, denied = run_async(scenario())
    assert listed == ls.ALL_TOOLS, listed
    assert denied is not None and denied.code == ERR_INVALID_PARAMS and "denied by policy" in denied.message, denied
    assert stack.upstream.tool_calls() == ["get_time"]
