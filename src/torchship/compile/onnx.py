"""The onnx backend: torch.onnx export with dynamic batch and sequence axes, run by ONNX Runtime.

The graph's inputs and outputs carry the model's names (compiled.json "inputs"/"outputs": input_ids,
attention_mask, token_type_ids where the model has them; last_hidden_state, logits, or start_logits and
end_logits), each input with dynamic batch and sequence axes, each output with a dynamic batch axis (and
sequence axis when it is per token); handlers/loading.OnnxForward feeds and reads them by name.

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
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
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
from torchship.compile.onnx_fusion import Fusion, fuse_graph
from torchship.compile.onnx_quantize import Quantization, calibration_batches, quantize_onnx
from torchship.compile.torchscript import probe_inputs
from torchship.errors import CompileError
from torchship.handlers.loading import OnnxForward
from torchship.handlers.model_io import Features, NamedIO
from torchship.pipeline import StageContext

MODEL_FILE = "model.onnx"
PLAIN_FILE = "model-plain.onnx"  # the export before fusion; gone once model.onnx is chosen
FP32_FILE = "model-fp32.onnx"  # the checked fp32 graph while it is quantized; gone after
INT8 = ("int8-dynamic", "int8-static")
OPSET = 17  # supported by every onnxruntime since 1.14; LayerNormalization is a single op from 17 on
SERVE_REQUIREMENTS = ("onnxruntime",)


def dynamic_axes(eager: NamedIO, features: Features) -> dict[str, dict[int, str]]:
    """Batch and sequence axes of every input; of every output, the batch axis, and the sequence axis
    where the output is per token. Per token means its second axis follows the input's length (run at
    two lengths: a classifier with as many labels as the example has tokens must not look per token)."""
    per_position = {0: "batch", 1: "sequence"}
    axes = {name: per_position for name in eager.io.inputs}
    shorter = {name: tensor[:, :-1] for name, tensor in features.items()}
    with torch.no_grad():
        at_length, at_shorter = eager.named(features), eager.named(shorter)
    for name, value in at_length.items():
        follows_length = value.dim() >= 2 and value.shape[1] != at_shorter[name].shape[1]
        axes[name] = per_position if follows_length else {0: "batch"}
    return axes


def export_onnx(eager: NamedIO, features: Features, path: Path) -> None:
    axes = dynamic_axes(eager, features)
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings are what the probes below check for real.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            eager,
            positional(features, eager.io),
            str(path),
            dynamo=False,
            input_names=list(eager.io.inputs),
            output_names=list(eager.io.outputs),
            dynamic_axes=axes,
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


def _probes(
    eager: NamedIO, path: Path, inputs: list[Features], atol: float, rtol: float
) -> list[dict[str, Any]]:
    """The ONNX graph at `path` in ONNX Runtime against the source model, at the exported shape and others."""
    runtime = OnnxForward(path, eager.io, threads=torch.get_num_threads())
    return [compare_at(eager.named, runtime, features, atol, rtol) for features in inputs]


def model_config(eager: NamedIO) -> dict[str, Any]:
    config = getattr(eager.model, "config", None)
    return config.to_dict() if config is not None else {}


@contextmanager
def plain_attention(eager: NamedIO) -> Iterator[None]:
    """The model with eager (matmul-softmax-matmul) attention while it is exported: the form ONNX Runtime's
    attention fusion recognises. The same math as SDPA; the probes and the gate check the result."""
    model = eager.model
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = getattr(model, "set_attn_implementation", None)
    if switch is None or before in (None, "eager"):
        yield
        return
    try:
        switch("eager")
    except (ValueError, NotImplementedError):  # an architecture without an eager path keeps its own
        yield
        return
    try:
        yield
    finally:
        switch(before)


def compile_onnx(ctx: StageContext, eager: NamedIO, tokenizer) -> dict[str, Any]:
    spec = ctx.spec
    require_onnxruntime()
    atol, rtol = spec.validate.atol, spec.validate.rtol
    exported_at = example_batch(tokenizer, eager.io, 2, min(16, spec.compile.known_max_length()))
    exported_shape = list(exported_at["input_ids"].shape)
    path = ctx.out_dir / MODEL_FILE
    ctx.progress(
        f"exporting to ONNX (opset {OPSET}) at batch {exported_shape[0]} x length {exported_shape[1]}"
    )
    plain = ctx.out_dir / PLAIN_FILE
    try:
        # Only a graph to fuse is exported with eager attention; otherwise the model's own (SDPA) form.
        with plain_attention(eager) if spec.compile.onnx_fusion else nullcontext():
            export_onnx(eager, exported_at, plain)
    except Exception as exc:  # the exporter raises many types; the message is what the user needs
        raise trace_error("torch.onnx.export", exc) from None
    inputs = [exported_at, *probe_inputs(tokenizer, eager.io, spec.compile.known_max_length())]
    fusion = (
        fuse_graph(plain, path, model_config(eager))
        if spec.compile.onnx_fusion
        else Fusion(False, "compile.onnx_fusion is false: plain graph")
    )
    ctx.progress(f"ONNX Runtime's transformer optimizer: {fusion.note}")
    probes: list[dict[str, Any]] = _probes(eager, path, inputs, atol, rtol) if fusion.applied else []
    if fusion.applied and any(not p["ok"] for p in probes):
        mismatch = next(p for p in probes if not p["ok"])
        fusion = Fusion(
            False,
            f"the fused graph does not match the source model ({probe_failure(mismatch, atol)}): plain graph",
        )
        ctx.progress(fusion.note)
    if not fusion.applied:
        plain.replace(path)
        probes = _probes(eager, path, inputs, atol, rtol)
    plain.unlink(missing_ok=True)
    bad = next((p for p in probes if not p["ok"]), None)
    if bad is not None:
        why = probe_failure(bad, atol)
        raise CompileError(
            f"the ONNX export does not match the source model at batch {bad['batch']} x length "
            f"{bad['length']}: {why}",
            hint="The model's control flow depends on the input shape or uses an op the exporter "
            "changes; choose compile.backend: torchscript (with compile.buckets) or eager.",
        )
    import onnxruntime

    manifest: dict[str, Any] = {"format": "onnx", "file": MODEL_FILE}
    reduced: dict[str, Any] = {}
    if spec.compile.precision in INT8:
        quantization, reduced_probes = _quantized(ctx, eager, tokenizer, inputs)
        manifest["precision"] = spec.compile.precision  # fp32 manifests stay as they were: no key
        reduced = {"quantization": quantization.as_record(), "precision_probes": reduced_probes}
    write_manifest(ctx.out_dir, manifest, eager.io)
    return {
        "backend": "onnx",
        "format": "onnx",
        "mode": "dynamic",
        "dynamic_shapes": True,
        "traced_shape": exported_shape,
        "probes": probes,
        "opset": OPSET,
        "fusion": fusion.as_record(),
        "precision": spec.compile.precision,
        **reduced,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    } | eager.io.to_manifest()


def _quantized(
    ctx: StageContext, eager: NamedIO, tokenizer, inputs: list[Features]
) -> tuple[Quantization, list[dict[str, Any]]]:
    """model.onnx (the fp32 graph the probes accepted) replaced by its int8 graph; the int8 graph's probes
    against the source model. They record how far it moved but refuse only a graph that fails to run or
    gives non-finite or misshapen outputs: whether the movement matters is the gate's task-level check."""
    spec = ctx.spec
    precision = spec.compile.precision
    path, fp32 = ctx.out_dir / MODEL_FILE, ctx.out_dir / FP32_FILE
    path.replace(fp32)
    calibration = calibration_batches(ctx, eager, tokenizer) if precision == "int8-static" else []
    kept = "".join(f", {part} fp32" for part in spec.compile.int8_keep_fp32)
    ctx.progress(
        f"quantizing to {precision} (MatMul/Gemm weights int8 per channel; LayerNorm, Softmax, GELU fp32"
        + kept
        + ")"
        + (f", calibrated on {len(calibration)} batches" if calibration else "")
    )
    try:
        quantization = quantize_onnx(fp32, path, precision, calibration, spec.compile.int8_keep_fp32)
    except Exception as exc:  # the quantizer raises many types on graphs it does not expect
        raise CompileError(
            f"ONNX Runtime's quantizer failed on the export ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            hint="Serve this model at compile.precision: fp32, or try the other int8 precision.",
        ) from None
    finally:
        fp32.unlink(missing_ok=True)
    probes = _probes(eager, path, inputs, spec.validate.atol, spec.validate.rtol)
    broken = next((p for p in probes if broken_probe(p)), None)
    if broken is not None:
        raise CompileError(
            f"the {precision} graph does not run like the source model at batch {broken['batch']} x length "
            f"{broken['length']}: {probe_failure(broken, spec.validate.atol)}",
            hint="Serve this model at compile.precision: fp32, or try the other int8 precision.",
        )
    return quantization, probes
