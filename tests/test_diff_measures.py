"""What `torchship diff` measures per task between two versions' answers to the same requests.

Answers are written by hand in the served shapes; each expected value is worked out here by hand or by a
formula other than the implementation's (Spearman by 1 - 6·Σd²/(n(n²-1)) where the code correlates ranks,
nearest neighbours by angle on a circle where the code takes cosines of vectors)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from torchship.diff import measures
from torchship.diff.record import EntityTypeChanges, TaskDiff
from torchship.tasks import TASKS

# What each measure's direction must be: a promotion threshold reads `better` to pick max_ or min_.
BETTER = {
    "text-classification": {"flip_rate": "lower", "score_shift": "lower"},
    "token-classification": {"changed_rate": "lower", "entity_f1": "higher"},
    "embeddings": {"mean_cosine": "higher", "min_cosine": "higher", "neighbour_overlap": "higher"},
    "keywords": {"topk_overlap": "higher", "changed_rate": "lower"},
    "reranking": {"rank_correlation": "higher", "topk_overlap": "higher", "top1_changed_rate": "lower"},
    "question-answering": {"exact_match": "higher", "answer_f1": "higher", "changed_rate": "lower"},
}


def value(diff: TaskDiff, name: str) -> float | None:
    found = diff.measure(name)
    assert found is not None, f"{diff.task} has no measure {name}"
    return found.value


def classes(*ranked: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"label": label, "score": score} for label, score in ranked]


def entity(kind: str, start: int, end: int, word: str, key: str = "entity_group") -> dict[str, Any]:
    return {key: kind, "start": start, "end": end, "word": word, "score": 0.9}


def ranking(*indices: int) -> list[dict[str, Any]]:
    return [{"index": i, "score": 1.0 - 0.1 * rank} for rank, i in enumerate(indices)]


def keywords(*phrases: str) -> list[dict[str, Any]]:
    return [{"keyword": p, "score": 0.5} for p in phrases]


def answer(text: str, start: int, end: int, score: float = 0.8) -> dict[str, Any]:
    return {"answer": text, "start": start, "end": end, "score": score}


# One (requests, answers) per task, each answers list varied enough that a measure of change has something
# to find if the code compared the wrong parts.
SAME: dict[str, tuple[list[Any], list[Any]]] = {
    "text-classification": (
        [{"text": "good"}, {"text": "bad"}],
        [classes(("POSITIVE", 0.9), ("NEGATIVE", 0.1)), classes(("NEGATIVE", 0.7), ("POSITIVE", 0.3))],
    ),
    "token-classification": (
        [{"text": "John in Paris"}, {"text": "nothing"}],
        [[entity("PER", 0, 4, "John"), entity("LOC", 8, 13, "Paris")], []],
    ),
    "embeddings": (
        [{"text": t} for t in "abcd"],
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 2.0]],
    ),
    "keywords": ([{"text": "a"}, {"text": "b"}], [keywords("cat", "mat"), keywords()]),
    "reranking": (
        [{"query": "q", "texts": ["a", "b", "c"]}] * 2,
        [ranking(2, 0, 1), ranking(1, 2, 0)],
    ),
    "question-answering": (
        [{"question": q, "context": "The cat sat on the mat."} for q in ("Where?", "Who?")],
        [answer("the mat", 15, 22), answer("cat", 4, 7)],
    ),
}


@pytest.mark.parametrize("task", sorted(BETTER))
def test_identical_answers_show_no_change(task):
    requests, answers = SAME[task]
    diff = TASKS[task].diff(requests, answers, [*answers])
    assert diff.task == task
    assert diff.inputs == len(requests)
    assert diff.changed == []
    expected_no_change = {
        "flip_rate": 0.0,
        "score_shift": 0.0,
        "changed_rate": 0.0,
        "entity_f1": 1.0,
        "mean_cosine": 1.0,
        "min_cosine": 1.0,
        "neighbour_overlap": 1.0,
        "topk_overlap": 1.0,
        "rank_correlation": 1.0,
        "top1_changed_rate": 0.0,
        "exact_match": 1.0,
        "answer_f1": 1.0,
    }
    for m in diff.measures:
        assert m.value == pytest.approx(expected_no_change[m.name]), m.name


@pytest.mark.parametrize("task", sorted(BETTER))
def test_each_task_returns_the_measures_it_declares_with_their_direction(task):
    requests, answers = SAME[task]
    definition = TASKS[task]
    diff = definition.diff(requests, answers, answers)
    assert tuple(m.name for m in diff.measures) == definition.diff_measures
    assert {m.name: m.better for m in diff.measures} == BETTER[task]
    assert all(m.meaning and "\n" not in m.meaning for m in diff.measures)


@pytest.mark.parametrize("task", sorted(BETTER))
def test_a_diff_with_changes_survives_the_json_it_is_saved_as(task):
    requests, answers = SAME[task]
    diff = TASKS[task].diff(requests, answers, [*answers[1:], answers[0]])  # every answer moved by one
    assert diff.changed
    assert TaskDiff.model_validate_json(diff.model_dump_json()) == diff


@pytest.mark.parametrize("task", sorted(BETTER))
def test_answers_that_do_not_pair_with_the_requests_are_a_programming_error(task):
    requests, answers = SAME[task]
    with pytest.raises(ValueError, match="requests"):
        TASKS[task].diff(requests, answers, answers[:-1])


@pytest.mark.parametrize("task", sorted(BETTER))
def test_no_inputs_measure_nothing_and_say_why(task):
    diff = TASKS[task].diff([], [], [])
    assert diff.inputs == 0
    for m in diff.measures:
        assert m.value is None, m.name
        assert "not measurable" in m.meaning


# --- text-classification --------------------------------------------------------------------------------


def test_classification_flips_scores_and_confusion_by_hand():
    texts = ["a", "b", "c", "d", "e"]
    old = [
        classes(("POSITIVE", 0.9), ("NEGATIVE", 0.08), ("NEUTRAL", 0.02)),
        classes(("POSITIVE", 0.6), ("NEGATIVE", 0.3), ("NEUTRAL", 0.1)),
        classes(("NEGATIVE", 0.8), ("POSITIVE", 0.15), ("NEUTRAL", 0.05)),
        classes(("NEGATIVE", 0.7), ("POSITIVE", 0.2), ("NEUTRAL", 0.1)),
        classes(("POSITIVE", 0.5), ("NEGATIVE", 0.4), ("NEUTRAL", 0.1)),
    ]
    new = [
        classes(("POSITIVE", 0.8), ("NEGATIVE", 0.15), ("NEUTRAL", 0.05)),  # kept, POSITIVE 0.9 -> 0.8
        classes(("NEGATIVE", 0.55), ("POSITIVE", 0.4), ("NEUTRAL", 0.05)),  # flipped, POSITIVE 0.6 -> 0.4
        classes(("NEGATIVE", 0.8), ("POSITIVE", 0.15), ("NEUTRAL", 0.05)),  # same
        classes(("POSITIVE", 0.6), ("NEGATIVE", 0.35), ("NEUTRAL", 0.05)),  # flipped, NEGATIVE 0.7 -> 0.35
        classes(("POSITIVE", 0.5), ("NEGATIVE", 0.4), ("NEUTRAL", 0.1)),  # same
    ]
    diff = TASKS["text-classification"].diff([{"text": t} for t in texts], old, new)

    assert value(diff, "flip_rate") == pytest.approx(2 / 5)
    # |0.8-0.9| + |0.4-0.6| + 0 + |0.35-0.7| + 0 = 0.1 + 0.2 + 0.35 = 0.65, over 5 inputs
    assert value(diff, "score_shift") == pytest.approx(0.65 / 5)
    assert diff.confusion is not None
    assert diff.confusion.labels == ["NEGATIVE", "NEUTRAL", "POSITIVE"]
    # rows: old NEGATIVE (c kept, d flipped), NEUTRAL (never top), POSITIVE (a, e kept; b flipped)
    assert diff.confusion.counts == [[1, 0, 1], [0, 0, 0], [1, 0, 2]]
    assert [(c.index, c.request, c.old, c.new, c.why) for c in diff.changed] == [
        (1, {"text": "b"}, "POSITIVE", "NEGATIVE", "POSITIVE -> NEGATIVE"),
        (3, {"text": "d"}, "NEGATIVE", "POSITIVE", "NEGATIVE -> POSITIVE"),
    ]


def test_classification_score_shift_skips_answers_cut_before_the_old_top_label():
    old = [classes(("A", 0.6), ("B", 0.4)), classes(("A", 0.7), ("B", 0.3))]
    new = [classes(("B", 0.9)), classes(("A", 0.5), ("B", 0.5))]  # the first cut by top_k=1: no "A" score
    diff = TASKS["text-classification"].diff([{"text": "x"}, {"text": "y"}], old, new)
    assert value(diff, "score_shift") == pytest.approx(0.2)  # only the second input: |0.5 - 0.7|
    cut = TASKS["text-classification"].diff([{"text": "x"}], old[:1], new[:1])
    assert value(cut, "score_shift") is None
    assert "top_k" in (cut.measure("score_shift") or pytest.fail()).meaning


# --- token-classification -------------------------------------------------------------------------------


def test_entities_one_change_of_each_kind_by_hand():
    text = "John Smith met Acme in Paris on Monday"
    old = [
        [
            entity("PER", 0, 10, "John Smith"),  # unchanged
            entity("ORG", 15, 19, "Acme"),  # relabelled ORG -> LOC
            entity("LOC", 23, 28, "Paris"),  # respanned 23-28 -> 20-28
            entity("MISC", 32, 38, "Monday"),  # removed
        ],
        [entity("PER", 0, 4, "Anna")],  # unchanged input
        [],  # neither finds any
    ]
    new = [
        [
            entity("PER", 0, 10, "John Smith"),
            entity("LOC", 15, 19, "Acme"),
            entity("LOC", 20, 28, "in Paris"),
            entity("ORG", 11, 14, "met"),  # added
        ],
        [entity("PER", 0, 4, "Anna")],
        [],
    ]
    requests = [{"text": text}, {"text": "Anna"}, {"text": "nothing here"}]
    diff = TASKS["token-classification"].diff(requests, old, new)

    assert value(diff, "changed_rate") == pytest.approx(1 / 3)
    # exact matches: John Smith, Anna = 2; old entities 4 + 1 = 5, new 4 + 1 = 5
    # precision 2/5, recall 2/5, F1 = 2·(2/5)(2/5)/(4/5) = 2/5
    assert value(diff, "entity_f1") == pytest.approx(2 / 5)
    assert diff.entity_types == {
        "LOC": EntityTypeChanges(respanned=1),
        "MISC": EntityTypeChanges(removed=1),
        "ORG": EntityTypeChanges(relabelled=1, added=1),  # relabelled under the old type, added under the new
        "PER": EntityTypeChanges(unchanged=2),
    }
    [changed] = diff.changed
    assert changed.index == 0 and changed.request == requests[0]
    assert changed.old == old[0][1:]  # John Smith did not change
    assert changed.new == new[0][1:]
    assert changed.why == (
        "relabelled ORG 'Acme' 15-19 -> LOC; respanned LOC 'Paris' 23-28 -> LOC 'in Paris' 20-28; "
        "removed MISC 'Monday' 32-38; added ORG 'met' 11-14"
    )


def test_entities_of_unaggregated_answers_and_answers_without_any():
    old = [[entity("B-PER", 0, 4, "John", key="entity")], []]
    new = [[entity("B-PER", 0, 4, "John", key="entity")], [entity("I-LOC", 5, 9, "Rome", key="entity")]]
    diff = TASKS["token-classification"].diff([{"text": "John Rome"}] * 2, old, new)
    assert value(diff, "changed_rate") == pytest.approx(1 / 2)
    # 1 exact match; 1 old entity, 2 new: F1 = 2·1/(1+2)
    assert value(diff, "entity_f1") == pytest.approx(2 / 3)
    assert diff.entity_types == {"B-PER": EntityTypeChanges(unchanged=1), "I-LOC": EntityTypeChanges(added=1)}
    both_empty = TASKS["token-classification"].diff([{"text": "x"}], [[]], [[]])
    assert value(both_empty, "entity_f1") == 1.0


# --- embeddings -----------------------------------------------------------------------------------------


def on_circle(degrees: Sequence[float]) -> list[list[float]]:
    return [[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees]


def neighbours_by_angle(degrees: Sequence[float], k: int) -> list[set[int]]:
    """Nearest by the smallest angle between points on the unit circle: the same as the largest cosine
    while all angles are below 180 degrees apart."""
    return [
        set(
            sorted((j for j in range(len(degrees)) if j != i), key=lambda j: abs(degrees[j] - degrees[i]))[:k]
        )
        for i in range(len(degrees))
    ]


def test_embeddings_rotated_vectors_keep_their_neighbours_but_cannot_share_an_index():
    # Unequal gaps, so no two neighbours tie.
    degrees = [0, 10, 25, 45, 70, 100, 135]
    old = on_circle(degrees)
    rotated = on_circle([d + 30 for d in degrees])  # every vector turned by 30 degrees
    diff = TASKS["embeddings"].diff([{"text": str(d)} for d in degrees], old, rotated)

    assert diff.cosines == pytest.approx([math.cos(math.radians(30))] * 7)  # 0.8660
    assert value(diff, "mean_cosine") == pytest.approx(math.cos(math.radians(30)))
    assert value(diff, "min_cosine") == pytest.approx(math.cos(math.radians(30)))
    assert value(diff, "neighbour_overlap") == pytest.approx(1.0)  # a rotation keeps every angle between them
    assert diff.compatible is False
    assert "re-embed" in diff.note and "0.8660" in diff.note
    assert [c.index for c in diff.changed] == list(range(7))
    assert diff.changed[0].why == "cosine 0.8660"


def test_embeddings_reinitialised_vectors_lose_their_neighbours():
    old_degrees = [0, 10, 25, 45, 70, 100, 135]
    # The same angles handed to other inputs, as a re-initialised model would scatter them.
    new_degrees = [100, 0, 135, 10, 45, 25, 70]
    old, new = on_circle(old_degrees), on_circle(new_degrees)
    diff = TASKS["embeddings"].diff([{"text": str(i)} for i in range(7)], old, new)

    k = 5  # min(5, 7 - 1)
    before, after = neighbours_by_angle(old_degrees, k), neighbours_by_angle(new_degrees, k)
    expected = sum(len(a & b) / k for a, b in zip(before, after, strict=True)) / 7
    assert value(diff, "neighbour_overlap") == pytest.approx(expected)
    assert expected < 1.0  # the case can tell a lost neighbour from a kept one
    cosines = [math.cos(math.radians(a - b)) for a, b in zip(old_degrees, new_degrees, strict=True)]
    assert diff.cosines == pytest.approx(cosines)
    assert value(diff, "mean_cosine") == pytest.approx(sum(cosines) / 7)
    assert value(diff, "min_cosine") == pytest.approx(min(cosines))
    assert diff.compatible is False


def test_embeddings_of_another_dimension_have_no_cosines_but_still_neighbours():
    degrees = [0, 10, 25, 45, 70, 100, 135]
    old = on_circle(degrees)
    padded = [[x, y, 0.0] for x, y in old]  # 2 -> 3 dimensions, the same directions
    diff = TASKS["embeddings"].diff([{"text": str(d)} for d in degrees], old, padded)

    assert diff.cosines is None
    for name in ("mean_cosine", "min_cosine"):
        m = diff.measure(name)
        assert m is not None and m.value is None
        assert "dimension (2 -> 3)" in m.meaning
    assert value(diff, "neighbour_overlap") == pytest.approx(1.0)
    assert diff.compatible is False
    assert "re-embed" in diff.note and "3 dimensions" in diff.note
    assert diff.changed[0].why == "dimension 2 -> 3" and len(diff.changed) == 7


def test_embeddings_compatibility_threshold_and_too_few_inputs_for_neighbours():
    close = math.degrees(math.acos(0.995))  # a turn that leaves cosine 0.995: above 0.99
    far = math.degrees(math.acos(0.98))  # below it
    requests = [{"text": "a"}, {"text": "b"}]
    ok = TASKS["embeddings"].diff(requests, on_circle([0, 90]), on_circle([close, 90]))
    assert ok.compatible is True and ok.changed == []
    assert value(ok, "min_cosine") == pytest.approx(0.995)
    assert value(ok, "mean_cosine") == pytest.approx((0.995 + 1.0) / 2)
    apart = TASKS["embeddings"].diff(requests, on_circle([0, 90]), on_circle([0, 90 + far]))
    assert apart.compatible is False
    assert [(c.index, c.why) for c in apart.changed] == [(1, "cosine 0.9800")]

    overlap = ok.measure("neighbour_overlap")
    assert overlap is not None and overlap.value is None
    assert "at least 3 inputs, got 2" in overlap.meaning


# --- keywords -------------------------------------------------------------------------------------------


def test_keywords_overlap_and_changes_by_hand():
    old = [keywords("cat", "mat", "sat"), keywords("x", "y"), keywords(), keywords("p"), keywords("q")]
    new = [keywords("cat", "sat", "dog"), keywords("y", "x"), keywords(), keywords(), keywords("q")]
    diff = TASKS["keywords"].diff([{"text": str(i)} for i in range(5)], old, new)
    # 2 shared of 3; same set; both empty; 0 of 1; same
    assert value(diff, "topk_overlap") == pytest.approx((2 / 3 + 1 + 1 + 0 + 1) / 5)
    assert value(diff, "changed_rate") == pytest.approx(3 / 5)  # the first, the reordered, the emptied
    assert [(c.index, c.old, c.new, c.why) for c in diff.changed] == [
        (0, ["cat", "mat", "sat"], ["cat", "sat", "dog"], "added 'dog'; dropped 'mat'"),
        (1, ["x", "y"], ["y", "x"], "the same keywords in another order"),
        (3, ["p"], [], "dropped 'p'"),
    ]


# --- reranking ------------------------------------------------------------------------------------------


def spearman_by_differences(old: list[int], new: list[int]) -> float:
    """1 - 6·Σd²/(n(n²-1)) over the indices both orders hold (no ties: each index is ranked once)."""
    shared = [i for i in old if i in new]
    old_rank = {i: r for r, i in enumerate(i for i in old if i in shared)}
    new_rank = {i: r for r, i in enumerate(i for i in new if i in shared)}
    n = len(shared)
    return 1 - 6 * sum((old_rank[i] - new_rank[i]) ** 2 for i in shared) / (n * (n * n - 1))


def test_reranking_reversed_swapped_cut_and_single_orders():
    orders = [
        ([0, 1, 2, 3], [3, 2, 1, 0]),  # reversed: rho -1
        ([0, 1, 2, 3, 4], [1, 0, 2, 4, 3]),  # two neighbour swaps: Σd² = 4, rho = 1 - 24/120 = 0.8
        ([2, 0, 1], [2, 1]),  # cut by top_n: over {2, 1} the same order
        ([5], [5]),  # one shared text: no correlation to take
    ]
    old = [ranking(*a) for a, _ in orders]
    new = [ranking(*b) for _, b in orders]
    diff = TASKS["reranking"].diff([{"query": "q", "texts": []}] * 4, old, new)

    rhos = [spearman_by_differences(a, b) for a, b in orders[:3]]
    assert rhos == pytest.approx([-1.0, 0.8, 1.0])
    assert value(diff, "rank_correlation") == pytest.approx(sum(rhos) / 3)
    # top 3: {0,1,2} vs {3,2,1} = 2/3; {0,1,2} vs {1,0,2} = 1; k = 2: {2,0} vs {2,1} = 1/2; k = 1: 1
    assert value(diff, "topk_overlap") == pytest.approx((2 / 3 + 1 + 1 / 2 + 1) / 4)
    assert value(diff, "top1_changed_rate") == pytest.approx(2 / 4)
    assert [(c.index, c.old, c.new, c.why) for c in diff.changed] == [
        (0, [0, 1, 2, 3], [3, 2, 1, 0], "top text 0 -> 3; rank correlation -1.00"),
        (1, [0, 1, 2, 3, 4], [1, 0, 2, 4, 3], "top text 0 -> 1; rank correlation 0.80"),
        (2, [2, 0, 1], [2, 1], "the same top text; the texts below it differ; rank correlation 1.00"),
    ]


def test_reranking_with_no_two_shared_texts_has_no_rank_correlation():
    diff = TASKS["reranking"].diff(
        [{"query": "q", "texts": []}] * 2, [ranking(0), ranking(1, 2)], [ranking(0), ranking(2, 3)]
    )
    m = diff.measure("rank_correlation")
    assert m is not None and m.value is None and "two texts" in m.meaning
    # top 1 of each: {0} vs {0} = 1; top 2: {1, 2} vs {2, 3} = 1/2
    assert value(diff, "topk_overlap") == pytest.approx((1 + 1 / 2) / 2)
    assert value(diff, "top1_changed_rate") == pytest.approx(1 / 2)


# --- question-answering ---------------------------------------------------------------------------------


def test_answers_with_changed_spans_by_hand():
    context = "She moved to Paris, the mat was red."
    requests = [{"question": q, "context": context} for q in ("Where?", "What?", "Colour?")]
    old = [answer("Paris", 13, 18), answer("the mat", 20, 27), answer("red", 32, 35)]
    new = [answer("to Paris", 10, 18), answer("mat", 24, 27), answer("red", 32, 35, score=0.3)]
    diff = TASKS["question-answering"].diff(requests, old, new)

    # "paris" vs "to paris": exact 0; F1 with precision 1/2, recall 1: 2/3.
    # "the mat" vs "mat": the article goes in normalization: exact 1, F1 1. "red" vs "red": 1, 1.
    assert value(diff, "exact_match") == pytest.approx(2 / 3)
    assert value(diff, "answer_f1") == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert value(diff, "changed_rate") == pytest.approx(2 / 3)  # the score alone changing is no change
    assert [(c.index, c.old, c.new, c.why) for c in diff.changed] == [
        (
            0,
            {"answer": "Paris", "start": 13, "end": 18},
            {"answer": "to Paris", "start": 10, "end": 18},
            "'Paris' 13-18 -> 'to Paris' 10-18",
        ),
        (
            1,
            {"answer": "the mat", "start": 20, "end": 27},
            {"answer": "mat", "start": 24, "end": 27},
            "'the mat' 20-27 -> 'mat' 24-27",
        ),
    ]


def test_neighbours_of_long_input_lists_come_out_the_same_a_few_rows_at_a_time(monkeypatch):
    degrees = [0, 10, 25, 45, 70, 100, 135]
    monkeypatch.setattr(measures, "_SIMILARITY_CELLS", 2 * len(degrees))  # two rows of the matrix at a time
    vectors = measures.vector_matrix(on_circle(degrees), "old")
    for k in (1, 3, 6):
        assert measures.nearest_neighbours(vectors, k) == neighbours_by_angle(degrees, k)
