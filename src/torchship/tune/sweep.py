"""Measure each configuration in its own real TorchServe, within a time bound.

One TorchServe per configuration (started from that configuration's .mar variant, stopped before the
next): workers and batch settings are fixed when TorchServe loads a model, the register API that could
reload one is off, and a fresh server also keeps one configuration's warm caches out of the next one's
figures. The start time is recorded per configuration (it is the switching cost).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torchship.loadgen import load_test
from torchship.serving.torchserve import TorchServe
from torchship.settings import Settings
from torchship.tune.choose import best_within_budget
from torchship.tune.plan import Candidate, Engine
from torchship.tune.records import BackendStatus, Measurement, TuneResult
from torchship.tune.variant import write_variant
from torchship.versions import this_version


def measure(
    name: str,
    mar: Path,
    candidate: Candidate,
    settings: Settings,
    bodies: list[Any],
    concurrency: int,
    workdir: Path,
) -> Measurement:
    variant = write_variant(mar, candidate.config, workdir / "variant" / f"{name}.mar")
    started = time.perf_counter()
    try:
        with TorchServe(
            {name: variant}, settings, omp_wait_policy=candidate.config.omp_wait_policy
        ) as server:
            start_s = time.perf_counter() - started
            result = load_test(
                f"{server.inference_url}/predictions/{name}", server.inference_token, bodies, concurrency
            )
    finally:
        shutil.rmtree(variant.parent, ignore_errors=True)
    return Measurement(
        config=candidate.config,
        backend=candidate.backend,
        precision=candidate.precision,
        keep_fp32=candidate.keep_fp32,
        requests=result.requests,
        failures=result.failures,
        throughput_rps=result.throughput_rps,
        p50_ms=result.p50,
        p95_ms=result.p95,
        p99_ms=result.p99,
        client_cpu_cores=result.client_cpu_cores,
        start_s=start_s,
    )


def sweep(
    *,
    name: str,
    version: str,
    backend: str,
    mars: dict[Engine, Path],
    statuses: list[BackendStatus],
    candidates: list[Candidate],
    settings: Settings,
    bodies: list[Any],
    requests_origin: str,
    requests: int,
    concurrency: int,
    budget_p95_ms: float | None,
    max_tail_ratio: float | None,
    time_bound_s: float,
    progress: Callable[[str], None],
) -> TuneResult:
    """Measure `candidates` in order until done or until the next one would overrun `time_bound_s` (judged
    by the slowest so far); the first is always measured. `mars`: the .mar per engine that passed the gate;
    `statuses`: every engine considered, refused ones with why (kept in the result)."""
    load = [bodies[i % len(bodies)] for i in range(requests)]
    began, stamp = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    measurements: list[Measurement] = []
    slowest = 0.0
    workdir = Path(tempfile.mkdtemp(prefix="torchship-tune-"))
    try:
        for index, candidate in enumerate(candidates):
            elapsed = time.monotonic() - began
            if measurements and elapsed + slowest > time_bound_s:
                progress(
                    f"time bound ({time_bound_s / 60:.1f} min) reached: {len(candidates) - index} of "
                    f"{len(candidates)} configurations not measured"
                )
                break
            one_started = time.monotonic()
            progress(f"[{index + 1}/{len(candidates)}] {candidate.label} …")
            measurement = measure(
                name, mars[candidate.engine], candidate, settings, load, concurrency, workdir
            )
            measurements.append(measurement)
            slowest = max(slowest, time.monotonic() - one_started)
            progress(
                f"[{index + 1}/{len(candidates)}] {measurement.throughput_rps:6.1f} req/s · p95 "
                f"{measurement.p95_ms:.0f} ms · p99 {measurement.p99_ms:.0f} ms (p99/p50 "
                f"{measurement.tail_ratio:.1f}) · failures {measurement.failures} · start "
                f"{measurement.start_s:.1f} s · {verdict(measurement, budget_p95_ms, max_tail_ratio)}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    chosen = best_within_budget(measurements, budget_p95_ms, max_tail_ratio)
    return TuneResult(
        torchship_version=this_version(),
        model=name,
        version=version,
        backend=backend,
        budget_p95_ms=budget_p95_ms,
        concurrency=concurrency,
        requests_origin=requests_origin,
        request_bodies=len(bodies),
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        load_average=os.getloadavg(),
        started=stamp,
        duration_s=time.monotonic() - began,
        time_bound_s=time_bound_s,
        measurements=measurements,
        backends=statuses,
        not_measured=candidates[len(measurements) :],
        chosen=chosen.config if chosen else None,
        chosen_backend=chosen.backend if chosen else None,
        chosen_precision=chosen.precision if chosen else None,
        chosen_keep_fp32=chosen.keep_fp32 if chosen else (),
        baseline=candidates[0].config,
        max_tail_ratio=max_tail_ratio,
    )


def verdict(measurement: Measurement, budget_p95_ms: float | None, max_tail_ratio: float | None) -> str:
    """Why a measured configuration can or cannot be chosen, in words for the progress line."""
    if measurement.failures:
        return "failed requests"
    misses = []
    if budget_p95_ms is not None and measurement.p95_ms > budget_p95_ms:
        misses.append(f"p95 over the {budget_p95_ms:g} ms budget")
    if max_tail_ratio is not None and measurement.tail_ratio > max_tail_ratio:
        misses.append(f"p99 over {max_tail_ratio:g}x p50")
    return "misses: " + ", ".join(misses) if misses else "eligible"
