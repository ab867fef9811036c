"""Token classification (NER): one text's logits -> entities, as transformers' "token-classification"
pipeline reports them for each `aggregation_strategy`, on torch alone (the handler cannot use pipelines).

The steps, in the pipeline's order:
1. softmax over labels, in float32;
2. drop special tokens; every other token keeps its text span (offsets) and a guess whether it
   continues the previous token's word (`is_subword`, see `_is_subword`);
3. "none" / "simple": one labelled piece per token. "first" / "max" / "average": tokens are merged into
   words first, so a word cannot end up with two labels;
4. except for "none", adjacent pieces with the same tag are merged into entity groups (a "B-" piece
   always opens a new group);
5. pieces / groups whose label is in `ignore_labels` are dropped (after grouping, so an "O" still
   separates two groups).

Only a single window is handled: the pipeline's `stride` mode (overlapping chunks of a long text) is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

AGGREGATION_STRATEGIES = ("none", "simple", "first", "max", "average")


@dataclass(frozen=True)
class TokenizerFacts:
    """What post-processing needs from the tokenizer: read once at load time, so `entities` stays a pure
    function of its inputs (and testable without a tokenizer object)."""

    # The vocabulary string of a token id (the pipeline reports these, e.g. "##s" or "Ġparis", not a decode).
    id_to_token: Callable[[int], str]
    # Joins token strings into text the way the tokenizer's decoder does ("par", "##is" -> "paris").
    tokens_to_string: Callable[[list[str]], str]
    unk_token_id: int | None
    # True when the tokenizer model marks word continuations (WordPiece "##"): then a token whose string
    # length differs from its text span is a continuation. Otherwise (byte-level BPE, SentencePiece) the
    # only signal left is whether a space precedes the token in the text.
    word_aware: bool

    @classmethod
    def of(cls, tokenizer: Any) -> TokenizerFacts:
        """From a transformers tokenizer, duck-typed so this module never imports transformers."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        prefix = getattr(getattr(backend, "model", None), "continuing_subword_prefix", None)
        return cls(
            id_to_token=tokenizer.convert_ids_to_tokens,
            tokens_to_string=tokenizer.convert_tokens_to_string,
            unk_token_id=tokenizer.unk_token_id,
            word_aware=bool(prefix),
        )


@dataclass
class _Token:
    index: int  # position in input_ids (special tokens included), reported by "none"
    word: str
    start: int
    end: int
    is_subword: bool


@dataclass
class _Piece:
    """A token ("simple") or a word ("first"/"max"/"average") with its label, before grouping."""

    label: str
    score: float
    word: str
    start: int
    end: int


def _is_subword(token: str, text: str, start: int, end: int, word_aware: bool) -> bool:
    if word_aware:
        # "##ing" is 5 characters for a 3-character span; a word start is exactly its span (lowercasing
        # and accent stripping keep the length for nearly all characters).
        return len(token) != len(text[start:end])
    # Heuristic: a token continues a word unless it starts the text or touches a plain space. Tabs and
    # newlines do not count, which is also what the pipeline does.
    return start > 0 and " " not in text[start - 1 : start + 1]


def _gather(
    text: str,
    input_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    special_tokens_mask: Sequence[int],
    tokenizer: TokenizerFacts,
) -> list[_Token]:
    tokens = []
    for index, (token_id, (start, end), special) in enumerate(
        zip(input_ids, offsets, special_tokens_mask, strict=True)
    ):
        if special:
            continue
        start, end = int(start), int(end)
        if int(token_id) == tokenizer.unk_token_id:
            # "[UNK]" says nothing: report the original characters, and count it as a word of its own.
            tokens.append(_Token(index, text[start:end], start, end, False))
            continue
        word = tokenizer.id_to_token(int(token_id))
        tokens.append(
            _Token(index, word, start, end, _is_subword(word, text, start, end, tokenizer.word_aware))
        )
    return tokens


def _words(tokens: list[_Token]) -> list[list[_Token]]:
    """Runs of tokens, each a first token plus its subword continuations."""
    words: list[list[_Token]] = []
    for token in tokens:
        if words and token.is_subword:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _word_piece(
    word: list[_Token],
    probs: torch.Tensor,
    strategy: str,
    id2label: dict[int, str],
    tokenizer: TokenizerFacts,
) -> _Piece:
    rows = probs[[t.index for t in word]]
    if strategy == "first":
        chosen = rows[0]
    elif strategy == "max":
        # The token most confident in any label decides; the first such token on ties.
        chosen = rows[int(rows.max(dim=-1).values.argmax())]
    else:  # average
        chosen = rows.nanmean(dim=0)
    label = int(chosen.argmax())
    return _Piece(
        id2label[label],
        float(chosen[label]),
        tokenizer.tokens_to_string([t.word for t in word]),
        word[0].start,
        word[-1].end,
    )


def _tag(label: str) -> tuple[str, str]:
    """("B" or "I", entity type). A label without a B-/I- prefix continues a run of the same label."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _groups(pieces: list[_Piece], tokenizer: TokenizerFacts) -> list[dict[str, Any]]:
    runs: list[list[_Piece]] = []
    for piece in pieces:
        if runs:
            bi, tag = _tag(piece.label)
            if bi != "B" and tag == _tag(runs[-1][-1].label)[1]:
                runs[-1].append(piece)
                continue
        runs.append([piece])
    return [
        {
            # The group is named after its first piece with everything up to the first "-" cut off,
            # which is what the pipeline does (it differs from `_tag` only for labels like "X-Y").
            "entity_group": run[0].label.split("-", 1)[-1],
            "score": sum(p.score for p in run) / len(run),
            # Word-level pieces hold already-joined text, which the pipeline joins again as if it were
            # tokens. Harmless for WordPiece; a byte-level decoder turns non-ASCII letters of such text
            # into "\ufffd" ("cafés" -> "caf\ufffds"). Kept, since the goal is the pipeline's output.
            "word": tokenizer.tokens_to_string([p.word for p in run]),
            "start": run[0].start,
            "end": run[-1].end,
        }
        for run in runs
    ]


def entities(
    text: str,
    input_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    special_tokens_mask: Sequence[int],
    logits: torch.Tensor,
    id2label: Mapping[int, str] | Mapping[str, str],
    strategy: str,
    tokenizer: TokenizerFacts,
    ignore_labels: Sequence[str] = ("O",),
) -> list[dict[str, Any]]:
    """The entities in `text`, equal to transformers' token-classification pipeline.

    input_ids, offsets, special_tokens_mask: one text's row from a fast tokenizer called with
    `return_offsets_mapping=True, return_special_tokens_mask=True` (unpadded). logits: the model's
    [len(input_ids), num_labels] output for those rows. id2label: the model config's (str keys, as in
    a raw config.json, work too). tokenizer: `TokenizerFacts.of(the tokenizer)`. ignore_labels: labels
    ("none") or entity groups (other strategies) to leave out, like the pipeline's argument.

    Returns, for "none", one dict per kept token: {"entity", "score", "index", "word", "start", "end"};
    otherwise one dict per entity group: {"entity_group", "score", "word", "start", "end"}.
    Scores are Python floats, positions Python ints; `text[start:end]` is the entity's exact text.
    """
    if strategy not in AGGREGATION_STRATEGIES:
        raise ValueError(
            f"unknown aggregation strategy {strategy!r}; allowed: {', '.join(AGGREGATION_STRATEGIES)}"
        )
    if logits.shape[0] != len(input_ids):
        raise ValueError(
            f"logits have {logits.shape[0]} rows for {len(input_ids)} tokens (pass unpadded rows)"
        )
    # float32 like the pipeline (which upcasts half-precision logits), so the scores agree to ~1e-7.
    probs = torch.softmax(logits.detach().float().cpu(), dim=-1)
    id2label = {int(k): v for k, v in id2label.items()}
    tokens = _gather(text, input_ids, offsets, special_tokens_mask, tokenizer)
    ignored = set(ignore_labels)

    if strategy in ("none", "simple"):
        scores, labels = probs.max(dim=-1)  # the first maximal label on ties, as numpy's argmax
        pieces = [
            _Piece(id2label[int(labels[t.index])], float(scores[t.index]), t.word, t.start, t.end)
            for t in tokens
        ]
        if strategy == "none":
            return [
                {
                    "entity": p.label,
                    "score": p.score,
                    "index": t.index,
                    "word": p.word,
                    "start": p.start,
                    "end": p.end,
                }
                for t, p in zip(tokens, pieces, strict=True)
                if p.label not in ignored
            ]
    else:
        pieces = [_word_piece(word, probs, strategy, id2label, tokenizer) for word in _words(tokens)]
    return [group for group in _groups(pieces, tokenizer) if group["entity_group"] not in ignored]
