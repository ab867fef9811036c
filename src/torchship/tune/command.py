"""What `torchship tune` does, end to end: refuse a stale package, plan, sweep, pick, write, report."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from torchship.archiver.package import mar_path
from torchship.errors import SpecError
from torchship.examples import check_example, examples_origin, load_examples
from torchship.pipeline import Runner, SilentReporter
from torchship.settings import Settings
from torchship.spec import ModelSpec
from torchship.stages import STAGES
from torchship.tasks import TaskDefinition, task_definition
from torchship.tasks.base import text_bodies
from torchship.tune.backends import engines_to_sweep, package_engine, with_engine, with_keep_fp32
from torchship.tune.floor import floor_rps
from torchship.tune.frontier import engine_agreement
from torchship.tune.outputs import write_outputs
from torchship.tune.plan import Engine, ServeConfig, candidates, sweep_grid
from torchship.tune.records import DEFAULT_MAX_TAIL_RATIO, BackendStatus, TuneResult
from torchship.tune.spec_edit import serve_line, serve_values
from torchship.tune.sweep import sweep

CONCURRENCY = 16  # the measure: 16 concurrent clients


@dataclass(frozen=True)
class TuneOutcome:
    result: TuneResult
    out_dir: Path
    serve_line: str | None  # None: nothing met the budget
    compile_line: str  # the chosen backend's compile: line (the spec's when nothing met the budget)


def read_requests(path: Path, definition: TaskDefinition) -> list[Any]:
    """The requests to load the server with (--requests-file, or --texts as it was first called): JSON
    lines, each a request body the task accepts; for the text tasks a line not starting with "{" is one
    plain text (sent as {"text": ...})."""
    example = definition.runtime.request.example
    hint = f"Give a file with one request body (JSON) per line, e.g. {example}" + (
        ", or one plain text per line" if definition.runtime.request.plain(text_bodies(["x"])[0]) else ""
    )
    if not path.is_file():
        raise SpecError(f"requests file {path}: file does not exist", hint=hint)
    bodies: list[Any] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"requests file {path}:{number}"
        if line.lstrip().startswith(("{", "[")):
            try:
                body = json.loads(line)
            except ValueError as exc:
                raise SpecError(f"{where}: not valid JSON ({exc})", hint=hint) from None
        elif definition.runtime.request.plain(text_bodies([line])[0]) is not None:
            body = text_bodies([line])[0]
        else:
            raise SpecError(f"{where}: a {definition.name} request must be a JSON object", hint=hint)
        check_example(definition, body, where)
        bodies.append(body)
    if not bodies:
        raise SpecError(f"requests file {path}: has no requests", hint=hint)
    return bodies


def compile_line(spec: ModelSpec) -> str:
    values = spec.compile.model_dump(mode="json", exclude_defaults=True)
    values = {"backend": spec.compile.backend, **values}
    return (
        "compile: " + yaml.safe_dump(values, default_flow_style=True, sort_keys=False, width=10_000).strip()
    )


def packaged_engines(
    spec: ModelSpec,
    settings: Settings,
    runner: Runner,
    engines: list[Engine],
    bodies: list[Any],
    progress: Callable[[str], None],
) -> tuple[dict[Engine, Path], list[BackendStatus]]:
    """(.mar per engine to measure, every engine's status: refused or not, its in-process floor and its
    agreement with the source model); the spec's own engine is `engines[0]` and its package is the spec's.
    An int8 engine the gate refuses is tried once more with its feed-forward output projections in fp32
    (the products whose inputs have the widest range), the variant that passes where full int8 does not."""
    definition = task_definition(spec.task)
    mars: dict[Engine, Path] = {engines[0]: mar_path(runner.stage_dir("package"), spec)}
    roots = {engines[0]: runner.root}
    statuses = {engines[0]: BackendStatus.of(engines[0])}
    queue = list(engines[1:])
    while queue:
        engine = queue.pop(0)
        progress(
            f"{engine.label}: compile, gate and package this engine to compare it (cached for the next tune)"
        )
        package = package_engine(spec, settings, runner.root, engine, progress)
        roots[engine] = package.stage_root
        statuses[engine] = BackendStatus.of(engine, refused=package.refused)
        if package.mar is not None:
            mars[engine] = package.mar
            continue
        progress(f"{engine.label}: not measured: {package.refused}")
        retry = with_keep_fp32(engine) if package.failed_stage == "validate" else None
        if retry is not None and retry not in statuses:
            queue.insert(0, retry)
    for engine, status in statuses.items():
        floor = None
        if (roots[engine] / "compile" / "stage.json").is_file():  # a refused engine still runs in-process
            floor = floor_rps(with_engine(spec, engine), roots[engine], bodies)
            progress(f"{engine.label}: in-process floor {floor:.1f} req/s")
        agreement = engine_agreement(roots[engine], definition)
        statuses[engine] = status.model_copy(update={"floor_rps": floor, "agreement": agreement})
    return mars, list(statuses.values())


def run_tune(
    spec: ModelSpec,
    settings: Settings,
    *,
    budget_p95_ms: float | None,
    minutes: float,
    requests_file: Path | None,
    requests: int,
    progress: Callable[[str], None],
    configs: list[ServeConfig] | None = None,
    backends: list[str] | None = None,
    precisions: list[str] | None = None,
    max_tail_ratio: float | None = DEFAULT_MAX_TAIL_RATIO,
) -> TuneOutcome:
    """`backends` × `precisions`: the engines to compare besides the spec's own (None: the default
    candidates, every precision this machine builds); each is compiled, gated and packaged first, and only
    those the gate passes are measured. `max_tail_ratio`: the chosen configuration's p99 / p50 bound."""
    # A typo in --backends or --precisions is named before any work.
    engines, skipped = engines_to_sweep(spec, backends, precisions)
    runner = Runner(spec, settings, STAGES, SilentReporter())
    runner.require_current("package")  # never tune (or write serve: for) a package the spec no longer makes
    if budget_p95_ms is None and spec.validate.latency_ms is not None:
        budget_p95_ms = spec.validate.latency_ms.p95
    bodies = (
        read_requests(requests_file, task_definition(spec.task)) if requests_file else load_examples(spec)
    )
    origin = str(requests_file) if requests_file else examples_origin(spec)
    cores = os.cpu_count() or 1
    configs = configs or sweep_grid(spec.serve, cores)
    for engine, why in skipped.items():
        progress(f"{engine.label}: not tried ({why})")
    mars, statuses = packaged_engines(spec, settings, runner, engines, bodies, progress)
    planned = candidates(configs, list(mars))
    progress(
        f"{len(planned)} configurations ({len(configs)} serving × {len(mars)} engine(s): "
        f"{', '.join(e.label for e in mars)}), "
        f"{requests} requests each (cycling {len(bodies)} request bodies from {origin}) at {CONCURRENCY} "
        f"concurrent clients, bounded to {minutes:g} min"
    )
    result = sweep(
        name=spec.name,
        version=spec.version,
        backend=spec.compile.backend,
        mars=mars,
        statuses=statuses,
        candidates=planned,
        settings=settings,
        bodies=bodies,
        requests_origin=origin,
        requests=requests,
        concurrency=CONCURRENCY,
        budget_p95_ms=budget_p95_ms,
        max_tail_ratio=max_tail_ratio,
        time_bound_s=minutes * 60,
        progress=progress,
    )
    out_dir = write_outputs(runner.root, result)
    current = spec.serve.model_dump(mode="json", exclude_defaults=True)
    line = serve_line(serve_values(current, result.chosen)) if result.chosen else None
    chosen_spec = with_engine(spec, result.chosen_engine) if result.chosen_engine else spec
    return TuneOutcome(
        result=result, out_dir=out_dir, serve_line=line, compile_line=compile_line(chosen_spec)
    )
