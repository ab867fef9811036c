"""The model contract: named inputs in, named outputs out.

A compiled model takes the inputs its source model's forward takes and its tokenizer produces
(`input_ids`, `attention_mask`, and `token_type_ids` where the model has token types: BERT-family
cross-encoders read the query/passage boundary from them) and returns the named outputs its task reads
(`last_hidden_state`; `logits`; `start_logits` and `end_logits`). `compiled.json` records both lists, so
every backend and the handler agree on them without knowing the task.

Inside torchship a model is a `Forward`: features by name -> outputs by name. Traced and exported graphs
take positional tensors and return a tuple; `NamedIO` is the module that is traced (it calls the Hugging
Face model by keyword and picks the outputs by name), `positional_forward` turns such a module back into a
`Forward`. Like the rest of handlers/, this module needs torch and the standard library only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
# The inputs torchship feeds, in the order a compiled graph takes them.
KNOWN_INPUTS = (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)

Features = dict[str, torch.Tensor]  # input name -> (batch, length) int64 tensor
Outputs = dict[str, torch.Tensor]  # output name -> tensor, batch first
Forward = Callable[[Features], Outputs]
# (model outputs, attention mask) -> the per-row tensor a task's answer is computed from.
Reduce = Callable[[Outputs, torch.Tensor], torch.Tensor]
# One tokenized row: input name -> ids (no attention mask: padding makes it).
Row = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class ModelIO:
    """The names a compiled model takes and returns, in graph order."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def to_manifest(self) -> dict[str, list[str]]:
        return {"inputs": list(self.inputs), "outputs": list(self.outputs)}

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> ModelIO:
        """From compiled.json (a compile stage older than named inputs wrote none: compile again)."""
        if not manifest.get("inputs") or not manifest.get("outputs"):
            raise ValueError(
                "compiled.json names no model inputs/outputs (written by an older torchship): compile the model again"
            )
        return cls(tuple(manifest["inputs"]), tuple(manifest["outputs"]))

    @property
    def token_types(self) -> bool:
        return TOKEN_TYPE_IDS in self.inputs


@dataclass(frozen=True)
class CompiledModel:
    """A model ready to run: its Forward and the names it takes and returns."""

    forward: Forward
    io: ModelIO


def model_inputs(tokenizer: Any, model: torch.nn.Module) -> tuple[str, ...]:
    """The inputs to feed: ids and mask always; token types when the tokenizer produces them and the
    model's forward takes them (DistilBERT's and RoBERTa's tokenizers produce none, BERT's and ELECTRA's do)."""
    accepted = inspect.signature(model.forward).parameters
    produced = set(getattr(tokenizer, "model_input_names", ()) or ())
    names = [INPUT_IDS, ATTENTION_MASK]
    if TOKEN_TYPE_IDS in produced and TOKEN_TYPE_IDS in accepted:
        names.append(TOKEN_TYPE_IDS)
    return tuple(names)


class NamedIO(torch.nn.Module):
    """A Hugging Face model as a traceable module: positional tensors in `io.inputs` order -> a tuple in
    `io.outputs` order. Traced modules and ONNX graphs cannot take keywords or return the dict-like
    ModelOutput, so this is what every backend traces or exports; `positional_forward` names them again."""

    def __init__(self, model: torch.nn.Module, io: ModelIO):
        super().__init__()
        self.model = model
        self.io = io

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(**dict(zip(self.io.inputs, tensors, strict=True)), return_dict=True)
        return tuple(output[name] for name in self.io.outputs)

    def named(self, features: Features) -> Outputs:
        """The same model called with features by name (the eager Forward)."""
        return positional_forward(self, self.io)(features)

    def as_model(self) -> CompiledModel:
        return CompiledModel(self.named, self.io)


def positional_forward(module: Callable[..., Any], io: ModelIO) -> Forward:
    """A module taking positional inputs in `io.inputs` order and returning a tensor or a tuple in
    `io.outputs` order, as a Forward."""

    def forward(features: Features) -> Outputs:
        result = module(*(features[name] for name in io.inputs))
        if isinstance(result, torch.Tensor):
            result = (result,)
        return dict(zip(io.outputs, result, strict=True))

    return forward


def pad_value(name: str, pad_id: int, pad_type_id: int = 0) -> int:
    """What padding positions of an input hold: the pad token, mask 0, the tokenizer's pad token type."""
    if name == INPUT_IDS:
        return pad_id
    if name == TOKEN_TYPE_IDS:
        return pad_type_id
    return 0


def pad_features(
    rows: Sequence[Row],
    inputs: Sequence[str],
    pad_id: int,
    width: int | None = None,
    pad_type_id: int = 0,
) -> Features:
    """The named inputs of `rows`, each padded to `width` (default: the longest row). The attention mask
    comes from each row's length; token types from the row (zeros where the row has none: a single text)."""
    width = width or max(len(row[INPUT_IDS]) for row in rows)
    features: Features = {}
    for name in inputs:
        tensor = torch.full((len(rows), width), pad_value(name, pad_id, pad_type_id), dtype=torch.long)
        for i, row in enumerate(rows):
            length = len(row[INPUT_IDS])
            if name == ATTENTION_MASK:
                tensor[i, :length] = 1
            elif name in row:
                tensor[i, :length] = torch.tensor(list(row[name]), dtype=torch.long)
            elif name == TOKEN_TYPE_IDS:
                tensor[i, :length] = 0
            else:
                raise KeyError(f"row {i} has no {name!r}")
        features[name] = tensor
    return features


def real_positions(output: torch.Tensor, mask: torch.Tensor) -> Any:
    """An index selecting what callers read of an output: per-token outputs at unpadded positions only
    (padding is an output nobody reads), per-row outputs (logits per text) whole."""
    return mask.bool() if output.shape[:2] == mask.shape else slice(None)
