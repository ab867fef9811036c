"""Task metric values from gold and predicted answers (standard library only; see metrics.py for what
each value means and which reference implementation it follows)."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

PER_LABEL_METRICS = ("precision", "recall", "f1")
# Keys of the metric values that count things rather than score them: never a threshold's metric.
COUNTS = frozenset({"support", "queries", "examples"})


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


def ranking_metrics(
    gold_relevance: Sequence[Sequence[float]], predicted_orders: Sequence[Sequence[int]], k: int = 10
) -> dict[str, Any]:
    """NDCG@k and MRR of predicted rankings, averaged over the queries.

    `gold_relevance[q][i]` is the graded relevance (>= 0) of text i of query q; `predicted_orders[q]` the
    indices of its texts best first (possibly fewer than all: a text left out is simply not ranked).

    * NDCG@k: DCG@k / IDCG@k with DCG@k = sum over the first k ranks r = 0, 1, ... of
      (2^rel - 1) / log2(r + 2) (the exponential gain of Burges et al. and of most rerank leaderboards) and
      IDCG@k the DCG@k of the texts sorted by gold relevance. A query with no relevant text (all 0) has no
      ideal ranking to approach; it counts 0, so such queries lower the mean rather than vanish from it.
    * MRR: 1 / rank of the first text with relevance > 0 anywhere in the predicted order (not only the
      first k), 0 when the order holds none.
    """
    _check_lengths(gold_relevance, predicted_orders)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    ndcg, reciprocal_ranks = [], []
    for query, (relevance, order) in enumerate(zip(gold_relevance, predicted_orders, strict=True)):
        order = list(order)
        bad = [i for i in order if not 0 <= i < len(relevance)]
        if bad:
            raise ValueError(
                f"query {query}: predicted index {bad[0]} is not one of its {len(relevance)} texts"
            )
        if len(set(order)) != len(order):
            raise ValueError(f"query {query}: the predicted order ranks a text twice ({order})")
        ideal = _dcg(sorted(relevance, reverse=True), k)
        ndcg.append(_dcg([relevance[i] for i in order], k) / ideal if ideal else 0.0)
        first = next((rank for rank, i in enumerate(order, start=1) if relevance[i] > 0), None)
        reciprocal_ranks.append(1 / first if first else 0.0)
    queries = len(gold_relevance)
    return {
        f"ndcg@{k}": math.fsum(ndcg) / queries if queries else 0.0,
        "mrr": math.fsum(reciprocal_ranks) / queries if queries else 0.0,
        "queries": queries,
    }


def _dcg(relevance_in_rank_order: Sequence[float], k: int) -> float:
    return math.fsum(
        (2**rel - 1) / math.log2(rank + 2) for rank, rel in enumerate(relevance_in_rank_order[:k])
    )


def answer_metrics(gold_answers: Sequence[Sequence[str]], predicted: Sequence[str]) -> dict[str, Any]:
    """Exact match and token F1 of predicted answers, SQuAD's way, as fractions (0..1) averaged over examples.

    Answers are compared after SQuAD's normalization (lower case, punctuation removed, the articles a/an/the
    removed, whitespace collapsed); each prediction scores its best over the example's gold answers. Token
    F1 is the F1 of the bag-of-tokens overlap; where the gold or the predicted answer normalizes to nothing,
    F1 is 1 if both do and 0 otherwise (SQuAD 2.0's rule; 1.1's script scored such pairs 0).
    """
    _check_lengths(gold_answers, predicted)
    exact, f1 = [], []
    for golds, prediction in zip(gold_answers, predicted, strict=True):
        if not golds:
            raise ValueError("every example needs at least one gold answer")
        exact.append(max(float(normalize_answer(g) == normalize_answer(prediction)) for g in golds))
        f1.append(max(token_f1(g, prediction) for g in golds))
    examples = len(gold_answers)
    return {
        "exact_match": math.fsum(exact) / examples if examples else 0.0,
        "f1": math.fsum(f1) / examples if examples else 0.0,
        "examples": examples,
    }


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(answer: str) -> str:
    """SQuAD's normalize_answer: lower, drop punctuation, drop articles, collapse whitespace."""
    answer = "".join(ch for ch in answer.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", answer).split())


def token_f1(gold: str, predicted: str) -> float:
    """SQuAD's token F1 of two answers: the F1 of their normalized tokens' bag overlap (symmetric in its
    arguments); 1.0 when both normalize to nothing, 0.0 when only one does."""
    gold_tokens, predicted_tokens = normalize_answer(gold).split(), normalize_answer(predicted).split()
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    common = sum((Counter(gold_tokens) & Counter(predicted_tokens)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)
