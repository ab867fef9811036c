"""reranking: a cross-encoder scores each (query, text) pair; the texts come back best first.

Request `{"query": "...", "texts": ["...", ...]}` with optional `top_n` and `return_texts`; answer
`[{"index": i, "score": s}, ...]` best first, the shape of text-embeddings-inference's /rerank. The score
is the sigmoid of the pair's one logit, as sentence-transformers' CrossEncoder.predict gives by default
(`reranking.score: raw` keeps the logit). Pairs are tokenized as the CrossEncoder tokenizes them (query
first, longest-first truncation, the tokenizer's token types), and the pairs of every request in the
server-side batch run through the model together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..model_io import Outputs
from ..requests import BAD_SCHEMA, BadRequest, Limits, ParsedRequest, check_count, check_options, check_text
from .base import RequestSchema, Task, TaskSettings, check_int, setting

_ITEM_KEYS = ("query", "texts")
EXAMPLE = (
    '{"query": "what is torchserve?", "texts": ["TorchServe serves PyTorch models.", "Cats sleep a lot."]}'
)


def parse_ranking(value: Any, limits: Limits, allowed_options: dict[str, type]) -> ParsedRequest:
    """{"query": str, "texts": [str, ...]} -> one (query, text) item per text."""
    if not isinstance(value, dict):
        raise BadRequest(
            f"JSON body must be an object like {EXAMPLE}, got {type(value).__name__}", reason=BAD_SCHEMA
        )
    missing = [key for key in _ITEM_KEYS if key not in value]
    if missing:
        raise BadRequest(
            f'JSON body lacks {" and ".join(map(repr, missing))}: send {{"query": "...", "texts": ["...", ...]}}',
            reason=BAD_SCHEMA,
        )
    options = check_options({k: v for k, v in value.items() if k not in _ITEM_KEYS}, allowed_options)
    query = check_text(value["query"], '"query"')
    texts = value["texts"]
    if not isinstance(texts, list):
        raise BadRequest(f'"texts" must be a list of strings, got {type(texts).__name__}', reason=BAD_SCHEMA)
    check_count(len(texts), '"texts"', limits)
    pairs = [(query, check_text(text, f'"texts"[{i}]')) for i, text in enumerate(texts)]
    return ParsedRequest(pairs, single=False, options=options)


@dataclass(frozen=True)
class RerankingSettings(TaskSettings):
    score: str = setting("sigmoid", str)  # "sigmoid" (CrossEncoder's default) or "raw" (the logit)


def relevance(logits: torch.Tensor, function: str) -> torch.Tensor:
    """One score per pair from the head's one logit (float32)."""
    scores = logits.float()[:, 0]
    return scores.sigmoid() if function == "sigmoid" else scores


class RerankingTask(Task):
    name = "reranking"
    auto_class = "AutoModelForSequenceClassification"
    outputs: ClassVar[tuple[str, ...]] = ("logits",)
    request = RequestSchema(parse_ranking, EXAMPLE)
    Settings: ClassVar[type[TaskSettings]] = RerankingSettings
    options: ClassVar[dict[str, type]] = {"top_n": int, "return_texts": bool}
    item_name = "query/text pair"

    def check_options(self, options):
        check_int(options, "top_n", 1, self.config.max_texts_per_request)

    def tokenize(self, items):
        return self.encoder.tokenize([query for query, _ in items], pairs=[text for _, text in items])

    def reduce(self, outputs: Outputs, mask: torch.Tensor) -> torch.Tensor:
        return relevance(outputs["logits"], self.settings.score)

    def run(self, items, tokenized, indices, options, prepared):
        scores = self.encoder.run(tokenized.rows(tokenized.one_row(indices)), self.reduce)
        return [score.item() for score in scores]

    def respond(self, request: ParsedRequest, values: list[Any]) -> list[dict[str, Any]]:
        order = sorted(range(len(values)), key=lambda i: values[i], reverse=True)
        order = order[: request.options.get("top_n", len(order))]
        ranked: list[dict[str, Any]] = [{"index": i, "score": values[i]} for i in order]
        if request.options.get("return_texts"):
            for entry in ranked:
                entry["text"] = request.items[entry["index"]][1]
        return ranked
