"""TorchServe entry point: `handle(data, context)`.

One bad request must never fail its neighbours: each request is parsed on its own, a `BadRequest` sets
that request's status through `context.set_response_status(code, phrase, idx)`, and the valid texts of
the whole server-side batch are tokenized and run together.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from . import requests as reasons
from .config import HandlerConfig
from .encoder import Encoder, pad_id_of, pad_type_id_of
from .loading import load_compiled
from .metrics import BatchRecord, MetricsReporter
from .model_io import CompiledModel
from .requests import NESTED_TOO_DEEPLY, BadRequest, Limits, ParsedRequest, over_budget, parse_request
from .tasks import TASKS, Task, read_model_config

logger = logging.getLogger(__name__)

JSON = "application/json"
_REASONS = {400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error"}
INTERNAL_ERROR = "internal error while checking this request"
MODEL_ERROR = "internal error while running the model"


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = _REASONS.get(status, "Error").replace(" ", "")
    return {"code": status, "type": kind, "message": message}


def build_task(
    model_dir: Path,
    config: HandlerConfig | Mapping[str, Any],
    model: CompiledModel | None = None,
    compiled_dir: Path | None = None,
) -> Task:
    """The task runner for a model dir: the extracted .mar; or, in-process, a Hugging Face model dir with
    the compiled model in `compiled_dir` or any `model` (e.g. the eager source model). Shared by
    TorchServe and torchship's own checks, so both run the same code. `config` as written into the .mar
    (a mapping) or already typed."""
    from transformers import AutoTokenizer

    if not isinstance(config, HandlerConfig):
        config = HandlerConfig.from_dict(config)
    if config.task not in TASKS:
        raise ValueError(
            f"task {config.task!r} is not supported by this handler; supported: {', '.join(TASKS)}"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / config.tokenizer_dir))
    if model is None:
        compiled = compiled_dir or model_dir / config.compiled_dir
        model = load_compiled(compiled, pad_id_of(tokenizer), pad_type_id_of(tokenizer))
    encoder = Encoder(
        forward=model.forward,
        tokenizer=tokenizer,
        inputs=model.io.inputs,
        max_length=config.max_length,
        truncation=config.truncation,
        max_batch=config.compute_batch_size,
        buckets=config.buckets,
    )
    return TASKS[config.task](encoder, config, read_model_config(model_dir))


def _guarded(outcomes: list[Any], position: int, step: Callable[[], Any]) -> Any:
    """Run one request's step; a failure becomes that request's outcome, never the batch's."""
    try:
        return step()
    except BadRequest as exc:
        outcomes[position] = exc
    except Exception:  # a bug met on this request alone: its own 500, the others go on
        logger.exception("torchship handler failed while checking one request")
        outcomes[position] = BadRequest(INTERNAL_ERROR, status=500, reason=reasons.INTERNAL_ERROR)
    return None


def _tokenize_isolated(task: Task, requests: list[ParsedRequest], outcomes: list[Any]) -> Any:
    """Tokenize the items of the requests still alive at once. If that raises (an item the tokenizer
    chokes on that the checks let through), find the culprits by tokenizing each request alone, fail
    them with a 400, and tokenize the innocent ones again together."""
    live = [pos for pos, outcome in enumerate(outcomes) if outcome is None]
    flat = [item for pos in live for item in requests[pos].items]
    try:
        return task.tokenize(flat) if flat else None
    except BadRequest:
        pass  # a task's own check on an item (a question too long for any context): found below
    except Exception:
        logger.warning("batch tokenization failed; tokenizing each request alone", exc_info=True)
    for pos in live:
        try:
            task.tokenize(requests[pos].items)
        except BadRequest as exc:
            outcomes[pos] = exc
        except Exception as exc:
            outcomes[pos] = BadRequest(
                f"{task.item_name} could not be tokenized ({type(exc).__name__})", reason=reasons.BAD_TEXT
            )
    flat = [item for pos, outcome in enumerate(outcomes) if outcome is None for item in requests[pos].items]
    return task.tokenize(flat) if flat else None


def predict(task: Task, requests: list[ParsedRequest], record: BatchRecord | None = None) -> list[Any]:
    """Results for parsed requests, in order; a request that fails a check gets its BadRequest instead.

    Every per-request check (options, the task's budgets, tokenization, lengths, the token budget) runs
    before any model work, so a refused request costs no model time. Only the model run itself is
    shared by the batch; if it raises, the caller retries each request alone (TextHandler does).
    With a `record`, the texts run (their tokens), the phases' times and the served labels are added to it.
    """
    started = time.perf_counter()
    outcomes: list[Any] = [None] * len(requests)
    prepared: dict[int, list[Any]] = {}
    for pos, request in enumerate(requests):

        def check(request=request):
            task.check_options(request.options)
            return task.prepare(request.items)

        value = _guarded(outcomes, pos, check)
        if outcomes[pos] is None:
            prepared[pos] = value
    tokenized = _tokenize_isolated(task, requests, outcomes)
    items: list[Any] = []
    indices: list[int] = []
    options: list[dict[str, Any]] = []
    extras: list[Any] = []
    spans: dict[int, tuple[int, int]] = {}
    start = 0  # index of the request's first item in `tokenized` (only live requests were tokenized)
    for pos, request in enumerate(requests):
        if outcomes[pos] is not None:
            continue
        end = start + len(request.items)
        _guarded(outcomes, pos, functools.partial(task.check_tokens, tokenized, range(start, end)))
        if outcomes[pos] is None:
            spans[pos] = (len(items), len(items) + end - start)
            items.extend(request.items)
            indices.extend(range(start, end))
            options.extend([request.options] * (end - start))
            extras.extend(prepared[pos])
        start = end
    checked = time.perf_counter()
    results = task.run(items, tokenized, indices, options, extras) if items else []
    ran = time.perf_counter()
    for pos, (first, last) in spans.items():
        answer = _guarded(outcomes, pos, functools.partial(task.respond, requests[pos], results[first:last]))
        if outcomes[pos] is None:
            outcomes[pos] = answer
    if record is not None:
        record.add_phase("preprocess", checked - started)
        record.add_phase("inference", ran - checked)
        record.add_phase("postprocess", time.perf_counter() - ran)
        for index in indices:
            record.token_counts.append(tokenized.tokens(index))
            record.truncated += task.truncated(tokenized, index)
        for pos, (first, last) in spans.items():
            if not isinstance(outcomes[pos], BadRequest):
                record.labels.update(
                    label for label in map(task.served_label, results[first:last]) if label is not None
                )
    return outcomes


def limits_of(config: HandlerConfig) -> Limits:
    return Limits(max_texts=config.max_texts_per_request, max_body_bytes=config.max_body_bytes)


def answer_bodies(task: Task, bodies: list[Any]) -> list[Any]:
    """The handler's answer to each JSON body sent as its own request (a BadRequest where it would answer
    4xx): torchship's in-process checks ask the handler code exactly what clients ask TorchServe."""
    outcomes: list[Any] = [None] * len(bodies)
    parsed: dict[int, ParsedRequest] = {}
    limits = limits_of(task.config)
    for pos, body in enumerate(bodies):
        try:
            parsed[pos] = task.request.parse(body, limits, task.options)
        except BadRequest as exc:
            outcomes[pos] = exc
    for pos, outcome in zip(parsed, predict(task, list(parsed.values())), strict=True):
        outcomes[pos] = outcome
    return outcomes


class TextHandler:
    """Loads the traced model and tokenizer from the extracted .mar and answers batches."""

    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        config = HandlerConfig.from_dict((context.model_yaml_config or {}).get("handler") or {})
        # Each worker gets its own share of the cores; otherwise every worker sizes its pool from the
        # whole host and several workers oversubscribe the CPU.
        # TORCHSHIP_WORKERS / TORCHSHIP_THREADS (set by the image's deployment from its CPU limit) win over
        # the .mar's values: a container sees the host's cores, not its own share.
        workers = max(1, int(os.environ.get("TORCHSHIP_WORKERS") or config.workers))
        threads = int(
            os.environ.get("TORCHSHIP_THREADS") or config.threads or max(1, (os.cpu_count() or 1) // workers)
        )
        torch.set_num_threads(threads)
        self.task = build_task(model_dir, config)
        self.limits = limits_of(config)
        self.metrics = MetricsReporter.from_context(context)
        # TorchServe drops a worker whose answer exceeds its max_response_size (set from the same spec
        # key): a larger answer must be this request's 413 instead.
        self.max_response_bytes = config.max_response_bytes
        # One warm-up request so the first real one does not pay for the JIT's profiling runs.
        warm_up = self.task.request.parse(
            json.loads(self.task.request.example), self.limits, self.task.options
        )
        predict(self.task, [warm_up])
        self.metrics.worker_started()
        self.initialized = True
        logger.info("torchship handler ready: task=%s threads=%d", config.task, threads)

    def handle(self, data: list[dict[str, Any]] | None, context) -> list[Any] | None:
        if data is None:  # TorchServe calls the function entry point with None to initialize
            return None
        started = time.perf_counter()
        record = BatchRecord(size=len(data))
        responses: list[Any] = [None] * len(data)
        parsed: dict[int, ParsedRequest] = {}
        for idx, item in enumerate(data):
            try:
                body = item.get("body") if item.get("body") is not None else item.get("data")
                parsed[idx] = parse_request(
                    body, _headers(context, idx), self.limits, self.task.options, self.task.request.parse
                )
            except BadRequest as exc:
                responses[idx] = self._fail(context, record, idx, exc)
            except RecursionError:
                responses[idx] = self._fail(
                    context, record, idx, BadRequest(NESTED_TOO_DEEPLY, 400, reasons.MALFORMED_JSON)
                )
            except Exception:  # a parser bug must cost this request only
                logger.exception("torchship handler failed while reading one request")
                responses[idx] = self._fail(context, record, idx, BadRequest(INTERNAL_ERROR, 500))
        record.add_phase("preprocess", time.perf_counter() - started)
        if parsed:
            outcomes = self._answer(list(parsed.values()), record)
            answered = time.perf_counter()
            for (idx, request), outcome in zip(parsed.items(), outcomes, strict=True):
                texts = len(request.items)
                if isinstance(outcome, BadRequest):
                    responses[idx] = self._fail(context, record, idx, outcome, texts)
                else:
                    responses[idx] = self._respond(context, record, idx, outcome, texts)
            record.add_phase("postprocess", time.perf_counter() - answered)
        self.metrics.report(record)
        logger.debug("batch of %d handled in %.1f ms", len(data), (time.perf_counter() - started) * 1e3)
        return responses

    def _answer(self, requests: list[ParsedRequest], record: BatchRecord) -> list[Any]:
        """predict(), and if the shared model run raises, each request alone, so that only the request
        that breaks the model (or, with a broken model, each request) gets a 500. Only a run that answered
        adds to the batch's record."""
        attempt = BatchRecord(size=record.size)
        try:
            outcomes = predict(self.task, requests, attempt)
        except Exception:  # a bug or a broken model: keep the worker alive
            logger.exception("torchship handler failed on a batch of %d requests", len(requests))
            if len(requests) == 1:
                return [BadRequest(MODEL_ERROR, status=500, reason=reasons.MODEL_ERROR)]
            return [self._answer([request], record)[0] for request in requests]
        record.merge(attempt)
        return outcomes

    def _respond(
        self, context, record: BatchRecord, idx: int, result: Any, texts: int
    ) -> bytes | dict[str, Any]:
        """The result as compact JSON bytes (TorchServe would indent it), or this request's error."""
        try:
            payload = compact_json(result)
        except (TypeError, ValueError):  # NaN/infinity from the model is not JSON; say so, keep going
            logger.exception("torchship handler produced a result that is not JSON")
            message = "the model produced a value that is not valid JSON"
            return self._fail(context, record, idx, BadRequest(message, 500, reasons.INVALID_OUTPUT), texts)
        if len(payload) > self.max_response_bytes:
            too_large = over_budget(
                f"the response would be {len(payload)} bytes",
                self.max_response_bytes,
                "bytes",
                "serve.max_response_bytes",
                "send fewer texts per request",
            )
            return self._fail(context, record, idx, too_large, texts)
        record.outcome(200, reasons.OK, texts)
        context.set_response_content_type(idx, JSON)
        return payload

    @staticmethod
    def _fail(context, record: BatchRecord, idx: int, error: BadRequest, texts: int = 0) -> bytes:
        """This request's error answer, counted by its status and reason."""
        record.outcome(error.status, error.reason, texts)
        # The status line gets the standard reason (it must stay ASCII); the JSON body has the details.
        context.set_response_status(error.status, _REASONS.get(error.status, "Error"), idx)
        context.set_response_content_type(idx, JSON)
        return compact_json(error_body(error.status, error.message))


def compact_json(value: Any) -> bytes:
    """JSON without the indentation TorchServe adds (a third of an embedding's bytes); NaN is refused."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _headers(context, idx: int) -> dict[str, Any]:
    try:
        return context.get_all_request_header(idx) or {}
    except (AttributeError, IndexError, TypeError):
        return {}


_service = TextHandler()


def handle(data, context):
    if not _service.initialized:
        _service.initialize(context)
        if data is None:
            return None
    return _service.handle(data, context)
