"""TorchServe's metrics config: which metrics its metrics port serves (metrics_mode=prometheus).

TorchServe 0.12 in prometheus mode registers only the metrics its metrics config declares, the frontend's
and the models': a handler's `[METRICS]` line for an undeclared metric is dropped. So every TorchServe
torchship starts (local serve and verify, the image) reads this file, rendered from the handler's own
catalog (handlers/metrics.py) and the frontend metrics below, through templates/metrics.yaml.j2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torchship
from torchship.handlers.metrics import METRICS, MetricDef
from torchship.rendering import render_template

TEMPLATE = "metrics.yaml.j2"
FILE_NAME = "metrics.yaml"


@dataclass(frozen=True)
class FrontendMetric:
    """A metric TorchServe's frontend records itself; its dimensions are fixed by the frontend's code."""

    name: str
    kind: str  # counter or gauge
    unit: str
    dimensions: tuple[str, ...]  # as YAML: quoted names or the template's anchors (*level)
    meaning: str


_PER_MODEL = ('"model_name"', '"model_version"', '"hostname"')
FRONTEND_METRICS = (
    FrontendMetric(
        "ts_inference_requests_total",
        "counter",
        "Count",
        _PER_MODEL,
        "requests TorchServe answered for the model (any status)",
    ),
    FrontendMetric(
        "ts_inference_latency_microseconds",
        "counter",
        "Microseconds",
        _PER_MODEL,
        "summed time from a request's arrival to its answer, queue wait included",
    ),
    FrontendMetric(
        "ts_queue_latency_microseconds",
        "counter",
        "Microseconds",
        _PER_MODEL,
        "summed time requests waited in the model's queue for a worker (queue wait)",
    ),
    FrontendMetric(
        "QueueTime",
        "gauge",
        "Milliseconds",
        ("*level", "*hostname"),
        "the last batch's queue wait",
    ),
    FrontendMetric(
        "WorkerLoadTime",
        "gauge",
        "Milliseconds",
        ("*worker_name", "*level", "*hostname"),
        "how long each worker took to load the model",
    ),
)


def render_metrics_config(handler: tuple[MetricDef, ...] = METRICS) -> str:
    return render_template(
        TEMPLATE,
        torchship_version=torchship.__version__,
        frontend=FRONTEND_METRICS,
        handler=handler,
    )
