"""What checkpoint a task serves: the architectures it accepts, and the checks of its head.

Each task definition carries one CheckpointKind; the gate's source-model check
(validate/source_integrity.py) and `torchship init` (scaffold/checkpoint.py) read them, so neither keeps
a table of tasks of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torchship.errors import ValidationFailed

_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


class SourceIntegrityError(ValidationFailed):
    """The source checkpoint does not fit the spec's task, or would load with random weights."""


@dataclass(frozen=True)
class CheckpointKind:
    suffixes: tuple[str, ...]  # architecture-name endings of the checkpoints it serves (config.json)
    phrase: str  # "a sequence-classification (…ForSequenceClassification)", for messages
    noun: str | None = None  # "an encoder": said of such checkpoints in messages
    # Weights the task never uses, so a checkpoint without them is fine (AutoModel's pooler).
    unused_weights: re.Pattern[str] | None = None
    # The class loaded for the task must be the config's own (a head saved for this task).
    exact_class: bool = True

    def accepts(self, architecture: str) -> bool:
        return architecture.endswith(self.suffixes)


ENCODER = CheckpointKind(
    ("Model", "ForMaskedLM", "ForPreTraining"),
    "an encoder (…Model, e.g. BertModel)",
    noun="an encoder",
    unused_weights=re.compile(r"(^|\.)pooler\."),
    exact_class=False,
)
SEQUENCE_HEAD = CheckpointKind(
    ("ForSequenceClassification",), "a sequence-classification (…ForSequenceClassification)"
)
TOKEN_HEAD = CheckpointKind(("ForTokenClassification",), "a token-classification (…ForTokenClassification)")
SPAN_HEAD = CheckpointKind(("ForQuestionAnswering",), "a question-answering (…ForQuestionAnswering)")


def label_names(id2label: dict) -> list[str]:
    return [str(id2label[k]) for k in sorted(id2label, key=int)] if id2label else []


def has_generic_labels(id2label: dict) -> bool:
    """Only transformers' placeholders (LABEL_0, LABEL_1, …): nobody named the labels."""
    return all(_GENERIC_LABEL.match(label) for label in label_names(id2label))


def require_label_names(source: object, task: str, id2label: dict, num_labels: int) -> None:
    """Classification answers are label names: a checkpoint without them would serve LABEL_0…"""
    labels = label_names(id2label)
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


def require_one_logit(source: object, task: str, num_labels: int) -> None:
    """A relevance score is one logit per pair (a cross-encoder's head)."""
    if num_labels != 1:
        raise SourceIntegrityError(
            f"source model check failed: {source} has a head with {num_labels} outputs; {task} needs a "
            "cross-encoder with one (num_labels=1), whose logit is the relevance score",
            hint="Train or save the cross-encoder with num_labels=1; a head with several labels is a "
            "text-classification model (set `task: text-classification`).",
        )
