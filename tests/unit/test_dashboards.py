"""deploy/grafana/outplan-worker.json imports into Grafana on any Prometheus data source, and
deploy/prometheus/alerts.yaml is a rule file whose every alert says what to do; both read only
metrics the worker declares. (tests/e2e/test_dashboards.py checks the same names against a running
worker's /metrics.)"""

import re
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests.support.dashboards import (
    DASHBOARD,
    DATASOURCE,
    RULE_TESTS,
    RULES,
    dashboard_expressions,
    load_dashboard,
    load_rules,
    panels,
    rule_expressions,
    rules,
    variable_expression,
    variable_query,
    variables,
)
from tests.support.deploy import duration_seconds, setting_default
from tests.support.promql import assert_all_exposed, metric_names, unknown_metrics
from worker.observability import metrics

pytestmark = pytest.mark.unit

#: The oldest classic dashboard schema this file is written for (Grafana 12).
SCHEMA_VERSION = 41
GRID_COLUMNS = 24


def declared_exposition() -> str:
    """What the worker's registry would serve on /metrics right now, in this process."""
    return generate_latest(metrics.REGISTRY).decode()


def _walk(node: Any, path: str = "$") -> list[tuple[str, Any]]:
    """Every (path, value) under ``node`` whose key is ``datasource``."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((f"{path}.{key}", value))
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{i}]"))
    return found


# --- the dashboard -----------------------------------------------------------------------------


def test_dashboard_is_a_current_classic_dashboard_that_imports_anywhere() -> None:
    dashboard = load_dashboard()
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= SCHEMA_VERSION
    assert dashboard["title"] and dashboard["uid"]
    # an import assigns the id; `__inputs` would make Grafana ask for a data source it then hard-codes
    assert dashboard.get("id") is None
    assert "__inputs" not in dashboard


def test_the_data_source_is_a_prometheus_variable_and_job_and_instance_are_variables() -> None:
    found = variables(load_dashboard())
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert found[name]["type"] == "query", name
        assert found[name]["datasource"] == DATASOURCE, name
        assert variable_expression(variable_query(found[name])), name
    assert "$job" in variable_query(found["instance"]), "the instance list follows the job chosen"


def test_every_panel_reads_prometheus_through_the_variable_with_at_least_one_query() -> None:
    graphs = [p for p in panels(load_dashboard()) if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        title = panel.get("title")
        assert title, f"panel {panel.get('id')} has no title"
        assert panel.get("datasource") == DATASOURCE, title
        targets = panel.get("targets") or []
        assert targets, f"{title!r} has no query"
        assert len({t["refId"] for t in targets}) == len(targets), f"{title!r}: refIds repeat"
        for target in targets:
            assert target.get("expr", "").strip(), f"{title!r} {target['refId']}: empty query"
            assert target.get("datasource", DATASOURCE) == DATASOURCE, title


def test_no_data_source_is_named_by_a_fixed_uid_or_name() -> None:
    found = _walk(load_dashboard())
    assert found
    for path, value in found:
        assert value == DATASOURCE, f"{path}: {value!r} (use {DATASOURCE})"


def test_panels_have_their_own_ids_and_do_not_overlap_on_the_grid() -> None:
    everything = panels(load_dashboard())
    ids = [p["id"] for p in everything]
    assert len(set(ids)) == len(ids), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_queries_use_only_defined_variables() -> None:
    dashboard = load_dashboard()
    defined = set(variables(dashboard))
    for where, expr in dashboard_expressions(dashboard).items():
        used = {a or b for a, b in re.findall(r"\$\{(\w+)[^}]*\}|\$(\w+)", expr)}
        unknown = {name for name in used if not name.startswith("__")} - defined  # $__* are Grafana's
        assert not unknown, f"{where}: undefined {sorted(unknown)}"


def test_every_selector_follows_the_job_and_instance_chosen() -> None:
    # Fleet-wide panels say so in their title and ignore the instance; nothing ignores the job.
    dashboard = load_dashboard()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            selectors = re.findall(r"\{[^{}]*\}", target["expr"])
            assert selectors, f"{panel['title']!r}: a metric without a selector"
            for selector in selectors:
                assert 'job=~"$job"' in selector, f"{panel['title']!r}: {selector}"
                if "(fleet)" not in panel["title"]:
                    assert 'instance=~"$instance"' in selector, f"{panel['title']!r}: {selector}"


def test_the_dashboard_shows_what_operators_are_told_to_watch() -> None:
    named = set().union(*(metric_names(e) for e in dashboard_expressions(load_dashboard()).values()))
    assert {
        "outplan_commands_total",
        "outplan_command_duration_seconds_bucket",
        "outplan_outbox_backlog",
        "outplan_outbox_oldest_age_seconds",
        "outplan_events_published_total",
        "outplan_events_unrouted_total",
        "outplan_events_refused_total",
        "outplan_events_given_up_total",
        "outplan_dead_lettered_total",
        "outplan_consumer_attached",
        "outplan_relay_leader",
        "outplan_reconnects_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= named


# --- the rules ---------------------------------------------------------------------------------


def test_every_rule_is_an_alert_with_a_duration_a_severity_and_a_runbook() -> None:
    found = rules(load_rules())
    assert found
    names = [r.get("alert") for r in found]
    assert len(set(names)) == len(names), "alert names repeat"
    for rule in found:
        name = rule.get("alert")
        assert name and re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), rule
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), name
        assert isinstance(rule.get("for"), str), f"{name}: `for` must be a duration such as 2m"
        duration_seconds(rule["for"])
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert isinstance(annotations.get(key), str) and annotations[key].strip(), f"{name}: no {key}"
        assert "Check:" in annotations["runbook"] and "Do:" in annotations["runbook"], name


def test_alerts_cover_the_outbox_consumers_bugs_the_relay_and_reconnects() -> None:
    by_metric = {
        name: {r["alert"] for r in rules(load_rules()) if name in metric_names(r["expr"])}
        for name in (
            "outplan_outbox_oldest_age_seconds",
            "outplan_consumer_attached",
            "outplan_dead_lettered_total",
            "outplan_relay_leader",
            "outplan_reconnects_total",
        )
    }
    assert all(by_metric.values()), by_metric
    internal = [r for r in rules(load_rules()) if "outplan_dead_lettered_total" in metric_names(r["expr"])]
    assert all('reason="INTERNAL_ERROR"' in r["expr"] for r in internal), "bad input is not a bug"
    leader = [r for r in rules(load_rules()) if "outplan_relay_leader" in metric_names(r["expr"])]
    assert any("absent(outplan_relay_leader)" in r["expr"] for r in leader), "no worker at all: no leader"


def test_the_outbox_alert_uses_the_readiness_bound() -> None:
    [stale] = [r for r in rules(load_rules()) if "outplan_outbox_oldest_age_seconds" in r["expr"]]
    bound = re.search(r">\s*([0-9.]+)\s*$", stale["expr"].strip())
    assert bound, stale["expr"]
    assert float(bound.group(1)) == setting_default("ready_max_outbox_age_seconds")


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not on PATH (it comes with Prometheus; Debian: apt-get install prometheus)",
)
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


# --- the metric names --------------------------------------------------------------------------


def test_panels_and_rules_read_only_metrics_the_worker_declares() -> None:
    expressions = {**dashboard_expressions(load_dashboard()), **rule_expressions(load_rules())}
    assert_all_exposed(expressions, declared_exposition())


def test_the_check_names_a_metric_that_does_not_exist() -> None:
    bad = {
        "panel 'typo'": 'sum by (outcome) (rate(outplan_comands_total{job=~"$job"}[$__rate_interval]))',
        "rule NoLeaders": "max(outplan_relay_leaders) == 0",
        "rule Fine": "max by (job) (outplan_relay_leader) == 0",
        "panel 'nothing'": "vector(1)",
    }
    assert unknown_metrics(bad, {"outplan_relay_leader"}) == {
        "panel 'typo'": ["outplan_comands_total"],
        "rule NoLeaders": ["outplan_relay_leaders"],
        "panel 'nothing'": ["<no metric>"],
    }
    with pytest.raises(AssertionError, match="outplan_comands_total"):
        assert_all_exposed(bad, declared_exposition())


def test_the_files_are_where_the_readmes_say() -> None:
    readme = (DASHBOARD.parents[2] / "README.md").read_text()
    deploy_readme = (DASHBOARD.parents[1] / "README.md").read_text()
    for path in (DASHBOARD, RULES, RULE_TESTS):
        relative = path.relative_to(DASHBOARD.parents[2]).as_posix()
        assert relative in readme, f"README.md does not mention {relative}"
        assert path.relative_to(DASHBOARD.parents[1]).as_posix() in deploy_readme, relative
