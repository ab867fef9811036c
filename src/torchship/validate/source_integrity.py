"""Source-model integrity: the first check of the gate, run before anything is compiled.

A checkpoint that does not fit the task still loads: transformers fills every weight the task's class
needs but the checkpoint lacks with random values (and only logs a warning, which
TRANSFORMERS_VERBOSITY=error hides), and a head saved for another task loads by name when the shapes
happen to match (a sequence head's `classifier` into a token head). Both would be compiled, pass parity
against themselves and be served. So the gate checks, from the checkpoint itself:
- the architecture in config.json fits the task (and the class loaded for the task agrees with it);
- no weight the task's class uses is initialised instead of loaded (`output_loading_info`);
- classification tasks have real label names.
A failure says which task the checkpoint looks made for. Exit code 3: the gate refuses the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchship.tasks import TASKS, TaskDefinition, task_definition
from torchship.tasks.checkpoints import SourceIntegrityError

__all__ = [
    "LoadingInfo",
    "SourceIntegrityError",
    "check_architecture",
    "check_head",
    "check_loaded",
    "describe_checkpoint",
    "task_of_architecture",
    "tasks_served_by",
]


@dataclass(frozen=True)
class LoadingInfo:
    """What from_pretrained(..., output_loading_info=True) reports, as typed lists."""

    missing: list[str] = field(default_factory=list)  # initialised, not loaded
    mismatched: list[str] = field(default_factory=list)  # shape differs: initialised, not loaded
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, unused

    @classmethod
    def from_transformers(cls, info: dict) -> LoadingInfo:
        mismatched = [
            m[0] if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []
        ]
        return cls(
            sorted(info.get("missing_keys") or []),
            sorted(mismatched),
            sorted(info.get("unexpected_keys") or []),
        )


def task_of_architecture(architecture: str, config: dict[str, Any] | None = None) -> str | None:
    """The task a checkpoint looks made for: the first definition it suits (a one-logit sequence head
    without label names is a cross-encoder: reranking), None when no task serves it."""
    return next((name for name, d in TASKS.items() if d.suits(architecture, config or {})), None)


def _head_fits(definition: TaskDefinition, config: dict[str, Any]) -> bool:
    id2label = config.get("id2label") or {}
    try:
        definition.check_head(Path("."), id2label, len(id2label))
    except SourceIntegrityError:
        return False
    return True


def tasks_served_by(
    made_for: str | None, architecture: str | None = None, config: dict[str, Any] | None = None
) -> tuple[str, ...]:
    """Every task a checkpoint can serve: those accepting its architecture whose head checks pass on its
    config.json; without an architecture, those sharing the checkpoint kind of `made_for`."""
    if architecture is not None:
        return tuple(
            name
            for name, d in TASKS.items()
            if d.checkpoint.accepts(architecture) and _head_fits(d, config or {})
        )
    if made_for is None:
        return ()
    return tuple(name for name, d in TASKS.items() if d.checkpoint == TASKS[made_for].checkpoint)


def describe_checkpoint(architecture: str, config: dict[str, Any] | None = None) -> str:
    """'a BertModel checkpoint: an encoder, made for embeddings or keywords', for messages."""
    served = tasks_served_by(None, architecture, config)
    if not served:
        return f"a {architecture} checkpoint, which torchship has no task for"
    noun = TASKS[served[0]].checkpoint.noun
    made_for = " or ".join(served)
    return (
        f"a {architecture} checkpoint: {noun}, made for {made_for}"
        if noun
        else f"a {architecture} checkpoint, made for {made_for}"
    )


def check_architecture(
    source: Path, task: str, architectures: list[str] | None, where: str, config: dict[str, Any] | None = None
) -> None:
    """config.architectures against the task, before loading anything."""
    if not architectures:
        return  # nothing declared: the loading check below still catches random weights
    architecture = architectures[0]
    definition = task_definition(task)
    if definition.checkpoint.accepts(architecture):
        return
    made_for = task_of_architecture(architecture, config)
    fix = f"set `task: {made_for}` in {where}" if made_for else f"change `task` in {where}"
    raise SourceIntegrityError(
        f"source model check failed: {source} is {describe_checkpoint(architecture, config)}; the spec's "
        f"task is {task}, which needs {definition.checkpoint.phrase} checkpoint",
        hint=f"If the checkpoint is right, {fix}; otherwise point `source` at a checkpoint saved for {task}.",
    )


def check_loaded(
    source: Path, task: str, loaded_class: str, architectures: list[str] | None, info: LoadingInfo, where: str
) -> None:
    """Weights the task's class initialised instead of loading, and the loaded class vs the config."""
    kind = task_definition(task).checkpoint
    initialised = [*info.missing, *info.mismatched]
    if kind.unused_weights is not None:
        initialised = [k for k in initialised if not kind.unused_weights.search(k)]
    if initialised:
        shown = ", ".join(initialised[:6]) + (
            f" and {len(initialised) - 6} more" if len(initialised) > 6 else ""
        )
        looks = ""
        if architectures:
            made_for = task_of_architecture(architectures[0])
            looks = f"; the checkpoint ({architectures[0]}) looks made for {made_for or 'another task'}"
        elif info.unexpected:
            looks = f"; it holds weights this task does not use ({', '.join(info.unexpected[:3])})"
        raise SourceIntegrityError(
            f"source model check failed: loading {source} as {loaded_class} for {task} would initialise "
            f"{len(initialised)} weight(s) randomly at every load instead of reading them from the "
            f"checkpoint: {shown}{looks}",
            hint=f"Save the model trained for {task} with save_pretrained (its config.json and weights "
            f"together), or set `task` in {where} to what the checkpoint was trained for.",
        )
    if architectures and kind.exact_class and loaded_class != architectures[0]:
        raise SourceIntegrityError(
            f"source model check failed: {source}'s config.json says {architectures[0]}, but loading it "
            f"for {task} gives {loaded_class}",
            hint="Re-save the model with save_pretrained so config.json and the weights describe the same class.",
        )


def check_head(source: Path, task: str, id2label: dict, num_labels: int, where: str) -> None:
    """The head can give the task's answers: label names for classification, one logit for reranking."""
    definition: TaskDefinition = task_definition(task)
    definition.check_head(source, id2label, num_labels)
