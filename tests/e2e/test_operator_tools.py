"""The operator tools of the real `mcp-warden` binary (issue 23, docs/operator-tools.md):
`test`, `explain` for any identity, `ls`, `client-config`, `completions`.

Contract:
- `test PATH…` runs policy test files; exit 0 when all pass, 1 on any mismatch or error; a
  case naming an unknown user, app or role is an error, never a pass; `--output json`.
- `explain` takes `--user`, `--roles` or `--claims`; exit 0 allow, 1 deny, 2 usage or
  unknown identity/app; `--output json` names decision, role, rule and reason.
- `--config` and `MCP_WARDEN_CONFIG` are the same input.
- `ls apps|roles|users` never prints a key or a hash; `ls tools` marks what the live list
  filter shows a user, and what the live check lets it call.
- `client-config` prints each client's documented shape, with the key only referenced; the
  `json` form is used by the real MCP SDK client through the real Envoy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import harness
import pytest

REPO = harness.REPO_ROOT
POLICY_TESTS = REPO / "tests" / "policy"
SEED_CONFIG = POLICY_TESTS / "seed" / "mcp-warden.yaml"
SEED_RULE = "^(get|query|list|search|find)_.*$"


def run(binary: Path, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={"RUST_LOG": "warn", "PATH": "/usr/bin:/bin", **(env or {})},
    )


def rc(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, (
        f"exit {result.returncode}, expected {code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )


# ---------------------------------------------------------------------------------------
# test
# ---------------------------------------------------------------------------------------


def test_the_shipped_policy_tests_pass(warden_bin: Path) -> None:
    result = run(warden_bin, "test", POLICY_TESTS)
    rc(result, 0)
    assert re.search(r"^\d+ passed, 0 failed, 0 errors$", result.stdout, re.M), result.stdout
    report = json.loads(run(warden_bin, "test", POLICY_TESTS, "--output", "json").stdout)
    assert report["failed"] == 0 and report["errors"] == 0, report
    files = {c["file"] for c in report["cases"]}
    assert any(f.endswith("demo_test.yaml") for f in files) and any(f.endswith("seed_test.yaml") for f in files)
    assert report["passed"] == len(report["cases"]) >= 20


def write_tests(path: Path, *cases: dict[str, Any], config: Path | None = SEED_CONFIG) -> Path:
    doc: dict[str, Any] = {"tests": list(cases)}
    if config is not None:
        doc["config"] = str(config)
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


GOOD = {"name": "alice reads", "user": "alice", "app": "bedrock-mcp", "tool": "get_weather", "expect": "allow"}


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"expect": "deny"}, "decision"),
        ({"role": "mcp-user"}, "role"),
        ({"rule": "get_*"}, "rule"),
        ({"reason": "denied_by_role"}, "reason"),
    ],
    ids=["decision", "role", "rule", "reason"],
)
def test_a_mismatch_fails_the_run_and_says_what_differs(
    warden_bin: Path, tmp_path: Path, change: dict[str, str], detail: str
) -> None:
    f = write_tests(tmp_path / "t.yaml", GOOD, {**GOOD, "name": "wrong", **change})
    result = run(warden_bin, "test", f)
    rc(result, 1)
    assert "1 passed, 1 failed, 0 errors" in result.stdout, result.stdout
    assert f"{detail} differs" in result.stdout, result.stdout
    report = json.loads(run(warden_bin, "test", f, "--output", "json").stdout)
    assert [c["status"] for c in report["cases"]] == ["pass", "fail"], report


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"user": "mallory"}, "unknown user 'mallory'"),
        ({"app": "nope-mcp"}, "unknown app 'nope-mcp'"),
        ({"role": "bedrock-mcp-readwrite"}, "unknown role 'bedrock-mcp-readwrite'"),
        ({"user": None, "roles": ["ghost"]}, "ghost"),
        ({"tool": None}, "name exactly one request"),
    ],
    ids=["user", "app", "expected-role", "identity-role", "no-request"],
)
def test_a_case_naming_something_unknown_is_an_error_not_a_pass(
    warden_bin: Path, tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    case = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    # Both expectations: whichever the case says, an unknown name never passes.
    for expect in ("allow", "deny"):
        f = write_tests(tmp_path / f"t-{expect}.yaml", {**case, "expect": expect})
        result = run(warden_bin, "test", f)
        rc(result, 1)
        assert "0 passed, 0 failed, 1 errors" in result.stdout, result.stdout
        assert needle in result.stdout, result.stdout


SHADOW_POLICY = """\
kind: app
metadata: {name: files, labels: {env: dev}}
spec: {uri: "https://files.example.com/mcp", public_addr: "files.example.com"}
---
kind: role
version: v8
metadata: {name: files-user}
spec:
  allow:
    app_labels: {env: dev}
    mcp: {tools: ["*"]}
  deny:
    mcp:
      tool_rules:
      - tools: [delete_file]
        mode: audit
---
kind: user
metadata: {name: dana}
spec: {roles: [files-user]}
"""


def test_a_shadow_rule_is_shown_beside_the_decision_and_never_decides(warden_bin: Path, tmp_path: Path) -> None:
    """`mcp-warden test` prints what a `mode: audit` rule would have done, and the case is
    judged on the real decision (the shadow deny does not deny)."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "files.yaml").write_text(SHADOW_POLICY)
    config = tmp_path / "mcp-warden.yaml"
    config.write_text('policy: ["policy/"]\n')
    case = {"name": "shadowed", "user": "dana", "app": "files", "tool": "delete_file", "expect": "allow"}
    other = {"name": "unshadowed", "user": "dana", "app": "files", "tool": "read_file", "expect": "allow"}
    f = write_tests(tmp_path / "t.yaml", case, other, config=config)
    result = run(warden_bin, "test", f)
    rc(result, 0)
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.strip().startswith("pass")}
    assert "; shadow would_deny (role 'files-user', rule 'tool_rules[0]')" in lines["shadowed"], result.stdout
    assert "; shadow" not in lines["unshadowed"], result.stdout
    report = json.loads(run(warden_bin, "test", f, "--output", "json").stdout)
    got = {c["name"]: c["got"] for c in report["cases"]}
    assert got["shadowed"].startswith("allow") and "shadow would_deny" in got["shadowed"], got


def test_a_test_file_that_is_not_valid_is_a_usage_error(warden_bin: Path, tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("tests:\n- name: x\n  user: alice\n  app: demo\n  tool: echo\n  expekt: allow\n")
    result = run(warden_bin, "test", f)
    rc(result, 2)
    assert "expekt" in result.stderr, result.stderr


def test_directories_are_searched_for_test_files_only(warden_bin: Path, tmp_path: Path) -> None:
    write_tests(tmp_path / "a_test.yaml", GOOD)
    (tmp_path / "policy.yaml").write_text("kind: role\nnot: a test file\n")
    result = run(warden_bin, "test", tmp_path)
    rc(result, 0)
    assert "1 passed" in result.stdout, result.stdout


# ---------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------


def explain(binary: Path, *args: str | Path, env: dict[str, str] | None = None):
    return run(binary, "explain", *args, env=env)


def test_explain_exit_codes_are_allow_0_deny_1_unknown_2(warden_bin: Path) -> None:
    c = ("--config", SEED_CONFIG, "--app", "bedrock-mcp")
    rc(explain(warden_bin, *c, "--user", "alice", "--tool", "get_weather"), 0)
    rc(explain(warden_bin, *c, "--user", "alice", "--tool", "delete_file"), 1)
    unknown = explain(warden_bin, *c, "--user", "mallory", "--tool", "get_weather")
    rc(unknown, 2)
    assert "mallory" in unknown.stderr, unknown.stderr
    rc(explain(warden_bin, "--config", SEED_CONFIG, "--app", "nope", "--user", "alice", "--tool", "x"), 2)
    rc(explain(warden_bin, *c, "--roles", "ghost", "--tool", "get_weather"), 2)
    rc(explain(warden_bin, *c, "--user", "alice"), 2)  # no request: clap's usage error
    rc(explain(warden_bin, *c, "--user", "alice", "--roles", "mcp-user", "--tool", "x"), 2)


def test_explain_json_names_decision_role_rule_and_reason(warden_bin: Path) -> None:
    c = ("--config", SEED_CONFIG, "--app", "bedrock-mcp", "--output", "json")
    allow = explain(warden_bin, *c, "--user", "erin", "--tool", "get_weather")
    rc(allow, 0)
    v = json.loads(allow.stdout)
    assert (v["decision"], v["role"], v["rule"], v["reason"]) == (
        "allow", "bedrock-mcp-readonly", SEED_RULE, "allowed_by_role"
    ), v
    deny = explain(warden_bin, *c, "--user", "erin", "--tool", "query_db")
    rc(deny, 1)
    v = json.loads(deny.stdout)
    assert (v["decision"], v["role"], v["rule"], v["reason"]) == ("deny", "no-db-queries", "query_*", "denied_by_role")
    unknown = explain(warden_bin, *c, "--user", "mallory", "--tool", "x")
    rc(unknown, 2)
    assert "mallory" in json.loads(unknown.stdout)["error"]


def test_explain_evaluates_roles_without_a_user(warden_bin: Path) -> None:
    c = ("--config", SEED_CONFIG, "--app", "bedrock-mcp", "--output", "json")
    v = json.loads(explain(warden_bin, *c, "--roles", "bedrock-mcp-readonly,no-db-queries", "--tool", "query_db").stdout)
    assert (v["decision"], v["role"]) == ("deny", "no-db-queries"), v
    v = json.loads(explain(warden_bin, *c, "--roles", "bedrock-mcp-readonly", "--tool", "query_db").stdout)
    assert (v["decision"], v["role"]) == ("allow", "bedrock-mcp-readonly"), v


def test_explain_maps_claims_as_the_live_service_does(warden_bin: Path, tmp_path: Path) -> None:
    c = ("--config", SEED_CONFIG, "--app", "bedrock-mcp", "--output", "json")
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"email": "carol@example.com", "groups": ["eng-data"], "sub": "00u1"}))
    allowed = explain(warden_bin, *c, "--claims", claims, "--tool", "get_weather")
    rc(allowed, 0)
    v = json.loads(allowed.stdout)
    assert (v["user"], v["role"], v["rule"]) == ("carol@example.com", "bedrock-mcp-readonly", SEED_RULE), v
    rc(explain(warden_bin, *c, "--claims", claims, "--tool", "delete_file"), 1)
    # The same claims with an email the token says is unverified: refused at authentication.
    claims.write_text(json.dumps({"email": "carol@example.com", "email_verified": False, "groups": ["eng-data"]}))
    refused = explain(warden_bin, *c, "--claims", claims, "--tool", "get_weather")
    rc(refused, 1)
    assert json.loads(refused.stdout)["reason"] == "jwt_email_unverified", refused.stdout
    # Claims need the config's authentication.jwt: the embedded default has none.
    rc(explain(warden_bin, "--app", "demo", "--claims", claims, "--tool", "echo"), 2)


def test_config_flag_and_environment_variable_are_the_same_input(warden_bin: Path) -> None:
    args = ("--app", "bedrock-mcp", "--user", "alice", "--tool", "get_weather", "--output", "json")
    by_flag = explain(warden_bin, "--config", SEED_CONFIG, *args)
    by_env = explain(warden_bin, *args, env={"MCP_WARDEN_CONFIG": str(SEED_CONFIG)})
    rc(by_flag, 0)
    assert (by_env.returncode, by_env.stdout) == (by_flag.returncode, by_flag.stdout)
    # Without either, the embedded demo default: it has no app bedrock-mcp.
    rc(explain(warden_bin, *args), 2)
    for cmd in (["ls", "apps"], ["test", POLICY_TESTS / "seed_test.yaml"]):
        flagged = run(warden_bin, *cmd, "--config", SEED_CONFIG)
        env = run(warden_bin, *cmd, env={"MCP_WARDEN_CONFIG": str(SEED_CONFIG)})
        assert (env.returncode, env.stdout) == (flagged.returncode, flagged.stdout), cmd


# ---------------------------------------------------------------------------------------
# ls
# ---------------------------------------------------------------------------------------


def test_ls_lists_the_policy_without_secrets(warden_bin: Path) -> None:
    users = run(warden_bin, "ls", "users", "--output", "json")  # the embedded demo policy
    rc(users, 0)
    rows = {u["user"]: u for u in json.loads(users.stdout)}
    assert rows["alice"]["roles"] == ["mcp-user"] and rows["alice"]["credentials"] == ["api_key×1"], rows
    assert rows["bob"]["apps"] == ["demo"], rows
    text = run(warden_bin, "ls", "users").stdout
    for out in (users.stdout, text):
        assert "sha256" not in out and "6e5d35a55b80" not in out and "demo-alice-key" not in out, out
    apps = json.loads(run(warden_bin, "ls", "apps", "--config", SEED_CONFIG, "--output", "json").stdout)
    bedrock = next(a for a in apps if a["app"] == "bedrock-mcp")
    assert bedrock["labels"] == {"env": "dev", "service": "bedrock"}, bedrock
    assert set(bedrock["roles"]) == {"bedrock-mcp-readonly", "mcp-user", "own-tools"}, bedrock
    roles = json.loads(run(warden_bin, "ls", "roles", "--config", SEED_CONFIG, "--output", "json").stdout)
    readonly = next(r for r in roles if r["role"] == "bedrock-mcp-readonly")
    assert readonly["apps"] == ["bedrock-mcp"] and set(readonly["users"]) == {"alice", "erin"}, readonly
    assert readonly["claims"] == ["groups=eng-*"], readonly


def capture_list(upstream_url: str, method: str, json_response: bool) -> str:
    """A list answer exactly as the upstream sends it (JSON, or the SSE stream)."""
    with harness.http_client() as client:
        init = harness.post_jsonrpc(client, upstream_url, harness.initialize_request())
        assert init.status_code == 200, init.text
        sid = {"mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        harness.post_jsonrpc(client, upstream_url, harness.jsonrpc("notifications/initialized", id=None), sid)
        resp = harness.post_jsonrpc(client, upstream_url, harness.jsonrpc(method, {}, id=7), sid)
        assert resp.status_code == 200, resp.text
        expected = "application/json" if json_response else "text/event-stream"
        assert resp.headers["content-type"].startswith(expected), resp.headers
        return resp.text


@pytest.mark.parametrize("json_response", [False, True], ids=["sse", "json"])
def test_ls_tools_marks_what_the_live_filter_shows_and_the_live_check_allows(
    stack_factory: Any, tmp_path: Path, warden_bin: Path, json_response: bool
) -> None:
    stack = stack_factory(json_response=json_response)
    saved = tmp_path / "tools.txt"
    saved.write_text(capture_list(stack.upstream.url, "tools/list", json_response))
    config = stack.warden.config_path
    result = run(warden_bin, "ls", "tools", "--config", config, "--user", "bob", "--app", "demo",
                 "--tools", saved, "--output", "json")
    rc(result, 0)
    entries = json.loads(result.stdout)["entries"]
    shown = [e["name"] for e in entries if e["list"] == "shown"]
    callable_ = [e["name"] for e in entries if e["call"] == "allow"]
    # What bob really sees through Envoy, with the real MCP client.
    seen = harness.run_async(_list_tools(stack.mcp_url, harness.BOB_KEY))
    assert shown == seen == ["get_weather", "get_time"], (shown, seen)
    assert callable_ == shown
    assert len(entries) == 12
    denied = next(e for e in entries if e["name"] == "delete_file")
    assert (denied["list"], denied["call"], denied["reason"]) == ("hidden", "deny", "not_allowed_by_any_role")
    allowed = next(e for e in entries if e["name"] == "get_time")
    assert (allowed["role"], allowed["rule"]) == ("demo-readonly", "^get_.*$"), allowed
    # And a live call agrees with the "call" column.
    run_ = harness.run_async(harness.mcp_list_and_call(stack.mcp_url, harness.bearer(harness.BOB_KEY), "delete_file",
                                                       {"path": "/x"}))
    assert run_.error is not None
    text = run(warden_bin, "ls", "tools", "--config", config, "--user", "bob", "--app", "demo", "--tools", saved)
    rc(text, 0)
    assert re.search(r"^get_weather\s+shown\s+allow\s+demo-readonly", text.stdout, re.M), text.stdout


async def _list_tools(url: str, key: str) -> list[str]:
    async with harness.mcp_session(url, harness.bearer(key)) as session:
        return [t.name for t in (await session.list_tools()).tools]


def test_ls_prompts_and_resources_read_saved_answers(stack_factory: Any, tmp_path: Path, warden_bin: Path) -> None:
    stack = stack_factory()
    config = stack.warden.config_path
    for kind, method in (("prompts", "prompts/list"), ("resources", "resources/list")):
        saved = tmp_path / f"{kind}.txt"
        saved.write_text(capture_list(stack.upstream.url, method, False))
        # Carol may not use app demo at all: everything hidden and denied.
        result = run(warden_bin, "ls", kind, "--config", config, "--user", "carol", "--app", "demo",
                     f"--{kind}", saved, "--output", "json")
        rc(result, 0)
        entries = json.loads(result.stdout)["entries"]
        assert entries and all((e["list"], e["call"]) == ("hidden", "deny") for e in entries), entries
        # Bob's roles list no prompts or resources: not governed, all shown and allowed.
        result = run(warden_bin, "ls", kind, "--config", config, "--user", "bob", "--app", "demo",
                     f"--{kind}", saved, "--output", "json")
        entries = json.loads(result.stdout)["entries"]
        assert entries and all((e["list"], e["call"], e["reason"]) == ("shown", "allow", "not_governed")
                               for e in entries), entries


def test_ls_tools_refuses_an_answer_the_filter_would_refuse(warden_bin: Path, tmp_path: Path) -> None:
    saved = tmp_path / "dup.json"
    saved.write_text('{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}],"tools":[]}}')
    result = run(warden_bin, "ls", "tools", "--user", "bob", "--app", "demo", "--tools", saved)
    rc(result, 1)
    assert "refuses" in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------
# client-config
# ---------------------------------------------------------------------------------------

URL = "https://mcp.example.com/mcp"


def client_config(binary: Path, client: str, url: str = URL, *extra: str | Path) -> dict[str, Any]:
    result = run(binary, "client-config", "--app", "demo", "--url", url, "--client", client, *extra)
    rc(result, 0)
    assert "demo-alice-key" not in result.stdout and "sha256" not in result.stdout
    return json.loads(result.stdout)


def only_keys(obj: dict[str, Any], required: set[str], optional: set[str] = frozenset()) -> None:
    assert required <= obj.keys() <= required | optional, (sorted(obj), required, optional)


def test_cursor_config_has_cursors_documented_shape(warden_bin: Path) -> None:
    # Cursor's mcp.json: {"mcpServers": {NAME: {"url", "headers"}}}; a remote server is an
    # entry with `url` (not `command`); header values interpolate ${env:NAME}.
    doc = client_config(warden_bin, "cursor")
    only_keys(doc, {"mcpServers"})
    server = doc["mcpServers"]["demo"]
    only_keys(server, {"url", "headers"})
    assert server["url"] == URL
    assert server["headers"] == {"Authorization": "Bearer ${env:MCP_WARDEN_KEY}"}


def test_vscode_config_has_vscodes_documented_shape(warden_bin: Path) -> None:
    # VS Code's mcp.json: {"servers": {NAME: {"type": "http", "url", "headers"}}, "inputs"?};
    # server names match ^[a-zA-Z][a-zA-Z0-9_-]*$; ${env:NAME} is a predefined variable.
    doc = client_config(warden_bin, "vscode", URL, "--env", "TEAM_KEY", "--name", "warden-demo")
    only_keys(doc, {"servers"}, {"inputs"})
    (name, server), = doc["servers"].items()
    assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_-]*", name), name
    only_keys(server, {"type", "url"}, {"headers"})
    assert (server["type"], server["url"]) == ("http", URL)
    assert server["headers"] == {"Authorization": "Bearer ${env:TEAM_KEY}"}


def test_claude_desktop_config_runs_the_documented_mcp_remote_bridge(warden_bin: Path) -> None:
    # claude_desktop_config.json: {"mcpServers": {NAME: {"command", "args", "env"?}}}; remote
    # servers with headers go through `npx mcp-remote URL --header "Authorization: Bearer ${VAR}"`,
    # which expands ${VAR} from the environment its `env` block gives it.
    doc = client_config(warden_bin, "claude")
    only_keys(doc, {"mcpServers"})
    server = doc["mcpServers"]["demo"]
    only_keys(server, {"command", "args"}, {"env"})
    assert server["command"] == "npx"
    args = server["args"]
    assert all(isinstance(a, str) for a in args)
    i = args.index("mcp-remote")
    assert args[i + 1] == URL
    assert args[args.index("--header") + 1] == "Authorization: Bearer ${MCP_WARDEN_KEY}"
    assert set(server["env"]) == {"MCP_WARDEN_KEY"}
    # Plain http off loopback needs mcp-remote's --allow-http.
    insecure = client_config(warden_bin, "claude", "http://mcp.internal:8080/mcp")
    assert "--allow-http" in insecure["mcpServers"]["demo"]["args"]


def test_client_config_refuses_an_unknown_app_and_a_bad_url(warden_bin: Path) -> None:
    rc(run(warden_bin, "client-config", "--app", "nope", "--url", URL, "--client", "json"), 2)
    rc(run(warden_bin, "client-config", "--app", "demo", "--url", "ftp://x", "--client", "json"), 2)


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: env[m.group(1)], value)


def test_json_config_drives_a_real_mcp_client_call_through_envoy(stack: Any, warden_bin: Path) -> None:
    result = run(warden_bin, "client-config", "--config", stack.warden.config_path, "--app", "demo",
                 "--url", stack.mcp_url, "--client", "json")
    rc(result, 0)
    doc = json.loads(result.stdout)
    assert harness.BOB_KEY not in result.stdout
    assert doc["transport"] == "streamable-http" and doc["url"] == stack.mcp_url
    env = {**os.environ, "MCP_WARDEN_KEY": harness.BOB_KEY}
    headers = {k: expand(v, env) for k, v in doc["headers"].items()}
    run_ = harness.run_async(harness.mcp_list_and_call(doc["url"], headers, "get_weather", {"city": "Oslo"}))
    assert run_.error is None, run_.error
    assert "Oslo" in harness.tool_text(run_.result)
    assert run_.tool_names == ["get_weather", "get_time"]


# ---------------------------------------------------------------------------------------
# completions and help
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_cover_every_subcommand(warden_bin: Path, shell: str) -> None:
    result = run(warden_bin, "completions", shell)
    rc(result, 0)
    # fish names a long flag `-l NAME`.
    flag = (lambda f: f"-l {f}") if shell == "fish" else (lambda f: f"--{f}")
    for word in ("explain", "client-config", "ls", "test", flag("claims"), flag("output")):
        assert word in result.stdout, (shell, word)
    if shell == "bash":
        syntax = subprocess.run(["bash", "-n"], input=result.stdout, text=True, capture_output=True, timeout=30)
        assert syntax.returncode == 0, syntax.stderr
