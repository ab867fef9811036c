"""text-classification: every label with its score, best first (transformers' pipeline, top_k=None)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..model_io import Outputs
from .base import Task, check_int


def score_function(model_config: dict[str, Any]) -> str:
    """How text-classification logits become scores: "softmax", "sigmoid" or "none". The choice
    transformers' pipeline makes (regression: raw values; multi-label or one logit: sigmoid). The gate
    imports this too, so the scores it checks are the scores clients get."""
    id2label = model_config.get("id2label") or {}
    problem = model_config.get("problem_type")
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or len(id2label) == 1:
        return "sigmoid"
    return "softmax"


def class_scores(logits: torch.Tensor, function: str) -> torch.Tensor:
    """Scores per label from logits (float32, as the pipeline computes them)."""
    logits = logits.float()
    if function == "softmax":
        return logits.softmax(dim=-1)
    if function == "sigmoid":
        return logits.sigmoid()
    return logits


class TextClassificationTask(Task):
    """Equal to transformers' text-classification pipeline with top_k=None: every label, best first."""

    name = "text-classification"
    auto_class = "AutoModelForSequenceClassification"
    outputs: ClassVar[tuple[str, ...]] = ("logits",)
    options: ClassVar[dict[str, type]] = {"top_k": int}

    def __init__(self, encoder, config, model_config):
        super().__init__(encoder, config, model_config)
        self.labels = {int(k): v for k, v in model_config.get("id2label", {}).items()}
        self.function = score_function(model_config)

    labelled: ClassVar[bool] = True

    def check_options(self, options):
        check_int(options, "top_k", 1, max(1, len(self.labels)))

    @staticmethod
    def served_label(value: Any) -> str | None:
        """The best label (the ranked list's first; top_k keeps at least one)."""
        return str(value[0]["label"]) if value else None

    def reduce(self, outputs: Outputs, mask: torch.Tensor) -> torch.Tensor:
        return class_scores(outputs["logits"], self.function)

    def run(self, items, tokenized, indices, options, prepared):
        results = []
        for scores, opts in zip(
            self.encoder.run(tokenized.rows(tokenized.one_row(indices)), self.reduce), options, strict=True
        ):
            ranked = sorted(
                (
                    {"label": self.labels.get(i, f"LABEL_{i}"), "score": s}
                    for i, s in enumerate(scores.tolist())
                ),
                key=lambda item: item["score"],
                reverse=True,
            )
            results.append(ranked[: opts["top_k"]] if "top_k" in opts else ranked)
        return results
