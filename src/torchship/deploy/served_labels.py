"""The labels a classification model gave the requests verify served (its answer sheet, answers.json).

Their shares are the expected label distribution the label-shift alert compares served traffic with. The
runtime task reads the labels (handlers/tasks: `served_label`), so this module never compares task names.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from torchship.handlers.requests import BadRequest, Limits
from torchship.handlers.tasks import TASKS

# The answer sheet's requests were served already: only their shape is read again, never a limit.
_NO_LIMITS = Limits(max_texts=10**9, max_body_bytes=2**62)


def labels_of_answers(task: str, requests: list[Any], answers: list[Any]) -> Counter[str]:
    """Per label, how many items of the answered requests got it as their top label."""
    runtime = TASKS[task]
    counts: Counter[str] = Counter()
    if not runtime.labelled:
        return counts
    for request, answer in zip(requests, answers, strict=False):
        try:
            parsed = runtime.request.parse(request, _NO_LIMITS, runtime.options)
        except BadRequest:
            continue
        values = [answer] if parsed.single else answer
        if not isinstance(values, list):
            continue
        counts.update(label for label in map(runtime.served_label, values) if label is not None)
    return counts


def read_verified_labels(task: str, answers_json: Path) -> Counter[str]:
    """The label counts of verify's answer sheet; empty when there is none (or it is unreadable)."""
    try:
        sheet = json.loads(answers_json.read_text(encoding="utf-8"))
        return labels_of_answers(task, list(sheet["requests"]), list(sheet["answers"]))
    except (OSError, ValueError, KeyError, TypeError):
        return Counter()
