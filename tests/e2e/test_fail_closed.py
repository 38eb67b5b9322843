"""Issue 3 end to end, as raw HTTP through real Envoy -> mcp-warden (ext_authz) -> the Python
MCP upstream: fail-closed parsing (point 5), protocol versions (point 4), the denial shape
(point 3) and prompts/resources governance (point 2).

Every refusal is checked for its HTTP status, `Content-Type: application/json`, a JSON-RPC
error with the contract's code, its audit event, and — through the upstream's own record of
every request it received — that nothing was forwarded. Every rule has a positive control
that does reach the upstream, so a refusal is never explained by a broken stack.

Codes: -32700 body not UTF-8 / not JSON; -32600 any other malformed request (HTTP 400, 413
for size, 405 for an HTTP method); -32020 a 2026-07-28 header/body mismatch; -32602 a
policy denial (HTTP 200 by default, `inspection.denied_status: 403` to change it).

Most cases share one stack per module (see inspect_support.py): each is one request, judged
by what the upstream received *during* it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest
from harness import (
    ALICE_KEY,
    BOB_KEY,
    CAROL_KEY,
    ERR_APP_DENIED,
    ERR_HEADER_MISMATCH,
    ERR_INVALID_PARAMS,
    ERR_INVALID_REQUEST,
    ERR_PARSE,
    ERR_UNAUTHENTICATED,
    jsonrpc,
)
from inspect_support import (
    ANY_ID,
    DAVE_KEY,
    ENVOY_MAX_REQUEST_BYTES,
    MAX_BODY_BYTES,
    MAX_DEPTH,
    SharedStack,
    UpstreamWatch,
    assert_error_object,
    assert_forwarded_with_id_token,
    assert_jsonrpc_error,
    assert_same_id,
    checked,
    audit_event_for,
    base64_sentinel,
    body_bytes,
    call,
    headers_for,
    iter_depth,
    media_type,
    new_request_id,
    padded_call,
    raw,
    module_stack,
    stateless_meta,
)

# Names that must never appear in an answer a client sees (default_policy's roles and rules).
INTERNAL_NAMES = ["demo-full", "demo-readonly", "other-only", "demo-curated", "^get_", "get_.*", "file:///docs/*"]


@pytest.fixture(scope="module")
def shared_stack(
    tmp_path_factory: pytest.TempPathFactory, envoy_bin: Path, warden_bin: Path
) -> Iterator[SharedStack]:
    yield from module_stack(tmp_path_factory, "fail-closed", envoy_bin, warden_bin)


@pytest.fixture
def fc(request: pytest.FixtureRequest, shared_stack: SharedStack) -> SharedStack:
    """The shared stack, with its process logs attached to this test's failure report."""
    return checked(request, shared_stack)


def send(
    fc: SharedStack,
    http: httpx.Client,
    message: Any,
    *,
    key: str | None = ALICE_KEY,
    content_type: str | None = "application/json",
    extra: dict[str, str] | None = None,
    method: str = "POST",
    tag: str = "req",
) -> tuple[httpx.Response, str]:
    """One raw request to the demo app with a fresh x-request-id (returned, for the audit)."""
    request_id = new_request_id(tag)
    headers = headers_for(key, content_type=content_type, extra={"x-request-id": request_id, **(extra or {})})
    return raw(http, fc.url, message, method=method, headers=headers), request_id


def assert_denied_audit(fc: SharedStack, request_id: str, reason: str | None) -> dict[str, Any]:
    event = audit_event_for(fc, request_id)
    assert event.get("event") == "request.denied" and event.get("decision") == "deny", event
    if reason is not None:
        assert event.get("reason") == reason, f"expected audit reason {reason!r}: {event}"
    return event


# ---------------------------------------------------------------------------------------
# Point 5: fail-closed parsing — the table
# ---------------------------------------------------------------------------------------

GOOD = call("echo", {"message": "hi"}, id=11)
GOOD_BYTES = body_bytes(GOOD)


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes | None
    status: int | tuple[int, ...]  # a tuple: any of these
    code: int
    # The documented audit reason (docs/configuration.md), None where the docs name none.
    reason: str | None
    content_type: str | None = "application/json"
    extra: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    # The id the error must carry: a value (echoed exactly), None (must be null: the body
    # had no parseable id), or ANY_ID (no unambiguous id, or the body is not read as JSON).
    id: Any = ANY_ID


def _b(text: str) -> bytes:
    return text.encode()


CASES = [
    # --- Content-Encoding: any non-identity encoding (the check would see compressed bytes)
    Case("gzip-real-bytes", gzip.compress(GOOD_BYTES), 400, ERR_INVALID_REQUEST, "content_encoding",
         extra={"content-encoding": "gzip"}),
    Case("gzip-header-on-plain-json", GOOD_BYTES, 400, ERR_INVALID_REQUEST, "content_encoding",
         extra={"content-encoding": "gzip"}),
    Case("deflate", zlib.compress(GOOD_BYTES), 400, ERR_INVALID_REQUEST, "content_encoding",
         extra={"content-encoding": "deflate"}),
    Case("identity-then-gzip", gzip.compress(GOOD_BYTES), 400, ERR_INVALID_REQUEST, "content_encoding",
         extra={"content-encoding": "identity, gzip"}),
    # --- Content-Type: must be application/json (case-insensitive, parameters allowed)
    Case("text-plain", GOOD_BYTES, 400, ERR_INVALID_REQUEST, "content_type", content_type="text/plain"),
    Case("no-content-type", GOOD_BYTES, 400, ERR_INVALID_REQUEST, "content_type", content_type=None),
    Case("form-urlencoded", GOOD_BYTES, 400, ERR_INVALID_REQUEST, "content_type",
         content_type="application/x-www-form-urlencoded"),
    Case("json-prefix-jsonp", GOOD_BYTES, 400, ERR_INVALID_REQUEST, "content_type", content_type="application/jsonp"),
    # --- a client-sent partial-body marker: never trusted, a denial either way
    Case("client-partial-body-marker", GOOD_BYTES, 413, ERR_INVALID_REQUEST, "body_too_large",
         extra={"x-envoy-auth-partial-body": "true"}),
    # (with no body either refusal is right: the marker's 413 or the empty body's 400)
    Case("client-partial-body-marker-empty-body", b"", (400, 413), ERR_INVALID_REQUEST, None,
         extra={"x-envoy-auth-partial-body": "true"}),
    # --- no body
    Case("post-without-body", b"", 400, ERR_INVALID_REQUEST, "empty_body", id=None),
    # --- not UTF-8
    Case("invalid-utf8-byte", b'{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"echo",'
         b'"arguments":{"message":"\xff\xfe"}}}', 400, ERR_PARSE, "not_utf8", id=None),
    Case("overlong-utf8", b'{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"ech\xc1\xaf"}}',
         400, ERR_PARSE, "not_utf8", id=None),
    Case("utf8-encoded-surrogate", b'{"jsonrpc":"2.0","id":23,"method":"tools/call","params":{"name":"\xed\xa0\x80"}}',
         400, ERR_PARSE, "not_utf8", id=None),
    Case("latin1-body", '{"jsonrpc":"2.0","id":24,"method":"tools/call","params":{"name":"échó"}}'.encode("latin-1"),
         400, ERR_PARSE, "not_utf8", id=None),
    # --- not JSON
    Case("truncated-json", GOOD_BYTES[:-3], 400, ERR_PARSE, "invalid_json", id=None),
    Case("trailing-second-message", GOOD_BYTES + body_bytes(call("delete_file", id=12)), 400, ERR_PARSE,
         "invalid_json", id=None),
    Case("trailing-comma", _b('{"jsonrpc":"2.0","id":13,"method":"ping",}'), 400, ERR_PARSE, "invalid_json", id=None),
    Case("not-json-at-all", b"method=tools/call&name=delete_file", 400, ERR_PARSE, "invalid_json", id=None),
    # an id readers disagree on (Python inf, JavaScript Infinity, Go and serde_json an error),
    # or one with an escape no reader can decode: refused, and not echoed
    Case("id-out-of-range", _b('{"jsonrpc":"2.0","id":1e999,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"}}}'), 400, ERR_PARSE, "invalid_json", id=None),
    Case("id-lone-surrogate", _b('{"jsonrpc":"2.0","id":"\\ud800","method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"}}}'), 400, ERR_PARSE, "invalid_json", id=None),
    # --- JSON, but not a JSON-RPC message
    Case("json-string", _b('"tools/call"'), 400, ERR_INVALID_REQUEST, None, id=None),
    Case("empty-batch", b"[]", 400, ERR_INVALID_REQUEST, None, id=None),
    # --- duplicate keys, at every level
    Case("duplicate-method", _b('{"jsonrpc":"2.0","id":31,"method":"tools/list","method":"tools/call",'
         '"params":{"name":"echo","arguments":{"message":"x"}}}'), 400, ERR_INVALID_REQUEST, "duplicate_key", id=31),
    Case("duplicate-id", _b('{"jsonrpc":"2.0","id":32,"id":"other","method":"ping"}'), 400, ERR_INVALID_REQUEST,
         "duplicate_key"),
    Case("duplicate-params", _b('{"jsonrpc":"2.0","id":33,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"}},"params":{"name":"delete_file"}}'), 400, ERR_INVALID_REQUEST, "duplicate_key",
         id=33),
    Case("duplicate-name-in-params", _b('{"jsonrpc":"2.0","id":34,"method":"tools/call","params":{"name":"echo",'
         '"name":"delete_file","arguments":{"message":"x"}}}'), 400, ERR_INVALID_REQUEST, "duplicate_key", id=34),
    Case("duplicate-key-in-arguments", _b('{"jsonrpc":"2.0","id":35,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"a","message":"b"}}}'), 400, ERR_INVALID_REQUEST, "duplicate_key", id=35),
    Case("duplicate-key-nested-in-arguments", _b('{"jsonrpc":"2.0","id":36,"method":"tools/call","params":{'
         '"name":"echo","arguments":{"message":"a","opts":[{"k":1,"k":2}]}}}'), 400, ERR_INVALID_REQUEST,
         "duplicate_key", id=36),
    # --- case variants of envelope and params keys (Go's encoding/json folds them)
    Case("Method-beside-method", _b('{"jsonrpc":"2.0","id":41,"method":"tools/list","Method":"tools/call",'
         '"params":{"name":"delete_file","arguments":{}}}'), 400, ERR_INVALID_REQUEST, "case_variant_key", id=41),
    Case("Method-alone", _b('{"jsonrpc":"2.0","id":42,"Method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"}}}'), 400, ERR_INVALID_REQUEST, "case_variant_key", id=42),
    Case("Params", _b('{"jsonrpc":"2.0","id":43,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"}},"Params":{"name":"delete_file"}}'), 400, ERR_INVALID_REQUEST,
         "case_variant_key", id=43),
    Case("Name", _b('{"jsonrpc":"2.0","id":44,"method":"tools/call","params":{"name":"echo","Name":"delete_file",'
         '"arguments":{"message":"x"}}}'), 400, ERR_INVALID_REQUEST, "case_variant_key", id=44),
    Case("ID", _b('{"jsonrpc":"2.0","ID":45,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"}}}'), 400, ERR_INVALID_REQUEST, "case_variant_key"),
    Case("ID-beside-id", _b('{"jsonrpc":"2.0","id":46,"ID":"x","method":"ping"}'), 400, ERR_INVALID_REQUEST,
         "case_variant_key"),
    Case("JSONRPC", _b('{"jsonrpc":"2.0","JSONRPC":"1.0","id":47,"method":"ping"}'), 400, ERR_INVALID_REQUEST,
         "case_variant_key", id=47),
    Case("Arguments", _b('{"jsonrpc":"2.0","id":48,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"},"Arguments":{"message":"y"}}}'), 400, ERR_INVALID_REQUEST, "case_variant_key",
         id=48),
    Case("kelvin-sign-task-escaped", _b('{"jsonrpc":"2.0","id":49,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"},"tas\\u212a":{"ttl":1000}}}'), 400, ERR_INVALID_REQUEST, "case_variant_key",
         id=49),
    Case("long-s-params-escaped", _b('{"jsonrpc":"2.0","id":50,"method":"tools/call","param\\u017f":'
         '{"name":"delete_file"},"params":{"name":"echo","arguments":{"message":"x"}}}'), 400, ERR_INVALID_REQUEST,
         "case_variant_key", id=50),
    Case("long-s-params-raw-utf8", '{"jsonrpc":"2.0","id":51,"method":"tools/call","param\u017f":{"name":"delete_file"},'
         '"params":{"name":"echo","arguments":{"message":"x"}}}'.encode(), 400, ERR_INVALID_REQUEST,
         "case_variant_key", id=51),
    # --- jsonrpc missing or not "2.0"
    Case("jsonrpc-missing", _b('{"id":61,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}'),
         400, ERR_INVALID_REQUEST, None, id=61),
    Case("jsonrpc-1.0", _b('{"jsonrpc":"1.0","id":62,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"}}}'), 400, ERR_INVALID_REQUEST, None, id=62),
    Case("jsonrpc-number", _b('{"jsonrpc":2.0,"id":63,"method":"tools/call","params":{"name":"echo",'
         '"arguments":{"message":"x"}}}'), 400, ERR_INVALID_REQUEST, None, id=63),
    # --- nesting deeper than inspection.max_depth (8 here; the envelope is level 1,
    #     params 2, arguments 3, so 6 nested arrays inside arguments make 9)
    Case("one-level-too-deep", body_bytes(call("echo", {"message": "x", "n": iter_depth(MAX_DEPTH - 2)}, id=71)),
         400, ERR_INVALID_REQUEST, "too_deep", id=71),
    Case("far-too-deep", _b('{"jsonrpc":"2.0","id":72,"method":"tools/call","params":{"name":"echo","arguments":'
         '{"message":"x","n":' + "[" * 1900 + "]" * 1900 + "}}}"), 400, ERR_INVALID_REQUEST, "too_deep", id=72),
    # --- larger than inspection.max_body_bytes (4096 here), though Envoy sent it whole
    Case("one-byte-over-the-limit", padded_call(MAX_BODY_BYTES + 1, id=81), 413, ERR_INVALID_REQUEST,
         "body_too_large"),
    Case("5000-bytes", padded_call(5000, id=82), 413, ERR_INVALID_REQUEST, "body_too_large"),
    # --- HTTP methods other than POST, GET, DELETE
    Case("PUT", GOOD_BYTES, 405, ERR_INVALID_REQUEST, "method_not_allowed", method="PUT"),
    Case("PATCH", GOOD_BYTES, 405, ERR_INVALID_REQUEST, "method_not_allowed", method="PATCH"),
    Case("OPTIONS", None, 405, ERR_INVALID_REQUEST, "method_not_allowed", method="OPTIONS"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_request_is_refused_with_a_jsonrpc_error_audited_and_never_forwarded(
    fc: SharedStack, http: httpx.Client, case: Case
) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(
        fc, http, case.body, content_type=case.content_type, extra=case.extra, method=case.method, tag=case.name
    )
    watch.assert_nothing(case.name)
    body = assert_jsonrpc_error(resp, status=case.status, code=case.code)
    if case.id is None:
        assert body["id"] is None, f"no parseable id in the body, yet the error carries {body['id']!r}"
    assert_denied_audit(fc, request_id, case.reason)


ID_CASES = [c for c in CASES if c.id is not ANY_ID and c.id is not None]


@pytest.mark.parametrize("case", ID_CASES, ids=[c.name for c in ID_CASES])
def test_malformed_request_error_echoes_the_id_the_body_carried(fc: SharedStack, http: httpx.Client, case: Case) -> None:
    """The body is UTF-8 JSON whose one `id` comes first and is unambiguous: a client can
    only match the error to its request if the id is echoed (JSON-RPC 2.0 §5)."""
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, case.body, content_type=case.content_type, extra=case.extra, method=case.method)
    watch.assert_nothing(case.name)
    body = assert_jsonrpc_error(resp, status=case.status, code=case.code)
    assert_same_id(body["id"], case.id)


def test_head_is_refused_with_405_and_never_forwarded(fc: SharedStack, http: httpx.Client) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(fc, http, None, method="HEAD")
    assert resp.status_code == 405, resp.headers
    watch.assert_nothing("HEAD")
    assert_denied_audit(fc, request_id, "method_not_allowed")


@pytest.mark.parametrize(
    ("what", "extra", "status", "code"),
    [
        # Envoy sends every header line (encode_raw_headers); mcp-warden joins repeats with ","
        # as Envoy's map form would: "2025-11-25,2025-11-25" is no version, "k,k" no key.
        ("repeated_version", [("mcp-protocol-version", "2025-11-25")] * 2, 400, ERR_INVALID_REQUEST),
        ("repeated_api_key", [("x-api-key", ALICE_KEY)] * 2, 401, ERR_UNAUTHENTICATED),
    ],
)
def test_a_repeated_header_is_read_as_one_joined_value(
    fc: SharedStack, http: httpx.Client, what: str, extra: list[tuple[str, str]], status: int, code: int
) -> None:
    watch = UpstreamWatch(fc.upstream)
    request_id = new_request_id(what)
    key = None if what == "repeated_api_key" else ALICE_KEY
    headers = list(headers_for(key, extra={"x-request-id": request_id}).items()) + extra
    resp = raw(http, fc.url, GOOD, headers=headers)
    watch.assert_nothing(what)
    assert_jsonrpc_error(resp, status=status, code=code)
    event = audit_event_for(fc, request_id)
    assert event.get("decision") == "deny" and event.get("event") in ("request.denied", "authentication.failed"), event


def test_a_header_value_that_is_not_utf8_is_refused_not_guessed_at(fc: SharedStack, http: httpx.Client) -> None:
    watch = UpstreamWatch(fc.upstream)
    before = sum(e.get("reason") == "invalid_check_request" for e in fc.audit_events())
    headers = [(k.encode(), v.encode()) for k, v in headers_for(ALICE_KEY).items()] + [(b"x-note", b"caf\xe9")]
    resp = raw(http, fc.url, GOOD, headers=headers)
    watch.assert_nothing("latin-1 header value")
    assert_jsonrpc_error(resp, status=400, code=ERR_INVALID_REQUEST)
    harness.wait_until(
        lambda: sum(e.get("reason") == "invalid_check_request" for e in fc.audit_events()) > before,
        timeout=10.0,
        what="the audit event of the refused check",
        procs=[fc.stack.warden.proc],
    )


# ---------------------------------------------------------------------------------------
# Point 5: positive controls — the same stack forwards the well-formed neighbours
# ---------------------------------------------------------------------------------------


def _assert_forwarded(fc: SharedStack, watch: UpstreamWatch, what: str, *, key: str = ALICE_KEY,
                      username: str = "alice") -> dict[str, Any]:
    record = watch.one(what)
    assert_forwarded_with_id_token(record, client_key=key, username=username, audience=fc.stack.app_uri)
    return record


def test_a_well_formed_tools_call_reaches_the_upstream_and_returns_its_result(fc: SharedStack, http: httpx.Client) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, GOOD)
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"]["content"][0]["text"] == "echo: hi", resp.text
    record = _assert_forwarded(fc, watch, "plain tools/call")
    assert json.loads(record["body"]) == GOOD


@pytest.mark.parametrize(
    "content_type", ["Application/JSON; charset=utf-8", "APPLICATION/JSON", "application/json;charset=UTF-8"]
)
def test_json_content_type_is_matched_case_insensitively_with_parameters(
    fc: SharedStack, http: httpx.Client, content_type: str
) -> None:
    """Positive control: reaches the upstream (which may itself be stricter about the
    spelling; what it answers is not mcp-warden's concern)."""
    watch = UpstreamWatch(fc.upstream)
    send(fc, http, GOOD, content_type=content_type)
    record = _assert_forwarded(fc, watch, content_type)
    assert [v for k, v in record["headers"] if k.lower() == "content-type"] == [content_type]


def test_identity_content_encoding_is_accepted(fc: SharedStack, http: httpx.Client) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, GOOD, extra={"content-encoding": "identity"})
    _assert_forwarded(fc, watch, "identity encoding")
    assert resp.status_code == 200, resp.text


def test_nesting_exactly_at_the_limit_is_accepted(fc: SharedStack, http: httpx.Client) -> None:
    message = call("echo", {"message": "x", "n": iter_depth(MAX_DEPTH - 3)}, id=70)
    watch = UpstreamWatch(fc.upstream)
    send(fc, http, message)
    record = _assert_forwarded(fc, watch, "depth == max_depth")
    assert json.loads(record["body"]) == message


def test_a_body_of_exactly_max_body_bytes_is_accepted(fc: SharedStack, http: httpx.Client) -> None:
    body = padded_call(MAX_BODY_BYTES, id=80)
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, body)
    record = _assert_forwarded(fc, watch, "body == max_body_bytes")
    assert record["body"].encode() == body
    assert resp.status_code == 200, resp.text


def test_a_body_over_envoys_own_limit_is_refused_by_envoy_and_never_forwarded(
    fc: SharedStack, http: httpx.Client
) -> None:
    body = padded_call(ENVOY_MAX_REQUEST_BYTES + 64 * 1024, id=90)
    watch = UpstreamWatch(fc.upstream)
    try:
        resp, _ = send(fc, http, body)
    except httpx.TransportError as exc:  # Envoy may answer and close before the upload ends
        watch.assert_nothing("body over Envoy's max_request_bytes")
        pytest.fail(f"Envoy dropped the connection instead of answering 413: {exc!r}")
    watch.assert_nothing("body over Envoy's max_request_bytes")
    assert resp.status_code == 413, f"{resp.status_code}: {resp.text[:300]!r}"


# ---------------------------------------------------------------------------------------
# Point 4: GET (SSE stream) and DELETE (session end) pass; others are 405 (above)
# ---------------------------------------------------------------------------------------


def test_get_stream_and_delete_session_reach_the_upstream_with_an_id_token_not_the_key(
    stack: harness.Stack, http: httpx.Client
) -> None:
    """A real session on the stateful SSE upstream: initialize, open the GET stream, end the
    session with DELETE. Each request reaches the upstream with mcp-warden's JWT."""
    init = raw(http, stack.mcp_url, harness.initialize_request(id=1), headers=headers_for(ALICE_KEY))
    assert init.status_code == 200, init.text
    session = init.headers.get("mcp-session-id")
    assert session, init.headers

    watch = UpstreamWatch(stack.upstream)
    get_headers = {"authorization": f"Bearer {ALICE_KEY}", "accept": "text/event-stream", "mcp-session-id": session,
                   "mcp-protocol-version": "2025-11-25"}
    with http.stream("GET", stack.mcp_url, headers=get_headers) as stream:
        assert stream.status_code == 200, stream.read()
        assert media_type(stream) == "text/event-stream", stream.headers
    (get_record,) = watch.new()
    assert get_record["method"] == "GET"
    assert_forwarded_with_id_token(get_record, client_key=ALICE_KEY, username="alice", audience=stack.app_uri)

    watch = UpstreamWatch(stack.upstream)
    resp = http.delete(stack.mcp_url, headers={"x-api-key": ALICE_KEY, "mcp-session-id": session,
                                               "mcp-protocol-version": "2025-11-25"})
    delete_record = watch.one("DELETE")
    assert delete_record["method"] == "DELETE"
    assert_forwarded_with_id_token(delete_record, client_key=ALICE_KEY, username="alice", audience=stack.app_uri)
    assert resp.status_code == 200, f"the upstream ended the session: {resp.status_code} {resp.text}"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_need_access_to_the_app(fc: SharedStack, http: httpx.Client, method: str) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, None, key=CAROL_KEY, content_type=None, method=method)
    watch.assert_nothing(f"{method} by a user without the app")
    assert_jsonrpc_error(resp, status=403, code=ERR_APP_DENIED, id=None)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_reach_the_stateless_upstream_too(fc: SharedStack, http: httpx.Client, method: str) -> None:
    """Whatever the upstream answers (a stateless server may say 405), it is the one answering."""
    watch = UpstreamWatch(fc.upstream)
    request_id = new_request_id(method)
    headers = {"authorization": f"Bearer {BOB_KEY}", "accept": "text/event-stream", "x-request-id": request_id}
    with http.stream(method, fc.url, headers=headers) as resp:
        status = resp.status_code
    record = _assert_forwarded(fc, watch, method, key=BOB_KEY, username="bob")
    assert record["method"] == method
    assert status != 403, "mcp-warden refused an app-level request of a user who may use the app"


# ---------------------------------------------------------------------------------------
# Point 4: protocol versions — 2025-03-26 batches
# ---------------------------------------------------------------------------------------


def test_an_all_allowed_2025_03_26_batch_is_forwarded_whole(fc: SharedStack, http: httpx.Client) -> None:
    batch = [
        call("get_weather", {"city": "Oslo"}, id=1),
        jsonrpc("notifications/initialized", id=None),  # a notification: no id
        call("get_time", {}, id="b-2"),
        jsonrpc("ping", id=3),
    ]
    watch = UpstreamWatch(fc.upstream)
    send(fc, http, batch, key=BOB_KEY)  # no MCP-Protocol-Version header: 2025-03-26
    record = _assert_forwarded(fc, watch, "allowed batch", key=BOB_KEY, username="bob")
    assert json.loads(record["body"]) == batch


def _batch_errors(resp: httpx.Response, status: int = 200) -> dict[Any, dict[str, Any]]:
    assert resp.status_code == status, f"expected HTTP {status}, got {resp.status_code}: {resp.text[:500]!r}"
    assert media_type(resp) == "application/json", resp.headers
    body = resp.json()
    assert isinstance(body, list), f"a denied batch is answered with a JSON array: {body!r}"
    out: dict[Any, dict[str, Any]] = {}
    for element in body:
        assert isinstance(element, dict) and "error" in element, element
        key = (type(element["id"]).__name__, element["id"])
        assert key not in out, f"two answers for id {element['id']!r}: {body}"
        out[key] = element
    return out


def test_a_batch_with_one_denied_call_forwards_nothing_and_answers_every_request_element(
    fc: SharedStack, http: httpx.Client
) -> None:
    batch = [
        call("get_weather", {"city": "Oslo"}, id=1),
        call("delete_file", {"path": "/etc/passwd"}, id="two"),
        jsonrpc("notifications/initialized", id=None),
        jsonrpc("ping", id=3),
        {"jsonrpc": "2.0", "id": "srv-1", "result": {}},  # a response the client sends back
    ]
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(fc, http, batch, key=BOB_KEY)
    watch.assert_nothing("batch with a denied element")
    errors = _batch_errors(resp)
    assert set(errors) == {("int", 1), ("str", "two"), ("int", 3)}, (
        f"one error per request element with an id (not for notifications or responses): {resp.text}"
    )
    denied = assert_error_object(errors[("str", "two")], code=ERR_INVALID_PARAMS)
    assert "denied by policy" in denied["error"]["message"], denied
    assert_error_object(errors[("int", 1)], code=-32000)
    assert_error_object(errors[("int", 3)], code=-32000)
    for name in INTERNAL_NAMES:
        assert name not in resp.text, f"{name!r} leaked into the answer: {resp.text}"
    assert_denied_audit(fc, request_id, None)


def test_a_batch_hiding_a_denied_call_in_a_notification_forwards_nothing(fc: SharedStack, http: httpx.Client) -> None:
    """A `tools/call` without an id still executes upstream: it is checked like any other."""
    batch = [jsonrpc("ping", id=1), jsonrpc("tools/call", {"name": "delete_file", "arguments": {}}, id=None)]
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, batch, key=BOB_KEY)
    watch.assert_nothing("batch with a denied notification-form tools/call")
    errors = _batch_errors(resp)
    assert set(errors) == {("int", 1)}, resp.text
    assert_error_object(errors[("int", 1)], code=-32000)


def test_a_batch_with_a_nameless_tools_call_forwards_nothing(fc: SharedStack, http: httpx.Client) -> None:
    batch = [call("get_weather", {"city": "Oslo"}, id=1), jsonrpc("tools/call", {"arguments": {}}, id=2)]
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, batch, key=BOB_KEY)
    watch.assert_nothing("batch with a nameless tools/call")
    errors = _batch_errors(resp)
    assert set(errors) == {("int", 1), ("int", 2)}, resp.text
    assert_error_object(errors[("int", 2)], code=ERR_INVALID_REQUEST)
    assert_error_object(errors[("int", 1)], code=-32000)


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", "2026-07-28"])
def test_any_array_is_refused_from_2025_06_18_on(fc: SharedStack, http: httpx.Client, version: str) -> None:
    batch = [jsonrpc("ping", id=1)]
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(fc, http, batch, extra={"mcp-protocol-version": version, "mcp-method": "ping"})
    watch.assert_nothing(f"array under {version}")
    assert_jsonrpc_error(resp, status=400, code=ERR_INVALID_REQUEST)
    assert_denied_audit(fc, request_id, "batch_not_allowed")


# 33 bytes each: 101 of them fit the stack's 4 KiB body limit.
_NOTIFY_PING = b'{"jsonrpc":"2.0","method":"ping"}'


@pytest.mark.parametrize(
    ("count", "tail", "reason", "code"),
    [
        (101, b"]", "batch_too_large", ERR_INVALID_REQUEST),
        # Read only up to where message 101 starts: the broken rest is never looked at.
        (101, b",{]", "batch_too_large", ERR_INVALID_REQUEST),
        (100, b",{]", "batch_too_large", ERR_INVALID_REQUEST),
        (100, b"}]", "invalid_json", ERR_PARSE),
    ],
)
def test_a_batch_over_max_batch_is_refused_where_the_extra_message_starts(
    fc: SharedStack, http: httpx.Client, count: int, tail: bytes, reason: str, code: int
) -> None:
    body = b"[" + b",".join([_NOTIFY_PING] * count) + tail
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(fc, http, body)
    watch.assert_nothing(f"{count} messages then {tail!r}")
    assert_jsonrpc_error(resp, status=400, code=code)
    assert resp.json()["id"] is None, resp.text
    assert_denied_audit(fc, request_id, reason)


@pytest.mark.parametrize("version", ["2099-01-01", "latest", "2025-3-26"])
def test_an_unknown_protocol_version_is_refused(fc: SharedStack, http: httpx.Client, version: str) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(fc, http, GOOD, extra={"mcp-protocol-version": version})
    watch.assert_nothing(f"MCP-Protocol-Version {version}")
    assert_jsonrpc_error(resp, status=400, code=ERR_INVALID_REQUEST)
    assert_denied_audit(fc, request_id, None)


# ---------------------------------------------------------------------------------------
# Point 4: 2026-07-28 mirrored headers
# ---------------------------------------------------------------------------------------

V2026 = "2026-07-28"


def _v2026_call(name: str, id: Any, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return call(name, arguments or {}, id=id, _meta=stateless_meta())


def _v2026_headers(method: str | None, name: str | None) -> dict[str, str]:
    h = {"mcp-protocol-version": V2026}
    if method is not None:
        h["mcp-method"] = method
    if name is not None:
        h["mcp-name"] = name
    return h


def test_2026_07_28_call_with_matching_mirrors_is_forwarded(fc: SharedStack, http: httpx.Client) -> None:
    message = _v2026_call("echo", 101, {"message": "stateless"})
    watch = UpstreamWatch(fc.upstream)
    send(fc, http, message, extra=_v2026_headers("tools/call", "echo"))
    record = _assert_forwarded(fc, watch, "2026-07-28 tools/call")
    assert json.loads(record["body"]) == message


def test_2026_07_28_ungoverned_method_needs_only_mcp_method(fc: SharedStack, http: httpx.Client) -> None:
    message = jsonrpc("ping", {"_meta": stateless_meta()}, id=102)
    watch = UpstreamWatch(fc.upstream)
    send(fc, http, message, extra=_v2026_headers("ping", None))
    _assert_forwarded(fc, watch, "2026-07-28 ping")


MISMATCHES = [
    pytest.param(ALICE_KEY, _v2026_call("echo", 111), _v2026_headers(None, "echo"), id="missing-mcp-method"),
    pytest.param(ALICE_KEY, _v2026_call("echo", 112), _v2026_headers("tools/call", None), id="missing-mcp-name"),
    pytest.param(ALICE_KEY, _v2026_call("echo", 113), _v2026_headers("ping", "echo"), id="mismatched-mcp-method"),
    # bob may call get_weather, not delete_file: the header must not stand in for the body.
    pytest.param(
        BOB_KEY, _v2026_call("delete_file", 114), _v2026_headers("tools/call", "get_weather"), id="mismatched-mcp-name"
    ),
    pytest.param(
        ALICE_KEY,
        _v2026_call("echo", 115),
        _v2026_headers("tools/call", base64_sentinel("delete_file")),
        id="base64-sentinel-of-another-name",
    ),
    pytest.param(
        ALICE_KEY,
        call("echo", {}, id=116, _meta=stateless_meta("2025-11-25")),
        _v2026_headers("tools/call", "echo"),
        id="protocol-version-differs-from-meta",
    ),
]


@pytest.mark.parametrize(("key", "message", "headers"), MISMATCHES)
def test_2026_07_28_header_body_mismatch_is_400_header_mismatch(
    fc: SharedStack, http: httpx.Client, key: str, message: dict[str, Any], headers: dict[str, str]
) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(fc, http, message, key=key, extra=headers)
    watch.assert_nothing(f"2026-07-28 request with headers {headers}")
    assert_jsonrpc_error(resp, status=400, code=ERR_HEADER_MISMATCH, id=message["id"])
    assert_denied_audit(fc, request_id, "header_mismatch")


@pytest.mark.parametrize("name", ["wetter_münchen", "echo", "天気"])
def test_2026_07_28_base64_sentinel_that_decodes_to_the_body_name_is_forwarded(
    fc: SharedStack, http: httpx.Client, name: str
) -> None:
    message = _v2026_call(name, 121, {"message": "x"})
    watch = UpstreamWatch(fc.upstream)
    send(fc, http, message, extra=_v2026_headers("tools/call", base64_sentinel(name)))
    record = _assert_forwarded(fc, watch, f"sentinel for {name!r}")
    assert json.loads(record["body"])["params"]["name"] == name


# A mirror sent as two lines is joined with "," here, which can equal a body name holding a
# comma, while a router reading the first or the last line sees another tool.
REPEATED_MIRRORS = [
    pytest.param("get_weather,delete_file", [("mcp-method", "tools/call"), ("mcp-name", "get_weather"),
                                             ("mcp-name", "delete_file")], id="mcp-name-twice"),
    pytest.param("echo", [("mcp-method", "tools/call"), ("mcp-method", "ping"), ("mcp-name", "echo")],
                 id="mcp-method-twice"),
]


@pytest.mark.parametrize(("name", "lines"), REPEATED_MIRRORS)
def test_2026_07_28_a_mirror_sent_as_two_lines_is_refused(
    fc: SharedStack, http: httpx.Client, name: str, lines: list[tuple[str, str]]
) -> None:
    message = _v2026_call(name, 123)
    if ("mcp-method", "ping") in lines:
        message["method"] = "tools/call,ping"
    watch = UpstreamWatch(fc.upstream)
    request_id = new_request_id("repeated-mirror")
    headers = list(headers_for(ALICE_KEY, extra={"x-request-id": request_id, "mcp-protocol-version": V2026}).items())
    resp = raw(http, fc.url, message, headers=headers + lines)
    watch.assert_nothing(f"mirror lines {lines}")
    assert_jsonrpc_error(resp, status=400, code=ERR_HEADER_MISMATCH, id=123)
    assert_denied_audit(fc, request_id, "header_mismatch")


def test_a_second_content_type_line_is_refused(fc: SharedStack, http: httpx.Client) -> None:
    watch = UpstreamWatch(fc.upstream)
    request_id = new_request_id("two-content-types")
    headers = list(headers_for(ALICE_KEY, extra={"x-request-id": request_id}).items())
    resp = raw(http, fc.url, GOOD, headers=headers + [("content-type", "text/plain")])
    watch.assert_nothing("two content-type lines")
    assert_jsonrpc_error(resp, status=400, code=ERR_INVALID_REQUEST)
    assert_denied_audit(fc, request_id, "content_type")


def test_2026_07_28_agreeing_mirrors_do_not_override_policy(fc: SharedStack, http: httpx.Client) -> None:
    message = _v2026_call("delete_file", 122)
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, message, key=BOB_KEY, extra=_v2026_headers("tools/call", base64_sentinel("delete_file")))
    watch.assert_nothing("denied tool with agreeing mirrors")
    assert_jsonrpc_error(resp, status=200, code=ERR_INVALID_PARAMS, id=122)


# ---------------------------------------------------------------------------------------
# Point 4: tasks and multi-round-trip retries are checked every time
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "version", "extra_params"),
    [
        ("task", "2025-11-25", {"task": {"ttl": 60000}}),
        ("retry", V2026, {"_meta": stateless_meta()}),
    ],
    ids=["params-task", "multi-round-trip-retry"],
)
def test_a_denied_tool_is_denied_every_time_and_an_allowed_one_allowed_every_time(
    fc: SharedStack, http: httpx.Client, what: str, version: str, extra_params: dict[str, Any]
) -> None:
    def headers_of(name: str) -> dict[str, str]:
        h = {"mcp-protocol-version": version}
        if version == V2026:
            h.update({"mcp-method": "tools/call", "mcp-name": name})
        return h

    denied = body_bytes(call("delete_file", {"path": "/tmp/x"}, id="d-1", **extra_params))
    for attempt in (1, 2):  # the identical request, sent again
        watch = UpstreamWatch(fc.upstream)
        resp, _ = send(fc, http, denied, key=BOB_KEY, extra=headers_of("delete_file"))
        watch.assert_nothing(f"{what}: denied tool, attempt {attempt}")
        assert_jsonrpc_error(resp, status=200, code=ERR_INVALID_PARAMS, id="d-1")

    allowed = body_bytes(call("get_weather", {"city": "Oslo"}, id="a-1", **extra_params))
    for attempt in (1, 2):
        watch = UpstreamWatch(fc.upstream)
        send(fc, http, allowed, key=BOB_KEY, extra=headers_of("get_weather"))
        record = _assert_forwarded(fc, watch, f"{what}: allowed tool, attempt {attempt}", key=BOB_KEY, username="bob")
        assert record["body"].encode() == allowed


# ---------------------------------------------------------------------------------------
# Point 3: the denial shape
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc-1", 7], ids=["string-id", "number-id"])
def test_a_denied_tools_call_is_http_200_json_with_the_id_echoed_and_nothing_internal(
    fc: SharedStack, http: httpx.Client, request_id: Any
) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, audit_id = send(fc, http, call("delete_file", {"path": "/etc/passwd"}, id=request_id), key=BOB_KEY)
    watch.assert_nothing("denied tools/call")
    body = assert_jsonrpc_error(resp, status=200, code=ERR_INVALID_PARAMS, id=request_id)
    assert json.dumps(request_id) in resp.text, f"id not echoed verbatim: {resp.text}"
    message = body["error"]["message"]
    assert "tool" in message.lower() and "denied by policy" in message.lower(), message
    for name in INTERNAL_NAMES:
        assert name not in resp.text, f"{name!r} leaked into the denial: {resp.text}"
    event = assert_denied_audit(fc, audit_id, "not_allowed_by_any_role")
    assert event.get("tool") == "delete_file", event


def test_a_denied_tools_call_without_an_id_is_not_forwarded(fc: SharedStack, http: httpx.Client) -> None:
    """A notification-form `tools/call` gets no JSON-RPC response, but it must not run."""
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, jsonrpc("tools/call", {"name": "delete_file", "arguments": {}}, id=None), key=BOB_KEY)
    watch.assert_nothing("notification-form tools/call")
    if resp.content:
        body = resp.json()
        assert body.get("id") is None and body.get("error", {}).get("code") == ERR_INVALID_PARAMS, body


@pytest.mark.parametrize(
    "params",
    [{"arguments": {}}, {"name": "", "arguments": {}}, {"name": 7, "arguments": {}}, None],
    ids=["missing-name", "empty-name", "number-name", "no-params"],
)
def test_tools_call_without_a_usable_name_is_an_invalid_request(
    fc: SharedStack, http: httpx.Client, params: dict[str, Any] | None
) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(fc, http, jsonrpc("tools/call", params, id="n-1"))
    watch.assert_nothing("tools/call without a name")
    assert_jsonrpc_error(resp, status=400, code=ERR_INVALID_REQUEST, id="n-1")
    assert_denied_audit(fc, request_id, "missing_name")


def test_denied_status_403_changes_only_the_http_status(
    fc: SharedStack, stack_factory: Any, http: httpx.Client
) -> None:
    strict = stack_factory(stateless=True, json_response=True, config_extra={"inspection": {"denied_status": 403}})
    message = call("delete_file", {"path": "/etc/passwd"}, id="abc-1")
    ref, _ = send(fc, http, message, key=BOB_KEY)
    assert ref.status_code == 200, ref.text

    watch = UpstreamWatch(strict.upstream)
    resp = raw(http, strict.mcp_url, message, headers=headers_for(BOB_KEY))
    watch.assert_nothing("denied tools/call with denied_status 403")
    assert_jsonrpc_error(resp, status=403, code=ERR_INVALID_PARAMS, id="abc-1")
    assert resp.json() == ref.json(), "the body is the same whatever the status"

    # Only policy denials move: allowed calls and malformed requests are unchanged.
    watch = UpstreamWatch(strict.upstream)
    ok = raw(http, strict.mcp_url, call("get_weather", {"city": "Oslo"}, id=2), headers=headers_for(BOB_KEY))
    assert ok.status_code == 200 and len(watch.new()) == 1, ok.text
    bad = raw(http, strict.mcp_url, b"{", headers=headers_for(BOB_KEY))
    assert_jsonrpc_error(bad, status=400, code=ERR_PARSE)


# ---------------------------------------------------------------------------------------
# Point 2: prompts/get and resources/read governance (the mcp.prompts / mcp.resources extension)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "allowed"),
    [
        ("prompts/get", {"name": "summarize", "arguments": {"text": "t"}}, True),
        ("prompts/get", {"name": "code_review", "arguments": {"code": "x"}}, False),
        ("resources/read", {"uri": "file:///docs/readme.md"}, True),
        ("resources/read", {"uri": "config://app"}, False),
        ("resources/read", {"uri": "file:///docs/secret-plans.md"}, False),  # deny rule beats the allow glob
        ("completion/complete", {"ref": {"type": "ref/prompt", "name": "code_review"},
                                 "argument": {"name": "language", "value": "py"}}, False),
        ("tools/call", {"name": "delete_file", "arguments": {"path": "/x"}}, True),  # tools: ["*"]
    ],
    ids=["prompt-listed", "prompt-unlisted", "resource-listed", "resource-unlisted", "resource-deny-rule",
         "completion-of-unlisted-prompt", "tools-unaffected"],
)
def test_a_role_with_prompts_and_resources_lists_governs_them(
    fc: SharedStack, http: httpx.Client, method: str, params: dict[str, Any], allowed: bool
) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, request_id = send(fc, http, jsonrpc(method, params, id="g-1"), key=DAVE_KEY)
    if allowed:
        _assert_forwarded(fc, watch, f"{method} {params}", key=DAVE_KEY, username="dave")
        assert resp.status_code == 200, resp.text
        assert "result" in resp.json(), resp.text
        return
    watch.assert_nothing(f"{method} {params}")
    body = assert_jsonrpc_error(resp, status=200, code=ERR_INVALID_PARAMS, id="g-1")
    assert "denied by policy" in body["error"]["message"], body
    for name in INTERNAL_NAMES:
        assert name not in resp.text, f"{name!r} leaked into the denial: {resp.text}"
    assert_denied_audit(fc, request_id, None)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("prompts/get", {"name": "code_review", "arguments": {"code": "x"}}),
        ("resources/read", {"uri": "config://app"}),
        ("resources/read", {"uri": "file:///docs/secret-plans.md"}),
    ],
    ids=["any-prompt", "any-resource", "resource-dave-is-denied"],
)
def test_without_prompts_or_resources_lists_they_are_not_enforced(
    fc: SharedStack, http: httpx.Client, method: str, params: dict[str, Any]
) -> None:
    """alice's role (demo-full) lists only tools: prompts and resources pass (documented)."""
    watch = UpstreamWatch(fc.upstream)
    send(fc, http, jsonrpc(method, params, id="g-2"))
    _assert_forwarded(fc, watch, f"{method} {params}")


@pytest.mark.parametrize(
    ("method", "params"),
    [("prompts/get", {"arguments": {}}), ("prompts/get", {"name": ""}), ("resources/read", {"uri": ""})],
    ids=["prompt-without-name", "prompt-empty-name", "resource-empty-uri"],
)
def test_prompt_and_resource_requests_without_a_name_are_invalid_requests(
    fc: SharedStack, http: httpx.Client, method: str, params: dict[str, Any]
) -> None:
    watch = UpstreamWatch(fc.upstream)
    resp, _ = send(fc, http, jsonrpc(method, params, id="g-3"), key=DAVE_KEY)
    watch.assert_nothing(f"{method} {params}")
    assert_jsonrpc_error(resp, status=400, code=ERR_INVALID_REQUEST, id="g-3")
