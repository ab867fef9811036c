"""The compiled backends a tune compares: each other backend is compiled, gated and packaged in its own
outputs tree, and only the ones the gate passes are measured.

Why a tree of its own per backend (outputs/<name>/<version>/tune/backends/<backend>/): the spec's own stage
outputs stay the spec's (publish and image read them), and a second tune reuses each backend's cached
stages instead of compiling again.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchship.archiver.package import mar_path
from torchship.errors import SpecError
from torchship.pipeline import Runner, SilentReporter
from torchship.settings import Settings
from torchship.spec import CompileSpec, ModelSpec
from torchship.stages import STAGE_NAMES, STAGES

BACKENDS_DIRNAME = "tune-backends"
# Backends worth comparing on a CPU by default: the others need hardware (neuron) or are the slow
# fallback (eager) — name them with --backends to include them anyway.
DEFAULT_CANDIDATES = ("torchscript", "onnx")


@dataclass(frozen=True)
class BackendPackage:
    """One backend's packaged .mar, or why it is not measured."""

    backend: str
    mar: Path | None
    refused: str | None = None  # the compile or gate failure, one line


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


def with_backend(spec: ModelSpec, backend: str) -> ModelSpec:
    return spec.model_copy(update={"compile": spec.compile.model_copy(update={"backend": backend})})


def package_backend(
    spec: ModelSpec, settings: Settings, root: Path, backend: str, progress: Callable[[str], None]
) -> BackendPackage:
    """Compile, gate and package `spec` with `backend` under `root`/tune-backends/<backend>/ (cached)."""
    variant = with_backend(spec, backend)
    variant_settings = settings.model_copy(update={"outputs_dir": root / BACKENDS_DIRNAME / backend})
    runner = Runner(variant, variant_settings, STAGES, _ProgressReporter(backend, progress))
    outcomes = runner.run(STAGE_NAMES[: STAGE_NAMES.index("package") + 1])
    failed = outcomes[-1]
    if failed.status == "failed":
        reason = str(failed.error).splitlines()[0] if failed.error else "failed"
        return BackendPackage(backend, None, f"{failed.stage}: {reason}")
    return BackendPackage(backend, mar_path(runner.stage_dir("package"), variant))


class _ProgressReporter(SilentReporter):
    """Stage starts and ends as tune progress lines (a backend's compile takes a minute on the demo)."""

    def __init__(self, backend: str, progress: Callable[[str], None]):
        self.backend, self._progress = backend, progress

    def stage_started(self, stage: str, description: str) -> None:
        self._progress(f"{self.backend}: {stage} ({description}) …")

    def stage_finished(self, outcome) -> None:
        if outcome.status == "failed":
            self._progress(f"{self.backend}: {outcome.stage} failed")
