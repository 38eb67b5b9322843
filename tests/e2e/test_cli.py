"""The real `mcp-warden` binary's offline commands: `check`, `explain`, `hash-key`.

Contract (issue 3 point 6, docs/configuration.md "Command line"):
- `check --config FILE`: exit 0 on a valid config and policy; otherwise exit 1 with every
  error on stderr, each naming the file and the bad field or pattern;
- `explain --config FILE --user U --app A (--tool T | --body FILE)`: prints the decision
  and the role and rule that decided it (or that nothing allowed it); exit 0 allow, 1 deny,
  2 unknown user or app (more in test_operator_tools.py);
- `hash-key KEY` (or stdin): prints `sha256:<hex of SHA-256(KEY)>`; an empty key is refused.

Issue 22 (docs/configuration.md "Pre-flight", "Signing keys"):
- `check` fails (1) on what `serve` refuses at start, warns on what is legal but almost surely
  wrong (`--strict` fails on warnings), reads `MCP_WARDEN_CONFIG`, exits 2 on usage errors;
  every finding names file:line:column of the offending node; `--envoy` cross-checks every
  shipped Envoy config with its service config;
- `keys`: `--config` before or after the action; only `init` creates the directory; `rotate`
  and `retire` say why not and when; times are RFC 3339 with a relative hint;
- `serve` with no active key: a WARN and a 503 `/readyz` that say why.

The policies use the seed's snippets verbatim (the `app_service:` block and the
`bedrock-mcp-readonly` role of the AgentCore guide).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import subprocess
from pathlib import Path

import harness
import httpx
import pytest

# --- The seed, verbatim (/work/shared/seeds/000_91aa1b7f9a54a887.txt) -------------------

SEED_APP_SERVICE = """\
app_service:
  enabled: "yes"
  apps:
  - name: "bedrock-mcp"
    uri: "mcp+https://your-mcp-gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp"
    labels:
      env: dev
      service: "bedrock"
    rewrite:
      headers:
      - "Authorization: Bearer {{internal.id_token}}"
"""

SEED_ROLE = """\
kind: role
version: v8
metadata:
  name: bedrock-mcp-readonly
spec:
  allow:
    app_labels:
      'service': 'bedrock'
    mcp:
      # Adjust this list based on the MCP tools exposed by the gateway’s targets.
      tools:
      - ^(get|query|list|search|find)_.*$
"""

SEED_RULE = "^(get|query|list|search|find)_.*$"

ALICE_HASH = harness.api_key_hash(harness.ALICE_KEY)

USERS = f"""\
kind: user
version: v2
metadata:
  name: alice
spec:
  roles: [bedrock-mcp-readonly]
  api_keys: ["{ALICE_HASH}"]
---
kind: role
version: v8
metadata:
  name: no-db-queries
spec:
  deny:
    mcp:
      tools: ["query_*"]
---
kind: user
version: v2
metadata:
  name: erin
spec:
  roles: [bedrock-mcp-readonly, no-db-queries]
---
kind: role
version: v8
metadata:
  name: own-tools
spec:
  allow:
    app_labels: {{service: bedrock}}
    mcp:
      tools: ["{{{{internal.mcp_tools}}}}"]
---
kind: user
version: v2
metadata:
  name: tina
spec:
  roles: [own-tools]
  traits:
    mcp_tools: ["send_email", "create_ticket"]
---
kind: app
version: v3
metadata:
  name: other-mcp
  labels: {{service: other}}
spec:
  uri: "mcp+https://other.example.invalid/mcp"
"""

SEED_POLICY = SEED_APP_SERVICE + "---\n" + SEED_ROLE + "---\n" + USERS


def run(binary: Path, *args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *map(str, args)],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={"RUST_LOG": "warn", "PATH": "/usr/bin:/bin"},
    )


def write_config(directory: Path, *policies: str, extra: str = "") -> Path:
    """A service config beside one policy file per text (relative paths: resolved against
    the config's directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i, text in enumerate(policies):
        name = f"policy-{i}.yaml"
        (directory / name).write_text(text)
        names.append(name)
    config = directory / "mcp-warden.yaml"
    config.write_text(
        'listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:0"}\n'
        'state_dir: "state"\n'
        f"policy: {json.dumps(names)}\n" + extra
    )
    return config


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"


def assert_fails(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not named on stderr:\n{result.stderr}"


# ---------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------


def test_check_accepts_the_seed_app_service_block_and_role_verbatim(warden_bin: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, SEED_POLICY)
    result = run(warden_bin, "check", "--config", config)
    assert_ok(result)
    assert "error" not in result.stderr.lower(), result.stderr


def test_check_accepts_the_seed_snippets_in_separate_files(warden_bin: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, SEED_APP_SERVICE, SEED_ROLE, USERS)
    assert_ok(run(warden_bin, "check", "--config", config))


def test_check_accepts_the_e2e_default_policy(warden_bin: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, harness.default_policy(8080))
    assert_ok(run(warden_bin, "check", "--config", config))


BROKEN_POLICIES = [
    pytest.param(SEED_POLICY.replace("      tools:\n      - ^(get", "      toolz:\n      - ^(get"), ["toolz"],
                 id="unknown-field-in-a-role"),
    pytest.param(SEED_POLICY.replace("    labels:\n      env: dev", "    labelz:\n      env: dev"), ["labelz"],
                 id="unknown-field-in-the-app-service-block"),
    pytest.param(SEED_POLICY.replace(SEED_RULE, "^(get|query_.*$"), ["^(get|query_.*$"], id="bad-regex"),
    pytest.param(SEED_POLICY.replace("roles: [bedrock-mcp-readonly]", "roles: [bedrock-mcp-readwrite]"),
                 ["bedrock-mcp-readwrite"], id="unknown-role"),
    pytest.param(SEED_POLICY + "---\n" + SEED_ROLE, ["bedrock-mcp-readonly"], id="duplicate-role"),
    pytest.param(SEED_POLICY + '---\nkind: app\nversion: v3\nmetadata:\n  name: bedrock-mcp\n'
                 '  labels: {service: bedrock}\nspec:\n  uri: "mcp+https://x.example.invalid/mcp"\n',
                 ["bedrock-mcp"], id="duplicate-app"),
    pytest.param(SEED_POLICY + "---\nkind: user\nversion: v2\nmetadata:\n  name: alice\nspec:\n  roles: []\n",
                 ["alice"], id="duplicate-user"),
]


@pytest.mark.parametrize(("policy", "needles"), BROKEN_POLICIES)
def test_check_refuses_a_bad_policy_naming_the_file_and_what_is_wrong(
    warden_bin: Path, tmp_path: Path, policy: str, needles: list[str]
) -> None:
    config = write_config(tmp_path, policy)
    assert_fails(run(warden_bin, "check", "--config", config), "policy-0.yaml", *needles)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("inspektion: {max_depth: 4}\n", "inspektion"),
        ("inspection: {max_depht: 4}\n", "max_depht"),
        ("inspection: {denied_status: 500}\n", "denied_status"),
    ],
    ids=["unknown-top-level-field", "unknown-inspection-field", "bad-denied-status"],
)
def test_check_refuses_a_bad_service_config_naming_the_file_and_field(
    warden_bin: Path, tmp_path: Path, extra: str, needle: str
) -> None:
    config = write_config(tmp_path, SEED_POLICY, extra=extra)
    assert_fails(run(warden_bin, "check", "--config", config), "mcp-warden.yaml", needle)


def test_check_reports_every_error_at_once(warden_bin: Path, tmp_path: Path) -> None:
    policy = (
        SEED_POLICY.replace(SEED_RULE, "^(get|query_.*$").replace(
            "roles: [bedrock-mcp-readonly, no-db-queries]", "roles: [bedrock-mcp-readonly, no-such-role]"
        )
        + "---\n"
        + USERS.split("---\n")[1]  # role no-db-queries, a second time
    )
    config = write_config(tmp_path, policy)
    assert_fails(run(warden_bin, "check", "--config", config), "^(get|query_.*$", "no-such-role", "no-db-queries")


def test_check_refuses_a_missing_policy_file_naming_it(warden_bin: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, SEED_POLICY)
    config.write_text(config.read_text().replace('"policy-0.yaml"', '"policy-0.yaml", "not-there.yaml"'))
    assert_fails(run(warden_bin, "check", "--config", config), "not-there.yaml")


# ---------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------


@pytest.fixture
def seed_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "cfg", SEED_POLICY)


def explain(binary: Path, config: Path, user: str, *what: str | Path, app: str = "bedrock-mcp"):
    return run(binary, "explain", "--config", config, "--user", user, "--app", app, *what)


def assert_allow(result: subprocess.CompletedProcess[str], role: str, rule: str) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.stdout.lstrip().lower().startswith("allow"), result.stdout
    assert role in result.stdout and rule in result.stdout, f"role {role!r} / rule {rule!r} not named: {result.stdout}"


def assert_deny(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    text = result.stdout + result.stderr
    assert "deny" in text.lower(), text
    for needle in needles:
        assert needle in text, f"{needle!r} not named: {text}"


@pytest.mark.parametrize("tool", ["get_weather", "query_db", "search_docs"])
def test_explain_allows_a_tool_the_seed_role_matches_and_names_role_and_rule(
    warden_bin: Path, seed_config: Path, tool: str
) -> None:
    assert_allow(explain(warden_bin, seed_config, "alice", "--tool", tool), "bedrock-mcp-readonly", SEED_RULE)


@pytest.mark.parametrize("tool", ["delete_file", "Get_weather", "xget_weather", "send_email"])
def test_explain_denies_a_tool_no_role_allows_and_exits_1(warden_bin: Path, seed_config: Path, tool: str) -> None:
    result = explain(warden_bin, seed_config, "alice", "--tool", tool)
    assert_deny(result, tool)
    assert not result.stdout.lower().lstrip().startswith("allow"), result.stdout


def test_explain_names_the_deny_rule_that_beat_an_allow(warden_bin: Path, seed_config: Path) -> None:
    assert_deny(explain(warden_bin, seed_config, "erin", "--tool", "query_db"), "no-db-queries", "query_*")
    assert_allow(explain(warden_bin, seed_config, "erin", "--tool", "get_weather"), "bedrock-mcp-readonly", SEED_RULE)


def test_explain_expands_trait_templates(warden_bin: Path, seed_config: Path) -> None:
    assert_allow(explain(warden_bin, seed_config, "tina", "--tool", "send_email"), "own-tools", "send_email")
    assert_deny(explain(warden_bin, seed_config, "tina", "--tool", "get_weather"), "get_weather")


def test_explain_denies_an_app_the_user_may_not_use(warden_bin: Path, seed_config: Path) -> None:
    assert_deny(explain(warden_bin, seed_config, "alice", "--tool", "get_weather", app="other-mcp"), "other-mcp")


def test_explain_refuses_an_unknown_user_as_a_usage_error(warden_bin: Path, seed_config: Path) -> None:
    result = explain(warden_bin, seed_config, "mallory", "--tool", "get_weather")
    assert result.returncode == 2, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "unknown user 'mallory'" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("tool", "allowed"), [("get_weather", True), ("find_user", True), ("delete_file", False)]
)
def test_explain_reads_a_jsonrpc_tools_call_body(
    warden_bin: Path, seed_config: Path, tmp_path: Path, tool: str, allowed: bool
) -> None:
    body = tmp_path / "call.json"
    body.write_text(json.dumps(harness.jsonrpc("tools/call", {"name": tool, "arguments": {}}, id="e-1")))
    result = explain(warden_bin, seed_config, "alice", "--body", body)
    if allowed:
        assert_allow(result, "bedrock-mcp-readonly", SEED_RULE)
    else:
        assert_deny(result, tool)
    assert tool in result.stdout, result.stdout


def test_explain_body_and_tool_agree(warden_bin: Path, seed_config: Path, tmp_path: Path) -> None:
    body = tmp_path / "call.json"
    body.write_text(json.dumps(harness.jsonrpc("tools/call", {"name": "query_db", "arguments": {}}, id=3)))
    by_body = explain(warden_bin, seed_config, "erin", "--body", body)
    by_tool = explain(warden_bin, seed_config, "erin", "--tool", "query_db")
    assert (by_body.returncode, by_body.stdout) == (by_tool.returncode, by_tool.stdout)


def test_explain_allows_an_ungoverned_method_body(warden_bin: Path, seed_config: Path, tmp_path: Path) -> None:
    body = tmp_path / "list.json"
    body.write_text(json.dumps(harness.jsonrpc("tools/list", {}, id=1)))
    result = explain(warden_bin, seed_config, "alice", "--body", body)
    assert result.returncode == 0, result
    assert result.stdout.lower().lstrip().startswith("allow"), result.stdout


@pytest.mark.parametrize(
    "text",
    [
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","name":"delete_file"}}',
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"delete_file","name":"get_weather"}}',
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}',
        '{"jsonrpc":"2.0","id":1,"method":"tools/call"',
    ],
    ids=["duplicate-name", "case-variant", "missing-name", "invalid-json"],
)
def test_explain_denies_a_body_the_gate_would_refuse(
    warden_bin: Path, seed_config: Path, tmp_path: Path, text: str
) -> None:
    body = tmp_path / "bad.json"
    body.write_text(text)
    assert_deny(explain(warden_bin, seed_config, "alice", "--body", body))


# ---------------------------------------------------------------------------------------
# hash-key
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [harness.ALICE_KEY, "foo", "mcpw_" + "A" * 43, "ключ"])
def test_hash_key_prints_sha256_hex_of_the_key(warden_bin: Path, key: str) -> None:
    result = run(warden_bin, "hash-key", key)
    assert_ok(result)
    expected = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    assert result.stdout.strip() == expected, result.stdout
    assert expected == harness.api_key_hash(key)


def test_hash_key_reads_the_key_from_stdin(warden_bin: Path) -> None:
    result = run(warden_bin, "hash-key", stdin=harness.BOB_KEY + "\n")
    assert_ok(result)
    assert result.stdout.strip() == harness.api_key_hash(harness.BOB_KEY), result.stdout


# ---------------------------------------------------------------------------------------
# check as a pre-flight (issue 22): serve's start-up failures, warnings, --strict, --envoy
# ---------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def run_env(binary: Path, *args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={"RUST_LOG": "warn", "PATH": "/usr/bin:/bin", **env},
    )


def demo_config(tmp_path: Path) -> Path:
    """The embedded default, as a file: the demo policy is what envoy-demo.yaml routes to."""
    config = tmp_path / "demo.yaml"
    config.write_text(f'policy: ["{REPO / "src/defaults/demo-policy.yaml"}"]\nstate_dir: "{tmp_path / "state"}"\n')
    return config


SHIPPED_ENVOY = [
    pytest.param("envoy.yaml", lambda tmp: REPO / "deploy/agentcore/warden.yaml", id="envoy.yaml+deploy/agentcore"),
    pytest.param("envoy-compose.yaml", lambda tmp: REPO / "deploy/compose/warden.yaml", id="envoy-compose.yaml"),
    pytest.param("envoy-demo.yaml", demo_config, id="envoy-demo.yaml+embedded-default"),
]


def test_check_envoy_passes_the_rendered_test_template_with_the_e2e_service_config(
    warden_bin: Path, tmp_path: Path
) -> None:
    """envoy-test.yaml holds ${PLACEHOLDERS}: rendered as the harness renders it, with ports
    nothing listens on (check binds nothing), against the config start_warden writes."""
    grpc, http, upstream = 19191, 19192, 18080
    envoy = tmp_path / "envoy-test.rendered.yaml"
    envoy.write_text(
        harness.render_envoy_test_config(warden_grpc_port=grpc, warden_http_port=http, upstream_port=upstream)
    )
    config = write_config(tmp_path, harness.default_policy(upstream))
    config.write_text(
        config.read_text().replace('"127.0.0.1:0", http: "127.0.0.1:0"', f'"127.0.0.1:{grpc}", http: "127.0.0.1:{http}"')
    )
    assert f"127.0.0.1:{grpc}" in config.read_text()
    result = run(warden_bin, "check", "--config", config, "--envoy", envoy)
    assert_ok(result)
    assert ": error:" not in result.stderr, result.stderr


@pytest.mark.parametrize(("envoy", "config"), SHIPPED_ENVOY)
def test_check_envoy_passes_every_shipped_envoy_config_with_its_service_config(
    warden_bin: Path, tmp_path: Path, envoy: str, config
) -> None:
    """And with --strict: the shipped configs hold every edge invariant (no finding at all
    on the Envoy file; the service configs' own key-directory warnings aside)."""
    result = run(warden_bin, "check", "--config", config(tmp_path), "--envoy", REPO / "envoy" / envoy)
    assert_ok(result)
    assert ": error:" not in result.stderr, result.stderr
    strict = run(warden_bin, "check", "--strict", "--config", config(tmp_path), "--envoy", REPO / "envoy" / envoy)
    assert f"{envoy}:" not in strict.stderr, strict.stderr
    assert ": error:" not in strict.stderr, strict.stderr


def test_check_envoy_warns_on_a_config_without_the_edge_limits(warden_bin: Path, tmp_path: Path) -> None:
    text = (REPO / "envoy/envoy-demo.yaml").read_text()
    bad = text.replace("request_headers_timeout: 10s", "request_headers_timeout: 0s", 1).replace(
        "max_concurrent_streams: 100", "max_concurrent_streams: 1024"
    )
    assert "request_headers_timeout: 0s" in bad and "max_concurrent_streams: 1024" in bad
    envoy = tmp_path / "envoy.yaml"
    envoy.write_text(bad)
    line = lambda needle: bad[: bad.index(needle)].count("\n") + 1  # noqa: E731
    result = run(warden_bin, "check", "--config", demo_config(tmp_path), "--envoy", envoy)
    assert_ok(result)
    assert f"envoy.yaml:{line('max_concurrent_streams: 1024')}:" in result.stderr, result.stderr
    assert "no request_headers_timeout" in result.stderr, result.stderr
    result = run(warden_bin, "check", "--strict", "--config", demo_config(tmp_path), "--envoy", envoy)
    assert_fails(result, "max_concurrent_streams: 1024 is above 128", "no request_headers_timeout")


def test_check_envoy_names_each_mismatch_at_its_line(warden_bin: Path, tmp_path: Path) -> None:
    text = (REPO / "envoy/envoy-demo.yaml").read_text()
    bad = (
        text.replace("max_request_bytes: 1048576", "max_request_bytes: 2097152")
        .replace("context_extensions: {app: demo}", "context_extensions: {app: dmeo}")
        .replace("failure_mode_allow: false", "failure_mode_allow: true", 1)
        .replace("pack_as_bytes: true", "pack_as_bytes: false")
    )
    envoy = tmp_path / "envoy.yaml"
    envoy.write_text(bad)
    line = lambda needle: bad[: bad.index(needle)].count("\n") + 1  # noqa: E731
    result = run(warden_bin, "check", "--config", demo_config(tmp_path), "--envoy", envoy)
    assert_fails(result, "'dmeo' is not an app", "differs from inspection.max_body_bytes", "pack_as_bytes", "failure_mode_allow")
    assert f"envoy.yaml:{line('max_request_bytes: 2097152')}:" in result.stderr, result.stderr
    assert f"envoy.yaml:{line('{app: dmeo}')}:" in result.stderr, result.stderr


def test_check_fails_on_what_serve_refuses_at_start(warden_bin: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, SEED_POLICY, extra=f'keys: {{dir: "{tmp_path / "nokeys"}", read_only: true}}\n')
    result = run(warden_bin, "check", "--config", config)
    assert_fails(result, "read-only key directory holds no key")
    assert "mcp-warden.yaml:4:" in result.stderr, result.stderr
    assert not (tmp_path / "nokeys").exists(), "check must not create the directory"


def test_check_warns_on_legal_but_wrong_settings_and_strict_fails_on_them(warden_bin: Path, tmp_path: Path) -> None:
    policy = SEED_POLICY.replace("kind: role\nversion: v8\nmetadata:\n  name: no-db-queries", "kind: role\nversion: v7\nmetadata:\n  name: no-db-queries") + (
        "---\nkind: role\nversion: v8\nmetadata: {name: prod-only}\nspec: {allow: {app_labels: {env: prod}, mcp: {tools: ['*']}}}\n"
    )
    config = write_config(tmp_path, policy, extra='issuer: "http://mcp.example.com/prefix"\n')
    result = run(warden_bin, "check", "--config", config)
    assert_ok(result)
    for needle in [
        "is not https",
        "has a path",
        "a v7 role",
        "role 'prod-only': spec.allow.app_labels: matches no app",
        "user 'erin': spec: has no api_keys",
        "key directory",
    ]:
        assert needle in result.stderr, f"{needle!r} not warned:\n{result.stderr}"
    lines = [l for l in result.stderr.splitlines() if ": warning: " in l]
    assert lines == sorted(lines, key=lambda l: (l.split(":")[0], int(l.split(":")[1]))), lines
    assert_fails(run(warden_bin, "check", "--strict", "--config", config), "--strict")


def test_check_reads_mcp_warden_config_and_usage_errors_exit_2(warden_bin: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, SEED_POLICY)
    assert_ok(run_env(warden_bin, "check", env={"MCP_WARDEN_CONFIG": str(config)}))
    assert run(warden_bin, "check", "--no-such-flag").returncode == 2
    assert run(warden_bin, "check").returncode == 2, "no config given"


def test_a_bad_regex_is_one_error_at_its_own_line(warden_bin: Path, tmp_path: Path) -> None:
    policy = SEED_POLICY.replace(SEED_RULE, "^(get|query_.*$")
    config = write_config(tmp_path, policy)
    result = run(warden_bin, "check", "--config", config)
    line = policy[: policy.index("^(get|query_.*$")].count("\n") + 1
    errors = [l for l in result.stderr.splitlines() if ": error: " in l]
    assert len(errors) == 1 and f"policy-0.yaml:{line}:" in errors[0], result.stderr


# ---------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------


def keys_config(tmp_path: Path) -> Path:
    config = tmp_path / "k.yaml"
    config.write_text('keys: {dir: "keys", propagation_delay: 6m, jwks_max_age: 5m}\n')
    return config


def test_keys_never_create_a_directory_unless_init_and_flags_go_anywhere(warden_bin: Path, tmp_path: Path) -> None:
    config = keys_config(tmp_path)
    for action in (["list"], ["rotate"], ["retire", "x"]):
        result = run(warden_bin, "keys", *action, "--config", config)
        assert_fails(result, "does not exist", "keys init")
    assert not (tmp_path / "keys").exists()
    assert_ok(run(warden_bin, "keys", "init", "--config", config))
    listed = run(warden_bin, "keys", "--config", config, "list")
    assert_ok(listed)
    assert re.search(r"active\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \((now|\d+s ago)\)", listed.stdout), listed.stdout
    assert_ok(run_env(warden_bin, "keys", "list", env={"MCP_WARDEN_CONFIG": str(config)}))


def test_keys_rotate_and_retire_explain_why_not_and_when(warden_bin: Path, tmp_path: Path) -> None:
    config = keys_config(tmp_path)
    init = run(warden_bin, "keys", "init", "--config", config)
    assert_ok(init)
    old = re.search(r"with (\S+):", init.stdout).group(1)
    rotated = run(warden_bin, "keys", "rotate", "--config", config)
    assert_ok(rotated)
    assert re.search(r"signs from \S+Z \(in (6m|5m \d+s)\)", rotated.stdout), rotated.stdout
    new = re.search(r"added (\S+):", rotated.stdout).group(1)
    assert_fails(run(warden_bin, "keys", "rotate", "--config", config), f"'{new}' is already next", "--force")
    assert_fails(run(warden_bin, "keys", "retire", old, "--config", config), f"'{new}' takes over at", "(in ")
    assert_ok(run(warden_bin, "keys", "rotate", "--force", "--config", config))


def test_hash_key_refuses_an_empty_key(warden_bin: Path) -> None:
    assert_fails(run(warden_bin, "hash-key", stdin=""), "empty")
    assert_fails(run(warden_bin, "hash-key", stdin="\n"), "empty")


# ---------------------------------------------------------------------------------------
# serve: what it says when no key signs, and log lines that stay whole
# ---------------------------------------------------------------------------------------


def test_serve_with_no_active_key_warns_and_readyz_says_why(
    warden_bin: Path, tmp_path: Path, procs: harness.ProcessGroup
) -> None:
    config = keys_config(tmp_path)
    assert_ok(run(warden_bin, "keys", "init", "--config", config))
    manifest = tmp_path / "keys" / "keyring.json"
    ring = json.loads(manifest.read_text())
    later = int(time.time()) + 900
    for key in ring["keys"]:  # the only key starts signing in 15 minutes
        key["created"] = key["active_from"] = later
    manifest.write_text(json.dumps(ring))
    warden = harness.start_warden(
        procs, tmp_path / "w", warden_bin, harness.default_policy(8080),
        config_extra={"keys": {"dir": str(tmp_path / "keys")}, "log": {"format": "plain"}},
    )
    kid = ring["keys"][0]["kid"]
    ready = httpx.get(f"{warden.http_url}/readyz", timeout=10)
    assert ready.status_code == 503, ready.text
    assert f"'{kid}' signs from" in ready.text and re.search(r"Z \(in 1[45]m", ready.text), ready.text
    harness.wait_until(
        lambda: "no signing key is active" in warden.proc.stderr_path.read_text(),
        timeout=10,
        what="the WARN that no key signs",
        procs=[warden.proc],
    )
    warn = [l for l in warden.proc.stderr_path.read_text().splitlines() if "no signing key is active" in l]
    assert "WARN" in warn[0] and kid in warn[0], warn


def test_a_policy_error_at_start_is_one_whole_log_line_per_error(warden_bin: Path, tmp_path: Path) -> None:
    policy = SEED_POLICY.replace(SEED_RULE, "^(get|query_.*$").replace(
        "roles: [bedrock-mcp-readonly, no-db-queries]", "roles: [bedrock-mcp-readonly, no-such-role]"
    )
    config = write_config(tmp_path, policy, extra='log: {format: plain}\n')
    result = subprocess.run(
        [str(warden_bin), "serve", "--config", str(config)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env={"RUST_LOG": "info", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    logged = [l for l in lines if "invalid policy" in l and "ERROR" in l and "policy-0.yaml:" in l]
    assert len(logged) == 2, result.stderr
    assert any("unclosed group" in l for l in logged) and any("no-such-role" in l for l in logged), logged
    for line in lines:
        assert re.match(r"^(\d{4}-\d\d-\d\dT|mcp-warden: )", line), f"a log line broken in two: {line!r}\n{result.stderr}"


def test_check_names_a_claims_to_roles_role_the_policy_lacks_at_its_line(warden_bin: Path, tmp_path: Path) -> None:
    extra = (
        "authentication:\n"
        "  jwt:\n"
        "    issuer: https://idp.example.com\n"
        "    audiences: [https://mcp.example.com/mcp]\n"
        "    claims_to_roles:\n"
        "    - {claim: groups, value: admins, roles: [bedrock-mcp-readonly, ghost-role]}\n"
    )
    config = write_config(tmp_path, SEED_POLICY, extra=extra)
    result = run(warden_bin, "check", "--config", config)
    line = config.read_text().splitlines().index("    - {claim: groups, value: admins, roles: [bedrock-mcp-readonly, ghost-role]}") + 1
    assert_fails(result, f"mcp-warden.yaml:{line}:", "claims_to_roles[0].roles[1]: role 'ghost-role' is not defined")


def test_keys_refuse_to_manage_a_directory_serve_ignores(warden_bin: Path, tmp_path: Path) -> None:
    config = tmp_path / "k.yaml"
    config.write_text('signing_key: "key.pem"\nkeys: {dir: "keys"}\n')
    assert_fails(run(warden_bin, "keys", "init", "--config", config), "signing_key is set")
    assert not (tmp_path / "keys").exists()


def test_serve_without_a_config_warns_that_the_public_demo_keys_are_accepted(warden_bin: Path, tmp_path: Path) -> None:
    """Issue 22 point 6: the WARN comes before any listener is bound (the embedded default binds
    fixed loopback ports, so the process is stopped as soon as the line is seen, bound or not)."""
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(warden_bin), "serve"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = next((l for l in log.read_text(errors="replace").splitlines() if "public demo API keys" in l), "")
            if line or proc.poll() is not None:
                break
            time.sleep(0.05)
        if not line:  # the process may have exited right after writing it
            line = next((l for l in log.read_text(errors="replace").splitlines() if "public demo API keys" in l), "")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "WARN" in line, log.read_text(errors="replace")[-2000:]
    assert "not for production" in line
