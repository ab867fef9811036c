"""In-process outputs of the source (eager) model: what served and compiled outputs must equal."""

from __future__ import annotations

from pathlib import Path

import torch

from torchship.handlers.encoder import Encoder
from torchship.modeling import load_source_model, load_tokenizer
from torchship.spec import ModelSpec
from torchship.tasks import task_output


def source_results(spec: ModelSpec, model_dir: Path, texts: list[str]) -> list[torch.Tensor]:
    """One result per text (e.g. its embedding), computed with the source model in this process."""
    encoder = Encoder(
        forward=load_source_model(model_dir, spec.task),
        tokenizer=load_tokenizer(model_dir),
        max_length=spec.compile.max_length,
        truncation=True,
        max_batch=spec.compile.batch_size,
    )
    return encoder.run(encoder.tokenize(texts).ids, task_output(spec, model_dir))
