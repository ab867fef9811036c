"""TorchServe entry point: `handle(data, context)`.

One bad request must never fail its neighbours: each request is parsed on its own, a `BadRequest` sets
that request's status through `context.set_response_status(code, phrase, idx)`, and the valid texts of
the whole server-side batch are tokenized and run together.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from .encoder import Encoder, Forward, pad_id_of
from .loading import load_forward
from .requests import BadRequest, Limits, ParsedRequest, parse_request
from .tasks import TASKS, Task, read_model_config

logger = logging.getLogger(__name__)

JSON = "application/json"
_REASONS = {400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error"}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = _REASONS.get(status, "Error").replace(" ", "")
    return {"code": status, "type": kind, "message": message}


def build_task(
    model_dir: Path, config: dict[str, Any], forward: Forward | None = None, compiled_dir: Path | None = None
) -> Task:
    """The task runner for a model dir: the extracted .mar; or, in-process, a Hugging Face model dir with
    the compiled model in `compiled_dir` or any `forward` (e.g. the eager source model). Shared by
    TorchServe and torchship's own checks, so both run the same code."""
    from transformers import AutoTokenizer

    task_name = config.get("task", "embeddings")
    if task_name not in TASKS:
        raise ValueError(
            f"task {task_name!r} is not supported by this handler; supported: {', '.join(TASKS)}"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / config.get("tokenizer_dir", ".")))
    if forward is None:
        compiled = compiled_dir or model_dir / config.get("compiled_dir", "compiled")
        forward = load_forward(compiled, task_name, pad_id_of(tokenizer))
    encoder = Encoder(
        forward=forward,
        tokenizer=tokenizer,
        max_length=int(config["max_length"]),
        truncation=bool(config.get("truncation", True)),
        max_batch=int(config.get("compute_batch_size", 8)),
        buckets=config.get("buckets"),
    )
    return TASKS[task_name](encoder, config, read_model_config(model_dir))


def predict(task: Task, requests: list[ParsedRequest]) -> list[Any]:
    """Results for parsed requests, in order; a request that fails a check gets its BadRequest instead."""
    flat = [text for r in requests for text in r.texts]
    tokenized = task.encoder.tokenize(flat, offsets=task.needs_offsets)
    outcomes: list[Any] = []
    texts: list[str] = []
    rows: list[int] = []
    options: list[dict[str, Any]] = []
    spans: list[tuple[int, int]] = []
    start = 0
    for request in requests:
        end = start + len(request.texts)
        try:
            task.check_options(request.options)
            for i in range(start, end):
                task.encoder.check_length(tokenized, i)
                task.check_text(flat[i])
        except BadRequest as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
            spans.append((len(texts), len(texts) + end - start))
            texts.extend(request.texts)
            rows.extend(range(start, end))
            options.extend([request.options] * (end - start))
        start = end
    results = task.run(texts, tokenized.encoding, rows, options) if texts else []
    span_iter = iter(spans)
    for position, (request, outcome) in enumerate(zip(requests, outcomes, strict=True)):
        if outcome is None:
            first, last = next(span_iter)
            values = results[first:last]
            outcomes[position] = values[0] if request.single else values
    return outcomes


class TextHandler:
    """Loads the traced model and tokenizer from the extracted .mar and answers batches."""

    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        config = dict((context.model_yaml_config or {}).get("handler") or {})
        # Each worker gets its own share of the cores; otherwise every worker sizes its pool from the
        # whole host and several workers oversubscribe the CPU.
        # TORCHSHIP_WORKERS / TORCHSHIP_THREADS (set by the image's deployment from its CPU limit) win over
        # the .mar's values: a container sees the host's cores, not its own share.
        workers = int(os.environ.get("TORCHSHIP_WORKERS") or config.get("workers") or 1)
        threads = int(
            os.environ.get("TORCHSHIP_THREADS")
            or config.get("threads")
            or max(1, (os.cpu_count() or 1) // workers)
        )
        torch.set_num_threads(threads)
        self.task = build_task(model_dir, config)
        self.limits = Limits(
            max_texts=int(config.get("max_texts_per_request", 64)),
            max_body_bytes=int(config.get("max_body_bytes", 1024 * 1024)),
        )
        # One warm-up batch so the first real request does not pay for the JIT's profiling runs.
        predict(self.task, [ParsedRequest(["warm up", "a warm-up text"], single=False)])
        self.initialized = True
        logger.info("torchship handler ready: task=%s threads=%d", config.get("task"), threads)

    def handle(self, data: list[dict[str, Any]] | None, context) -> list[Any] | None:
        if data is None:  # TorchServe calls the function entry point with None to initialize
            return None
        started = time.perf_counter()
        responses: list[Any] = [None] * len(data)
        parsed: dict[int, ParsedRequest] = {}
        for idx, item in enumerate(data):
            try:
                body = item.get("body") if item.get("body") is not None else item.get("data")
                parsed[idx] = parse_request(body, _headers(context, idx), self.limits, self.task.options)
            except BadRequest as exc:
                responses[idx] = self._fail(context, idx, exc.status, exc.message)
        if parsed:
            try:
                for idx, result in zip(parsed, predict(self.task, list(parsed.values())), strict=True):
                    if isinstance(result, BadRequest):
                        responses[idx] = self._fail(context, idx, result.status, result.message)
                    else:
                        responses[idx] = result
                        context.set_response_content_type(idx, JSON)
            except Exception:  # a bug or a broken model: answer 500 per request, keep the worker alive
                logger.exception("torchship handler failed on a batch of %d requests", len(parsed))
                for idx in parsed:
                    responses[idx] = self._fail(context, idx, 500, "internal error while running the model")
        logger.debug("batch of %d handled in %.1f ms", len(data), (time.perf_counter() - started) * 1e3)
        return responses

    @staticmethod
    def _fail(context, idx: int, status: int, message: str) -> dict[str, Any]:
        # The status line gets the standard reason (it must stay ASCII); the JSON body has the details.
        context.set_response_status(status, _REASONS.get(status, "Error"), idx)
        context.set_response_content_type(idx, JSON)
        return error_body(status, message)


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
