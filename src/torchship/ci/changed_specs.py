"""Which model specs a CI run ships (`torchship ci changed-specs`).

Every spec when: --all or TORCHSHIP_ALL_MODELS=1 (a manual pipeline run sets it), CodeBuild was started by
someone rather than by the pipeline (CODEBUILD_INITIATOR not codepipeline/...), no previous commit is known,
the diff is empty, or a file changed that belongs to no model (the toolchain pins, the buildspec, shared
code: they can change every model's .mar or image). Otherwise the specs whose models/<name>/ changed, and
the specs whose local `source:` directory (which may live outside models/, e.g. checkpoints/<name>/) holds
a changed file. The previous commit is TORCHSHIP_PREVIOUS_COMMIT, else HEAD~1.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torchship.ci.errors import CIError
from torchship.spec import PKG_PREFIX, ModelSpec, load_spec

SPEC_FILE = "model.yaml"
PIPELINE_INITIATOR_PREFIX = "codepipeline/"


@dataclass(frozen=True)
class Trigger:
    """What started this CI run, as CodeBuild and the pipeline describe it in the environment."""

    all_models: bool
    initiator: str
    previous_commit: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], all_models: bool = False) -> Trigger:
        return cls(
            all_models=all_models or environ.get("TORCHSHIP_ALL_MODELS", "0") == "1",
            # Outside CodeBuild the variable is unset: a local run behaves like a pipeline run.
            initiator=environ.get("CODEBUILD_INITIATOR") or PIPELINE_INITIATOR_PREFIX,
            previous_commit=environ.get("TORCHSHIP_PREVIOUS_COMMIT") or None,
        )


@dataclass(frozen=True)
class ChangedSpecs:
    specs: list[Path]  # as found under the models directory it was given (relative stays relative)
    reason: str  # one line for the CI log: why these specs


def all_specs(models_dir: Path, cwd: Path) -> list[Path]:
    """models/*/model.yaml, spelled as `models_dir` is (relative to `cwd` when it is relative)."""
    found = (cwd / models_dir).glob(f"*/{SPEC_FILE}")
    return sorted(models_dir / path.parent.name / SPEC_FILE for path in found if path.is_file())


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise CIError(
            "git is not installed, so the changed files cannot be listed",
            hint="Install git, or ship every model with --all (TORCHSHIP_ALL_MODELS=1).",
        ) from None


def previous_commit(cwd: Path) -> str | None:
    """HEAD~1, or None when there is none (a first commit, a shallow clone, not a git repository)."""
    done = _git(cwd, "rev-parse", "-q", "--verify", "HEAD~1")
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return done.stdout.strip()


def changed_files(cwd: Path, previous: str) -> tuple[Path, list[Path]]:
    """The repository's top directory and the absolute paths of the files changed from `previous` to HEAD
    (both sides of a rename, so a model moved away counts as changed where it was)."""
    top = _git(cwd, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise CIError(
            f"{cwd.resolve()} is not inside a git repository, so the changes since {previous} cannot be listed",
            hint="Run from the repository's checkout (CodeBuild: a full git clone, not a source zip), or pass --all.",
        )
    diff = _git(cwd, "diff", "--name-only", "--no-renames", "-z", previous, "HEAD")
    if diff.returncode != 0:
        raise CIError(
            f"git cannot diff {previous} against HEAD: {diff.stderr.strip().splitlines()[-1] if diff.stderr.strip() else 'unknown error'}",
            hint="TORCHSHIP_PREVIOUS_COMMIT must name a commit in this clone (fetch enough history), or pass --all.",
        )
    root = Path(top.stdout.strip())
    return root, [root / name for name in diff.stdout.split("\0") if name]


def local_source_dir(spec: ModelSpec) -> Path | None:
    """The directory a spec's local `source:` names; None for s3:// and pkg: sources (not in this repo)."""
    if "://" in spec.source or spec.source.startswith(PKG_PREFIX):
        return None
    return spec.resolve(spec.source)


def _is_within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def changed_specs(models_dir: Path, trigger: Trigger, cwd: Path) -> ChangedSpecs:
    if not (cwd / models_dir).is_dir():
        # Shipping nothing because the command ran in the wrong directory would pass CI silently.
        raise CIError(
            f"there is no models directory {models_dir} in {cwd.resolve()}",
            hint="Run from the repository root (where models/<name>/model.yaml live) or pass --models-dir.",
        )
    every = all_specs(models_dir, cwd)
    if trigger.all_models:
        return ChangedSpecs(every, "every model: asked for all (--all or TORCHSHIP_ALL_MODELS=1)")
    if not trigger.initiator.startswith(PIPELINE_INITIATOR_PREFIX):
        return ChangedSpecs(
            every, f"every model: the build was started by {trigger.initiator}, not the pipeline"
        )
    previous = trigger.previous_commit or previous_commit(cwd)
    if previous is None:
        return ChangedSpecs(every, "every model: no previous commit to compare with")
    _, changed = changed_files(cwd, previous)
    if not changed:
        return ChangedSpecs(every, f"every model: nothing changed since {previous[:12]}")
    models_root = (cwd / models_dir).resolve()
    sources = {spec: local_source_dir(load_spec(cwd / spec)) for spec in every}
    shipped: set[Path] = set()
    for path in changed:
        owners = {spec for spec, source in sources.items() if source is not None and _is_within(path, source)}
        if _is_within(path, models_root) and len(path.relative_to(models_root).parts) > 1:
            # models/<name>/...: that model's folder; a removed model has no spec left to ship.
            spec = models_dir / path.relative_to(models_root).parts[0] / SPEC_FILE
            owners |= {spec} if spec in sources else set()
        elif not owners and not _is_within(path, models_root):
            where = path.relative_to(cwd.resolve()) if _is_within(path, cwd.resolve()) else path
            return ChangedSpecs(every, f"every model: {where} changed and belongs to no model")
        shipped |= owners
    names = ", ".join(spec.parent.name for spec in sorted(shipped)) or "none"
    return ChangedSpecs(
        sorted(shipped), f"models whose folder or source changed since {previous[:12]}: {names}"
    )
