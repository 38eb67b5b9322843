"""Support for test_jwt.py: a real OpenID Provider (npm `oidc-provider`, tests/node/idp.mjs)
on loopback issuing real JWT access tokens, a stack whose mcp-warden trusts it
(`authentication.jwt`), and the hostile tokens the provider itself will not produce, each
crafted from a real token.

A missing `node` or a missing `oidc-provider` install FAILS the test (never skips). Nothing
here sleeps to wait for readiness: the IdP reports its port through a ready file, and every
wait goes through harness.wait_until with a deadline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest

NODE_DIR = harness.REPO_ROOT / "tests" / "node"
IDP_SCRIPT = NODE_DIR / "idp.mjs"
IDP_READY_TIMEOUT = 30.0

SECRET = "e2e-client-secret"

# case -> username claim, and what mcp-warden refuses it as (harness.default_policy has user alice).
LOOK_ALIKES: dict[str, str] = {
    "case": "Alice",
    "fullwidth": "\uff41\uff4c\uff49\uff43\uff45",
    "trailing-space": "alice@example.com ",
    "zero-width": "alice@example.com\u200b",
    "nbsp": "bob\u00a0",
    "bidi": "alice\u202e@example.com",
    "decomposed": "jo\u0301zef@example.com",
}
LOOK_ALIKE_REASONS: dict[str, str] = {
    "case": "identity_rejected",
    "fullwidth": "identity_rejected",
    "trailing-space": "jwt_username",
    "zero-width": "jwt_username",
    "nbsp": "jwt_username",
    "bidi": "jwt_username",
    "decomposed": "jwt_username",
}

# case -> email_verified value; only "true-text" is verified.
EMAIL_VERIFIED: dict[str, Any] = {
    "true-text": "true",
    "false-padded": "False ",
    "zero": 0,
    "no": "no",
    "list": [False],
    "upper-true": "TRUE",
}

# Roles for the issue 26.7 clients, beside harness.default_policy()'s.
TRAIT_ROLES = """\
kind: role
version: v8
metadata: {name: idp-tools}
spec:
  allow:
    app_labels: {service: demo}
    mcp: {tools: ["{{external.mytools}}"]}
---
kind: role
version: v8
metadata: {name: idp-tool-patterns}
spec:
  options: {idp_trait_patterns: true}
  allow:
    app_labels: {service: demo}
    mcp: {tools: ["{{external.mytools}}"]}
"""

# Clients of the test IdP: each gets real tokens with these claims (extraTokenClaims) and,
# for some, real provider-side customizations (formats.customizers.jwt).
CLIENTS: list[dict[str, Any]] = [
    {"client_id": "alice-agent", "claims": {"email": "alice@example.com", "groups": ["mcp-admins", "staff"]}},
    {"client_id": "bob-agent", "alg": "PS256", "claims": {"email": "bob@example.com", "groups": ["readers"]}},
    {"client_id": "carol-agent", "alg": "ES256", "claims": {"email": "carol@example.com", "groups": ["mcp-admins"]}},
    {"client_id": "rs384-agent", "alg": "RS384", "claims": {"email": "alice@example.com", "groups": ["mcp-admins"]}},
    {
        "client_id": "expired-agent",
        "claims": {"email": "alice@example.com", "groups": ["mcp-admins"]},
        "customize": {"iat_offset": -7200, "exp_offset": -3600},
    },
    {
        "client_id": "future-agent",
        "claims": {"email": "alice@example.com", "groups": ["mcp-admins"]},
        "customize": {"nbf_offset": 3600, "exp_offset": 4000},
    },
    {
        "client_id": "wrong-iss-agent",
        "claims": {"email": "alice@example.com", "groups": ["mcp-admins"]},
        "customize": {"iss": "https://evil.example.com"},
    },
    {"client_id": "nomail-agent", "claims": {"groups": ["mcp-admins"]}},
    # Amazon Cognito's access-token shape: `client_id` and no `aud`.
    {
        "client_id": "cognito-app-client",
        "claims": {"email": "carol@example.com", "groups": ["mcp-admins"]},
        "customize": {"drop_aud": True},
    },
    {
        "client_id": "cognito-other-client",
        "claims": {"email": "carol@example.com", "groups": ["mcp-admins"]},
        "customize": {"drop_aud": True},
    },
    {
        "client_id": "unverified-agent",
        "claims": {"email": "alice@example.com", "email_verified": False, "groups": ["mcp-admins"]},
    },
    # Issue 26.4: names that look like another, or like the policy's user alice.
    *(
        {"client_id": f"lookalike-{case}-agent", "claims": {"email": name, "groups": ["mcp-admins"]}}
        for case, name in LOOK_ALIKES.items()
    ),
    # Issue 26.6: email_verified values other than true / "true".
    *(
        {
            "client_id": f"verified-{case}-agent",
            "claims": {"email": "dave@example.com", "email_verified": flag, "groups": ["mcp-admins"]},
        }
        for case, flag in EMAIL_VERIFIED.items()
    ),
    # Issue 26.5: a list of tenants and one value holding the separator.
    *(
        {"client_id": f"tenants-{case}-agent", "claims": {"email": "t@example.com", "groups": ["mcp-admins"], "tid": tid}}
        for case, tid in (("list", ["tenant-a", "tenant-b"]), ("joined", "tenant-a,tenant-b"))
    ),
    # Issue 26.7: a claim whose values read as patterns.
    {
        "client_id": "wildcard-agent",
        "claims": {
            "email": "wild@example.com",
            "groups": ["tool-pickers"],
            "mytools": ["*", "^.*$", "delete_*", "get_weather"],
        },
    },
    {
        "client_id": "pattern-agent",
        "claims": {"email": "pat@example.com", "groups": ["pattern-pickers"], "mytools": ["delete_*"]},
    },
]

# claims_to_roles against harness.default_policy()'s roles.
CLAIMS_TO_ROLES = [
    {"claim": "groups", "value": "mcp-admins", "roles": ["demo-full"]},
    {"claim": "groups", "value": "read*", "roles": ["demo-readonly"]},
    {"claim": "email", "value": "^.*@other\\.example$", "roles": ["other-only"]},
]


# With TRAIT_ROLES loaded: the claims_to_roles of a claims stack.
TRAIT_CLAIMS_TO_ROLES = [
    *CLAIMS_TO_ROLES,
    {"claim": "groups", "value": "tool-pickers", "roles": ["idp-tools"]},
    {"claim": "groups", "value": "pattern-pickers", "roles": ["idp-tool-patterns"]},
]


def require_node() -> Path:
    """The `node` binary, with oidc-provider installed in tests/node; fails the test otherwise."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: the JWT tests need Node.js >= 20 (tests/node/package.json)", pytrace=False)
    if not (NODE_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        pytest.fail(
            "npm package oidc-provider is not installed: run `npm ci --prefix tests/node` (scripts/test.sh does)",
            pytrace=False,
        )
    return Path(node)


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (for Envoy's listener, which
    mcp-warden must name in its resource metadata URL before Envoy starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Idp:
    proc: harness.ManagedProcess
    port: int
    issuer: str

    @property
    def control(self) -> str:
        return f"{self.issuer}/__test"

    def discovery(self) -> dict[str, Any]:
        resp = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        resp.raise_for_status()
        return resp.json()

    def jwks(self) -> dict[str, Any]:
        resp = httpx.get(self.discovery()["jwks_uri"], timeout=10)
        resp.raise_for_status()
        return resp.json()

    def token(self, client_id: str, resource: str, *, token_endpoint: str | None = None) -> str:
        """A real access token from the client_credentials grant (RFC 8707 `resource`)."""
        resp = httpx.post(
            token_endpoint or f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "resource": resource, "scope": "mcp"},
            auth=(client_id, SECRET),
            timeout=10,
        )
        assert resp.status_code == 200, f"token request for {client_id} failed: {resp.status_code} {resp.text}"
        body = resp.json()
        assert body["token_type"].lower() == "bearer", body
        return str(body["access_token"])

    def rotate(self, *, keep_old: bool) -> list[str]:
        resp = httpx.post(f"{self.control}/rotate", params={"keep_old": "1" if keep_old else "0"}, timeout=10)
        resp.raise_for_status()
        return list(resp.json()["kids"])

    def set_mode(self, mode: str) -> None:
        httpx.post(f"{self.control}/mode", params={"m": mode}, timeout=10).raise_for_status()

    def sign_text(self, kid: str, header: str, payload: str) -> str:
        """A token over these exact JSON texts, signed RS256 by the provider's own key `kid`."""
        resp = httpx.post(
            f"{self.control}/sign", json={"kid": kid, "header": header, "payload": payload}, timeout=10
        )
        resp.raise_for_status()
        return str(resp.json()["token"])

    def stats(self) -> dict[str, Any]:
        resp = httpx.get(f"{self.control}/stats", timeout=10)
        resp.raise_for_status()
        return resp.json()


def start_idp(group: harness.ProcessGroup, work_dir: Path, *, ttl: int = 300, name: str = "idp") -> Idp:
    node = require_node()
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / f"{name}.config.json"
    config.write_text(json.dumps({"clients": [{**c, "client_secret": SECRET} for c in CLIENTS], "ttl": ttl}))
    ready = work_dir / f"{name}.ready.json"
    proc = group.start(
        name, [str(node), str(IDP_SCRIPT), "--config", str(config), "--ready-file", str(ready)], cwd=NODE_DIR
    )
    info = harness.wait_until(
        lambda: harness.read_json_file(ready),
        timeout=IDP_READY_TIMEOUT,
        what=f"waiting for the IdP's ready file {ready}",
        procs=[proc],
    )
    return Idp(proc, int(info["port"]), str(info["issuer"]))


@dataclass
class JwtStack:
    upstream: harness.Upstream
    warden: harness.Warden
    envoy: harness.Envoy
    idp: Idp
    group: harness.ProcessGroup

    @property
    def mcp_url(self) -> str:
        return self.envoy.mcp_url

    @property
    def resource(self) -> str:
        """The MCP endpoint's resource identifier: the token audience mcp-warden accepts."""
        return self.envoy.mcp_url

    def token(self, client_id: str, resource: str | None = None) -> str:
        return self.idp.token(client_id, resource or self.resource)

    def metrics(self) -> str:
        resp = httpx.get(f"{self.warden.http_url}/metrics", timeout=10)
        resp.raise_for_status()
        return resp.text

    def counter(self, name: str, **labels: str) -> float:
        """The value of one Prometheus sample of mcp-warden's /metrics (0 when absent)."""
        for line in self.metrics().splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$", line)
            if not m or m.group(1) != name:
                continue
            found = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(m.group(3))
        return 0.0

    def denials(self, reason: str) -> float:
        return self.counter("mcp_warden_checks_total", decision="deny", reason=reason)


def start_jwt_stack(
    group: harness.ProcessGroup,
    work_dir: Path,
    *,
    envoy_bin: Path,
    warden_bin: Path,
    idp: Idp,
    jwt_extra: dict[str, Any] | None = None,
    order: list[str] | None = None,
    extra_policy: str | None = None,
    demo_headers: list[str] | None = None,
) -> JwtStack:
    """Upstream + mcp-warden trusting `idp` + Envoy on a port chosen up front, so that
    mcp-warden's RFC 9728 metadata URL names Envoy's public listener (as in production,
    where Envoy exposes /.well-known/oauth-protected-resource without ext_authz).
    `extra_policy` is loaded as a second policy file; `demo_headers` ("Name: value") are added
    to the demo app's rewrite after its Authorization."""
    upstream = harness.start_upstream(group, work_dir / "upstream")
    envoy_port = free_port()
    origin = f"http://127.0.0.1:{envoy_port}"
    jwt_config: dict[str, Any] = {
        "issuer": idp.issuer,
        "audiences": [f"{origin}/mcp", f"{origin}/other/mcp"],
        "traits": {"groups": "groups"},
        "claims_to_roles": CLAIMS_TO_ROLES,
        "jwks_min_refresh_interval": "1s",
        "resource_metadata_url": f"{origin}/.well-known/oauth-protected-resource",
        "scopes_supported": ["mcp"],
    }
    jwt_config.update(jwt_extra or {})
    authentication: dict[str, Any] = {"jwt": jwt_config}
    if order is not None:
        authentication["order"] = order
    policy = harness.default_policy(upstream.port)
    if demo_headers:
        bearer_line = '      - "Authorization: Bearer {{internal.id_token}}"\n'
        assert bearer_line in policy, "the demo app's rewrite moved"
        policy = policy.replace(bearer_line, bearer_line + "".join(f'      - "{h}"\n' for h in demo_headers), 1)
    warden = harness.start_warden(
        group,
        work_dir / "warden",
        warden_bin,
        [policy, extra_policy] if extra_policy else policy,
        config_extra={"authentication": authentication},
    )
    config = harness.render_envoy_test_config(
        warden_grpc_port=warden.grpc_port,
        warden_http_port=warden.http_port,
        upstream_port=upstream.port,
        listen_port=envoy_port,
    )
    envoy = harness.run_envoy(group, work_dir / "envoy", envoy_bin, config)
    assert envoy.port == envoy_port, f"Envoy listens on {envoy.port}, not the chosen {envoy_port}"
    return JwtStack(upstream, warden, envoy, idp, group)


# --------------------------------------------------------------------------------------
# Tokens the provider will not produce, crafted from a real one
# --------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), signature


def alg_none(token: str) -> str:
    """The real payload under `alg: none` with an empty signature."""
    header, payload, _ = parts(token)
    return f"{b64url_json({'alg': 'none', 'typ': header.get('typ', 'JWT')})}.{b64url_json(payload)}."


def hs256_with_public_key(token: str, jwks: dict[str, Any]) -> str:
    """The classic confusion: HS256 keyed with the IdP's RSA public key (PEM), same kid."""
    from cryptography.hazmat.primitives import serialization
    from jwt.algorithms import RSAAlgorithm

    header, payload, _ = parts(token)
    jwk = next(k for k in jwks["keys"] if k.get("kid") == header["kid"])
    public = RSAAlgorithm.from_jwk(json.dumps(jwk))
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forged_header = {"alg": "HS256", "typ": header.get("typ", "JWT"), "kid": header["kid"]}
    signing_input = f"{b64url_json(forged_header)}.{b64url_json(payload)}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def with_kid(token: str, kid: str) -> str:
    """The real token under another `kid` (payload and signature untouched)."""
    header, _, _ = parts(token)
    _, payload_b64, signature = token.split(".")
    return f"{b64url_json({**header, 'kid': kid})}.{payload_b64}.{signature}"


def tampered(token: str, **changes: Any) -> str:
    """The real header and signature over a modified payload."""
    header_b64, _, signature = token.split(".")
    _, payload, _ = parts(token)
    return f"{header_b64}.{b64url_json({**payload, **changes})}.{signature}"


def with_duplicate_claim(idp: Idp, token: str, extra: str) -> str:
    """The real token's header and claims as JSON text, with `extra` (text such as
    `"email":"x"`) spliced in before the closing brace, signed again by the provider's own key:
    a token that differs from a real one only by a key named twice."""
    header_b64, payload_b64, _ = token.split(".")
    header = json.loads(unb64url(header_b64))
    payload = unb64url(payload_b64).decode()
    assert payload.endswith("}"), payload
    return idp.sign_text(header["kid"], json.dumps(header, separators=(",", ":")), f"{payload[:-1]},{extra}}}")


def resigned(idp: Idp, token: str) -> str:
    """The real token's header and claims signed again by the provider through the same
    control: the control signs correctly, so a refusal of its duplicate-key tokens is theirs."""
    header_b64, payload_b64, _ = token.split(".")
    header = json.loads(unb64url(header_b64))
    return idp.sign_text(header["kid"], json.dumps(header, separators=(",", ":")), unb64url(payload_b64).decode())
