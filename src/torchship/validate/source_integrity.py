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

import re
from dataclasses import dataclass, field
from pathlib import Path

from torchship.errors import ValidationFailed

ENCODER_TASKS = ("embeddings", "keywords")
# Architecture-name suffix -> the task that head serves (the first match wins).
_HEADS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
)
# Encoder checkpoints: a bare encoder, or one saved with a pre-training head (the head is unused).
_ENCODER_SUFFIXES = ("Model", "ForMaskedLM", "ForPreTraining")
_NEEDS = {
    "text-classification": "a sequence-classification (…ForSequenceClassification)",
    "token-classification": "a token-classification (…ForTokenClassification)",
    "embeddings": "an encoder (…Model, e.g. BertModel)",
    "keywords": "an encoder (…Model, e.g. BertModel)",
}
_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")
# Weights the task's output never uses: AutoModel's pooler, when the task reads last_hidden_state.
_UNUSED_BY_ENCODER_TASKS = re.compile(r"(^|\.)pooler\.")


class SourceIntegrityError(ValidationFailed):
    """The source checkpoint does not fit the spec's task, or would load with random weights."""


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


def task_of_architecture(architecture: str) -> str | None:
    """The task a checkpoint class serves: a head's task, "embeddings" for an encoder, None otherwise."""
    for suffix, task in _HEADS:
        if architecture.endswith(suffix):
            return task
    if architecture.endswith(_ENCODER_SUFFIXES):
        return "embeddings"
    return None


def _fits(task: str, made_for: str | None) -> bool:
    if task in ENCODER_TASKS:
        return made_for == "embeddings"
    return made_for == task


def tasks_served_by(made_for: str | None) -> tuple[str, ...]:
    """Every task a checkpoint made for `made_for` (task_of_architecture's answer) can serve."""
    return tuple(task for task in _NEEDS if _fits(task, made_for))


def describe_checkpoint(architecture: str) -> str:
    """'a BertModel checkpoint: an encoder, made for embeddings or keywords', for messages."""
    return _made_for_phrase(architecture, task_of_architecture(architecture))


def _made_for_phrase(architecture: str, made_for: str | None) -> str:
    if made_for is None:
        return f"a {architecture} checkpoint, which torchship has no task for"
    if made_for == "embeddings":
        return f"a {architecture} checkpoint: an encoder, made for embeddings or keywords"
    return f"a {architecture} checkpoint, made for {made_for}"


def check_architecture(source: Path, task: str, architectures: list[str] | None, where: str) -> None:
    """config.architectures against the task, before loading anything."""
    if not architectures:
        return  # nothing declared: the loading check below still catches random weights
    architecture = architectures[0]
    made_for = task_of_architecture(architecture)
    if _fits(task, made_for):
        return
    fix = f"set `task: {made_for}` in {where}" if made_for else f"change `task` in {where}"
    raise SourceIntegrityError(
        f"source model check failed: {source} is {_made_for_phrase(architecture, made_for)}; the spec's "
        f"task is {task}, which needs {_NEEDS[task]} checkpoint",
        hint=f"If the checkpoint is right, {fix}; otherwise point `source` at a checkpoint saved for {task}.",
    )


def check_loaded(
    source: Path, task: str, loaded_class: str, architectures: list[str] | None, info: LoadingInfo, where: str
) -> None:
    """Weights the task's class initialised instead of loading, and the loaded class vs the config."""
    initialised = [*info.missing, *info.mismatched]
    if task in ENCODER_TASKS:
        initialised = [k for k in initialised if not _UNUSED_BY_ENCODER_TASKS.search(k)]
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
    if architectures and task not in ENCODER_TASKS and loaded_class != architectures[0]:
        raise SourceIntegrityError(
            f"source model check failed: {source}'s config.json says {architectures[0]}, but loading it "
            f"for {task} gives {loaded_class}",
            hint="Re-save the model with save_pretrained so config.json and the weights describe the same class.",
        )


def check_labels(source: Path, task: str, id2label: dict, num_labels: int, where: str) -> None:
    """Classification answers are label names: a checkpoint without them would serve LABEL_0…"""
    if task in ENCODER_TASKS:
        return
    labels = [str(id2label[k]) for k in sorted(id2label, key=int)] if id2label else []
    if len(labels) != num_labels:
        raise SourceIntegrityError(
            f"source model check failed: {source} has {len(labels)} label name(s) in id2label for a head "
            f"with {num_labels} outputs",
            hint="Set config.id2label (and label2id) to one name per output, then save_pretrained again.",
        )
    if all(_GENERIC_LABEL.match(label) for label in labels):
        raise SourceIntegrityError(
            f"source model check failed: {source} has no label names (id2label is {', '.join(labels[:4])}"
            f"{'…' if len(labels) > 4 else ''}): {task} would answer with placeholders",
            hint='Set config.id2label, e.g. {0: "negative", 1: "positive"}, when training, then save_pretrained again.',
        )
