"""Tokenize a server-side batch at once and run it in length-sorted, dynamically padded sub-batches.

Padding every text to max_length (what the stock TorchServe Hugging Face handler does) costs 5-25x on
short texts; sorting by length and padding each sub-batch to its own longest text avoids that. Fixed-shape
compiled models (`pad_to`) get padded to the smallest bucket that fits instead.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .model_io import ATTENTION_MASK, INPUT_IDS, Features, Forward, Outputs, Row, pad_features
from .requests import TEXT_TOO_LONG, BadRequest


@dataclass
class Tokenized:
    """A server-side batch tokenized at once. An item (a text, a query/text pair, a question/context pair)
    has one row, or several where a long context is split into windows (`item_rows`)."""

    encoding: Any  # the tokenizer's BatchEncoding: input_ids, token types, offsets when asked for
    inputs: tuple[str, ...]  # the model's inputs (rows carry all but the attention mask)
    item_rows: list[list[int]]  # item index -> its rows in `encoding`
    too_long: dict[int, int]  # item index -> token count, for items over max_length when truncation is off

    @property
    def ids(self) -> list[list[int]]:
        return self.encoding["input_ids"]

    def row(self, index: int) -> dict[str, list[int]]:
        """One row's model inputs by name (the attention mask is made by padding)."""
        return {
            name: self.encoding[name][index]
            for name in self.inputs
            if name != ATTENTION_MASK and name in self.encoding
        }

    def rows(self, indices: Sequence[int]) -> list[dict[str, list[int]]]:
        return [self.row(i) for i in indices]

    def one_row(self, items: Sequence[int]) -> list[int]:
        """The row of each item, for tasks whose items are never split into windows."""
        return [self.item_rows[i][0] for i in items]

    def tokens(self, item: int) -> int:
        return sum(len(self.ids[r]) for r in self.item_rows[item])


def one_row_per_item(encoding: Any) -> list[list[int]]:
    return [[i] for i in range(len(encoding["input_ids"]))]


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `length` tokens (buckets sorted ascending)."""
    pos = bisect.bisect_left(buckets, length)
    if pos == len(buckets):
        raise ValueError(f"{length} tokens exceed the largest bucket {buckets[-1]}")
    return buckets[pos]


def length_sorted_chunks(
    lengths: Sequence[int], max_batch: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices grouped into sub-batches of similar length (longest first), at most max_batch each, or
    with `max_tokens`, as many rows as fit max_tokens at the chunk's longest (at least max_batch)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    if max_tokens is None:
        return [order[i : i + max_batch] for i in range(0, len(order), max_batch)]
    # Short rows (keyword candidates are 3-6 tokens) in few large calls: per call the model pays a fixed
    # cost that, on a busy host where the intra-op threads wait for cores, dwarfs a small batch's work.
    chunks, start = [], 0
    while start < len(order):
        rows = max(max_batch, max_tokens // max(1, lengths[order[start]]))
        chunks.append(order[start : start + rows])
        start += rows
    return chunks


def pad_id_of(tokenizer) -> int:
    """The tokenizer's padding id (0 for tokenizers that define none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def pad_type_id_of(tokenizer) -> int:
    """The token type of padding positions (0 unless the tokenizer says otherwise)."""
    return int(getattr(tokenizer, "pad_token_type_id", 0) or 0)


class Encoder:
    def __init__(
        self,
        forward: Forward,
        tokenizer,
        inputs: tuple[str, ...],
        max_length: int,
        truncation: bool = True,
        max_batch: int = 8,
        buckets: Sequence[int] | None = None,
    ):
        self.forward = forward
        self.tokenizer = tokenizer
        self.inputs = inputs
        self.max_length = max_length
        self.truncation = truncation
        self.max_batch = max_batch
        self.buckets = sorted(buckets) if buckets else None
        self.pad_id = pad_id_of(tokenizer)
        self.pad_type_id = pad_type_id_of(tokenizer)

    def tokenize(
        self, texts: Sequence[str], offsets: bool = False, pairs: Sequence[str] | None = None
    ) -> Tokenized:
        """One tokenizer call for the whole server-side batch (the fast tokenizer parallelizes it); with
        `pairs`, each text is the first and pairs[i] the second segment (a query and a passage), truncated
        longest-first as sentence-transformers' CrossEncoder does."""
        encoded = self.tokenizer(
            list(texts),
            list(pairs) if pairs is not None else None,
            add_special_tokens=True,
            truncation=self.truncation,
            max_length=self.max_length,
            return_offsets_mapping=offsets,
            return_special_tokens_mask=offsets,
        )
        too_long = {i: len(row) for i, row in enumerate(encoded[INPUT_IDS]) if len(row) > self.max_length}
        return Tokenized(encoded, self.inputs, one_row_per_item(encoded), too_long)

    def check_length(self, tokenized: Tokenized, item: int, what: str = "text") -> None:
        if item in tokenized.too_long:
            raise BadRequest(
                f"{what} has {tokenized.too_long[item]} tokens, over this model's max_length of "
                f"{self.max_length} (truncation is off for this model)",
                reason=TEXT_TOO_LONG,
            )

    def pad(self, rows: Sequence[Row]) -> Features:
        """The rows' model inputs, padded to the longest row (or the smallest bucket that holds it)."""
        longest = max(len(r[INPUT_IDS]) for r in rows)
        width = bucket_for(longest, self.buckets) if self.buckets else longest
        return pad_features(rows, self.inputs, self.pad_id, width, self.pad_type_id)

    def run(
        self,
        rows: Sequence[Row],
        reduce: Callable[[Outputs, torch.Tensor], torch.Tensor],
    ) -> list[torch.Tensor]:
        """Per row, `reduce(model_outputs, attention_mask)[i]`, computed in sorted padded sub-batches."""
        results: list[torch.Tensor | None] = [None] * len(rows)
        with torch.inference_mode():
            # Fixed-shape models accept only their compiled batch sizes; dynamic ones take any, so a
            # sub-batch holds up to max_batch x max_length tokens, the most a full batch of long texts has.
            max_tokens = None if self.buckets else self.max_batch * self.max_length
            lengths = [len(r[INPUT_IDS]) for r in rows]
            for chunk in length_sorted_chunks(lengths, self.max_batch, max_tokens):
                features = self.pad([rows[i] for i in chunk])
                reduced = reduce(self.forward(features), features[ATTENTION_MASK])
                for pos, i in enumerate(chunk):
                    results[i] = reduced[pos]
        return results  # type: ignore[return-value]  # every row is in exactly one chunk: none is left None
