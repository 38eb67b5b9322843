"""deploy/observability/: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), every metric the rules and the Grafana dashboard query is one
mcp-warden exports, and the scrape settings point at the port that serves /metrics.

promtool comes from Debian's `prometheus` package (scripts/test.sh installs it when absent);
a missing promtool fails these tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import harness
import kustomize
import opsupport
import pytest
import yaml

ROOT = harness.REPO_ROOT
OBS = ROOT / "deploy" / "observability"
RULES = OBS / "alerts.rules.yaml"
DASHBOARD = OBS / "grafana-dashboard.json"
METRIC = re.compile(r"\bmcp_warden_[a-z_]+\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (scripts/test.sh does)", pytrace=False)
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=120, cwd=OBS)


def exported_metrics() -> set[str]:
    """Every metric family the metrics module (`metrics.rs`, wherever it sits under src/)
    renders (its name as a string literal outside the unit tests), with a histogram's series."""
    (path,) = (ROOT / "src").rglob("metrics.rs")
    source = path.read_text().split("#[cfg(test)]")[0]
    families = set(re.findall(r'"(mcp_warden_[a-z_]+)"', source))
    assert {"mcp_warden_checks_total", "mcp_warden_check_duration_seconds"} <= families, families
    return families | {f + s for f in families for s in HISTOGRAM_SUFFIXES}


def test_alert_rules_pass_promtool_check() -> None:
    out = promtool("check", "rules", RULES.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    out = promtool("test", "rules", "alerts.test.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    tested = set(re.findall(r"alertname: (\w+)", (OBS / "alerts.test.yaml").read_text()))
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert alerts == tested, f"alerts without a unit test: {alerts - tested}"


def test_every_metric_the_rules_and_the_dashboard_query_is_exported() -> None:
    exported = exported_metrics()
    rules = {
        m for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] for m in METRIC.findall(r["expr"])
    }
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {m for p in dashboard["panels"] for t in p["targets"] for m in METRIC.findall(t["expr"])}
    assert rules and queried
    assert rules - exported == set()
    assert queried - exported == set()
    # The dashboard shows every family mcp-warden exports.
    families = {m for m in exported if not m.endswith(HISTOGRAM_SUFFIXES)} | {"mcp_warden_check_duration_seconds"}
    shown = {m.removesuffix(s) for m in queried for s in HISTOGRAM_SUFFIXES if m.endswith(s)} | queried
    assert families - shown == set()


def test_a_running_mcp_warden_exports_what_the_dashboard_queries(stack: harness.Stack) -> None:
    scraped = {s.name for s in opsupport.scrape(stack.warden).samples}
    assert {
        "mcp_warden_build_info",
        "mcp_warden_check_duration_seconds_count",
        "mcp_warden_policy_generation",
    } <= scraped
    assert scraped <= exported_metrics() | {"mcp_warden_check_duration_seconds_bucket"}


def test_scrape_settings_name_the_metrics_port() -> None:
    objects = kustomize.render(ROOT / "deploy" / "kubernetes" / "base")
    template = kustomize.find(objects, "Deployment")["spec"]["template"]
    warden = next(c for c in template["spec"]["containers"] if c["name"] == "mcp-warden")
    http = next(p for p in warden["ports"] if p["name"] == "http")
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(http["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    config = yaml.safe_load(kustomize.find(objects, "ConfigMap", "mcp-warden-config")["data"]["warden.yaml"])
    assert config["listen"]["http"].endswith(f":{http['containerPort']}")
    monitor = yaml.safe_load((OBS / "podmonitor.yaml").read_text())
    endpoints = {e["port"]: e["path"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert endpoints["http"] == "/metrics"
    declared = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    assert set(endpoints) <= declared
    assert monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


def test_the_prometheus_rule_holds_the_tested_rules() -> None:
    rule = yaml.safe_load((OBS / "prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
