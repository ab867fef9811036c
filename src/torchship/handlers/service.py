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

from .encoder import Encoder
from .pooling import embed
from .requests import BadRequest, Limits, ParsedRequest, parse_request

logger = logging.getLogger(__name__)

JSON = "application/json"
SUPPORTED_TASKS = ("embeddings",)


_REASONS = {400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error"}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = _REASONS.get(status, "Error").replace(" ", "")
    return {"code": status, "type": kind, "message": message}


class TextHandler:
    """Loads the traced model and tokenizer from the extracted .mar and answers batches."""

    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        config = dict((context.model_yaml_config or {}).get("handler") or {})
        self.configure(model_dir, config)

    def configure(self, model_dir: Path, config: dict[str, Any]) -> None:
        from transformers import AutoTokenizer

        self.task = config.get("task", "embeddings")
        if self.task not in SUPPORTED_TASKS:
            raise ValueError(f"task {self.task!r} is not supported by this handler: {SUPPORTED_TASKS}")
        # Each worker gets its own share of the cores; otherwise every worker sizes its pool from the
        # whole host and several workers oversubscribe the CPU.
        workers = int(config.get("workers") or 1)
        threads = int(config.get("threads") or max(1, (os.cpu_count() or 1) // workers))
        torch.set_num_threads(threads)
        model = torch.jit.load(str(model_dir / config.get("model_file", "model.pt")), map_location="cpu")
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir / config.get("tokenizer_dir", "tokenizer")))
        self.encoder = Encoder(
            forward=model,
            tokenizer=tokenizer,
            max_length=int(config["max_length"]),
            truncation=bool(config.get("truncation", True)),
            max_batch=int(config.get("compute_batch_size", 8)),
            buckets=config.get("buckets"),
        )
        self.limits = Limits(
            max_texts=int(config.get("max_texts_per_request", 64)),
            max_body_bytes=int(config.get("max_body_bytes", 1024 * 1024)),
        )
        self.pooling = config.get("pooling", "mean")
        self.normalize = bool(config.get("normalize", True))
        # One warm-up forward so the first real request does not pay for the JIT's profiling runs.
        self.encoder.run([self.encoder.tokenize(["warm up"]).ids[0]] * 2, self._reduce)
        self.initialized = True
        logger.info("torchship handler ready: task=%s threads=%d model_dir=%s", self.task, threads, model_dir)

    def _reduce(self, output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return embed(output, mask, self.pooling, self.normalize)

    def predict_texts(self, requests: list[ParsedRequest]) -> list[Any]:
        """Results for already-parsed requests; a request whose text is too long gets a BadRequest."""
        flat = [text for r in requests for text in r.texts]
        tokenized = self.encoder.tokenize(flat)
        results: list[Any] = []
        rows: list[list[int]] = []
        spans: list[tuple[int, int] | BadRequest] = []
        start = 0
        for request in requests:
            end = start + len(request.texts)
            try:
                for i in range(start, end):
                    self.encoder.check_length(tokenized, i)
                spans.append((len(rows), len(rows) + end - start))
                rows.extend(tokenized.ids[start:end])
            except BadRequest as exc:
                spans.append(exc)
            start = end
        vectors = self.encoder.run(rows, self._reduce) if rows else []
        for request, span in zip(requests, spans, strict=True):
            if isinstance(span, BadRequest):
                results.append(span)
                continue
            values = [v.tolist() for v in vectors[span[0] : span[1]]]
            results.append(values[0] if request.single else values)
        return results

    def handle(self, data: list[dict[str, Any]] | None, context) -> list[Any] | None:
        if data is None:  # TorchServe calls the function entry point with None to initialize
            return None
        started = time.perf_counter()
        responses: list[Any] = [None] * len(data)
        parsed: dict[int, ParsedRequest] = {}
        for idx, item in enumerate(data):
            try:
                body = item.get("body") if item.get("body") is not None else item.get("data")
                parsed[idx] = parse_request(body, _headers(context, idx), self.limits)
            except BadRequest as exc:
                responses[idx] = self._fail(context, idx, exc.status, exc.message)
        if parsed:
            try:
                for idx, result in zip(parsed, self.predict_texts(list(parsed.values())), strict=True):
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
