"""The handler config a model is served with, built from its spec and the fetched model.

Shared by the validate stage (which runs the handler code in-process), the package stage (which writes
it into the .mar) and verify: no stage imports another stage for it. Keys and the handler's own defaults
are in handlers/config.py; the spec's defaults stay in spec.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torchship.errors import SpecError
from torchship.handlers.config import HandlerConfig
from torchship.handlers.loading import compiled_lengths
from torchship.spec import ModelSpec
from torchship.tasks import task_definition

# Where the package stage puts the compiled model and the tokenizer inside the .mar.
COMPILED_DIR = "compiled"
TOKENIZER_DIR = "tokenizer"


def handler_settings(spec: ModelSpec, model_dir: Path, compiled_dir: Path | None = None) -> HandlerConfig:
    """The handler config for the packaged .mar. `compiled_dir`: the compile stage's outputs, whose
    fixed-shape lengths (if any) become the handler's padding buckets."""
    if spec.compile.max_length is None:  # the stages fit it to the model first (modeling.fit_to_model)
        raise SpecError(f"{spec.spec_path}: compile.max_length is not known before the model is fetched")
    fixed_lengths = compiled_lengths(compiled_dir) if compiled_dir is not None else None
    buckets = fixed_lengths or spec.compile.buckets
    return HandlerConfig(
        task=spec.task,
        compiled_dir=COMPILED_DIR,
        tokenizer_dir=TOKENIZER_DIR,
        max_length=spec.compile.max_length,
        truncation=spec.serve.truncation,
        compute_batch_size=spec.compile.batch_size,
        buckets=tuple(buckets) if buckets else None,
        workers=spec.serve.workers,
        threads=spec.serve.threads,  # None: the serving host's cores divided by workers
        max_texts_per_request=spec.serve.max_texts_per_request,
        max_body_bytes=spec.serve.max_body_bytes,
        max_tokens_per_request=spec.serve.max_tokens_per_request,
        # The handler answers 413 for a larger response; TorchServe's max_response_size is the same key.
        max_response_bytes=spec.serve.max_response_bytes,
        settings=task_definition(spec.task).settings(spec, model_dir).to_dict(),
    )


def in_process_settings(spec: ModelSpec, model_dir: Path, compiled_dir: Path | None = None) -> HandlerConfig:
    """The same config for running the handler code on the fetched Hugging Face model dir, where the
    tokenizer files sit in the model dir itself."""
    return dataclasses.replace(handler_settings(spec, model_dir, compiled_dir), tokenizer_dir=".")
