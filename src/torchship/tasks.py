"""Task settings derived from the spec and the fetched model, shared by package, validate and verify."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from torchship.handlers.pooling import embed, sentence_transformers_pooling
from torchship.handlers.tasks import class_scores, read_model_config, score_function
from torchship.spec import ModelSpec

Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def embedding_settings(spec: ModelSpec, model_dir: Path) -> tuple[str, bool]:
    """(pooling mode, normalize): the spec's choice, or the model's sentence-transformers config."""
    auto_mode, auto_normalize = sentence_transformers_pooling(model_dir)
    mode = auto_mode if spec.embeddings.pooling == "auto" else spec.embeddings.pooling
    normalize = auto_normalize if spec.embeddings.normalize == "auto" else bool(spec.embeddings.normalize)
    return mode, normalize


def task_output(spec: ModelSpec, model_dir: Path) -> Reduce:
    """(model output, attention mask) -> the tensor the task's answer is computed from, for parity checks:
    pooled embeddings, the scores per label the served text-classification returns (softmax, sigmoid
    or raw, chosen by the handler's own rule), or label probabilities per token."""
    if spec.task in ("embeddings", "keywords"):
        mode, normalize = embedding_settings(spec, model_dir)
        return lambda output, mask: embed(output, mask, mode, normalize)
    if spec.task == "text-classification":
        function = score_function(read_model_config(model_dir))
        return lambda logits, mask: class_scores(logits, function)
    return lambda logits, mask: logits.float().softmax(dim=-1)
