"""token-classification: entities with character offsets (transformers' token-classification pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.spec import ModelSpec
from torchship.tasks.base import Reduce, TaskDefinition
from torchship.validate.eval_set import ENTITY_SPANS


class TokenClassification(TaskDefinition):
    name = "token-classification"
    spec_sections = ("token_classification",)
    handler_class = "TokenClassificationTask"
    auto_class = "AutoModelForTokenClassification"
    eval_set = ENTITY_SPANS

    def handler_settings(self, spec: ModelSpec, model_dir: Path) -> dict[str, Any]:
        section = spec.token_classification
        return {
            "aggregation_strategy": section.aggregation_strategy,
            "ignore_labels": tuple(section.ignore_labels),
        }

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        # Label probabilities per token: what the entities are decoded from.
        return lambda logits, mask: logits.float().softmax(dim=-1)

    def agreement_key(self, answer: Any) -> Any:
        return [(e.get("entity_group", e.get("entity")), e["start"], e["end"]) for e in answer]
