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

from .requests import BadRequest

# (input_ids, attention_mask) -> the model's first output, e.g. last_hidden_state or logits.
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Tokenized:
    encoding: Any  # the tokenizer's BatchEncoding: input_ids, and offsets/word ids when asked for
    too_long: dict[int, int]  # index -> token count, for texts over max_length when truncation is off

    @property
    def ids(self) -> list[list[int]]:
        return self.encoding["input_ids"]


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


def pad_rows(
    rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every row padded to `width` (default: the longest row)."""
    width = width or max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


class Encoder:
    def __init__(
        self,
        forward: Forward,
        tokenizer,
        max_length: int,
        truncation: bool = True,
        max_batch: int = 8,
        buckets: Sequence[int] | None = None,
    ):
        self.forward = forward
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.max_batch = max_batch
        self.buckets = sorted(buckets) if buckets else None
        self.pad_id = pad_id_of(tokenizer)

    def tokenize(self, texts: Sequence[str], offsets: bool = False) -> Tokenized:
        # One tokenizer call for the whole server-side batch: the fast tokenizer parallelizes it.
        encoded = self.tokenizer(
            list(texts),
            add_special_tokens=True,
            truncation=self.truncation,
            max_length=self.max_length,
            return_offsets_mapping=offsets,
            return_special_tokens_mask=offsets,
        )
        too_long = {i: len(row) for i, row in enumerate(encoded["input_ids"]) if len(row) > self.max_length}
        return Tokenized(encoded, too_long)

    def check_length(self, tokenized: Tokenized, index: int) -> None:
        if index in tokenized.too_long:
            raise BadRequest(
                f"text has {tokenized.too_long[index]} tokens, over this model's max_length of "
                f"{self.max_length} (truncation is off for this model)"
            )

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(r) for r in rows)
        return pad_rows(rows, self.pad_id, bucket_for(longest, self.buckets) if self.buckets else longest)

    def run(
        self,
        rows: Sequence[Sequence[int]],
        reduce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> list[torch.Tensor]:
        """Per row, `reduce(model_output, attention_mask)[i]`, computed in sorted padded sub-batches."""
        results: list[torch.Tensor | None] = [None] * len(rows)
        with torch.inference_mode():
            # Fixed-shape models accept only their compiled batch sizes; dynamic ones take any, so a
            # sub-batch holds up to max_batch x max_length tokens, the most a full batch of long texts has.
            max_tokens = None if self.buckets else self.max_batch * self.max_length
            for chunk in length_sorted_chunks([len(r) for r in rows], self.max_batch, max_tokens):
                ids, mask = self.pad([rows[i] for i in chunk])
                reduced = reduce(self.forward(ids, mask), mask)
                for pos, i in enumerate(chunk):
                    results[i] = reduced[pos]
        return results  # type: ignore[return-value]  # every row is in exactly one chunk: none is left None
