"""Load what the compile stage produced, as one `forward(input_ids, attention_mask) -> tensor`.

`compiled.json` says which format the compile backend wrote:
- "torchscript": one shape-dynamic TorchScript module;
- "fixed-shape": one module per (batch size, sequence length) — TorchScript traced per bucket, or AWS
  Neuron modules, whose compiled graphs only accept the exact shape they were compiled for;
- "eager": the Hugging Face model itself (save_pretrained), for models that cannot be traced;
- "onnx": one ONNX graph with dynamic batch and sequence axes, run by ONNX Runtime (needs onnxruntime
  where the .mar is served).

Each format has one loader in LOADERS; a compile backend that writes a new format registers its loader
there (CONTRIBUTING.md).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .model_io import CompiledModel, ModelIO, NamedIO, positional_forward

COMPILED_MANIFEST = "compiled.json"
INPUT_NAMES = ("input_ids", "attention_mask")  # the ONNX graph's inputs, in forward()'s order


class FixedShapeForward:
    """Runs a batch on modules compiled for exact (batch, length) shapes.

    The sequence length is padded up to the smallest compiled length that fits (the handler's Encoder
    already pads to the same buckets); the batch is padded with empty rows up to the smallest compiled
    batch size that holds it, or split into chunks of the largest; outputs are sliced back.
    `batch` None in a shape means that module accepts any batch size.
    """

    def __init__(self, modules: dict[tuple[int | None, int], Any], pad_id: int = 0):
        self.modules = modules
        self.pad_id = pad_id
        self.lengths = sorted({length for _, length in modules})

    def batch_sizes(self, length: int) -> list[int] | None:
        """The batch sizes compiled at `length`, ascending; None: its module accepts any batch size."""
        sizes = {batch for batch, ln in self.modules if ln == length}
        return None if None in sizes else sorted(b for b in sizes if b is not None)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        rows, length = input_ids.shape
        pos = bisect.bisect_left(self.lengths, length)
        if pos == len(self.lengths):
            raise ValueError(f"{length} tokens exceed the largest compiled length {self.lengths[-1]}")
        bucket = self.lengths[pos]
        if bucket != length:
            input_ids = torch.nn.functional.pad(input_ids, (0, bucket - length), value=self.pad_id)
            attention_mask = torch.nn.functional.pad(attention_mask, (0, bucket - length), value=0)
        sizes = self.batch_sizes(bucket)
        if sizes is None:
            output = self.modules[(None, bucket)](input_ids, attention_mask)
        else:
            chunks = []
            for start in range(0, rows, sizes[-1]):
                ids, mask = input_ids[start : start + sizes[-1]], attention_mask[start : start + sizes[-1]]
                size = next(s for s in sizes if s >= ids.shape[0])
                extra = size - ids.shape[0]
                if extra:  # empty rows: all padding, masked out, sliced away below
                    ids = torch.cat([ids, torch.full((extra, bucket), self.pad_id, dtype=ids.dtype)])
                    mask = torch.cat([mask, torch.zeros((extra, bucket), dtype=mask.dtype)])
                chunks.append(self.modules[(size, bucket)](ids, mask)[: size - extra])
            output = torch.cat(chunks)
        # Per-token outputs come back at the bucket length: trim to the caller's padded length.
        return output[:, :length] if output.dim() >= 2 and output.shape[1] == bucket else output


def _import_neuron_runtime(runtime: str | None) -> None:
    """Neuron modules need the Neuron runtime's ops registered before torch.jit.load."""
    if runtime == "neuronx":
        import torch_neuronx  # noqa: F401
    elif runtime == "neuron":
        import torch.neuron  # noqa: F401


class OnnxForward:
    """(input_ids, attention_mask) -> output tensor through an ONNX Runtime session on the CPU.

    The thread count is explicit: ONNX Runtime would otherwise size its pool from every core of the host,
    and several TorchServe workers would oversubscribe the CPU (the handler gives each worker its share,
    the same number torch gets). The session is built once; each call copies no weights."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime  # only .mar files compiled with the onnx backend need it

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between runs: ONNX Runtime's pool otherwise spins after each run, taking CPU
        # from TorchServe's frontend, the other workers and the next batch's tokenization (measured: it
        # slowed a torch model run alternately with it by half).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {
            INPUT_NAMES[0]: np.ascontiguousarray(input_ids.numpy()),
            INPUT_NAMES[1]: np.ascontiguousarray(attention_mask.numpy()),
        }
        return torch.from_numpy(self.session.run(None, feeds)[0])


def read_manifest(compiled_dir: Path) -> dict[str, Any]:
    return json.loads((compiled_dir / COMPILED_MANIFEST).read_text())


def _load_torchscript(compiled_dir: Path, manifest: dict[str, Any], io: ModelIO, pad_id: int):
    return torch.jit.load(str(compiled_dir / manifest["file"]), map_location="cpu").eval()


def _load_fixed_shape(compiled_dir: Path, manifest: dict[str, Any], io: ModelIO, pad_id: int):
    _import_neuron_runtime(manifest.get("runtime"))
    modules = {
        (shape["batch"], shape["length"]): torch.jit.load(str(compiled_dir / shape["file"])).eval()
        for shape in manifest["shapes"]
    }
    return FixedShapeForward(modules, pad_id)


def _load_eager(compiled_dir: Path, manifest: dict[str, Any], io: ModelIO, pad_id: int):
    import transformers

    auto_class = getattr(transformers, manifest["auto_class"])
    model = auto_class.from_pretrained(str(compiled_dir / manifest["dir"]), attn_implementation="eager")
    return NamedIO(model.eval(), io).eval()


def _load_onnx(compiled_dir: Path, manifest: dict[str, Any], io: ModelIO, pad_id: int):
    return OnnxForward(compiled_dir / manifest["file"], threads=torch.get_num_threads())


Loader = Callable[[Path, dict[str, Any], ModelIO, int], Any]
# compiled.json "format" -> the loader that turns the compile stage's files into forward(ids, mask).
LOADERS: dict[str, Loader] = {
    "torchscript": _load_torchscript,
    "fixed-shape": _load_fixed_shape,
    "eager": _load_eager,
    "onnx": _load_onnx,
}


def load_compiled(compiled_dir: Path, pad_id: int = 0, pad_type_id: int = 0) -> CompiledModel:
    manifest = read_manifest(compiled_dir)
    loader = LOADERS.get(manifest["format"])
    if loader is None:
        raise ValueError(
            f"unknown compiled format {manifest['format']!r} in {compiled_dir / COMPILED_MANIFEST}"
        )
    io = ModelIO.from_manifest(manifest)
    return CompiledModel(positional_forward(loader(compiled_dir, manifest, io, pad_id), io), io)


def compiled_lengths(compiled_dir: Path) -> list[int] | None:
    """The sequence lengths a fixed-shape model accepts (the handler pads to these), else None."""
    manifest = read_manifest(compiled_dir)
    if manifest["format"] != "fixed-shape":
        return None
    return sorted({shape["length"] for shape in manifest["shapes"]})
