"""Alert rules and dashboard: one source each, valid for promtool, and every metric they use is one
a component exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from chartkit import CHART, DEPLOY, REPO, Render, find

RULES = DEPLOY / "prometheus" / "kantaloupe-rules.yaml"
RULES_TESTS = DEPLOY / "prometheus" / "tests" / "kantaloupe-rules.test.yaml"
DASHBOARD = DEPLOY / "grafana" / "kantaloupe-dashboard.json"
SOURCE = REPO / "src" / "kantaloupe"

_METRIC = re.compile(r"\b((?:hami|kantaloupe)_[a-z0-9_]+)\b")
_LITERAL = re.compile(r"""["']((?:hami|kantaloupe)_[a-z0-9_]+)["']""")
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def _promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if v.get("definition")]
    return exprs


def _used_metrics(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in _METRIC.findall(e)}


def _exported_metrics() -> set[str]:
    """Every name a component can expose: the metric names written in src/kantaloupe, with the
    suffixes prometheus_client adds (counters `_total`, histograms `_bucket/_count/_sum`)."""
    names: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for name in _LITERAL.findall(path.read_text(encoding="utf-8")):
            names.update(name + s for s in _SUFFIXES)
    return names


def test_chart_copies_are_identical_to_deploy_files() -> None:
    for source, copy in (
        (RULES, CHART / "files" / "kantaloupe-rules.yaml"),
        (DASHBOARD, CHART / "files" / "kantaloupe-dashboard.json"),
    ):
        assert copy.read_bytes() == source.read_bytes(), (
            f"{copy.relative_to(REPO)} differs from {source.relative_to(REPO)}, its source: "
            f"cp {source.relative_to(REPO)} {copy.relative_to(REPO)}"
        )


def test_prometheus_rule_renders_the_rules_file(render: Render) -> None:
    objs = render({"monitoring": {"prometheusRule": {"enabled": True}}})
    assert find(objs, "PrometheusRule")["spec"] == yaml.safe_load(RULES.read_text())


def test_dashboard_configmap_holds_the_dashboard(render: Render) -> None:
    objs = render({"monitoring": {"dashboard": {"enabled": True}}})
    data = find(objs, "ConfigMap", "-dashboard")["data"]["kantaloupe-dashboard.json"]
    assert data == DASHBOARD.read_text()


def test_promtool_check_rules(promtool: Path) -> None:
    done = _promtool(promtool, "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_unit_tests_fire_and_resolve(promtool: Path) -> None:
    done = _promtool(promtool, "test", "rules", str(RULES_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_and_severity() -> None:
    doc = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])}
    assert set(alerts) == tested
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description"} <= set(rule["annotations"]), name


def test_every_metric_in_rules_and_dashboard_is_exported_by_a_component() -> None:
    exported = _exported_metrics()
    used = _used_metrics(_rule_exprs()) | _used_metrics(_dashboard_exprs())
    assert used, "no metric found in the rules and dashboard"
    missing = sorted(used - exported)
    assert not missing, f"used by rules/dashboard but exported by no component: {missing}"


def test_dashboard_is_well_formed() -> None:
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in doc["panels"] if p["type"] == "row"}
    assert {"Cluster: allocation vs physical", "Per node", "Per GPU"} <= titles
    assert "Per container: used vs limit" in titles
    for panel in doc["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
