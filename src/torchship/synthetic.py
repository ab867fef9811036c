"""Deterministic model inputs of exact token lengths (and token types), for tracing probes and the parity gate."""

from __future__ import annotations

import torch


def special_ids(tokenizer) -> set[int]:
    return set(getattr(tokenizer, "all_special_ids", []) or [])


def token_rows(tokenizer, lengths: list[int], seed: int = 0) -> list[list[int]]:
    """Rows of exactly `length` ids each: the tokenizer's own specials around random ordinary tokens."""
    generator = torch.Generator().manual_seed(seed)
    framed = tokenizer("x", add_special_tokens=True)["input_ids"]
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    prefix_len = next(i for i in range(len(framed)) if framed[i : i + len(bare)] == bare)
    prefix, suffix = framed[:prefix_len], framed[prefix_len + len(bare) :]
    specials = special_ids(tokenizer)
    vocab = tokenizer.vocab_size
    ordinary = torch.tensor([i for i in range(min(vocab, 30_000)) if i not in specials][100:])
    rows = []
    for length in lengths:
        body = max(0, length - len(prefix) - len(suffix))
        picks = ordinary[torch.randint(len(ordinary), (body,), generator=generator)].tolist()
        rows.append((prefix + picks + suffix)[: max(length, 1)])
    return rows


def feature_rows(
    tokenizer, lengths: list[int], seed: int = 0, token_types: bool = False
) -> list[dict[str, list[int]]]:
    """`token_rows` as model rows (handlers/model_io.Row). With `token_types` each row is a pair: its
    second half has token type 1, as a tokenized (query, passage) pair has, so a compiled model that
    ignored or dropped its token types would differ from the source model on these rows."""
    rows: list[dict[str, list[int]]] = []
    for ids in token_rows(tokenizer, lengths, seed):
        row = {"input_ids": ids}
        if token_types:
            first = (len(ids) + 1) // 2
            row["token_type_ids"] = [0] * first + [1] * (len(ids) - first)
        rows.append(row)
    return rows
