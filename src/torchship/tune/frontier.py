"""The frontier tune draws: every engine's speed (its in-process floor, and its best served throughput when
the gate let it be packaged) against its agreement with the fp32 source model (the gate's task-level
precision check). An engine is on the frontier when no other engine is both faster and at least as close
to the source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torchship.tasks import TaskDefinition
from torchship.tune.records import Agreement, BackendStatus, TuneResult


def engine_agreement(stage_root: Path, definition: TaskDefinition) -> Agreement | None:
    """The engine's agreement with the source, from its gate report (placeholder until the gate records
    the precision check)."""
    return None


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
