"""embeddings: one vector per text, pooled (and normalized) as the model's sentence-transformers config says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from torchship.diff.measures import (
    NO_INPUTS,
    check_lengths,
    cosines,
    mean,
    measure,
    neighbour_overlap,
    vector_matrix,
)
from torchship.diff.record import Changed, TaskDiff
from torchship.handlers.pooling import embed, sentence_transformers_pooling
from torchship.handlers.tasks.embeddings import EmbeddingSettings, EmbeddingsTask
from torchship.spec import ModelSpec
from torchship.tasks.base import BUILTIN_TEXTS, Reduce, TaskDefinition, text_bodies
from torchship.tasks.checkpoints import ENCODER

# 1 - cosine similarity allowed between a compiled and a source embedding.
EMBEDDING_AGREEMENT = 1e-4
# The lowest cosine between an input's old and new vector at which an index built with one version may still
# answer queries embedded by the other. The same model computed another way (backend, dtype, batch) stays
# far above it (the gate allows 1 - 1e-4); retrained or re-initialised weights fall far below, and a corpus
# vector that moved by more than this reorders nearest neighbours that are often a few hundredths apart.
COMPATIBLE_MIN_COSINE = 0.99
# Nearest neighbours compared per input (fewer when there are fewer other inputs).
NEIGHBOURS = 5


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

    diff_measures: ClassVar[tuple[str, ...]] = ("mean_cosine", "min_cosine", "neighbour_overlap")
    # Vectors may move a little, but search must find the same neighbours.
    precision_limits: ClassVar[Mapping[str, float]] = {"min_mean_cosine": 0.99, "min_neighbour_overlap": 0.9}

    def diff(self, requests: Sequence[Any], old: Sequence[Any], new: Sequence[Any]) -> TaskDiff:
        check_lengths(requests, old, new)
        old_vectors, new_vectors = vector_matrix(old, "old"), vector_matrix(new, "new")
        n = len(requests)
        old_dim, new_dim = old_vectors.shape[1], new_vectors.shape[1]
        same_dimension = old_dim == new_dim
        per_input = cosines(old_vectors, new_vectors) if same_dimension else None
        lowest = min(per_input) if per_input else None
        no_cosine = f"the vectors differ in dimension ({old_dim} -> {new_dim})" if n else NO_INPUTS
        k = min(NEIGHBOURS, n - 1)
        measures = [
            measure(
                "mean_cosine",
                mean(per_input or []),
                "higher",
                "mean cosine similarity of each input's old and new vector",
                no_cosine,
            ),
            measure(
                "min_cosine",
                lowest,
                "higher",
                "lowest cosine similarity of an input's old and new vector",
                no_cosine,
            ),
            measure(
                "neighbour_overlap",
                neighbour_overlap(old_vectors, new_vectors, k) if n >= 3 else None,
                "higher",
                f"mean fraction of each input's {max(k, 1)} nearest other inputs that both versions find "
                "(each within its own vectors)",
                f"needs at least 3 inputs, got {n}",
            ),
        ]
        # The inputs that break compatibility: every input when the dimension changed, else each one whose
        # vector moved past the threshold (a vector always moves a little: that is no change to list).
        if per_input is None:
            reasons = [f"dimension {old_dim} -> {new_dim}"] * n
        else:
            reasons = [f"cosine {c:.4f}" if c < COMPATIBLE_MIN_COSINE else "" for c in per_input]
        changed = [
            Changed(index=i, request=requests[i], old=old_dim, new=new_dim, why=why)
            for i, why in enumerate(reasons)
            if why
        ]
        compatible, note = _compatibility(n, old_dim, new_dim, lowest)
        return TaskDiff(
            task=self.name,
            inputs=n,
            measures=measures,
            changed=changed,
            cosines=per_input,
            compatible=compatible,
            note=note,
        )


def _compatibility(inputs: int, old_dim: int, new_dim: int, lowest: float | None) -> tuple[bool | None, str]:
    """Whether the two versions' vectors may share one index, and the sentence that tells the user."""
    if not inputs:
        return None, "No inputs were compared, so nothing is known about mixing the two versions' vectors."
    if old_dim != new_dim:
        why = f"the new version's vectors have {new_dim} dimensions, the old one's {old_dim}"
    elif lowest is not None and lowest < COMPATIBLE_MIN_COSINE:
        why = (
            f"an input's old and new vectors are as far apart as cosine {lowest:.4f} "
            f"(compatible needs at least {COMPATIBLE_MIN_COSINE} for every input)"
        )
    else:
        return True, (
            f"Every input's new vector has cosine at least {COMPATIBLE_MIN_COSINE} with its old one: an index built "
            "with either version can answer queries embedded by the other."
        )
    return False, (
        "Do not mix the two versions' vectors in one index: re-embed the whole corpus with the new version "
        f"before it answers queries ({why})."
    )
