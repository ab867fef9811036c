"""embeddings: one vector per text, pooled (and normalized) as the model's sentence-transformers config says."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from torchship.handlers.pooling import embed, sentence_transformers_pooling
from torchship.handlers.tasks.embeddings import EmbeddingSettings, EmbeddingsTask
from torchship.spec import ModelSpec
from torchship.tasks.base import BUILTIN_TEXTS, Reduce, TaskDefinition, text_bodies
from torchship.tasks.checkpoints import ENCODER

# 1 - cosine similarity allowed between a compiled and a source embedding.
EMBEDDING_AGREEMENT = 1e-4


def embedding_settings(spec: ModelSpec, model_dir: Path) -> tuple[str, bool]:
    """(pooling mode, normalize): the spec's choice, or the model's sentence-transformers config."""
    auto_mode, auto_normalize = sentence_transformers_pooling(model_dir)
    mode = auto_mode if spec.embeddings.pooling == "auto" else spec.embeddings.pooling
    normalize = auto_normalize if spec.embeddings.normalize == "auto" else bool(spec.embeddings.normalize)
    return mode, normalize


class Embeddings(TaskDefinition):
    runtime = EmbeddingsTask
    checkpoint = ENCODER
    spec_sections: ClassVar[tuple[str, ...]] = ("embeddings",)
    builtin_examples = tuple(text_bodies(BUILTIN_TEXTS))

    def settings(self, spec: ModelSpec, model_dir: Path) -> EmbeddingSettings:
        pooling, normalize = embedding_settings(spec, model_dir)
        return EmbeddingSettings(pooling=pooling, normalize=normalize)

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        mode, normalize = embedding_settings(spec, model_dir)
        return lambda outputs, mask: embed(outputs["last_hidden_state"], mask, mode, normalize)

    def agreement_key(self, answer: Any) -> Any:
        return None  # a vector has no discrete answer: agrees() compares directions

    def agrees(self, compiled: Any, source: Any) -> bool:
        a, b = torch.tensor(compiled), torch.tensor(source)
        return 1 - torch.nn.functional.cosine_similarity(a, b, dim=0).item() <= EMBEDDING_AGREEMENT
