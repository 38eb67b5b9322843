"""Issue 7, point 5, through real Envoy: after a scripted session — allowed, denied,
unauthenticated, malformed, a list call, an app denial — the audit events and the metric
counts match what was sent, field by field, and no API key, token, private key or redacted
tool argument appears in any log, audit line, metric or error response.

One stack (module scope) runs the session once; each test checks one aspect of it. mcp-warden
runs with `audit.output` = a file and `log.format: json`; the `other` app opts into argument
auditing (`audit_arguments: true`), `demo` does not.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest
from harness import BOB_KEY, CAROL_KEY, JSON_HEADERS, OTHER_APP_URI, api_key_hash, demo_app_uri, jsonrpc
from opsupport import Metrics, complete_lines, pem_body_lines, read_json_lines, scrape
from upstream import TOOL_NAMES

DAVE_KEY = "e2e-audit-dave-key-4d6f8a0c2e4f6a8c"
BAD_BEARER = "e2e-not-a-key-" + uuid.uuid4().hex
BAD_X_API_KEY = "e2e-not-a-key-either-" + uuid.uuid4().hex
SECRET_ARG = "e2e-secret-argument-" + uuid.uuid4().hex  # must never be logged anywhere
VISIBLE_ARG = "e2e-audited-argument-" + uuid.uuid4().hex  # logged: app `other` opted in
USERS = {"alice", "bob", "carol", "dave"}

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# Fields every check event carries; the rest depend on the case.
CHECK_EVENT_FIELDS = {
    "time",
    "event",
    "request_id",
    "user",
    "roles",
    "app",
    "http_method",
    "mcp_method",
    "jsonrpc_id",
    "tool",
    "prompt",
    "resource",
    "session_id",
    "protocol_version",
    "decision",
    "reason",
    "role",
    "rule",
    "arguments",
    "latency_us",
}


def audit_policy(upstream_port: int) -> str:
    """demo (no argument auditing) and other (audit_arguments: true); bob read-only on demo,
    dave everything on demo except delete_* (a deny rule), carol only app other."""
    return f"""\
app_service:
  enabled: "yes"
  apps:
  - name: "demo"
    uri: "{demo_app_uri(upstream_port)}"
    labels: {{env: test, service: demo}}
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
  audit_arguments: true
  rewrite:
    headers:
    - name: Authorization
      value: "Bearer {{{{internal.id_token}}}}"
---
kind: role
version: v8
metadata: {{name: demo-readonly}}
spec:
  allow:
    app_labels: {{service: demo}}
    mcp:
      tools: ["^get_.*$"]
---
kind: role
version: v8
metadata: {{name: demo-full}}
spec:
  allow:
    app_labels: {{service: demo}}
    mcp:
      tools: ["*"]
---
kind: role
version: v8
metadata: {{name: no-delete}}
spec:
  deny:
    mcp:
      tools: ["delete_*"]
---
kind: role
version: v8
metadata: {{name: other-only}}
spec:
  allow:
    app_labels: {{service: other}}
    mcp:
      tools: ["*"]
---
kind: user
version: v2
metadata: {{name: bob}}
spec:
  roles: [demo-readonly]
  api_keys: ["{api_key_hash(BOB_KEY)}"]
---
kind: user
version: v2
metadata: {{name: dave}}
spec:
  roles: [demo-full, no-delete]
  api_keys: ["{api_key_hash(DAVE_KEY)}"]
---
kind: user
version: v2
metadata: {{name: carol}}
spec:
  roles: [other-only]
  api_keys: ["{api_key_hash(CAROL_KEY)}"]
"""


# ---------------------------------------------------------------------------------------
# The scripted session
# ---------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One request of the session and everything its audit event must say."""

    label: str
    path: str
    headers: dict[str, str]
    body: str
    status: int
    event: dict[str, Any]  # exact values of the audit event (request_id is added)
    absent: set[str] = field(default_factory=set)  # fields the event must not carry
    request_id: str = ""
    response: httpx.Response | None = None

    @property
    def allowed(self) -> bool:
        return self.event["decision"] == "allow"

    @property
    def metric(self) -> tuple[str, str]:
        return (self.event["decision"], self.event["reason"])


def _call(tool: str, arguments: dict[str, Any], id: Any) -> str:
    return json.dumps(jsonrpc("tools/call", {"name": tool, "arguments": arguments}, id=id))


def _key(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _policy_event(user: str, roles: list[str], app: str, mcp_method: str, id: Any, version: str) -> dict[str, Any]:
    return {
        "user": user,
        "roles": roles,
        "app": app,
        "http_method": "POST",
        "mcp_method": mcp_method,
        "jsonrpc_id": id,
        "protocol_version": version,
    }


def script(session_id: str) -> list[Sent]:
    bob = lambda mcp, id, v="2025-03-26": _policy_event("bob", ["demo-readonly"], "demo", mcp, id, v)  # noqa: E731
    dave = lambda mcp, id: _policy_event("dave", ["demo-full", "no-delete"], "demo", mcp, id, "2025-03-26")  # noqa: E731
    allowed = {"event": "request.allowed", "decision": "allow"}
    denied = {"event": "request.denied", "decision": "deny"}
    unauth = {"event": "authentication.failed", "decision": "deny", "http_method": "POST"}
    no_user = {"user", "roles", "role", "rule", "arguments"}
    return [
        # --- N = 4 allowed tools/call ---
        Sent(
            "allowed: bob get_weather, session + protocol headers",
            "/mcp",
            {**_key(BOB_KEY), "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"},
            _call("get_weather", {"city": "Oslo"}, 1),
            200,
            {
                **allowed,
                **bob("tools/call", 1, "2025-06-18"),
                "tool": "get_weather",
                "session_id": session_id,
                "reason": "allowed_by_role",
                "role": "demo-readonly",
                "rule": "^get_.*$",
            },
            {"arguments"},
        ),
        Sent(
            "allowed: bob get_weather with a secret argument (demo does not audit arguments)",
            "/mcp",
            _key(BOB_KEY),
            _call("get_weather", {"city": SECRET_ARG}, "call-2"),
            200,
            {
                **allowed,
                **bob("tools/call", "call-2"),
                "tool": "get_weather",
                "reason": "allowed_by_role",
                "role": "demo-readonly",
                "rule": "^get_.*$",
            },
            {"arguments", "session_id"},
        ),
        Sent(
            "allowed: bob get_time via x-api-key",
            "/mcp",
            {"x-api-key": BOB_KEY},
            _call("get_time", {"timezone": "UTC"}, 3),
            200,
            {
                **allowed,
                **bob("tools/call", 3),
                "tool": "get_time",
                "reason": "allowed_by_role",
                "role": "demo-readonly",
                "rule": "^get_.*$",
            },
            {"arguments"},
        ),
        Sent(
            "allowed: dave echo (demo-full)",
            "/mcp",
            _key(DAVE_KEY),
            _call("echo", {"message": "hello"}, 4),
            200,
            {
                **allowed,
                **dave("tools/call", 4),
                "tool": "echo",
                "reason": "allowed_by_role",
                "role": "demo-full",
                "rule": "*",
            },
            {"arguments"},
        ),
        # --- M = 3 denied tools/call ---
        Sent(
            "denied: bob delete_file with a secret argument (no role allows it)",
            "/mcp",
            _key(BOB_KEY),
            _call("delete_file", {"path": SECRET_ARG}, 5),
            200,
            {**denied, **bob("tools/call", 5), "tool": "delete_file", "reason": "not_allowed_by_any_role"},
            {"arguments", "role", "rule"},
        ),
        Sent(
            "denied: bob send_email in a session",
            "/mcp",
            {**_key(BOB_KEY), "mcp-session-id": session_id},
            _call("send_email", {"to": "x@example.com", "subject": "s"}, "d-6"),
            200,
            {
                **denied,
                **bob("tools/call", "d-6"),
                "tool": "send_email",
                "session_id": session_id,
                "reason": "not_allowed_by_any_role",
            },
            {"arguments", "role", "rule"},
        ),
        Sent(
            "denied: dave delete_file (deny rule of role no-delete)",
            "/mcp",
            _key(DAVE_KEY),
            _call("delete_file", {"path": "/etc/passwd"}, 7),
            200,
            {
                **denied,
                **dave("tools/call", 7),
                "tool": "delete_file",
                "reason": "denied_by_role",
                "role": "no-delete",
                "rule": "delete_*",
            },
            {"arguments"},
        ),
        # --- K = 3 unauthenticated: the route's app and the (well-formed) body are known ---
        Sent(
            "unauthenticated: no credential",
            "/mcp",
            {},
            _call("get_weather", {"city": "x"}, 8),
            401,
            {
                **unauth,
                "reason": "no_credentials",
                "app": "demo",
                "mcp_method": "tools/call",
                "jsonrpc_id": 8,
                "tool": "get_weather",
                "protocol_version": "2025-03-26",
            },
            no_user,
        ),
        Sent(
            "unauthenticated: unknown bearer key, secret argument",
            "/mcp",
            _key(BAD_BEARER),
            _call("delete_file", {"path": SECRET_ARG}, 9),
            401,
            {
                **unauth,
                "reason": "invalid_credentials",
                "app": "demo",
                "mcp_method": "tools/call",
                "jsonrpc_id": 9,
                "tool": "delete_file",
                "protocol_version": "2025-03-26",
            },
            no_user,
        ),
        Sent(
            "unauthenticated: unknown x-api-key",
            "/mcp",
            {"x-api-key": BAD_X_API_KEY},
            _call("get_weather", {"city": "y"}, "u-10"),
            401,
            {
                **unauth,
                "reason": "invalid_credentials",
                "app": "demo",
                "mcp_method": "tools/call",
                "jsonrpc_id": "u-10",
                "tool": "get_weather",
                "protocol_version": "2025-03-26",
            },
            no_user,
        ),
        # --- L = 2 malformed (authenticated): nothing of the body is trusted ---
        Sent(
            "malformed: invalid JSON",
            "/mcp",
            _key(BOB_KEY),
            '{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"get_weather"',
            400,
            {
                **denied,
                "user": "bob",
                "roles": ["demo-readonly"],
                "app": "demo",
                "http_method": "POST",
                "reason": "invalid_json",
            },
            {"mcp_method", "tool", "role", "rule", "arguments"},
        ),
        Sent(
            "malformed: duplicate key",
            "/mcp",
            _key(BOB_KEY),
            '{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"get_weather","name":"delete_file"}}',
            400,
            {
                **denied,
                "user": "bob",
                "roles": ["demo-readonly"],
                "app": "demo",
                "http_method": "POST",
                "reason": "duplicate_key",
            },
            {"tool", "role", "rule", "arguments"},
        ),
        # --- one tools/list ---
        Sent(
            "list: bob tools/list",
            "/mcp",
            _key(BOB_KEY),
            json.dumps(jsonrpc("tools/list", {}, id=13)),
            200,
            {**allowed, **bob("tools/list", 13), "reason": "not_governed"},
            {"tool", "arguments"},
        ),
        # --- one app denial: the body is well-formed, so what was attempted is known ---
        Sent(
            "app denied: carol on demo",
            "/mcp",
            _key(CAROL_KEY),
            _call("get_weather", {"city": "z"}, 14),
            403,
            {
                **denied,
                **_policy_event("carol", ["other-only"], "demo", "tools/call", 14, "2025-03-26"),
                "tool": "get_weather",
                "reason": "app_not_allowed",
            },
            {"arguments", "role", "rule"},
        ),
        # --- argument auditing, opted in by app `other` ---
        Sent(
            "allowed: carol echo on app other (audit_arguments: true)",
            "/other/mcp",
            _key(CAROL_KEY),
            _call("echo", {"message": VISIBLE_ARG}, 15),
            200,
            {
                **allowed,
                **_policy_event("carol", ["other-only"], "other", "tools/call", 15, "2025-03-26"),
                "tool": "echo",
                "reason": "allowed_by_role",
                "role": "other-only",
                "rule": "*",
                "arguments": {"message": VISIBLE_ARG},
            },
            set(),
        ),
    ]


@dataclass
class Session:
    group: harness.ProcessGroup
    upstream: harness.Upstream
    warden: harness.Warden
    envoy: harness.Envoy
    audit_path: Path
    sent: list[Sent]
    started: datetime
    finished: datetime
    events: list[dict[str, Any]]
    metrics: Metrics

    def logs(self) -> str:
        return self.group.report(lines=30)


def run_session(stack_dir: Path, envoy_bin: Path, warden_bin: Path, group: harness.ProcessGroup) -> Session:
    upstream = harness.start_upstream(group, stack_dir / "upstream", json_response=True, stateless=True)
    audit_path = stack_dir / "audit.jsonl"
    warden = harness.start_warden(
        group,
        stack_dir / "warden",
        warden_bin,
        audit_policy(upstream.port),
        config_extra={"audit": {"output": str(audit_path)}, "log": {"format": "json"}},
        # The most mcp-warden itself ever logs.
        env={"RUST_LOG": "info,mcp_warden=trace"},
    )
    envoy = harness.start_envoy(group, stack_dir / "envoy", envoy_bin, warden, upstream)
    sent = script("e2e-session-" + uuid.uuid4().hex)
    started = datetime.now().astimezone()
    with harness.http_client() as client:
        for n, s in enumerate(sent):
            s.request_id = f"e2e-audit-{n:02d}-{uuid.uuid4()}"
            s.event["request_id"] = s.request_id
            s.response = client.post(
                envoy.url(s.path),
                content=s.body,
                headers={**JSON_HEADERS, **s.headers, "x-request-id": s.request_id},
            )
    finished = datetime.now().astimezone()
    # Audit lines are written off the request path: wait (deadline) until all are there.
    harness.wait_until(
        lambda: len(read_json_lines(audit_path)) >= len(sent),
        timeout=15,
        what=f"waiting for {len(sent)} audit events in {audit_path}",
        procs=[warden.proc],
    )
    # Envoy flushes its access log every few seconds: wait until every request is logged.
    harness.wait_until(
        lambda: len(complete_lines(envoy.proc.stdout_path)) >= len(sent),
        timeout=30,
        what="waiting for Envoy's access log",
        procs=[envoy.proc],
    )
    return Session(
        group, upstream, warden, envoy, audit_path, sent, started, finished, read_json_lines(audit_path), scrape(warden)
    )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, envoy_bin: Path, warden_bin: Path) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("audit-session")
    group = harness.ProcessGroup(tmp / "logs")
    try:
        yield run_session(tmp, envoy_bin, warden_bin, group)
    finally:
        group.stop_all()


# ---------------------------------------------------------------------------------------
# Audit events, field by field
# ---------------------------------------------------------------------------------------


def test_the_session_got_the_answers_it_expects(session: Session) -> None:
    for s in session.sent:
        assert s.response is not None
        assert s.response.status_code == s.status, f"{s.label}: {s.response.status_code} {s.response.text}"
        body = s.response.json()
        assert ("result" in body) == s.allowed, f"{s.label}: {body}"
    calls = session.upstream.tool_calls()
    assert calls == ["get_weather", "get_weather", "get_time", "echo", "echo"], calls


def test_every_request_has_exactly_one_audit_event_matching_it_field_by_field(session: Session) -> None:
    events = session.events
    by_id = Counter(e.get("request_id") for e in events)
    problems: list[str] = []
    assert len(events) == len(session.sent), f"{len(events)} events for {len(session.sent)} requests: {events}"
    lo, hi = session.started - timedelta(minutes=1), session.finished + timedelta(minutes=1)
    for s in session.sent:
        if by_id[s.request_id] != 1:
            problems.append(f"{s.label}: {by_id[s.request_id]} events with request_id {s.request_id}")
            continue
        (event,) = [e for e in events if e.get("request_id") == s.request_id]
        unknown = set(event) - CHECK_EVENT_FIELDS
        if unknown:
            problems.append(f"{s.label}: unknown fields {sorted(unknown)}")
        for key, want in s.event.items():
            got = event.get(key, "<absent>")
            if got != want or type(got) is not type(want):
                problems.append(f"{s.label}: {key} = {got!r}, expected {want!r}")
        for key in sorted(s.absent & set(event)):
            problems.append(f"{s.label}: {key} = {event[key]!r} should be absent")
        time_ok = isinstance(event.get("time"), str) and RFC3339.match(event["time"])
        if not time_ok:
            problems.append(f"{s.label}: time {event.get('time')!r} is not RFC 3339")
        elif not lo <= datetime.fromisoformat(event["time"].replace("Z", "+00:00")) <= hi:
            problems.append(f"{s.label}: time {event['time']} is outside the session")
        latency = event.get("latency_us")
        if not (isinstance(latency, int) and not isinstance(latency, bool) and latency >= 0):
            problems.append(f"{s.label}: latency_us {latency!r}")
        if event.get("event") not in ("request.allowed", "request.denied", "authentication.failed"):
            problems.append(f"{s.label}: event {event.get('event')!r}")
    assert not problems, "audit events differ from what was sent:\n" + "\n".join(problems)


def test_tool_arguments_are_redacted_unless_the_app_opts_in(session: Session) -> None:
    text = session.audit_path.read_text()
    assert SECRET_ARG not in text, "an argument of app demo (no audit_arguments) was audited"
    with_args = [e for e in session.events if "arguments" in e]
    assert [(e["app"], e["tool"], e["arguments"]) for e in with_args] == [("other", "echo", {"message": VISIBLE_ARG})]


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


def test_metrics_count_exactly_what_was_sent(session: Session) -> None:
    m = session.metrics
    sent = Counter(s.metric for s in session.sent)
    counted = {(x.labels["decision"], x.labels["reason"]): x.value for x in m.series("mcp_warden_checks_total")}
    assert counted == {k: float(v) for k, v in sent.items()}, f"checks_total {counted} != sent {dict(sent)}"
    assert m.get("mcp_warden_check_duration_seconds_count") == len(session.sent)
    assert m.get("mcp_warden_check_duration_seconds_bucket", le="+Inf") == len(session.sent)
    assert m.get("mcp_warden_check_duration_seconds_sum") > 0
    allowed = sum(1 for s in session.sent if s.allowed)
    minted = m.get("mcp_warden_tokens_minted_total")
    cached = m.get("mcp_warden_token_cache_hits_total")
    assert minted + cached == allowed, (minted, cached, allowed)
    assert minted >= 3, "bob, dave and carol each needed a token"
    build = m.series("mcp_warden_build_info")
    assert len(build) == 1 and build[0].value == 1 and build[0].labels.get("version"), build
    assert m.get("mcp_warden_audit_dropped_total") == 0
    assert m.series("mcp_warden_policy_reloads_total") == []


def test_no_metric_label_is_a_user_or_a_tool_name(session: Session) -> None:
    names = USERS | set(TOOL_NAMES)
    leaked = session.metrics.label_values() & names
    assert not leaked, f"user/tool names as label values: {leaked}"
    for sample in session.metrics.samples:
        assert sample.name.startswith("mcp_warden_"), sample


def test_policy_generation_gauge_reports_the_policy_in_force(session: Session) -> None:
    """Issue 7.2 'the policy generation': the policy loaded at start is generation 1."""
    assert session.metrics.get("mcp_warden_policy_generation", default=-1) == 1, session.metrics.series(
        "mcp_warden_policy_generation"
    )


# ---------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------


def test_no_secret_appears_in_any_log_audit_line_metric_or_error_response(session: Session) -> None:
    tokens = set()
    for rec in session.upstream.records():
        for value in harness.record_headers(rec, "authorization"):
            tokens.add(value.partition(" ")[2])
    assert len(tokens) >= 3, tokens
    pems = sorted((session.warden.config_path.parent / "state" / "keys").glob("*.pem"))
    assert pems, "no private key found in the key directory"
    secrets: dict[str, str] = {
        "API key bob": BOB_KEY,
        "API key carol": CAROL_KEY,
        "API key dave": DAVE_KEY,
        "rejected bearer": BAD_BEARER,
        "rejected x-api-key": BAD_X_API_KEY,
        "redacted argument": SECRET_ARG,
    }
    for i, token in enumerate(sorted(tokens)):
        secrets[f"ID token {i}"] = token
        secrets[f"ID token {i} signature"] = token.rsplit(".", 1)[1]
    for pem in pems:
        for n, line in enumerate(pem_body_lines(pem.read_text())):
            secrets[f"{pem.name} line {n}"] = line

    places: dict[str, str] = {
        "audit file": session.audit_path.read_text(),
        "mcp-warden stdout": session.warden.proc.stdout_path.read_text(errors="replace"),
        "mcp-warden stderr": session.warden.proc.stderr_path.read_text(errors="replace"),
        "Envoy stdout (access log)": session.envoy.proc.stdout_path.read_text(errors="replace"),
        "Envoy stderr": session.envoy.proc.stderr_path.read_text(errors="replace"),
        "/metrics": scrape(session.warden).text,
    }
    for s in session.sent:
        assert s.response is not None
        if not s.allowed:
            headers = "\n".join(f"{k}: {v}" for k, v in s.response.headers.items())
            places[f"error response to '{s.label}'"] = headers + "\n" + s.response.text
    assert places["mcp-warden stderr"].strip(), "mcp-warden logged nothing at all"
    hits = [
        f"{what} in {where}" for what, secret in secrets.items() for where, text in places.items() if secret in text
    ]
    assert not hits, "secrets leaked:\n" + "\n".join(hits)


def test_mcp_warden_logs_are_json_lines(session: Session) -> None:
    lines = [line for line in complete_lines(session.warden.proc.stderr_path) if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert record.get("level") and record.get("timestamp") and isinstance(record.get("fields"), dict), record


# ---------------------------------------------------------------------------------------
# Envoy's access log tells the same story (issue 7, point 3)
# ---------------------------------------------------------------------------------------

# The fields the access log of envoy/envoy-test.yaml must print, as ` key=value`:
#   request_id=%REQ(X-REQUEST-ID)%
#   decision=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision)%
#   reason=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%
#   user=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)%
#   app=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:app)%
#   tool=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:tool)%
# (Envoy prints `-` for metadata a check did not set.)
ACCESS_LOG_FIELDS = ("request_id", "decision", "reason", "user", "app", "tool")
_KV = re.compile(r"(?:^|\s)(" + "|".join(ACCESS_LOG_FIELDS) + r")=(\S*)")


def test_envoy_access_log_prints_the_decision_metadata_of_every_request(session: Session) -> None:
    lines = complete_lines(session.envoy.proc.stdout_path)
    template = harness.ENVOY_TEST_TEMPLATE.read_text()
    missing = [f for f in ACCESS_LOG_FIELDS if f"{f}=%" not in template]
    assert not missing, (
        f"envoy/envoy-test.yaml's access log lacks {missing}: add to its format "
        + " ".join(
            f"{f}=%REQ(X-REQUEST-ID)%"
            if f == "request_id"
            else f"{f}=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:{f})%"
            for f in ACCESS_LOG_FIELDS
        )
        + f"\nfirst line now: {lines[:1]}"
    )
    events = {e["request_id"]: e for e in session.events}
    problems = []
    for s in session.sent:
        rows = [dict(_KV.findall(line)) for line in lines if f"request_id={s.request_id}" in line]
        if len(rows) != 1:
            problems.append(f"{s.label}: {len(rows)} access-log lines")
            continue
        (row,) = rows
        event = events[s.request_id]
        for f in ("decision", "reason", "user", "app", "tool"):
            want = event.get(f, "-")
            if row.get(f) != want:
                problems.append(f"{s.label}: access log {f}={row.get(f)!r}, audit says {want!r}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------
# Skipping allowed list calls
# ---------------------------------------------------------------------------------------


def test_skip_allowed_methods_drops_allowed_tools_list_events_only(stack_factory: Any, tmp_path: Path) -> None:
    audit_path = tmp_path / "skip-audit.jsonl"
    stack = stack_factory(
        json_response=True,
        stateless=True,
        policy=audit_policy,
        config_extra={"audit": {"output": str(audit_path), "skip_allowed_methods": ["tools/list"]}},
    )
    rid = {k: f"e2e-skip-{k}-{uuid.uuid4()}" for k in ("list", "call", "denied-list", "last")}
    with harness.http_client() as client:

        def post(path: str, key: str, body: Any, request_id: str) -> httpx.Response:
            return client.post(
                stack.envoy.url(path),
                content=json.dumps(body),
                headers={**JSON_HEADERS, **_key(key), "x-request-id": request_id},
            )

        assert post("/mcp", BOB_KEY, jsonrpc("tools/list", {}, id=1), rid["list"]).status_code == 200
        assert (
            post(
                "/mcp", BOB_KEY, jsonrpc("tools/call", {"name": "get_time", "arguments": {}}, id=2), rid["call"]
            ).status_code
            == 200
        )
        assert post("/mcp", CAROL_KEY, jsonrpc("tools/list", {}, id=3), rid["denied-list"]).status_code == 403
        assert (
            post(
                "/mcp", BOB_KEY, jsonrpc("tools/call", {"name": "delete_file", "arguments": {}}, id=4), rid["last"]
            ).status_code
            == 200
        )
    # Events are written in order: once the last one is there, a skipped one never comes.
    harness.wait_until(
        lambda: any(e.get("request_id") == rid["last"] for e in read_json_lines(audit_path)),
        timeout=15,
        what="waiting for the last audit event",
        procs=[stack.warden.proc],
    )
    events = {e.get("request_id"): e for e in read_json_lines(audit_path)}
    assert rid["list"] not in events, events.get(rid["list"])
    assert events[rid["call"]]["event"] == "request.allowed"
    assert events[rid["denied-list"]]["event"] == "request.denied", "only ALLOWED list calls may be skipped"
    assert events[rid["last"]]["event"] == "request.denied"
    # Skipped from the audit, still counted.
    m = scrape(stack.warden)
    assert m.get("mcp_warden_checks_total", decision="allow", reason="not_governed") == 1
    assert m.get("mcp_warden_check_duration_seconds_count") == 4
