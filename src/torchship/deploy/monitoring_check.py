"""`render --check` for the monitoring folder: the dashboard against Grafana's needs, every query's metrics
against the model's own (a rule or panel on a metric the task does not have never shows anything), and the
rules through `promtool check rules` where Prometheus' promtool is installed (their PromQL parses)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from torchship.deploy.autoscale_schema import ADAPTER_RULES as ADAPTER_RULES_SCHEMA
from torchship.deploy.monitoring import (
    ADAPTER_RULES,
    DASHBOARD,
    PROMETHEUS_RULE,
    MonitoringContext,
    metric_names,
)
from torchship.deploy.monitoring_schema import DASHBOARD as DASHBOARD_SCHEMA

# Series names of torchship's and TorchServe's metrics in a query (recording rules have a ':' instead).
_SERIES = re.compile(r"\b(torchship_[a-zA-Z0-9_]+|ts_[a-zA-Z0-9_]+)\b")


@dataclass(frozen=True)
class MonitoringFinding:
    file: str
    message: str


@dataclass(frozen=True)
class MonitoringCheck:
    findings: list[MonitoringFinding]
    promtool: str | None  # promtool's version line when it checked the rules, else None


def _dashboard_findings(text: str) -> list[str]:
    try:
        dashboard = json.loads(text)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    error = jsonschema.exceptions.best_match(
        jsonschema.validators.Draft202012Validator(DASHBOARD_SCHEMA).iter_errors(dashboard)
    )
    if error is not None:
        return [f"{'.'.join(str(p) for p in error.absolute_path) or '(top level)'}: {error.message}"]
    found = []
    ids = [panel["id"] for panel in dashboard["panels"]]
    if len(set(ids)) != len(ids):
        found.append(f"panel ids repeat: {sorted(ids)}")
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            found.append(
                f"panel {panel['id']}: gridPos x + w = {grid['x'] + grid['w']}, over Grafana's 24 columns"
            )
        refs = [target["refId"] for target in panel["targets"]]
        if len(set(refs)) != len(refs):
            found.append(f"panel {panel['id']}: refIds repeat: {refs}")
    return found


def queries(files: dict[str, str]) -> dict[str, list[str]]:
    """Every PromQL expression of the rules and the dashboard, by file."""
    exprs: dict[str, list[str]] = {}
    rule = yaml.safe_load(files[PROMETHEUS_RULE]) or {}
    for group in (rule.get("spec") or {}).get("groups") or []:
        exprs.setdefault(PROMETHEUS_RULE, []).extend(str(r.get("expr", "")) for r in group.get("rules") or [])
    try:
        dashboard = json.loads(files[DASHBOARD])
        exprs[DASHBOARD] = [
            t.get("expr", "") for p in dashboard.get("panels", []) for t in p.get("targets", [])
        ]
    except (ValueError, AttributeError):
        pass
    return exprs


def _unknown_metrics(files: dict[str, str], context: MonitoringContext) -> list[MonitoringFinding]:
    known = set(metric_names(context.metrics))
    findings = []
    for file, exprs in queries(files).items():
        unknown = sorted({name for expr in exprs for name in _SERIES.findall(expr)} - known)
        if unknown:
            findings.append(
                MonitoringFinding(
                    file,
                    f"queries {', '.join(unknown)}, which this model does not have; its metrics are "
                    f"{', '.join(sorted(known))}",
                )
            )
    return findings


def adapter_queries(files: dict[str, str], namespace: str = "default") -> dict[str, str]:
    """Each adapter rule's metric name -> its metricsQuery with the adapter's placeholders filled in as the
    adapter fills them for one namespace's pods: plain PromQL, for promtool and for a real Prometheus."""
    config: Any = yaml.safe_load(files.get(ADAPTER_RULES, "")) or {}
    filled = {}
    for rule in config.get("rules") or []:
        series = re.search(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", str(rule.get("seriesQuery", "")))
        query = str(rule.get("metricsQuery", ""))
        if not query:
            continue  # the schema check names it
        filled[str((rule.get("name") or {}).get("as"))] = (
            query.replace("<<.Series>>", series.group(1) if series else "up")
            .replace("<<.LabelMatchers>>", f'namespace="{namespace}",pod=~".+"')
            .replace("<<.GroupBy>>", "pod")
        )
    return filled


def _adapter_findings(files: dict[str, str], context: MonitoringContext) -> list[MonitoringFinding]:
    """The rules against the adapter's config schema, their series against the model's metrics, and every
    Pods metric an HPA of the base scales on against the names the rules serve."""
    try:
        config = yaml.safe_load(files[ADAPTER_RULES])
    except yaml.YAMLError as exc:
        return [MonitoringFinding(ADAPTER_RULES, f"not YAML: {exc}")]
    error = jsonschema.exceptions.best_match(
        jsonschema.validators.Draft202012Validator(ADAPTER_RULES_SCHEMA).iter_errors(config)
    )
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        return [MonitoringFinding(ADAPTER_RULES, f"{where}: {error.message}")]
    findings = []
    known = set(metric_names(context.metrics))
    series = {name for rule in config["rules"] for name in _SERIES.findall(rule["seriesQuery"])}
    if series - known:
        findings.append(
            MonitoringFinding(
                ADAPTER_RULES,
                f"rules read {', '.join(sorted(series - known))}, which this model does not have",
            )
        )
    served = {rule["name"]["as"] for rule in config["rules"]}
    for file, text in files.items():
        if not (file.startswith("hpa") and file.endswith(".yaml")):
            continue
        hpa = yaml.safe_load(text) or {}
        for metric in (hpa.get("spec") or {}).get("metrics") or []:
            name = ((metric.get("pods") or {}).get("metric") or {}).get("name")
            if metric.get("type") == "Pods" and name not in served:
                findings.append(
                    MonitoringFinding(
                        file, f"scales on the Pods metric {name}, which {ADAPTER_RULES} does not serve"
                    )
                )
    return findings


def _promtool(files: dict[str, str]) -> tuple[list[MonitoringFinding], str | None]:
    promtool = shutil.which("promtool")
    if promtool is None:
        return [], None
    rule: Any = yaml.safe_load(files[PROMETHEUS_RULE]) or {}
    groups = list((rule.get("spec") or {}).get("groups") or [])
    # The adapter's queries parse as recording rules do: checked in the same promtool run.
    adapter = [{"record": f"adapter:{name}", "expr": expr} for name, expr in adapter_queries(files).items()]
    if adapter:
        groups.append({"name": "prometheus-adapter", "rules": adapter})
    with tempfile.TemporaryDirectory(prefix="torchship-rules-") as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}))
        checked = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
        version = subprocess.run([promtool, "--version"], capture_output=True, text=True, timeout=30)
    line = (
        (version.stdout or version.stderr).splitlines()[0]
        if (version.stdout or version.stderr)
        else "promtool"
    )
    if checked.returncode == 0:
        return [], line
    problems = [
        text.strip()
        for text in (checked.stderr or checked.stdout).splitlines()
        if text.strip() and "SUCCESS" not in text
    ]
    return [MonitoringFinding(PROMETHEUS_RULE, f"promtool check rules: {p}") for p in problems[:5]], line


def check_monitoring(files: dict[str, str], context: MonitoringContext) -> MonitoringCheck:
    findings = [MonitoringFinding(DASHBOARD, message) for message in _dashboard_findings(files[DASHBOARD])]
    findings += _unknown_metrics(files, context)
    if ADAPTER_RULES in files:
        findings += _adapter_findings(files, context)
    promtool_findings, promtool = _promtool(files)
    return MonitoringCheck(findings + promtool_findings, promtool)
