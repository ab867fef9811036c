"""reranking: relevance scores of (query, text) pairs from a cross-encoder, texts best first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from torchship.diff.measures import NO_INPUTS, check_lengths, mean, measure, rate, spearman_rho, top_k_overlap
from torchship.diff.record import Changed, TaskDiff
from torchship.handlers.requests import ParsedRequest
from torchship.handlers.tasks.reranking import RerankingSettings, RerankingTask, relevance
from torchship.spec import ModelSpec
from torchship.tasks.base import Reduce, TaskDefinition
from torchship.tasks.checkpoints import SEQUENCE_HEAD, has_generic_labels, require_one_logit
from torchship.validate.eval_set import RANKED_TEXTS

# Source scores this close count as a tie: their texts may come back in either order.
TIED_SCORES = 1e-6
# The top of the order `diff` compares: what a user of a reranker reads first (fewer for shorter answers).
TOP_K = 3

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

    def one_answer(self, parsed: ParsedRequest) -> bool:
        return True  # a query with its texts is one ranking, however many texts it holds

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

    diff_measures: ClassVar[tuple[str, ...]] = ("rank_correlation", "topk_overlap", "top1_changed_rate")
    precision_limits: ClassVar[Mapping[str, float]] = {"min_rank_correlation": 0.95, "min_topk_overlap": 0.9}

    def diff(self, requests: Sequence[Any], old: Sequence[Any], new: Sequence[Any]) -> TaskDiff:
        check_lengths(requests, old, new)
        orders = [(self.agreement_key(a), self.agreement_key(b)) for a, b in zip(old, new, strict=True)]
        # Over the texts both answers rank: answers cut by top_n may hold different texts.
        rhos = [spearman_rho(a, b) for a, b in orders]
        measured = [rho for rho in rhos if rho is not None]
        return TaskDiff(
            task=self.name,
            inputs=len(requests),
            measures=[
                measure(
                    "rank_correlation",
                    mean(measured),
                    "higher",
                    "mean Spearman rank correlation of the two orders over the texts both rank "
                    "(1: the same order, -1: reversed)",
                    "no query has two texts that both versions rank" if requests else NO_INPUTS,
                ),
                measure(
                    "topk_overlap",
                    mean(top_k_overlap(a, b, min(TOP_K, len(a), len(b))) for a, b in orders),
                    "higher",
                    f"mean fraction of the top {TOP_K} texts (fewer for shorter answers) that both versions "
                    "put there",
                ),
                measure(
                    "top1_changed_rate",
                    rate(a[:1] != b[:1] for a, b in orders),
                    "lower",
                    "fraction of queries whose top text differs",
                ),
            ],
            changed=[
                Changed(index=i, request=requests[i], old=a, new=b, why=_order_change(a, b, rho))
                for i, ((a, b), rho) in enumerate(zip(orders, rhos, strict=True))
                if a != b
            ],
        )


def _order_change(old: list[int], new: list[int], rho: float | None) -> str:
    top = f"top text {old[0] if old else None} -> {new[0] if new else None}" if old[:1] != new[:1] else ""
    parts = [top or "the same top text; the texts below it differ"]
    if rho is not None:
        parts.append(f"rank correlation {rho:.2f}")
    return "; ".join(parts)
