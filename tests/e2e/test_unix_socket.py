"""mcp-warden's gRPC listener on a Unix socket (`listen.grpc: "unix:PATH"`), through real Envoy
whose two gRPC clusters (`mcp_warden_grpc` for ext_authz, `mcp_warden_list` for the ext_proc
list filter) use a `pipe` address.

Contract under test (docs/configuration.md, "Who may connect to the gRPC port can mint tokens"):
- the ready file reports `"grpc": "unix:PATH"`, PATH absolute (a relative one resolves against
  the config file's directory);
- checks and the list filter work over the socket exactly as over TCP: ID token forwarded
  instead of the API key, a denied tool is a -32602 JSON-RPC error echoing the id, list
  answers show only what the user may call;
- the socket file is a socket of mode 0660 whatever the umask;
- it is created with that mode (never wider, not narrowed after the fact) and nothing else is
  left in its directory, start-up successful or not;
- it is removed on SIGTERM, and when start-up fails after the gRPC bind (HTTP port taken,
  invalid policy) — but only while the path still names this process's socket: a file put
  in its place meanwhile stays;
- a stale socket file (connecting is refused) is replaced at start; a live listener on the
  path, a path that is not a socket, or a socket whose state cannot be told (connect fails
  otherwise than refused, e.g. EAGAIN from a full accept queue) is a start-up error naming
  the path, and whatever is there is left alone.

AF_UNIX paths are limited to 107 bytes, so sockets live in a short mkdtemp directory rather
than pytest's tmp_path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import httpx
import jwt
import pytest
import yaml
from harness import (
    ALICE_KEY,
    BOB_KEY,
    ERR_INVALID_PARAMS,
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

# The Envoy clusters that reach mcp-warden's gRPC listener.
GRPC_CLUSTERS = {"mcp_warden_grpc", "mcp_warden_list"}

# Rendered into the template's gRPC port, then replaced by the pipe address: no cluster may
# still point at it.
UNUSED_PORT = 1

SOCKET_MODE = 0o660

# The demo app's upstream port in tests that start no upstream (nothing is forwarded there).
NO_UPSTREAM_PORT = 9

# What bob (role demo-readonly, `^get_.*$`) sees of the upstream's tools, written out by hand
# from harness.default_policy().
BOB_VISIBLE = ["get_weather", "get_time"]


@pytest.fixture
def sock_dir(procs: harness.ProcessGroup) -> Iterator[Path]:
    """A directory short enough for AF_UNIX paths; removed after this test's processes stop."""
    path = Path(tempfile.mkdtemp(prefix="mw"))
    try:
        yield path
    finally:
        procs.stop_all()
        shutil.rmtree(path, ignore_errors=True)


def _listen_unix(grpc: str) -> dict[str, Any]:
    return {"listen": {"grpc": grpc, "http": "127.0.0.1:0"}}


def _envoy_config_over_pipe(sock: Path, warden: harness.Warden, upstream: harness.Upstream) -> str:
    """envoy/envoy-test.yaml with both gRPC clusters on `pipe: {path: SOCK}`, all else as is."""
    config = yaml.safe_load(
        harness.render_envoy_test_config(
            warden_grpc_port=UNUSED_PORT, warden_http_port=warden.http_port, upstream_port=upstream.port
        )
    )
    rewired = set()
    for cluster in config["static_resources"]["clusters"]:
        for group in cluster["load_assignment"]["endpoints"]:
            for lb in group["lb_endpoints"]:
                address = lb["endpoint"]["address"]
                if cluster["name"] in GRPC_CLUSTERS:
                    assert address["socket_address"]["port_value"] == UNUSED_PORT, cluster
                    lb["endpoint"]["address"] = {"pipe": {"path": str(sock)}}
                    rewired.add(cluster["name"])
                else:
                    assert address["socket_address"]["port_value"] != UNUSED_PORT, cluster
    assert rewired == GRPC_CLUSTERS
    return yaml.safe_dump(config, sort_keys=False)


def _start_unix_stack(
    procs: harness.ProcessGroup,
    work_dir: Path,
    sock: Path,
    *,
    envoy_bin: Path,
    warden_bin: Path,
    umask: int | None = None,
) -> harness.Stack:
    """Upstream + mcp-warden on `unix:SOCK` (started under `umask` if given) + Envoy over a pipe."""
    upstream = harness.start_upstream(procs, work_dir / "upstream")
    with _umask(umask):
        warden = harness.start_warden(
            procs,
            work_dir / "warden",
            warden_bin,
            harness.default_policy(upstream.port),
            config_extra=_listen_unix(f"unix:{sock}"),
        )
    envoy = harness.run_envoy(procs, work_dir / "envoy", envoy_bin, _envoy_config_over_pipe(sock, warden, upstream))
    return harness.Stack(upstream, warden, envoy, procs)


@contextlib.contextmanager
def _umask(mask: int | None) -> Iterator[None]:
    """Processes started inside inherit `mask` (None: leave the umask alone)."""
    if mask is None:
        yield
        return
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _stale_socket(path: Path) -> None:
    """A socket file nobody accepts on: bound, then closed without unlinking."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()


def _fill_accept_queue(path: Path, cleanup: contextlib.ExitStack) -> int:
    """Queue non-blocking connections on the listener at `path` (listening, never accepting)
    until the kernel answers EAGAIN: its accept queue is full. The queued clients stay open
    until `cleanup` closes them. Returns how many were queued."""
    for queued in range(8):
        client = cleanup.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        client.setblocking(False)
        try:
            client.connect(str(path))
        except BlockingIOError as exc:
            assert exc.errno == errno.EAGAIN, exc
            return queued
    raise AssertionError(f"the accept queue of {path} never filled up")


def _listing(directory: Path) -> list[str]:
    """Every name in `directory`, hidden ones included."""
    return sorted(os.listdir(directory))


def _failed_start(
    procs: harness.ProcessGroup, work_dir: Path, warden_bin: Path, policy: str, config_extra: dict[str, Any]
) -> str:
    """Runs mcp-warden, which must exit non-zero without becoming ready; returns its stderr."""
    with pytest.raises(harness.HarnessError, match="exited"):
        harness.start_warden(procs, work_dir, warden_bin, policy, config_extra=config_extra)
    proc = procs.procs[-1]
    assert proc.popen.returncode not in (None, 0), proc.describe()
    assert not (work_dir / "mcp-warden.ready.json").exists()
    return proc.stderr_path.read_text()


def _connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        return True


def _verify_id_tokens(stack: harness.Stack, records: list[dict[str, Any]], secret: str, username: str) -> None:
    """Every recorded request carries exactly one `Authorization: Bearer <RS256 ID token>` for
    `username`, verified like a relying party (discovery -> JWKS), and never `secret`."""
    assert records, "nothing reached the upstream"
    discovery = stack.warden.discovery()
    jwk_client = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=True)
    for rec in records:
        for name, value in rec["headers"]:
            assert secret not in name and secret not in value, f"API key leaked upstream in header {name!r}"
        (value,) = record_headers(rec, "authorization")
        scheme, _, token = value.partition(" ")
        assert scheme == "Bearer" and token != secret and token.count(".") == 2, value
        claims = jwt.decode(
            token,
            jwk_client.get_signing_key_from_jwt(token).key,
            algorithms=["RS256"],
            issuer=stack.warden.issuer,
            audience=stack.app_uri,
            options={"require": ["iss", "sub", "aud", "exp", "iat"], "strict_aud": True},
        )
        assert claims["sub"] == username, claims


# ---------------------------------------------------------------------------------------
# Through Envoy over the socket
# ---------------------------------------------------------------------------------------


def test_envoy_checks_over_the_unix_socket_forwarding_an_id_token_and_denying_a_tool(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, envoy_bin: Path, warden_bin: Path, http: httpx.Client
) -> None:
    sock = sock_dir / "grpc.sock"
    stack = _start_unix_stack(procs, tmp_path, sock, envoy_bin=envoy_bin, warden_bin=warden_bin)
    assert stack.warden.grpc == f"unix:{sock}"  # from the ready file

    async def scenario() -> tuple[Any, MCPError | None]:
        async with mcp_session(stack.mcp_url, bearer(BOB_KEY)) as session:
            allowed = await session.call_tool("get_weather", {"city": "Oslo"})
            denied: MCPError | None = None
            try:
                await session.call_tool("delete_file", {"path": "/etc/passwd"})
            except MCPError as exc:
                denied = exc
            return allowed, denied

    allowed, denied = run_async(scenario())
    assert not allowed.is_error and tool_text(allowed) == "weather in Oslo: sunny, 21C"
    assert denied is not None, "delete_file was not denied"
    assert denied.code == ERR_INVALID_PARAMS, (denied.code, denied.message)
    records = stack.upstream.records()
    _verify_id_tokens(stack, records, BOB_KEY, "bob")
    assert stack.upstream.tool_calls() == ["get_weather"]

    # The raw denial: HTTP 200, the JSON-RPC error echoing the id, nothing forwarded.
    call = jsonrpc("tools/call", {"name": "send_email", "arguments": {"to": "x@example.com"}}, id="unix-7")
    resp = post_jsonrpc(http, stack.mcp_url, call, bearer(BOB_KEY))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == "unix-7" and "result" not in body, body
    assert body["error"]["code"] == ERR_INVALID_PARAMS, body
    assert stack.upstream.records() == records

    stats = stack.envoy.stats(r"^cluster\.mcp_warden_grpc\.upstream_rq_total$")
    assert stats.get("cluster.mcp_warden_grpc.upstream_rq_total", 0) >= 5, stats


def test_list_answers_are_filtered_over_the_unix_socket(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, envoy_bin: Path, warden_bin: Path
) -> None:
    sock = sock_dir / "grpc.sock"
    stack = _start_unix_stack(procs, tmp_path, sock, envoy_bin=envoy_bin, warden_bin=warden_bin)

    async def list_as(key: str) -> list[str]:
        async with mcp_session(stack.mcp_url, bearer(key)) as session:
            return [t.name for t in (await session.list_tools()).tools]

    assert run_async(list_as(BOB_KEY)) == BOB_VISIBLE
    assert run_async(list_as(ALICE_KEY)) == TOOL_NAMES
    # The upstream answered the full list both times: bob's view was made by the list filter.
    assert sum(1 for m in stack.upstream.jsonrpc_messages() if m.get("method") == "tools/list") == 2
    stats = stack.envoy.stats(r"^cluster\.mcp_warden_list\.upstream_rq_total$")
    assert stats.get("cluster.mcp_warden_list.upstream_rq_total", 0) >= 2, stats


# ---------------------------------------------------------------------------------------
# The socket file
# ---------------------------------------------------------------------------------------


def test_the_socket_file_is_a_socket_of_mode_0660_whatever_the_umask(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, envoy_bin: Path, warden_bin: Path, http: httpx.Client
) -> None:
    sock = sock_dir / "grpc.sock"
    # Under umask 0 a socket is created 0777: only mcp-warden's chmod makes it 0660.
    stack = _start_unix_stack(procs, tmp_path, sock, envoy_bin=envoy_bin, warden_bin=warden_bin, umask=0)
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == SOCKET_MODE, oct(stat.S_IMODE(st.st_mode))
    assert st.st_uid == os.getuid()
    # The chmod did not cost the listener: Envoy still reaches it.
    resp = post_jsonrpc(http, stack.mcp_url, initialize_request(id=1), bearer(ALICE_KEY))
    assert resp.status_code == 200, resp.text


def test_a_relative_socket_path_resolves_against_the_config_directory(
    procs: harness.ProcessGroup, sock_dir: Path, warden_bin: Path
) -> None:
    work_dir = sock_dir / "w"
    (work_dir / "run").mkdir(parents=True)  # mcp-warden creates the socket, not its directory
    warden = harness.start_warden(
        procs, work_dir, warden_bin, harness.default_policy(NO_UPSTREAM_PORT), config_extra=_listen_unix("unix:run/g.sock")
    )
    sock = work_dir / "run" / "g.sock"
    assert warden.grpc == f"unix:{sock}"
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert _connects(sock)


def test_sigterm_removes_the_socket_file(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, envoy_bin: Path, warden_bin: Path, http: httpx.Client
) -> None:
    sock = sock_dir / "grpc.sock"
    stack = _start_unix_stack(procs, tmp_path, sock, envoy_bin=envoy_bin, warden_bin=warden_bin)
    # Envoy holds an HTTP/2 connection on the socket while mcp-warden shuts down.
    resp = post_jsonrpc(http, stack.mcp_url, initialize_request(id=1), bearer(ALICE_KEY))
    assert resp.status_code == 200, resp.text
    assert os.path.lexists(sock)

    stack.warden.proc.stop()  # SIGTERM; SIGKILL only after harness.STOP_TIMEOUT
    assert stack.warden.proc.popen.returncode == 0, f"not a graceful exit\n{stack.warden.proc.describe()}"
    assert not os.path.lexists(sock), "the socket file outlived mcp-warden"
    # Envoy now fails closed.
    resp = post_jsonrpc(http, stack.mcp_url, initialize_request(id=2), bearer(ALICE_KEY))
    assert resp.status_code == 503, resp.text


# ---------------------------------------------------------------------------------------
# Something already at the path
# ---------------------------------------------------------------------------------------


def test_a_stale_socket_file_is_replaced_at_start(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, envoy_bin: Path, warden_bin: Path, http: httpx.Client
) -> None:
    sock = sock_dir / "grpc.sock"
    _stale_socket(sock)
    # A second name keeps the stale inode alive, so its number cannot be reused by the new socket.
    old_name = sock_dir / "stale.sock"
    os.link(sock, old_name)
    stale = os.stat(sock)
    assert stat.S_ISSOCK(stale.st_mode) and not _connects(sock), "precondition: a stale socket file"

    stack = _start_unix_stack(procs, tmp_path, sock, envoy_bin=envoy_bin, warden_bin=warden_bin)
    fresh = os.stat(sock)
    assert fresh.st_ino != stale.st_ino, "the stale socket file was not replaced"
    assert os.stat(old_name).st_nlink == 1, "the stale socket file was not unlinked"
    assert stat.S_ISSOCK(fresh.st_mode) and stat.S_IMODE(fresh.st_mode) == SOCKET_MODE, oct(fresh.st_mode)
    assert _connects(sock)

    resp = post_jsonrpc(http, stack.mcp_url, initialize_request(id=1), bearer(ALICE_KEY))
    assert resp.status_code == 200, resp.text
    (record,) = stack.upstream.records()
    _verify_id_tokens(stack, [record], ALICE_KEY, "alice")


def _refused_leaving_the_socket_alone(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, warden_bin: Path, sock: Path, error: str
) -> None:
    """`mcp-warden serve` on a live listener's path fails naming `error`, and the listener's
    socket file is left exactly as it was (same inode and mode, nothing new beside it)."""
    before = os.stat(sock)
    stderr = _failed_start(
        procs, tmp_path / "warden", warden_bin, harness.default_policy(NO_UPSTREAM_PORT), _listen_unix(f"unix:{sock}")
    )
    assert f"cannot listen on unix:{sock} (gRPC){error}" in stderr, stderr
    after = os.stat(sock)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), "the live socket file was touched"
    assert _listing(sock_dir) == ["grpc.sock"], "something was left beside the socket"


def test_a_live_listener_on_the_path_is_a_start_up_error_and_is_left_alone(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, warden_bin: Path
) -> None:
    sock = sock_dir / "grpc.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(sock))
        listener.listen(8)
        listener.settimeout(5)
        _refused_leaving_the_socket_alone(procs, tmp_path, sock_dir, warden_bin, sock, "")
        # Still the Python listener's: a connection is accepted on the same file.
        assert _connects(sock)


def test_a_live_listener_with_a_full_accept_queue_is_a_start_up_error_and_is_left_alone(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, warden_bin: Path
) -> None:
    """Regression: connecting to a live listener whose accept queue is full fails with EAGAIN,
    not ECONNREFUSED. Only a refusal proves a socket stale: anything else means mcp-warden
    cannot tell, so it must stop rather than unlink a live peer's socket."""
    sock = sock_dir / "grpc.sock"
    with contextlib.ExitStack() as cleanup:
        listener = cleanup.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        listener.bind(str(sock))
        listener.listen(0)
        queued = _fill_accept_queue(sock, cleanup)
        assert queued >= 1, "precondition: connections waiting in the accept queue"
        _refused_leaving_the_socket_alone(
            procs, tmp_path, sock_dir, warden_bin, sock, ": cannot tell whether the socket is in use"
        )
        # Still the Python listener's: once its queue is drained, it accepts on the same file.
        listener.settimeout(5)
        for _ in range(queued):
            cleanup.enter_context(listener.accept()[0])
        assert _connects(sock)


@pytest.mark.parametrize("kind", ["regular file", "symlink to a regular file"])
def test_a_path_that_is_not_a_socket_is_a_start_up_error_and_is_left_alone(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, warden_bin: Path, kind: str
) -> None:
    """Regression: a path that is not a socket (looked at without following a symlink) is
    never deleted or overwritten, whatever it holds."""
    sock = sock_dir / "grpc.sock"
    data = sock_dir / "data"
    content = b"someone else's data\n"
    if kind == "regular file":
        sock.write_bytes(content)
        expected = ["grpc.sock"]
    else:
        data.write_bytes(content)
        sock.symlink_to(data)
        expected = ["data", "grpc.sock"]
    before = os.lstat(sock)

    stderr = _failed_start(
        procs, tmp_path / "warden", warden_bin, harness.default_policy(NO_UPSTREAM_PORT), _listen_unix(f"unix:{sock}")
    )
    assert f"cannot listen on unix:{sock} (gRPC): the path exists and is not a socket" in stderr, stderr

    after = os.lstat(sock)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), f"the {kind} was replaced"
    assert sock.read_bytes() == content
    if kind != "regular file":
        assert os.readlink(sock) == str(data)
    assert _listing(sock_dir) == expected, "something was left beside the socket"


# ---------------------------------------------------------------------------------------
# The socket file's lifetime after the bind
# ---------------------------------------------------------------------------------------


def _assert_bound_then_removed(sock_dir: Path, stderr: str, failure: str) -> None:
    """The start-up failed with `failure`, which comes after the gRPC bind in start-up order,
    and the directory is as it was: no socket at the path, nothing else."""
    assert failure in stderr, stderr
    assert "(gRPC)" not in stderr, f"the gRPC bind itself failed:\n{stderr}"
    assert _listing(sock_dir) == [], "the socket file outlived the failed start"


def test_a_start_up_failing_on_a_taken_http_port_removes_the_socket_file(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, warden_bin: Path
) -> None:
    """Regression: the gRPC socket is bound before the HTTP port; when the HTTP bind fails, the
    socket file already placed is removed as the process gives up."""
    sock = sock_dir / "grpc.sock"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        stderr = _failed_start(
            procs,
            tmp_path / "warden",
            warden_bin,
            harness.default_policy(NO_UPSTREAM_PORT),
            {"listen": {"grpc": f"unix:{sock}", "http": f"127.0.0.1:{port}"}},
        )
    _assert_bound_then_removed(sock_dir, stderr, f"cannot listen on 127.0.0.1:{port} (HTTP)")


def test_a_start_up_failing_on_an_invalid_policy_removes_the_socket_file(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, warden_bin: Path
) -> None:
    """Regression: the policy is loaded after both binds; when it is invalid, the socket file
    already placed is removed as the process gives up."""
    sock = sock_dir / "grpc.sock"
    stderr = _failed_start(procs, tmp_path / "warden", warden_bin, "kind: bogus\n", _listen_unix(f"unix:{sock}"))
    _assert_bound_then_removed(sock_dir, stderr, "invalid policy")


@pytest.mark.parametrize("replacement", ["regular file", "another socket"])
def test_sigterm_leaves_a_file_that_replaced_the_socket_alone(
    procs: harness.ProcessGroup, tmp_path: Path, sock_dir: Path, warden_bin: Path, replacement: str
) -> None:
    """Regression: on shutdown the path is removed only while it still names this process's
    socket (same inode). A file renamed over it meanwhile — even another socket — stays."""
    sock = sock_dir / "grpc.sock"
    warden = harness.start_warden(
        procs, tmp_path / "warden", warden_bin, harness.default_policy(NO_UPSTREAM_PORT), config_extra=_listen_unix(f"unix:{sock}")
    )
    assert _listing(sock_dir) == ["grpc.sock"], "something was left beside the socket"
    ours = os.stat(sock)
    assert stat.S_ISSOCK(ours.st_mode)

    with contextlib.ExitStack() as cleanup:
        staged = sock_dir / "staged"
        content = b"put here while mcp-warden ran\n"
        if replacement == "regular file":
            staged.write_bytes(content)
        else:
            other = cleanup.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            other.bind(str(staged))
            other.listen(8)
        os.replace(staged, sock)
        theirs = os.stat(sock)
        # mcp-warden's socket still holds its inode, so the number cannot have been reused.
        assert theirs.st_ino != ours.st_ino

        warden.proc.stop()  # SIGTERM; SIGKILL only after harness.STOP_TIMEOUT
        assert warden.proc.popen.returncode == 0, f"not a graceful exit\n{warden.proc.describe()}"

        assert os.path.lexists(sock), f"the {replacement} put at the socket path was removed"
        after = os.stat(sock)
        assert (after.st_ino, after.st_mode) == (theirs.st_ino, theirs.st_mode), f"the {replacement} was touched"
        if replacement == "regular file":
            assert sock.read_bytes() == content
        else:
            assert _connects(sock)
        assert _listing(sock_dir) == ["grpc.sock"], "something was left beside the socket"
