"""The neuron backend: AWS Neuron compilation, one fixed-shape module per bucket and batch size.

inf2/trn1 use `torch_neuronx.trace` (torch-neuronx); inf1 uses `torch.neuron.trace` (torch-neuron,
retired by AWS, kept for existing fleets). Both packages come from AWS's own package index, not PyPI,
so they are imported only when this backend is chosen. Each module takes the model's inputs positionally
(compiled.json "inputs": token types too where the model has them). Neuron graphs accept only the exact
shape they were compiled for: every input of a partial batch is padded, and each output sliced back, at
run time (handlers/loading.FixedShapeForward).
"""

from __future__ import annotations

import importlib
from typing import Any

from torchship.compile.common import positional, trace_error, write_manifest
from torchship.compile.fixed_shape import compile_fixed_shapes
from torchship.errors import CompileError
from torchship.handlers.model_io import Features, NamedIO
from torchship.pipeline import StageContext

NEURON_INDEX = "https://pip.repos.neuron.amazonaws.com"
_PACKAGES = {
    "inf2": ("torch_neuronx", "neuronx", "torch-neuronx neuronx-cc"),
    "trn1": ("torch_neuronx", "neuronx", "torch-neuronx neuronx-cc"),
    "inf1": ("torch.neuron", "neuron", "torch-neuron neuron-cc"),
}


def import_neuron(target: str):
    module_name, runtime, packages = _PACKAGES[target]
    try:
        return importlib.import_module(module_name), runtime
    except ImportError:
        raise CompileError(
            f"compile.backend neuron (target {target}) needs {module_name}, which is not installed",
            hint=f"On a Neuron instance (Neuron DLAMI or container): pip install {packages} "
            f"--extra-index-url {NEURON_INDEX}  (AWS's index, not PyPI; the torch version must match).",
        ) from None


def compile_neuron(ctx: StageContext, eager: NamedIO, tokenizer) -> dict[str, Any]:
    spec = ctx.spec
    neuron, runtime = import_neuron(spec.compile.neuron.target)
    args = list(spec.compile.neuron.compiler_args)

    def trace(module: NamedIO, features: Features):
        inputs = positional(features, module.io)
        try:
            if runtime == "neuronx":
                return neuron.trace(module, inputs, compiler_args=args or None)
            return neuron.trace(module, example_inputs=list(inputs), compiler_args=args or None)
        except Exception as exc:
            raise trace_error(f"{neuron.__name__}.trace", exc) from None

    manifest = compile_fixed_shapes(
        trace,
        eager,
        tokenizer,
        spec.compile.bucket_lengths(),
        spec.compile.fixed_batch_sizes(),
        ctx.out_dir,
        spec.validate.atol,
        spec.validate.rtol,
        ctx.progress,
    )
    probes = manifest.pop("probes")
    manifest["runtime"] = runtime
    write_manifest(ctx.out_dir, manifest, eager.io)
    return {
        "backend": "neuron",
        "target": spec.compile.neuron.target,
        "format": "fixed-shape",
        "mode": "per-bucket",
        "dynamic_shapes": False,
        "shapes": manifest["shapes"],
        "bucket_probes": probes,
    } | eager.io.to_manifest()
