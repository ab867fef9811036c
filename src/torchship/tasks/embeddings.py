"""embeddings: one vector per text, pooled (and normalized) as the model's sentence-transformers config says."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from torchship.handlers.pooling import embed, sentence_transformers_pooling
from torchship.spec import ModelSpec
from torchship.tasks.base import Reduce, TaskDefinition

# 1 - cosine similarity allowed between a compiled and a source embedding.
EMBEDDING_AGREEMENT = 1e-4


def embedding_settings(spec: ModelSpec, model_dir: Path) -> tuple[str, bool]:
    """(pooling mode, normalize): the spec's choice, or the model's sentence-transformers config."""
    auto_mode, auto_normalize = sentence_transformers_pooling(model_dir)
    mode = auto_mode if spec.embeddings.pooling == "auto" else spec.embeddings.pooling
    normalize = auto_normalize if spec.embeddings.normalize == "auto" else bool(spec.embeddings.normalize)
    return mode, normalize


class Embeddings(TaskDefinition):
    name = "embeddings"
    spec_sections: ClassVar[tuple[str, ...]] = ("embeddings",)
    handler_class = "EmbeddingsTask"
    auto_class = "AutoModel"
    outputs: ClassVar[tuple[str, ...]] = ("last_hidden_state",)

    def handler_settings(self, spec: ModelSpec, model_dir: Path) -> dict[str, Any]:
        pooling, normalize = embedding_settings(spec, model_dir)
        return {"pooling": pooling, "normalize": normalize}

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        mode, normalize = embedding_settings(spec, model_dir)
        return lambda output, mask: embed(output, mask, mode, normalize)

    def agreement_key(self, answer: Any) -> Any:
        return None  # a vector has no discrete answer: agrees() compares directions

    def agrees(self, compiled: Any, source: Any) -> bool:
        a, b = torch.tensor(compiled), torch.tensor(source)
        return 1 - torch.nn.functional.cosine_similarity(a, b, dim=0).item() <= EMBEDDING_AGREEMENT
