"""The promotion gate: before a stage alias moves to a new version, the new version is diffed against the
version the stage points at now; a broken `promote.*` limit refuses the promotion unless it is accepted with a
reason. Every promotion goes into the registry's history with who, when, why and the diff."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchship.diff.errors import PromotionRefused
from torchship.diff.output import write_diff
from torchship.diff.record import DiffRecord
from torchship.diff.run import run_diff
from torchship.diff.versions import published_version
from torchship.errors import TorchshipError
from torchship.publish.history import DiffSummary, PromotionEntry, promotion_actor
from torchship.publish.publisher import current_git_commit
from torchship.publish.registries.base import Registry, now_utc
from torchship.settings import Settings
from torchship.spec import ModelSpec

Progress = Callable[[str], None]
SHOWN_INPUTS = 5


@dataclass(frozen=True)
class Promotion:
    stage: str
    version: str
    previous: str | None
    decision: str  # promoted | accepted
    diff: DiffRecord | None
    diff_dir: Path | None
    recorded: bool  # in the registry's history
    why_no_diff: str | None = None


def refusal(record: DiffRecord, stage: str, spec_path: Path) -> PromotionRefused:
    shown = []
    for breach in record.breaches:
        inputs = ", ".join(
            json.dumps(record.requests[i], ensure_ascii=False) for i in breach.inputs[:SHOWN_INPUTS]
        )
        more = f" and {len(breach.inputs) - SHOWN_INPUTS} more" if len(breach.inputs) > SHOWN_INPUTS else ""
        shown.append(breach.message + (f" (inputs that changed: {inputs}{more})" if inputs else ""))
    return PromotionRefused(
        f"refusing to promote {record.name} {record.new.version} to {stage} (serving {record.old.version}): "
        + "; ".join(shown),
        hint=f"Look at the diff, then fix the model or promote anyway on the record: torchship promote {spec_path} "
        f'--stage {stage} --version {record.new.version} --accept-diff --reason "why this change is wanted"',
        record=record,
    )


def _summary(record: DiffRecord) -> DiffSummary:
    return DiffSummary(
        against=record.old.version,
        inputs=record.task_diff.inputs,
        measures={m.name: m.value for m in record.task_diff.measures},
        breaches=[b.message for b in record.breaches],
        p99_ratio=record.latency.p99_ratio if record.latency else None,
    )


def gated_promote(
    spec: ModelSpec,
    settings: Settings,
    registry: Registry,
    client: Any,
    uri: str,
    stage: str,
    version: str,
    *,
    accept_reason: str | None,
    progress: Progress,
) -> Promotion:
    """Diff `version` against what `stage` serves (when the spec sets promote limits), refuse on a breach unless
    `accept_reason` is given, move the alias, record the promotion."""
    if accept_reason is not None and not accept_reason.strip():
        raise TorchshipError(
            "--accept-diff needs a --reason: the history records why a breach was accepted",
            hint='Add --reason "what the change is and why it is wanted".',
        )
    current = registry.aliases(spec.name).get(stage)
    limits = spec.promote.limits()
    record: DiffRecord | None = None
    diff_dir: Path | None = None
    why_no_diff = None
    if current is None:
        why_no_diff = f"no version serves {stage} yet: nothing to compare"
    elif current == version:
        why_no_diff = f"{stage} already points at {version}"
    elif not limits:
        why_no_diff = "the spec sets no promote limits (promote.max_<measure> / min_<measure>)"
    else:
        progress(f"diffing {version} against {current}, which {stage} points at")
        with tempfile.TemporaryDirectory(prefix="torchship-promote-") as tmp:
            old = published_version(client, uri, spec.name, current, f"{stage} → {current}", Path(tmp))
            new = published_version(client, uri, spec.name, version, version, Path(tmp))
            record = run_diff(spec, settings, old, new, progress)
        diff_dir = write_diff(record, settings.stage_root(spec.name, version) / "diff" / f"against-{current}")
        if record.breaches and accept_reason is None:
            raise refusal(record, stage, spec.spec_path)
    decision = "accepted" if record is not None and record.breaches else "promoted"
    if decision == "accepted" and registry.kind != "s3":
        raise TorchshipError(
            f"an accepted breach must be recorded, and the {registry.kind} registry keeps no promotion history",
            hint="Use publish.registry: s3, or fix what the diff found.",
        )
    previous = registry.set_alias(spec.name, stage, version)
    entry = PromotionEntry(
        name=spec.name,
        stage=stage,
        version=version,
        previous=previous,
        at=now_utc(),
        who=promotion_actor(),
        git_commit=current_git_commit(),
        decision=decision,
        reason=accept_reason,
        diff=_summary(record) if record else None,
        diff_record=record.model_dump(mode="json") if record else None,
    )
    recorded = registry.kind == "s3"
    if recorded:
        registry.record_promotion(entry)
    return Promotion(stage, version, previous, decision, record, diff_dir, recorded, why_no_diff)
