"""Eval sets of the pair tasks (validate/eval_set.py): ranked texts for reranking, answered questions for
extractive QA -- the examples they read, the scores of their predictions, and each malformed line named."""

from __future__ import annotations

import json

import pytest

from torchship.errors import SpecError
from torchship.validate.eval_set import ANSWERED_QUESTIONS, RANKED_TEXTS, EvalExample, read_eval_set


def write(tmp_path, *lines):
    path = tmp_path / "eval.jsonl"
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


RANKED_OK = {
    "query": "capital of France?",
    "texts": ["Paris is the capital.", "Lyon is a city."],
    "relevance": [2, 0],
}
ANSWERED_OK = {
    "question": "Where does Anna live?",
    "context": "Anna lives in Oslo.",
    "answers": ["Oslo", "in Oslo"],
}


def test_ranked_texts_read_as_requests_and_graded_relevance(tmp_path):
    path = write(tmp_path, RANKED_OK, "", {"query": "q", "texts": ["a"], "relevance": [0.5]})
    assert read_eval_set(path, RANKED_TEXTS) == [
        EvalExample(
            request={"query": "capital of France?", "texts": ["Paris is the capital.", "Lyon is a city."]},
            gold=(2.0, 0.0),
        ),
        EvalExample(request={"query": "q", "texts": ["a"]}, gold=(0.5,)),
    ]


def test_ranked_texts_score_predicted_orders():
    gold = [(2.0, 0.0), (0.0, 1.0)]
    # query 1 ranked right (NDCG 1, MRR 1); query 2 wrong way round: DCG = 1/log2(3), IDCG = 1, MRR 1/2
    values = RANKED_TEXTS.score(gold, [[0, 1], [0, 1]])
    assert values["ndcg@10"] == pytest.approx((1 + 1 / 1.584962500721156) / 2)
    assert values["mrr"] == pytest.approx(0.75) and values["queries"] == 2
    # a refused request counts as an empty ranking: 0 for its query
    assert RANKED_TEXTS.score(gold[:1], [RANKED_TEXTS.no_answer]) == {
        "ndcg@10": 0.0,
        "mrr": 0.0,
        "queries": 1,
    }


def test_answered_questions_read_as_requests_and_answers(tmp_path):
    path = write(tmp_path, ANSWERED_OK)
    assert read_eval_set(path, ANSWERED_QUESTIONS) == [
        EvalExample(
            request={"question": "Where does Anna live?", "context": "Anna lives in Oslo."},
            gold=("Oslo", "in Oslo"),
        )
    ]


def test_answered_questions_score_answer_strings():
    gold = [("Oslo", "in Oslo"), ("Anna",)]
    # "the Oslo" normalizes to "oslo": exact; "" (a refused request) matches nothing
    values = ANSWERED_QUESTIONS.score(gold, ["the Oslo", ANSWERED_QUESTIONS.no_answer])
    assert values == {"exact_match": 0.5, "f1": 0.5, "examples": 2}


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("{not json", "not valid JSON"),
        ("[1]", "expected a JSON object, got a list"),
        ({**RANKED_OK, "label": "x"}, "unknown key(s) 'label'"),
        ({"texts": ["a"], "relevance": [1]}, '"query" must be a non-empty string (missing)'),
        ({**RANKED_OK, "query": " "}, '"query" must be a non-empty string (got " ")'),
        ({"query": "q", "relevance": [1]}, '"texts" must be a non-empty list of candidate texts (missing)'),
        (
            {"query": "q", "texts": [], "relevance": []},
            '"texts" must be a non-empty list of candidate texts (got [])',
        ),
        ({"query": "q", "texts": "a", "relevance": [1]}, '"texts" must be a non-empty list'),
        (
            {"query": "q", "texts": ["a", 3], "relevance": [1, 0]},
            '"texts"[1] must be a non-empty string (got 3)',
        ),
        (
            {"query": "q", "texts": ["a", ""], "relevance": [1, 0]},
            '"texts"[1] must be a non-empty string (got "")',
        ),
        (
            {"query": "q", "texts": ["a"]},
            '"relevance" must be a list of numbers >= 0, one per text (missing)',
        ),
        ({"query": "q", "texts": ["a"], "relevance": 1}, '"relevance" must be a list of numbers'),
        (
            {"query": "q", "texts": ["a", "b", "c"], "relevance": [1, 0]},
            '"relevance" has 2 values but "texts" has 3; give one relevance per text',
        ),
        ({"query": "q", "texts": ["a", "b"], "relevance": [1, -1]}, '"relevance"[1] must be a number >= 0'),
        (
            {"query": "q", "texts": ["a"], "relevance": ["1"]},
            '"relevance"[0] must be a number >= 0 (0: not relevant), got "1"',
        ),
        ({"query": "q", "texts": ["a"], "relevance": [True]}, '"relevance"[0] must be a number >= 0'),
    ],
)
def test_ranked_texts_errors_name_path_line_and_problem(tmp_path, bad, problem):
    assert_refused(tmp_path, RANKED_OK, bad, problem, RANKED_TEXTS, '"relevance": [1, 0]')


@pytest.mark.parametrize(
    "bad, problem",
    [
        ({**ANSWERED_OK, "id": "q1"}, "unknown key(s) 'id'"),
        ({"context": "c", "answers": ["c"]}, '"question" must be a non-empty string (missing)'),
        ({"question": "q", "answers": ["c"]}, '"context" must be a non-empty string (missing)'),
        ({"question": "q", "context": 5, "answers": ["c"]}, '"context" must be a non-empty string (got 5)'),
        ({"question": "q", "context": "c"}, '"answers" must be a non-empty list of answer strings'),
        ({"question": "q", "context": "c", "answers": []}, '"answers" must be a non-empty list'),
        ({"question": "q", "context": "c", "answers": "c"}, '"answers" must be a non-empty list'),
        (
            {"question": "q", "context": "ab", "answers": ["a", ""]},
            '"answers"[1] must be a non-empty string (got "")',
        ),
        (
            {"question": "q", "context": "Anna lives in Oslo.", "answers": ["Oslo", "Bergen"]},
            "\"answers\"[1] 'Bergen' does not occur in the context",
        ),
        (
            {"question": "q", "context": "Anna lives in Oslo.", "answers": ["oslo"]},
            "\"answers\"[0] 'oslo' does not occur in the context",
        ),
    ],
)
def test_answered_questions_errors_name_path_line_and_problem(tmp_path, bad, problem):
    assert_refused(tmp_path, ANSWERED_OK, bad, problem, ANSWERED_QUESTIONS, '"answers": ["Oslo"]')


def assert_refused(tmp_path, ok, bad, problem, eval_format, example_part):
    path = write(tmp_path, ok, "", bad)  # the bad line is line 3 (blank lines still count)
    with pytest.raises(SpecError) as info:
        read_eval_set(path, eval_format)
    message = info.value.message
    assert message.startswith(f"{path}:3: ")
    assert problem in message
    assert "each line must look like {" in message and example_part in message
    assert info.value.hint.startswith("Write one JSON object per line")
