"""The engines a tune compares (compiled backend × numeric precision): each other engine is compiled, gated
and packaged in its own outputs tree, and only the ones the gate passes are measured. A reduced-precision
engine passes only on the task's own measures against the fp32 source (the gate's precision check); one
that fails them is refused and never packaged.

Why a tree of its own per engine (outputs/<name>/<version>/tune-backends/<backend>[-<precision>]/): the
spec's own stage outputs stay the spec's (publish and image read them), and a second tune reuses each
engine's cached stages instead of compiling again.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchship.archiver.package import mar_path
from torchship.compile.precision import PRECISIONS, unsupported_reason
from torchship.errors import SpecError
from torchship.pipeline import Runner, SilentReporter
from torchship.settings import Settings
from torchship.spec import CompileSpec, ModelSpec
from torchship.stages import STAGE_NAMES, STAGES
from torchship.tune.plan import FP32, Engine

BACKENDS_DIRNAME = "tune-backends"
# Backends worth comparing on a CPU by default: the others need hardware (neuron) or are the slow
# fallback (eager) — name them with --backends to include them anyway.
DEFAULT_CANDIDATES = ("torchscript", "onnx")


@dataclass(frozen=True)
class BackendPackage:
    """One engine's packaged .mar, or why it is not measured; `stage_root` is its outputs tree (the compile
    and validate records are there whether or not the gate passed)."""

    engine: Engine
    mar: Path | None
    refused: str | None  # the compile or gate failure, one line
    stage_root: Path
    failed_stage: str | None = None  # the stage that refused it (validate: the gate)

    @property
    def backend(self) -> str:
        return self.engine.backend


def allowed_backends() -> tuple[str, ...]:
    """The compile.backend values the spec accepts."""
    return typing.get_args(CompileSpec.model_fields["backend"].annotation)


def backends_to_sweep(spec: ModelSpec, requested: list[str] | None) -> list[str]:
    """The spec's backend first, then the requested ones (default: DEFAULT_CANDIDATES this torchship has)."""
    allowed = allowed_backends()
    if requested is None:
        requested = [name for name in DEFAULT_CANDIDATES if name in allowed]
    unknown = [name for name in requested if name not in allowed]
    if unknown:
        raise SpecError(
            f"--backends: unknown backend {', '.join(map(repr, unknown))}",
            hint=f"Choose from {', '.join(allowed)} (comma-separated).",
        )
    return list(dict.fromkeys([spec.compile.backend, *requested]))


def spec_engine(spec: ModelSpec) -> Engine:
    """The engine the spec compiles."""
    return Engine(
        backend=spec.compile.backend,
        precision=spec.compile.precision,
        keep_fp32=tuple(spec.compile.int8_keep_fp32),
    )


def with_keep_fp32(engine: Engine) -> Engine | None:
    """The int8 engine to try when `engine` is refused: the same with the feed-forward output projections in
    fp32 (compile.int8_keep_fp32: [ffn-output]); None when `engine` is not int8 or already keeps them."""
    if not engine.precision.startswith("int8") or engine.keep_fp32:
        return None
    return engine.model_copy(update={"keep_fp32": ("ffn-output",)})


def precisions_to_try(requested: list[str] | None) -> list[str]:
    """--precisions: the named ones (each checked), default every precision torchship builds."""
    if requested is None:
        return list(PRECISIONS)
    unknown = [name for name in requested if name not in PRECISIONS]
    if unknown:
        raise SpecError(
            f"--precisions: unknown precision {', '.join(map(repr, unknown))}",
            hint=f"Choose from {', '.join(PRECISIONS)} (comma-separated).",
        )
    return list(dict.fromkeys(requested))


def engines_to_sweep(
    spec: ModelSpec, backends: list[str] | None, precisions: list[str] | None
) -> tuple[list[Engine], dict[Engine, str]]:
    """(the engines to compile, gate and measure, the spec's own first; the engines skipped because this
    backend cannot build that precision on this machine, with why). A precision named explicitly that no
    backend can build here is an error: the user asked for something tune would silently not try."""
    names = backends_to_sweep(spec, backends)
    # [] (--precisions spec): the spec's own precision alone.
    wanted = [spec.compile.precision] if precisions == [] else precisions_to_try(precisions)
    own = spec_engine(spec)
    engines, skipped = [own], {}
    for backend in names:
        for precision in wanted:
            engine = Engine(backend=backend, precision=precision)
            if engine == own:
                continue
            why = unsupported_reason(backend, precision)
            if why is None:
                engines.append(engine)
            else:
                skipped[engine] = why
    if precisions is not None:
        for precision in wanted:
            if not any(e.precision == precision for e in engines):
                reasons = "; ".join(
                    f"{e.backend}: {why}" for e, why in skipped.items() if e.precision == precision
                )
                raise SpecError(
                    f"--precisions: no backend here can build {precision} ({reasons})",
                    hint="Leave it out, or name a backend that builds it with --backends.",
                )
    return engines, skipped


def with_backend(spec: ModelSpec, backend: str) -> ModelSpec:
    """`spec` compiled with `backend` (its precision as the spec says)."""
    return spec.model_copy(update={"compile": spec.compile.model_copy(update={"backend": backend})})


def with_engine(spec: ModelSpec, engine: Engine) -> ModelSpec:
    """`spec` compiled as `engine`: its backend, precision and the products an int8 one keeps in fp32."""
    update = {
        "backend": engine.backend,
        "precision": engine.precision,
        "int8_keep_fp32": list(engine.keep_fp32),
    }
    return spec.model_copy(update={"compile": spec.compile.model_copy(update=update)})


def engine_dirname(engine: Engine) -> str:
    # fp32 keeps the backend's bare name: the trees earlier tunes cached stay in use.
    name = engine.backend if engine.precision == FP32 else f"{engine.backend}-{engine.precision}"
    return name + "".join(f"-keep-{part}" for part in engine.keep_fp32)


def package_backend(
    spec: ModelSpec, settings: Settings, root: Path, backend: str, progress: Callable[[str], None]
) -> BackendPackage:
    """`package_engine` for `backend` at fp32 (the benchmarks' way to name one)."""
    return package_engine(spec, settings, root, Engine(backend=backend), progress)


def package_engine(
    spec: ModelSpec, settings: Settings, root: Path, engine: Engine, progress: Callable[[str], None]
) -> BackendPackage:
    """Compile, gate and package `spec` as `engine` under `root`/tune-backends/<engine_dirname>/ (cached)."""
    variant = with_engine(spec, engine)
    variant_settings = settings.model_copy(
        update={"outputs_dir": root / BACKENDS_DIRNAME / engine_dirname(engine)}
    )
    runner = Runner(variant, variant_settings, STAGES, _ProgressReporter(engine.label, progress))
    outcomes = runner.run(STAGE_NAMES[: STAGE_NAMES.index("package") + 1])
    failed = outcomes[-1]
    if failed.status == "failed":
        reason = str(failed.error).splitlines()[0] if failed.error else "failed"
        return BackendPackage(engine, None, f"{failed.stage}: {reason}", runner.root, failed.stage)
    return BackendPackage(engine, mar_path(runner.stage_dir("package"), variant), None, runner.root)


class _ProgressReporter(SilentReporter):
    """Stage starts and ends as tune progress lines (an engine's compile takes a minute on the demo)."""

    def __init__(self, label: str, progress: Callable[[str], None]):
        self.label, self._progress = label, progress

    def stage_started(self, stage: str, description: str) -> None:
        self._progress(f"{self.label}: {stage} ({description}) …")

    def stage_finished(self, outcome) -> None:
        if outcome.status == "failed":
            self._progress(f"{self.label}: {outcome.stage} failed")
