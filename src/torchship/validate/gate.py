"""The validate stage: the fail-closed gate between compile and package.

Checks, each reported even when an earlier one fails, so the report shows everything at once:
- source model: the checkpoint fits the task (validate/source_integrity.py; a misfit is refused outright);
- parity: compiled vs source outputs (parity.py);
- agreement: task-level answers identical — same top label, same entity spans, same keywords, and
  embeddings pointing the same way (cosine >= 1 - 1e-4) — on the examples and the eval set;
- precision, instead of agreement when compile.precision is not fp32: the task's own measures of the
  compiled answers against the fp32 source's, held to validate.precision_limits (precision.py); parity
  is then reported for information only, since reduced precision moves every tensor a little;
- metrics: scores of the compiled model on `validate.eval_set` against `validate.thresholds`;
- latency: in-process p50/p95 per text against `validate.latency_ms` (only when set).
Any failure: the report goes to outputs/<name>/<version>/validate-failed/ and the stage fails, so
nothing is packaged. On success report.json and report.html are the stage's outputs.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torchship
from torchship.errors import ValidationFailed
from torchship.examples import (
    example_label,
    example_rows,
    examples_origin,
    load_examples,
    uses_builtin_examples,
)
from torchship.handler_settings import in_process_settings
from torchship.handlers.requests import BadRequest
from torchship.handlers.service import answer_bodies, build_task
from torchship.handlers.tasks import Task
from torchship.modeling import load_source_model
from torchship.pipeline import StageContext
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec
from torchship.tasks import TaskDefinition, task_definition
from torchship.validate.eval_set import EvalSetFormat
from torchship.validate.metrics import EvalExample, check_thresholds, load_eval_set, worst
from torchship.validate.parity import build_cases, compare, parity_failure
from torchship.validate.precision import judge_precision, precision_limits
from torchship.validate.records import (
    REPORT_HTML,
    Check,
    GateReport,
    Latency,
    LatencyRun,
    ModelRef,
    PrecisionCheck,
    check,
    latency_failure,
    percentile,
    replace_with_report,
    verdict_of,
    write_report,
)

FAILED_DIR = "validate-failed"
LATENCY_ROUNDS = 3


def check_agreement(
    definition: TaskDefinition, bodies: list[Any], compiled: Task, source: Task
) -> dict[str, Any]:
    return agreement_of(definition, bodies, answer_bodies(compiled, bodies), answer_bodies(source, bodies))


def agreement_of(
    definition: TaskDefinition, bodies: list[Any], compiled_answers: list[Any], source_answers: list[Any]
) -> dict[str, Any]:
    pairs = [
        (b, c, s)
        for b, c, s in zip(bodies, compiled_answers, source_answers, strict=True)
        if not isinstance(s, BadRequest)
    ]
    disagreements = [
        {"request": example_label(b), "source": s, "compiled": c}
        for b, c, s in pairs
        if isinstance(c, BadRequest) or not definition.agrees(c, s)
    ]
    compared = len(pairs)
    return {
        "compared": compared,
        "agreed": compared - len(disagreements),
        "rate": (compared - len(disagreements)) / compared if compared else 1.0,
        "disagreements": [
            {**d, "compiled": str(d["compiled"]) if isinstance(d["compiled"], BadRequest) else d["compiled"]}
            for d in disagreements[:10]
        ],
    }


def evaluate_metrics(
    spec: ModelSpec, compiled: Task, examples: list[EvalExample]
) -> tuple[dict[str, Any], str | None]:
    """The compiled model's scores on the eval set, and the worst missed threshold (None: all met)."""
    assert spec.validate.eval_set is not None, "the caller loaded `examples` from validate.eval_set"
    definition = task_definition(spec.task)
    eval_format: EvalSetFormat | None = definition.eval_set
    if eval_format is None:  # load_eval_set already refused the eval set of such a task
        raise ValueError(f"task {spec.task} has no metrics")
    results = answer_bodies(compiled, [e.request for e in examples])
    # The task definition turns a served answer into what its eval-set format scores (eval_set.py).
    values = eval_format.score(
        [e.gold for e in examples],
        [eval_format.no_answer if isinstance(r, BadRequest) else definition.prediction(r) for r in results],
    )
    where = f"{spec.spec_path}: validate.thresholds"
    rows = check_thresholds(values, spec.validate.thresholds, where=where)
    miss = worst(rows)
    metrics = {
        "eval_set": str(spec.resolve(spec.validate.eval_set)),
        "examples": len(examples),
        "values": values,
        "thresholds": [vars(r) for r in rows],
    }
    return metrics, miss.describe() if miss else None


def measure_latency(task: Task, bodies: list[Any]) -> LatencyRun:
    """Milliseconds per request, each sent alone through the handler code (tokenize, run, post-process)."""
    answer_bodies(task, bodies[:2])  # warm-up: the JIT's first runs are not what a client sees
    samples = []
    for _ in range(LATENCY_ROUNDS):
        for body in bodies:
            started = time.perf_counter()
            answer_bodies(task, [body])
            samples.append((time.perf_counter() - started) * 1000)
    return LatencyRun(samples_ms=samples, p50=percentile(samples, 0.5), p95=percentile(samples, 0.95))


def run_validate(ctx: StageContext) -> dict[str, Any]:
    """The gate: parity, task-level agreement, eval-set metrics and latency, all reported together; the
    report is written to validate/ when every check passes, else to validate-failed/ and the stage fails."""
    spec = ctx.spec
    model_dir = ctx.input_dir("fetch") / MODEL_DIRNAME
    compiled_dir = ctx.input_dir("compile")
    definition = task_definition(spec.task)
    precision_limits(spec, definition)  # a misnamed validate.precision_limits key fails before any work
    config = in_process_settings(spec, model_dir, compiled_dir)
    compiled = build_task(model_dir, config, compiled_dir=compiled_dir)
    started = time.perf_counter()
    # Loading refuses a checkpoint that does not fit the task (validate/source_integrity.py, exit 3), so
    # reaching the next line is the check passing; it is recorded so the report and CI show it.
    source_model = load_source_model(model_dir, spec.task, spec.spec_path)
    source_check = _timed(_source_model_check(spec, model_dir), started)
    source = build_task(model_dir, config, model=source_model.as_model())
    bodies = load_examples(spec)
    if uses_builtin_examples(spec):
        ctx.progress(f"examples: {examples_origin(spec)}")
    atol, rtol = spec.validate.atol, spec.validate.rtol

    started = time.perf_counter()
    cases = build_cases(
        spec, compiled.encoder.tokenizer, example_rows(compiled, bodies), compiled.encoder.inputs
    )
    ctx.progress(f"parity: compiled vs source on {len(cases)} input batches")
    parity = compare(compiled.encoder, source_model, definition.output(spec, model_dir), cases, atol, rtol)
    parity_check = _timed(_parity_check(spec, parity), started)
    started = time.perf_counter()
    metrics, eval_bodies, metrics_check = _metrics(ctx, compiled)
    metrics_check = _timed(metrics_check, started)
    started = time.perf_counter()
    agreement, agreement_check, precision = _agreement(
        ctx, definition, bodies + eval_bodies, compiled, source
    )
    agreement_check = _timed(agreement_check, started)
    started = time.perf_counter()
    latency, latency_check = _latency(ctx, compiled, bodies)
    latency_check = _timed(latency_check, started)
    checks = [source_check, parity_check, agreement_check, metrics_check, latency_check]
    # parity, agreement and metrics arrive as the dicts their modules build; the model validates their shape.
    report = GateReport.model_validate(
        {
            "model": ModelRef(name=spec.name, version=spec.version, task=spec.task),
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "torchship_version": torchship.__version__,
            "verdict": verdict_of(checks),
            "checks": checks,
            "parity": parity,
            "agreement": agreement,
            "metrics": metrics,
            "latency": latency,
            "precision": precision,
        }
    )
    _write_or_refuse(ctx, report)
    return {
        "verdict": report.verdict,
        "checks": [c.model_dump() for c in report.checks],
        "outputs": {k: {"max_abs": v.max_abs, "ok": v.ok} for k, v in report.parity.outputs.items()},
        "cases": len(cases),
        "examples": {
            "count": len(bodies),
            "from": examples_origin(spec),
            "builtin": uses_builtin_examples(spec),
        },
        "latency_ms": {"p50": latency.in_process.p50, "p95": latency.in_process.p95},
    }


def _timed(result: Check, started: float) -> Check:
    """The check with how long it ran (the JUnit report's test case time)."""
    return result.model_copy(update={"seconds": round(time.perf_counter() - started, 3)})


def _source_model_check(spec: ModelSpec, model_dir: Path) -> Check:
    try:
        architectures = json.loads((model_dir / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        architectures = []
    made_as = f" ({architectures[0]})" if architectures else ""
    return check(
        "source_model",
        None,
        f"the checkpoint{made_as} fits task {spec.task}: every weight it uses loads from the checkpoint",
    )


def _metrics(ctx: StageContext, compiled: Task) -> tuple[dict[str, Any] | None, list[Any], Check]:
    """(scores, the eval set's request bodies, the check); skipped without validate.eval_set."""
    spec = ctx.spec
    if not spec.validate.eval_set:
        return None, [], check("metrics", None, "no validate.eval_set", skipped=True)
    ctx.progress("metrics on the eval set")
    examples = load_eval_set(spec.resolve(spec.validate.eval_set), spec.task)
    metrics, miss = evaluate_metrics(spec, compiled, examples)
    passed = f"{len(metrics['thresholds'])} thresholds met on {len(examples)} examples"
    return metrics, [e.request for e in examples], check("metrics", miss, passed)


def _parity_check(spec: ModelSpec, parity: dict[str, Any]) -> Check:
    atol, rtol = spec.validate.atol, spec.validate.rtol
    failure = parity_failure(parity)
    precision = spec.compile.precision
    if precision == "fp32":
        return check("parity", failure, f"all outputs within atol {atol} + rtol {rtol}")
    within = failure or f"all outputs within atol {atol} + rtol {rtol}"
    return check(
        "parity",
        None,
        f"informational for reduced precision ({precision}; the precision check decides): {within}",
    )


def _agreement(
    ctx: StageContext, definition: TaskDefinition, bodies: list[Any], compiled: Task, source: Task
) -> tuple[dict[str, Any], Check, PrecisionCheck | None]:
    """Exact task-level agreement (fp32), or for reduced precision the task-level precision check on the
    same answers (agreement is then still recorded in the report, not checked)."""
    spec = ctx.spec
    compiled_answers, source_answers = answer_bodies(compiled, bodies), answer_bodies(source, bodies)
    agreement = agreement_of(definition, bodies, compiled_answers, source_answers)
    if spec.compile.precision != "fp32":
        ctx.progress(
            f"{spec.compile.precision} vs the fp32 source: the task's measures on {len(bodies)} requests"
        )
        precision, precision_check = judge_precision(
            spec, definition, bodies, source_answers, compiled_answers
        )
        return agreement, precision_check, precision
    ctx.progress(f"task-level agreement on {len(bodies)} requests")
    first = agreement["disagreements"][0] if agreement["disagreements"] else None
    failure = first and (
        f"{agreement['compared'] - agreement['agreed']} of {agreement['compared']} requests get a different "
        f"answer from the compiled model, e.g. {first['request']}"
    )
    passed = f"{agreement['agreed']} of {agreement['compared']} requests answered the same"
    return agreement, check("agreement", failure, passed), None


def _latency(ctx: StageContext, compiled: Task, bodies: list[Any]) -> tuple[Latency, Check]:
    spec = ctx.spec
    ctx.progress("in-process latency")
    budget = spec.validate.latency_ms.model_dump(exclude_none=True) if spec.validate.latency_ms else None
    latency = Latency(in_process=measure_latency(compiled, bodies), budget_ms=budget)
    run = latency.in_process
    return latency, check(
        "latency",
        latency_failure(run, latency.budget_ms, "in-process"),
        f"in-process p50 {run.p50:.1f} ms, p95 {run.p95:.1f} ms",
        skipped=not budget,
    )


def _write_or_refuse(ctx: StageContext, report: GateReport) -> None:
    """A passing report goes to the stage's outputs; a failing one to validate-failed/, and the stage fails
    (the last good validate/ is left as it was)."""
    failed_dir = ctx.out_dir.parent / FAILED_DIR
    failing = report.first_failure()
    if failing is not None:
        replace_with_report(failed_dir, report, "validate")
        raise ValidationFailed(
            f"validation gate failed: {failing.name}: {failing.message}",
            hint=f"Nothing was packaged. The full report: {failed_dir / REPORT_HTML}",
        )
    shutil.rmtree(failed_dir, ignore_errors=True)
    write_report(ctx.out_dir, report, "validate")


def summarize_validate(details: dict[str, Any]) -> str:
    checks = details.get("checks", [])
    shown = " · ".join(f"{c['name']} {c['status']}" for c in checks if c["status"] != "skipped")
    worst_abs = max((o["max_abs"] for o in details.get("outputs", {}).values()), default=0.0)
    builtin = " · built-in examples" if details.get("examples", {}).get("builtin") else ""
    return f"{details.get('verdict')} · {shown} · max|Δ| {worst_abs:.1e} · p95 {details.get('latency_ms', {}).get('p95', 0):.0f} ms{builtin}"
