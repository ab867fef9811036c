"""Labelled eval sets (`validate.eval_set`, JSONL): one format per kind of gold answer, and the reader
that turns a file into typed examples, every problem a SpecError naming `path:line`.

A task definition (torchship/tasks/) names the format its eval set uses, or none when the task has no
metrics; this module knows no task names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchship.errors import SpecError
from torchship.validate.scores import classification_metrics, entity_metrics

Fail = Callable[[str], SpecError]
_ENTITY_KEYS = {"label", "start", "end", "text"}  # "text" (the span's text) is optional and checked


@dataclass(frozen=True)
class EvalExample:
    text: str
    label: str | None = None  # text-classification
    entities: tuple[tuple[str, int, int], ...] | None = (
        None  # token-classification: (label, start, end) char spans
    )


@dataclass(frozen=True)
class EvalSetFormat:
    """One eval-set line format and how its examples are scored."""

    example_line: str  # shown in every error message
    keys: frozenset[str]  # the keys a line may have
    parse: Callable[[dict[str, Any], str, Fail], EvalExample]  # (line object, its text, fail) -> example
    gold: Callable[[EvalExample], Any]  # the gold answer, in the form the metric function compares
    no_answer: Any  # the prediction counted for a text the handler refused
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
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise fail(f'"text" must be a non-empty string{_got(item, "text")}')
        examples.append(eval_format.parse(item, text, fail))
    if not examples:
        raise SpecError(f"{path}: the eval set has no examples (the file is empty)", hint=hint)
    return examples


def _parse_label(item: dict[str, Any], text: str, fail: Fail) -> EvalExample:
    label = item.get("label")
    if not isinstance(label, str) or not label.strip():
        raise fail(f'"label" must be a non-empty string{_got(item, "label")}')
    return EvalExample(text=text, label=label)


def _parse_entities(item: dict[str, Any], text: str, fail: Fail) -> EvalExample:
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
    return EvalExample(text=text, entities=tuple(entities))


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


# A text with one gold label: accuracy and per-label precision / recall / f1.
LABELLED_TEXTS = EvalSetFormat(
    example_line='{"text": "I loved it.", "label": "positive"}',
    keys=frozenset({"text", "label"}),
    parse=_parse_label,
    gold=lambda example: example.label,
    no_answer="",
    score=classification_metrics,
)

# A text with its gold entity spans: strict entity-level precision / recall / f1.
ENTITY_SPANS = EvalSetFormat(
    example_line='{"text": "Anna lives in Oslo.", "entities": '
    '[{"label": "PER", "start": 0, "end": 4}, {"label": "LOC", "start": 14, "end": 18}]}',
    keys=frozenset({"text", "entities"}),
    parse=_parse_entities,
    gold=lambda example: example.entities,
    no_answer=[],
    score=entity_metrics,
)
