"""Task metrics on a labelled evaluation set (`validate.eval_set`) and their thresholds (`validate.thresholds`).

Standard library only. Two tasks have metrics:

* text-classification: accuracy, and precision / recall / f1 per label (one-vs-rest, 0.0 where undefined,
  like scikit-learn's ``zero_division=0``); "overall" is the *macro* average over the labels that occur in
  the gold labels or the predictions (scikit-learn's ``average="macro"``).
* token-classification: strict entity-level precision / recall / f1: a predicted entity counts only if its
  label, start and end all equal those of a gold entity of the same example. "overall" is the *micro*
  average over all entities, the usual seqeval-style entity F1. seqeval itself could not be installed here,
  and it works on tag sequences rather than character spans, so this is an exact-span re-implementation of
  its default (non-strict-scheme) counting: like seqeval, the entities of one example are a set, so a
  duplicated span counts once.

Both metric functions return the same shape::

    {"accuracy": float,                      # text-classification only
     "precision": {"overall": float, LABEL: float, ...},
     "recall": {...}, "f1": {...},
     "support": {LABEL: int, ...}}          # gold count per label (distinct entities for token-classification)

A label literally named "overall" is shadowed by the average (its support is still reported).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchship.errors import SpecError

TASKS = ("text-classification", "token-classification")
PER_LABEL_METRICS = ("precision", "recall", "f1")

_LINE_FORMAT = {
    "text-classification": '{"text": "I loved it.", "label": "positive"}',
    "token-classification": '{"text": "Anna lives in Oslo.", "entities": '
    '[{"label": "PER", "start": 0, "end": 4}, {"label": "LOC", "start": 14, "end": 18}]}',
}
_TOP_KEYS = {"text-classification": {"text", "label"}, "token-classification": {"text", "entities"}}
_ENTITY_KEYS = {"label", "start", "end", "text"}  # "text" (the span's text) is optional and checked


@dataclass(frozen=True)
class EvalExample:
    text: str
    label: str = ""  # text-classification (load_eval_set requires a non-empty one)
    entities: tuple[tuple[str, int, int], ...] = ()  # token-classification: (label, start, end) char spans


# --- eval set ---------------------------------------------------------------------------------------------


def load_eval_set(path: Path, task: str) -> list[EvalExample]:
    """Read a JSONL eval set for `task`; every problem is a SpecError naming `path:line`."""
    path = Path(path)
    if task not in TASKS:
        raise SpecError(
            f"{path}: metrics on an eval set are available for text-classification and token-classification, "
            f"not {task}",
            hint="Remove 'validate.eval_set' and 'validate.thresholds' from the spec for this task.",
        )
    line_format = _LINE_FORMAT[task]
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
        unknown = sorted(set(item) - _TOP_KEYS[task])
        if unknown:
            raise fail(f"unknown key(s) {', '.join(map(repr, unknown))}")
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise fail(f'"text" must be a non-empty string{_got(item, "text")}')
        if task == "text-classification":
            label = item.get("label")
            if not isinstance(label, str) or not label.strip():
                raise fail(f'"label" must be a non-empty string{_got(item, "label")}')
            examples.append(EvalExample(text=text, label=label))
        else:
            examples.append(EvalExample(text=text, entities=_parse_entities(item, text, fail)))
    if not examples:
        raise SpecError(f"{path}: the eval set has no examples (the file is empty)", hint=hint)
    return examples


def _parse_entities(item: dict, text: str, fail: Any) -> tuple[tuple[str, int, int], ...]:
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
    return tuple(entities)


def _offset(entity: dict, key: str, at: str, fail: Any) -> int:
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


# --- metrics -------------------------------------------------------------------------------------------------


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _check_lengths(gold: Sequence[Any], predicted: Sequence[Any]) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold items but {len(predicted)} predictions")


def classification_metrics(gold: Sequence[str], predicted: Sequence[str]) -> dict:
    """Accuracy, per-label one-vs-rest precision/recall/f1 and their macro average ("overall")."""
    _check_lengths(gold, predicted)
    labels = sorted(set(gold) | set(predicted))
    gold_count, pred_count = Counter(gold), Counter(predicted)
    tp = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    result: dict[str, Any] = {
        "accuracy": sum(tp.values()) / len(gold) if gold else 0.0,
        "precision": {},
        "recall": {},
        "f1": {},
        "support": {label: gold_count[label] for label in labels},
    }
    for label in labels:
        scores = _prf(tp[label], pred_count[label], gold_count[label])
        for name, score in zip(PER_LABEL_METRICS, scores, strict=True):
            result[name][label] = score
    for name in PER_LABEL_METRICS:
        per_label = result[name]
        average = math.fsum(per_label.values()) / len(labels) if labels else 0.0
        result[name] = {"overall": average, **per_label}
        result[name]["overall"] = average  # the average wins over a label named "overall"
    return result


def entity_metrics(
    gold: Sequence[Iterable[tuple[str, int, int]]],
    predicted: Sequence[Iterable[tuple[str, int, int]]],
) -> dict:
    """Strict (label, start, end) entity matching per example; per-label scores and their micro average."""
    _check_lengths(gold, predicted)
    gold_count: Counter[str] = Counter()
    pred_count: Counter[str] = Counter()
    tp: Counter[str] = Counter()
    for gold_entities, predicted_entities in zip(gold, predicted, strict=True):
        # unpacked rather than tuple(e) so the set keeps (str, int, int) items, whatever sequence each entity is
        gold_set = {(label, start, end) for label, start, end in gold_entities}
        pred_set = {(label, start, end) for label, start, end in predicted_entities}
        gold_count.update(e[0] for e in gold_set)
        pred_count.update(e[0] for e in pred_set)
        tp.update(e[0] for e in gold_set & pred_set)
    labels = sorted(set(gold_count) | set(pred_count))
    result: dict[str, Any] = {"support": {label: gold_count[label] for label in labels}}
    overall = _prf(sum(tp.values()), sum(pred_count.values()), sum(gold_count.values()))
    for name, score in zip(PER_LABEL_METRICS, overall, strict=True):
        result[name] = {"overall": score}
    for label in labels:
        scores = _prf(tp[label], pred_count[label], gold_count[label])
        for name, score in zip(PER_LABEL_METRICS, scores, strict=True):
            result[name][label] = score
    for name, score in zip(PER_LABEL_METRICS, overall, strict=True):
        result[name]["overall"] = score  # the average wins over a label named "overall"
    return {name: result[name] for name in (*PER_LABEL_METRICS, "support")}


# --- thresholds ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdResult:
    metric: str
    label: str | None  # None: the overall value (or accuracy)
    threshold: float
    value: float
    ok: bool  # value >= threshold (always False for a label absent from the eval set)
    missing: bool = False  # the label has no gold example in the eval set

    @property
    def name(self) -> str:
        return self.metric if self.label is None else f"{self.metric}[{self.label}]"

    @property
    def shortfall(self) -> float:
        return max(0.0, self.threshold - self.value)

    def describe(self) -> str:
        """One line, e.g. "metric f1[PER] = 0.62 is below its threshold 0.80 (by 0.18)"."""
        head = f"metric {self.name} = {self.value:.2f}"
        if self.missing:
            return f"{head} is below its threshold {self.threshold:.2f}: label {self.label!r} does not occur in the eval set"
        if self.ok:
            return f"{head} meets its threshold {self.threshold:.2f}"
        return f"{head} is below its threshold {self.threshold:.2f} (by {self.shortfall:.2f})"


def check_thresholds(
    values: dict, thresholds: dict[str, float | dict[str, float]], *, where: str = "validate.thresholds"
) -> list[ThresholdResult]:
    """Compare metric `values` (from classification_metrics / entity_metrics) with the spec's thresholds.

    ``{metric: float}`` checks the overall value; ``{metric: {LABEL: float}}`` checks each label. `where` names
    the spec key (and, if the caller likes, the spec file) in error messages.
    """
    allowed = [m for m in ("accuracy", *PER_LABEL_METRICS) if m in values]
    example = "{f1: 0.8}" if "accuracy" not in values else "{accuracy: 0.9, f1: {positive: 0.8}}"
    if not isinstance(thresholds, dict):
        raise SpecError(f"{where}: must be a mapping of metric to threshold, e.g. {example}")
    results = []
    for metric, spec in thresholds.items():
        key = f"{where}.{metric}"
        if metric not in allowed:
            raise SpecError(
                f"{key}: unknown metric {metric!r}; the metrics for this task are {', '.join(allowed)}",
                hint=f"Use one of {', '.join(allowed)}, e.g. {example}",
            )
        if isinstance(spec, dict):
            if metric == "accuracy":
                raise SpecError(
                    f"{key}: accuracy has no per-label values; give a single number, e.g. accuracy: 0.9"
                )
            for label, threshold in spec.items():
                _check_threshold(f"{key}.{label}", threshold)
                value = values[metric].get(label, 0.0)
                missing = values["support"].get(label, 0) == 0
                ok = not missing and value >= threshold
                results.append(
                    ThresholdResult(metric, str(label), float(threshold), float(value), ok, missing)
                )
        else:
            _check_threshold(key, spec)
            value = values[metric] if metric == "accuracy" else values[metric]["overall"]
            results.append(ThresholdResult(metric, None, float(spec), float(value), value >= spec))
    return results


def _check_threshold(key: str, threshold: Any) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise SpecError(
            f"{key}: a threshold must be a number between 0 and 1 or a mapping of label to such numbers "
            f"(got {threshold!r})"
        )


def worst(results: Iterable[ThresholdResult]) -> ThresholdResult | None:
    """The failing result with the largest shortfall (a missing label counts as failing), or None."""
    failing = [r for r in results if not r.ok]
    return max(failing, key=lambda r: r.shortfall) if failing else None
