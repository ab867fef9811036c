"""The torchscript backend: torch.jit.trace + torch.jit.freeze of the tensor-returning wrapper.

A trace records one execution; if the model's control flow depends on the sequence length, the trace
silently bakes that length in. So the dynamic trace is run at other lengths and batch sizes against the
eager model. If it holds, one module serves every shape ("dynamic"); if not and `compile.buckets` is set,
one module is traced per bucket and batch size ("per-bucket", see fixed_shape.py); otherwise the stage
refuses. `torch.jit.optimize_for_inference` is applied only where the result still matches.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from torchship.compile.common import compare_at, example_batch, trace_error, write_manifest
from torchship.compile.fixed_shape import compile_fixed_shapes
from torchship.errors import CompileError
from torchship.pipeline import StageContext

MODEL_FILE = "model.pt"


def trace_frozen(eager: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings are exactly what the probes below check for real; the deprecation notice is noise.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(eager, (ids, mask), check_trace=False)
        return torch.jit.freeze(traced.eval())


def probe_inputs(tokenizer, max_length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches at lengths and sizes other than the traced 2 x 16."""
    shapes = [(5, min(max_length, 37)), (1, 2), (2, max_length)]
    return [example_batch(tokenizer, batch, length, seed=10 + i) for i, (batch, length) in enumerate(shapes)]


def _optimized(module, eager, probes, atol: float, rtol: float):
    """optimize_for_inference where it keeps parity on every probe shape; else the frozen module."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidate = torch.jit.optimize_for_inference(module)
    except Exception:  # an optimization pass that cannot handle this graph: keep the frozen module
        return module, False
    if all(compare_at(eager, candidate, ids, mask, atol, rtol)["ok"] for ids, mask in probes):
        return candidate, True
    return module, False


def compile_torchscript(ctx: StageContext, eager, tokenizer) -> dict[str, Any]:
    spec = ctx.spec
    atol, rtol = spec.validate.atol, spec.validate.rtol
    ids, mask = example_batch(tokenizer, 2, min(16, spec.compile.known_max_length()))
    ctx.progress(f"tracing at batch {ids.shape[0]} x length {ids.shape[1]}")
    try:
        module = trace_frozen(eager, ids, mask)
    except Exception as exc:  # torch raises many types here; the message is what the user needs
        raise trace_error("torch.jit.trace", exc) from None
    ctx.progress("checking the trace at other lengths and batch sizes")
    inputs = probe_inputs(tokenizer, spec.compile.known_max_length())
    probes = [compare_at(eager, module, i, m, atol, rtol) for i, m in inputs]
    details: dict[str, Any] = {"backend": "torchscript", "traced_shape": list(ids.shape), "probes": probes}
    if all(p["ok"] for p in probes):
        optimized = False
        if spec.compile.optimize:
            ctx.progress("trying torch.jit.optimize_for_inference")
            module, optimized = _optimized(module, eager, inputs, atol, rtol)
        torch.jit.save(module, str(ctx.out_dir / MODEL_FILE))
        manifest = {"format": "torchscript", "file": MODEL_FILE}
        details |= {"mode": "dynamic", "dynamic_shapes": True, "optimized": optimized}
    else:
        bad = next(p for p in probes if not p["ok"])
        where = f"batch {bad['batch']} x length {bad['length']}"
        why = (
            bad.get("error") or f"it differs from the source model by {bad['max_abs_diff']:.3g} (atol {atol})"
        )
        if not spec.compile.buckets:
            raise CompileError(
                f"the traced model is not shape-dynamic: at {where} {why}",
                hint="The model's control flow depends on the input shape. Set compile.buckets (one trace "
                "per bucket and batch size) or compile.backend: eager.",
            )
        ctx.progress(f"the dynamic trace fails at {where}: tracing one module per bucket and batch size")
        manifest = compile_fixed_shapes(
            trace_frozen,
            eager,
            tokenizer,
            spec.compile.bucket_lengths(),
            spec.compile.fixed_batch_sizes(),
            ctx.out_dir,
            atol,
            rtol,
            ctx.progress,
        )
        details |= {
            "mode": "per-bucket",
            "dynamic_shapes": False,
            "dynamic_failure": f"{where}: {why}",
            "shapes": manifest["shapes"],
            "bucket_probes": manifest.pop("probes"),
        }
    write_manifest(ctx.out_dir, manifest)
    return details | {"format": manifest["format"], "torch": torch.__version__}
