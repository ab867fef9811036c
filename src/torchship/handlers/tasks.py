"""One class per task: which per-request options it takes, and how a batch of texts becomes results.

Every task gets the same inputs — the texts of a whole server-side batch, already tokenized — so the
model runs once per length-sorted sub-batch, whatever mix of requests arrived together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from .encoder import Encoder
from .keywords import candidates, select
from .ner import AGGREGATION_STRATEGIES, TokenizerFacts, entities
from .pooling import embed
from .requests import BadRequest


def _check_int(options: dict[str, Any], name: str, low: int, high: int) -> None:
    if name in options and not low <= options[name] <= high:
        raise BadRequest(f"option '{name}' must be between {low} and {high}, got {options[name]}")


class Task:
    """Base: `options` are the per-request options a client may send, with their types."""

    options: ClassVar[dict[str, type]] = {}
    needs_offsets: ClassVar[bool] = False

    def __init__(self, encoder: Encoder, config: dict[str, Any], model_config: dict[str, Any]):
        self.encoder = encoder
        self.config = config
        self.model_config = model_config

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise BadRequest for option values out of range (types are checked by the request parser)."""

    def check_text(self, text: str) -> None:
        """Raise BadRequest for a text this task cannot answer (beyond the shared length check)."""

    def run(
        self, texts: list[str], encoding: Any, rows: list[int], options: list[dict[str, Any]]
    ) -> list[Any]:
        """One JSON-serializable result per text. `rows[i]` indexes texts[i] in `encoding`."""
        raise NotImplementedError


class EmbeddingsTask(Task):
    def reduce(self, output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return embed(
            output, mask, self.config.get("pooling", "mean"), bool(self.config.get("normalize", True))
        )

    def run(self, texts, encoding, rows, options):
        ids = [encoding["input_ids"][r] for r in rows]
        return [vector.tolist() for vector in self.encoder.run(ids, self.reduce)]


class TextClassificationTask(Task):
    """Equal to transformers' text-classification pipeline with top_k=None: every label, best first."""

    options: ClassVar[dict[str, type]] = {"top_k": int}

    def __init__(self, encoder, config, model_config):
        super().__init__(encoder, config, model_config)
        self.labels = {int(k): v for k, v in model_config.get("id2label", {}).items()}
        problem = model_config.get("problem_type")
        num_labels = len(self.labels)
        # The same choice the pipeline makes: sigmoid for multi-label or single-logit heads.
        if problem == "regression":
            self.function = "none"
        elif problem == "multi_label_classification" or num_labels == 1:
            self.function = "sigmoid"
        else:
            self.function = "softmax"

    def check_options(self, options):
        _check_int(options, "top_k", 1, max(1, len(self.labels)))

    def reduce(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.function == "softmax":
            return logits.softmax(dim=-1)
        if self.function == "sigmoid":
            return logits.sigmoid()
        return logits

    def run(self, texts, encoding, rows, options):
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
        self.strategy = config.get("aggregation_strategy", "simple")
        self.ignore_labels = tuple(config.get("ignore_labels", ("O",)))

    def check_options(self, options):
        strategy = options.get("aggregation_strategy", self.strategy)
        if strategy not in AGGREGATION_STRATEGIES:
            raise BadRequest(
                f"option 'aggregation_strategy' must be one of {', '.join(AGGREGATION_STRATEGIES)}, got {strategy!r}"
            )

    def run(self, texts, encoding, rows, options):
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
    (optionally diversified with MMR). The text and all its candidates are embedded in one batch."""

    options: ClassVar[dict[str, type]] = {"top_n": int, "use_mmr": bool, "diversity": float}

    def __init__(self, encoder, config, model_config):
        super().__init__(encoder, config, model_config)
        self.ngram_range = tuple(config.get("ngram_range", (1, 1)))
        self.stop_words = frozenset(config.get("stop_words", ()))
        self.max_candidates = int(config.get("max_candidates", 1000))

    def settings(self, options: dict[str, Any]) -> dict[str, Any]:
        return {
            "top_n": options.get("top_n", self.config.get("top_n", 5)),
            "use_mmr": options.get("use_mmr", self.config.get("use_mmr", False)),
            "diversity": float(options.get("diversity", self.config.get("diversity", 0.5))),
        }

    def check_options(self, options):
        _check_int(options, "top_n", 1, 100)
        if "diversity" in options and not 0 <= options["diversity"] <= 1:
            raise BadRequest(f"option 'diversity' must be between 0 and 1, got {options['diversity']}")

    def check_text(self, text: str) -> None:
        count = len(candidates(text, self.ngram_range, self.stop_words))
        if count > self.max_candidates:
            raise BadRequest(
                f"text yields {count} candidate phrases, over this model's limit of {self.max_candidates}; "
                "send a shorter text"
            )

    def run(self, texts, encoding, rows, options):
        phrases = [candidates(text, self.ngram_range, self.stop_words) for text in texts]
        flat = [p for group in phrases for p in group]
        doc_ids = [encoding["input_ids"][r] for r in rows]
        phrase_ids = self.encoder.tokenize(flat).ids if flat else []
        # Texts and candidates in one call: the length sort groups the short candidates together.
        vectors = self.encoder.run(doc_ids + list(phrase_ids), self.reduce)
        docs, phrase_vectors = vectors[: len(texts)], vectors[len(texts) :]
        results, start = [], 0
        for doc, group, opts in zip(docs, phrases, options, strict=True):
            group_vectors = phrase_vectors[start : start + len(group)]
            start += len(group)
            if not group:
                results.append([])
                continue
            results.append(select(doc, torch.stack(group_vectors), group, **self.settings(opts)))
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
