"""text-classification: every label with its score, best first (transformers' pipeline, top_k=None)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.handlers.tasks import class_scores, read_model_config, score_function
from torchship.spec import ModelSpec
from torchship.tasks.base import Reduce, TaskDefinition
from torchship.validate.eval_set import LABELLED_TEXTS


class TextClassification(TaskDefinition):
    name = "text-classification"
    handler_class = "TextClassificationTask"
    auto_class = "AutoModelForSequenceClassification"
    eval_set = LABELLED_TEXTS

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        # The handler's own rule (softmax, sigmoid or raw), so the gate checks the scores clients get.
        function = score_function(read_model_config(model_dir))
        return lambda logits, mask: class_scores(logits, function)

    def agreement_key(self, answer: Any) -> Any:
        return answer[0]["label"]
