"""The alert rules, their unit tests, the Prometheus config and the Grafana dashboard: promtool
accepts them, every alert is tested both ways, and every query names a metric imagedock exports."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# PyYAML comes with uvicorn[standard]; its stubs (types-PyYAML) are not among the dev extras.
import yaml

from tests.support import ROOT
from tests.support.metrics import METRICS

PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yaml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yaml"
CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "imagedock.json"

# Series Prometheus makes itself: alerts may watch the scrape; the dashboard shows imagedock's only.
SCRAPE_SERIES = frozenset({"up"})
# PromQL words that stand where a metric name could: binary operators and modifiers.
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "group_left", "group_right"})


def queryable(metrics: dict[str, str]) -> frozenset[str]:
    """The names a query can select: a histogram's as its _bucket, _sum and _count series."""
    names = set()
    for name, kind in metrics.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects, found without a PromQL parser: strings,
    Grafana variables, label matchers and label lists go first, then every identifier left that
    is not a function call or an operator is a metric name."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = set(re.findall(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", expr))
    return found - KEYWORDS


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root; missing, it fails the test, for CI installs it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: install Prometheus's promtool (Debian: prometheus)")
    return subprocess.run(
        [path, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel but rows, including those folded inside a collapsed row."""
    panels: list[dict[str, Any]] = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        panels += panel.get("panels", []) if panel["type"] == "row" else [panel]
    return panels


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


def test_promtool_accepts_the_alert_rules() -> None:
    """`promtool check rules` passes on alerts.yaml."""
    result = promtool("check", "rules", ALERTS.relative_to(ROOT))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_behave_as_their_unit_tests_say() -> None:
    """`promtool test rules` passes: each alert fires, with its labels and annotations, and
    stays quiet where its tests say it should."""
    result = promtool("test", "rules", ALERTS_TEST.relative_to(ROOT))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_prometheus_config() -> None:
    """`promtool check config` passes on prometheus.yml, including the rule file it loads."""
    result = promtool("check", "config", CONFIG.relative_to(ROOT))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert in alerts.yaml has a unit test where it fires, and a healthy one (not just
    the pending minutes of a firing one) where it never does."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        cases = test.get("alert_rule_test", [])
        fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
        firing |= fires
        quiet |= {case["alertname"] for case in cases} - fires
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts, "alerts.yaml holds no alert"
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested on a healthy series"


def test_every_alert_says_how_urgent_and_what_to_run() -> None:
    """Each alert waits with `for`, is a page or a ticket, and has a summary, a description
    and a runbook that names an imagedock command."""
    for rule in alert_rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), rule["alert"]
        assert "`imagedock " in rule["annotations"]["runbook"], rule["alert"]


def test_the_alerts_query_only_exported_metrics() -> None:
    """Every metric an alert selects is one imagedock exports, or the scrape's own `up`."""
    known = queryable(METRICS) | SCRAPE_SERIES
    used = {name for rule in alert_rules() for name in metric_names(rule["expr"])}
    assert used, "no metric found in alerts.yaml"
    assert used - known == set()


def test_the_dashboard_queries_only_exported_metrics() -> None:
    """Every metric a dashboard panel selects is one imagedock exports."""
    used = {name for expr in dashboard_exprs() for name in metric_names(expr)}
    assert used, "no metric found in the dashboard"
    assert used - queryable(METRICS) == set()


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'max by (model) (rate(imagedock_jobs_landed_total{model="a b"}[5m]))',
            {"imagedock_jobs_landed_total"},
        ),
        (
            "time() - max(imagedock_worker_last_heartbeat_timestamp_seconds)",
            {"imagedock_worker_last_heartbeat_timestamp_seconds"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
        ('absent(up{job="imagedock"} == 1) and on (job) imagedock_jobs', {"up", "imagedock_jobs"}),
        ("a / ignoring (le) b > 1e3", {"a", "b"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    """The name reader finds selected metrics, and not functions, labels, variables or numbers."""
    assert metric_names(expr) == names


def test_every_dashboard_panel_has_a_title_and_a_query() -> None:
    """The dashboard parses; every panel is titled, queries Prometheus through the
    DS_PROMETHEUS variable, and has at least one target with an expression."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    panels = dashboard_panels()
    assert panels
    for panel in panels:
        assert panel.get("title"), panel.get("id")
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Every panel expression is valid PromQL: promtool checks them as recording rules, with
    Grafana's $__rate_interval given a value."""
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr.replace("$__rate_interval", "5m")}
        for number, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
