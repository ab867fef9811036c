"""What a task is at run time: its request schema, settings, options, and how a batch becomes answers.

One module per task in this package (registered in tasks/__init__.py) holds everything the handler does
for it; the toolchain's definition of the same task (torchship/tasks/<task>.py) points at the class. Every
task gets the items (texts, or pairs) of a whole server-side batch, tokenized at once, so the model runs
once per length-sorted sub-batch whatever mix of requests arrived together.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..config import HandlerConfig
from ..encoder import Encoder, Tokenized
from ..requests import BAD_OPTION, BadRequest, ParsedRequest, ParseFunction, over_budget, parse_texts


@dataclass(frozen=True)
class TaskSettings:
    """A task's own handler settings (the `settings:` mapping of the handler config), with the defaults
    the handler uses when a config lacks a key. Subclasses declare fields; a field's converter, if the
    YAML value needs one, goes in its metadata: `setting(default, convert)`."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TaskSettings:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(map(repr, unknown))} for this task; "
                f"known: {', '.join(sorted(fields)) or 'none'}"
            )
        converted: dict[str, Any] = {}
        for key, value in values.items():
            convert = fields[key].metadata.get("convert")
            if value is None:
                if not fields[key].metadata.get("nullable"):
                    continue  # null where a value is required: the default
                converted[key] = None
            else:
                converted[key] = convert(value) if convert else value
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values (lists, not tuples)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


def setting(default: Any, convert: Callable[[Any], Any] | None = None, nullable: bool = False) -> Any:
    """A TaskSettings field: its default, the converter from a YAML value, whether null is a value."""
    return dataclasses.field(default=default, metadata={"convert": convert, "nullable": nullable})


def optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class RequestSchema:
    """What a request body holds for a task, and the forms torchship's own checks send it in.

    `combine(bodies)`: one body whose answer is the list of the bodies' answers in order (verify sends it
    after the single requests), or None when the task has no such form. `plain(body)`: the same request
    as a text/plain body, or None. `example`: a body shown in error messages and docs."""

    parse: ParseFunction
    example: str
    combine: Callable[[list[Any]], Any | None] = lambda bodies: None
    plain: Callable[[Any], str | None] = lambda body: None


def _combine_texts(bodies: list[Any]) -> Any | None:
    if not all(isinstance(b, dict) and set(b) == {"text"} for b in bodies):
        return None
    return {"texts": [b["text"] for b in bodies]}


def _plain_text(body: Any) -> str | None:
    return body["text"] if isinstance(body, dict) and set(body) == {"text"} else None


# The text tasks' schema: {"text": ...}, {"texts": [...]} or a text/plain body.
TEXTS = RequestSchema(parse_texts, '{"text": "..."}', _combine_texts, _plain_text)


def check_int(options: dict[str, Any], name: str, low: int, high: int) -> None:
    if name in options and not low <= options[name] <= high:
        raise BadRequest(
            f"option '{name}' must be between {low} and {high}, got {options[name]}", reason=BAD_OPTION
        )


class Task:
    """Base of every runtime task: the text request schema, no settings, no options."""

    name: ClassVar[str]  # the spec's `task:` value
    auto_class: ClassVar[str]  # the transformers Auto class that loads the model for this task
    outputs: ClassVar[tuple[str, ...]]  # the model outputs the task reads (handlers/model_io.py)
    request: ClassVar[RequestSchema] = TEXTS
    Settings: ClassVar[type[TaskSettings]] = TaskSettings
    options: ClassVar[dict[str, type]] = {}  # per-request options a client may send, with their types
    needs_offsets: ClassVar[bool] = False
    item_name: ClassVar[str] = "text"  # what one item is called in messages

    def __init__(self, encoder: Encoder, config: HandlerConfig, model_config: dict[str, Any]):
        self.encoder = encoder
        self.config = config
        self.settings: Any = self.Settings.from_dict(config.settings)
        self.model_config = model_config
        # Encoder cost grows with the tokens run (attention with their square per item); items x
        # max_length bounds it already, this bounds it however max_length and the item limit are set.
        self.max_tokens = config.max_tokens_per_request

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise BadRequest for option values out of range (types are checked by the request parser)."""

    def prepare(self, items: list[Any]) -> list[Any]:
        """Per item of one request, what `run` needs beyond its tokens; raise BadRequest (413 over a
        budget) for a request this task cannot answer. Runs before any model work."""
        return [None] * len(items)

    def tokenize(self, items: list[Any]) -> Tokenized:
        """The items of a whole batch, tokenized at once."""
        return self.encoder.tokenize(items, offsets=self.needs_offsets)

    def check_tokens(self, tokenized: Tokenized, items: range) -> None:
        """Raise BadRequest for a request (`items` of `tokenized`) over the length or token budget."""
        for item in items:
            self.encoder.check_length(tokenized, item, self.item_name)
        count = sum(tokenized.tokens(item) for item in items)
        if self.max_tokens is not None and count > self.max_tokens:
            raise over_budget(
                f"the {self.item_name}s of this request have {count} tokens",
                self.max_tokens,
                "tokens per request",
                "serve.max_tokens_per_request",
                f"send fewer or shorter {self.item_name}s per request",
            )

    def run(
        self,
        items: list[Any],
        tokenized: Tokenized,
        indices: list[int],
        options: list[dict[str, Any]],
        prepared: list[Any],
    ) -> list[Any]:
        """One value per item. `indices[i]` is items[i]'s index in `tokenized` (its rows are
        `tokenized.item_rows[indices[i]]`); `prepared[i]` is what `prepare` returned for it."""
        raise NotImplementedError

    def respond(self, request: ParsedRequest, values: list[Any]) -> Any:
        """The request's answer from its items' values: one result, or the list in order."""
        return values[0] if request.single else values

    # Whether this task's answers name a label (the handler then counts the served labels: a drift
    # metric and alert). A task that has them overrides `served_label`.
    labelled: ClassVar[bool] = False

    @staticmethod
    def served_label(value: Any) -> str | None:
        """The label one item's value (an element of `run`'s result) was given, or None."""
        return None

    def truncated(self, tokenized: Tokenized, item: int) -> bool:
        """Whether the item reached max_length tokens with truncation on (truncated, or exactly that long)."""
        return (
            self.encoder.truncation
            and len(tokenized.item_rows[item]) == 1
            and tokenized.tokens(item) >= self.encoder.max_length
        )


def read_model_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
