"""The onnx backend: torch.onnx export with dynamic batch and sequence axes, run by ONNX Runtime.

Why ONNX Runtime: on CPU it runs the same fp32 graph faster than the frozen TorchScript module (MiniLM,
2 threads, bench/backends.py: 1.09x at batch 8 x 14 tokens, 1.41x at 1 x 16, 1.27x at 8 x 200), with no
loss: the weights are the model's own fp32 weights, so the gate holds it to the same tolerances as every
backend.

The exporter is torch's TorchScript-based one (`dynamo=False`): it exports the attention models torchship
serves with both axes dynamic in about a second, and needs only the `onnx` package (the dynamo exporter
needs onnxscript and re-traces through torch.export). The export is checked against the eager model
with ONNX Runtime itself at shapes other than the one exported, like the torchscript backend's probes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from torchship.compile.common import compare_at, example_batch, trace_error, write_manifest
from torchship.compile.torchscript import probe_inputs
from torchship.errors import CompileError
from torchship.handlers.loading import INPUT_NAMES, OnnxForward
from torchship.pipeline import StageContext

MODEL_FILE = "model.onnx"
OPSET = 17  # supported by every onnxruntime since 1.14; LayerNormalization is a single op from 17 on
SERVE_REQUIREMENTS = ("onnxruntime",)


def export_onnx(eager: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, path: Path) -> None:
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings are what the probes below check for real.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            eager,
            (ids, mask),
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=["output"],
            dynamic_axes={INPUT_NAMES[0]: axes, INPUT_NAMES[1]: axes, "output": axes},
            opset_version=OPSET,
        )


def require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise CompileError(
            f"compile.backend onnx needs the onnx and onnxruntime packages ({exc.name} is not installed)",
            hint="pip install onnx onnxruntime (torchship's requirements list both), or choose "
            "compile.backend: torchscript.",
        ) from None


def compile_onnx(ctx: StageContext, eager, tokenizer) -> dict[str, Any]:
    spec = ctx.spec
    require_onnxruntime()
    atol, rtol = spec.validate.atol, spec.validate.rtol
    ids, mask = example_batch(tokenizer, 2, min(16, spec.compile.known_max_length()))
    path = ctx.out_dir / MODEL_FILE
    ctx.progress(f"exporting to ONNX (opset {OPSET}) at batch {ids.shape[0]} x length {ids.shape[1]}")
    try:
        export_onnx(eager, ids, mask, path)
    except Exception as exc:  # the exporter raises many types; the message is what the user needs
        raise trace_error("torch.onnx.export", exc) from None
    ctx.progress("checking the ONNX model in ONNX Runtime at other lengths and batch sizes")
    runtime = OnnxForward(path, threads=torch.get_num_threads())
    inputs = [(ids, mask), *probe_inputs(tokenizer, spec.compile.known_max_length())]
    probes = [compare_at(eager, runtime, i, m, atol, rtol) for i, m in inputs]
    bad = next((p for p in probes if not p["ok"]), None)
    if bad is not None:
        why = (
            bad.get("error") or f"it differs from the source model by {bad['max_abs_diff']:.3g} (atol {atol})"
        )
        raise CompileError(
            f"the ONNX export does not match the source model at batch {bad['batch']} x length "
            f"{bad['length']}: {why}",
            hint="The model's control flow depends on the input shape or uses an op the exporter "
            "changes; choose compile.backend: torchscript (with compile.buckets) or eager.",
        )
    import onnxruntime

    write_manifest(ctx.out_dir, {"format": "onnx", "file": MODEL_FILE})
    return {
        "backend": "onnx",
        "format": "onnx",
        "mode": "dynamic",
        "dynamic_shapes": True,
        "traced_shape": list(ids.shape),
        "probes": probes,
        "opset": OPSET,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }
