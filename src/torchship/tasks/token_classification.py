"""token-classification: entities with character offsets (transformers' token-classification pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.handlers.tasks.token_classification import EntitySettings, TokenClassificationTask
from torchship.spec import ModelSpec
from torchship.tasks.base import BUILTIN_TEXTS, Reduce, TaskDefinition, text_bodies
from torchship.tasks.checkpoints import TOKEN_HEAD, require_label_names
from torchship.validate.eval_set import ENTITY_SPANS


class TokenClassification(TaskDefinition):
    runtime = TokenClassificationTask
    checkpoint = TOKEN_HEAD
    spec_sections = ("token_classification",)
    eval_set = ENTITY_SPANS
    builtin_examples = tuple(text_bodies(BUILTIN_TEXTS))

    def settings(self, spec: ModelSpec, model_dir: Path) -> EntitySettings:
        section = spec.token_classification
        return EntitySettings(
            aggregation_strategy=section.aggregation_strategy, ignore_labels=tuple(section.ignore_labels)
        )

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        # Label probabilities per token: what the entities are decoded from.
        return lambda outputs, mask: outputs["logits"].float().softmax(dim=-1)

    def check_head(self, source: Path, id2label: dict[Any, str], num_labels: int) -> None:
        require_label_names(source, self.name, id2label, num_labels)

    def agreement_key(self, answer: Any) -> Any:
        return [(e.get("entity_group", e.get("entity")), e["start"], e["end"]) for e in answer]
