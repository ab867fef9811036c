"""The gate report's shared pieces: file names, check records, verdict, latency budget, writing.

Both the in-process gate (gate.py, validate stage) and the served check (served.py, verify stage) build
and extend the same report; what they share lives here under public names so neither reaches into the
other's internals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchship.validate.report import render_html

REPORT_JSON, REPORT_HTML = "report.json", "report.html"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_failure(
    measured: dict[str, Any] | None, budget: dict[str, float] | None, where: str
) -> str | None:
    if not measured or not budget:
        return None
    for q in ("p50", "p95"):
        if budget.get(q) is not None and measured[q] > budget[q]:
            return f"{where} {q} latency {measured[q]:.1f} ms is over the budget of {budget[q]:g} ms (by {measured[q] - budget[q]:.1f} ms)"
    return None


def check(name: str, failure: str | None, ok: str, skipped: bool = False) -> dict[str, str]:
    if skipped:
        return {"name": name, "status": "skipped", "message": ok}
    return {"name": name, "status": "fail" if failure else "pass", "message": failure or ok}


def verdict_of(checks: list[dict[str, str]]) -> str:
    return "fail" if any(c["status"] == "fail" for c in checks) else "pass"


def write_report(directory: Path, report: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str) + "\n")
    (directory / REPORT_HTML).write_text(render_html(report))
