"""What a task is to the toolchain: one registered definition per task (see CONTRIBUTING.md).

The runtime half of a task, the class that answers requests inside TorchServe, is its module in
handlers/tasks/; the definition points at that class (`runtime`) and takes the task's name, Auto class,
model outputs and request schema from it, so each is declared once. The handler package is shipped inside
the .mar and cannot import torchship; the toolchain imports the handler package freely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from torchship.diff.record import TaskDiff
from torchship.handlers.model_io import Reduce
from torchship.handlers.requests import ParsedRequest
from torchship.handlers.tasks import Task, TaskSettings
from torchship.spec import ModelSpec
from torchship.tasks.checkpoints import CheckpointKind
from torchship.validate.eval_set import EvalSetFormat

__all__ = ["BUILTIN_TEXTS", "Reduce", "TaskDefinition", "text_bodies"]

BUILTIN_TEXTS = (
    "TorchServe serves PyTorch models over HTTP.",
    "The cat sat on the mat.",
    "I loved this film, the acting was wonderful.",
    "The service was slow and the food arrived cold.",
    "John Smith moved from London to Paris to work for Google.",
    "Marie Curie won the Nobel Prize in Physics in 1903.",
    "ok",
    "Transformers turn tokens into vectors; batching many short texts together keeps the CPU busy "
    "while padding each batch only to its longest text keeps the wasted work small.",
)


def text_bodies(texts: Sequence[str]) -> list[dict[str, Any]]:
    """Request bodies of the text tasks, one per text."""
    return [{"text": text} for text in texts]


class TaskDefinition:
    """One task: its spec sections, handler settings, gate output, agreement rule and metrics."""

    runtime: ClassVar[type[Task]]  # its class in handlers/tasks/, registered there under the same name
    # ModelSpec sections the task's settings come from: the stages that read them re-run when they change.
    spec_sections: ClassVar[tuple[str, ...]] = ()
    # The eval-set format of `validate.eval_set` (None: the task has no metrics).
    eval_set: ClassVar[EvalSetFormat | None] = None
    # Request bodies the gate and verify send when the spec names no examples file.
    builtin_examples: ClassVar[tuple[dict[str, Any], ...]] = ()
    # The checkpoints it serves (tasks/checkpoints.py): read by the gate's source check and by init.
    checkpoint: ClassVar[CheckpointKind]

    @property
    def name(self) -> str:  # the spec's `task:` value
        return self.runtime.name

    @property
    def auto_class(self) -> str:  # the transformers Auto class that loads the source model
        return self.runtime.auto_class

    @property
    def outputs(self) -> tuple[str, ...]:  # the model outputs the task reads: what every backend compiles
        return self.runtime.outputs

    def suits(self, architecture: str, config: dict[str, Any]) -> bool:
        """Whether a checkpoint of `architecture` (with its config.json) looks made for this task: init's
        choice and the gate's "looks made for" (the first task in registry order that it suits)."""
        return self.checkpoint.accepts(architecture)

    def check_head(self, source: Path, id2label: dict[Any, str], num_labels: int) -> None:
        """Raise SourceIntegrityError when the head cannot give this task's answers (labels, outputs)."""

    def settings(self, spec: ModelSpec, model_dir: Path) -> TaskSettings:
        """The task's own handler settings (its runtime class's Settings), from the spec and the model."""
        return self.runtime.Settings()

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        """The gate's task output for parity: (model outputs, mask) -> the tensor the served answer is
        computed from."""
        raise NotImplementedError

    def agreement_key(self, answer: Any) -> Any:
        """What must be equal in a compiled and a source answer (a served result, JSON-like)."""
        raise NotImplementedError

    def prediction(self, answer: Any) -> Any:
        """A served answer as the eval-set format scores it (eval_set.py: the label, the entity tuples, the
        ranked indices, the answer string); the agreement key unless the task says otherwise."""
        return self.agreement_key(answer)

    def agrees(self, compiled: Any, source: Any) -> bool:
        """Whether the compiled model gives the source model's answer, as a client would judge it."""
        return self.agreement_key(compiled) == self.agreement_key(source)

    def one_answer(self, parsed: ParsedRequest) -> bool:
        """Whether a request gets one answer (what `diff` pairs up input by input): a text, not a list of them."""
        return parsed.single

    # The measures `diff` returns for this task, each named once: promote.max_<name> / min_<name> in the spec.
    diff_measures: ClassVar[tuple[str, ...]] = ()

    # compile.precision other than fp32: the limits on diff measures that the compiled model's answers must
    # meet against the fp32 source's (validate/precision.py); validate.precision_limits overrides per key.
    precision_limits: ClassVar[Mapping[str, float]] = {}

    def diff(self, requests: Sequence[Any], old: Sequence[Any], new: Sequence[Any]) -> TaskDiff:
        """What changed for users between two versions' served answers (`old[i]`, `new[i]`) to `requests[i]`."""
        raise NotImplementedError
