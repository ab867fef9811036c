"""Monitoring as code: the Prometheus Operator ServiceMonitor, the PrometheusRule and the Grafana dashboard
that `torchship render` writes into the base's `monitoring/` folder (its own kustomization, applied where the
Prometheus Operator runs; the model's base does not list it, so a cluster without those CRDs still deploys).

The alerts fit the model: thresholds from the spec's `monitoring:` section, the p99 budget from
validate.latency_ms where none is given, the label-shift alert only for a task whose answers have labels,
against the label shares of the answers verify served. A threshold that makes no sense is refused at render
time: a p99 budget below the p50 verify measured would fire all the time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torchship
from torchship.deploy.autoscale import LoadMetrics
from torchship.deploy.errors import DeployError
from torchship.deploy.inputs import DeployInputs
from torchship.handlers.metrics import MetricDef, metrics_for
from torchship.handlers.tasks import TASKS
from torchship.rendering import render_template
from torchship.serving.metrics_config import FRONTEND_METRICS
from torchship.spec import ModelSpec

FOLDER = "monitoring"
SERVICE_MONITOR = f"{FOLDER}/servicemonitor.yaml"
PROMETHEUS_RULE = f"{FOLDER}/prometheusrule.yaml"
DASHBOARD = f"{FOLDER}/dashboard.json"
KUSTOMIZATION = f"{FOLDER}/kustomization.yaml"
# prometheus-adapter's rules for the HPA's load metrics (deploy/autoscale.py): config, not a Kubernetes object.
ADAPTER_RULES = f"{FOLDER}/prometheus-adapter-rules.yaml"
MONITORING_FILES = (SERVICE_MONITOR, PROMETHEUS_RULE, DASHBOARD, KUSTOMIZATION, ADAPTER_RULES)
TEMPLATES = {
    ADAPTER_RULES: "monitoring/prometheus-adapter-rules.yaml.j2",
    SERVICE_MONITOR: "monitoring/servicemonitor.yaml.j2",
    PROMETHEUS_RULE: "monitoring/prometheusrule.yaml.j2",
    DASHBOARD: "monitoring/dashboard.json.j2",
    KUSTOMIZATION: "monitoring/kustomization.yaml.j2",
}
DEFAULT_LABEL_SHIFT = 0.25
# The label-shift alert waits for this many classified texts in its hour: a handful of requests has no
# distribution to speak of.
LABEL_SHIFT_MIN_TEXTS = 100


class MonitoringError(DeployError):
    """The spec's monitoring section asks for something the model cannot have."""


@dataclass(frozen=True)
class LabelShare:
    label: str
    share: float  # of the verified answers' texts


@dataclass(frozen=True)
class LatencyBudget:
    p99_s: float
    source: str  # the spec key it comes from


@dataclass(frozen=True)
class Thresholds:
    error_ratio: float | None
    latency: LatencyBudget | None
    batch_fill: float | None
    queue_wait_ms: float | None
    no_traffic_minutes: int | None
    worker_restarts: bool
    label_shift: float | None  # None: no label-shift alert (no labels, or no verified answers)


@dataclass(frozen=True)
class MonitoringContext:
    """Everything the monitoring templates see."""

    name: str
    version: str
    namespace: str
    selector: dict[str, str]  # the Service's labels the ServiceMonitor selects
    metrics_port_name: str
    labels: dict[str, str]  # the spec's monitoring.labels, on the ServiceMonitor and the PrometheusRule
    scrape_interval_s: int
    thresholds: Thresholds
    verified_labels: tuple[LabelShare, ...]
    labelled: bool
    metrics: tuple[MetricDef, ...]
    notes: tuple[str, ...]  # what was left out and why, said in the rendered rules

    @property
    def match(self) -> str:
        """The PromQL label matchers that pick this model's series."""
        return f'namespace="{self.namespace}",model_name="{self.name}"'


def metric_names(metrics: tuple[MetricDef, ...]) -> list[str]:
    """Every series name a query may use: a histogram's _bucket/_sum/_count, TorchServe's own."""
    names = []
    for m in metrics:
        names += (
            [f"{m.name}_bucket", f"{m.name}_sum", f"{m.name}_count"] if m.kind == "histogram" else [m.name]
        )
    return names + [m.name for m in FRONTEND_METRICS]


def _latency_budget(spec: ModelSpec) -> LatencyBudget | None:
    if spec.monitoring.latency_p99_ms is not None:
        return LatencyBudget(spec.monitoring.latency_p99_ms / 1000, "monitoring.latency_p99_ms")
    budget = spec.validate.latency_ms
    for key in ("p95", "p50"):
        value = getattr(budget, key) if budget is not None else None
        if value is not None:
            return LatencyBudget(value / 1000, f"validate.latency_ms.{key}")
    return None


def monitoring_context(spec: ModelSpec, inputs: DeployInputs, namespace: str) -> MonitoringContext:
    """The typed plan of the monitoring files; MonitoringError for a threshold or alert that cannot be."""
    wanted = spec.monitoring
    labelled = TASKS[spec.task].labelled
    metrics = metrics_for(labelled)
    notes: list[str] = []
    if wanted.label_shift is not None and not labelled:
        raise MonitoringError(
            f"{spec.spec_path}: monitoring.label_shift asks for an alert on served labels, but task "
            f"{spec.task!r} answers with no label; its metrics are {', '.join(metric_names(metrics))}",
            hint="Remove monitoring.label_shift (only classification tasks have a label distribution).",
        )
    latency = _latency_budget(spec)
    if (
        latency is not None
        and inputs.served_p50_ms is not None
        and latency.p99_s * 1000 < inputs.served_p50_ms
    ):
        raise MonitoringError(
            f"{spec.spec_path}: the p99 latency budget {latency.p99_s * 1000:g} ms ({latency.source}) is below "
            f"the p50 verify measured, {inputs.served_p50_ms:.1f} ms: half the requests are already slower, so "
            "the alert would fire all the time",
            hint="Set monitoring.latency_p99_ms above the served p99 you expect (README 'Monitoring').",
        )
    if latency is None:
        notes.append("no p99 latency alert: neither monitoring.latency_p99_ms nor validate.latency_ms is set")
    total = sum(inputs.verified_labels.values())
    shares = tuple(
        LabelShare(label, count / total) for label, count in sorted(inputs.verified_labels.items()) if total
    )
    label_shift = None
    if labelled:
        if shares:
            label_shift = wanted.label_shift or DEFAULT_LABEL_SHIFT
        else:
            notes.append(
                "no label-shift alert: no verified answers to compare with (run verify, then render)"
            )
    return MonitoringContext(
        name=spec.name,
        version=spec.version,
        namespace=namespace,
        selector={"app.kubernetes.io/name": spec.name, "app.kubernetes.io/instance": spec.name},
        metrics_port_name="http-metrics",
        labels=dict(wanted.labels),
        scrape_interval_s=wanted.scrape_interval_s,
        thresholds=Thresholds(
            error_ratio=wanted.error_ratio,
            latency=latency,
            batch_fill=wanted.batch_fill,
            queue_wait_ms=wanted.queue_wait_ms,
            no_traffic_minutes=wanted.no_traffic_minutes,
            worker_restarts=wanted.worker_restarts,
            label_shift=label_shift,
        ),
        verified_labels=shares,
        labelled=labelled,
        metrics=metrics,
        notes=tuple(notes),
    )


def render_monitoring(context: MonitoringContext, spec_file: str) -> dict[str, str]:
    """The monitoring folder's files, by their path in the base."""
    return {
        path: render_template(
            template,
            c=context,
            torchship_version=torchship.__version__,
            spec_file=spec_file,
            label_shift_min_texts=LABEL_SHIFT_MIN_TEXTS,
            a=LoadMetrics(),
        ).rstrip("\n")
        + "\n"
        for path, template in TEMPLATES.items()
    }
