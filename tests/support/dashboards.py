"""The Grafana dashboard and the Prometheus alert rules in deploy/, and the PromQL expressions in them."""

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.deploy import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "outplan-worker.json"
RULES = DEPLOY / "prometheus" / "alerts.yaml"
#: promtool's unit tests of the rules (``promtool test rules``).
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"
#: How every panel, target and variable names its data source: the dashboard's variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard's JSON model."""
    data = json.loads(path.read_text())
    assert isinstance(data, dict), f"{path} is not a JSON object"
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows included, and the panels a collapsed row holds."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The template variables by name."""
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def variable_query(variable: dict[str, Any]) -> str:
    """A query variable's query text (Grafana stores it as a string or as ``{"query": ...}``)."""
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


def variable_expression(query: str) -> str | None:
    """The PromQL inside a Prometheus variable query: the series of ``label_values(series, label)``
    or the expression of ``query_result(expr)``; ``None`` for the forms that name no metric
    (``label_values(label)``, ``label_names()``, ``metrics(regex)``)."""
    if match := re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*", query, re.DOTALL):
        return match.group(1)
    if match := re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.DOTALL):
        return match.group(1)
    return None


def dashboard_expressions(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every PromQL expression of the dashboard, keyed by where it is: each panel target's ``expr``
    and each query variable's series."""
    found: dict[str, str] = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found[f"panel {panel.get('title')!r} target {target.get('refId')}"] = target.get("expr", "")
    for name, variable in variables(dashboard).items():
        if variable.get("type") == "query" and (expr := variable_expression(variable_query(variable))):
            found[f"variable {name}"] = expr
    return found


def load_rules(path: Path = RULES) -> dict[str, Any]:
    """The rule file (``groups:``)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


def rules(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rule of every group, in order."""
    return [rule for group in document.get("groups", []) for rule in group.get("rules", [])]


def rule_expressions(document: dict[str, Any]) -> dict[str, str]:
    """Every rule's ``expr``, keyed by its alert (or record) name."""
    return {f"rule {r.get('alert') or r.get('record')}": str(r.get("expr", "")) for r in rules(document)}
