"""diff.html from a DiffRecord, through templates/diff.html.j2: the confusion table as a heat map, the
cosine histogram, both versions' latency side by side (inline SVG, no assets)."""

from __future__ import annotations

from dataclasses import dataclass

from torchship.diff.record import DiffRecord
from torchship.rendering import render_html

_CELL = 34
_HIST_BINS = 20
_BAR_WIDTH = 360


@dataclass(frozen=True)
class HeatCell:
    x: int
    y: int
    count: int
    shade: str  # fill colour: darker for more inputs; red off the diagonal (a flip)


@dataclass(frozen=True)
class Bar:
    label: str
    width: float
    value: str
    colour: str


def _shade(count: int, top: int, flipped: bool) -> str:
    if count == 0:
        return "#ffffff"
    strength = 0.15 + 0.85 * count / top
    light = round(255 - strength * 180)
    return f"rgb(255,{light},{light})" if flipped else f"rgb({light},{light},255)"


def heat_cells(record: DiffRecord) -> list[HeatCell]:
    confusion = record.task_diff.confusion
    if confusion is None:
        return []
    top = max((c for row in confusion.counts for c in row), default=0) or 1
    return [
        HeatCell(x=j * _CELL, y=i * _CELL, count=count, shade=_shade(count, top, i != j))
        for i, row in enumerate(confusion.counts)
        for j, count in enumerate(row)
    ]


def cosine_bars(record: DiffRecord) -> list[Bar]:
    """The cosines binned over [low, 1], low the smallest cosine rounded down to 0.05 (at most 0)."""
    cosines = record.task_diff.cosines
    if not cosines:
        return []
    low = min(0.95, (min(cosines) // 0.05) * 0.05)
    width = (1.0 - low) / _HIST_BINS
    counts = [0] * _HIST_BINS
    for c in cosines:
        counts[min(_HIST_BINS - 1, int((c - low) / width))] += 1
    top = max(counts) or 1
    return [
        Bar(f"{low + i * width:.3f}–{low + (i + 1) * width:.3f}", _BAR_WIDTH * n / top, str(n), "#60a5fa")
        for i, n in enumerate(counts)
    ]


def latency_bars(record: DiffRecord) -> list[Bar]:
    latency = record.latency
    if latency is None:
        return []
    bars = []
    for what, unit, old, new in (
        ("p50", "ms", latency.old.p50_ms, latency.new.p50_ms),
        ("p99", "ms", latency.old.p99_ms, latency.new.p99_ms),
        ("throughput", "req/s", latency.old.throughput_rps, latency.new.throughput_rps),
    ):
        top = max(old, new) or 1.0
        bars.append(
            Bar(f"{what} {record.old.version}", _BAR_WIDTH * old / top, f"{old:.1f} {unit}", "#9ca3af")
        )
        bars.append(
            Bar(f"{what} {record.new.version}", _BAR_WIDTH * new / top, f"{new:.1f} {unit}", "#2563eb")
        )
    return bars


def render_diff_html(record: DiffRecord) -> str:
    return render_html(
        "diff.html.j2",
        record=record,
        cells=heat_cells(record),
        cell=_CELL,
        cosines=cosine_bars(record),
        latency=latency_bars(record),
        bar_width=_BAR_WIDTH,
    )
