"""Extractive question answering's reference: (question, context) pairs -> token windows, and a window's
start/end logits -> the best answer span in characters of the context.

transformers 5 removed its question-answering pipeline, so this is the one implementation the served
handler, the gate's parity and served parity all use. Its rules are the pipeline's:

* a span starts at token i and ends at token j of the *context* (question and special tokens are never
  part of an answer, whatever their logits), with j >= i and at most `max_answer_tokens` tokens;
* its score is softmax(start logits over the window's context tokens)[i] * softmax(end logits over the
  window's context tokens)[j];
* a context longer than one window is split into overlapping windows (`stride` tokens shared by
  neighbours); every window is searched and the best-scoring span over all of them wins (the first window
  on a tie).

Like the rest of handlers/, this module needs torch and the standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

QUESTION_FIRST_CONTEXT = 1  # sequence id of the context when the question comes first (the usual layout)
CONTEXT_FIRST_CONTEXT = 0  # ... when the model puts the context first (tokenizers padding on the left)


@dataclass(frozen=True)
class Span:
    """An answer: characters [start, end) of the context, its score and the window it was found in."""

    start: int
    end: int
    score: float
    window: int

    def text(self, context: str) -> str:
        return context[self.start : self.end]


@dataclass(frozen=True)
class Window:
    """One tokenized question + context window, as the model reads it."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None  # None: the tokenizer produces no token types
    offsets: tuple[tuple[int, int], ...]  # (start, end) characters per token; into the context for its tokens
    sequence_ids: tuple[int | None, ...]  # None for special tokens, else which sequence (question/context)
    context_index: int  # the sequence id of the context's tokens

    def row(self) -> dict[str, list[int]]:
        """The model inputs of this window (handlers/model_io.py's Row; padding adds the attention mask)."""
        row = {"input_ids": list(self.input_ids)}
        if self.token_type_ids is not None:
            row["token_type_ids"] = list(self.token_type_ids)
        return row

    @property
    def context_tokens(self) -> int:
        return sum(1 for s in self.sequence_ids if s == self.context_index)


class PairError(ValueError):
    """A (question, context) pair that cannot be answered as sent: the client's mistake (a 4xx)."""

    def __init__(self, message: str, pair: int):
        super().__init__(message)
        self.message = message
        self.pair = pair  # index of the pair in the call


class QuestionTooLong(PairError):
    """The question leaves too little of a window for the context."""


class EmptyContext(PairError):
    """The context has no token (empty or only whitespace)."""


# --- the span search ------------------------------------------------------------------------------------------


def best_span_in_window(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    sequence_ids: Sequence[int | None],
    offsets: Sequence[tuple[int, int]],
    *,
    max_answer_tokens: int,
    context_index: int = QUESTION_FIRST_CONTEXT,
    window: int = 0,
) -> Span | None:
    """The best span of one window (None when the window has no context token).

    `start_logits` / `end_logits` are 1-D over the window's tokens and may be longer (a padded batch row):
    only the first len(sequence_ids) positions are read. `offsets[k]` are the characters of token k.
    """
    _check_max_answer_tokens(max_answer_tokens)
    length = len(sequence_ids)
    for name, logits in (("start_logits", start_logits), ("end_logits", end_logits)):
        if logits.dim() != 1 or logits.shape[0] < length:
            raise ValueError(
                f"{name} must be 1-D with at least {length} values, got shape {tuple(logits.shape)}"
            )
    if len(offsets) != length:
        raise ValueError(f"{len(offsets)} offsets for {length} tokens")
    context = [k for k, sequence in enumerate(sequence_ids) if sequence == context_index]
    if not context:
        return None
    positions = torch.tensor(context, dtype=torch.long, device=start_logits.device)
    # float64: the product of two softmaxes over hundreds of tokens is small, and served and gate answers
    # must pick the same span even where two candidates are close.
    start_p = torch.softmax(start_logits[positions].double(), dim=0)
    end_p = torch.softmax(end_logits[positions].double(), dim=0)
    scores = torch.outer(start_p, end_p)  # [i, j]: answer from the i-th to the j-th context token
    # The band j - i in [0, max_answer_tokens - 1]: an end never before its start, the length bounded. A
    # window's context tokens are contiguous, so the band in context-token indices is the band in tokens.
    allowed = torch.ones_like(scores, dtype=torch.bool).triu().tril(max_answer_tokens - 1)
    scores = scores.masked_fill(~allowed, -1.0)
    best = int(torch.argmax(scores))  # the first maximum: the earliest start, then the shortest span
    i, j = divmod(best, scores.shape[1])
    return Span(
        start=int(offsets[context[i]][0]),
        end=int(offsets[context[j]][1]),
        score=float(scores[i, j]),
        window=window,
    )


def best_span(
    windows: Sequence[Window],
    start_logits: Sequence[torch.Tensor],
    end_logits: Sequence[torch.Tensor],
    *,
    max_answer_tokens: int,
) -> Span:
    """The best span over all windows of one pair (`start_logits[w]` / `end_logits[w]` for `windows[w]`)."""
    if not len(windows) == len(start_logits) == len(end_logits):
        raise ValueError(
            f"{len(windows)} windows but {len(start_logits)} start and {len(end_logits)} end logit rows"
        )
    found: Span | None = None
    for index, (window, start, end) in enumerate(zip(windows, start_logits, end_logits, strict=True)):
        span = best_span_in_window(
            start,
            end,
            window.sequence_ids,
            window.offsets,
            max_answer_tokens=max_answer_tokens,
            context_index=window.context_index,
            window=index,
        )
        if span is not None and (found is None or span.score > found.score):
            found = span
    if found is None:
        raise ValueError("no window has a context token (build_windows refuses such pairs)")
    return found


def _check_max_answer_tokens(max_answer_tokens: int) -> None:
    if isinstance(max_answer_tokens, bool) or not isinstance(max_answer_tokens, int) or max_answer_tokens < 1:
        raise ValueError(f"max_answer_tokens must be a positive integer, got {max_answer_tokens!r}")


# --- windows ------------------------------------------------------------------------------------------------


def build_windows(
    tokenizer: Any,
    questions: Sequence[str],
    contexts: Sequence[str],
    *,
    max_length: int,
    stride: int,
    question_first: bool = True,
) -> list[list[Window]]:
    """Each (question, context) pair as its windows, in order (a Hugging Face fast tokenizer).

    A context that does not fit beside its question in `max_length` tokens is split into windows that
    share `stride` tokens with their neighbour; the question is never cut. `question_first=False` is for
    models that read the context first (tokenizers with padding_side="left": the context is then sequence
    0 and truncated with "only_first"). A question that leaves no room for its context raises
    QuestionTooLong, a context without a token EmptyContext; both name the pair.
    """
    if len(questions) != len(contexts):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("question answering needs a fast tokenizer: it maps tokens back to characters")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
        raise ValueError(f"stride must be a non-negative integer, got {stride!r}")
    if not questions:
        return []
    _check_room(tokenizer, questions, contexts, max_length=max_length, stride=stride)
    first, second = (questions, contexts) if question_first else (contexts, questions)
    encoded = tokenizer(
        list(first),
        list(second),
        truncation="only_second" if question_first else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    context_index = QUESTION_FIRST_CONTEXT if question_first else CONTEXT_FIRST_CONTEXT
    token_types = encoded.get("token_type_ids")
    windows: list[list[Window]] = [[] for _ in questions]
    for row, pair in enumerate(encoded["overflow_to_sample_mapping"]):
        window = Window(
            input_ids=tuple(encoded["input_ids"][row]),
            token_type_ids=tuple(token_types[row]) if token_types is not None else None,
            offsets=tuple((int(start), int(end)) for start, end in encoded["offset_mapping"][row]),
            sequence_ids=tuple(encoded.sequence_ids(row)),
            context_index=context_index,
        )
        windows[pair].append(window)
    for pair, pair_windows in enumerate(windows):
        if not any(w.context_tokens for w in pair_windows):
            raise EmptyContext(f"the context has no words to answer from (got {contexts[pair]!r})", pair)
    return windows


def _check_room(
    tokenizer: Any, questions: Sequence[str], contexts: Sequence[str], *, max_length: int, stride: int
) -> None:
    """Refuse a question that leaves a window no context token, or, where the context must be split,
    no more context tokens than the stride (the tokenizer would panic: each window must advance)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    if max_length - specials - stride < 1:
        raise ValueError(
            f"max_length {max_length} leaves no context token beside {specials} special tokens and a "
            f"stride of {stride}: raise max_length or lower the stride"
        )
    # A fast tokenizer encodes the two sequences of a pair separately, so a question alone has the
    # length it has inside the pair.
    question_lengths = [len(ids) for ids in tokenizer(list(questions), add_special_tokens=False)["input_ids"]]
    longest = max_length - specials - stride - 1  # a question this long always leaves room
    advice = f"shorten the question to at most {longest} tokens"
    for pair, question_length in enumerate(question_lengths):
        room = max_length - specials - question_length
        if room < 1:
            raise QuestionTooLong(
                f"the question is {question_length} tokens long, which leaves no room for the context in "
                f"a window of {max_length} tokens ({specials} of them special); {advice}",
                pair,
            )
        if room <= stride:
            (context_ids,) = tokenizer([contexts[pair]], add_special_tokens=False)["input_ids"]
            if len(context_ids) > room:
                raise QuestionTooLong(
                    f"the question is {question_length} tokens long, which leaves {room} context tokens "
                    f"per window of {max_length} tokens: too few to split the {len(context_ids)}-token "
                    f"context into windows overlapping by {stride} tokens; {advice}",
                    pair,
                )
