"""Stage records, caching and the runner: a thin loop over stages.

Each stage writes only into outputs/<name>/<version>/<stage>/, atomically: it fills a hidden temp dir, the
runner adds `stage.json` (input hashes, output files with sha256, timings) and renames it into place. A
stage whose inputs hash the same as its record, and whose recorded outputs are intact, is skipped.
Stages never call each other; a stage reads upstream outputs through `StageContext.input_dir`.

A failed stage never removes anything: the last good outputs stay until a successful run replaces them,
and the failure is recorded in `state.json` beside the stage dirs (runstate.py). `require_current` is
what publish/serve/image call: it refuses outputs that are missing, out of date, tampered with, or
superseded by a failed run. One run at a time per name/version holds `.lock` (runstate.RunLock).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torchship
from torchship.errors import TorchshipError
from torchship.hashing import file_table, sha256_file, sha256_json, sha256_tree
from torchship.runstate import RunLock, RunState, check_owner
from torchship.settings import Settings
from torchship.spec import ModelSpec
from torchship.versions import made_by_another, stale_reason

RECORD_NAME = "stage.json"
_TMP_MARK = ".tmp-"


class Reporter(Protocol):
    """What the runner tells the user; the CLI renders it with rich, tests collect it."""

    def stage_started(self, stage: str, description: str) -> None: ...
    def progress(self, message: str) -> None: ...
    def stage_finished(self, outcome: StageOutcome) -> None: ...


class SilentReporter:
    def stage_started(self, stage: str, description: str) -> None:
        pass

    def progress(self, message: str) -> None:
        pass

    def stage_finished(self, outcome: StageOutcome) -> None:
        pass


@dataclass
class StageContext:
    spec: ModelSpec
    settings: Settings
    out_dir: Path  # the temp dir this run writes into; becomes the stage's dir on success
    stage_dirs: dict[str, Path]  # final dirs of the stages this one depends on
    reporter: Reporter

    def input_dir(self, stage: str) -> Path:
        return self.stage_dirs[stage]

    def progress(self, message: str) -> None:
        self.reporter.progress(message)


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[StageContext], dict[str, Any]]  # writes into ctx.out_dir, returns details for the record
    depends_on: tuple[str, ...] = ()
    # Top-level spec keys the stage reads: changing any other key does not re-run it.
    spec_keys: tuple[str, ...] = ()
    # Hashes of inputs outside outputs/ (the source model directory, the examples file).
    external_inputs: Callable[[ModelSpec, Settings], dict[str, str]] = lambda spec, settings: {}
    summarize: Callable[[dict[str, Any]], str] = lambda details: ""
    # The spec as this stage sees it, given its dependencies' dirs: e.g. compile.max_length filled in
    # from the fetched model's limits. The hash of what the stage reads is taken from this spec.
    fit_spec: Callable[[ModelSpec, dict[str, Path]], ModelSpec] | None = None


@dataclass
class StageOutcome:
    stage: str
    status: str  # "ran" | "skipped" | "failed"
    duration_s: float
    summary: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


def code_fingerprint() -> str:
    """Hash of torchship's own code: a new torchship re-runs stages instead of trusting old outputs."""
    package_dir = Path(torchship.__file__).parent
    return sha256_json(
        {
            str(p.relative_to(package_dir)): sha256_file(p)
            for p in sorted(package_dir.rglob("*"))
            if p.suffix in {".py", ".j2", ".yaml"} and "__pycache__" not in p.parts
        }
    )


def read_record(stage_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((stage_dir / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None


def outputs_intact(stage_dir: Path, record: dict[str, Any]) -> bool:
    for rel, meta in record.get("outputs", {}).items():
        path = stage_dir / rel
        if not path.is_file() or path.stat().st_size != meta["bytes"] or sha256_file(path) != meta["sha256"]:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_temp_dirs(root: Path) -> None:
    """Temp dirs of runs that were killed (their pid is gone) are never outputs: remove them."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith(".") and _TMP_MARK in entry.name:
            pid_text = entry.name.rsplit("-", 1)[-1]
            if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                shutil.rmtree(entry, ignore_errors=True)


class Runner:
    def __init__(self, spec: ModelSpec, settings: Settings, stages: Iterable[Stage], reporter: Reporter):
        self.spec = spec
        self.settings = settings
        self.stages = list(stages)
        self.reporter = reporter
        self.root = settings.stage_root(spec.name, spec.version)
        self._code = code_fingerprint()
        self._by_name = {s.name: s for s in self.stages}
        self._external: dict[str, dict[str, str]] = {}
        self._fitted: dict[str, ModelSpec] = {}

    def stage_dir(self, name: str) -> Path:
        return self.root / name

    def _run_command(self, until: str) -> str:
        """The command that brings every stage up to `until` up to date, with the real spec path."""
        last = self.stages[-1].name if self.stages else until
        suffix = "" if until == last else f" --until {until}"
        return f"torchship run {self.spec.spec_path}{suffix}"

    def upstream(self, name: str) -> list[str]:
        """Every stage `name` depends on, directly or through another stage."""
        seen: list[str] = []
        pending = list(self._by_name[name].depends_on)
        while pending:
            dep = pending.pop()
            if dep not in seen:
                seen.append(dep)
                pending.extend(self._by_name[dep].depends_on)
        return seen

    def spec_for(self, stage: Stage) -> ModelSpec:
        """The spec as `stage` reads it (fitted to the fetched model where the stage says so)."""
        if stage.fit_spec is None:
            return self.spec
        if stage.name not in self._fitted:
            dirs = {dep: self.stage_dir(dep) for dep in self.upstream(stage.name)}
            self._fitted[stage.name] = stage.fit_spec(self.spec, dirs)
        return self._fitted[stage.name]

    def _inputs(self, stage: Stage) -> dict[str, str]:
        dep_hashes = {}
        for dep in stage.depends_on:
            record = read_record(self.stage_dir(dep))
            if record is None or record.get("status") != "ok":
                raise TorchshipError(
                    f"stage '{stage.name}' needs the outputs of stage '{dep}', which has not run",
                    hint=f"Run `{self._run_command(stage.name)}` to run every stage up to it.",
                )
            if not self._is_current(record, self._by_name[dep]):
                stale = stale_reason(record.get("torchship_version"), self._run_command(stage.name))
                if stale is not None:
                    raise TorchshipError(
                        f"stage '{stage.name}' needs the outputs of stage '{dep}', which are out of date: "
                        f"they were {stale[0]}",
                        hint=stale[1],
                    )
                raise TorchshipError(
                    f"stage '{stage.name}' needs the outputs of stage '{dep}', which are out of date "
                    "(the spec, the source model or torchship changed since it ran)",
                    hint=f"Run `{self._run_command(stage.name)}` to bring every stage up to date.",
                )
            dep_hashes[dep] = sha256_json(record["outputs"])
        dumped = self.spec_for(stage).model_dump(mode="json", by_alias=True)
        inputs = {
            "spec": sha256_json({key: dumped.get(key) for key in stage.spec_keys}),
            "torchship": self._code,
        }
        inputs.update(dep_hashes)
        if stage.name not in self._external:  # hashing a source model tree is worth doing once per run
            self._external[stage.name] = stage.external_inputs(self.spec, self.settings)
        inputs.update(self._external[stage.name])
        return inputs

    def _is_current(self, record: dict[str, Any], stage: Stage) -> bool:
        """The record's inputs are what this spec, source and torchship give now, and this torchship version
        wrote it (another version's code hashes differently anyway; a record edited to claim otherwise is not
        trusted either)."""
        return (
            record.get("inputs") == self._inputs(stage)
            and made_by_another(record.get("torchship_version")) is None
        )

    def require_current(self, name: str) -> dict[str, Any]:
        """The record of a stage whose outputs are exactly what the current spec, source and torchship
        make, untouched since, and not superseded by a failed run of it or of a stage before it.
        publish, serve and image call this before using a stage's outputs."""
        fix = f"Run `{self._run_command(name)}`"
        where = f"{self.spec.name} {self.spec.version}"
        record = read_record(self.stage_dir(name))
        if record is None or record.get("status") != "ok":
            raise TorchshipError(
                f"{where} has no up-to-date '{name}' stage: it has not run yet",
                hint=f"{fix}: it runs every stage up to {name}.",
            )
        failures = RunState.load(self.root).failed
        failed = next((s for s in [*reversed(self.upstream(name)), name] if s in failures), None)
        if failed is not None:
            failure = failures[failed]
            raise TorchshipError(
                f"{where}: the '{name}' outputs are stale: the last run of stage '{failed}' failed "
                f"({failure.at}: {failure.error}); the outputs kept are from before that run",
                hint=f"Fix what stage '{failed}' reported, then {fix[0].lower()}{fix[1:]}.",
            )
        try:
            current = self._is_current(record, self._by_name[name])
        except TorchshipError as exc:
            raise TorchshipError(
                f"{where}: the '{name}' outputs are stale: {exc.message}", hint=exc.hint
            ) from None
        if not current:
            stale = stale_reason(record.get("torchship_version"), self._run_command(name))
            if stale is not None:
                raise TorchshipError(
                    f"{where}: the '{name}' outputs are stale: they were {stale[0]}", hint=stale[1]
                )
            raise TorchshipError(
                f"{where}: the '{name}' outputs are stale (the spec, the source model or torchship changed "
                "since they were made)",
                hint=f"{fix} to bring every stage up to date.",
            )
        if not outputs_intact(self.stage_dir(name), record):
            raise TorchshipError(
                f"{where}: the '{name}' outputs under {self.stage_dir(name)} were changed after the stage wrote them",
                hint=f"{fix} --force to rebuild them.",
            )
        return record

    def lock(self) -> RunLock:
        """Held by a run (and by publish while it reads outputs): one writer per name/version."""
        self.root.mkdir(parents=True, exist_ok=True)
        return RunLock(self.root, self.spec.spec_path)

    def run(self, names: list[str], force: bool = False) -> list[StageOutcome]:
        """Run the named stages in order; stop at the first failure (it is the last outcome)."""
        with self.lock():
            check_owner(self.root, self.spec)
            remove_abandoned_temp_dirs(self.root)
            outcomes: list[StageOutcome] = []
            for name in names:
                outcome = self._run_one(self._by_name[name], force)
                outcomes.append(outcome)
                self._record_state(outcome)
                if outcome.status == "failed":
                    break
            return outcomes

    def _record_state(self, outcome: StageOutcome) -> None:
        """Failures are recorded (the outputs stay, marked stale); a success clears its stage's mark."""
        state = RunState.load(self.root)
        if outcome.status == "failed":
            state.mark_failed(outcome.stage, outcome.error)
        else:
            state.clear(outcome.stage)
            state.owner_from(self.spec)  # only a spec that produced outputs claims them
        state.save(self.root)

    def _run_one(self, stage: Stage, force: bool) -> StageOutcome:
        self.reporter.stage_started(stage.name, stage.description)
        started = time.perf_counter()
        final_dir = self.stage_dir(stage.name)
        try:
            inputs = self._inputs(stage)
            record = read_record(final_dir)
            if (
                not force
                and record is not None
                and record.get("status") == "ok"
                and record.get("inputs") == inputs
                and made_by_another(record.get("torchship_version")) is None
                and stage.name not in RunState.load(self.root).failed  # a failed re-run is not trusted
                and outputs_intact(final_dir, record)
            ):
                outcome = StageOutcome(
                    stage.name,
                    "skipped",
                    time.perf_counter() - started,
                    stage.summarize(record.get("details", {})),
                    record,
                )
                self.reporter.stage_finished(outcome)
                return outcome
            record = self._execute(stage, inputs, final_dir)
        except (Exception, KeyboardInterrupt) as exc:
            outcome = StageOutcome(stage.name, "failed", time.perf_counter() - started, error=exc)
            self.reporter.stage_finished(outcome)
            if isinstance(exc, KeyboardInterrupt):
                self._record_state(outcome)
                raise
            return outcome
        outcome = StageOutcome(
            stage.name, "ran", record["duration_s"], stage.summarize(record["details"]), record
        )
        self.reporter.stage_finished(outcome)
        return outcome

    def _execute(self, stage: Stage, inputs: dict[str, str], final_dir: Path) -> dict[str, Any]:
        tmp_dir = temp_dir_beside(final_dir)
        tmp_dir.mkdir(parents=True)
        try:
            started_at = datetime.now(UTC)
            t0 = time.perf_counter()
            ctx = StageContext(
                self.spec_for(stage),
                self.settings,
                tmp_dir,
                {dep: self.stage_dir(dep) for dep in stage.depends_on},
                self.reporter,
            )
            details = stage.run(ctx)
            record = {
                "stage": stage.name,
                "status": "ok",
                "model": {"name": self.spec.name, "version": self.spec.version},
                "torchship_version": torchship.__version__,
                "inputs": inputs,
                "outputs": file_table(tmp_dir),
                "started_at": started_at.isoformat(),
                "duration_s": round(time.perf_counter() - t0, 3),
                "details": details,
            }
            (tmp_dir / RECORD_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            replace_dir(tmp_dir, final_dir)
            return record
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def temp_dir_beside(final_dir: Path) -> Path:
    """A fresh hidden name next to `final_dir` for the temp dir that will replace it; a run killed before the
    rename leaves it behind with its pid, and remove_abandoned_temp_dirs clears it later."""
    return final_dir.with_name(f".{final_dir.name}{_TMP_MARK}{uuid.uuid4().hex[:8]}-{os.getpid()}")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Swap a finished temp dir into place; the old contents stay whole until the rename."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old{_TMP_MARK}{uuid.uuid4().hex[:8]}-{os.getpid()}")
        final_dir.rename(old)
    tmp_dir.rename(final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def tree_input(path: Path) -> str:
    """The input hash of a file or directory outside outputs/."""
    return sha256_tree(path) if path.is_dir() else sha256_file(path)
