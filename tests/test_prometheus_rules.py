"""deploy/prometheus (alerting rules and their unit tests) and deploy/grafana: promtool
checks and tests the rules, and every metric the rules and the dashboard name must be in
what Conveyor's /metrics really exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conveyor.config import Settings
from conveyor.probes import health_app
from tests.factories import Db, add_job, add_worker

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "conveyor-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
RUNBOOK_BASE = "https://conveyor.example/docs/operations.md#"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is missing (Debian package prometheus; .ci/run installs it)",
)

# PromQL words that are not metric names: operators, modifiers and aggregation clauses.
_KEYWORDS = {
    *("and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"),
    *("group_left", "group_right"),
}
_NOT_NAMES = [
    re.compile(r'"(?:[^"\\]|\\.)*"'),  # strings (label values)
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # ranges
    # Label lists of by/without/on/ignoring/group_left/group_right.
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
    re.compile(r"\$\{?\w+\}?"),  # Grafana variables
]
# Not after a digit or a dot: the "m" of "5m" is no name.
_WORD = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (loosely: functions, keywords, label names
    and numbers removed)."""
    for pattern in _NOT_NAMES:
        expr = pattern.sub(" ", expr)
    names = set()
    for match in _WORD.finditer(expr):
        word, call = match.group(1), match.group(2)
        if call is None and word not in _KEYWORDS:
            names.add(word)
    return names


def test_metric_names_finds_the_names_only() -> None:
    expr = (
        'sum by (queue, lane) (rate(jobs_failed_total{queue=~"$queue", x="a b"}[5m])) '
        "/ on (queue) group_left max(queue_length offset 5m) > bool 0.05 "
        "and histogram_quantile(0.95, sum by (le) (job_wait_seconds_bucket[$__rate_interval]))"
    )
    assert metric_names(expr) == {"jobs_failed_total", "queue_length", "job_wait_seconds_bucket"}


@pytest.fixture
async def exposed(settings: Settings, db: Db) -> set[str]:
    """Every sample name a real /metrics of this code can carry (counters with _total,
    histograms with _bucket, _sum and _count), scraped with a queue and a worker known."""
    add_job(db, "mail")
    add_worker(db, "w", ["mail"])
    transport = httpx.ASGITransport(app=health_app(settings, lambda: None))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        reply = await http.get("/metrics")
    assert reply.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(reply.text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    assert "queue_length" in names and "jobs_failed_total" in names
    return names


def load_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules
    return rules


# -- the rules ------------------------------------------------------------------------------


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_rules_pass_their_unit_tests() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


EXPECTED_ALERTS = {
    "ConveyorQueueBacklog": "critical",
    "ConveyorFailureRate": "critical",
    "ConveyorOldestWaitOverTarget": "warning",
    "ConveyorNoLiveWorker": "critical",
    "ConveyorDeadLetterGrowth": "warning",
    "ConveyorCircuitOpen": "warning",
    "ConveyorPostgresOnly": "warning",
    "ConveyorRedisFailover": "warning",
    "ConveyorQueueGaugesStale": "warning",
}


def test_every_rule_is_there_with_its_severity_and_annotations() -> None:
    rules = load_rules()
    assert {rule["alert"]: rule["labels"]["severity"] for rule in rules} == EXPECTED_ALERTS
    for rule in rules:
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, rule


def test_every_rule_has_unit_tests_that_fire_it_and_keep_it_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == set(EXPECTED_ALERTS)
    assert quiet == set(EXPECTED_ALERTS)


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_every_runbook_link_names_a_section_of_the_operations_runbook() -> None:
    anchors = heading_anchors(OPERATIONS.read_text())
    for rule in load_rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), url
        assert url.removeprefix(RUNBOOK_BASE) in anchors, url


async def test_every_metric_in_the_rules_is_exposed(exposed: set[str]) -> None:
    for rule in load_rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exposed, f"{rule['alert']}: {sorted(used - exposed)} not in /metrics"


# -- the Grafana dashboard ------------------------------------------------------------------


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    assert found
    return found


def test_the_dashboard_imports_with_a_prometheus_datasource_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    assert [entry["name"] for entry in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids are unique"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]


async def test_every_metric_on_the_dashboard_is_exposed(exposed: set[str]) -> None:
    used: set[str] = set()
    for title, expr in dashboard_targets():
        names = metric_names(expr)
        assert names, title
        assert names <= exposed, f"{title}: {sorted(names - exposed)} not in /metrics"
        used |= names
    wanted = {
        "jobs_completed_total",
        "jobs_failed_total",
        "queue_length",
        "oldest_job_age_seconds",
        "queue_target_seconds",
        "job_wait_seconds_bucket",
        "job_processing_duration_seconds_bucket",
        "jobs_running",
        "workers_live",
        "circuit_breaker_state",
        "postgres_only_mode",
        "redis_active_endpoint",
    }
    assert wanted <= used, f"no panel shows {sorted(wanted - used)}"


@needs_promtool
def test_the_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule, with Grafana's variables filled."""
    rules = [
        {
            "record": f"dashboard:query_{number}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$queue", ".*"),
        }
        for number, (_, expr) in enumerate(dashboard_targets())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
