"""Render a validation report (compiled vs source model) as a self-contained HTML page or terminal lines.

The page has no network assets at all: inline CSS, inline SVG histograms, no scripts (a Content-Security-Policy
meta tag forbids them too). Every value taken from the report is HTML-escaped, and every section may be missing
or None: the page says so instead of failing.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from typing import Any

MAX_DISAGREEMENTS = 10
MAX_JSON_CHARS = 300

_CSS = """
:root { --pass: #15803d; --pass-bg: #dcfce7; --fail: #b91c1c; --fail-bg: #fee2e2; --skip: #4b5563;
        --skip-bg: #e5e7eb; --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --head: #f3f4f6; }
* { box-sizing: border-box; }
body { margin: 0; background: #f9fafb; color: var(--ink); line-height: 1.45;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 20px 24px 48px; }
.banner { border-radius: 10px; padding: 18px 22px; color: #fff; display: flex; gap: 24px;
          align-items: center; flex-wrap: wrap; }
.banner.pass { background: var(--pass); } .banner.fail { background: var(--fail); }
.banner.unknown { background: var(--skip); }
.verdict { font-size: 34px; font-weight: 800; letter-spacing: 0.06em; padding-right: 24px;
           border-right: 2px solid rgba(255,255,255,0.45); }
.model { font-size: 20px; font-weight: 650; overflow-wrap: anywhere; }
.meta { opacity: 0.92; margin-top: 2px; }
.meta span + span::before { content: "·"; margin: 0 8px; }
.failed-checks { margin-top: 6px; font-weight: 600; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 18px 16px;
          margin-top: 18px; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 16px 0 8px; color: #374151; }
p.note { color: var(--muted); margin: 4px 0 10px; }
p.empty { color: var(--muted); font-style: italic; margin: 4px 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums;
                 font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
td.code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px;
          overflow-wrap: anywhere; max-width: 380px; }
td.text { overflow-wrap: anywhere; max-width: 420px; }
tr.bad td { background: var(--fail-bg); }
tr.bad td:first-child { box-shadow: inset 4px 0 0 var(--fail); }
td.over { color: var(--fail); font-weight: 700; }
.badge { display: inline-block; min-width: 58px; text-align: center; padding: 1px 8px; border-radius: 999px;
         font-size: 12px; font-weight: 700; letter-spacing: 0.04em; }
.badge.pass { color: var(--pass); background: var(--pass-bg); border: 1px solid #86efac; }
.badge.fail { color: #fff; background: var(--fail); border: 1px solid var(--fail); }
.badge.skipped, .badge.unknown { color: var(--skip); background: var(--skip-bg); border: 1px solid #d1d5db; }
.kv { display: flex; gap: 28px; flex-wrap: wrap; margin: 2px 0 8px; }
.kv div { color: var(--muted); } .kv b { color: var(--ink); font-size: 16px; margin-left: 4px; }
.charts { display: flex; gap: 18px; flex-wrap: wrap; }
figure { margin: 0; flex: 1 1 480px; min-width: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
figure svg { width: 100%; max-width: 640px; height: auto; display: block; }
.legend { color: var(--muted); font-size: 12px; margin-top: 2px; }
.legend .sw { display: inline-block; width: 14px; height: 0; border-top: 2px dashed; vertical-align: middle;
              margin: 0 4px 0 10px; }
.legend .sw.solid { border-top-style: solid; }
.legend .key { white-space: nowrap; margin-left: 6px; }
details summary { cursor: pointer; color: #374151; margin-top: 10px; }
footer { color: var(--muted); font-size: 12px; margin-top: 18px; text-align: center; }
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


# ---------------------------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


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
    """Any JSON value as compact text, cut to MAX_JSON_CHARS (escape the result before use)."""
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


def _badge(value: Any) -> str:
    status = _status(value)
    label = {"pass": "PASS", "fail": "FAIL", "skipped": "SKIPPED"}.get(status, str(value or "?").upper())
    return f'<span class="badge {status}">{_e(label)}</span>'


def _as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _table(headers: Iterable[tuple[str, str]], rows: Iterable[str], head_extra: str = "") -> str:
    """headers: (already-escaped label, css class); rows: already-built <tr> strings."""
    ths = "".join(f'<th class="{cls}">{label}</th>' for label, cls in headers)
    return (
        f'<div class="table-wrap"><table><thead>{head_extra}<tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _tr(cells: Iterable[str], bad: bool = False) -> str:
    cls = ' class="bad"' if bad else ""
    return f"<tr{cls}>{''.join(cells)}</tr>"


def _td(content: str, cls: str = "") -> str:
    """content must already be escaped (or be trusted markup such as a badge)."""
    return f'<td class="{cls}">{content}</td>' if cls else f"<td>{content}</td>"


# ---------------------------------------------------------------------------------------------- sections


def _banner(report: dict) -> str:
    model = _as_dict(report.get("model"))
    verdict = _status(report.get("verdict"))
    label = {"pass": "PASS", "fail": "FAIL"}.get(verdict, str(report.get("verdict") or "UNKNOWN").upper())
    cls = verdict if verdict in ("pass", "fail") else "unknown"
    failed = [
        c.get("name") for c in _as_list(report.get("checks")) if _status(_as_dict(c).get("status")) == "fail"
    ]
    failed_html = (
        f'<div class="failed-checks">Failed checks: {_e(", ".join(str(n) for n in failed))}</div>'
        if failed
        else ""
    )
    meta = "".join(
        f"<span>{label_}: {_e(value)}</span>"
        for label_, value in (
            ("version", model.get("version") or "—"),
            ("task", model.get("task") or "—"),
            ("generated", report.get("generated_at") or "—"),
        )
    )
    return (
        f'<header class="banner {cls}"><div class="verdict">{_e(label)}</div>'
        f'<div><div class="model">{_e(model.get("name") or "(unnamed model)")}</div>'
        f'<div class="meta">{meta}</div>{failed_html}</div></header>'
    )


def _checks(report: dict) -> str:
    checks = _as_list(report.get("checks"))
    if not checks:
        return '<section id="checks"><h2>Checks</h2><p class="empty">No checks recorded.</p></section>'
    rows = []
    for check in checks:
        check = _as_dict(check)
        status = check.get("status")
        rows.append(
            _tr(
                [
                    _td(f"<b>{_e(check.get('name'))}</b>"),
                    _td(_badge(status)),
                    _td(_e(check.get("message")), "text"),
                ],
                bad=_status(status) == "fail",
            )
        )
    table = _table([("Check", ""), ("Status", ""), ("Message", "")], rows)
    return f'<section id="checks"><h2>Checks</h2>{table}</section>'


def _parity(report: dict) -> str:
    parity = report.get("parity")
    if not isinstance(parity, dict):
        return '<section id="parity"><h2>Parity: compiled vs source</h2><p class="empty">No parity results.</p></section>'
    outputs = _as_dict(parity.get("outputs"))
    cases = [_as_dict(c) for c in _as_list(parity.get("cases"))]
    names = list(outputs)
    for case in cases:
        names += [n for n in _as_dict(case.get("outputs")) if n not in names]

    parts = [
        '<section id="parity"><h2>Parity: compiled vs source</h2>',
        f'<p class="note">An element fails when |compiled − source| &gt; atol + rtol × |source|; '
        f"<b>atol</b> {_e(_num(parity.get('atol')))}, <b>rtol</b> {_e(_num(parity.get('rtol')))}. "
        f"Excess &gt; 0 means out of tolerance.</p>",
    ]
    if outputs:
        rows = []
        for name, out in outputs.items():
            out = _as_dict(out)
            excess = out.get("worst_excess")
            over = isinstance(excess, int | float) and excess > 0
            rows.append(
                _tr(
                    [
                        _td(f"<b>{_e(name)}</b>"),
                        _td(_e(_num(out.get("max_abs"))), "num"),
                        _td(_e(_num(out.get("max_rel"))), "num"),
                        _td(_e(out.get("worst_case") or "—"), "code"),
                        _td(_e(_num(excess)), "num over" if over else "num"),
                        _td(_badge(out.get("ok"))),
                    ],
                    bad=out.get("ok") is False,
                )
            )
        headers = [
            ("Output", ""),
            ("max abs", "num"),
            ("max rel", "num"),
            ("worst case", ""),
            ("worst excess", "num"),
            ("ok", ""),
        ]
        parts.append("<h3>Per output</h3>" + _table(headers, rows))
    else:
        parts.append('<p class="empty">No outputs compared.</p>')

    if cases:
        n_bad = sum(1 for c in cases if c.get("ok") is False)
        parts.append(
            f'<h3>Per case <span class="note">({len(cases)} cases, {n_bad} failing)</span></h3>'
            if n_bad
            else f'<h3>Per case <span class="note">({len(cases)} cases, all within tolerance)</span></h3>'
        )
        group = "".join(f'<th colspan="2" class="num">{_e(n)}</th>' for n in names)
        head_extra = f'<tr><th colspan="4"></th>{group}<th></th></tr>'
        headers = [("case", ""), ("batch", "num"), ("length", "num"), ("bucket", "num")]
        for _ in names:
            headers += [("max abs", "num"), ("excess", "num")]
        headers.append(("ok", ""))
        rows = []
        for case in cases:
            case_outputs = _as_dict(case.get("outputs"))
            cells = [
                _td(_e(case.get("case")), "code"),
                _td(_e(_num(case.get("batch"))), "num"),
                _td(_e(_num(case.get("length"))), "num"),
                _td(_e(_num(case.get("bucket"))), "num"),
            ]
            for name in names:
                diff = _as_dict(case_outputs.get(name))
                excess = diff.get("excess")
                over = isinstance(excess, int | float) and excess > 0
                cells += [
                    _td(_e(_num(diff.get("max_abs"))), "num"),
                    _td(_e(_num(excess)), "num over" if over else "num"),
                ]
            cells.append(_td(_badge(case.get("ok"))))
            rows.append(_tr(cells, bad=case.get("ok") is False))
        parts.append(_table(headers, rows, head_extra))
    else:
        parts.append('<h3>Per case</h3><p class="empty">No cases.</p>')
    parts.append("</section>")
    return "".join(parts)


def _agreement(report: dict) -> str:
    agreement = report.get("agreement")
    title = "<h2>Task-level agreement</h2>"
    if not isinstance(agreement, dict):
        return f'<section id="agreement">{title}<p class="empty">Not measured (no agreement check).</p></section>'
    disagreements = [_as_dict(d) for d in _as_list(agreement.get("disagreements"))]
    kv = (
        f'<div class="kv"><div>compared<b>{_e(_num(agreement.get("compared")))}</b></div>'
        f"<div>agreed<b>{_e(_num(agreement.get('agreed')))}</b></div>"
        f"<div>rate<b>{_e(_pct(agreement.get('rate')))}</b></div></div>"
    )
    if not disagreements:
        return f'<section id="agreement">{title}{kv}<p class="empty">No disagreements.</p></section>'
    rows = [
        _tr(
            [
                _td(_e(d.get("text")), "text"),
                _td(_e(_json(d.get("source"))), "code"),
                _td(_e(_json(d.get("compiled"))), "code"),
            ],
            bad=True,
        )
        for d in disagreements[:MAX_DISAGREEMENTS]
    ]
    shown = min(len(disagreements), MAX_DISAGREEMENTS)
    more = (
        f'<p class="note">… and {len(disagreements) - shown} more not shown.</p>'
        if len(disagreements) > shown
        else ""
    )
    table = _table([("Input text", ""), ("Source output", ""), ("Compiled output", "")], rows)
    return (
        f'<section id="agreement">{title}{kv}<h3>Disagreements (first {shown} of {len(disagreements)})</h3>'
        f"{table}{more}</section>"
    )


def _flatten(values: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(values, dict):
        out = []
        for key, value in values.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, values)]


def _metrics(report: dict) -> str:
    metrics = report.get("metrics")
    title = "<h2>Metrics against thresholds</h2>"
    if not isinstance(metrics, dict):
        return f'<section id="metrics">{title}<p class="empty">No eval set: metrics were not computed.</p></section>'
    kv = (
        f'<div class="kv"><div>eval set<b>{_e(metrics.get("eval_set") or "—")}</b></div>'
        f"<div>examples<b>{_e(_num(metrics.get('examples')))}</b></div></div>"
    )
    thresholds = [_as_dict(t) for t in _as_list(metrics.get("thresholds"))]
    if thresholds:
        rows = [
            _tr(
                [
                    _td(f"<b>{_e(t.get('metric'))}</b>"),
                    _td(_e(t.get("label") if t.get("label") is not None else "—")),
                    _td(_e(_num(t.get("threshold"))), "num"),
                    _td(_e(_num(t.get("value"))), "num over" if t.get("ok") is False else "num"),
                    _td(_badge(t.get("ok"))),
                ],
                bad=t.get("ok") is False,
            )
            for t in thresholds
        ]
        headers = [("Metric", ""), ("Label", ""), ("Threshold", "num"), ("Value", "num"), ("ok", "")]
        body = _table(headers, rows)
    else:
        body = '<p class="empty">No thresholds set.</p>'
    values = _flatten(_as_dict(metrics.get("values")))
    if values:
        rows = [_tr([_td(_e(k), "code"), _td(_e(_num(v)), "num")]) for k, v in values]
        body += (
            f"<details><summary>All metric values ({len(values)})</summary>"
            f"{_table([('Metric', ''), ('Value', 'num')], rows)}</details>"
        )
    return f'<section id="metrics">{title}{kv}{body}</section>'


def _finite(values: Any) -> list[float]:
    out = []
    for v in _as_list(values):
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def _marker(value: Any) -> float | None:
    return float(value) if _finite([value]) else None


def histogram_svg(
    samples_ms: Any, p50: Any = None, p95: Any = None, budget_p95: Any = None, title: str = ""
) -> str:
    """An inline SVG bar chart of latency samples with p50/p95 marked and the p95 budget drawn, if set."""
    samples = _finite(samples_ms)
    if not samples:
        return '<p class="empty">No latency samples.</p>'
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

    parts = [
        f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{_e(title)}" '
        f'font-family="system-ui, DejaVu Sans, Arial, sans-serif" font-size="11">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fcfcfd" stroke="#e5e7eb"/>',
    ]
    # y grid and ticks
    ticks_y = sorted({0, top_count} | ({round(top_count / 2)} if top_count >= 4 else set()))
    for t in ticks_y:
        yy = y(t)
        parts.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" stroke="#eef0f3"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#6b7280">{t}</text>')
    # bars
    for i, count in enumerate(counts):
        if not count:
            continue
        b_lo, b_hi = s_lo + i * width_ms, s_lo + (i + 1) * width_ms
        x0, x1 = max(x(b_lo), left), min(x(b_hi), left + pw)
        parts.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{y(count):.1f}" width="{max(x1 - x0 - 1, 1.5):.1f}" '
            f'height="{top + ph - y(count):.1f}" fill="#60a5fa" stroke="#2563eb" stroke-width="0.6">'
            f"<title>{_e(_ms(b_lo, False))}–{_e(_ms(b_hi))}: {count} samples</title></rect>"
        )
    # x axis ticks
    for k in range(6):
        ms = lo + (hi - lo) * k / 5
        xx = x(ms)
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"
        parts.append(
            f'<line x1="{xx:.1f}" y1="{top + ph}" x2="{xx:.1f}" y2="{top + ph + 4}" stroke="#9ca3af"/>'
        )
        parts.append(
            f'<text x="{xx:.1f}" y="{top + ph + 16}" text-anchor="{anchor}" fill="#6b7280">{_e(_ms(ms, False))}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2:.1f}" y="{h - 6}" text-anchor="middle" fill="#374151">latency (ms)</text>'
        f'<text x="12" y="{top + ph / 2:.1f}" text-anchor="middle" fill="#374151" '
        f'transform="rotate(-90 12 {top + ph / 2:.1f})">samples</text>'
    )
    # markers: one label row each, so close values do not overlap
    markers = [
        (p50, f"p50 {_ms(p50)}", "#111827", "5 3"),
        (p95, f"p95 {_ms(p95)}", "#d97706", "5 3"),
        (budget, f"budget p95 {_ms(budget)}", "#dc2626", ""),
    ]
    row = 0
    for value, label, colour, dash in markers:
        if value is None:
            continue
        row += 1
        xx = x(value)
        ly = top - 52 + 15 * row
        anchor, dx = ("end", -4) if xx > left + pw / 2 else ("start", 4)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{xx:.1f}" y1="{ly + 3}" x2="{xx:.1f}" y2="{top + ph}" stroke="{colour}" '
            f'stroke-width="{2 if not dash else 1.6}"{dash_attr}/>'
            f'<text x="{xx + dx:.1f}" y="{ly}" text-anchor="{anchor}" fill="{colour}" font-weight="700" '
            f'paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">'
            f"{_e(label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _latency(report: dict) -> str:
    latency = report.get("latency")
    title = "<h2>Latency</h2>"
    if not isinstance(latency, dict):
        return f'<section id="latency">{title}<p class="empty">No latency measured.</p></section>'
    budget = _as_dict(latency.get("budget_ms")).get("p95")
    figures = []
    for key, caption in (("in_process", "In-process (TorchScript)"), ("served", "Served (TorchServe)")):
        run = latency.get(key)
        if not isinstance(run, dict):
            if key == "served":
                figures.append(
                    f'<figure><figcaption>{caption}</figcaption><p class="empty">Not served: no served latency.</p></figure>'
                )
            continue
        samples = _finite(run.get("samples_ms"))
        p95 = _marker(run.get("p95"))
        verdict = ""
        if budget is not None and p95 is not None:
            within = p95 <= budget
            verdict = (
                f' · <b style="color: var(--{"pass" if within else "fail"})">'
                f"{'within' if within else 'over'} budget {_e(_ms(budget))}</b>"
            )
        n = len(samples)
        key = '<span class="sw" style="color:#111827"></span>p50<span class="sw" style="color:#d97706"></span>p95'
        if budget is not None:
            key += '<span class="sw solid" style="color:#dc2626"></span>budget'
        legend = (
            f'<div class="legend">{n} sample{"" if n == 1 else "s"} · p50 <b>{_e(_ms(run.get("p50")))}</b> · '
            f'p95 <b>{_e(_ms(run.get("p95")))}</b>{verdict}<span class="key">{key}</span></div>'
        )
        svg = histogram_svg(samples, run.get("p50"), run.get("p95"), budget, f"{caption} latency histogram")
        figures.append(f"<figure><figcaption>{caption}</figcaption>{svg}{legend}</figure>")
    budget_note = (
        f'<p class="note">Budget: p95 ≤ {_e(_ms(budget))}</p>'
        if budget is not None
        else '<p class="note">No latency budget set.</p>'
    )
    return f'<section id="latency">{title}{budget_note}<div class="charts">{"".join(figures)}</div></section>'


# ---------------------------------------------------------------------------------------------- public API


def render_html(report: dict) -> str:
    """A self-contained HTML page (no network assets: inline CSS and inline SVG only, no JS libraries) for a report dict."""
    report = _as_dict(report)
    model = _as_dict(report.get("model"))
    verdict = str(report.get("verdict") or "unknown").upper()
    page_title = f"torchship report · {model.get('name') or 'model'} {model.get('version') or ''} · {verdict}"
    body = "".join(
        (
            _banner(report),
            _checks(report),
            _parity(report),
            _agreement(report),
            _metrics(report),
            _latency(report),
        )
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(page_title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}<footer>Generated by torchship validate · self-contained page, no external assets"
        "</footer></main></body></html>\n"
    )


def summary_lines(report: dict) -> list[str]:
    """Plain-text lines for a terminal summary: verdict, one line per check (name, status, message), metric values vs thresholds, latency p50/p95."""
    report = _as_dict(report)
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
            ok = {True: "ok", False: "FAIL"}.get(t.get("ok"), "?")
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
