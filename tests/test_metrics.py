"""Eval-set metrics: sklearn cross-checks, hand-made entity cases, thresholds and eval-set parsing errors."""

from __future__ import annotations

import json
import random

import pytest

from torchship.errors import SpecError
from torchship.validate.metrics import (
    EvalExample,
    ThresholdResult,
    check_thresholds,
    classification_metrics,
    entity_metrics,
    load_eval_set,
    worst,
)

# --- classification: cross-checked with scikit-learn -----------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_classification_matches_sklearn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    gold_labels = ["neg", "neu", "pos", "other"][: rng.randint(2, 4)]
    pred_labels = gold_labels + (["extra"] if seed % 2 else [])  # a predicted label absent from gold
    n = rng.randint(1, 60)
    gold = [rng.choice(gold_labels) for _ in range(n)]
    predicted = [g if rng.random() < 0.6 else rng.choice(pred_labels) for g in gold]

    got = classification_metrics(gold, predicted)

    labels = sorted(set(gold) | set(predicted))
    p, r, f, s = sk.precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(gold, predicted))
    for i, label in enumerate(labels):
        assert got["precision"][label] == pytest.approx(p[i])
        assert got["recall"][label] == pytest.approx(r[i])
        assert got["f1"][label] == pytest.approx(f[i])
        assert got["support"][label] == s[i]
    mp, mr, mf, _ = sk.precision_recall_fscore_support(gold, predicted, average="macro", zero_division=0)
    assert got["precision"]["overall"] == pytest.approx(mp)
    assert got["recall"]["overall"] == pytest.approx(mr)
    assert got["f1"]["overall"] == pytest.approx(mf)
    assert set(got) == {"accuracy", "precision", "recall", "f1", "support"}
    assert set(got["f1"]) == {"overall", *labels}


def test_classification_hand_case_and_label_only_predicted():
    got = classification_metrics(["a", "a", "b"], ["a", "c", "b"])
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["precision"]["a"] == 1.0 and got["recall"]["a"] == 0.5
    assert got["precision"]["c"] == 0.0 and got["recall"]["c"] == 0.0 and got["support"]["c"] == 0
    assert got["f1"]["overall"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_classification_length_mismatch():
    with pytest.raises(ValueError, match="2 gold items but 1 predictions"):
        classification_metrics(["a", "b"], ["a"])


# --- entities: hand-computed -------------------------------------------------------------------------------


def test_entities_exact_match():
    gold = [[("PER", 0, 4), ("LOC", 14, 18)], [("ORG", 3, 9)]]
    got = entity_metrics(gold, gold)
    for name in ("precision", "recall", "f1"):
        assert got[name] == {"overall": 1.0, "LOC": 1.0, "ORG": 1.0, "PER": 1.0}
    assert got["support"] == {"LOC": 1, "ORG": 1, "PER": 1}
    assert "accuracy" not in got


def test_entities_boundary_off_by_one_and_wrong_label_are_misses():
    gold = [[("PER", 0, 4), ("LOC", 14, 18)]]
    predicted = [[("PER", 0, 5), ("ORG", 14, 18)]]  # end off by one; right span, wrong label
    got = entity_metrics(gold, predicted)
    assert (
        got["precision"]["overall"] == 0.0 and got["recall"]["overall"] == 0.0 and got["f1"]["overall"] == 0.0
    )
    assert got["support"] == {"LOC": 1, "ORG": 0, "PER": 1}
    assert got["precision"]["ORG"] == 0.0


def test_entities_partial_micro_average():
    gold = [[("PER", 0, 4), ("PER", 10, 15), ("LOC", 20, 25)], [("LOC", 0, 3)]]
    predicted = [[("PER", 0, 4), ("LOC", 20, 25), ("LOC", 30, 33)], [("PER", 0, 3)]]
    got = entity_metrics(gold, predicted)
    # tp: PER 1, LOC 1; predicted: PER 2, LOC 2; gold: PER 2, LOC 2
    assert got["precision"]["overall"] == pytest.approx(2 / 4)
    assert got["recall"]["overall"] == pytest.approx(2 / 4)
    assert got["f1"]["overall"] == pytest.approx(0.5)
    assert got["precision"]["PER"] == pytest.approx(0.5) and got["recall"]["PER"] == pytest.approx(0.5)
    assert got["precision"]["LOC"] == pytest.approx(0.5) and got["recall"]["LOC"] == pytest.approx(0.5)
    # micro differs from macro when labels are unbalanced
    got = entity_metrics(
        [[("A", 0, 1), ("A", 2, 3), ("A", 4, 5), ("B", 6, 7)]], [[("A", 0, 1), ("A", 2, 3), ("A", 4, 5)]]
    )
    assert got["recall"]["overall"] == pytest.approx(3 / 4)
    assert got["precision"]["overall"] == 1.0
    assert got["f1"]["overall"] == pytest.approx(2 * 0.75 / 1.75)


def test_entities_match_within_their_example_only():
    got = entity_metrics([[("PER", 0, 4)], []], [[], [("PER", 0, 4)]])
    assert got["f1"]["overall"] == 0.0


def test_entities_duplicates_count_once():
    gold = [[("PER", 0, 4), ("PER", 0, 4)]]
    predicted = [[("PER", 0, 4), ("PER", 0, 4), ("PER", 0, 4)]]
    got = entity_metrics(gold, predicted)
    assert got["support"] == {"PER": 1}
    assert got["precision"]["overall"] == 1.0 and got["recall"]["overall"] == 1.0


def test_entities_empty_predictions_and_gold():
    got = entity_metrics([[("PER", 0, 4)]], [[]])
    assert (
        got["precision"]["overall"] == 0.0 and got["recall"]["overall"] == 0.0 and got["f1"]["overall"] == 0.0
    )
    got = entity_metrics([[]], [[("PER", 0, 4)]])
    assert got["precision"]["PER"] == 0.0 and got["support"] == {"PER": 0}
    got = entity_metrics([[], []], [[], []])
    assert got == {
        "precision": {"overall": 0.0},
        "recall": {"overall": 0.0},
        "f1": {"overall": 0.0},
        "support": {},
    }


def test_entities_accept_iterables():
    got = entity_metrics([iter([("PER", 0, 4)])], [(e for e in [["PER", 0, 4]])])
    assert got["f1"]["overall"] == 1.0


# --- thresholds ----------------------------------------------------------------------------------------------


@pytest.fixture
def cls_values():
    return classification_metrics(["pos", "pos", "neg", "neg"], ["pos", "neg", "neg", "neg"])


def test_thresholds_pass_and_fail(cls_values):
    results = check_thresholds(cls_values, {"accuracy": 0.7, "f1": {"pos": 0.9, "neg": 0.5}, "recall": 0.8})
    assert [(r.metric, r.label, r.ok) for r in results] == [
        ("accuracy", None, True),
        ("f1", "pos", False),
        ("f1", "neg", True),
        ("recall", None, False),
    ]
    assert results[0].value == 0.75 and results[0].threshold == 0.7
    bad = worst(results)
    assert (bad.metric, bad.label) == ("f1", "pos")  # shortfall 0.9 - 2/3 beats 0.8 - 0.75
    assert bad.describe() == "metric f1[pos] = 0.67 is below its threshold 0.90 (by 0.23)"
    assert results[3].describe() == "metric recall = 0.75 is below its threshold 0.80 (by 0.05)"
    assert worst(results[:1]) is None and worst([]) is None


def test_threshold_equal_value_passes(cls_values):
    (result,) = check_thresholds(cls_values, {"accuracy": 0.75})
    assert result.ok


def test_threshold_missing_label_fails_clearly(cls_values):
    (result,) = check_thresholds(cls_values, {"f1": {"neutral": 0.0}})
    assert result == ThresholdResult("f1", "neutral", 0.0, 0.0, False, missing=True)
    assert worst([result]) is result
    assert "'neutral' does not occur in the eval set" in result.describe()


def test_threshold_overall_label_key(cls_values):
    (result,) = check_thresholds(cls_values, {"f1": 0.5})
    assert result.value == cls_values["f1"]["overall"]


def test_threshold_unknown_metric(cls_values):
    with pytest.raises(SpecError, match=r"unknown metric 'f2'.*accuracy, precision, recall, f1"):
        check_thresholds(cls_values, {"f2": 0.5})
    entity_values = entity_metrics([[("PER", 0, 4)]], [[("PER", 0, 4)]])
    with pytest.raises(
        SpecError, match=r"validate\.thresholds\.accuracy: unknown metric.*precision, recall, f1$"
    ):
        check_thresholds(entity_values, {"accuracy": 0.5})
    (result,) = check_thresholds(entity_values, {"f1": {"PER": 0.8}})
    assert result.ok and result.value == 1.0


@pytest.mark.parametrize(
    "thresholds, message",
    [
        ({"accuracy": {"pos": 0.5}}, "accuracy has no per-label values"),
        ({"f1": 1.5}, r"validate\.thresholds\.f1: a threshold must be a number between 0 and 1"),
        ({"f1": {"pos": "high"}}, r"validate\.thresholds\.f1\.pos: a threshold must be"),
        ({"f1": True}, "a threshold must be"),
        ([0.5], "must be a mapping"),
    ],
)
def test_threshold_bad_values(cls_values, thresholds, message):
    with pytest.raises(SpecError, match=message):
        check_thresholds(cls_values, thresholds)


# --- eval set loading -------------------------------------------------------------------------------------------


def write(tmp_path, *lines):
    path = tmp_path / "eval.jsonl"
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def test_load_text_classification(tmp_path):
    path = write(
        tmp_path, {"text": "I loved it.", "label": "positive"}, "", {"text": "Meh.", "label": "negative"}
    )
    assert load_eval_set(path, "text-classification") == [
        EvalExample({"text": "I loved it."}, "positive"),
        EvalExample({"text": "Meh."}, "negative"),
    ]


def test_load_token_classification(tmp_path):
    path = write(
        tmp_path,
        {
            "text": "Anna lives in Oslo.",
            "entities": [
                {"label": "PER", "start": 0, "end": 4},
                {"label": "LOC", "start": 14, "end": 18, "text": "Oslo"},
            ],
        },
        {"text": "Nothing here.", "entities": []},
    )
    assert load_eval_set(path, "token-classification") == [
        EvalExample({"text": "Anna lives in Oslo."}, (("PER", 0, 4), ("LOC", 14, 18))),
        EvalExample({"text": "Nothing here."}, ()),
    ]


def test_load_keeps_unicode_line_separators_in_text(tmp_path):
    path = tmp_path / "eval.jsonl"
    line = json.dumps({"text": "a\u2028b\x85c", "label": "x"}, ensure_ascii=False)
    path.write_text("\ufeff" + line + "\r\n", encoding="utf-8")
    assert load_eval_set(path, "text-classification") == [EvalExample({"text": "a\u2028b\x85c"}, "x")]


def test_load_other_task(tmp_path):
    path = write(tmp_path, {"text": "x", "label": "y"})
    with pytest.raises(
        SpecError,
        match="available for reranking, text-classification, token-classification, question-answering, not feature",
    ):
        load_eval_set(path, "feature-extraction")


def test_load_missing_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist") as info:
        load_eval_set(tmp_path / "nope.jsonl", "text-classification")
    assert str(tmp_path / "nope.jsonl") in info.value.message
    assert '"label": "positive"' in info.value.hint


def test_load_empty_file(tmp_path):
    path = write(tmp_path, "", "   ")
    with pytest.raises(SpecError, match="has no examples"):
        load_eval_set(path, "text-classification")


def test_load_not_utf8(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_bytes(b'{"text": "\xff", "label": "a"}\n')
    with pytest.raises(SpecError, match="not UTF-8"):
        load_eval_set(path, "text-classification")


CLS_OK = {"text": "fine", "label": "positive"}
TOK_OK = {"text": "Anna", "entities": []}


@pytest.mark.parametrize(
    "task, bad, problem",
    [
        ("text-classification", "{not json", "not valid JSON"),
        ("text-classification", "[1, 2]", "expected a JSON object, got a list"),
        ("text-classification", {"label": "positive"}, '"text" must be a non-empty string (missing)'),
        ("text-classification", {"text": "  ", "label": "positive"}, '"text" must be a non-empty string'),
        ("text-classification", {"text": "hi"}, '"label" must be a non-empty string (missing)'),
        ("text-classification", {"text": "hi", "label": 1}, '"label" must be a non-empty string (got 1)'),
        ("text-classification", {"text": "hi", "lable": "x"}, "unknown key(s) 'lable'"),
        ("text-classification", {"text": "hi", "label": "x", "entities": []}, "unknown key(s) 'entities'"),
        ("token-classification", {"text": "hi"}, '"entities" must be a list'),
        ("token-classification", {"text": "hi", "entities": {}}, '"entities" must be a list'),
        ("token-classification", {"text": "hi", "entities": ["PER"]}, '"entities"[0] must be an object'),
        (
            "token-classification",
            {"text": "hi", "entities": [{"start": 0, "end": 1}]},
            '"entities"[0]: "label" must',
        ),
        (
            "token-classification",
            {"text": "hi", "entities": [{"label": "A", "start": "0", "end": 1}]},
            '"start" must be an integer',
        ),
        (
            "token-classification",
            {"text": "hi", "entities": [{"label": "A", "start": 0, "end": 1.0}]},
            '"end" must be an integer',
        ),
        (
            "token-classification",
            {"text": "hi", "entities": [{"label": "A", "start": True, "end": 1}]},
            '"start" must be an integer',
        ),
        (
            "token-classification",
            {"text": "hi", "entities": [{"label": "A", "start": 0, "end": 3}]},
            "needs 0 <= start < end <= 2",
        ),
        (
            "token-classification",
            {"text": "hi", "entities": [{"label": "A", "start": 1, "end": 1}]},
            "got start 1, end 1",
        ),
        (
            "token-classification",
            {"text": "hi", "entities": [{"label": "A", "start": -1, "end": 1}]},
            "needs 0 <= start",
        ),
        (
            "token-classification",
            {"text": "hi", "entities": [{"label": "A", "start": 0, "end": 1, "text": "x"}]},
            "text[0:1] is 'h'",
        ),
        (
            "token-classification",
            {"text": "hi", "entities": [{"label": "A", "start": 0, "end": 1, "type": "x"}]},
            "unknown key(s) 'type'",
        ),
    ],
)
def test_load_errors_name_path_and_line(tmp_path, task, bad, problem):
    ok = CLS_OK if task == "text-classification" else TOK_OK
    path = write(tmp_path, ok, "", bad)  # the bad line is line 3 (blank lines still count)
    with pytest.raises(SpecError) as info:
        load_eval_set(path, task)
    message = info.value.message
    assert message.startswith(f"{path}:3: ")
    assert problem in message
    assert "each line must look like {" in message
    assert info.value.hint.startswith("Write one JSON object per line")
