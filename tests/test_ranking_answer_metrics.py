"""Reranking (NDCG@k, MRR) and extractive QA (exact match, token F1) metrics, computed by hand, and their
thresholds."""

from __future__ import annotations

import math
import random

import pytest

from torchship.errors import SpecError
from torchship.validate.metrics import ThresholdResult, answer_metrics, check_thresholds, ranking_metrics

LOG2_3 = math.log2(3)  # 1.5849625...

# --- ranking -------------------------------------------------------------------------------------------------


def test_ndcg_and_mrr_by_hand():
    # relevance of texts 0, 1, 2 = (3, 2, 0); predicted order best first: text 2, text 0, text 1
    #   DCG  = (2^0-1)/log2(2) + (2^3-1)/log2(3) + (2^2-1)/log2(4) = 0 + 7/1.58496 + 3/2 = 5.91651
    #   IDCG (order 0, 1, 2) = 7/log2(2) + 3/log2(3) + 0/log2(4) = 7 + 1.89279 = 8.89279
    #   NDCG = 5.91651 / 8.89279 = 0.66532
    #   MRR: the first relevant text (text 0) is at rank 2 -> 1/2
    got = ranking_metrics([[3, 2, 0]], [[2, 0, 1]])
    assert got == {
        "ndcg@10": pytest.approx((7 / LOG2_3 + 3 / 2) / (7 + 3 / LOG2_3)),
        "mrr": 0.5,
        "queries": 1,
    }
    assert got["ndcg@10"] == pytest.approx(0.66532, abs=1e-5)


def test_ndcg_cut_at_k():
    # k = 1: only rank 1 counts: text 2 (relevance 0) -> DCG@1 = 0
    assert ranking_metrics([[3, 2, 0]], [[2, 0, 1]], k=1)["ndcg@1"] == 0.0
    # k = 2: DCG@2 = 7/log2(3) = 4.41650; IDCG@2 = 7 + 3/log2(3) = 8.89279; NDCG@2 = 0.49664
    assert ranking_metrics([[3, 2, 0]], [[2, 0, 1]], k=2)["ndcg@2"] == pytest.approx(0.49664, abs=1e-5)
    # MRR is not cut at k: the first relevant text at rank 2 still gives 1/2
    assert ranking_metrics([[3, 2, 0]], [[2, 0, 1]], k=1)["mrr"] == 0.5


def test_perfect_order_and_the_mean_over_queries():
    # query 1 in its ideal order: NDCG 1, MRR 1. Query 2 has no relevant text: counts 0 for both.
    # query 3: relevance (0, 1) ranked (0, 1): DCG = 1/log2(3), IDCG = 1/log2(2) = 1 -> 1/log2(3); MRR 1/2
    got = ranking_metrics([[2, 1, 0], [0, 0], [0, 1]], [[0, 1, 2], [1, 0], [0, 1]])
    assert got["ndcg@10"] == pytest.approx((1 + 0 + 1 / LOG2_3) / 3)
    assert got["mrr"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert got["queries"] == 3


def test_a_partial_order_ranks_only_what_it_lists():
    # top_n = 1 kept only text 1 (relevance 0): no relevant text in the list -> NDCG 0, MRR 0
    assert ranking_metrics([[1, 0]], [[1]]) == {"ndcg@10": 0.0, "mrr": 0.0, "queries": 1}
    # an empty prediction (a refused request) scores 0
    assert ranking_metrics([[1, 0]], [[]])["ndcg@10"] == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn_with_exponential_gains(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    gold, orders, gains, scores = [], [], [], []
    for _ in range(rng.randint(1, 8)):
        n = rng.randint(2, 15)
        relevance = [rng.choice([0, 0, 1, 2, 3]) for _ in range(n)]
        relevance[rng.randrange(n)] = rng.randint(1, 3)  # sklearn's all-zero case differs: tested above
        order = rng.sample(range(n), n)
        gold.append(relevance)
        orders.append(order)
        # sklearn's DCG takes the gains as given: pass 2^rel - 1, and scores that sort into `order`
        score = [0.0] * n
        for rank, index in enumerate(order):
            score[index] = float(n - rank)
        gains.append([2**r - 1 for r in relevance])
        scores.append(score)
    got = ranking_metrics(gold, orders, k=5)["ndcg@5"]
    expected = sum(sk.ndcg_score([g], [s], k=5) for g, s in zip(gains, scores, strict=True)) / len(gold)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    "gold, orders, kwargs, message",
    [
        ([[1, 0]], [[0, 2]], {}, "query 0: predicted index 2 is not one of its 2 texts"),
        ([[1, 0]], [[-1]], {}, "predicted index -1"),
        ([[1, 0]], [[0, 0]], {}, "ranks a text twice"),
        ([[1, 0]], [], {}, "1 gold items but 0 predictions"),
        ([[1, 0]], [[0, 1]], {"k": 0}, "k must be a positive integer"),
    ],
)
def test_ranking_bad_input(gold, orders, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ranking_metrics(gold, orders, **kwargs)


# --- answers ------------------------------------------------------------------------------------------------


def test_squad_normalization_exact_match():
    # "The Cat!" -> lower "the cat!" -> no punctuation "the cat" -> no article "cat": equal to "cat"
    assert answer_metrics([["The Cat!"]], ["cat"]) == {"exact_match": 1.0, "f1": 1.0, "examples": 1}
    # "an" and "a" go as whole words only: "Anna" stays
    assert answer_metrics([["Anna"]], ["nna"])["exact_match"] == 0.0
    assert answer_metrics([["  An   apple, a day. "]], ["apple day"])["exact_match"] == 1.0


def test_token_f1_by_hand_and_best_over_gold_answers():
    gold = [["The Cat!"], ["the black cat", "a cat"], ["Paris"]]
    predicted = ["cat", "black dog", "in Paris, France"]
    # 1: exact -> EM 1, F1 1
    # 2: "black dog" vs "black cat": 1 shared token, P = 1/2, R = 1/2, F1 = 1/2; vs "cat": 0 -> best 1/2
    # 3: "in paris france" vs "paris": 1 shared, P = 1/3, R = 1, F1 = 2 * (1/3) / (4/3) = 1/2
    got = answer_metrics(gold, predicted)
    assert got["exact_match"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert got["examples"] == 3


def test_token_f1_counts_repeated_tokens_as_a_bag():
    # "cat cat dog" vs "cat dog dog": shared min(2,1) cat + min(1,2) dog = 2; P = R = 2/3; F1 = 2/3
    assert answer_metrics([["cat cat dog"]], ["cat dog dog"])["f1"] == pytest.approx(2 / 3)


def test_answers_that_normalize_to_nothing():
    # gold "The" normalizes to "": an empty prediction matches it (F1 1), a word does not (F1 0)
    assert answer_metrics([["The"]], [""]) == {"exact_match": 1.0, "f1": 1.0, "examples": 1}
    assert answer_metrics([["The"]], ["cat"])["f1"] == 0.0
    assert answer_metrics([["cat"]], ["!"])["f1"] == 0.0


def test_answer_metrics_bad_input():
    with pytest.raises(ValueError, match="2 gold items but 1 predictions"):
        answer_metrics([["a"], ["b"]], ["a"])
    with pytest.raises(ValueError, match="at least one gold answer"):
        answer_metrics([[]], ["a"])


# --- thresholds on numeric metrics ------------------------------------------------------------------------------


def test_thresholds_on_ranking_metrics():
    values = ranking_metrics([[3, 2, 0]], [[2, 0, 1]])  # ndcg@10 0.665, mrr 0.5
    results = check_thresholds(values, {"ndcg@10": 0.5, "mrr": 0.6})
    assert results == [
        ThresholdResult("ndcg@10", None, 0.5, pytest.approx(0.66532, abs=1e-5), True),
        ThresholdResult("mrr", None, 0.6, 0.5, False),
    ]
    assert results[1].describe() == "metric mrr = 0.50 is below its threshold 0.60 (by 0.10)"


def test_thresholds_on_answer_metrics():
    values = answer_metrics([["The Cat!"], ["Paris"]], ["cat", "in Paris, France"])  # EM 0.5, F1 0.75
    results = check_thresholds(values, {"exact_match": 0.7, "f1": 0.7})
    assert [(r.metric, r.value, r.ok) for r in results] == [("exact_match", 0.5, False), ("f1", 0.75, True)]


def test_numeric_metric_thresholds_refuse_counts_labels_and_other_tasks_metrics():
    values = ranking_metrics([[1, 0]], [[0, 1]])
    with pytest.raises(
        SpecError, match=r"unknown metric 'queries'; the metrics for this task are ndcg@10, mrr$"
    ):
        check_thresholds(values, {"queries": 0.5})
    with pytest.raises(SpecError, match="unknown metric 'ndcg@5'") as info:
        check_thresholds(values, {"ndcg@5": 0.5})
    assert info.value.hint == "Use one of ndcg@10, mrr, e.g. {ndcg@10: 0.8, mrr: 0.8}"
    with pytest.raises(
        SpecError, match=r"mrr has no per-label values; give a single number, e\.g\. mrr: 0\.9"
    ):
        check_thresholds(values, {"mrr": {"overall": 0.5}})
    answers = answer_metrics([["a"]], ["a"])
    with pytest.raises(SpecError, match=r"unknown metric 'accuracy'.*exact_match, f1$"):
        check_thresholds(answers, {"accuracy": 0.5})
    with pytest.raises(SpecError, match="a threshold must be a number between 0 and 1"):
        check_thresholds(answers, {"f1": 80})
