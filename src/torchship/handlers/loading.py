"""Load what the compile stage produced, as a `CompiledModel`: a Forward (features by name -> outputs by
name, handlers/model_io.py) and the names it takes and returns.

`compiled.json` says which format the compile backend wrote, and names the model's inputs and outputs
("inputs", "outputs": ModelIO.to_manifest):
- "torchscript": one shape-dynamic TorchScript module taking the inputs positionally;
- "fixed-shape": one module per (batch size, sequence length) — TorchScript traced per bucket, or AWS
  Neuron modules, whose compiled graphs only accept the exact shape they were compiled for;
- "eager": the Hugging Face model itself (save_pretrained), loaded by the Auto class named in
  compiled.json ("auto_class"), for models that cannot be traced;
- "onnx": one ONNX graph whose inputs and outputs carry the model's names, with dynamic batch and
  sequence axes, run by ONNX Runtime (needs onnxruntime where the .mar is served).

Each format has one loader in LOADERS; a compile backend that writes a new format registers its loader
there (CONTRIBUTING.md).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .model_io import (
    INPUT_IDS,
    KNOWN_INPUTS,
    CompiledModel,
    Features,
    Forward,
    ModelIO,
    NamedIO,
    Outputs,
    pad_value,
    positional_forward,
)

COMPILED_MANIFEST = "compiled.json"


def load_hf_model(model_dir: Path, auto_class: str, io: ModelIO) -> NamedIO:
    """The eager Hugging Face model in eval mode, with attention that traces to plain tensor ops."""
    import transformers

    model = getattr(transformers, auto_class).from_pretrained(str(model_dir), attn_implementation="eager")
    return NamedIO(model.eval(), io).eval()


class FixedShapeForward:
    """Runs a batch on modules compiled for exact (batch, length) shapes.

    Every input is padded up to the smallest compiled length that fits, each with its own padding value
    (the pad token, mask 0, the pad token type; the handler's Encoder already pads to the same buckets);
    the batch is padded with empty rows up to the smallest compiled batch size that holds it, or split
    into chunks of the largest. Each output is sliced back to the caller's batch and, when it is per
    token, to the caller's length. `batch` None in a shape means that module accepts any batch size.
    """

    def __init__(
        self,
        modules: dict[tuple[int | None, int], Any],
        io: ModelIO,
        pad_id: int = 0,
        pad_type_id: int = 0,
    ):
        self.modules = modules
        self.io = io
        self.pad_values = {name: pad_value(name, pad_id, pad_type_id) for name in io.inputs}
        self.lengths = sorted({length for _, length in modules})

    def batch_sizes(self, length: int) -> list[int] | None:
        """The batch sizes compiled at `length`, ascending; None: its module accepts any batch size."""
        sizes = {batch for batch, ln in self.modules if ln == length}
        return None if None in sizes else sorted(b for b in sizes if b is not None)

    def _padded(self, features: Features, rows: int, length: int) -> Features:
        """Every input padded to `rows` x `length`: extra positions and extra (empty) rows hold the
        input's padding value, so they are masked out and sliced away."""
        padded = {}
        for name in self.io.inputs:
            tensor = features[name]
            out = torch.full((rows, length), self.pad_values[name], dtype=tensor.dtype)
            out[: tensor.shape[0], : tensor.shape[1]] = tensor
            padded[name] = out
        return padded

    def _run(self, module: Any, features: Features) -> Outputs:
        return positional_forward(module, self.io)(features)

    def __call__(self, features: Features) -> Outputs:
        rows, length = features[INPUT_IDS].shape
        pos = bisect.bisect_left(self.lengths, length)
        if pos == len(self.lengths):
            raise ValueError(f"{length} tokens exceed the largest compiled length {self.lengths[-1]}")
        bucket = self.lengths[pos]
        sizes = self.batch_sizes(bucket)
        if sizes is None:
            outputs = self._run(self.modules[(None, bucket)], self._padded(features, rows, bucket))
        else:
            chunks: list[Outputs] = []
            for start in range(0, rows, sizes[-1]):
                chunk = {name: features[name][start : start + sizes[-1]] for name in self.io.inputs}
                taken = chunk[INPUT_IDS].shape[0]
                size = next(s for s in sizes if s >= taken)
                result = self._run(self.modules[(size, bucket)], self._padded(chunk, size, bucket))
                chunks.append({name: value[:taken] for name, value in result.items()})
            outputs = {name: torch.cat([chunk[name] for chunk in chunks]) for name in self.io.outputs}
        # Per-token outputs come back at the bucket length: trim each to the caller's padded length.
        return {
            name: value[:, :length] if value.dim() >= 2 and value.shape[1] == bucket else value
            for name, value in outputs.items()
        }


def _import_neuron_runtime(runtime: str | None) -> None:
    """Neuron modules need the Neuron runtime's ops registered before torch.jit.load."""
    if runtime == "neuronx":
        import torch_neuronx  # noqa: F401
    elif runtime == "neuron":
        import torch.neuron  # noqa: F401


class OnnxForward:
    """Features -> outputs through an ONNX Runtime session on the CPU, fed and read by name (the
    graph's input and output names are the model's: compile/onnx.py exports them so).

    The thread count is explicit: ONNX Runtime would otherwise size its pool from every core of the host,
    and several TorchServe workers would oversubscribe the CPU (the handler gives each worker its share,
    the same number torch gets). The session is built once; each call copies no weights."""

    def __init__(self, path: Path, io: ModelIO, threads: int):
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
        self.io = io
        # The exporter drops an input the graph never reads (e.g. token types of a model whose type
        # embedding is constant): feed only what the graph declares.
        self.fed = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, features: Features) -> Outputs:
        feeds = {name: np.ascontiguousarray(features[name].numpy()) for name in self.fed}
        results = self.session.run(list(self.io.outputs), feeds)
        return {name: torch.from_numpy(value) for name, value in zip(self.io.outputs, results, strict=True)}


def read_manifest(compiled_dir: Path) -> dict[str, Any]:
    return json.loads((compiled_dir / COMPILED_MANIFEST).read_text())


@dataclass(frozen=True)
class LoadRequest:
    """What a loader gets: where the files are, compiled.json, the names, and the padding ids."""

    compiled_dir: Path
    manifest: dict[str, Any]
    io: ModelIO
    pad_id: int
    pad_type_id: int


def _load_torchscript(request: LoadRequest) -> Forward:
    module = torch.jit.load(str(request.compiled_dir / request.manifest["file"]), map_location="cpu").eval()
    return positional_forward(module, request.io)


def _load_fixed_shape(request: LoadRequest) -> Forward:
    _import_neuron_runtime(request.manifest.get("runtime"))
    modules = {
        (shape["batch"], shape["length"]): torch.jit.load(str(request.compiled_dir / shape["file"])).eval()
        for shape in request.manifest["shapes"]
    }
    return FixedShapeForward(modules, request.io, request.pad_id, request.pad_type_id)


def _load_eager(request: LoadRequest) -> Forward:
    model = load_hf_model(
        request.compiled_dir / request.manifest["dir"], request.manifest["auto_class"], request.io
    )
    return model.named


def _load_onnx(request: LoadRequest) -> Forward:
    return OnnxForward(
        request.compiled_dir / request.manifest["file"], request.io, threads=torch.get_num_threads()
    )


Loader = Callable[[LoadRequest], Forward]
# compiled.json "format" -> the loader that turns the compile stage's files into a Forward.
LOADERS: dict[str, Loader] = {
    "torchscript": _load_torchscript,
    "fixed-shape": _load_fixed_shape,
    "eager": _load_eager,
    "onnx": _load_onnx,
}


def load_compiled(compiled_dir: Path, pad_id: int = 0, pad_type_id: int = 0) -> CompiledModel:
    """The compiled model in `compiled_dir`; padding (fixed shapes) uses the tokenizer's pad token and
    pad token type."""
    manifest = read_manifest(compiled_dir)
    loader = LOADERS.get(manifest["format"])
    if loader is None:
        raise ValueError(
            f"unknown compiled format {manifest['format']!r} in {compiled_dir / COMPILED_MANIFEST}"
        )
    io = ModelIO.from_manifest(manifest)
    unknown = [name for name in io.inputs if name not in KNOWN_INPUTS]
    if unknown:  # the handler feeds only what tokenizers produce
        raise ValueError(
            f"{compiled_dir / COMPILED_MANIFEST} names inputs {unknown} the handler cannot feed "
            f"(it feeds {', '.join(KNOWN_INPUTS)})"
        )
    return CompiledModel(loader(LoadRequest(compiled_dir, manifest, io, pad_id, pad_type_id)), io)


def compiled_lengths(compiled_dir: Path) -> list[int] | None:
    """The sequence lengths a fixed-shape model accepts (the handler pads to these), else None."""
    manifest = read_manifest(compiled_dir)
    if manifest["format"] != "fixed-shape":
        return None
    return sorted({shape["length"] for shape in manifest["shapes"]})
