"""The verify stage: the .mar in a real local TorchServe answers like the source model in-process.

A reduced-precision model (compile.precision not fp32) is held to the gate's precision limits instead of
tolerances: its served answers are compared with the source's on the task's measures (int8-dynamic's
answers even depend a little on what else is in a batch, so they are not those of any one in-process run).

The examples (request bodies) go one request each, concurrently (so TorchServe batches them
server-side), then, where the task's request schema has such forms, all of them in one request (text
tasks: `{"texts": [...]}`) and the first as a text/plain body. Every served result must equal the source
model's result within the spec's tolerance.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

import torchship
from torchship.archiver.package import mar_path
from torchship.diff.answers import AnswerSheet
from torchship.diff.inputs import spec_diff_inputs
from torchship.diff.limits import check_limit_names
from torchship.diff.record import SkippedInput
from torchship.diff.serve import Endpoint, answers
from torchship.errors import ServedParityError, ServingError, ValidationFailed
from torchship.examples import example_label, load_examples
from torchship.handlers.tasks import RequestSchema
from torchship.pipeline import StageContext
from torchship.reference import source_results
from torchship.serving.torchserve import TorchServe
from torchship.sources import MODEL_DIRNAME
from torchship.tasks import task_definition
from torchship.validate.jsondiff import compare_json
from torchship.validate.precision import served_judge
from torchship.validate.records import (
    REPORT_HTML,
    REPORT_JSON,
    GateReport,
    LatencyRun,
    check,
    latency_failure,
    percentile,
    read_report,
    replace_with_report,
    verdict_of,
    write_report,
)

SERVED_FILE = "served.json"
PREVIEW_DIMS = 6


class InferenceServer(Protocol):
    """What `query` needs of a server: a local TorchServe, or a rehearsed pod (deploy/rehearse.py)."""

    def client(self, timeout_s: float = 60.0) -> httpx.Client: ...


def _post(client: httpx.Client, name: str, content: str | bytes, content_type: str) -> Any:
    response = client.post(f"/predictions/{name}", content=content, headers={"Content-Type": content_type})
    if response.status_code != 200:
        raise ServingError(
            f"TorchServe answered {response.status_code} for a valid request: {response.text[:300]}"
        )
    return response.json()


def query(server: InferenceServer, name: str, bodies: list[Any], schema: RequestSchema) -> dict[str, Any]:
    """Served answers for each request body, and in the schema's combined and text/plain forms (None
    where it has none); with the latency of the single requests."""
    latencies: list[float] = []

    with server.client() as client:

        def one(body: Any) -> Any:
            started = time.perf_counter()
            result = _post(client, name, json.dumps(body), "application/json")
            latencies.append((time.perf_counter() - started) * 1000)
            return result

        with ThreadPoolExecutor(max_workers=8) as pool:
            singles = list(pool.map(one, bodies))
        combined = schema.combine(bodies)
        batch = _post(client, name, json.dumps(combined), "application/json") if combined else None
        text = schema.plain(bodies[0])
        plain = _post(client, name, text.encode("utf-8"), "text/plain; charset=utf-8") if text else None
    return {
        "singles": singles,
        "batch": batch,
        "plain": plain,
        "latency_ms": {
            "samples_ms": latencies,
            "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95),
        },
    }


# (bodies, expected answers, served answers) of one view -> why they differ too much, or None.
Judge = Callable[[list[Any], list[Any], list[Any]], str | None]


def compare_served(
    served: dict[str, Any],
    expected: list[Any],
    bodies: list[Any],
    atol: float,
    rtol: float,
    judge: Judge | None = None,
) -> dict[str, Any]:
    """Every served result (single requests, the combined request, the text/plain one) vs the source's:
    each within tolerance, or with `judge` (a reduced-precision model, validate/precision.served_judge) each
    view's answers together on the task's measures; the largest raw difference is reported either way."""
    views = [("single", served["singles"])]
    if served.get("batch") is not None:
        views.append(("combined", served["batch"]))
    if served.get("plain") is not None:
        # Judged on a whole view (a measure such as neighbour overlap needs several inputs): the plain
        # answer stands in for the first request's among the single answers.
        plain = [served["plain"], *served["singles"][1:]] if judge else [served["plain"]]
        views.append(("text/plain", plain))
    max_abs, failure = 0.0, None
    for mode, results in views:
        if len(results) > len(expected):
            raise ServedParityError(
                f"TorchServe returned {len(results)} results for {len(expected)} requests ({mode})"
            )
        for i, result in enumerate(results):
            diff = compare_json(result, expected[i], atol, rtol)
            max_abs = max(max_abs, diff.max_abs)
            if judge is None and not diff.ok and failure is None:
                failure = {"request": example_label(bodies[i]), "mode": mode, "mismatch": diff.mismatch}
        why = judge(bodies[: len(results)], expected[: len(results)], results) if judge else None
        if why is not None and failure is None:
            failure = {"request": f"{len(results)} requests", "mode": mode, "mismatch": why}
    compared = sum(len(r) for _, r in views)
    return {
        "ok": failure is None,
        "max_abs": max_abs,
        "failure": failure,
        "atol": atol,
        "rtol": rtol,
        "compared": compared,
    }


def _is_vector(result: Any) -> bool:
    return isinstance(result, list) and bool(result) and all(isinstance(v, float) for v in result)


def run_verify(ctx: StageContext) -> dict[str, Any]:
    spec = ctx.spec
    bodies = load_examples(ctx.spec)
    schema = task_definition(spec.task).runtime.request
    if not bodies:
        raise ServingError(
            f"{spec.spec_path}: verify needs examples to send (validate.examples)",
            hint=f"Add an examples.jsonl with lines like {schema.example} and set validate.examples.",
        )
    mar = mar_path(ctx.input_dir("package"), spec)
    ctx.progress("computing source-model outputs in-process")
    expected = source_results(spec, ctx.input_dir("fetch") / MODEL_DIRNAME, bodies)
    ctx.progress("starting TorchServe 0.12.0 on 127.0.0.1")
    started = time.perf_counter()
    with TorchServe({spec.name: mar}, ctx.settings, omp_wait_policy=spec.serve.omp_wait_policy) as server:
        ready_s = time.perf_counter() - started
        ctx.progress(f"TorchServe ready in {ready_s:.1f} s; sending {len(bodies)} examples")
        asked = time.perf_counter()
        served = query(server, spec.name, bodies, schema)
        sheet = record_answers(ctx, server)
    parity = compare_served(
        served, expected, bodies, spec.validate.atol, spec.validate.rtol, judge=served_judge(spec)
    )
    parity_s = time.perf_counter() - asked
    preview = [
        # A vector (embeddings) is shortened to its first dims; structured results are shown whole.
        {"request": body, "result": result[:PREVIEW_DIMS], "dims": len(result)}
        if _is_vector(result)
        else {"request": body, "result": result, "dims": None}
        for body, result in zip(bodies[:3], served["singles"][:3], strict=True)
    ]
    sheet.write(ctx.out_dir)
    (ctx.out_dir / SERVED_FILE).write_text(
        json.dumps(
            {
                "parity": parity,
                "latency_ms": served["latency_ms"],
                "requests": bodies,
                "served": served["singles"],
            }
        )
        + "\n"
    )
    report = served_report(ctx, parity, LatencyRun.model_validate(served["latency_ms"]), parity_s)
    failing = report.first_failure("served")
    if failing is not None:
        failed_dir = ctx.out_dir.parent / "verify-failed"
        replace_with_report(failed_dir, report, "verify")
        error = ServedParityError if failing.name == "served_parity" else ValidationFailed
        raise error(
            f"verify failed: {failing.name}: {failing.message}",
            hint=f"The full report: {failed_dir / REPORT_HTML}",
        )
    shutil.rmtree(ctx.out_dir.parent / "verify-failed", ignore_errors=True)
    write_report(ctx.out_dir, report, "verify")
    return {
        "parity": parity,
        "latency_ms": {k: v for k, v in served["latency_ms"].items() if k != "samples_ms"},
        "startup_s": round(ready_s, 2),
        "preview": preview,
        "verdict": report.verdict,
    }


def record_answers(ctx: StageContext, server: TorchServe) -> AnswerSheet:
    """The answer sheet: the served answers to every request `diff` compares on (examples, diff.jsonl)."""
    spec = ctx.spec
    check_limit_names(spec, task_definition(spec.task))  # a misnamed promote limit fails here, not at promote
    inputs = spec_diff_inputs(spec)
    ctx.progress(f"recording the answer sheet: {len(inputs.requests)} requests ({', '.join(inputs.origins)})")
    with server.client() as client:
        got, _ = answers(Endpoint(client, f"/predictions/{spec.name}"), inputs.requests, clients=8)
    kept = [i for i in range(len(inputs.requests)) if i not in got.refused]
    refused = [SkippedInput(where=inputs.wheres[i], reason=why) for i, why in got.refused.items()]
    return AnswerSheet(
        name=spec.name,
        version=spec.version,
        task=spec.task,
        inputs_origin=inputs.origins,
        requests=[inputs.requests[i] for i in kept],
        answers=[got.answers[i] for i in kept],
        skipped=[*inputs.skipped, *refused],
    )


def served_report(
    ctx: StageContext, parity: dict[str, Any], latency: LatencyRun, parity_s: float | None = None
) -> GateReport:
    """The validate stage's report with the served checks added: the gate's complete picture. `parity_s`:
    how long the served requests and their comparison took.

    A new report is built from the stored one (it is frozen); served checks from an earlier verify are replaced."""
    spec = ctx.spec
    report = read_report(ctx.input_dir("validate") / REPORT_JSON)
    failure = parity["failure"]
    checks = [c for c in report.checks if not c.name.startswith("served")]
    checks.append(
        check(
            "served_parity",
            failure
            and f"TorchServe's result for {failure['request']} ({failure['mode']} request) differs from "
            f"the source model at {failure['mismatch']} (atol {spec.validate.atol}, rtol {spec.validate.rtol})",
            f"{parity['compared']} served results equal the source model's (max |Δ| {parity['max_abs']:.2e})"
            if report.precision is None  # fp32: the gate had no precision check
            else f"{parity['compared']} served results meet validate.precision_limits against the source "
            f"model ({report.precision.precision}; max |Δ| {parity['max_abs']:.2e}, not gating)",
            seconds=parity_s,
        )
    )
    budget = report.latency.budget_ms
    checks.append(
        check(
            "served_latency",
            latency_failure(latency, budget, "served"),
            f"served p50 {latency.p50:.1f} ms, p95 {latency.p95:.1f} ms",
            skipped=not budget,
        )
    )
    return report.model_copy(
        update={
            "checks": checks,
            "latency": report.latency.model_copy(update={"served": latency}),
            "verdict": verdict_of(checks),
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "torchship_version": torchship.__version__,
        }
    )


def summarize_verify(details: dict[str, Any]) -> str:
    parity = details.get("parity", {})
    latency = details.get("latency_ms", {})
    return (
        f"parity {'ok' if parity.get('ok') else 'FAILED'} · max|Δ| {parity.get('max_abs', 0):.2e} over "
        f"{parity.get('compared')} results · p50 {latency.get('p50', 0):.0f} ms · p95 {latency.get('p95', 0):.0f} ms"
    )
