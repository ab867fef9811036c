"""The gate's precision check: a reduced-precision model (compile.precision bf16, int8-dynamic, int8-static)
is accepted on what its users see, not on tensors.

Its answers to the examples and the eval set's requests are compared with the fp32 source model's by the
task's own diff (`definition.diff`: the measures `torchship diff` and promotion use: label flips, entity F1,
cosine and neighbour overlap, top-k overlap, rank correlation, answer F1), and each measure is held to its
limit: the task's default (`precision_limits` on its definition) or the spec's `validate.precision_limits`,
key by key. A broken limit refuses the model with the measure, its value, the limit and the inputs that
changed. The result is a typed PrecisionCheck in report.json; `read_precision_check` gives it back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torchship.diff.inputs import one_answer_problem, request_key
from torchship.diff.limits import breaches, check_precision_limit_names
from torchship.diff.record import Breach, TaskDiff
from torchship.examples import example_label
from torchship.handlers.requests import BadRequest
from torchship.spec import ModelSpec
from torchship.tasks import TaskDefinition, task_definition
from torchship.validate.records import (
    REPORT_JSON,
    Check,
    PrecisionChange,
    PrecisionCheck,
    PrecisionLimit,
    check,
    read_report,
)

SECTION = "validate.precision_limits"
SHOWN_INPUTS = 3
KEPT_CHANGES = 10


def precision_limits(spec: ModelSpec, definition: TaskDefinition) -> dict[str, tuple[float, str]]:
    """{key: (limit, "default" | "spec")}: the task's defaults with the spec's keys laid over them (a
    misnamed spec key is a SpecError listing the task's measures)."""
    from_spec = check_precision_limit_names(spec, definition)
    limits = {key: (float(value), "default") for key, value in definition.precision_limits.items()}
    limits |= {key: (float(value), "spec") for key, value in from_spec.items()}
    return limits


def judge_precision(
    spec: ModelSpec,
    definition: TaskDefinition,
    bodies: Sequence[Any],
    source_answers: Sequence[Any],
    compiled_answers: Sequence[Any],
) -> tuple[PrecisionCheck, Check]:
    """The precision check on answers already computed (one per body; a BadRequest where refused)."""
    limits = precision_limits(spec, definition)
    seen: set[str] = set()
    kept: list[int] = []
    refused: list[int] = []  # the source answers, the compiled model refuses: a change no measure shows
    for i, body in enumerate(bodies):
        key = request_key(body)
        if isinstance(source_answers[i], BadRequest) or key in seen or one_answer_problem(definition, body):
            continue
        seen.add(key)
        (refused if isinstance(compiled_answers[i], BadRequest) else kept).append(i)
    requests = [bodies[i] for i in kept]
    task_diff = definition.diff(
        requests, [source_answers[i] for i in kept], [compiled_answers[i] for i in kept]
    )
    broken = breaches({key: limit for key, (limit, _) in limits.items()}, task_diff, None)
    rows = [_limit_row(key, limit, origin, task_diff, broken) for key, (limit, origin) in limits.items()]
    precision = spec.compile.precision
    changed = [
        PrecisionChange(request=example_label(requests[c.index]), why=c.why) for c in task_diff.changed
    ]
    if refused:
        failure: str | None = (
            f"the {precision} model refuses {len(refused)} request(s) the fp32 source answers, e.g. "
            f"{example_label(bodies[refused[0]])}: {compiled_answers[refused[0]]}"
        )
    elif broken:
        failure = (
            f"the {precision} answers differ too much from the fp32 source's on {len(requests)} requests: "
            + "; ".join(_refusal(b, requests, task_diff) for b in broken)
        )
    else:
        failure = None
    shown = ", ".join(f"{m.name} {_shown(m.value)}" for m in task_diff.measures)
    passed = (
        f"{precision} vs the fp32 source on {len(requests)} requests: {shown}; every limit met "
        f"({', '.join(f'{r.key} {r.limit:g}' for r in rows) or 'none set'})"
    )
    result = check("precision", failure, passed)
    record = PrecisionCheck(
        precision=precision,
        backend=spec.compile.backend,
        inputs=len(requests),
        skipped=len(bodies) - len(kept) - len(refused),
        measures=task_diff.measures,
        limits=rows,
        passed=failure is None,
        refused_by=(broken[0].measure if broken else "refused requests" if refused else None),
        message=result.message,
        changed=changed[:KEPT_CHANGES],
    )
    return record, result


def _limit_row(
    key: str, limit: float, origin: str, task_diff: TaskDiff, broken: list[Breach]
) -> PrecisionLimit:
    kind, measure = key.split("_", 1)
    found = task_diff.measure(measure)
    return PrecisionLimit.model_validate(
        {
            "key": key,
            "measure": measure,
            "kind": kind,
            "limit": limit,
            "value": found.value if found is not None else None,
            "ok": not any(b.measure == measure and b.kind == kind for b in broken),
            "origin": origin,
        }
    )


def _shown(value: float | None) -> str:
    return "not measurable" if value is None else f"{value:.4g}"


def _refusal(breach: Breach, requests: list[Any], task_diff: TaskDiff) -> str:
    """The broken limit, and the inputs behind it: those the diff lists as changed, else (a measure that
    moved without any input crossing the diff's own line, e.g. a mean cosine) the inputs that moved most."""
    inputs = list(breach.inputs)
    if not inputs and task_diff.cosines:
        cosines = task_diff.cosines
        inputs = sorted(range(len(cosines)), key=lambda i: cosines[i])[:SHOWN_INPUTS]
    message = breach.describe(SECTION)
    if not inputs:
        return message
    shown = ", ".join(json.dumps(requests[i], ensure_ascii=False) for i in inputs[:SHOWN_INPUTS])
    more = f" and {len(inputs) - SHOWN_INPUTS} more" if len(inputs) > SHOWN_INPUTS else ""
    what = "inputs that changed" if breach.inputs else "inputs that moved most"
    return f"{message} ({what}: {shown}{more})"


def read_precision_check(report_path: Path) -> PrecisionCheck | None:
    """The precision check of a gate report (report.json, or the directory holding it: validate/ or
    validate-failed/); None for an fp32 model, whose gate has no such check."""
    path = report_path / REPORT_JSON if report_path.is_dir() else report_path
    return read_report(path).precision


def served_judge(spec: ModelSpec) -> Callable[[list[Any], list[Any], list[Any]], str | None] | None:
    """For the served checks (verify, the image, rehearse): a reduced-precision model's served answers
    against the source's, judged like the gate judged them in-process; None for fp32 (tolerances apply)."""
    if spec.compile.precision == "fp32":
        return None
    definition = task_definition(spec.task)

    def judge(bodies: list[Any], source: list[Any], served: list[Any]) -> str | None:
        record, _ = judge_precision(spec, definition, bodies, source, served)
        return None if record.passed else f"the task level ({spec.compile.precision}): {record.message}"

    return judge
