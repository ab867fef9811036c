"""Counting what a task runs through its model: the rows of each model call made inside a block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def model_calls(task) -> Iterator[list[int]]:
    """Yields a list that gets the row count of every model call the task makes inside the block."""
    calls: list[int] = []
    forward = task.encoder.forward

    def counting(features):
        calls.append(int(features["input_ids"].shape[0]))
        return forward(features)

    task.encoder.forward = counting
    try:
        yield calls
    finally:
        task.encoder.forward = forward
