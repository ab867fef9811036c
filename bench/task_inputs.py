"""The request bodies bench/tasks.py sends, per task and length, and the model rows each one costs.

Lengths are token counts of what the model sees (special tokens included), built with the served
tokenizer from torchship.loadgen's synthetic English words:

  short  ~16 tokens: a text, or a (query, text) / (question, context) pair of ~16 tokens in all
  long   ~200 tokens: a text, or a short query/question with a passage/context filling the pair to ~200

A reranking request is one query with RERANK_TEXTS texts; every other request is one text or one pair. A
keywords request costs its text plus one row per candidate phrase (the handler's own candidate split).
The same bodies go to torchship's handler, the stock-style handler and the FastAPI peer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchship.handlers.keywords import candidates
from torchship.loadgen import make_texts
from torchship.spec import KeywordsSpec
from torchship.tasks.keywords import stop_word_list

TOKEN_TARGETS = {"short": 16, "long": 200}
QUERY_TOKENS = {"short": 8, "long": 12}  # a pair's query/question, special tokens included
RERANK_TEXTS = 4  # texts per reranking request: a small re-ranked shortlist
BODIES = 32  # distinct bodies per (task, length), sent in turn
TEXT_TASKS = ("embeddings", "text-classification", "token-classification", "keywords")
PAIR_TASKS = ("reranking", "question-answering")
TASKS = (*TEXT_TASKS, *PAIR_TASKS)


@dataclass(frozen=True)
class Inputs:
    """What one (task, length) sends, and what it costs the model."""

    bodies: list[dict[str, Any]]
    texts_per_request: int  # texts a client sent (a reranking request's texts; 1 otherwise)
    row_tokens: list[list[int]]  # per body: the tokens of each model row it costs (special tokens included)

    @property
    def rows_per_request(self) -> float:
        return sum(map(len, self.row_tokens)) / len(self.row_tokens)

    @property
    def tokens_per_row(self) -> float:
        return sum(map(sum, self.row_tokens)) / sum(map(len, self.row_tokens))


def pair_tokens(tokenizer, first: str, second: str) -> int:
    return len(tokenizer(first, second)["input_ids"])


def text_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def keyword_rows(tokenizer, text: str) -> list[int]:
    """The text's row and one row per candidate phrase, as the served keywords spec (its defaults) splits it."""
    spec = KeywordsSpec()
    low, high = spec.ngram_range
    phrases = candidates(text, (low, high), stop_word_list(spec.stop_words))
    return [text_tokens(tokenizer, text), *(text_tokens(tokenizer, p) for p in phrases)]


def build_inputs(task: str, length: str, tokenizer, count: int = BODIES) -> Inputs:
    target = TOKEN_TARGETS[length]
    if task in TEXT_TASKS:
        texts = make_texts(tokenizer, target, count)
        bodies: list[dict[str, Any]] = [{"text": text} for text in texts]
        if task == "keywords":
            rows = [keyword_rows(tokenizer, text) for text in texts]
        else:
            rows = [[text_tokens(tokenizer, text)] for text in texts]
        return Inputs(bodies, 1, rows)
    if task not in PAIR_TASKS:
        raise ValueError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
    query_tokens = QUERY_TOKENS[length]
    # Queries from a later stretch of the generator, so a query never opens like its passage.
    queries = make_texts(tokenizer, query_tokens, 2 * count)[count:]
    # A pair is [CLS] query [SEP] passage [SEP]: the passage's own [CLS] and [SEP] become one [SEP].
    passages = make_texts(tokenizer, target - query_tokens + 1, count)
    if task == "reranking":
        bodies = [
            {
                "query": queries[i],
                "texts": [passages[(i * RERANK_TEXTS + j) % count] for j in range(RERANK_TEXTS)],
            }
            for i in range(count)
        ]
        rows = [[pair_tokens(tokenizer, b["query"], text) for text in b["texts"]] for b in bodies]
        return Inputs(bodies, RERANK_TEXTS, rows)
    bodies = [{"question": queries[i], "context": passages[i]} for i in range(count)]
    rows = [[pair_tokens(tokenizer, b["question"], b["context"])] for b in bodies]
    return Inputs(bodies, 1, rows)
