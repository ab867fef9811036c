"""The gate report's typed contract and shared pieces: file names, check records, verdict, latency budget, writing.

GateReport (pydantic v2) is what report.json holds: its JSON is the same keys as the dicts it replaced, so
reports stored before it (and the copy of `checks` in a .mar's torchship.json) still read.

Both the in-process gate (gate.py, validate stage) and the served check (served.py, verify stage) build
and extend the same report; what they share lives here under public names so neither reaches into the
other's internals.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from torchship.diff.record import Measure
from torchship.pipeline import replace_dir, temp_dir_beside
from torchship.validate.junit import GateStage, render_junit
from torchship.validate.report import render_html

REPORT_JSON, REPORT_HTML, REPORT_JUNIT = "report.json", "report.html", "junit.xml"


Status = Literal["pass", "fail", "skipped"]


class _Record(BaseModel):
    # frozen: a report is extended by building a new one (model_copy(update=...)), never edited in place.
    # NaN/Infinity (a broken compiled model's differences) are written as JSON's NaN/Infinity, like json.dumps
    # did before, so such a report still reads back instead of turning into nulls.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class Check(_Record):
    name: str
    status: Status
    message: str
    # How long the check ran; reports written before it was kept have no such key, and keep none on rewrite.
    seconds: float | None = Field(default=None, exclude_if=lambda value: value is None)


class ModelRef(_Record):
    name: str
    version: str
    task: str


class OutputDiff(_Record):
    """One output of one parity case: compiled vs source."""

    max_abs: float
    max_rel: float
    excess: float  # max of |c - s| - (atol + rtol * |s|); > 0 means out of tolerance


class ParityCase(_Record):
    case: str
    batch: int
    length: int
    bucket: int | None  # the padded length, with buckets; None without
    outputs: dict[str, OutputDiff]
    ok: bool


class OutputParity(_Record):
    """One output over all cases: the largest differences and the case closest to (or over) tolerance."""

    max_abs: float
    max_rel: float
    worst_case: str
    worst_excess: float
    ok: bool


class Parity(_Record):
    atol: float
    rtol: float
    outputs: dict[str, OutputParity]
    cases: list[ParityCase]


class Disagreement(_Record):
    # The request body, one line (shortened); reports stored before requests were bodies call it "text".
    request: str = Field(validation_alias=AliasChoices("request", "text"))
    source: Any  # the handler's answer (task-shaped JSON)
    compiled: Any  # the handler's answer, or the text of its 400 error


class Agreement(_Record):
    compared: int
    agreed: int
    rate: float
    disagreements: list[Disagreement]  # the first ten


class ThresholdRow(_Record):
    metric: str
    label: str | None  # None: the overall value (or accuracy)
    threshold: float
    value: float
    ok: bool
    missing: bool = False  # the label has no gold example in the eval set


class Metrics(_Record):
    eval_set: str
    examples: int
    values: dict[str, Any]  # metric -> value, or metric -> {label: value} (validate/metrics.py)
    thresholds: list[ThresholdRow]


class LatencyRun(_Record):
    samples_ms: list[float]
    p50: float
    p95: float


class Latency(_Record):
    in_process: LatencyRun
    served: LatencyRun | None = None  # added by the verify stage
    budget_ms: dict[Literal["p50", "p95"], float] | None = (
        None  # the spec's validate.latency_ms, set keys only
    )


class PrecisionLimit(_Record):
    """One limit of the precision check: `min_<measure>` / `max_<measure>`, the task's default or the spec's."""

    key: str  # "max_flip_rate"
    measure: str  # "flip_rate"
    kind: Literal["max", "min"]
    limit: float
    value: float | None  # None: not measurable on these inputs (which breaks the limit)
    ok: bool
    origin: Literal["default", "spec"]  # the task definition's default, or validate.precision_limits


class PrecisionChange(_Record):
    """A request whose answer moved, as the task's diff tells it (e.g. "positive -> negative")."""

    request: str  # the body, one line (shortened)
    why: str


class PrecisionCheck(_Record):
    """The reduced-precision gate: the task's own diff measures of the compiled model's answers against the
    fp32 source's, on the examples and the eval set's requests, against the limits (validate/precision.py)."""

    precision: str  # compile.precision: bf16, int8-dynamic, int8-static
    backend: str
    inputs: int  # requests compared (one answer each)
    skipped: int  # requests with several items, duplicates, or that the source model refuses
    measures: list[Measure]
    limits: list[PrecisionLimit]
    passed: bool
    refused_by: str | None  # the measure of the first broken limit; None when it passed
    message: str  # the check's message: what passed, or the refusal with the inputs that changed
    changed: list[PrecisionChange]  # the first ten

    def value(self, measure: str) -> float | None:
        return next((m.value for m in self.measures if m.name == measure), None)


class GateReport(_Record):
    model: ModelRef
    generated_at: str
    # The torchship that ran the gate (the JUnit report's properties show it); absent in reports written before.
    torchship_version: str | None = Field(default=None, exclude_if=lambda value: value is None)
    verdict: Literal["pass", "fail"]
    checks: list[Check]
    parity: Parity
    agreement: Agreement
    metrics: Metrics | None  # None: no eval set
    latency: Latency
    # compile.precision other than fp32: the task-level check that replaces exact agreement; absent for fp32.
    precision: PrecisionCheck | None = Field(default=None, exclude_if=lambda value: value is None)

    def first_failure(self, prefix: str = "") -> Check | None:
        """The first failing check whose name starts with `prefix`."""
        return next((c for c in self.checks if c.status == "fail" and c.name.startswith(prefix)), None)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_failure(
    measured: LatencyRun | None, budget: dict[Literal["p50", "p95"], float] | None, where: str
) -> str | None:
    if not measured or not budget:
        return None
    quantiles: tuple[Literal["p50", "p95"], ...] = ("p50", "p95")
    for q in quantiles:
        value = getattr(measured, q)
        if budget.get(q) is not None and value > budget[q]:
            return f"{where} {q} latency {value:.1f} ms is over the budget of {budget[q]:g} ms (by {value - budget[q]:.1f} ms)"
    return None


def check(
    name: str, failure: str | None, ok: str, skipped: bool = False, seconds: float | None = None
) -> Check:
    seconds = None if seconds is None else round(seconds, 3)
    if skipped:
        return Check(name=name, status="skipped", message=ok, seconds=seconds)
    return Check(name=name, status="fail" if failure else "pass", message=failure or ok, seconds=seconds)


def verdict_of(checks: list[Check]) -> Literal["pass", "fail"]:
    return "fail" if any(c.status == "fail" for c in checks) else "pass"


def read_report(path: Path) -> GateReport:
    """report.json as a GateReport (pydantic.ValidationError: not a gate report)."""
    return GateReport.model_validate_json(path.read_text())


def write_report(directory: Path, report: GateReport, stage: GateStage) -> None:
    """report.json, report.html and junit.xml into `directory`: a stage's temp dir, which the runner renames
    into place (and lists in stage.json) once the stage succeeds."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / REPORT_JSON).write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (directory / REPORT_HTML).write_text(render_html(report), encoding="utf-8")
    (directory / REPORT_JUNIT).write_text(render_junit(report, stage), encoding="utf-8")


def replace_with_report(directory: Path, report: GateReport, stage: GateStage) -> None:
    """The three report files as the whole of `directory` (validate-failed/, verify-failed/), swapped in by one
    rename like a stage's outputs: CI never collects a half-written junit.xml, or one beside another run's."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(directory)
    try:
        write_report(tmp, report, stage)
        replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
