"""`torchship diff`: both versions in one local TorchServe, the same requests to each, and what changed.

The two archives are registered under the names `old` and `new` (copies named so, since TorchServe keys its
model store by file name and both versions' archives are <name>.mar).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torchship
from torchship.diff.inputs import DiffInputs, request_key, spec_diff_inputs
from torchship.diff.limits import breaches, check_limit_names
from torchship.diff.record import DiffRecord, LatencyComparison, SkippedInput, VersionRef
from torchship.diff.serve import Answers, Endpoint, side_by_side
from torchship.diff.versions import VersionFiles
from torchship.errors import TorchshipError
from torchship.serving.torchserve import TorchServe
from torchship.settings import Settings
from torchship.spec import ModelSpec
from torchship.tasks import task_definition
from torchship.validate.jsondiff import compare_json

Progress = Callable[[str], None]


def check_comparable(spec: ModelSpec, old: VersionFiles, new: VersionFiles) -> None:
    if old.version == new.version:
        raise TorchshipError(
            f"both sides are {spec.name} {old.version}: there is nothing to compare",
            hint="Name another version (or the stage alias that points at one) with --against.",
        )
    for side in (old, new):
        if side.task is not None and side.task != spec.task:
            raise TorchshipError(
                f"{spec.name} {side.version} is a {side.task} model and the spec's task is {spec.task}: "
                "their answers cannot be compared",
                hint="A diff compares versions of one task; a new task is a new model name.",
            )


def _served_copy(mar: Path, folder: Path, name: str) -> Path:
    target = folder / f"{name}.mar"
    try:
        os.link(mar, target)  # same bytes, no copy of a large archive when the file system allows
    except OSError:
        shutil.copy2(mar, target)
    return target


def serve_both(
    spec: ModelSpec, settings: Settings, old: VersionFiles, new: VersionFiles, requests: Sequence[Any]
) -> tuple[Answers, Answers, LatencyComparison]:
    with tempfile.TemporaryDirectory(prefix="torchship-diff-") as tmp:
        mars = {
            side: _served_copy(files.mar, Path(tmp), side) for side, files in (("old", old), ("new", new))
        }
        with (
            TorchServe(mars, settings, omp_wait_policy=spec.serve.omp_wait_policy) as server,
            server.client(timeout_s=600) as client,
        ):
            return side_by_side(
                Endpoint(client, "/predictions/old"),
                Endpoint(client, "/predictions/new"),
                requests,
                spec.promote.latency_passes,
                spec.promote.clients,
            )


def _pair_up(
    inputs: DiffInputs, old: Answers, new: Answers, old_version: str, new_version: str
) -> tuple[list[int], list[SkippedInput]]:
    kept, skipped = [], []
    for i in range(len(inputs.requests)):
        why = [
            f"{v} refused it: {r[i]}"
            for v, r in ((old_version, old.refused), (new_version, new.refused))
            if i in r
        ]
        if why:
            skipped.append(SkippedInput(where=inputs.wheres[i], reason="; ".join(why)))
        else:
            kept.append(i)
    return kept, skipped


def sheet_note(
    files: VersionFiles, requests: Sequence[Any], answers: Sequence[Any], spec: ModelSpec
) -> str | None:
    """Whether the version, served now, still gives the answers its sheet recorded at verify."""
    if files.sheet is None:
        return f"{files.version} has no answer sheet (published before torchship kept them)"
    recorded = {request_key(r): a for r, a in zip(files.sheet.requests, files.sheet.answers, strict=True)}
    common = [
        (recorded[request_key(r)], a)
        for r, a in zip(requests, answers, strict=True)
        if request_key(r) in recorded
    ]
    differing = sum(
        not compare_json(a, want, spec.validate.atol, spec.validate.rtol).ok for want, a in common
    )
    if differing:
        return (
            f"{files.version} answered {differing} of {len(common)} inputs differently from its answer sheet "
            "(recorded at its verify): the serving environment changed since, so part of the difference may "
            "not come from the model"
        )
    return None


def run_diff(
    spec: ModelSpec, settings: Settings, old: VersionFiles, new: VersionFiles, progress: Progress
) -> DiffRecord:
    check_limit_names(spec, task_definition(spec.task))  # before minutes of serving, not after
    check_comparable(spec, old, new)
    inputs = spec_diff_inputs(spec)
    for skipped in inputs.skipped:
        progress(f"skipped {skipped.where}: {skipped.reason}")
    progress(
        f"serving {old.version} and {new.version} in one TorchServe; {len(inputs.requests)} requests, "
        f"{spec.promote.latency_passes} passes side by side"
    )
    old_answers, new_answers, latency = serve_both(spec, settings, old, new, inputs.requests)
    kept, refused = _pair_up(inputs, old_answers, new_answers, old.version, new.version)
    requests = [inputs.requests[i] for i in kept]
    olds = [old_answers.answers[i] for i in kept]
    news = [new_answers.answers[i] for i in kept]
    if not requests:
        raise TorchshipError(
            "no input was answered by both versions: nothing to compare",
            hint="Look at the skipped inputs above: each says which version refused it and why.",
        )
    notes = [n for n in (sheet_note(f, requests, a, spec) for f, a in ((old, olds), (new, news))) if n]
    return build_record(
        spec,
        VersionRef(version=old.version, origin=old.origin),
        VersionRef(version=new.version, origin=new.origin),
        Compared(inputs.origins, requests, olds, news, latency, [*inputs.skipped, *refused]),
        notes,
    )


@dataclass(frozen=True)
class Compared:
    """Both sides' answers to the same requests (refused ones already left out), and their latency."""

    origins: list[str]
    requests: list[Any]
    old: list[Any]
    new: list[Any]
    latency: LatencyComparison | None
    skipped: list[SkippedInput]


def build_record(
    spec: ModelSpec, old: VersionRef, new: VersionRef, compared: Compared, notes: Sequence[str] = ()
) -> DiffRecord:
    """The task's measures on the answers, the spec's limits checked: a local diff's and a live one's record."""
    definition = task_definition(spec.task)
    limits = check_limit_names(spec, definition)
    task_diff = definition.diff(compared.requests, compared.old, compared.new)
    return DiffRecord(
        name=spec.name,
        task=spec.task,
        old=old,
        new=new,
        inputs_origin=compared.origins,
        requests=compared.requests,
        task_diff=task_diff,
        latency=compared.latency,
        skipped=compared.skipped,
        breaches=breaches(limits, task_diff, compared.latency),
        notes=list(notes),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        torchship_version=torchship.__version__,
    )
