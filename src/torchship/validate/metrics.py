"""Task metrics on a labelled evaluation set (`validate.eval_set`) and their thresholds (`validate.thresholds`).

The tasks whose definition (torchship/tasks/) names an eval-set format (eval_set.py) have metrics; the
metric functions themselves (scores.py) use the standard library only. By eval-set format:

* labelled texts (text-classification): accuracy, and precision / recall / f1 per label (one-vs-rest, 0.0 where undefined,
  like scikit-learn's ``zero_division=0``); "overall" is the *macro* average over the labels that occur in
  the gold labels or the predictions (scikit-learn's ``average="macro"``).
* entity spans (token-classification): strict entity-level precision / recall / f1: a predicted entity counts only if its
  label, start and end all equal those of a gold entity of the same example. "overall" is the *micro*
  average over all entities, the usual seqeval-style entity F1. seqeval itself could not be installed here,
  and it works on tag sequences rather than character spans, so this is an exact-span re-implementation of
  its default (non-strict-scheme) counting: like seqeval, the entities of one example are a set, so a
  duplicated span counts once.

* ranked texts (reranking): NDCG@10 with exponential gain and MRR over the queries (ranking_metrics).
* answered questions (extractive question answering): SQuAD's exact match and token F1 (answer_metrics).

The two per-label metric functions return the same shape::

    {"accuracy": float,                      # text-classification only
     "precision": {"overall": float, LABEL: float, ...},
     "recall": {...}, "f1": {...},
     "support": {LABEL: int, ...}}          # gold count per label (distinct entities for token-classification)

A label literally named "overall" is shadowed by the average (its support is still reported). The others
return numbers and a count: {"ndcg@10": float, "mrr": float, "queries": int} and
{"exact_match": float, "f1": float, "examples": int}. A threshold names a metric of these values; a number
takes one threshold, a per-label mapping one overall or one per label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchship.errors import SpecError
from torchship.tasks import TASKS, task_definition
from torchship.validate.eval_set import EvalExample, read_eval_set
from torchship.validate.scores import (
    COUNTS,
    answer_metrics,
    classification_metrics,
    entity_metrics,
    ranking_metrics,
)

__all__ = [
    "EvalExample",
    "ThresholdResult",
    "answer_metrics",
    "check_thresholds",
    "classification_metrics",
    "entity_metrics",
    "load_eval_set",
    "ranking_metrics",
    "tasks_with_metrics",
    "worst",
]


def tasks_with_metrics() -> list[str]:
    return [name for name, definition in TASKS.items() if definition.eval_set is not None]


def load_eval_set(path: Path, task: str) -> list[EvalExample]:
    """Read a JSONL eval set for `task`; every problem is a SpecError naming `path:line`."""
    eval_format = task_definition(task).eval_set if task in TASKS else None
    if eval_format is None:
        raise SpecError(
            f"{path}: metrics on an eval set are available for {', '.join(tasks_with_metrics())}, not {task}",
            hint="Remove 'validate.eval_set' and 'validate.thresholds' from the spec for this task.",
        )
    return read_eval_set(path, eval_format)


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
    """Compare metric `values` (from a scores.py metric function) with the spec's thresholds.

    A metric whose value is a number (accuracy, ndcg@10, mrr, exact_match, f1 of answers) takes one
    threshold. A per-label metric (a mapping with "overall") takes ``{metric: float}`` for its overall value
    or ``{metric: {LABEL: float}}`` per label. The metrics a spec may name are those in `values`, less the
    counts (scores.COUNTS). `where` names the spec key (and, if the caller likes, the spec file) in errors.
    """
    allowed = [m for m in values if m not in COUNTS]
    example = _example(values, allowed)
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
        per_label = isinstance(values[metric], dict)
        if isinstance(spec, dict):
            if not per_label:
                raise SpecError(
                    f"{key}: {metric} has no per-label values; give a single number, e.g. {metric}: 0.9"
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
            value = values[metric]["overall"] if per_label else values[metric]
            results.append(ThresholdResult(metric, None, float(spec), float(value), value >= spec))
    return results


def _example(values: dict, allowed: list[str]) -> str:
    """A thresholds mapping for these metrics, for error messages."""
    if "accuracy" in values:
        return "{accuracy: 0.9, f1: {positive: 0.8}}"
    if any(isinstance(values[m], dict) for m in allowed):
        return "{f1: 0.8}"
    return "{" + ", ".join(f"{m}: 0.8" for m in allowed) + "}"


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
