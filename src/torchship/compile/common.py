"""What every compile backend shares: the source model, example inputs, checks against the eager model,
and the `compiled.json` manifest the handler loads from."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torchship.errors import CompileError
from torchship.handlers.encoder import pad_id_of
from torchship.handlers.loading import COMPILED_MANIFEST
from torchship.handlers.model_io import pad_features
from torchship.synthetic import token_rows

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def example_batch(tokenizer, batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (batch x length) input of real token ids; rows after the first are shorter, so the padding path
    (attention mask zeros) is part of what gets traced or checked."""
    lengths = [length] + [max(2, length // (k + 2)) for k in range(batch - 1)]
    rows = [{"input_ids": row} for row in token_rows(tokenizer, lengths, seed=seed)]
    features = pad_features(rows, ("input_ids", "attention_mask"), pad_id_of(tokenizer), width=length)
    return features["input_ids"], features["attention_mask"]


def compare_at(
    eager: Forward, compiled: Forward, ids: torch.Tensor, mask: torch.Tensor, atol: float, rtol: float
) -> dict[str, Any]:
    """Run both on the same input; the probe record says whether they agree within tolerance."""
    with torch.inference_mode():
        expected = eager(ids, mask)
        try:
            got = compiled(ids, mask)
        except RuntimeError as exc:
            return {
                "batch": int(ids.shape[0]),
                "length": int(ids.shape[1]),
                "ok": False,
                "error": str(exc).splitlines()[0],
            }
    same_shape = got.shape == expected.shape
    diff = (got - expected).abs().max().item() if same_shape else float("inf")
    ok = same_shape and torch.allclose(got, expected, atol=atol, rtol=rtol)
    return {"batch": int(ids.shape[0]), "length": int(ids.shape[1]), "max_abs_diff": diff, "ok": ok}


def trace_error(backend: str, exc: Exception) -> CompileError:
    return CompileError(
        f"{backend} tracing failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        hint="The model must run with (input_ids, attention_mask) and return tensors; "
        "compile.backend: eager serves it without tracing.",
    )


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    (out_dir / COMPILED_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
