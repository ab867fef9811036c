"""The torchscript backend: torch.jit.trace + torch.jit.freeze of the source model as a NamedIO
(positional inputs in compiled.json's "inputs" order, a tuple in its "outputs" order).

A trace records one execution; if the model's control flow depends on the sequence length, the trace
silently bakes that length in. So the dynamic trace is run at other lengths and batch sizes against the
eager model, every named output compared. If it holds, one module serves every shape ("dynamic"); if not
and `compile.buckets` is set, one module is traced per bucket and batch size ("per-bucket", see
fixed_shape.py); otherwise the stage refuses. `torch.jit.optimize_for_inference` is applied only where
the result still matches.

`compile.precision: bf16` traces the model cast to bfloat16 (Bfloat16IO; its float outputs cast back to
float32, so the handler and the gate see fp32 tensors as from any backend). The trace is checked against
that same bf16 model, so the checks above keep their meaning; how far bf16 moves the answers from the
fp32 source is the gate's task-level check (validate/precision.py).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch

from torchship.compile.common import (
    broken_probe,
    compare_at,
    example_batch,
    positional,
    probe_failure,
    trace_error,
    write_manifest,
)
from torchship.compile.fixed_shape import compile_fixed_shapes
from torchship.errors import CompileError
from torchship.handlers.model_io import Features, ModelIO, NamedIO, positional_forward
from torchship.pipeline import StageContext

MODEL_FILE = "model.pt"


class Bfloat16IO(NamedIO):
    """The source model with its weights in bfloat16; floating outputs come back as float32."""

    def __init__(self, source: NamedIO):
        super().__init__(copy.deepcopy(source.model).to(torch.bfloat16).eval(), source.io)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(out.float() if out.is_floating_point() else out for out in super().forward(*tensors))


def trace_frozen(eager: NamedIO, features: Features) -> torch.jit.ScriptModule:
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings are exactly what the probes below check for real; the deprecation notice is noise.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(eager, positional(features, eager.io), check_trace=False)
        return torch.jit.freeze(traced.eval())


def probe_inputs(tokenizer, io: ModelIO, max_length: int) -> list[Features]:
    """Batches at lengths and sizes other than the traced 2 x 16."""
    shapes = [(5, min(max_length, 37)), (1, 2), (2, max_length)]
    return [
        example_batch(tokenizer, io, batch, length, seed=10 + i) for i, (batch, length) in enumerate(shapes)
    ]


def _optimized(module, eager: NamedIO, probes: list[Features], atol: float, rtol: float):
    """optimize_for_inference where it keeps parity on every probe shape; else the frozen module."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidate = torch.jit.optimize_for_inference(module)
    except Exception:  # an optimization pass that cannot handle this graph: keep the frozen module
        return module, False
    forward = positional_forward(candidate, eager.io)
    if all(compare_at(eager.named, forward, features, atol, rtol)["ok"] for features in probes):
        return candidate, True
    return module, False


def compile_torchscript(ctx: StageContext, source: NamedIO, tokenizer) -> dict[str, Any]:
    spec = ctx.spec
    atol, rtol = spec.validate.atol, spec.validate.rtol
    bf16 = spec.compile.precision == "bf16"
    # What is traced, and what the trace is checked against: the source model, or its bf16 cast.
    eager = Bfloat16IO(source) if bf16 else source
    if bf16:
        ctx.progress("casting the model to bfloat16 (the CPU computes bf16 natively)")
    traced_at = example_batch(tokenizer, eager.io, 2, min(16, spec.compile.known_max_length()))
    traced_shape = list(traced_at["input_ids"].shape)
    ctx.progress(f"tracing at batch {traced_shape[0]} x length {traced_shape[1]}")
    try:
        module = trace_frozen(eager, traced_at)
    except Exception as exc:  # torch raises many types here; the message is what the user needs
        raise trace_error("torch.jit.trace", exc) from None
    ctx.progress("checking the trace at other lengths and batch sizes")
    inputs = probe_inputs(tokenizer, eager.io, spec.compile.known_max_length())
    traced = positional_forward(module, eager.io)
    probes = [compare_at(eager.named, traced, features, atol, rtol) for features in inputs]
    details: dict[str, Any] = {"backend": "torchscript", "traced_shape": traced_shape, "probes": probes}
    if all(p["ok"] for p in probes):
        optimized = False
        if spec.compile.optimize:
            ctx.progress("trying torch.jit.optimize_for_inference")
            module, optimized = _optimized(module, eager, inputs, atol, rtol)
        torch.jit.save(module, str(ctx.out_dir / MODEL_FILE))
        manifest: dict[str, Any] = {"format": "torchscript", "file": MODEL_FILE}
        details |= {"mode": "dynamic", "dynamic_shapes": True, "optimized": optimized}
        if bf16:
            details["precision_probes"] = _against_source(source, module, inputs, atol, rtol)
    else:
        bad = next(p for p in probes if not p["ok"])
        where = f"batch {bad['batch']} x length {bad['length']}"
        why = probe_failure(bad, atol)
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
    if bf16:
        manifest["precision"] = "bf16"  # fp32 manifests stay as they were: no key
    write_manifest(ctx.out_dir, manifest, eager.io)
    return (
        details
        | {"format": manifest["format"], "precision": spec.compile.precision, "torch": torch.__version__}
        | eager.io.to_manifest()
    )


def _against_source(
    source: NamedIO, module: Any, inputs: list[Features], atol: float, rtol: float
) -> list[dict[str, Any]]:
    """The bf16 module against the fp32 source model: how far it moved, recorded; only a module that
    fails to run or gives non-finite or misshapen outputs is refused here."""
    forward = positional_forward(module, source.io)
    probes = [compare_at(source.named, forward, features, atol, rtol) for features in inputs]
    broken = next((p for p in probes if broken_probe(p)), None)
    if broken is not None:
        raise CompileError(
            f"the bf16 trace does not run like the source model at batch {broken['batch']} x length "
            f"{broken['length']}: {probe_failure(broken, atol)}",
            hint="Serve this model at compile.precision: fp32.",
        )
    return probes
