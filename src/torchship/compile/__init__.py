"""The compile stage: turn the fetched Hugging Face model into what the handler loads, by backend.

Every backend compiles the source model as a NamedIO (its named inputs, its task's named outputs) and
writes `compiled.json` (handlers/loading.py reads it: the format, the files, the input and output names)
plus its model files. One
CompileBackend per backend is registered here; adding one is its own module plus a line below
(CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from torchship.compile.backend import CompileBackend
from torchship.compile.eager import compile_eager
from torchship.compile.neuron import compile_neuron
from torchship.compile.onnx import SERVE_REQUIREMENTS as ONNX_SERVE_REQUIREMENTS
from torchship.compile.onnx import compile_onnx
from torchship.compile.precision import require_supported
from torchship.compile.torchscript import compile_torchscript
from torchship.errors import SpecError
from torchship.modeling import load_source_model, load_tokenizer
from torchship.pipeline import StageContext
from torchship.sources import MODEL_DIRNAME

BACKENDS: dict[str, CompileBackend] = {
    backend.name: backend
    for backend in (
        CompileBackend(
            "torchscript",
            "trace and freeze (TorchScript)",
            compile_torchscript,
            ("torchscript", "fixed-shape"),
        ),
        CompileBackend(
            "onnx",
            "export to ONNX, run by ONNX Runtime",
            compile_onnx,
            ("onnx",),
            ONNX_SERVE_REQUIREMENTS,
        ),
        CompileBackend(
            "neuron",
            "AWS Neuron, one module per bucket and batch size",
            compile_neuron,
            ("fixed-shape",),
            ("torch-neuronx (or torch-neuron on inf1)",),
        ),
        CompileBackend("eager", "no compilation (from_pretrained)", compile_eager, ("eager",)),
    )
}


def compile_backend(name: str) -> CompileBackend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise SpecError(
            f"unknown compile.backend {name!r}", hint=f"Choose one of {', '.join(BACKENDS)}."
        ) from None


def run_compile(ctx: StageContext) -> dict[str, Any]:
    backend = compile_backend(ctx.spec.compile.backend)
    require_supported(backend.name, ctx.spec.compile.precision, ctx.spec.spec_path)
    model_dir = ctx.input_dir("fetch") / MODEL_DIRNAME
    ctx.progress("loading the source model and checking it fits the task")
    eager = load_source_model(model_dir, ctx.spec.task, ctx.spec.spec_path)
    tokenizer = load_tokenizer(model_dir)
    io = eager.io
    ctx.progress(
        f"{backend.name}: {backend.description}; inputs {', '.join(io.inputs)} -> {', '.join(io.outputs)}"
    )
    details = backend.compile(ctx, eager, tokenizer)
    return details | {"serve_requirements": list(backend.serve_requirements)}


def summarize_compile(details: dict[str, Any]) -> str:
    return _summary(details) + _precision_summary(details)


def _precision_summary(details: dict[str, Any]) -> str:
    """ " · int8-dynamic (MatMul 12 int8)": a reduced precision and what it quantized; nothing for fp32."""
    precision = details.get("precision", "fp32")
    if precision == "fp32":
        return ""
    quantized = (details.get("quantization") or {}).get("quantized") or {}
    counts = ", ".join(f"{op} {n}" for op, n in sorted(quantized.items()))
    return f" · {precision}" + (f" ({counts} int8)" if counts else "")


def _summary(details: dict[str, Any]) -> str:
    mode = details.get("mode")
    if mode == "dynamic":
        shape = "x".join(map(str, details.get("traced_shape", [])))
        extra = " · optimized" if details.get("optimized") else ""
        fusion = details.get("fusion")
        if isinstance(fusion, dict) and fusion.get("applied"):
            extra += " · fused " + "+".join(f"{n} {op}" for op, n in sorted(fusion.get("fused", {}).items()))
        return f"{details.get('backend')} · traced {shape} · dynamic shapes{extra}"
    if mode == "per-bucket":
        return f"{details.get('backend')} · {len(details.get('shapes', []))} fixed-shape modules (bucket x batch)"
    return f"{details.get('backend')} · no compilation"
