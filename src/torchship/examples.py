"""The spec's examples (`validate.examples`): JSON lines, each the body of one request the task accepts
({"text": ...} for the text tasks, {"query": ..., "texts": [...]} for reranking, ...), or the task's
built-in set.

Without an examples file the gate and verify still need requests to compare the compiled and served
model against the source: each task definition's `builtin_examples`, a fixed, documented set (README:
"Built-in examples"); the text tasks share BUILTIN_TEXTS (tasks/base.py), with sentiment, named entities
and plain descriptive sentences, so every text task gets meaningful answers.
"""

from __future__ import annotations

import json
from typing import Any

from torchship.errors import SpecError
from torchship.handlers.requests import BadRequest, Limits
from torchship.handlers.service import limits_of
from torchship.handlers.tasks import Task
from torchship.spec import ModelSpec
from torchship.tasks import TaskDefinition, task_definition
from torchship.validate.eval_set import read_eval_set

# Examples are the user's own requests: the serving limits on their number do not apply to them.
_EXAMPLE_LIMITS = Limits(max_texts=1_000_000, max_body_bytes=1 << 40)


def examples_origin(spec: ModelSpec) -> str:
    """Where the examples come from, as the output says it."""
    path = spec.examples_path()
    count = len(task_definition(spec.task).builtin_examples)
    return str(path) if path is not None else f"built-in ({count} requests; no examples file)"


def uses_builtin_examples(spec: ModelSpec) -> bool:
    return spec.examples_path() is None


def example_label(body: Any) -> str:
    """A request body in one short line, for messages and reports."""
    text = json.dumps(body, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def load_examples(spec: ModelSpec) -> list[Any]:
    """The request bodies to check the model with: the examples file's lines, each accepted by the task's
    request schema (a line it would refuse is an error naming the line), or the task's built-in set."""
    definition = task_definition(spec.task)
    example = definition.runtime.request.example
    path = spec.examples_path()
    if path is None:
        return [dict(body) for body in definition.builtin_examples]
    if not path.is_file():
        raise SpecError(
            f"{spec.spec_path}: key 'validate.examples': file {path} does not exist",
            hint=f"Create it with one request body (JSON) per line, e.g. {example}, "
            "or remove the key to use the built-in examples.",
        )
    bodies = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except ValueError as exc:
            raise SpecError(f"{path}:{number}: not valid JSON: {exc}") from None
        check_example(definition, body, f"{path}:{number}")
        bodies.append(body)
    if not bodies:
        raise SpecError(f"{path}: has no examples", hint=f"Add lines like {example}")
    return bodies


def check_example(definition: TaskDefinition, body: Any, where: str) -> None:
    """A request body the task's schema refuses is a SpecError naming `where` (path:line)."""
    runtime = definition.runtime
    try:
        runtime.request.parse(body, _EXAMPLE_LIMITS, runtime.options)
    except BadRequest as exc:
        raise SpecError(
            f"{where}: not a request that a {definition.name} model accepts: {exc.message}",
            hint=f"Each line is the JSON body of one request, e.g. {runtime.request.example}",
        ) from None


def eval_set_requests(spec: ModelSpec) -> list[Any]:
    """The request bodies of `validate.eval_set` (none without one): real inputs beside the examples, for
    calibrating a quantized model and for judging it."""
    eval_format = task_definition(spec.task).eval_set
    if not spec.validate.eval_set or eval_format is None:
        return []
    return [example.request for example in read_eval_set(spec.resolve(spec.validate.eval_set), eval_format)]


def example_rows(task: Task, bodies: list[Any]) -> list[dict[str, list[int]]]:
    """The model-input rows of the requests the task accepts, tokenized as the handler tokenizes them
    (pairs with their token types, long contexts in windows): the parity check's real inputs, and the
    calibration rows of a statically quantized model."""
    items = []
    for body in bodies:
        try:
            items.extend(task.request.parse(body, limits_of(task.config), task.options).items)
        except BadRequest:
            continue  # a request the handler refuses has no model input
    if not items:
        return []
    tokenized = task.tokenize(items)
    return tokenized.rows(range(len(tokenized.ids)))
