"""Core end-to-end behaviour: real MCP client -> real Envoy -> mcp-warden (ext_authz) -> real
MCP upstream, and PyJWT playing the upstream's relying party (AgentCore's part).

Contract under test (docs/configuration.md, shared protocol notes):
- an API key (`Authorization: Bearer KEY` or `x-api-key: KEY`) authenticates a user;
- the route's `context_extensions: {app: NAME}` names the app;
- allowed requests reach the upstream with `Authorization: Bearer <RS256 ID token>` and
  without the client's credential;
- a denied `tools/call` is an HTTP 200 JSON-RPC error (-32602) echoing the request id;
- no or bad credential -> 401 + WWW-Authenticate; no app access -> 403 (-32003);
- mcp-warden down -> Envoy fails closed (503).
"""

from __future__ import annotations

import json
from typing import Any

import harness
import httpx
import jwt
import pytest
from harness import (
    ALICE_KEY,
    BOB_KEY,
    CAROL_KEY,
    ERR_APP_DENIED,
    ERR_INVALID_PARAMS,
    ERR_UNAUTHENTICATED,
    bearer,
    initialize_request,
    jsonrpc,
    mcp_session,
    post_jsonrpc,
    record_headers,
    run_async,
    tool_text,
)
from mcp.shared.exceptions import MCPError
from upstream import TOOL_NAMES

PRIVATE_JWK_FIELDS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def _jsonrpc_error(resp: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC error object of a JSON response (asserting its shape)."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body.get("jsonrpc") == "2.0", body
    assert "result" not in body, body
    assert isinstance(body.get("error"), dict), body
    assert isinstance(body["error"].get("code"), int), body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body
    return body


def _assert_no_credential_upstream(records: list[dict[str, Any]], secret: str) -> None:
    assert records, "nothing reached the upstream"
    for rec in records:
        assert not record_headers(rec, "x-api-key"), f"x-api-key reached the upstream: {rec['headers']}"
        for name, value in rec["headers"]:
            assert secret not in name and secret not in value, f"API key leaked upstream in header {name!r}"


def _upstream_tokens(records: list[dict[str, Any]]) -> list[str]:
    """The bearer token of every recorded request (exactly one Authorization each)."""
    tokens = []
    for rec in records:
        values = record_headers(rec, "authorization")
        assert len(values) == 1, f"{rec['method']} {rec['path']}: expected one Authorization, got {values}"
        scheme, _, token = values[0].partition(" ")
        assert scheme == "Bearer" and token.count(".") == 2, f"not a bearer JWT: {values[0]!r}"
        tokens.append(token)
    return tokens


def _verify_tokens(stack: harness.Stack, tokens: list[str], username: str) -> list[dict[str, Any]]:
    """Verify like a relying party: discovery -> jwks_uri -> PyJWKClient, RS256 pinned,
    exact issuer and audience."""
    discovery = stack.warden.discovery()
    issuer = stack.warden.issuer
    assert discovery["issuer"] == issuer
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    jwks = httpx.get(discovery["jwks_uri"], timeout=10).json()
    assert jwks["keys"], jwks
    for key in jwks["keys"]:
        assert key["kty"] == "RSA" and key.get("kid"), key
        assert not PRIVATE_JWK_FIELDS & set(key), f"private JWK parameter published: {sorted(key)}"

    jwk_client = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=True)
    all_claims = []
    for token in tokens:
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "RS256", header
        assert header.get("kid"), header
        signing_key = jwk_client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=["RS256"],
            issuer=issuer,
            audience=stack.app_uri,
            options={"require": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"], "strict_aud": True},
        )
        assert claims["iss"] == issuer
        assert claims["aud"] == stack.app_uri
        assert claims["sub"] == username
        assert claims["username"] == username
        assert isinstance(claims["roles"], list)
        assert isinstance(claims.get("traits", {}), dict)
        assert 0 < claims["exp"] - claims["iat"] <= 3600
        assert claims["nbf"] <= claims["iat"]
        assert claims["jti"]
        all_claims.append(claims)
    return all_claims


# ---------------------------------------------------------------------------------------
# Allowed traffic
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sse", "json"])
def test_mcp_client_with_api_key_initializes_lists_and_calls_tools_through_envoy(
    stack_factory: Any, mode: str
) -> None:
    stack = stack_factory(json_response=(mode == "json"))

    async def scenario() -> tuple[Any, Any, Any, Any]:
        async with mcp_session(stack.mcp_url, bearer(ALICE_KEY)) as session:
            tools = await session.list_tools()
            added = await session.call_tool("add", {"a": 2, "b": 40})
            weather = await session.call_tool("get_weather", {"city": "Oslo"})
            return session.server_info, tools, added, weather

    server_info, tools, added, weather = run_async(scenario())
    assert server_info.name == "warden-test-upstream"
    names = {t.name for t in tools.tools}
    assert set(TOOL_NAMES) <= names
    assert not added.is_error and tool_text(added) == "42"
    assert not weather.is_error and tool_text(weather) == "weather in Oslo: sunny, 21C"
    assert stack.upstream.tool_calls() == ["add", "get_weather"]


def test_upstream_receives_a_verifiable_rs256_id_token_instead_of_the_api_key(stack: harness.Stack) -> None:
    async def scenario() -> Any:
        async with mcp_session(stack.mcp_url, bearer(ALICE_KEY)) as session:
            await session.list_tools()
            return await session.call_tool("echo", {"message": "hi"})

    result = run_async(scenario())
    assert tool_text(result) == "echo: hi"

    records = stack.upstream.records()
    _assert_no_credential_upstream(records, ALICE_KEY)
    tokens = _upstream_tokens(records)
    claims = _verify_tokens(stack, tokens, "alice")
    assert all("demo-full" in c["roles"] for c in claims)
    assert all(c["traits"].get("team") == ["platform"] for c in claims)


def test_x_api_key_is_replaced_by_an_id_token_and_removed(stack: harness.Stack) -> None:
    async def scenario() -> Any:
        async with mcp_session(stack.mcp_url, {"x-api-key": ALICE_KEY}) as session:
            return await session.call_tool("get_time", {"timezone": "UTC"})

    result = run_async(scenario())
    assert tool_text(result) == "2026-01-01T12:00:00 UTC"
    records = stack.upstream.records()
    _assert_no_credential_upstream(records, ALICE_KEY)
    _verify_tokens(stack, _upstream_tokens(records), "alice")


def test_a_forged_upstream_token_from_the_client_is_overwritten(stack: harness.Stack, http: httpx.Client) -> None:
    """The client's own Authorization never reaches the upstream, even next to x-api-key."""
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
    resp = post_jsonrpc(
        http,
        stack.mcp_url,
        initialize_request(id=1),
        {"x-api-key": ALICE_KEY, "Authorization": f"Bearer {forged}"},
    )
    # Either a credential conflict is refused, or the forged token is replaced: never forwarded.
    records = stack.upstream.records()
    if resp.status_code == 200:
        _assert_no_credential_upstream(records, ALICE_KEY)
        for rec in records:
            assert all(forged not in v for _, v in rec["headers"])
        _verify_tokens(stack, _upstream_tokens(records), "alice")
    else:
        assert resp.status_code in (400, 401), resp.text
        assert records == []


def test_client_sent_envoy_control_headers_and_accept_encoding_never_reach_the_upstream(
    stack: harness.Stack, http: httpx.Client
) -> None:
    """An external client cannot ask Envoy to retry (replaying an allowed call), nor the
    upstream to compress (a compressed list answer cannot be filtered)."""
    control = {"x-envoy-retry-on": "5xx", "x-envoy-max-retries": "3", "x-envoy-upstream-rq-timeout-ms": "1"}
    resp = post_jsonrpc(
        http,
        stack.mcp_url,
        initialize_request(id=1),
        {"x-api-key": ALICE_KEY, "accept-encoding": "gzip, br", **control},
    )
    assert resp.status_code == 200, resp.text
    (rec,) = stack.upstream.records()
    sent = {k.lower() for k, _ in rec["headers"]}
    assert not sent & {*control, "accept-encoding"}, sorted(sent)


def test_discovery_and_jwks_are_public_through_envoy(stack: harness.Stack, http: httpx.Client) -> None:
    resp = http.get(stack.envoy.url("/.well-known/openid-configuration"))
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc == stack.warden.discovery()
    assert doc["issuer"] == stack.warden.issuer
    jwks_path = httpx.URL(doc["jwks_uri"]).path
    assert jwks_path in ("/.well-known/jwks-oidc", "/.well-known/jwks.json"), jwks_path
    jwks = http.get(stack.envoy.url(jwks_path))
    assert jwks.status_code == 200, jwks.text
    assert jwks.json()["keys"]
    assert stack.upstream.records() == [], "discovery must not touch the upstream"


# ---------------------------------------------------------------------------------------
# Authentication failures
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "request_id"),
    [
        ({}, 7),
        ({"Authorization": "Bearer not-a-valid-key"}, "req-abc"),
        ({"x-api-key": "not-a-valid-key"}, 11),
        ({"Authorization": f"Basic {ALICE_KEY}"}, "basic"),
        ({"Authorization": f"Bearer {ALICE_KEY}x"}, 12),
    ],
    ids=["no-key", "bad-bearer", "bad-x-api-key", "basic-scheme", "key-with-suffix"],
)
def test_missing_or_bad_credential_gets_401_with_jsonrpc_error_and_reaches_nothing(
    stack: harness.Stack, http: httpx.Client, credential: dict[str, str], request_id: Any
) -> None:
    for message in (
        initialize_request(id=request_id),
        jsonrpc("tools/call", {"name": "get_weather", "arguments": {"city": "x"}}, id=request_id),
    ):
        resp = post_jsonrpc(http, stack.mcp_url, message, credential)
        assert resp.status_code == 401, resp.text
        assert resp.headers.get("www-authenticate", "").startswith("Bearer"), resp.headers
        body = _jsonrpc_error(resp)
        assert body["id"] == request_id and type(body["id"]) is type(request_id), body
        assert body["error"]["code"] == ERR_UNAUTHENTICATED, body
    assert stack.upstream.records() == []


def test_get_without_credential_gets_401(stack: harness.Stack, http: httpx.Client) -> None:
    resp = http.get(stack.mcp_url, headers={"accept": "text/event-stream"})
    assert resp.status_code == 401, resp.text
    assert resp.headers.get("www-authenticate", "").startswith("Bearer"), resp.headers
    body = _jsonrpc_error(resp)
    assert body["id"] is None
    assert stack.upstream.records() == []


def test_user_without_access_to_the_app_gets_403(stack: harness.Stack, http: httpx.Client) -> None:
    resp = post_jsonrpc(http, stack.mcp_url, initialize_request(id=3), bearer(CAROL_KEY))
    assert resp.status_code == 403, resp.text
    body = _jsonrpc_error(resp)
    assert body["id"] == 3
    assert body["error"]["code"] == ERR_APP_DENIED, body
    assert stack.upstream.records() == []

    # The same user on the app its role does allow (route /other/ -> app "other").
    resp = post_jsonrpc(http, stack.envoy.url("/other/mcp"), initialize_request(id=4), bearer(CAROL_KEY))
    assert resp.status_code == 200, resp.text
    (record,) = stack.upstream.records()
    assert record["path"] == "/mcp"
    claims = jwt.decode(_upstream_tokens([record])[0], options={"verify_signature": False})
    assert claims["aud"] == harness.OTHER_APP_URI
    assert claims["sub"] == "carol"


# ---------------------------------------------------------------------------------------
# Tool-level denial
# ---------------------------------------------------------------------------------------


def test_tool_outside_the_role_is_a_jsonrpc_error_for_the_mcp_client_and_never_reaches_upstream(
    stack: harness.Stack,
) -> None:
    async def scenario() -> tuple[Any, Any, MCPError | None, Any]:
        async with mcp_session(stack.mcp_url, bearer(BOB_KEY)) as session:
            tools = await session.list_tools()
            allowed = await session.call_tool("get_weather", {"city": "Lima"})
            denied: MCPError | None = None
            try:
                await session.call_tool("delete_file", {"path": "/etc/passwd"})
            except MCPError as exc:
                denied = exc
            # The session survives the denial.
            after = await session.call_tool("get_time", {})
            return tools, allowed, denied, after

    tools, allowed, denied, after = run_async(scenario())
    assert tools.tools, "tools/list is not a tools/call: it passes"
    assert tool_text(allowed) == "weather in Lima: sunny, 21C"
    assert denied is not None, "delete_file was not denied"
    assert denied.code == ERR_INVALID_PARAMS, (denied.code, denied.message)
    assert "denied" in denied.message.lower(), denied.message
    assert tool_text(after) == "2026-01-01T12:00:00 UTC"

    calls = stack.upstream.tool_calls()
    assert "delete_file" not in calls
    assert calls == ["get_weather", "get_time"]


@pytest.mark.parametrize("request_id", ["call-1", 99, 0], ids=["string-id", "int-id", "zero-id"])
def test_denied_tools_call_is_http_200_json_echoing_the_id(
    stack: harness.Stack, http: httpx.Client, request_id: Any
) -> None:
    message = jsonrpc("tools/call", {"name": "send_email", "arguments": {"to": "x@example.com"}}, id=request_id)
    resp = post_jsonrpc(http, stack.mcp_url, message, bearer(BOB_KEY))
    assert resp.status_code == 200, resp.text
    body = _jsonrpc_error(resp)
    assert body["id"] == request_id and type(body["id"]) is type(request_id), body
    assert body["error"]["code"] == ERR_INVALID_PARAMS, body
    assert "denied" in body["error"]["message"].lower(), body
    assert stack.upstream.records() == []


@pytest.mark.parametrize(
    "params", [None, {"name": ""}, {"arguments": {}}], ids=["no-params", "empty-name", "arguments-only"]
)
def test_tools_call_without_a_tool_name_is_an_invalid_request(
    stack: harness.Stack, http: httpx.Client, params: dict[str, Any] | None
) -> None:
    resp = post_jsonrpc(http, stack.mcp_url, jsonrpc("tools/call", params, id=5), bearer(ALICE_KEY))
    body = _jsonrpc_error(resp)
    assert body["error"]["code"] == harness.ERR_INVALID_REQUEST, body
    assert body["id"] == 5
    assert stack.upstream.records() == []


# ---------------------------------------------------------------------------------------
# Fail closed
# ---------------------------------------------------------------------------------------


def test_envoy_fails_closed_when_mcp_warden_is_down(stack: harness.Stack, http: httpx.Client) -> None:
    # Warm up: the path works and Envoy holds a gRPC connection to mcp-warden.
    resp = post_jsonrpc(http, stack.mcp_url, initialize_request(id=1), bearer(ALICE_KEY))
    assert resp.status_code == 200, resp.text
    before = stack.upstream.records()
    assert len(before) == 1

    stack.warden.proc.kill()
    assert not stack.warden.proc.alive()

    call = jsonrpc("tools/call", {"name": "echo", "arguments": {"message": "x"}}, id=2)
    resp = post_jsonrpc(http, stack.mcp_url, call, bearer(ALICE_KEY))
    assert not 200 <= resp.status_code < 300, resp.text
    assert resp.status_code == 503, f"status_on_error is 503, got {resp.status_code}: {resp.text}"
    resp = http.get(stack.mcp_url, headers={**bearer(ALICE_KEY), "accept": "text/event-stream"})
    assert resp.status_code == 503, resp.text
    assert stack.upstream.records() == before


def test_records_are_json_lines_with_every_header(stack: harness.Stack, http: httpx.Client) -> None:
    """Sanity check of the harness itself: what reaches the upstream is recorded verbatim."""
    resp = post_jsonrpc(http, stack.mcp_url, initialize_request(id=1), {**bearer(ALICE_KEY), "x-trace": "t-1"})
    assert resp.status_code == 200, resp.text
    (record,) = stack.upstream.records()
    assert record["method"] == "POST" and record["path"] == "/mcp"
    assert record_headers(record, "x-trace") == ["t-1"]
    assert json.loads(record["body"])["method"] == "initialize"
