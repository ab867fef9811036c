"""embeddings: one vector per text, pooled (and normalized) as the model's sentence-transformers config says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..model_io import Outputs
from ..pooling import embed
from .base import Task, TaskSettings, setting


@dataclass(frozen=True)
class EmbeddingSettings(TaskSettings):
    pooling: str = setting("mean", str)
    normalize: bool = setting(True, bool)


class EmbeddingsTask(Task):
    name = "embeddings"
    auto_class = "AutoModel"
    outputs: ClassVar[tuple[str, ...]] = ("last_hidden_state",)
    Settings: ClassVar[type[TaskSettings]] = EmbeddingSettings

    def reduce(self, outputs: Outputs, mask: torch.Tensor) -> torch.Tensor:
        return embed(outputs["last_hidden_state"], mask, self.settings.pooling, self.settings.normalize)

    def run(self, items, tokenized, indices, options, prepared):
        return [
            vector.tolist()
            for vector in self.encoder.run(tokenized.rows(tokenized.one_row(indices)), self.reduce)
        ]
