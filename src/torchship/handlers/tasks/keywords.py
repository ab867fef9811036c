"""keywords: KeyBERT-style candidate phrases ranked by similarity to the text's embedding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..keywords import TooManyCandidates, candidates, select
from ..requests import BAD_OPTION, BadRequest, over_budget
from .base import TaskSettings, check_int, optional_int, setting, strings
from .embeddings import EmbeddingSettings, EmbeddingsTask


def _int_pair(value: Any) -> tuple[int, int]:
    low, high = value
    return int(low), int(high)


@dataclass(frozen=True)
class KeywordSettings(EmbeddingSettings):
    ngram_range: tuple[int, int] = setting((1, 1), _int_pair)
    stop_words: tuple[str, ...] = setting((), strings)
    top_n: int = setting(5, int)
    use_mmr: bool = setting(False, bool)
    diversity: float = setting(0.5, float)
    max_candidates: int = setting(1000, int)
    max_candidates_per_request: int = setting(2000, int)
    max_candidate_tokens_per_request: int | None = setting(None, optional_int, nullable=True)


class KeywordsTask(EmbeddingsTask):
    """KeyBERT-style: candidate n-grams of the text, ranked by cosine similarity to the text's embedding
    (optionally diversified with MMR). The text and all its candidates are embedded in one batch.

    Cost model: one embedding per distinct candidate phrase in the server-side batch plus one per text,
    so model work grows with the tokens of the candidates and of the texts; then per text
    O(candidates x dim) for the ranking and the same again per MMR pick. Per request (all its texts
    together) the candidates are capped by keywords.max_candidates_per_request, their tokens by
    keywords.max_candidate_tokens_per_request, the texts' tokens by serve.max_tokens_per_request; per
    text the candidates by keywords.max_candidates. Generation stops at the cap, and an over-budget
    request is refused (413) before any model work.
    """

    name = "keywords"
    Settings: ClassVar[type[TaskSettings]] = KeywordSettings
    options: ClassVar[dict[str, type]] = {"top_n": int, "use_mmr": bool, "diversity": float}

    def __init__(self, encoder, config, model_config):
        super().__init__(encoder, config, model_config)
        self.ngram_range = self.settings.ngram_range
        self.stop_words = frozenset(self.settings.stop_words)
        self.max_candidates = self.settings.max_candidates
        self.max_candidates_per_request = self.settings.max_candidates_per_request
        self.max_candidate_tokens = self.settings.max_candidate_tokens_per_request

    def choices(self, options: dict[str, Any]) -> dict[str, Any]:
        return {
            "top_n": options.get("top_n", self.settings.top_n),
            "use_mmr": options.get("use_mmr", self.settings.use_mmr),
            "diversity": float(options.get("diversity", self.settings.diversity)),
        }

    def check_options(self, options):
        check_int(options, "top_n", 1, 100)
        if "diversity" in options and not 0 <= options["diversity"] <= 1:
            raise BadRequest(
                f"option 'diversity' must be between 0 and 1, got {options['diversity']}", reason=BAD_OPTION
            )

    def prepare(self, items: list[str]) -> list[list[str]]:
        """The candidate phrases of each text, within the per-text and per-request budgets."""
        groups: list[list[str]] = []
        left = self.max_candidates_per_request
        for text in items:
            limit = min(self.max_candidates, left)
            try:
                group = candidates(text, self.ngram_range, self.stop_words, limit=limit)
            except TooManyCandidates:
                if limit < self.max_candidates:
                    raise over_budget(
                        f"the texts of this request yield more than {self.max_candidates_per_request} "
                        "candidate phrases in all",
                        self.max_candidates_per_request,
                        "per request",
                        "keywords.max_candidates_per_request",
                        "send fewer or shorter texts per request",
                    ) from None
                raise over_budget(
                    f"a text yields more than {self.max_candidates} candidate phrases",
                    self.max_candidates,
                    "per text",
                    "keywords.max_candidates",
                    "send shorter texts",
                ) from None
            left -= len(group)
            groups.append(group)
        if self.max_candidate_tokens is not None:
            # Tokenizing a few thousand short phrases costs milliseconds; embedding them is the cost.
            phrases = [p for group in groups for p in group]
            tokens = sum(map(len, self.encoder.tokenize(phrases).ids)) if phrases else 0
            if tokens > self.max_candidate_tokens:
                raise over_budget(
                    f"the candidate phrases of this request have {tokens} tokens",
                    self.max_candidate_tokens,
                    "tokens per request",
                    "keywords.max_candidate_tokens_per_request",
                    "send fewer or shorter texts per request",
                )
        return groups

    def run(self, items, tokenized, indices, options, prepared):
        # Requests in one batch often share phrases: each distinct phrase is embedded once.
        unique = list(dict.fromkeys(p for group in prepared for p in group))
        doc_rows = tokenized.rows(tokenized.one_row(indices))
        phrases = self.encoder.tokenize(unique) if unique else None
        phrase_rows = phrases.rows(range(len(unique))) if phrases is not None else []
        # Texts and candidates in one call: the length sort groups the short candidates together.
        vectors = self.encoder.run(doc_rows + phrase_rows, self.reduce)
        docs = vectors[: len(items)]
        phrase_vector = dict(zip(unique, vectors[len(items) :], strict=True))
        results: list[Any] = []
        for doc, group, opts in zip(docs, prepared, options, strict=True):
            if not group:
                results.append([])
                continue
            group_vectors = torch.stack([phrase_vector[p] for p in group])
            results.append(select(doc, group_vectors, group, **self.choices(opts)))
        return results
