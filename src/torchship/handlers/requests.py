"""Reading a request: the body (bytes, text or JSON), its options, and the text contract.

Every task reads the body the same way (`decode_body`: size limit, UTF-8, JSON) and checks its options
the same way (`check_options`); what the body must hold is the task's request schema, a parse function.
The text tasks share `parse_texts`: `{"text": "..."}` -> one result; `{"texts": [...]}` -> a list of
results in order; a text/plain body -> one result. Anything else is a `BadRequest` naming the problem; it
becomes this request's own HTTP 400 (413 for a request over a work or size budget).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class BadRequest(Exception):
    """A failure confined to one request of the server-side batch: its HTTP status and message.

    400 for a malformed request, 413 for one over a budget; 500 only where checking this one request
    met a bug, which must still not fail its neighbours. `reason`: a short fixed name of what was wrong
    (REASONS), the `reason` label of the handler's request metrics; never the message, which holds values.
    """

    def __init__(self, message: str, status: int = 400, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason or (INTERNAL_ERROR if status >= 500 else BAD_REQUEST)


# The reasons a request is refused, as the metrics name them (README "Metrics"). A 413 over a spec budget
# is named by the budget's spec key instead (over_budget: max_tokens_per_request, max_response_bytes, ...).
OK = "ok"
BAD_REQUEST = "bad_request"  # a task's own check with no finer name
EMPTY_BODY = "empty_body"
BODY_TOO_LARGE = "body_too_large"
NOT_UTF8 = "not_utf8"
MALFORMED_JSON = "malformed_json"
BAD_SCHEMA = "bad_schema"  # JSON of the wrong shape: not an object, missing or extra keys, wrong types
BAD_TEXT = "bad_text"  # a text that is not a string, empty, or not valid Unicode, or that failed to tokenize
TEXT_COUNT = "text_count"  # an empty list, or more items than serve.max_texts_per_request
BAD_OPTION = "bad_option"  # an unknown option, or one of the wrong type or out of range
TEXT_TOO_LONG = "text_too_long"  # over max_length tokens with truncation off
INTERNAL_ERROR = "internal_error"  # 500: a bug met while checking or answering this request
MODEL_ERROR = "model_error"  # 500: the model run raised
INVALID_OUTPUT = "invalid_output"  # 500: the model produced a value that is not JSON (NaN)
REASONS = (
    OK,
    BAD_REQUEST,
    EMPTY_BODY,
    BODY_TOO_LARGE,
    NOT_UTF8,
    MALFORMED_JSON,
    BAD_SCHEMA,
    BAD_TEXT,
    TEXT_COUNT,
    BAD_OPTION,
    TEXT_TOO_LONG,
    INTERNAL_ERROR,
    MODEL_ERROR,
    INVALID_OUTPUT,
)


def budget_reason(spec_key: str) -> str:
    """A 413's reason: the name of the spec key it is over (serve.max_tokens_per_request -> max_tokens_per_request)."""
    return spec_key.rsplit(".", 1)[-1]


def over_budget(what: str, limit: int, unit: str, spec_key: str, advice: str) -> BadRequest:
    """A 413 that names the limit and the spec key that raises it (the operator's knob)."""
    return BadRequest(
        f"{what}, over this model's limit of {limit} {unit} ({spec_key}); {advice}, "
        f"or raise {spec_key} in the model spec",
        status=413,
        reason=budget_reason(spec_key),
    )


NESTED_TOO_DEEPLY = "malformed JSON: nested too deeply"


@dataclass(frozen=True)
class Limits:
    max_texts: int = 64
    max_body_bytes: int = 1024 * 1024


@dataclass
class ParsedRequest:
    """A request's items (texts; (query, text) or (question, context) pairs), in order."""

    items: list[Any]
    single: bool  # answer one result (text / plain body) rather than a list
    options: dict[str, Any] = field(default_factory=dict)


# (decoded body, limits, the task's allowed options) -> the request's items and options.
ParseFunction = Callable[[Any, Limits, dict[str, type]], ParsedRequest]


def _content_type(headers: dict[str, Any]) -> str:
    for key, value in headers.items():
        if str(key).lower() == "content-type" and isinstance(value, str):
            return value.lower()
        if isinstance(value, dict):  # TorchServe nests per-parameter headers: {"body": {"content-type": ...}}
            nested = _content_type(value)
            if nested:
                return nested
    return ""


def check_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string, got {type(value).__name__}", reason=BAD_TEXT)
    if not value.strip():
        raise BadRequest(f"{where} is empty or only whitespace", reason=BAD_TEXT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON escapes can carry lone UTF-16 surrogates ("\ud800"); tokenizers raise on them, and a raise
        # in the batch tokenizer would fail every request sharing the batch.
        raise BadRequest(
            f"{where} is not valid UTF-8/Unicode: it holds a lone surrogate "
            f"(U+{ord(value[exc.start]):04X}) at character {exc.start}; send well-formed Unicode text",
            reason=BAD_TEXT,
        ) from None
    return value


def _body_size(body: Any) -> int:
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8", "surrogatepass"))
    # TorchServe already decoded the JSON; its re-encoded size is within a few bytes of what was sent.
    try:
        return len(json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    except RecursionError:
        raise BadRequest(NESTED_TOO_DEEPLY, reason=MALFORMED_JSON) from None


def decode_body(body: Any, headers: dict[str, Any], limits: Limits) -> Any:
    """Bytes/str/already-decoded JSON -> a Python value (dict for JSON objects, str for plain text)."""
    if body is None:
        raise BadRequest(
            'empty request: send {"text": "..."}, {"texts": [...]} or a text/plain body, with a Content-Type '
            "header (without one curl -d sends a form, which TorchServe splits into fields)",
            reason=EMPTY_BODY,
        )
    size = _body_size(body)
    if size > limits.max_body_bytes:
        raise BadRequest(
            f"request body is {size} bytes, over the limit of {limits.max_body_bytes} bytes",
            reason=BODY_TOO_LARGE,
        )
    content_type = _content_type(headers)
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"request body is not valid UTF-8 (byte {exc.start})", reason=NOT_UTF8) from None
        # No Content-Type at all (http.client, httpx without headers): a JSON object body is still JSON.
        if "json" in content_type or (not content_type and body.lstrip().startswith("{")):
            try:
                return json.loads(body)
            except ValueError as exc:
                raise BadRequest(f"malformed JSON: {exc}", reason=MALFORMED_JSON) from None
            except RecursionError:
                # Tens of thousands of "[": TorchServe's own json.loads gave up and forwarded the bytes.
                raise BadRequest(NESTED_TOO_DEEPLY, reason=MALFORMED_JSON) from None
    return body


def check_options(options: dict[str, Any], allowed_options: dict[str, type]) -> dict[str, Any]:
    """The request's options, each known and of its type."""
    unknown = sorted(set(options) - set(allowed_options))
    if unknown:
        allowed = ", ".join(sorted(allowed_options)) or "none for this model"
        raise BadRequest(
            f"unknown option(s) {', '.join(map(repr, unknown))}; allowed: {allowed}", reason=BAD_OPTION
        )
    for name, option in options.items():
        kind = allowed_options[name]
        # JSON has one number type: 1 is a fine float. bool is an int in Python, but {"top_k": true} is
        # still a client mistake.
        accepted = (int, float) if kind is float else kind
        if not isinstance(option, accepted) or (isinstance(option, bool) and kind is not bool):
            raise BadRequest(
                f"option '{name}' must be {kind.__name__}, got {type(option).__name__}", reason=BAD_OPTION
            )
    return options


def check_count(count: int, what: str, limits: Limits) -> None:
    """At least one item and at most the per-request limit."""
    if not count:
        raise BadRequest(f"{what} is an empty list; send at least one item", reason=TEXT_COUNT)
    if count > limits.max_texts:
        raise BadRequest(
            f"{what} has {count} items, over the limit of {limits.max_texts} per request "
            "(serve.max_texts_per_request); split it into several requests",
            reason=TEXT_COUNT,
        )


def parse_texts(value: Any, limits: Limits, allowed_options: dict[str, type]) -> ParsedRequest:
    """The text tasks' request schema: a text/plain body, {"text": ...} or {"texts": [...]}."""
    if isinstance(value, str):
        return ParsedRequest([check_text(value, "the text/plain body")], single=True)
    if not isinstance(value, dict):
        raise BadRequest(
            f'JSON body must be an object like {{"text": "..."}}, got {type(value).__name__}',
            reason=BAD_SCHEMA,
        )
    has_text, has_texts = "text" in value, "texts" in value
    if has_text == has_texts:
        raise BadRequest(
            'JSON body must have exactly one of "text" (a string) or "texts" (a list of strings)',
            reason=BAD_SCHEMA,
        )
    options = check_options({k: v for k, v in value.items() if k not in ("text", "texts")}, allowed_options)
    if has_text:
        return ParsedRequest([check_text(value["text"], '"text"')], single=True, options=options)
    texts = value["texts"]
    if not isinstance(texts, list):
        raise BadRequest(f'"texts" must be a list of strings, got {type(texts).__name__}', reason=BAD_SCHEMA)
    check_count(len(texts), '"texts"', limits)
    return ParsedRequest(
        [check_text(t, f'"texts"[{i}]') for i, t in enumerate(texts)], single=False, options=options
    )


def parse_request(
    body: Any,
    headers: dict[str, Any],
    limits: Limits,
    allowed_options: dict[str, type] | None = None,
    parse: ParseFunction = parse_texts,
) -> ParsedRequest:
    """A raw request (TorchServe's body and headers) read by a task's request schema."""
    return parse(decode_body(body, headers, limits), limits, allowed_options or {})
