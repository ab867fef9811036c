"""tune.html from a TuneResult, through templates/tune.html.j2 (escaped)."""

from __future__ import annotations

from dataclasses import dataclass

from torchship.rendering import render_html
from torchship.tune.frontier import FrontierPoint, frontier
from torchship.tune.records import TuneResult

_BAR_WIDTH = 420
_LABEL_WIDTH = 330


@dataclass(frozen=True)
class ChartRow:
    label: str
    throughput: float
    p50: float
    p95: float
    p99: float
    tail: float  # p99 / p50
    failures: int
    start: float
    bar: float
    meets: bool
    chosen: bool


def chart_rows(result: TuneResult) -> list[ChartRow]:
    top = max((m.throughput_rps for m in result.measurements), default=0.0) or 1.0
    return [
        ChartRow(
            label=m.candidate.label,
            throughput=m.throughput_rps,
            p50=m.p50_ms,
            p95=m.p95_ms,
            p99=m.p99_ms,
            tail=m.tail_ratio,
            failures=m.failures,
            start=m.start_s,
            bar=_BAR_WIDTH * m.throughput_rps / top,
            meets=result.meets(m),
            chosen=result.is_chosen(m),
        )
        for m in result.measurements
    ]


_PLOT_W, _PLOT_H, _PAD = 520, 260, 50


@dataclass(frozen=True)
class PlotPoint:
    """A frontier point placed on the scatter (speed right, closeness to the source up)."""

    point: FrontierPoint
    x: float
    y: float


def plot_points(points: list[FrontierPoint]) -> list[PlotPoint]:
    placed = [p for p in points if p.floor_rps is not None and p.agreement is not None]
    if not placed:
        return []
    top = max(p.floor_rps or 0.0 for p in placed) or 1.0
    low = min(p.agreement or 0.0 for p in placed)
    span = (1.0 - low) or 1.0
    return [
        PlotPoint(
            point=p,
            x=_PAD + _PLOT_W * (p.floor_rps or 0.0) / top,
            y=_PAD + _PLOT_H * (1.0 - ((p.agreement or 0.0) - low) / span),
        )
        for p in placed
    ]


def render_chart(result: TuneResult) -> str:
    budget = f"{result.budget_p95_ms:g} ms" if result.budget_p95_ms is not None else "none (fastest wins)"
    points = frontier(result)
    return render_html(
        "tune.html.j2",
        result=result,
        rows=chart_rows(result),
        frontier=points,
        plotted=plot_points(points),
        plot={"w": _PLOT_W, "h": _PLOT_H, "pad": _PAD},
        tail=f"{result.max_tail_ratio:g}x p50" if result.max_tail_ratio is not None else "none",
        budget=budget,
        label_width=_LABEL_WIDTH,
        width=_LABEL_WIDTH + _BAR_WIDTH + 220,
    )
