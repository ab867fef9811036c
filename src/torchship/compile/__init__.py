"""The compile stage: turn the fetched Hugging Face model into what the handler loads, by backend.

Every backend writes `compiled.json` (handlers/loading.py reads it) plus its model files.
"""

from __future__ import annotations

from typing import Any

from torchship.compile.eager import compile_eager
from torchship.compile.neuron import compile_neuron
from torchship.compile.torchscript import compile_torchscript
from torchship.modeling import load_source_model, load_tokenizer
from torchship.pipeline import StageContext
from torchship.sources import MODEL_DIRNAME

BACKENDS = {"torchscript": compile_torchscript, "neuron": compile_neuron, "eager": compile_eager}


def run_compile(ctx: StageContext) -> dict[str, Any]:
    model_dir = ctx.input_dir("fetch") / MODEL_DIRNAME
    ctx.progress("loading the source model and checking it fits the task")
    eager = load_source_model(model_dir, ctx.spec.task, ctx.spec.spec_path)
    tokenizer = load_tokenizer(model_dir)
    return BACKENDS[ctx.spec.compile.backend](ctx, eager, tokenizer)


def summarize_compile(details: dict[str, Any]) -> str:
    mode = details.get("mode")
    if mode == "dynamic":
        shape = "x".join(map(str, details.get("traced_shape", [])))
        extra = " · optimized" if details.get("optimized") else ""
        return f"{details.get('backend')} · traced {shape} · dynamic shapes{extra}"
    if mode == "per-bucket":
        return f"{details.get('backend')} · {len(details.get('shapes', []))} fixed-shape modules (bucket x batch)"
    return f"{details.get('backend')} · no compilation"
