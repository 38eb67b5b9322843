"""The production reference (envoy/envoy.yaml) holds up at the edge, through real Envoy.

Envoy runs envoy.yaml as shipped, moved onto loopback by edge_support (addresses and file paths
only): TLS on the public listener with its certificate from file-based SDS, the admin API on a
Unix socket, the health/stats listener, AgentCore's cluster pointed at a TLS-1.3-only upstream
(edge_upstream.py, a light server that can hold thousands of SSE streams) with real mcp-warden
checking every request. Each test is a behaviour a user or an operator would notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edge_support
import harness
import httpx
import pytest
import yaml
from harness import ALICE_KEY, api_key_hash, bearer, jsonrpc
from inspect_support import attach_logs

EDGE_UPSTREAM_SCRIPT = harness.E2E_DIR / "edge_upstream.py"
HOST = "localhost"  # the name on every test certificate (downstream and upstream)
# The limits under test, read from envoy.yaml itself.
_HCM = edge_support.public_hcm(yaml.safe_load(edge_support.PROD_CONFIG.read_text()))
MAX_REQUEST_BYTES = _HCM["http_filters"][0]["typed_config"]["with_request_body"]["max_request_bytes"]
REQUEST_HEADERS_TIMEOUT = float(_HCM["request_headers_timeout"].rstrip("s"))
MAX_REQUEST_HEADERS_KB = _HCM["max_request_headers_kb"]
OLD_UPSTREAM_REQUEST_LIMIT = 1024  # Envoy's default circuit breaker (max_requests)
SSE_SESSIONS = OLD_UPSTREAM_REQUEST_LIMIT + 100
SSE_OPEN_DEADLINE = 60.0
CALLS_WHILE_OPEN = 20
# envoy.yaml logs long streams every 60 s; the tests' Envoy every second, to see it happen.
ACCESS_LOG_FLUSH_INTERVAL = "1s"
# What the access log may cost per request, however long the values a client sends.
MAX_ACCESS_LOG_LINE = 4096
# Admin API paths that must never answer over TCP.
ADMIN_PROBES = [
    ("GET", "/config_dump"),
    ("GET", "/server_info"),
    ("POST", "/quitquitquit"),
    ("POST", "/runtime_modify"),
]


def edge_policy(upstream_port: int) -> str:
    """App `bedrock-mcp` (envoy.yaml's context extension) on the test upstream; alice may call
    every tool of it."""
    return f"""\
kind: app
version: v3
metadata:
  name: bedrock-mcp
  labels: {{service: bedrock-mcp}}
spec:
  uri: "mcp+https://{HOST}:{upstream_port}/mcp"
  rewrite:
    headers:
    - name: Authorization
      value: "Bearer {{{{internal.id_token}}}}"
---
kind: role
version: v8
metadata:
  name: bedrock-full
spec:
  allow:
    app_labels: {{service: bedrock-mcp}}
    mcp:
      tools: ["*"]
---
kind: user
version: v2
metadata:
  name: alice
spec:
  roles: [bedrock-full]
  api_keys:
  - "{api_key_hash(ALICE_KEY)}"
"""


@dataclass
class EdgeUpstream:
    proc: harness.ManagedProcess
    port: int
    client_ctx: ssl.SSLContext

    def stats(self) -> dict[str, Any]:
        with httpx.Client(verify=self.client_ctx, timeout=5) as client:
            return client.get(f"https://{HOST}:{self.port}/stats").json()


@dataclass
class Edge:
    group: harness.ProcessGroup
    work: Path
    pki: edge_support.Pki
    upstream: EdgeUpstream
    warden: harness.Warden
    envoy: edge_support.EdgeEnvoy

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.envoy.port}/mcp"

    def client_ctx(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def client(self, timeout: float = 15.0) -> httpx.Client:
        return httpx.Client(verify=self.client_ctx(), timeout=timeout)


def start_edge_upstream(group: harness.ProcessGroup, work: Path, pki: edge_support.Pki) -> EdgeUpstream:
    cert, key = pki.issue(work / "upstream-tls", "upstream", HOST)
    ready = work / "edge-upstream.ready.json"
    proc = group.start(
        "edge-upstream",
        [sys.executable, str(EDGE_UPSTREAM_SCRIPT), "--ready-file", str(ready)]
        + ["--cert", str(cert), "--key", str(key), "--tls13-only"],
        env={"PYTHONUNBUFFERED": "1"},
    )
    info = harness.wait_until(
        lambda: harness.read_json_file(ready),
        timeout=harness.UPSTREAM_READY_TIMEOUT,
        what="waiting for the edge upstream",
        procs=[proc],
    )
    return EdgeUpstream(proc, info["port"], ssl.create_default_context(cafile=str(pki.ca_cert)))


def start_edge(group: harness.ProcessGroup, work: Path, envoy_bin: Path, warden_bin: Path) -> Edge:
    """Everything under `work`, which must be a short path (the admin socket lives there)."""
    pki = edge_support.make_pki(work / "pki")
    cert, key = pki.issue(work / "pki", "edge-v1", HOST, serial=1001)
    edge_support.kubelet_publish(work / "tls", "v1", cert, key)
    upstream = start_edge_upstream(group, work, pki)
    warden = harness.start_warden(group, work / "warden", warden_bin, edge_policy(upstream.port))
    config = edge_support.render_production_loopback(
        work,
        warden=warden,
        upstream_port=upstream.port,
        upstream_host=HOST,
        upstream_ca=pki.ca_cert,
        access_log_flush_interval=ACCESS_LOG_FLUSH_INTERVAL,
    )
    envoy = edge_support.run_production_envoy(group, work, envoy_bin, config)
    return Edge(group, work, pki, upstream, warden, envoy)



@contextlib.contextmanager
def short_work_dir(prefix: str) -> Iterator[Path]:
    """A short directory under /tmp: a Unix socket path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_edge(envoy_bin: Path, warden_bin: Path) -> Iterator[Edge]:
    with short_work_dir("edge") as work:
        group = harness.ProcessGroup(work / "logs")
        try:
            yield start_edge(group, work, envoy_bin, warden_bin)
        finally:
            group.stop_all()


@pytest.fixture
def edge(request: pytest.FixtureRequest, shared_edge: Edge) -> Edge:
    attach_logs(request.node, shared_edge.group)
    for proc in shared_edge.group.procs:
        proc.check_alive("a test started")
    return shared_edge


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def call(name: str, id: int = 1) -> dict[str, Any]:
    return jsonrpc("tools/call", {"name": name, "arguments": {}}, id=id)


def post(client: httpx.Client, url: str, message: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return harness.post_jsonrpc(client, url, message, {**bearer(ALICE_KEY), **(headers or {})})


def assert_envoy_jsonrpc_error(
    resp: httpx.Response | tuple[int, dict[str, str], bytes], status: int, code: int
) -> dict[str, Any]:
    """An answer Envoy made itself, as envoy.yaml's local_reply_config shapes it."""
    if isinstance(resp, httpx.Response):
        got_status, headers, body = resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content
    else:
        got_status, headers, body = resp
    assert got_status == status, (got_status, body[:300])
    assert headers.get("content-type") == "application/json", headers
    msg = json.loads(body)
    assert msg["jsonrpc"] == "2.0" and msg["id"] is None, msg
    assert msg["error"]["code"] == code and msg["error"]["message"], msg
    assert "server" not in headers, headers
    return msg


def tls_socket(edge: Edge, *, timeout: float) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", edge.envoy.port), timeout=timeout)
    ctx = edge.client_ctx()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(raw, server_hostname=HOST)


def read_http_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a content-length body, read until the peer closes or the body
    is complete."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def access_log_rows(envoy: edge_support.EdgeEnvoy) -> list[dict[str, Any]]:
    rows = []
    for line in envoy.proc.stdout_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            row["_line_bytes"] = len(line.encode())
            rows.append(row)
    return rows


def envoy_tcp_listen_ports(pid: int) -> set[int]:
    """Every TCP port process `pid` listens on (its socket inodes against /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_a_call_reaches_a_tls13_only_upstream_and_no_envoy_header_is_disclosed(edge: Edge) -> None:
    # The upstream really refuses anything below TLS 1.3 (the old shipped context's ceiling).
    old = ssl.create_default_context(cafile=str(edge.pki.ca_cert))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", edge.upstream.port), timeout=5) as raw:
        old.wrap_socket(raw, server_hostname=HOST)

    before = edge.upstream.stats()["tls_versions"].get("TLSv1.3", 0)
    with edge.client() as client:
        resp = post(client, edge.url, call("get_weather", id=7))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": "called get_weather"}], "isError": False},
    }
    assert edge.upstream.stats()["tls_versions"].get("TLSv1.3", 0) == before + 1
    assert "server" not in resp.headers, resp.headers
    assert not [h for h in resp.headers if h.lower().startswith("x-envoy")], resp.headers
    # The overload manager bounds downstream connections: Envoy no longer warns that nothing does;
    # and no field envoy.yaml uses is deprecated in Envoy 1.40 (respect_dns_ttl was).
    log = edge.envoy.proc.stderr_path.read_text(errors="replace")
    assert "no configured limit" not in log
    assert "Deprecated field" not in log, [line for line in log.splitlines() if "Deprecated field" in line]


def test_a_slow_client_is_cut_by_request_headers_timeout_with_a_json_408(edge: Edge) -> None:
    started = time.monotonic()
    with tls_socket(edge, timeout=REQUEST_HEADERS_TIMEOUT * 3) as sock:
        sock.sendall(f"POST /mcp HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n".encode())
        answer = read_http_response(sock)
        elapsed = time.monotonic() - started
        rest = sock.recv(1)
    assert_envoy_jsonrpc_error(answer, 408, -32600)
    assert rest == b"", "the connection stays open after the timeout"
    assert REQUEST_HEADERS_TIMEOUT - 1 <= elapsed < REQUEST_HEADERS_TIMEOUT * 3, elapsed


def test_a_body_over_the_limit_gets_a_json_413_and_never_reaches_the_upstream(edge: Edge) -> None:
    posts = edge.upstream.stats()["posts"]
    body = json.dumps(call("x" * (MAX_REQUEST_BYTES + 64 * 1024), id=3))
    with edge.client() as client:
        try:
            resp = post(client, edge.url, body)
        except httpx.TransportError as exc:  # Envoy may answer and close before the upload ends
            pytest.fail(f"Envoy dropped the connection instead of answering 413: {exc!r}")
    assert_envoy_jsonrpc_error(resp, 413, -32600)
    assert edge.upstream.stats()["posts"] == posts


def test_a_header_with_an_underscore_is_refused_with_a_json_400(edge: Edge) -> None:
    posts = edge.upstream.stats()["posts"]
    with edge.client() as client:
        resp = post(client, edge.url, jsonrpc("tools/list", {}, id=4), {"mcp_method": "tools/list"})
    assert_envoy_jsonrpc_error(resp, 400, -32600)
    assert edge.upstream.stats()["posts"] == posts


def test_headers_over_the_limit_get_a_json_431(edge: Edge) -> None:
    posts = edge.upstream.stats()["posts"]
    with edge.client() as client:
        resp = post(client, edge.url, call("get_weather", id=5), {"x-padding": "p" * (MAX_REQUEST_HEADERS_KB * 1024)})
    assert_envoy_jsonrpc_error(resp, 431, -32600)
    assert edge.upstream.stats()["posts"] == posts


def test_mcp_wardens_own_denial_passes_the_local_reply_mapper_untouched(edge: Edge) -> None:
    """A denial is a local reply too: it keeps mcp-warden's body (the request id echoed, its own
    code), which a mapped reply (id null) could not have."""
    with edge.client() as client:
        resp = harness.post_jsonrpc(client, edge.url, call("get_weather", id=4242), bearer("not-a-key"))
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    msg = resp.json()
    assert msg["id"] == 4242, msg
    assert msg["error"]["code"] == harness.ERR_UNAUTHENTICATED, msg


def test_more_sse_sessions_than_the_old_upstream_limit_stay_open_while_calls_succeed(edge: Edge) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = SSE_SESSIONS + 512
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    ctx = edge.client_ctx()
    ctx.set_alpn_protocols(["http/1.1"])
    request = (
        f"GET /mcp HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {ALICE_KEY}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()

    async def open_one(limit: asyncio.Semaphore) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with limit:
            reader, writer = await asyncio.open_connection("127.0.0.1", edge.envoy.port, ssl=ctx, server_hostname=HOST)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"text/event-stream" in head.lower(), head
            return reader, writer

    async def scenario() -> list[int]:
        limit = asyncio.Semaphore(64)
        streams = await asyncio.wait_for(
            asyncio.gather(*(open_one(limit) for _ in range(SSE_SESSIONS))), timeout=SSE_OPEN_DEADLINE
        )
        try:
            # Every stream is open at the upstream, and calls still go through.
            deadline = time.monotonic() + 30
            while (await asyncio.to_thread(edge.upstream.stats))["open_streams"] < SSE_SESSIONS:
                assert time.monotonic() < deadline, "the upstream never saw every stream open"
                await asyncio.sleep(0.1)

            def calls() -> list[int]:
                with edge.client() as client:
                    return [
                        post(client, edge.url, call("get_weather", id=100 + n)).status_code
                        for n in range(CALLS_WHILE_OPEN)
                    ]

            return await asyncio.to_thread(calls)
        finally:
            for _, writer in streams:
                writer.close()

    statuses = asyncio.run(scenario())
    assert statuses == [200] * CALLS_WHILE_OPEN, statuses
    overflow = edge.envoy.admin_get(
        "/stats", filter=r"^cluster\.agentcore\.upstream_rq_pending_overflow$", format="json"
    )
    assert all(s.get("value", 0) == 0 for s in overflow.json()["stats"]), overflow.text


def test_a_certificate_swapped_on_disk_is_served_without_a_restart(edge: Edge) -> None:
    def served_serial() -> int:
        with tls_socket(edge, timeout=5) as sock:
            der = sock.getpeercert(binary_form=True)
        from cryptography import x509

        return x509.load_der_x509_certificate(der).serial_number

    assert served_serial() == 1001
    pid = edge.envoy.proc.pid
    cert, key = edge.pki.issue(edge.work / "pki", "edge-v2", HOST, serial=1002)
    edge_support.kubelet_publish(edge.work / "tls", "v2", cert, key)  # the kubelet's ..data swap
    harness.wait_until(
        lambda: served_serial() == 1002, timeout=30, what="the new certificate served", procs=[edge.envoy.proc]
    )
    assert edge.envoy.proc.pid == pid and edge.envoy.proc.alive()


def test_the_admin_interface_is_on_a_private_unix_socket_and_unreachable_over_tcp(edge: Edge) -> None:
    assert stat.S_IMODE(edge.envoy.admin_socket.stat().st_mode) == 0o600
    assert edge.envoy.admin_get("/ready").text.strip() == "LIVE"
    # Envoy listens on TCP for the public listener and the health/stats listener, nothing else.
    assert envoy_tcp_listen_ports(edge.envoy.proc.pid) == {edge.envoy.port, edge.envoy.health_port}

    health = f"http://127.0.0.1:{edge.envoy.health_port}"
    with httpx.Client(timeout=5) as client:
        assert client.get(f"{health}/ready").text.strip() == "LIVE"
        prom = client.get(f"{health}/stats/prometheus")
        assert prom.status_code == 200 and "envoy_cluster_upstream_rq" in prom.text
        assert "server" not in prom.headers
        for method, path in ADMIN_PROBES + [("POST", "/ready"), ("POST", "/stats/prometheus")]:
            resp = client.request(method, f"{health}{path}")
            assert resp.status_code == 404, (method, path, resp.status_code, resp.text[:200])
    # On the public listener they are ordinary requests, checked by mcp-warden (no key: denied).
    with edge.client() as client:
        for method, path in ADMIN_PROBES:
            resp = client.request(method, f"https://{HOST}:{edge.envoy.port}{path}")
            assert resp.status_code != 200, (method, path, resp.text[:200])
            assert resp.headers.get("content-type", "").startswith("application/json"), (method, path, resp.headers)
    assert edge.envoy.proc.alive()


def test_the_access_log_line_carries_the_new_fields_and_stays_small_for_a_1_mib_tool_name(edge: Edge) -> None:
    name = "t" * (MAX_REQUEST_BYTES - 200)
    marker = f"/mcp?edge-log={'q' * 20000}"
    with edge.client() as client:
        resp = post(client, edge.url.replace("/mcp", marker), call(name, id=9), {"user-agent": "u" * 10000})
    assert resp.status_code in (200, 400), resp.text[:300]

    def row() -> dict[str, Any] | None:
        found = [r for r in access_log_rows(edge.envoy) if str(r.get("path", "")).startswith("/mcp?edge-log=")]
        return found[-1] if found else None

    logged = harness.wait_until(row, timeout=30, what="the access-log line", procs=[edge.envoy.proc])
    assert logged["_line_bytes"] < MAX_ACCESS_LOG_LINE, logged["_line_bytes"]
    assert len(logged["path"]) == 256 and len(logged["user_agent"]) == 128, logged
    tool = logged.get("tool")
    assert tool in (None, "-") or (len(tool) <= 128 and tool.startswith("t" * 16)), tool
    assert logged["client"].startswith("127.0.0.1:"), logged
    assert logged["tls_version"] == "TLSv1.3", logged
    assert logged["route"] == "app_bedrock_mcp", logged
    assert int(logged["bytes_in"]) >= len(name), logged
    assert logged["details"] and logged["details"] != "-", logged
    assert logged["decision"] in ("allow", "deny") and logged["user"] == "alice", logged
    assert logged["mcp_method"] == "tools/call", logged
    for field in ("upstream", "peer_san", "prompt", "resource", "jsonrpc_id", "log_type", "flags", "reason"):
        assert field in logged, field


def test_a_long_sse_stream_is_logged_while_it_lasts(edge: Edge) -> None:
    def periodic_rows() -> list[dict[str, Any]]:
        return [
            r
            for r in access_log_rows(edge.envoy)
            if r.get("log_type") == "DownstreamPeriodic" and r.get("path") == "/mcp?edge-stream=1"
        ]

    with tls_socket(edge, timeout=30) as sock:
        sock.sendall(
            f"GET /mcp?edge-stream=1 HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {ALICE_KEY}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "the stream did not open"
        rows = harness.wait_until(
            periodic_rows, timeout=30, what="a periodic access-log line for the open stream", procs=[edge.envoy.proc]
        )
    assert rows[0]["method"] == "GET" and rows[0]["status"] == 200 and rows[0]["user"] == "alice", rows[0]
    assert rows[0]["route"] == "app_bedrock_mcp", rows[0]


# --------------------------------------------------------------------------------------
# mcp-warden stopped or stuck (issue 22 point 5): JSON 503, never a forwarded request
# --------------------------------------------------------------------------------------


def test_a_stuck_or_stopped_sidecar_gets_a_json_503(
    envoy_bin: Path, warden_bin: Path, request: pytest.FixtureRequest
) -> None:
    with short_work_dir("edgd") as work:
        group = harness.ProcessGroup(work / "logs")
        attach_logs(request.node, group)
        try:
            edge = start_edge(group, work, envoy_bin, warden_bin)
            with edge.client() as client:
                assert post(client, edge.url, call("get_weather", id=1)).status_code == 200
                posts = edge.upstream.stats()["posts"]
                # Stuck: the check times out (ext_authz timeout 0.5 s).
                os.kill(edge.warden.proc.pid, signal.SIGSTOP)
                try:
                    assert_envoy_jsonrpc_error(post(client, edge.url, call("get_weather", id=2)), 503, -32603)
                finally:
                    os.kill(edge.warden.proc.pid, signal.SIGCONT)
                # Stopped: the check cannot be made at all.
                edge.warden.proc.stop()
                assert_envoy_jsonrpc_error(post(client, edge.url, call("get_weather", id=3)), 503, -32603)
                stream = client.get(edge.url, headers={**bearer(ALICE_KEY), "accept": "text/event-stream"})
                assert_envoy_jsonrpc_error(stream, 503, -32603)
            assert edge.upstream.stats()["posts"] == posts
        finally:
            group.stop_all()


def public_route_bucket(route_name: str) -> int:
    """The tokens per fill of a public route's own rate limit, read from envoy.yaml."""
    routes = _HCM["route_config"]["virtual_hosts"][0]["routes"]
    route = next(r for r in routes if r["name"] == route_name)
    limit = route["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    return int(limit["token_bucket"]["tokens_per_fill"])


def test_a_flood_of_the_public_discovery_route_is_cut_with_a_json_429_and_checked_routes_still_answer(
    edge: Edge,
) -> None:
    """The unauthenticated `/.well-known` routes are rate limited per route: past its bucket a
    client gets Envoy's JSON 429 (never mcp-warden's work), while the other public routes and
    the checked MCP route keep answering. At most two fills can be spent inside one fill
    interval, so a 429 is certain within twice the bucket plus one request."""
    bucket = public_route_bucket("oidc_discovery")
    base = f"https://{HOST}:{edge.envoy.port}"
    statuses: list[int] = []
    refused: httpx.Response | None = None
    with edge.client() as client:
        for _ in range(2 * bucket + 1):
            resp = client.get(f"{base}/.well-known/openid-configuration")
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                refused = resp
                break
        assert refused is not None, f"no 429 in {len(statuses)} requests: {set(statuses)}"
        assert set(statuses[:-1]) == {200}, set(statuses)
        assert len(statuses) > bucket // 2, len(statuses)
        assert_envoy_jsonrpc_error(refused, 429, -32600)
        # The other public routes have buckets of their own; the checked route none of these.
        assert client.get(f"{base}/.well-known/jwks-oidc").status_code == 200
        resp = post(client, edge.url, call("get_weather", id=77))
    assert resp.status_code == 200 and resp.json()["id"] == 77, resp.text
