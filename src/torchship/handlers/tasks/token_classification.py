"""token-classification: entities with character offsets, equal to transformers' token-classification pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ner import AGGREGATION_STRATEGIES, TokenizerFacts, entities
from ..requests import BAD_OPTION, BadRequest
from .base import Task, TaskSettings, setting, strings


@dataclass(frozen=True)
class EntitySettings(TaskSettings):
    aggregation_strategy: str = setting("simple", str)
    ignore_labels: tuple[str, ...] = setting(("O",), strings)


class TokenClassificationTask(Task):
    name = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    outputs: ClassVar[tuple[str, ...]] = ("logits",)
    Settings: ClassVar[type[EntitySettings]] = EntitySettings
    options: ClassVar[dict[str, type]] = {"aggregation_strategy": str}
    needs_offsets: ClassVar[bool] = True

    def __init__(self, encoder, config, model_config):
        super().__init__(encoder, config, model_config)
        self.labels = {int(k): v for k, v in model_config.get("id2label", {}).items()}
        self.facts = TokenizerFacts.of(encoder.tokenizer)
        self.strategy = self.settings.aggregation_strategy
        self.ignore_labels = self.settings.ignore_labels

    def check_options(self, options):
        strategy = options.get("aggregation_strategy", self.strategy)
        if strategy not in AGGREGATION_STRATEGIES:
            raise BadRequest(
                f"option 'aggregation_strategy' must be one of {', '.join(AGGREGATION_STRATEGIES)}, got {strategy!r}",
                reason=BAD_OPTION,
            )

    def run(self, items, tokenized, indices, options, prepared):
        rows = tokenized.one_row(indices)
        logits = self.encoder.run(tokenized.rows(rows), lambda outputs, mask: outputs["logits"])
        encoding = tokenized.encoding
        return [
            entities(
                text,
                encoding["input_ids"][r],
                encoding["offset_mapping"][r],
                encoding["special_tokens_mask"][r],
                row_logits[: len(encoding["input_ids"][r])],  # drop the sub-batch's padding
                self.labels,
                opts.get("aggregation_strategy", self.strategy),
                self.facts,
                self.ignore_labels,
            )
            for text, r, row_logits, opts in zip(items, rows, logits, options, strict=True)
        ]
