"""What a task is to the toolchain: one registered definition per task (see CONTRIBUTING.md).

The runtime half of a task, the class that answers requests inside TorchServe, lives in
handlers/tasks.py under the same name: the handler package is shipped inside the .mar and cannot import
torchship, so a definition names its handler class instead of importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from torchship.spec import ModelSpec
from torchship.validate.eval_set import EvalSetFormat

# (model output, attention mask) -> the tensor the task's answer is computed from.
Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TaskDefinition:
    """One task: its spec sections, handler settings, gate output, agreement rule and metrics."""

    name: ClassVar[str]  # the spec's `task:` value
    # ModelSpec sections the task's settings come from: the stages that read them re-run when they change.
    spec_sections: ClassVar[tuple[str, ...]] = ()
    handler_class: ClassVar[str]  # its class in handlers/tasks.py, registered there under `name`
    auto_class: ClassVar[str]  # the transformers Auto class that loads the source model
    # The model outputs the task reads, by name (handlers/model_io.py): what every backend compiles.
    outputs: ClassVar[tuple[str, ...]] = ("logits",)
    # The eval-set format of `validate.eval_set` (None: the task has no metrics).
    eval_set: ClassVar[EvalSetFormat | None] = None

    def handler_settings(self, spec: ModelSpec, model_dir: Path) -> dict[str, Any]:
        """The task's own keys of the handler config (handlers/config.py: HandlerConfig fields)."""
        return {}

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        """The gate's task output for parity: the tensor the served answer is computed from."""
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
