"""The task registry: one definition per task (tasks/<task>.py), found by the spec's `task:` value.

Stages look a task up here instead of comparing task names; adding a task is its own module, an entry
below, its handler class in handlers/tasks.py and the spec literal (CONTRIBUTING.md, "Adding a task").
"""

from __future__ import annotations

from pathlib import Path

from torchship.errors import SpecError
from torchship.spec import ModelSpec
from torchship.tasks.base import Reduce, TaskDefinition
from torchship.tasks.embeddings import Embeddings, embedding_settings
from torchship.tasks.keywords import Keywords
from torchship.tasks.question_answering import QuestionAnswering
from torchship.tasks.reranking import Reranking
from torchship.tasks.text_classification import TextClassification
from torchship.tasks.token_classification import TokenClassification

__all__ = [
    "TASKS",
    "Reduce",
    "TaskDefinition",
    "embedding_settings",
    "spec_sections",
    "task_definition",
    "task_output",
]

TASKS: dict[str, TaskDefinition] = {
    definition.name: definition
    # Registry order matters where checkpoints are shared: a one-logit sequence head suits reranking first.
    for definition in (
        Embeddings(),
        Keywords(),
        Reranking(),
        TextClassification(),
        TokenClassification(),
        QuestionAnswering(),
    )
}


def task_definition(name: str) -> TaskDefinition:
    try:
        return TASKS[name]
    except KeyError:
        raise SpecError(
            f"unknown task {name!r}; the tasks are {', '.join(TASKS)}",
            hint="Set `task:` in the spec to one of them.",
        ) from None


def spec_sections() -> tuple[str, ...]:
    """Every task's spec sections, once each, in registry order."""
    return tuple(dict.fromkeys(s for d in TASKS.values() for s in d.spec_sections))


def task_output(spec: ModelSpec, model_dir: Path) -> Reduce:
    """(model output, attention mask) -> the tensor the task's answer is computed from, for parity checks:
    pooled embeddings, the scores per label the served text-classification returns (softmax, sigmoid
    or raw, chosen by the handler's own rule), or label probabilities per token."""
    return task_definition(spec.task).output(spec, model_dir)
