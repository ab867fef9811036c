"""question-answering (extractive): the span of the context that answers the question.

Request `{"question": "...", "context": "..."}` -> `{"answer", "start", "end", "score"}` with character
offsets into the context; a JSON list of such objects -> a list of answers in order. A context longer
than one window is split into windows overlapping by `doc_stride` tokens, and the best span over all of
them wins (qa_spans.py: the rules, written once and shared by the handler and the gate). Every window of
every request in the server-side batch runs through the model together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..encoder import Tokenized
from ..model_io import Outputs
from ..qa_spans import PairError, Window, best_span, build_windows
from ..requests import (
    BAD_SCHEMA,
    BAD_TEXT,
    BadRequest,
    Limits,
    ParsedRequest,
    check_count,
    check_text,
    over_budget,
)
from .base import RequestSchema, Task, TaskSettings, setting

_KEYS = ("question", "context")
EXAMPLE = '{"question": "Where does the cat sit?", "context": "The cat sat on the mat."}'


def _pair(value: Any, where: str) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise BadRequest(
            f"{where} must be an object like {EXAMPLE}, got {type(value).__name__}", reason=BAD_SCHEMA
        )
    missing = [key for key in _KEYS if key not in value]
    if missing:
        raise BadRequest(
            f"{where} lacks {' and '.join(map(repr, missing))}: send {EXAMPLE}", reason=BAD_SCHEMA
        )
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise BadRequest(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; allowed: question, context",
            reason=BAD_SCHEMA,
        )
    prefix = "" if where == "the JSON body" else f"{where}: "
    return check_text(value["question"], f'{prefix}"question"'), check_text(
        value["context"], f'{prefix}"context"'
    )


def parse_questions(value: Any, limits: Limits, allowed_options: dict[str, type]) -> ParsedRequest:
    """{"question": str, "context": str} -> one answer; a list of such objects -> a list of answers.
    There are no per-request options: a key beside question and context is refused by name."""
    if isinstance(value, list):
        check_count(len(value), "the list of questions", limits)
        return ParsedRequest([_pair(item, f"item [{i}]") for i, item in enumerate(value)], single=False)
    return ParsedRequest([_pair(value, "the JSON body")], single=True)


def _combine(bodies: list[Any]) -> Any | None:
    return list(bodies) if all(isinstance(b, dict) for b in bodies) else None


@dataclass(frozen=True)
class AnswerSettings(TaskSettings):
    max_answer_tokens: int = setting(30, int)  # the longest answer, in tokens
    doc_stride: int = setting(64, int)  # tokens shared by neighbouring windows of a long context
    max_windows_per_context: int = setting(16, int)  # a longer context is refused (413): model work


@dataclass
class Windows(Tokenized):
    """Tokenized pairs: every window of every pair, in order; `item_rows` maps each pair to its windows."""

    windows: list[Window] = field(default_factory=list)


class QuestionAnsweringTask(Task):
    name = "question-answering"
    auto_class = "AutoModelForQuestionAnswering"
    outputs: ClassVar[tuple[str, ...]] = ("start_logits", "end_logits")
    request = RequestSchema(parse_questions, EXAMPLE, _combine)
    Settings: ClassVar[type[TaskSettings]] = AnswerSettings
    item_name = "question/context pair"

    def truncated(self, tokenized: Tokenized, item: int) -> bool:
        """Never: a context longer than a window is read in overlapping windows, not cut."""
        return False

    def tokenize(self, items: list[tuple[str, str]]) -> Windows:
        try:
            per_pair = build_windows(
                self.encoder.tokenizer,
                [question for question, _ in items],
                [context for _, context in items],
                max_length=self.encoder.max_length,
                stride=self.settings.doc_stride,
                # Models whose tokenizer pads on the left read the context first (as transformers' pipeline did).
                question_first=getattr(self.encoder.tokenizer, "padding_side", "right") == "right",
            )
        except PairError as exc:
            raise BadRequest(exc.message, reason=BAD_TEXT) from None
        windows = [window for pair in per_pair for window in pair]
        encoding: dict[str, list[list[int]]] = {"input_ids": [list(w.input_ids) for w in windows]}
        if windows and windows[0].token_type_ids is not None:
            encoding["token_type_ids"] = [list(w.token_type_ids or ()) for w in windows]
        item_rows, row = [], 0
        for pair in per_pair:
            item_rows.append(list(range(row, row + len(pair))))
            row += len(pair)
        return Windows(encoding, self.encoder.inputs, item_rows, {}, windows)

    def check_tokens(self, tokenized: Tokenized, items: range) -> None:
        limit = self.settings.max_windows_per_context
        for item in items:
            count = len(tokenized.item_rows[item])
            if count > limit:
                raise over_budget(
                    f"a context needs {count} windows of {self.encoder.max_length} tokens",
                    limit,
                    "windows per context",
                    "question_answering.max_windows_per_context",
                    "send a shorter context",
                )
        super().check_tokens(tokenized, items)

    def reduce(self, outputs: Outputs, mask: torch.Tensor) -> torch.Tensor:
        """(rows, 2, length): start and end logits, padding zeroed (it is never read)."""
        return torch.stack([outputs["start_logits"], outputs["end_logits"]], dim=1).float() * mask[:, None, :]

    def run(self, items, tokenized, indices, options, prepared):
        assert isinstance(tokenized, Windows)
        rows = [row for item in indices for row in tokenized.item_rows[item]]
        logits = dict(zip(rows, self.encoder.run(tokenized.rows(rows), self.reduce), strict=True))
        answers = []
        for (_, context), item in zip(items, indices, strict=True):
            pair_rows = tokenized.item_rows[item]
            span = best_span(
                [tokenized.windows[r] for r in pair_rows],
                [logits[r][0] for r in pair_rows],
                [logits[r][1] for r in pair_rows],
                max_answer_tokens=self.settings.max_answer_tokens,
            )
            answers.append(
                {"answer": span.text(context), "start": span.start, "end": span.end, "score": span.score}
            )
        return answers
