"""Labelled eval sets (`validate.eval_set`, JSONL): one format per kind of gold answer, and the reader
that turns a file into typed examples, every problem a SpecError naming `path:line`.

A task definition (torchship/tasks/) names the format its eval set uses, or none when the task has no
metrics; this module knows no task names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchship.errors import SpecError
from torchship.validate.scores import answer_metrics, classification_metrics, entity_metrics, ranking_metrics

Fail = Callable[[str], SpecError]
_ENTITY_KEYS = {"label", "start", "end", "text"}  # "text" (the span's text) is optional and checked


@dataclass(frozen=True)
class EvalExample:
    """One labelled example: the request the model is sent and the answer it should give."""

    request: dict[str, Any]  # the JSON body of one request, e.g. {"text": "..."} for the text tasks
    gold: Any  # the gold answer, in the form the format's `score` compares


@dataclass(frozen=True)
class EvalSetFormat:
    """One eval-set line format and how its examples are scored.

    `score(gold, predicted)` takes the examples' `gold` values and one prediction per example in the form
    the format's comment below names (what the task definition's `prediction(answer)` returns);
    `no_answer` is the prediction counted for a request the handler refused.
    """

    example_line: str  # shown in every error message
    keys: frozenset[str]  # the keys a line may have
    parse: Callable[[dict[str, Any], Fail], EvalExample]  # (line object, fail) -> example; checks its keys
    no_answer: Any
    score: Callable[[Sequence[Any], Sequence[Any]], dict[str, Any]]  # (gold, predicted) -> metric values


def read_eval_set(path: Path, eval_format: EvalSetFormat) -> list[EvalExample]:
    """The examples of a JSONL eval set in `eval_format`."""
    path = Path(path)
    line_format = eval_format.example_line
    hint = f"Write one JSON object per line, e.g. {line_format}"
    if not path.is_file():
        raise SpecError(f"{path}: the eval set file does not exist", hint=hint)
    try:
        # Split on "\n" only: str.splitlines() would also split at U+2028 or U+0085 inside JSON strings.
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: the eval set is not UTF-8 text", hint=hint) from None

    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"

        def fail(problem: str, where: str = where) -> SpecError:
            return SpecError(f"{where}: {problem}; each line must look like {line_format}", hint=hint)

        try:
            item = json.loads(line)
        except ValueError as exc:
            raise fail(f"not valid JSON ({exc})") from None
        if not isinstance(item, dict):
            raise fail(f"expected a JSON object, got {_kind(item)}")
        unknown = sorted(set(item) - eval_format.keys)
        if unknown:
            raise fail(f"unknown key(s) {', '.join(map(repr, unknown))}")
        examples.append(eval_format.parse(item, fail))
    if not examples:
        raise SpecError(f"{path}: the eval set has no examples (the file is empty)", hint=hint)
    return examples


def _string(item: dict[str, Any], key: str, fail: Fail) -> str:
    """item[key], which must be a string with more than whitespace."""
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise fail(f'"{key}" must be a non-empty string{_got(item, key)}')
    return value


def _string_list(item: dict[str, Any], key: str, what: str, fail: Fail) -> list[str]:
    """item[key], which must be a non-empty list of non-empty strings."""
    value = item.get(key)
    if not isinstance(value, list) or not value:
        raise fail(f'"{key}" must be a non-empty list of {what}{_got(item, key)}')
    for i, entry in enumerate(value):
        if not isinstance(entry, str) or not entry.strip():
            raise fail(f'"{key}"[{i}] must be a non-empty string (got {json.dumps(entry)})')
    return value


def _parse_label(item: dict[str, Any], fail: Fail) -> EvalExample:
    text = _string(item, "text", fail)
    return EvalExample(request={"text": text}, gold=_string(item, "label", fail))


def _parse_entities(item: dict[str, Any], fail: Fail) -> EvalExample:
    text = _string(item, "text", fail)
    raw = item.get("entities")
    if not isinstance(raw, list):
        raise fail(
            f'"entities" must be a list (possibly empty) of {{"label", "start", "end"}} objects{_got(item, "entities")}'
        )
    entities = []
    for i, entity in enumerate(raw):
        at = f'"entities"[{i}]'
        if not isinstance(entity, dict):
            raise fail(f"{at} must be an object with label, start and end, got {_kind(entity)}")
        unknown = sorted(set(entity) - _ENTITY_KEYS)
        if unknown:
            raise fail(f"{at} has unknown key(s) {', '.join(map(repr, unknown))}")
        label = entity.get("label")
        if not isinstance(label, str) or not label.strip():
            raise fail(f'{at}: "label" must be a non-empty string{_got(entity, "label")}')
        start, end = _offset(entity, "start", at, fail), _offset(entity, "end", at, fail)
        if not 0 <= start < end <= len(text):
            raise fail(
                f"{at}: needs 0 <= start < end <= {len(text)} (the text's length), got start {start}, end {end}"
            )
        if "text" in entity and entity["text"] != text[start:end]:
            raise fail(f'{at}: "text" is {entity["text"]!r} but text[{start}:{end}] is {text[start:end]!r}')
        entities.append((label, start, end))
    return EvalExample(request={"text": text}, gold=tuple(entities))


def _parse_ranked(item: dict[str, Any], fail: Fail) -> EvalExample:
    query = _string(item, "query", fail)
    texts = _string_list(item, "texts", "candidate texts", fail)
    relevance = item.get("relevance")
    if not isinstance(relevance, list):
        raise fail(f'"relevance" must be a list of numbers >= 0, one per text{_got(item, "relevance")}')
    if len(relevance) != len(texts):
        raise fail(
            f'"relevance" has {len(relevance)} values but "texts" has {len(texts)}; give one relevance per text'
        )
    for i, value in enumerate(relevance):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise fail(f'"relevance"[{i}] must be a number >= 0 (0: not relevant), got {json.dumps(value)}')
    return EvalExample(request={"query": query, "texts": texts}, gold=tuple(float(v) for v in relevance))


def _parse_answered(item: dict[str, Any], fail: Fail) -> EvalExample:
    question = _string(item, "question", fail)
    context = _string(item, "context", fail)
    answers = _string_list(item, "answers", "answer strings, each a part of the context", fail)
    for i, answer in enumerate(answers):
        if answer not in context:
            raise fail(f'"answers"[{i}] {answer!r} does not occur in the context; an answer is a part of it')
    return EvalExample(request={"question": question, "context": context}, gold=tuple(answers))


def _offset(entity: dict[str, Any], key: str, at: str, fail: Fail) -> int:
    value = entity.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(f'{at}: "{key}" must be an integer character offset{_got(entity, key)}')
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _got(item: dict, key: str) -> str:
    return " (missing)" if key not in item else f" (got {json.dumps(item[key])})"


# A text with one gold label: accuracy and per-label precision / recall / f1. Prediction: the label.
LABELLED_TEXTS = EvalSetFormat(
    example_line='{"text": "I loved it.", "label": "positive"}',
    keys=frozenset({"text", "label"}),
    parse=_parse_label,
    no_answer="",
    score=classification_metrics,
)

# A text with its gold entity spans: strict entity-level precision / recall / f1. Prediction: the
# (label, start, end) tuples of the predicted entities.
ENTITY_SPANS = EvalSetFormat(
    example_line='{"text": "Anna lives in Oslo.", "entities": '
    '[{"label": "PER", "start": 0, "end": 4}, {"label": "LOC", "start": 14, "end": 18}]}',
    keys=frozenset({"text", "entities"}),
    parse=_parse_entities,
    no_answer=(),
    score=entity_metrics,
)

# A query, its candidate texts and each text's graded relevance (0: not relevant): NDCG@10 and MRR.
# Prediction: the indices of the texts, best first.
RANKED_TEXTS = EvalSetFormat(
    example_line='{"query": "capital of France?", "texts": ["Paris is the capital.", "Lyon is a city."], '
    '"relevance": [1, 0]}',
    keys=frozenset({"query", "texts", "relevance"}),
    parse=_parse_ranked,
    no_answer=(),
    score=ranking_metrics,
)

# A question, its context and the accepted answers (each a part of the context): SQuAD's exact match and
# token F1 against the best of them. Prediction: the answer string.
ANSWERED_QUESTIONS = EvalSetFormat(
    example_line='{"question": "Where does Anna live?", "context": "Anna lives in Oslo.", "answers": ["Oslo"]}',
    keys=frozenset({"question", "context", "answers"}),
    parse=_parse_answered,
    no_answer="",
    score=answer_metrics,
)
