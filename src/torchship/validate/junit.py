"""The gate report as JUnit XML (junit.xml beside report.json), for CI test views such as CodeBuild's reports.

One <testsuite> per gate stage run ("<model> <version> validate|verify"); one <testcase> per check a reader
wants to see on its own line: every parity case per output (each examples batch, generated length and bucket
edge), every metric threshold, agreement, each latency budget, the source-model check, served parity. A
failure's message says which input, by how much and against what threshold; a skipped check says why.

This module only builds typed values from the GateReport; templates/junit.xml.j2 holds the markup and is
rendered with autoescape, so every value is escaped (jinja2's HTML escaping of & < > " ' is valid XML escaping
for text and attribute values). What escaping cannot fix is removed here: characters XML 1.0 forbids even as
references (control characters, lone surrogates), which a hostile example text could carry.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from torchship.rendering import render_template

if TYPE_CHECKING:  # records.py writes junit.xml through this module, so the types are for mypy only
    from torchship.validate.records import Check, GateReport, ParityCase, ThresholdRow

GateStage = Literal["validate", "verify"]
CaseStatus = Literal["pass", "fail", "skipped"]

MAX_TEXT = 200  # characters of an example text or a JSON answer quoted in a message
# Characters XML 1.0 does not allow in a document at all (not even as &#N;).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """`text` with every character XML 1.0 forbids shown as its Python escape (\\x01, \\ud800), so the file
    stays parseable and the reader still sees that something was there."""
    return _NOT_XML.sub(
        lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text
    )


def _one_line(text: str) -> str:
    """A message attribute is shown on one line (XML turns newlines in attributes into spaces anyway)."""
    return " ".join(text.split())


def _quote(text: str) -> str:
    return repr(text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…")


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _seconds(value: float | None) -> str | None:
    """Seconds as JUnit writes them (digits and a point: the Surefire schema allows no exponent)."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return f"{value:.3f}"


@dataclass(frozen=True)
class JUnitCase:
    classname: str  # "<model>.<stage>.<check>": CodeBuild shows it as the test's prefix
    name: str
    status: CaseStatus
    message: str = ""  # the failure's or skip's one-line message
    details: str = ""  # the failure's body, or a passing case's system-out
    seconds: float | None = None

    @property
    def time(self) -> str | None:
        return _seconds(self.seconds)

    @property
    def failure_type(self) -> str:
        """The check a failure belongs to (parity, metrics, served_parity, …): JUnit's failure type."""
        return self.classname.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class JUnitSuite:
    name: str
    timestamp: str
    properties: dict[str, str]
    cases: list[JUnitCase] = field(default_factory=list)

    @property
    def tests(self) -> int:
        return len(self.cases)

    @property
    def failures(self) -> int:
        return sum(c.status == "fail" for c in self.cases)

    @property
    def skipped(self) -> int:
        return sum(c.status == "skipped" for c in self.cases)

    @property
    def time(self) -> str | None:
        known = [c.seconds for c in self.cases if c.seconds is not None]
        return _seconds(sum(known)) if known else None


# ---------------------------------------------------------------------------------------------- checks


def _parity_cases(report: GateReport, check: Check, classname: str) -> list[JUnitCase]:
    """One test case per parity input batch and output."""
    parity = report.parity
    tolerance = f"atol {parity.atol:g} + rtol {parity.rtol:g} x |source|"
    return [
        _parity_case(case, output, tolerance, classname) for case in parity.cases for output in case.outputs
    ]


def _parity_case(case: ParityCase, output: str, tolerance: str, classname: str) -> JUnitCase:
    diff = case.outputs[output]
    shape = f"batch {case.batch}, longest row {case.length} tokens" + (
        f", padded to bucket {case.bucket}" if case.bucket is not None else ""
    )
    measured = f"max |Δ| {diff.max_abs:.3g}, max relative {diff.max_rel:.3g}"
    # excess > 0 is out of tolerance; NaN (a broken compiled model) is too, as in the gate itself.
    failed = not diff.excess <= 0
    name = f"{case.case} · {output}"
    if failed:
        return JUnitCase(
            classname,
            name,
            "fail",
            f"{output} of the compiled model differs from the source on '{case.case}' ({shape}) by up to "
            f"{diff.max_abs:.3g}, over the allowed {tolerance} by {diff.excess:.3g}",
            f"input: {case.case} ({shape})\noutput: {output}\n{measured}\nallowed: {tolerance}\n"
            f"exceeded by: {diff.excess:.3g}",
        )
    return JUnitCase(
        classname,
        name,
        "pass",
        details=f"{shape}; {measured}; within {tolerance} (margin {-diff.excess:.3g})",
    )


def _threshold_name(row: ThresholdRow) -> str:
    return row.metric if row.label is None else f"{row.metric} [{row.label}]"


def _metric_cases(report: GateReport, check: Check, classname: str) -> list[JUnitCase]:
    """One test case per metric threshold (each per-label one, and the overall ones such as accuracy)."""
    metrics = report.metrics
    if metrics is None:
        return []
    where = f"{metrics.examples} examples of {metrics.eval_set}"
    cases = []
    for row in metrics.thresholds:
        name = _threshold_name(row)
        if row.missing:
            cases.append(
                JUnitCase(
                    classname,
                    name,
                    "fail",
                    f"{name} cannot reach its threshold {row.threshold:g}: label '{row.label}' does not occur "
                    f"in the eval set ({where})",
                    f"threshold: {row.threshold:g}\nvalue: {row.value:.4g}\neval set: {metrics.eval_set}\n"
                    f"Add examples of '{row.label}' to the eval set, or drop its threshold.",
                )
            )
        elif not row.ok:
            cases.append(
                JUnitCase(
                    classname,
                    name,
                    "fail",
                    f"{name} = {row.value:.4g} is below its threshold {row.threshold:g} "
                    f"(by {row.threshold - row.value:.4g}) on {where}",
                    f"threshold: {row.threshold:g}\nvalue: {row.value:.4g}\nshort by: "
                    f"{row.threshold - row.value:.4g}\neval set: {metrics.eval_set} ({metrics.examples} examples)",
                )
            )
        else:
            cases.append(
                JUnitCase(
                    classname,
                    name,
                    "pass",
                    details=f"{row.value:.4g} >= threshold {row.threshold:g} on {where}",
                )
            )
    return cases


def _agreement_details(report: GateReport) -> str:
    agreement = report.agreement
    lines = [
        f"{agreement.agreed} of {agreement.compared} requests answered the same (rate {agreement.rate:.4f})"
    ]
    for d in agreement.disagreements:
        lines.append(f"request {d.request}: source {_json(d.source)}, compiled {_json(d.compiled)}")
    return "\n".join(lines)


def _latency_details(report: GateReport, served: bool) -> str:
    latency = report.latency
    run = latency.served if served else latency.in_process
    if run is None:
        return ""
    budget = ", ".join(f"{q} {v:g} ms" for q, v in (latency.budget_ms or {}).items()) or "none"
    return f"p50 {run.p50:.1f} ms, p95 {run.p95:.1f} ms over {len(run.samples_ms)} samples; budget: {budget}"


def _precision_details(report: GateReport) -> str:
    precision = report.precision
    if precision is None:
        return ""
    lines = [f"{precision.precision} ({precision.backend}) vs the fp32 source on {precision.inputs} requests"]
    for row in precision.limits:
        shown = "not measurable" if row.value is None else f"{row.value:.4g}"
        lines.append(f"{row.key} {row.limit:g} ({row.origin}): {shown} {'ok' if row.ok else 'BROKEN'}")
    lines += [f"changed: {c.request}: {c.why}" for c in precision.changed]
    return "\n".join(lines)


# A check whose own message is not the whole story: the extra lines a reader of the failure wants.
_DETAILS = {
    "agreement": lambda report: _agreement_details(report),
    "precision": lambda report: _precision_details(report),
    "latency": lambda report: _latency_details(report, served=False),
    "served_latency": lambda report: _latency_details(report, served=True),
}
# Checks reported as several test cases; any other check is one test case of its own.
_EXPANDED = {"parity": _parity_cases, "metrics": _metric_cases}


def _check_cases(report: GateReport, check: Check, stage: GateStage) -> list[JUnitCase]:
    classname = f"{report.model.name}.{stage}.{check.name}"
    expand = _EXPANDED.get(check.name)
    if expand is not None and check.status != "skipped":
        cases = expand(report, check, classname)
        # The parts must tell the check's own verdict; a report whose parts disagree with it (or that has
        # none) keeps the check as one case, so a failure is never lost from the CI view.
        if cases and any(c.status == "fail" for c in cases) == (check.status == "fail"):
            if check.seconds is not None:  # only the whole check was timed: its time goes on its first case
                cases[0] = replace(cases[0], seconds=check.seconds)
            return cases
    details = _DETAILS.get(check.name, lambda report: "")(report)
    if check.status == "pass":
        return [
            JUnitCase(
                classname, check.name, "pass", details=_join(check.message, details), seconds=check.seconds
            )
        ]
    return [
        JUnitCase(
            classname, check.name, check.status, check.message, _join(check.message, details), check.seconds
        )
    ]


def _join(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------- public API


def junit_suite(report: GateReport, stage: GateStage) -> JUnitSuite:
    """The report's checks as one JUnit test suite, in the report's order."""
    model = report.model
    properties = {
        "model": model.name,
        "version": model.version,
        "task": model.task,
        "stage": stage,
        "verdict": report.verdict,
        "generated_at": report.generated_at,
    }
    if report.torchship_version:
        properties["torchship_version"] = report.torchship_version
    cases = [case for check in report.checks for case in _check_cases(report, check, stage)]
    return JUnitSuite(
        name=f"{model.name} {model.version} {stage}",
        # JUnit's timestamp is a local ISO date-time without zone; the report's is UTC.
        timestamp=report.generated_at.removesuffix("+00:00"),
        properties=properties,
        cases=cases,
    )


def _clean(suite: JUnitSuite) -> JUnitSuite:
    """Every text made safe for XML 1.0 (escaping of markup is the template's job)."""
    return JUnitSuite(
        name=xml_safe(suite.name),
        timestamp=xml_safe(suite.timestamp),
        properties={xml_safe(k): xml_safe(v) for k, v in suite.properties.items()},
        cases=[
            JUnitCase(
                xml_safe(c.classname),
                xml_safe(c.name),
                c.status,
                xml_safe(_one_line(c.message)),
                xml_safe(c.details),
                c.seconds,
            )
            for c in suite.cases
        ],
    )


def render_junit(report: GateReport, stage: GateStage) -> str:
    """junit.xml for one gate stage run."""
    return render_template("junit.xml.j2", autoescape=True, suite=_clean(junit_suite(report, stage)))
