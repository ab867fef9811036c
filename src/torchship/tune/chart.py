"""tune.html from a TuneResult, through templates/tune.html.j2 (escaped)."""

from __future__ import annotations

from dataclasses import dataclass

from torchship.rendering import render_html
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
            failures=m.failures,
            start=m.start_s,
            bar=_BAR_WIDTH * m.throughput_rps / top,
            meets=m.meets(result.budget_p95_ms),
            chosen=m.config == result.chosen and m.backend == result.chosen_backend,
        )
        for m in result.measurements
    ]


def render_chart(result: TuneResult) -> str:
    budget = f"{result.budget_p95_ms:g} ms" if result.budget_p95_ms is not None else "none (fastest wins)"
    return render_html(
        "tune.html.j2",
        result=result,
        rows=chart_rows(result),
        budget=budget,
        label_width=_LABEL_WIDTH,
        width=_LABEL_WIDTH + _BAR_WIDTH + 220,
    )
