"""One class per task: which per-request options it takes, and how a batch of texts becomes results.

Every task gets the same inputs — the texts of a whole server-side batch, already tokenized — so the
model runs once per length-sorted sub-batch, whatever mix of requests arrived together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from .config import HandlerConfig
from .encoder import Encoder, Tokenized
from .keywords import TooManyCandidates, candidates, select
from .ner import AGGREGATION_STRATEGIES, TokenizerFacts, entities
from .pooling import embed
from .requests import BadRequest, over_budget


def _check_int(options: dict[str, Any], name: str, low: int, high: int) -> None:
    if name in options and not low <= options[name] <= high:
        raise BadRequest(f"option '{name}' must be between {low} and {high}, got {options[name]}")


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
    """Scores per label from text-classification logits (float32, as the pipeline computes them)."""
    logits = logits.float()
    if function == "softmax":
        return logits.softmax(dim=-1)
    if function == "sigmoid":
        return logits.sigmoid()
    return logits


class Task:
    """Base: `options` are the per-request options a client may send, with their types."""

    options: ClassVar[dict[str, type]] = {}
    needs_offsets: ClassVar[bool] = False

    def __init__(self, encoder: Encoder, config: HandlerConfig, model_config: dict[str, Any]):
        self.encoder = encoder
        self.config = config
        self.model_config = model_config
        # Encoder cost grows with the tokens run (attention with their square per text); texts x
        # max_length bounds it already, this bounds it however max_length and the text limit are set.
        self.max_tokens = config.max_tokens_per_request

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise BadRequest for option values out of range (types are checked by the request parser)."""

    def check_tokens(self, tokenized: Tokenized, start: int, end: int) -> None:
        """Raise BadRequest for a request (rows start..end of `tokenized`) over the length or token budget."""
        for row in range(start, end):
            self.encoder.check_length(tokenized, row)
        count = sum(len(tokenized.ids[row]) for row in range(start, end))
        if self.max_tokens is not None and count > self.max_tokens:
            raise over_budget(
                f"the texts of this request have {count} tokens",
                self.max_tokens,
                "tokens per request",
                "serve.max_tokens_per_request",
                "send fewer or shorter texts per request",
            )

    def prepare(self, texts: list[str]) -> list[Any]:
        """Per text of one request, what `run` needs beyond its tokens; raise BadRequest (413 over a
        budget) for a request this task cannot answer. Runs before any model work."""
        return [None] * len(texts)

    def run(
        self,
        texts: list[str],
        encoding: Any,
        rows: list[int],
        options: list[dict[str, Any]],
        prepared: list[Any],
    ) -> list[Any]:
        """One JSON-serializable result per text. `rows[i]` indexes texts[i] in `encoding`;
        `prepared[i]` is what `prepare` returned for it."""
        raise NotImplementedError


class EmbeddingsTask(Task):
    def reduce(self, output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return embed(output, mask, self.config.pooling, self.config.normalize)

    def run(self, texts, encoding, rows, options, prepared):
        ids = [encoding["input_ids"][r] for r in rows]
        return [vector.tolist() for vector in self.encoder.run(ids, self.reduce)]


class TextClassificationTask(Task):
    """Equal to transformers' text-classification pipeline with top_k=None: every label, best first."""

    options: ClassVar[dict[str, type]] = {"top_k": int}

    def __init__(self, encoder, config, model_config):
        super().__init__(encoder, config, model_config)
        self.labels = {int(k): v for k, v in model_config.get("id2label", {}).items()}
        self.function = score_function(model_config)

    def check_options(self, options):
        _check_int(options, "top_k", 1, max(1, len(self.labels)))

    def reduce(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return class_scores(logits, self.function)

    def run(self, texts, encoding, rows, options, prepared):
        ids = [encoding["input_ids"][r] for r in rows]
        results = []
        for scores, opts in zip(self.encoder.run(ids, self.reduce), options, strict=True):
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


class TokenClassificationTask(Task):
    """Entities with character offsets, equal to transformers' token-classification pipeline."""

    options: ClassVar[dict[str, type]] = {"aggregation_strategy": str}
    needs_offsets: ClassVar[bool] = True

    def __init__(self, encoder, config, model_config):
        super().__init__(encoder, config, model_config)
        self.labels = {int(k): v for k, v in model_config.get("id2label", {}).items()}
        self.facts = TokenizerFacts.of(encoder.tokenizer)
        self.strategy = config.aggregation_strategy
        self.ignore_labels = config.ignore_labels

    def check_options(self, options):
        strategy = options.get("aggregation_strategy", self.strategy)
        if strategy not in AGGREGATION_STRATEGIES:
            raise BadRequest(
                f"option 'aggregation_strategy' must be one of {', '.join(AGGREGATION_STRATEGIES)}, got {strategy!r}"
            )

    def run(self, texts, encoding, rows, options, prepared):
        ids = [encoding["input_ids"][r] for r in rows]
        logits = self.encoder.run(ids, lambda output, mask: output)
        return [
            entities(
                text,
                row_ids,
                encoding["offset_mapping"][r],
                encoding["special_tokens_mask"][r],
                row_logits[: len(row_ids)],  # drop the sub-batch's padding
                self.labels,
                opts.get("aggregation_strategy", self.strategy),
                self.facts,
                self.ignore_labels,
            )
            for text, r, row_ids, row_logits, opts in zip(texts, rows, ids, logits, options, strict=True)
        ]


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

    options: ClassVar[dict[str, type]] = {"top_n": int, "use_mmr": bool, "diversity": float}

    def __init__(self, encoder, config, model_config):
        super().__init__(encoder, config, model_config)
        self.ngram_range = config.ngram_range
        self.stop_words = frozenset(config.stop_words)
        self.max_candidates = config.max_candidates
        self.max_candidates_per_request = config.max_candidates_per_request
        self.max_candidate_tokens = config.max_candidate_tokens_per_request

    def settings(self, options: dict[str, Any]) -> dict[str, Any]:
        return {
            "top_n": options.get("top_n", self.config.top_n),
            "use_mmr": options.get("use_mmr", self.config.use_mmr),
            "diversity": float(options.get("diversity", self.config.diversity)),
        }

    def check_options(self, options):
        _check_int(options, "top_n", 1, 100)
        if "diversity" in options and not 0 <= options["diversity"] <= 1:
            raise BadRequest(f"option 'diversity' must be between 0 and 1, got {options['diversity']}")

    def prepare(self, texts: list[str]) -> list[list[str]]:
        """The candidate phrases of each text, within the per-text and per-request budgets."""
        groups: list[list[str]] = []
        left = self.max_candidates_per_request
        for text in texts:
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

    def run(self, texts, encoding, rows, options, prepared):
        # Requests in one batch often share phrases: each distinct phrase is embedded once.
        unique = list(dict.fromkeys(p for group in prepared for p in group))
        doc_ids = [encoding["input_ids"][r] for r in rows]
        phrase_ids = self.encoder.tokenize(unique).ids if unique else []
        # Texts and candidates in one call: the length sort groups the short candidates together.
        vectors = self.encoder.run(doc_ids + list(phrase_ids), self.reduce)
        docs = vectors[: len(texts)]
        phrase_vector = dict(zip(unique, vectors[len(texts) :], strict=True))
        results: list[Any] = []
        for doc, group, opts in zip(docs, prepared, options, strict=True):
            if not group:
                results.append([])
                continue
            group_vectors = torch.stack([phrase_vector[p] for p in group])
            results.append(select(doc, group_vectors, group, **self.settings(opts)))
        return results


TASKS: dict[str, type[Task]] = {
    "keywords": KeywordsTask,
    "embeddings": EmbeddingsTask,
    "text-classification": TextClassificationTask,
    "token-classification": TokenClassificationTask,
}


def read_model_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
