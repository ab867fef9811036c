"""reranking: relevance scores of (query, text) pairs from a cross-encoder, texts best first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.handlers.tasks.reranking import RerankingSettings, RerankingTask, relevance
from torchship.spec import ModelSpec
from torchship.tasks.base import Reduce, TaskDefinition
from torchship.tasks.checkpoints import SEQUENCE_HEAD, has_generic_labels, require_one_logit
from torchship.validate.eval_set import RANKED_TEXTS

# Source scores this close count as a tie: their texts may come back in either order.
TIED_SCORES = 1e-6

# What the gate and verify send without an examples file: queries with texts of clearly different relevance.
BUILTIN_RANKINGS = (
    {
        "query": "How does TorchServe serve a PyTorch model?",
        "texts": [
            "TorchServe loads a model archive and answers HTTP prediction requests.",
            "The cat sat on the mat.",
            "Batching several requests together keeps the CPU busy.",
        ],
    },
    {
        "query": "Who won the Nobel Prize in Physics in 1903?",
        "texts": [
            "The service was slow and the food arrived cold.",
            "Marie Curie shared the 1903 Nobel Prize in Physics with Pierre Curie and Henri Becquerel.",
            "Paris is the capital of France.",
            "ok",
        ],
    },
)


class Reranking(TaskDefinition):
    runtime = RerankingTask
    checkpoint = SEQUENCE_HEAD
    spec_sections = ("reranking",)
    eval_set = RANKED_TEXTS
    builtin_examples = BUILTIN_RANKINGS

    def suits(self, architecture: str, config: dict[str, Any]) -> bool:
        # A cross-encoder: a sequence head with one logit whose label nobody named.
        id2label = config.get("id2label") or {}
        return self.checkpoint.accepts(architecture) and len(id2label) == 1 and has_generic_labels(id2label)

    def check_head(self, source: Path, id2label: dict[Any, str], num_labels: int) -> None:
        require_one_logit(source, self.name, num_labels)

    def settings(self, spec: ModelSpec, model_dir: Path) -> RerankingSettings:
        return RerankingSettings(score=spec.reranking.score)

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        # The relevance score of each pair: what the ranking is sorted by.
        return lambda outputs, mask: relevance(outputs["logits"], spec.reranking.score)

    def agreement_key(self, answer: Any) -> Any:
        return [entry["index"] for entry in answer]  # the order a client reads the texts in

    def agrees(self, compiled: Any, source: Any) -> bool:
        # The same order, except that texts the source scores equally (a duplicated text) may swap: read in
        # the compiled order, the source's own scores must be the source's sorted scores.
        if sorted(self.agreement_key(compiled)) != sorted(self.agreement_key(source)):
            return False
        score = {entry["index"]: entry["score"] for entry in source}
        in_compiled_order = [score[index] for index in self.agreement_key(compiled)]
        return all(
            abs(a - b) <= TIED_SCORES
            for a, b in zip(in_compiled_order, (e["score"] for e in source), strict=True)
        )
