"""What every compile backend shares: the source model, example inputs, checks against the eager model,
and the `compiled.json` manifest the handler loads from.

Backends trace or export the source model as a `NamedIO` (handlers/model_io.py): positional inputs in
`io.inputs` order, a tuple of outputs in `io.outputs` order. Checks run Forwards (features by name ->
outputs by name) and compare every named output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from torchship.errors import CompileError
from torchship.handlers.encoder import pad_id_of, pad_type_id_of
from torchship.handlers.loading import COMPILED_MANIFEST
from torchship.handlers.model_io import Features, Forward, ModelIO, pad_features
from torchship.synthetic import feature_rows


def example_batch(tokenizer, io: ModelIO, batch: int, length: int, seed: int = 0) -> Features:
    """A (batch x length) input of real token ids, one tensor per input the model takes; rows after the
    first are shorter, so the padding path (attention mask zeros) is part of what gets traced or checked.
    Where the model takes token types, the second half of each row has type 1 (a pair), so traces and
    checks see token types that matter."""
    lengths = [length] + [max(2, length // (k + 2)) for k in range(batch - 1)]
    rows = feature_rows(tokenizer, lengths, seed=seed, token_types=io.token_types)
    return pad_features(
        rows, io.inputs, pad_id_of(tokenizer), width=length, pad_type_id=pad_type_id_of(tokenizer)
    )


def positional(features: Features, io: ModelIO) -> tuple[torch.Tensor, ...]:
    """The features as the positional tuple a trace or export takes (io.inputs order)."""
    return tuple(features[name] for name in io.inputs)


def compare_at(
    eager: Forward, compiled: Forward, features: Features, atol: float, rtol: float
) -> dict[str, Any]:
    """Run both on the same input; the probe record says whether EVERY named output agrees within
    tolerance, each output's max |difference| ("outputs"), the worst one and its name."""
    ids = features["input_ids"]
    shape = {"batch": int(ids.shape[0]), "length": int(ids.shape[1])}
    with torch.inference_mode():
        expected = eager(features)
        try:
            got = compiled(features)
        except RuntimeError as exc:
            return shape | {"ok": False, "error": str(exc).splitlines()[0]}
    diffs: dict[str, float] = {}
    ok = True
    for name, want in expected.items():
        value = got.get(name)
        if value is None or value.shape != want.shape:
            diffs[name] = float("inf")
            ok = False
            continue
        diffs[name] = (value.float() - want.float()).abs().max().item()
        ok = ok and torch.allclose(value.float(), want.float(), atol=atol, rtol=rtol)
    worst = max(diffs, key=lambda name: diffs[name])
    return shape | {"max_abs_diff": diffs[worst], "worst_output": worst, "outputs": diffs, "ok": ok}


def broken_probe(probe: dict[str, Any]) -> bool:
    """A probe whose compiled model failed to run, or gave a missing, misshapen or non-finite output: broken
    at any precision (a reduced precision's other differences are for the gate to judge)."""
    return bool(probe.get("error")) or not math.isfinite(probe["max_abs_diff"])


def probe_failure(probe: dict[str, Any], atol: float) -> str:
    """Why a probe failed, for error messages: the error, or the output that differs and by how much."""
    if probe.get("error"):
        return str(probe["error"])
    return (
        f"its output {probe['worst_output']!r} differs from the source model by "
        f"{probe['max_abs_diff']:.3g} (atol {atol})"
    )


def trace_error(backend: str, exc: Exception) -> CompileError:
    return CompileError(
        f"{backend} tracing failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        hint="The model must run with its named inputs (input_ids, attention_mask and, where it has them, "
        "token_type_ids) and return its task's outputs as tensors; compile.backend: eager serves it "
        "without tracing.",
    )


def write_manifest(out_dir: Path, manifest: dict[str, Any], io: ModelIO) -> None:
    """compiled.json: the backend's format keys and the model's input and output names."""
    (out_dir / COMPILED_MANIFEST).write_text(json.dumps(manifest | io.to_manifest(), indent=2) + "\n")
