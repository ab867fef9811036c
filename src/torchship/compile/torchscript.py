"""The torchscript backend: torch.jit.trace + torch.jit.freeze of the tensor-returning wrapper.

A trace records one execution; if the model's control flow depends on the sequence length, the trace
silently bakes that length in. So after tracing, the module is run at other lengths and batch sizes and
compared to the eager model: the stage states whether the trace is shape-dynamic, and refuses otherwise.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from torchship.errors import CompileError
from torchship.handlers.encoder import pad_rows
from torchship.modeling import load_source_model, load_tokenizer
from torchship.pipeline import StageContext
from torchship.sources import MODEL_DIRNAME
from torchship.synthetic import token_rows

MODEL_FILE = "model.pt"


def _trace_lengths(max_length: int) -> list[int]:
    # Two rows of different lengths, so the padding path (mask zeros) is part of the trace.
    long = min(16, max_length)
    return [long, max(2, long // 2)]


def _probe_shapes(max_length: int) -> list[list[int]]:
    """Batches at lengths and sizes other than the traced ones; each is one probe."""
    return [[min(max_length, 37), 5, 3], [2], [max_length, max(2, max_length // 3)]]


def trace_model(
    eager: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.jit.ScriptModule, int]:
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        traced = torch.jit.trace(eager, (ids, mask), check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
    tracer_warnings = sum(1 for w in caught if issubclass(w.category, torch.jit.TracerWarning))
    return frozen, tracer_warnings


def probe_dynamic(
    eager: torch.nn.Module, compiled: torch.nn.Module, tokenizer, max_length: int, atol: float, rtol: float
) -> list[dict[str, Any]]:
    """Run both at untraced shapes; raise CompileError at the first shape where they disagree."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    probes = []
    for seed, lengths in enumerate(_probe_shapes(max_length)):
        ids, mask = pad_rows(token_rows(tokenizer, lengths, seed=seed + 1), pad_id)
        with torch.inference_mode():
            expected = eager(ids, mask)
            try:
                got = compiled(ids, mask)
            except RuntimeError as exc:
                raise CompileError(
                    f"the traced model fails at batch {len(lengths)} x length {ids.shape[1]}: "
                    f"{str(exc).splitlines()[0]}; the trace is fixed to its traced shape",
                    hint="This model's graph depends on the input shape; trace-per-bucket backends come "
                    "with compile.buckets (see the README).",
                ) from None
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("inf")
        ok = got.shape == expected.shape and torch.allclose(got, expected, atol=atol, rtol=rtol)
        probes.append({"batch": len(lengths), "length": int(ids.shape[1]), "max_abs_diff": diff, "ok": ok})
        if not ok:
            raise CompileError(
                f"the traced model is not shape-dynamic: at batch {len(lengths)} x length {ids.shape[1]} "
                f"it differs from the source model by {diff:.3g} (atol {atol})",
                hint="The model's control flow depends on the sequence length, so one trace cannot serve "
                "every length.",
            )
    return probes


def run_compile(ctx: StageContext) -> dict[str, Any]:
    spec = ctx.spec
    model_dir: Path = ctx.input_dir("fetch") / MODEL_DIRNAME
    ctx.progress("loading the source model")
    eager = load_source_model(model_dir, spec.task)
    tokenizer = load_tokenizer(model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = pad_rows(token_rows(tokenizer, _trace_lengths(spec.compile.max_length)), pad_id)
    ctx.progress(f"tracing at batch {ids.shape[0]} x length {ids.shape[1]}")
    try:
        compiled, tracer_warnings = trace_model(eager, ids, mask)
    except Exception as exc:  # torch raises many types here; the message is what the user needs
        raise CompileError(
            f"torch.jit.trace failed for {spec.name}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            hint="The model must run with (input_ids, attention_mask) and return tensors.",
        ) from None
    ctx.progress("checking the trace at other lengths and batch sizes")
    probes = probe_dynamic(
        eager, compiled, tokenizer, spec.compile.max_length, spec.validate.atol, spec.validate.rtol
    )
    torch.jit.save(compiled, str(ctx.out_dir / MODEL_FILE))
    return {
        "backend": "torchscript",
        "mode": "dynamic",  # one trace serves every length and batch size (probed below)
        "dynamic_shapes": True,
        "traced_shape": list(ids.shape),
        "probes": probes,
        "tracer_warnings": tracer_warnings,
        "torch": torch.__version__,
        "model_file": MODEL_FILE,
    }


def summarize_compile(details: dict[str, Any]) -> str:
    shape = "x".join(map(str, details.get("traced_shape", [])))
    return f"{details.get('backend')} · traced {shape} · {'dynamic shapes' if details.get('dynamic_shapes') else 'fixed shape'}"
