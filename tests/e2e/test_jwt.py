"""The `jwt` authentication method end to end: a real OpenID Provider (npm oidc-provider on
loopback, tests/node/idp.mjs) issues real JWT access tokens; real clients present them to
real Envoy; mcp-warden verifies them against the provider's published keys and forwards
its own ID token upstream.

Contract under test (docs/configuration.md, issue 5):
- a valid token works through Envoy with the real MCP client; the upstream gets our RS256 ID
  token (sub = the token's email, roles from claims_to_roles), never the caller's token;
- wrong aud, wrong iss, expired, not yet valid, alg none, HS256 keyed with the public key,
  unknown kid, tampered payload, a disallowed algorithm, no username: each 401 with
  `WWW-Authenticate: Bearer error="invalid_token", resource_metadata="..."` and a JSON-RPC
  error, nothing forwarded, and the refusal counted under its own reason;
- RFC 9728: the metadata URL in the 401 resolves through Envoy (no ext_authz) and names the
  IdP; a client that follows it gets a token that works;
- JWT next to another identity is a conflict; API keys keep working beside JWTs;
- the IdP rotating its keys is picked up without restarting mcp-warden (periodically, and
  early on an unknown kid); cached keys survive an IdP outage, and a check never waits on it;
- claims are read strictly (issue 26): a key named twice anywhere in a token the IdP signed
  is `jwt_malformed`; look-alike usernames are refused; `email_verified` counts only as
  `true` / `"true"`; a list of trait values and one value holding the separator never reach
  the upstream as the same header; claim values are literals in role templates unless the
  role sets `options.idp_trait_patterns`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import httpx
import idp_support
import jwt
import pytest
from harness import ALICE_KEY, ERR_INVALID_PARAMS, ERR_UNAUTHENTICATED, bearer, initialize_request, jsonrpc
from idp_support import JwtStack

METADATA_PATH = "/.well-known/oauth-protected-resource"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, envoy_bin: Path, warden_bin: Path) -> Iterator[JwtStack]:
    """One IdP + stack for the read-only tests of this module (they only add requests)."""
    work = tmp_path_factory.mktemp("jwt-shared")
    group = harness.ProcessGroup(work / "logs")
    try:
        idp = idp_support.start_idp(group, work / "idp")
        yield idp_support.start_jwt_stack(group, work, envoy_bin=envoy_bin, warden_bin=warden_bin, idp=idp)
    finally:
        group.stop_all()


@pytest.fixture
def own_idp(procs: harness.ProcessGroup, tmp_path: Path) -> idp_support.Idp:
    """An IdP this test may rotate, break or stop."""
    return idp_support.start_idp(procs, tmp_path / "idp")


def _logs(stack: JwtStack) -> str:
    return stack.group.report(40)


def _post(stack: JwtStack, message: Any, headers: dict[str, str], path: str = "/mcp") -> httpx.Response:
    with harness.http_client() as client:
        return harness.post_jsonrpc(client, stack.envoy.url(path), message, headers)


def _upstream_tokens(records: list[dict[str, Any]]) -> list[str]:
    tokens = []
    for rec in records:
        values = harness.record_headers(rec, "authorization")
        assert len(values) == 1, f"{rec['method']} {rec['path']}: expected one Authorization, got {values}"
        scheme, _, token = values[0].partition(" ")
        assert scheme == "Bearer", values[0]
        tokens.append(token)
    return tokens


def _verify_id_tokens(stack: JwtStack, records: list[dict[str, Any]], idp_token: str) -> list[dict[str, Any]]:
    """Every upstream request carries mcp-warden's ID token (verified like the upstream's
    relying party would) and never the caller's token."""
    assert records, "nothing reached the upstream"
    for rec in records:
        for name, value in rec["headers"]:
            assert idp_token not in value, f"the caller's token reached the upstream in {name!r}"
    discovery = stack.warden.discovery()
    jwks = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=True)
    out = []
    for token in _upstream_tokens(records):
        key = jwks.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            issuer=stack.warden.issuer,
            audience=harness.demo_app_uri(stack.upstream.port),
            options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
        )
        out.append(claims)
    return out


def _assert_challenge(resp: httpx.Response, stack: JwtStack, *, invalid: bool, path: str = "/mcp") -> None:
    assert resp.status_code == 401, f"{resp.status_code} {resp.text}\n{_logs(stack)}"
    challenge = resp.headers.get("www-authenticate", "")
    metadata = f"{stack.envoy.base_url}{METADATA_PATH}{path}"
    want = (
        f'Bearer error="invalid_token", resource_metadata="{metadata}"'
        if invalid
        else f'Bearer resource_metadata="{metadata}"'
    )
    assert challenge == want, challenge
    body = resp.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == ERR_UNAUTHENTICATED, body


# ---------------------------------------------------------------------------------------
# Valid tokens
# ---------------------------------------------------------------------------------------


def test_mcp_client_with_an_idp_token_works_through_envoy_and_the_upstream_gets_our_id_token(
    shared: JwtStack,
) -> None:
    before = shared.upstream.count()
    token = shared.token("alice-agent")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    run = harness.run_async(harness.mcp_list_and_call(shared.mcp_url, bearer(token), "delete_file", {"path": "/x"}))
    assert run.error is None, run.error
    assert "delete_file" in run.tool_names
    records = shared.upstream.records()[before:]
    claims = _verify_id_tokens(shared, records, token)
    for c in claims:
        assert c["sub"] == "alice@example.com" and c["username"] == "alice@example.com", c
        assert c["roles"] == ["demo-full"], c
        assert c["traits"]["groups"] == ["mcp-admins", "staff"], c
        assert c["iss"] == shared.warden.issuer != shared.idp.issuer


@pytest.mark.parametrize(("client_id", "alg"), [("bob-agent", "PS256"), ("carol-agent", "ES256")])
def test_ps256_and_es256_tokens_work_and_mapped_roles_decide_the_tools(
    shared: JwtStack, client_id: str, alg: str
) -> None:
    token = shared.token(client_id)
    assert jwt.get_unverified_header(token)["alg"] == alg
    allowed = harness.run_async(harness.mcp_list_and_call(shared.mcp_url, bearer(token), "get_weather", {"city": "Oslo"}))
    assert allowed.error is None and harness.tool_text(allowed.result) == "weather in Oslo: sunny, 21C", allowed
    before = shared.upstream.count()
    run = harness.run_async(harness.mcp_list_and_call(shared.mcp_url, bearer(token), "delete_file", {"path": "/"}))
    calls = shared.upstream.tool_calls(shared.upstream.records()[before:])
    if client_id == "bob-agent":  # groups [readers] -> demo-readonly: ^get_.*$ only
        assert run.error is not None and run.error.code == ERR_INVALID_PARAMS, run
        assert "delete_file" not in calls, "a denied call reached the upstream"
    else:  # groups [mcp-admins] -> demo-full
        assert run.error is None, run.error
        assert calls == ["delete_file"]


# ---------------------------------------------------------------------------------------
# Refused tokens
# ---------------------------------------------------------------------------------------

BAD_TOKENS: dict[str, str] = {
    # case id -> the reason mcp-warden counts the refusal under
    "wrong-aud": "jwt_audience",
    "wrong-iss": "jwt_issuer",
    "expired": "jwt_expired",
    "not-yet-valid": "jwt_not_yet_valid",
    "alg-none": "jwt_algorithm",
    "hs256-with-public-key": "jwt_algorithm",
    "unknown-kid": "jwt_unknown_kid",
    "tampered-payload": "jwt_signature",
    "rs384-not-allowed": "jwt_algorithm",
    "no-email-claim": "jwt_username",
    "email-not-verified": "jwt_email_unverified",
    # A Cognito-shaped token (client_id, no aud) where no client_ids are configured.
    "client-id-without-aud": "jwt_audience",
}


def _bad_token(stack: JwtStack, case: str) -> str:
    idp = stack.idp
    good = stack.token("alice-agent")
    match case:
        case "wrong-aud":
            return idp.token("alice-agent", "https://elsewhere.example.com/mcp")
        case "wrong-iss":
            return stack.token("wrong-iss-agent")
        case "expired":
            return stack.token("expired-agent")
        case "not-yet-valid":
            return stack.token("future-agent")
        case "alg-none":
            return idp_support.alg_none(good)
        case "hs256-with-public-key":
            return idp_support.hs256_with_public_key(good, idp.jwks())
        case "unknown-kid":
            return idp_support.with_kid(good, "kid-the-idp-never-published")
        case "tampered-payload":
            return idp_support.tampered(good, email="admin@example.com", groups=["mcp-admins", "root"])
        case "rs384-not-allowed":
            return stack.token("rs384-agent")
        case "no-email-claim":
            return stack.token("nomail-agent")
        case "email-not-verified":
            return stack.token("unverified-agent")
        case "client-id-without-aud":
            return stack.token("cognito-app-client")
    raise AssertionError(case)


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_each_bad_token_is_401_invalid_token_and_nothing_is_forwarded(shared: JwtStack, case: str) -> None:
    token = _bad_token(shared, case)
    claims = jwt.decode(token, options={"verify_signature": False})
    if case in ("wrong-aud", "wrong-iss", "expired", "not-yet-valid", "rs384-not-allowed"):
        assert claims["iss"] in (shared.idp.issuer, "https://evil.example.com"), "a real token from the IdP"
    before_records = shared.upstream.count()
    before_count = shared.denials(BAD_TOKENS[case])
    for message in (
        initialize_request(id=f"{case}-1"),
        jsonrpc("tools/call", {"name": "get_weather", "arguments": {"city": "x"}}, id=17),
    ):
        resp = _post(shared, message, bearer(token))
        _assert_challenge(resp, shared, invalid=True)
        assert resp.json()["id"] == message["id"], resp.text
    assert shared.upstream.count() == before_records, f"{case}: something reached the upstream"
    assert shared.denials(BAD_TOKENS[case]) >= before_count + 2, (
        f"{case}: not refused as {BAD_TOKENS[case]}\n{shared.metrics()}"
    )


def test_no_credential_gets_a_challenge_naming_the_resource_metadata(shared: JwtStack) -> None:
    before = shared.upstream.count()
    _assert_challenge(_post(shared, initialize_request(id=1), {}), shared, invalid=False)
    resp = _post(shared, initialize_request(id=2), {}, path="/other/mcp")
    _assert_challenge(resp, shared, invalid=False, path="/other/mcp")
    with harness.http_client() as client:
        resp = client.get(shared.mcp_url, headers={"accept": "text/event-stream"})
    _assert_challenge(resp, shared, invalid=False)
    assert shared.upstream.count() == before


# ---------------------------------------------------------------------------------------
# RFC 9728: an MCP client finds the authorization server on its own
# ---------------------------------------------------------------------------------------


def test_a_client_follows_the_401_to_the_idp_and_its_token_works(shared: JwtStack) -> None:
    with harness.http_client() as client:
        resp = harness.post_jsonrpc(client, shared.mcp_url, initialize_request(id=1))
        assert resp.status_code == 401
        challenge = resp.headers["www-authenticate"]
        metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        assert metadata_url.startswith(shared.envoy.base_url), "the metadata is on Envoy's public listener"

        metadata = client.get(metadata_url)
        assert metadata.status_code == 200, metadata.text
        assert metadata.headers["content-type"].startswith("application/json")
        doc = metadata.json()
        assert doc["resource"] == shared.resource, doc
        assert doc["authorization_servers"] == [shared.idp.issuer], doc
        assert doc["bearer_methods_supported"] == ["header"]
        assert doc["scopes_supported"] == ["mcp"]
        root = client.get(shared.envoy.url(METADATA_PATH)).json()
        assert root["resource"] == shared.envoy.base_url

        server = client.get(f"{doc['authorization_servers'][0]}/.well-known/openid-configuration").json()
        assert server["issuer"] == shared.idp.issuer
        token = shared.idp.token("alice-agent", doc["resource"], token_endpoint=server["token_endpoint"])

        resp = harness.post_jsonrpc(client, shared.mcp_url, initialize_request(id=2), bearer(token))
        assert resp.status_code == 200, f"{resp.text}\n{_logs(shared)}"
    assert shared.upstream.records(), "the upstream was reached"


def test_metadata_routes_bypass_ext_authz_and_never_reach_the_upstream(shared: JwtStack) -> None:
    before = shared.upstream.count()
    with harness.http_client() as client:
        for path in (METADATA_PATH, f"{METADATA_PATH}/mcp", f"{METADATA_PATH}/other/mcp"):
            resp = client.get(shared.envoy.url(path))
            assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text}"
            assert resp.json()["authorization_servers"] == [shared.idp.issuer]
    assert shared.upstream.count() == before


# ---------------------------------------------------------------------------------------
# Several methods together
# ---------------------------------------------------------------------------------------


def test_api_keys_still_work_and_a_jwt_beside_another_identity_is_a_conflict(shared: JwtStack) -> None:
    resp = _post(shared, initialize_request(id=1), bearer(ALICE_KEY))
    assert resp.status_code == 200, f"API key beside the jwt method: {resp.text}"

    token = shared.token("alice-agent")
    before = shared.upstream.count()
    conflicts = shared.denials("conflicting_credentials")
    resp = _post(shared, initialize_request(id=2), {**bearer(token), "x-api-key": ALICE_KEY})
    _assert_challenge(resp, shared, invalid=True)
    assert shared.denials("conflicting_credentials") == conflicts + 1
    assert shared.upstream.count() == before


# ---------------------------------------------------------------------------------------
# Keys: rotation, outage
# ---------------------------------------------------------------------------------------


def _status(stack: JwtStack, token: str, id: Any = 1) -> int:
    return _post(stack, initialize_request(id=id), bearer(token)).status_code


def test_client_ids_accept_tokens_by_client_id_without_aud_beside_tokens_with_aud(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path, own_idp: idp_support.Idp
) -> None:
    """Cognito access tokens carry `client_id` and no `aud`: `client_ids` accepts them, while
    tokens naming an accepted `aud` keep working, and a client not listed is refused."""
    stack = idp_support.start_jwt_stack(
        procs, tmp_path, envoy_bin=envoy_bin, warden_bin=warden_bin, idp=own_idp,
        jwt_extra={"client_ids": ["cognito-app-client"]},
    )
    cognito = stack.token("cognito-app-client")
    claims = jwt.decode(cognito, options={"verify_signature": False})
    assert "aud" not in claims and claims["client_id"] == "cognito-app-client", claims
    with_aud = stack.token("alice-agent")
    assert jwt.decode(with_aud, options={"verify_signature": False})["aud"] == stack.resource
    for token, sub in ((cognito, "carol@example.com"), (with_aud, "alice@example.com")):
        before = stack.upstream.count()
        run = harness.run_async(harness.mcp_list_and_call(stack.mcp_url, bearer(token), "delete_file", {"path": "/x"}))
        assert run.error is None, f"{run.error}\n{_logs(stack)}"
        assert {c["sub"] for c in _verify_id_tokens(stack, stack.upstream.records()[before:], token)} == {sub}
    other = stack.token("cognito-other-client")
    before, refused = stack.upstream.count(), stack.denials("jwt_audience")
    _assert_challenge(_post(stack, initialize_request(id="other"), bearer(other)), stack, invalid=True)
    assert stack.upstream.count() == before and stack.denials("jwt_audience") >= refused + 1


def test_an_abrupt_key_rotation_is_picked_up_on_the_unknown_kid_without_restart(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path, own_idp: idp_support.Idp
) -> None:
    # Periodic refresh far away: only the unknown kid can make mcp-warden fetch again.
    stack = idp_support.start_jwt_stack(
        procs, tmp_path, envoy_bin=envoy_bin, warden_bin=warden_bin, idp=own_idp, jwt_extra={"jwks_refresh_interval": "1h"}
    )
    pid = stack.warden.proc.pid
    old = stack.token("alice-agent")
    assert _status(stack, old) == 200

    new_kids = own_idp.rotate(keep_old=False)
    new = stack.token("alice-agent")
    assert jwt.get_unverified_header(new)["kid"] in new_kids
    fetches = own_idp.stats()["jwks"]
    assert _status(stack, new) == 401, "mcp-warden cannot know the new key yet"
    harness.wait_until(
        lambda: _status(stack, new, id=3) == 200,
        timeout=20,
        what="waiting for the new key to be fetched",
        procs=[stack.warden.proc],
    )
    assert own_idp.stats()["jwks"] > fetches
    resp = _post(stack, initialize_request(id=4), bearer(old))
    _assert_challenge(resp, stack, invalid=True)  # the old key is no longer published
    assert stack.warden.proc.alive() and stack.warden.proc.pid == pid, "mcp-warden was not restarted"
    assert stack.counter("mcp_warden_jwks_fetches_total", result="ok") >= 2


def test_a_published_rotation_is_picked_up_by_the_periodic_refresh(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path, own_idp: idp_support.Idp
) -> None:
    stack = idp_support.start_jwt_stack(
        procs,
        tmp_path,
        envoy_bin=envoy_bin,
        warden_bin=warden_bin,
        idp=own_idp,
        jwt_extra={"jwks_refresh_interval": "2s"},
    )
    old = stack.token("carol-agent")  # ES256
    assert _status(stack, old) == 200
    own_idp.rotate(keep_old=True)  # done right: the old key stays published
    fetches = own_idp.stats()["jwks"]
    harness.wait_until(
        lambda: own_idp.stats()["jwks"] >= fetches + 1,
        timeout=20,
        what="waiting for a periodic JWKS fetch",
        procs=[stack.warden.proc],
    )
    unknown_kid_refusals = stack.denials("jwt_unknown_kid")
    new = stack.token("carol-agent")
    assert _status(stack, new) == 200, "the periodic refresh already knew the new key"
    assert _status(stack, old, id=2) == 200, "tokens signed by the still-published old key keep working"
    assert stack.denials("jwt_unknown_kid") == unknown_kid_refusals


def test_cached_keys_survive_an_idp_outage_and_a_check_never_waits_for_the_idp(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path, own_idp: idp_support.Idp
) -> None:
    stack = idp_support.start_jwt_stack(procs, tmp_path, envoy_bin=envoy_bin, warden_bin=warden_bin, idp=own_idp)
    token = stack.token("alice-agent")
    assert _status(stack, token) == 200
    unknown = idp_support.with_kid(token, "not-yet-published")

    # The IdP stops answering: a refresh asked for by an unknown kid hangs in the background
    # (up to mcp-warden's fetch timeout), while checks keep answering from the cache.
    own_idp.set_mode("hang")
    for i in range(3):
        started = time.monotonic()
        assert _status(stack, unknown, id=f"u{i}") == 401
        assert _status(stack, token, id=f"k{i}") == 200
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, f"two checks took {elapsed:.2f}s while the IdP hangs"

    # The IdP fails outright: fetches fail and are counted; the cached keys stay.
    own_idp.set_mode("down")
    errors = stack.counter("mcp_warden_jwks_fetches_total", result="error")
    harness.wait_until(
        lambda: _status(stack, unknown, id="again") == 401
        and stack.counter("mcp_warden_jwks_fetches_total", result="error") > errors,
        timeout=30,
        what="waiting for a failed JWKS fetch to be counted",
        procs=[stack.warden.proc],
    )
    assert _status(stack, token, id="down") == 200

    # The IdP is gone for good: still served from the cache.
    own_idp.proc.kill()
    assert _status(stack, token, id="gone") == 200
    assert stack.warden.proc.alive()


# ---------------------------------------------------------------------------------------
# Claims read strictly (issue 26)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def claims_stack(
    tmp_path_factory: pytest.TempPathFactory, envoy_bin: Path, warden_bin: Path
) -> Iterator[JwtStack]:
    """An IdP + stack whose demo app sends `X-Tenant: {{external.tenant}}` upstream and whose
    policy has roles templated on the `mytools` claim."""
    work = tmp_path_factory.mktemp("jwt-claims")
    group = harness.ProcessGroup(work / "logs")
    try:
        idp = idp_support.start_idp(group, work / "idp")
        yield idp_support.start_jwt_stack(
            group,
            work,
            envoy_bin=envoy_bin,
            warden_bin=warden_bin,
            idp=idp,
            jwt_extra={
                "traits": {"groups": "groups", "tenant": "tid", "mytools": "mytools"},
                "claims_to_roles": idp_support.TRAIT_CLAIMS_TO_ROLES,
            },
            extra_policy=idp_support.TRAIT_ROLES,
            demo_headers=["X-Tenant: {{external.tenant}}"],
        )
    finally:
        group.stop_all()


def _refused(stack: JwtStack, token: str, reason: str, *, status: int = 401) -> None:
    """Two requests with `token`: each refused with `status`, counted under `reason`, and
    nothing forwarded."""
    before_records = stack.upstream.count()
    before = stack.denials(reason)
    call = jsonrpc("tools/call", {"name": "get_weather", "arguments": {}}, id=2)
    for message in (initialize_request(id="r-1"), call):
        resp = _post(stack, message, bearer(token))
        if status == 401:
            _assert_challenge(resp, stack, invalid=True)
        else:
            assert resp.status_code == status, f"{resp.status_code} {resp.text}\n{_logs(stack)}"
        assert resp.json()["id"] == message["id"], resp.text
    assert stack.upstream.count() == before_records, "something reached the upstream"
    assert stack.denials(reason) >= before + 2, f"not refused as {reason}\n{stack.metrics()}"


DUPLICATES = {
    "email": '"email":"admin2@corp.example"',
    "groups": '"groups":["readers"]',
    "escaped-key": '"\\u0065mail":"admin2@corp.example"',
    "nested": '"profile":{"tid":"tenant-a","tid":"tenant-b"}',
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_a_claim_named_twice_is_malformed_though_the_idp_signed_it(claims_stack: JwtStack, case: str) -> None:
    real = claims_stack.token("alice-agent")
    resigned = idp_support.resigned(claims_stack.idp, real)
    assert _status(claims_stack, resigned) == 200, "the provider's key signs what the control is given"
    forged = idp_support.with_duplicate_claim(claims_stack.idp, real, DUPLICATES[case])
    _refused(claims_stack, forged, "jwt_malformed")


def test_a_header_key_named_twice_is_malformed_though_the_idp_signed_it(claims_stack: JwtStack) -> None:
    real = claims_stack.token("alice-agent")
    header, _, _ = idp_support.parts(real)
    payload = idp_support.unb64url(real.split(".")[1]).decode()
    text = f'{{"alg":"RS256","typ":"JWT","typ":"at+jwt","kid":"{header["kid"]}"}}'
    _refused(claims_stack, claims_stack.idp.sign_text(header["kid"], text, payload), "jwt_malformed")


@pytest.mark.parametrize("case", list(idp_support.LOOK_ALIKES))
def test_a_look_alike_username_is_refused(claims_stack: JwtStack, case: str) -> None:
    token = claims_stack.token(f"lookalike-{case}-agent")
    assert jwt.decode(token, options={"verify_signature": False})["email"] == idp_support.LOOK_ALIKES[case]
    reason = idp_support.LOOK_ALIKE_REASONS[case]
    _refused(claims_stack, token, reason, status=401 if reason.startswith("jwt_") else 403)


@pytest.mark.parametrize("case", list(idp_support.EMAIL_VERIFIED))
def test_email_verified_counts_only_as_true_or_the_string_true(claims_stack: JwtStack, case: str) -> None:
    token = claims_stack.token(f"verified-{case}-agent")
    flag = jwt.decode(token, options={"verify_signature": False})["email_verified"]
    assert flag == idp_support.EMAIL_VERIFIED[case], flag
    if case == "true-text":
        assert _status(claims_stack, token) == 200, _logs(claims_stack)
    else:
        _refused(claims_stack, token, "jwt_email_unverified")


def _tenant_headers(stack: JwtStack, client_id: str) -> list[list[str]]:
    """The X-Tenant values each upstream request got for an initialize with `client_id`'s
    token (and a forged X-Tenant of the client's own)."""
    before = stack.upstream.count()
    headers = {**bearer(stack.token(client_id)), "x-tenant": "forged"}
    resp = _post(stack, initialize_request(id=client_id), headers)
    assert resp.status_code == 200, f"{resp.status_code} {resp.text}\n{_logs(stack)}"
    records = stack.upstream.records()[before:]
    assert records, "nothing reached the upstream"
    return [harness.record_headers(rec, "x-tenant") for rec in records]


def test_a_list_of_tenants_and_one_value_holding_the_separator_never_give_the_same_header(
    claims_stack: JwtStack,
) -> None:
    assert _tenant_headers(claims_stack, "tenants-list-agent") == [["tenant-a,tenant-b"]]
    # "tenant-a,tenant-b" as one value: the header is removed (the client's copy too), the
    # request still goes on.
    assert _tenant_headers(claims_stack, "tenants-joined-agent") == [[]]


def test_claim_values_are_literals_in_role_templates_unless_the_role_opts_in(claims_stack: JwtStack) -> None:
    # mytools: ["*", "^.*$", "delete_*", "get_weather"] under a role with no option.
    token = claims_stack.token("wildcard-agent")
    before = claims_stack.upstream.count()
    run = harness.run_async(harness.mcp_list_and_call(claims_stack.mcp_url, bearer(token), "delete_file", {"path": "x"}))
    assert run.tool_names == ["get_weather"], run.tool_names
    assert run.error is not None and run.error.code == ERR_INVALID_PARAMS, run
    assert "delete_file" not in claims_stack.upstream.tool_calls(claims_stack.upstream.records()[before:])
    weather = harness.run_async(harness.mcp_list_and_call(claims_stack.mcp_url, bearer(token), "get_weather", {"city": "x"}))
    assert weather.error is None, weather.error
    # mytools: ["delete_*"] under the role with options.idp_trait_patterns: true.
    token = claims_stack.token("pattern-agent")
    run = harness.run_async(harness.mcp_list_and_call(claims_stack.mcp_url, bearer(token), "delete_file", {"path": "x"}))
    assert run.error is None, run.error
    assert run.tool_names == ["delete_file"], run.tool_names
