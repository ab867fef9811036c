"""text-classification: every label with its score, best first (transformers' pipeline, top_k=None)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.handlers.tasks import read_model_config
from torchship.handlers.tasks.text_classification import TextClassificationTask, class_scores, score_function
from torchship.spec import ModelSpec
from torchship.tasks.base import BUILTIN_TEXTS, Reduce, TaskDefinition, text_bodies
from torchship.tasks.checkpoints import SEQUENCE_HEAD, require_label_names
from torchship.validate.eval_set import LABELLED_TEXTS


class TextClassification(TaskDefinition):
    runtime = TextClassificationTask
    checkpoint = SEQUENCE_HEAD
    eval_set = LABELLED_TEXTS
    builtin_examples = tuple(text_bodies(BUILTIN_TEXTS))

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        # The handler's own rule (softmax, sigmoid or raw), so the gate checks the scores clients get.
        function = score_function(read_model_config(model_dir))
        return lambda outputs, mask: class_scores(outputs["logits"], function)

    def check_head(self, source: Path, id2label: dict[Any, str], num_labels: int) -> None:
        require_label_names(source, self.name, id2label, num_labels)

    def agreement_key(self, answer: Any) -> Any:
        return answer[0]["label"]
