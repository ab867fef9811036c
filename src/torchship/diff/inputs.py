"""The requests a diff compares two versions on: the spec's examples, then the file of real requests the user
keeps (`promote.inputs`, default diff.jsonl beside the spec), or a replay file of live traffic.

Each line is one request body the task accepts, answered with one result (one text, one query with its texts,
one question), so that answers pair up input by input. A line that is not (bad JSON, refused by the task's
request schema, a list of texts in one request) is reported with its line number and left out: a diff of
real traffic keeps going past a bad line rather than failing on it. Exact duplicates count once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchship.diff.record import SkippedInput
from torchship.errors import TorchshipError
from torchship.examples import load_examples
from torchship.handlers.requests import BadRequest, Limits
from torchship.spec import ModelSpec
from torchship.tasks import TaskDefinition, task_definition

# Real traffic may hold more texts than the serving limits allow in one request: those are checked by the
# servers themselves (a refused request is skipped there with its status).
_READ_LIMITS = Limits(max_texts=1_000_000, max_body_bytes=1 << 40)


@dataclass
class DiffInputs:
    """The requests, where they came from, and the lines left out (with why)."""

    requests: list[Any] = field(default_factory=list)
    wheres: list[str] = field(default_factory=list)  # wheres[i]: the line requests[i] came from
    origins: list[str] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set, repr=False)

    def add(self, definition: TaskDefinition, body: Any, where: str) -> None:
        reason = one_answer_problem(definition, body)
        if reason is not None:
            self.skipped.append(SkippedInput(where=where, reason=reason))
            return
        key = request_key(body)
        if key not in self._seen:
            self._seen.add(key)
            self.requests.append(body)
            self.wheres.append(where)


def request_key(body: Any) -> str:
    """A request body as canonical JSON: equal bodies, whatever their key order, have one key."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def one_answer_problem(definition: TaskDefinition, body: Any) -> str | None:
    """Why `body` is not one request with one answer for this task (None: it is)."""
    runtime = definition.runtime
    try:
        parsed = runtime.request.parse(body, _READ_LIMITS, runtime.options)
    except BadRequest as exc:
        return f"not a {definition.name} request: {exc.message} (e.g. {runtime.request.example})"
    if not definition.one_answer(parsed):
        return f"a request with {len(parsed.items)} items in a list: send one per line (e.g. {runtime.request.example})"
    return None


def read_request_lines(path: Path, definition: TaskDefinition, into: DiffInputs) -> None:
    """Add each line of a JSONL file of request bodies; bad lines are recorded in `into.skipped`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TorchshipError(
            f"{path} does not exist",
            hint="Give a JSONL file of request bodies, one per line, e.g. "
            f"{definition.runtime.request.example}",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TorchshipError(f"{path} cannot be read: {exc}", hint="Give a UTF-8 JSONL file.") from None
    into.origins.append(str(path))
    for where, body, not_json in json_lines(path.name, text):
        if not_json is not None:
            into.skipped.append(SkippedInput(where=where, reason=not_json))
        else:
            into.add(definition, body, where)


def json_lines(name: str, text: str) -> Iterator[tuple[str, Any, str | None]]:
    """("name:LINE", body, None) per non-blank line, or ("name:LINE", None, why) when it is not JSON. Blank
    lines are neither requests nor errors (files often end with one)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{name}:{number}", json.loads(line), None
        except json.JSONDecodeError as exc:
            yield f"{name}:{number}", None, f"not JSON ({exc.msg} at column {exc.colno})"


def spec_diff_inputs(spec: ModelSpec) -> DiffInputs:
    """The examples, then the spec's diff inputs file when there is one."""
    definition = task_definition(spec.task)
    inputs = DiffInputs()
    path = spec.examples_path()
    inputs.origins.append(str(path) if path else "built-in examples")
    for index, body in enumerate(load_examples(spec)):
        inputs.add(definition, body, f"example {index + 1}")
    diff_file = spec.diff_inputs_path()
    if diff_file is not None:
        read_request_lines(diff_file, definition, inputs)
    if not inputs.requests:
        raise TorchshipError(
            f"{spec.spec_path}: no request to compare versions on",
            hint="Add examples (one request body per line) or a diff.jsonl of real requests beside the spec.",
        )
    return inputs
