"""Render a validation report (compiled vs source model) as a self-contained HTML page or terminal lines.

The page comes from templates/report.html.j2 (tables from templates/report_macros.html.j2), rendered with
autoescape, so every value taken from the report is HTML-escaped by jinja2, not by hand. It has no network
assets at all: inline CSS, inline SVG histograms, no scripts (a Content-Security-Policy meta tag forbids them
too). Every section may be missing or None: the page says so instead of failing.

This module only prepares values (numbers as text, histogram geometry); the templates hold all the markup.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from torchship.rendering import render_template

MAX_DISAGREEMENTS = 10
MAX_JSON_CHARS = 300


# ---------------------------------------------------------------------------------------------- formatting


def _num(value: Any, digits: int = 4) -> str:
    """A number as short text: 4 significant digits for floats, '—' for missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def _ms(value: Any, unit: bool = True) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    value = float(value)
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} ms" if unit else text


def _pct(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return f"{value * 100:.2f}%"


def _json(value: Any) -> str:
    """Any JSON value as compact text, cut to MAX_JSON_CHARS (the template escapes it)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= MAX_JSON_CHARS else text[: MAX_JSON_CHARS - 1] + "…"


def _status(value: Any) -> str:
    """Normalise a status/verdict/ok value to 'pass', 'fail', 'skipped' or 'unknown'."""
    if value is True:
        return "pass"
    if value is False:
        return "fail"
    text = str(value).strip().lower() if value is not None else ""
    if text in ("pass", "passed", "ok"):
        return "pass"
    if text in ("fail", "failed", "error"):
        return "fail"
    if text in ("skip", "skipped"):
        return "skipped"
    return "unknown"


def _badge_label(value: Any) -> str:
    return {"pass": "PASS", "fail": "FAIL", "skipped": "SKIPPED"}.get(
        _status(value), str(value or "?").upper()
    )


def _over(value: Any) -> bool:
    """An excess above zero: the value is out of tolerance."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


class _Fields(dict):
    """A report section for the template: a key the report lacks reads as None (the page says '—'), where the
    template's StrictUndefined would otherwise fail on old or sparse reports."""

    def __missing__(self, key: str) -> None:
        return None


def _as_dict(value: Any) -> dict:
    return _Fields(value) if isinstance(value, dict) else _Fields()


def _section(value: Any) -> dict | None:
    """A whole report section, or None where the report has none (the page says so)."""
    return _Fields(value) if isinstance(value, dict) else None


def _plain(report: Any) -> dict:
    """A GateReport (validate/records.py) as its JSON fields. The page also renders plain dicts: partial or
    hand-edited reports show what they have, every missing section says so."""
    if isinstance(report, BaseModel):
        return report.model_dump(mode="json")
    return _as_dict(report)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _flatten(values: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(values, dict):
        out = []
        for key, value in values.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, values)]


def _finite(values: Any) -> list[float]:
    out = []
    for v in _as_list(values):
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def _marker(value: Any) -> float | None:
    return float(value) if _finite([value]) else None


# ---------------------------------------------------------------------------------------------- histogram


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Marker:
    x: float
    label_y: float
    anchor: str
    dx: int
    colour: str
    dash: str
    label: str


@dataclass(frozen=True)
class Histogram:
    """Geometry of one latency histogram in SVG user units; templates/report_macros.html.j2 draws it."""

    title: str
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    bars: list[Bar]
    markers: list[Marker]


def histogram(
    samples_ms: Any, p50: Any = None, p95: Any = None, budget_p95: Any = None, title: str = ""
) -> Histogram | None:
    """A bar chart of latency samples with p50/p95 marked and the p95 budget drawn, if set; None without samples."""
    samples = _finite(samples_ms)
    if not samples:
        return None
    p50, p95, budget = _marker(p50), _marker(p95), _marker(budget_p95)
    marks = [m for m in (p50, p95, budget) if m is not None]
    lo, hi = min([*samples, *marks]), max([*samples, *marks])
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):  # one sample, or all equal: give the range some width
        pad = max(abs(hi) * 0.1, 0.5)
        lo, hi = lo - pad, hi + pad
    else:
        pad = (hi - lo) * 0.03
        lo, hi = lo - pad, hi + pad
    if min(samples) >= 0:
        lo = max(lo, 0.0)

    # Bins span the samples only (the axis may be wider, to show the budget): one narrow bin if all are equal.
    s_lo, s_hi = min(samples), max(samples)
    if s_hi > s_lo:
        n_bins = max(1, min(40, 2 * math.ceil(math.sqrt(len(samples)))))
        width_ms = (s_hi - s_lo) / n_bins
    else:
        n_bins, width_ms = 1, (hi - lo) / 40
        s_lo -= width_ms / 2
    counts = [0] * n_bins
    for s in samples:
        counts[min(n_bins - 1, max(0, int((s - s_lo) / width_ms)))] += 1
    top_count = max(counts) or 1

    w, h = 560, 250
    left, right, top, bottom = 46, 14, 52, 40
    pw, ph = w - left - right, h - top - bottom

    def x(ms: float) -> float:
        return left + (ms - lo) / (hi - lo) * pw

    def y(count: float) -> float:
        return top + ph - count / top_count * ph

    y_ticks = [
        Tick(y(t), str(t))
        for t in sorted({0, top_count} | ({round(top_count / 2)} if top_count >= 4 else set()))
    ]
    bars = []
    for i, count in enumerate(counts):
        if not count:
            continue
        b_lo, b_hi = s_lo + i * width_ms, s_lo + (i + 1) * width_ms
        x0, x1 = max(x(b_lo), left), min(x(b_hi), left + pw)
        bars.append(
            Bar(
                x=x0 + 0.5,
                y=y(count),
                width=max(x1 - x0 - 1, 1.5),
                height=top + ph - y(count),
                title=f"{_ms(b_lo, False)}–{_ms(b_hi)}: {count} samples",
            )
        )
    x_ticks = []
    for k in range(6):
        ms = lo + (hi - lo) * k / 5
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"
        x_ticks.append(Tick(x(ms), _ms(ms, False), anchor))
    # One label row per marker, so close values do not overlap.
    markers: list[Marker] = []
    candidates = [
        (p50, f"p50 {_ms(p50)}", "#111827", "5 3"),
        (p95, f"p95 {_ms(p95)}", "#d97706", "5 3"),
        (budget, f"budget p95 {_ms(budget)}", "#dc2626", ""),
    ]
    for value, label, colour, dash in candidates:
        if value is None:
            continue
        xx = x(value)
        anchor, dx = ("end", -4) if xx > left + pw / 2 else ("start", 4)
        markers.append(Marker(xx, top - 52 + 15 * (len(markers) + 1), anchor, dx, colour, dash, label))
    return Histogram(title, w, h, left, top, pw, ph, y_ticks, x_ticks, bars, markers)


# ---------------------------------------------------------------------------------------------- page context


@dataclass(frozen=True)
class LatencyFigure:
    caption: str
    run: dict | None
    histogram: Histogram | None
    samples: int
    within_budget: bool | None


def _latency_figures(latency: dict) -> list[LatencyFigure]:
    budget = _marker(_as_dict(latency.get("budget_ms")).get("p95"))
    figures = []
    for key, caption in (("in_process", "In-process (TorchScript)"), ("served", "Served (TorchServe)")):
        run = latency.get(key)
        if not isinstance(run, dict):
            if key == "served":  # an in-process run is always expected; a missing served run is worth a note
                figures.append(LatencyFigure(caption, None, None, 0, None))
            continue
        p95 = _marker(run.get("p95"))
        figures.append(
            LatencyFigure(
                caption=caption,
                run=_as_dict(run),
                histogram=histogram(
                    run.get("samples_ms"), run.get("p50"), p95, budget, f"{caption} latency histogram"
                ),
                samples=len(_finite(run.get("samples_ms"))),
                within_budget=None if budget is None or p95 is None else p95 <= budget,
            )
        )
    return figures


def _parity_output_names(parity: dict) -> list[str]:
    """Every output name, in order of first appearance (the per-output table, then the cases)."""
    names = list(_as_dict(parity.get("outputs")))
    for case in _as_list(parity.get("cases")):
        names += [n for n in _as_dict(_as_dict(case).get("outputs")) if n not in names]
    return names


def _context(report: dict) -> dict[str, Any]:
    parity, agreement = _section(report.get("parity")), _section(report.get("agreement"))
    metrics, latency = _section(report.get("metrics")), _section(report.get("latency"))
    checks = [_as_dict(c) for c in _as_list(report.get("checks"))]
    verdict = _status(report.get("verdict"))
    precision = _section(report.get("precision"))  # only for compile.precision other than fp32
    return {
        "model": _as_dict(report.get("model")),
        "generated_at": report.get("generated_at"),
        "verdict_class": verdict if verdict in ("pass", "fail") else "unknown",
        "verdict_label": {"pass": "PASS", "fail": "FAIL"}.get(
            verdict, str(report.get("verdict") or "UNKNOWN").upper()
        ),
        "page_verdict": str(report.get("verdict") or "unknown").upper(),
        "checks": checks,
        "failed_checks": [str(c.get("name")) for c in checks if _status(c.get("status")) == "fail"],
        "parity": parity,
        "parity_outputs": list(_as_dict(parity.get("outputs")).items()) if parity else [],
        "parity_names": _parity_output_names(parity) if parity else [],
        "parity_cases": [_as_dict(c) for c in _as_list(parity.get("cases"))] if parity else [],
        "agreement": agreement,
        "disagreements": [_as_dict(d) for d in _as_list(agreement.get("disagreements"))] if agreement else [],
        "max_disagreements": MAX_DISAGREEMENTS,
        "precision": precision,
        "precision_limits": [_as_dict(r) for r in _as_list(precision.get("limits"))] if precision else [],
        "precision_measures": [_as_dict(r) for r in _as_list(precision.get("measures"))] if precision else [],
        "precision_changes": [_as_dict(r) for r in _as_list(precision.get("changed"))] if precision else [],
        "metrics": metrics,
        "thresholds": [_as_dict(t) for t in _as_list(metrics.get("thresholds"))] if metrics else [],
        "metric_values": _flatten(_as_dict(metrics.get("values"))) if metrics else [],
        "latency": latency,
        "budget_p95": _marker(_as_dict(latency.get("budget_ms")).get("p95")) if latency else None,
        "latency_figures": _latency_figures(latency) if latency else [],
        # formatting helpers: they return plain text, which the template escapes
        "num": _num,
        "ms": _ms,
        "pct": _pct,
        "json_text": _json,
        "status": _status,
        "badge_label": _badge_label,
        "over": _over,
        "as_dict": _as_dict,
    }


# ---------------------------------------------------------------------------------------------- public API


def render_html(report: BaseModel | dict) -> str:
    """A self-contained HTML page (no network assets: inline CSS and inline SVG only, no JS libraries) for a
    GateReport (or a report dict)."""
    return render_template("report.html.j2", autoescape=True, **_context(_plain(report)))


def summary_lines(report: BaseModel | dict) -> list[str]:
    """Plain-text lines for a terminal summary: verdict, one line per check (name, status, message), metric values vs thresholds, latency p50/p95."""
    report = _plain(report)
    model = _as_dict(report.get("model"))
    verdict = str(report.get("verdict") or "unknown").upper()
    lines = [
        f"Verdict: {verdict} · {model.get('name') or '(unnamed model)'} {model.get('version') or ''}".rstrip()
        + (f" ({model['task']})" if model.get("task") else "")
        + (f" · generated {report['generated_at']}" if report.get("generated_at") else "")
    ]
    checks = [_as_dict(c) for c in _as_list(report.get("checks"))]
    if checks:
        lines.append("Checks:")
        width = max(len(str(c.get("name"))) for c in checks)
        for c in checks:
            status = str(c.get("status") or "?").upper()
            lines.append(f"  [{status:^7}] {c.get('name')!s:<{width}}  {c.get('message') or ''}".rstrip())
    metrics = report.get("metrics")
    if isinstance(metrics, dict):
        thresholds = [_as_dict(t) for t in _as_list(metrics.get("thresholds"))]
        lines.append(f"Metrics ({metrics.get('eval_set') or '?'}, {_num(metrics.get('examples'))} examples):")
        for t in thresholds:
            name = str(t.get("metric")) + (f"[{t['label']}]" if t.get("label") is not None else "")
            ok = "ok" if t.get("ok") is True else "FAIL" if t.get("ok") is False else "?"
            lines.append(f"  {name}: {_num(t.get('value'))} vs threshold {_num(t.get('threshold'))}  {ok}")
        if not thresholds:
            lines.append("  (no thresholds set)")
    else:
        lines.append("Metrics: no eval set")
    latency = report.get("latency")
    if isinstance(latency, dict):
        budget = _as_dict(latency.get("budget_ms")).get("p95")
        budget_text = f" (budget p95 {_ms(budget)})" if _marker(budget) is not None else ""
        for key, label in (("in_process", "in-process"), ("served", "served")):
            run = latency.get(key)
            if isinstance(run, dict):
                lines.append(
                    f"Latency {label}: p50 {_ms(run.get('p50'))}, p95 {_ms(run.get('p95'))}"
                    f" over {len(_finite(run.get('samples_ms')))} samples{budget_text}"
                )
    return lines
