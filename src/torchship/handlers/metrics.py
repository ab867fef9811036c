"""The handler's own metrics: what it counts per server-side batch, and how it hands them to TorchServe.

TorchServe 0.12 in `metrics_mode=prometheus` serves on its metrics port only the metrics declared in its
metrics config (`metrics_config`, written by torchship from `METRICS` below: serving/metrics_config.py);
the worker reports a value as a `[METRICS]` line on its stdout (`context.metrics`), the frontend adds it to
the Prometheus series (a counter is incremented, a histogram observes) and adds a `Hostname` label.

One batch is summed into a `BatchRecord` (outcomes, tokens, phases, labels) and reported with a line per
distinct series, not per request: a batch of 8 requests of 64 texts costs about 20 lines. Label values
from the model (classification labels) are bounded by its id2label and cleaned of the characters
TorchServe's line format splits on. Standard library only: this module is copied into every .mar.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

Kind = Literal["counter", "histogram"]
MODEL_DIMENSIONS = ("model_name", "model_version")

# Upper bounds (tokens) of the cumulative text-length counter; its `le` label makes it usable with
# Prometheus' histogram_quantile (TorchServe's own histograms have fixed bucket bounds, 5 ms to 10 s).
TOKEN_BOUNDS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
PHASES = ("preprocess", "inference", "postprocess")


@dataclass(frozen=True)
class MetricDef:
    """One metric as TorchServe declares it and Prometheus shows it."""

    name: str  # as declared and served (a counter as is: TorchServe's client adds no _total; a histogram
    # adds _bucket/_sum/_count)
    kind: Kind
    unit: str
    dimensions: tuple[str, ...]  # after model_name, model_version (TorchServe appends Hostname)
    meaning: str
    labelled_tasks_only: bool = False  # only for tasks whose answers have a label (classification)

    @property
    def all_dimensions(self) -> tuple[str, ...]:
        return (*MODEL_DIMENSIONS, *self.dimensions)


REQUESTS = MetricDef(
    "torchship_requests",
    "counter",
    "count",
    ("code", "reason"),
    "requests answered, by HTTP status (code) and reason: ok, or the 4xx/5xx reason the handler named",
)
TEXTS = MetricDef(
    "torchship_texts",
    "counter",
    "count",
    ("code", "reason"),
    "texts (items: texts, pairs, questions) in those requests; a body that could not be read has none",
)
TOKENS = MetricDef(
    "torchship_tokens", "counter", "count", (), "tokens of the texts run through the model (after truncation)"
)
TEXT_TOKENS = MetricDef(
    "torchship_text_tokens_bucket",
    "counter",
    "count",
    ("le",),
    "texts run with at most `le` tokens (cumulative, like a histogram's buckets; le=+Inf counts them all)",
)
TRUNCATED = MetricDef(
    "torchship_truncated_texts",
    "counter",
    "count",
    (),
    "texts that reached compile.max_length tokens (truncated, or exactly that long)",
)
BATCH_FILL = MetricDef(
    "torchship_batch_fill",
    "histogram",
    "ratio",
    (),
    "per server-side batch: requests in it / serve.batch_size (1 = TorchServe's batch was full)",
)
BATCH_TEXTS = MetricDef(
    "torchship_batch_texts",
    "counter",
    "count",
    (),
    "texts the model ran, summed over batches (per batch: / torchship_batch_fill_count)",
)
HANDLER_SECONDS = MetricDef(
    "torchship_handler_seconds",
    "histogram",
    "seconds",
    ("phase",),
    "per batch, the handler's time by phase: preprocess (read, check, tokenize), inference (the model), "
    "postprocess (answers, JSON)",
)
REQUEST_SECONDS = MetricDef(
    "torchship_request_seconds",
    "histogram",
    "seconds",
    (),
    "per request, the time its batch spent in the handler (TorchServe's queue wait is not in it)",
)
SERVED_LABELS = MetricDef(
    "torchship_served_labels",
    "counter",
    "count",
    ("label",),
    "the top label of every classified text",
    labelled_tasks_only=True,
)
WORKER_STARTS = MetricDef(
    "torchship_worker_starts",
    "counter",
    "count",
    (),
    "model workers that loaded the model (one per worker at start; more means a worker restarted)",
)

METRICS: tuple[MetricDef, ...] = (
    REQUESTS,
    TEXTS,
    TOKENS,
    TEXT_TOKENS,
    TRUNCATED,
    BATCH_FILL,
    BATCH_TEXTS,
    HANDLER_SECONDS,
    REQUEST_SECONDS,
    SERVED_LABELS,
    WORKER_STARTS,
)


def metrics_for(labelled: bool) -> tuple[MetricDef, ...]:
    """The metrics a model emits: the label counter only where its task's answers have labels."""
    return tuple(m for m in METRICS if labelled or not m.labelled_tasks_only)


_UNSAFE = re.compile(r"[,:|\s]+")


def label_value(value: Any) -> str:
    """A value TorchServe's metric line carries intact: it splits dimensions on ',' and ':'."""
    return _UNSAFE.sub("_", str(value)).strip("_")[:128] or "_"


@dataclass
class BatchRecord:
    """What one server-side batch did, summed for the metrics."""

    size: int  # requests TorchServe put in the batch
    outcomes: Counter[tuple[int, str]] = field(default_factory=Counter)  # (code, reason) -> requests
    texts: Counter[tuple[int, str]] = field(default_factory=Counter)  # (code, reason) -> texts
    token_counts: list[int] = field(default_factory=list)  # per text run
    truncated: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    labels: Counter[str] = field(default_factory=Counter)

    def outcome(self, code: int, reason: str, texts: int) -> None:
        self.outcomes[(code, reason)] += 1
        self.texts[(code, reason)] += texts

    def add_phase(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def merge(self, other: BatchRecord) -> None:
        """Add what a run over some of this batch's requests recorded (the outcomes are counted here)."""
        self.token_counts.extend(other.token_counts)
        self.truncated += other.truncated
        for phase, seconds in other.phases.items():
            self.add_phase(phase, seconds)
        self.labels.update(other.labels)


class MetricsReporter:
    """Hands a BatchRecord to TorchServe's `context.metrics`; a no-op where there is none (in-process runs).

    A failure to report never fails a request: it is logged once and reporting stops."""

    def __init__(self, metrics: Any, model_name: str, model_version: str, batch_size: int):
        self.metrics = metrics
        self.model = [label_value(model_name), label_value(model_version)]
        self.batch_size = max(1, batch_size)
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_context(cls, context: Any) -> MetricsReporter:
        properties = getattr(context, "system_properties", None) or {}
        manifest = getattr(context, "manifest", None) or {}
        version = (manifest.get("model") or {}).get("modelVersion") or "unknown"
        return cls(
            getattr(context, "metrics", None),
            getattr(context, "model_name", None) or "unknown",
            str(version),
            int(properties.get("batch_size") or 1),
        )

    def _metric(self, definition: MetricDef) -> Any:
        if definition.name not in self._cache:
            from ts.metrics.metric_type_enum import MetricTypes  # TorchServe's, present where metrics are

            kind = MetricTypes.COUNTER if definition.kind == "counter" else MetricTypes.HISTOGRAM
            try:
                metric = self.metrics.get_metric(definition.name, kind)
            except Exception:  # not in the config this TorchServe read: declare it here
                metric = self.metrics.add_metric_to_cache(
                    definition.name, definition.unit, list(definition.all_dimensions), kind
                )
            self._cache[definition.name] = metric
        return self._cache[definition.name]

    def _add(self, definition: MetricDef, value: float, *dimensions: Any) -> None:
        # A counter's 0 changes nothing and costs a line (~20 us) on the worker's stdout: skipped.
        if definition.kind == "counter" and not value:
            return
        self._metric(definition).add_or_update(value, [*self.model, *map(label_value, dimensions)])

    def worker_started(self) -> None:
        self._report(lambda: self._add(WORKER_STARTS, 1))

    def report(self, record: BatchRecord) -> None:
        self._report(lambda: self._emit(record))

    def _report(self, emit) -> None:
        if self.metrics is None:
            return
        try:
            emit()
        except Exception:
            logger.exception("torchship handler could not report its metrics; reporting stops")
            self.metrics = None

    def _emit(self, record: BatchRecord) -> None:
        for (code, reason), count in sorted(record.outcomes.items()):
            self._add(REQUESTS, count, code, reason)
            self._add(TEXTS, record.texts[(code, reason)], code, reason)
        counts = record.token_counts
        if counts:
            self._add(TOKENS, sum(counts))
            for bound in TOKEN_BOUNDS:
                self._add(TEXT_TOKENS, sum(1 for c in counts if c <= bound), bound)
            self._add(TEXT_TOKENS, len(counts), "+Inf")
            self._add(BATCH_TEXTS, len(counts))
        if record.truncated:
            self._add(TRUNCATED, record.truncated)
        self._add(BATCH_FILL, record.size / self.batch_size)
        total = 0.0
        for phase in PHASES:
            seconds = record.phases.get(phase, 0.0)
            total += seconds
            self._add(HANDLER_SECONDS, seconds, phase)
        for _ in range(record.size):
            self._add(REQUEST_SECONDS, total)
        for label, count in sorted(record.labels.items()):
            self._add(SERVED_LABELS, count, label)
