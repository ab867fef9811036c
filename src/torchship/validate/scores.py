"""Task metric values from gold and predicted answers (standard library only; see metrics.py for what
each value means and which reference implementation it follows)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

PER_LABEL_METRICS = ("precision", "recall", "f1")


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
