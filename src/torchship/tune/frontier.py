"""The frontier tune draws: every engine's speed (its in-process floor, and its best served throughput when
the gate let it be packaged) against its agreement with the fp32 source model (the gate's task-level
precision check). An engine is on the frontier when no other engine is both faster and at least as close
to the source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torchship.tasks import TaskDefinition
from torchship.tune.records import Agreement, BackendStatus, TuneResult
from torchship.validate.records import REPORT_JSON, read_report

# What an fp32 engine's agreement is: the gate's own check that its answers are the source's (same label,
# spans, keywords; cosine >= 1 - 1e-4), as a rate. A reduced precision has the task's diff measure instead.
FP32_AGREEMENT = "answers identical to the source"


def engine_agreement(stage_root: Path, definition: TaskDefinition) -> Agreement | None:
    """The engine's agreement with the fp32 source, from its gate report (passed or refused). A reduced
    precision: the precision check's value of the task's first diff measure (flip rate, changed rate, mean
    cosine, top-k overlap, rank correlation, exact match), with the limit that refused it. fp32: the gate's
    own agreement check, identical answers (same label, spans, keywords; cosine >= 1 - 1e-4), as a rate.
    None: the engine never reached the gate (its compile failed)."""
    report_path = next(
        (
            stage_root / d / REPORT_JSON
            for d in ("validate", "validate-failed")
            if (stage_root / d / REPORT_JSON).is_file()
        ),
        None,
    )
    if report_path is None:
        return None
    report = read_report(report_path)
    check = report.precision
    if check is None:
        return Agreement(measure=FP32_AGREEMENT, value=report.agreement.rate, better="higher")
    name = definition.diff_measures[0]
    found = next((m for m in check.measures if m.name == name), None)
    refused = next((f"{row.key} {row.limit:g}" for row in check.limits if not row.ok), None)
    return Agreement(
        measure=name,
        value=found.value if found else None,
        better=found.better if found else "higher",
        refused_by=refused if not check.passed else None,
    )


@dataclass(frozen=True)
class FrontierPoint:
    label: str
    floor_rps: float | None
    served_rps: float | None  # the best measured configuration of this engine; None: not served
    agreement: float | None  # higher is closer to the source (1 - a lower-is-better measure)
    measure: str | None
    refused: str | None
    on_frontier: bool


def closeness(agreement: Agreement | None) -> float | None:
    """One axis for every task: a higher-is-better measure as it is, a lower-is-better one (a flip rate)
    as 1 - value."""
    if agreement is None or agreement.value is None:
        return None
    return agreement.value if agreement.better == "higher" else 1.0 - agreement.value


def _served(result: TuneResult, status: BackendStatus) -> float | None:
    rates = [
        m.throughput_rps
        for m in result.measurements
        if m.backend == status.backend and m.precision == status.precision and m.failures == 0
    ]
    return max(rates, default=None)


def frontier(result: TuneResult) -> list[FrontierPoint]:
    """Every engine the tune considered, fastest floor first, with whether it is on the frontier (accepted,
    and no other accepted engine has a higher floor at the same or better agreement)."""
    rows = [
        (status, status.floor_rps, _served(result, status), closeness(status.agreement))
        for status in result.backends
    ]

    def dominated(floor: float | None, close: float | None) -> bool:
        if floor is None:
            return True
        return any(
            other.refused is None
            and other_floor is not None
            and other_floor > floor
            and (close is None or (other_close is not None and other_close >= close))
            for other, other_floor, _, other_close in rows
        )

    points = [
        FrontierPoint(
            label=status.engine.label,
            floor_rps=floor,
            served_rps=served,
            agreement=close,
            measure=status.agreement.measure if status.agreement else None,
            refused=status.refused,
            on_frontier=status.refused is None and not dominated(floor, close),
        )
        for status, floor, served, close in rows
    ]
    return sorted(points, key=lambda p: -(p.floor_rps or 0.0))
