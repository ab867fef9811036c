"""int8 ONNX graphs (`compile.precision: int8-dynamic | int8-static`) from the checked fp32 export.

Only the matrix products with a weight (MatMul/Gemm whose other input is a constant: the linear layers)
are quantized, with int8 weights per output channel (per tensor was far worse: MiniLM's mean cosine to
fp32 0.955 instead of 0.991); `compile.int8_keep_fp32: [ffn-output]` also keeps each layer's
feed-forward output projection fp32. Everything a transformer is sensitive to stays fp32:
LayerNorm, Softmax, GELU, the embeddings and the attention's own products of two activations (Q·Kᵀ,
weights·V), whose ranges change with every input. The result is judged by the gate on the task's own
measures (validate/precision.py), not by tensor tolerances.

- int8-dynamic (quantize_dynamic): weights int8 ahead of time, each activation's scale found per batch at
  run time (DynamicQuantizeLinear + MatMulInteger). No calibration data; the usual first choice.
- int8-static (quantize_static, QDQ format): activation scales fixed from calibration batches, so no
  per-batch range pass. The calibration rows are the spec's examples and eval set tokenized as the handler
  tokenizes them, plus generated rows at several lengths, so every shape the model serves has been seen.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from torchship.compile.common import example_batch
from torchship.examples import eval_set_requests, example_rows, load_examples
from torchship.handler_settings import in_process_settings
from torchship.handlers.encoder import pad_id_of, pad_type_id_of
from torchship.handlers.model_io import Features, NamedIO, pad_features
from torchship.handlers.service import build_task
from torchship.pipeline import StageContext
from torchship.sources import MODEL_DIRNAME

WEIGHT_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class Quantization:
    """What the quantizer did: the matrix products quantized, by op type, and those kept fp32 (products of
    two activations), both counted in the written graph; and the calibration it had."""

    precision: str
    quantized: dict[str, int]
    kept_fp32: dict[str, int]
    calibration_batches: int = 0
    calibration_rows: int = 0
    keep: tuple[str, ...] = ()  # compile.int8_keep_fp32

    def as_record(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "keep_fp32": list(self.keep),
            "quantized": self.quantized,
            "kept_fp32": self.kept_fp32,
            "calibration_batches": self.calibration_batches,
            "calibration_rows": self.calibration_rows,
        }


def _constants(model: Any) -> set[str]:
    found = {init.name for init in model.graph.initializer}
    return found | {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}


# What produces a feed-forward output projection's input: the activation (exported GELU ends in a Mul;
# fused graphs have Gelu/FastGelu/BiasGelu); no other weight product's input comes from one of these.
ACTIVATION_OUTPUTS = ("Mul", "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "Relu")


def kept_fp32(model: Any, keep: Sequence[str] = ()) -> list[str]:
    """The MatMul/Gemm nodes to leave fp32: every product of two activations (attention's Q·Kᵀ and
    weights·V, whose ranges change with every input), and with "ffn-output" in `keep` each feed-forward
    output projection. Excluded by name rather than the rest included by name, because the quantizer
    rewrites some nodes first (a Gemm becomes MatMul + Add under new names) and those must be quantized."""
    constants = _constants(model)
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    names = []
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        activations = [name for name in node.input if name and name not in constants]
        if len(activations) == len(node.input) or (
            "ffn-output" in keep and any(producer.get(name) in ACTIVATION_OUTPUTS for name in activations)
        ):
            names.append(node.name)
    return names


def products_in(model: Any) -> tuple[Counter[str], Counter[str]]:
    """(quantized, fp32) matrix products of a written graph, by op type: dynamic quantization writes
    MatMulInteger; static QDQ keeps MatMul/Gemm and feeds it dequantized int8 weights."""
    dequantized = {
        out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output
    }
    quantized: Counter[str] = Counter()
    fp32: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type == "MatMulInteger":
            quantized["MatMul"] += 1
        elif node.op_type in WEIGHT_OPS:
            (quantized if any(i in dequantized for i in node.input) else fp32)[node.op_type] += 1
    return quantized, fp32


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs a pre-processing suggestion on the root logger for every call: not for users."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _reader(batches: list[Features], fed: set[str]) -> Any:
    """ONNX Runtime's CalibrationDataReader over padded batches, fed by the graph's own input names."""
    from onnxruntime.quantization import CalibrationDataReader

    class CalibrationBatches(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(
                [{n: np.ascontiguousarray(t.numpy()) for n, t in b.items() if n in fed} for b in batches]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return CalibrationBatches()


def calibration_batches(ctx: StageContext, eager: NamedIO, tokenizer: Any) -> list[Features]:
    """The static quantizer's calibration: the examples' and the eval set's rows as the handler tokenizes
    them, in batches of compile.batch_size, then generated rows at one token, 16, half and all of
    max_length (each batch's rows shorter after the first, so padding is calibrated too)."""
    spec = ctx.spec
    model_dir = ctx.input_dir("fetch") / MODEL_DIRNAME
    task = build_task(model_dir, in_process_settings(spec, model_dir), model=eager.as_model())
    rows = example_rows(task, load_examples(spec) + eval_set_requests(spec))
    batch, pad_id, pad_type = spec.compile.batch_size, pad_id_of(tokenizer), pad_type_id_of(tokenizer)
    batches = [
        pad_features(rows[start : start + batch], eager.io.inputs, pad_id, pad_type_id=pad_type)
        for start in range(0, len(rows), batch)
    ]
    max_length = spec.compile.known_max_length()
    one_token = len(tokenizer("a", add_special_tokens=True)["input_ids"])
    for seed, length in enumerate(sorted({one_token, min(16, max_length), max_length // 2, max_length})):
        batches.append(example_batch(tokenizer, eager.io, batch, max(length, one_token), seed=200 + seed))
    return batches


def quantize_onnx(
    fp32: Path, out: Path, precision: str, calibration: list[Features], keep: Sequence[str] = ()
) -> Quantization:
    """Write the int8 graph of `fp32` to `out`. `calibration`: padded batches (int8-static only); `keep`:
    compile.int8_keep_fp32."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    model = onnx.load(str(fp32))
    common: dict[str, Any] = {
        "op_types_to_quantize": list(WEIGHT_OPS),
        "nodes_to_exclude": kept_fp32(model, keep),
        "per_channel": True,
        "weight_type": QuantType.QInt8,
    }
    static = precision == "int8-static"
    with _quiet_quantizer():
        if static:
            fed = {i.name for i in model.graph.input}
            quantize_static(
                str(fp32),
                str(out),
                _reader(calibration, fed),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                **common,
            )
        else:
            quantize_dynamic(str(fp32), str(out), **common)
    quantized, kept = products_in(onnx.load(str(out)))
    return Quantization(
        precision=precision,
        quantized=dict(sorted(quantized.items())),
        kept_fp32=dict(sorted(kept.items())),
        calibration_batches=len(calibration) if static else 0,
        calibration_rows=sum(int(b["input_ids"].shape[0]) for b in calibration) if static else 0,
        keep=tuple(keep),
    )
