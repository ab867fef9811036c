"""ONNX Runtime's transformer optimizer on the exported graph: attention, embedding + LayerNorm, skip +
LayerNorm and bias + GELU each become one fused operator, so ONNX Runtime runs a transformer layer in a few
kernels instead of dozens of small ones.

Only architectures whose graphs the optimizer's BERT patterns match are fused (the table below); any other
keeps the plain graph, and says so. The fusions need the attention in its plain matmul-softmax-matmul form,
so the graph to fuse is exported with `attn_implementation="eager"` (the SDPA form hides it from the
patterns). `opt_level=0`: only these fusions, no hardware-specific rewrites baked into the file, since the
file is served on machines other than the one that compiled it. The fused graph is checked against the
source model like any other (compile probes, then the gate); a graph that does not match falls back to the
plain one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# config.json model_type -> the optimizer's model type whose fusion patterns match its graph.
FUSABLE = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "electra": "bert",
    "distilbert": "bert",
}


@dataclass(frozen=True)
class Fusion:
    """What the optimizer did: `fused` counts the fused operators by type (only those it made)."""

    applied: bool
    note: str
    fused: dict[str, int] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {"applied": self.applied, "note": self.note, "fused": self.fused}


def heads_and_hidden(config: dict[str, Any]) -> tuple[int, int]:
    """(attention heads, hidden size) under the config's own key names (DistilBERT: n_heads, dim)."""
    heads = config.get("num_attention_heads", config.get("n_heads"))
    hidden = config.get("hidden_size", config.get("dim"))
    if not isinstance(heads, int) or not isinstance(hidden, int):
        raise ValueError("config.json names no attention head count and hidden size")
    return heads, hidden


def fuse_graph(plain: Path, fused: Path, config: dict[str, Any]) -> Fusion:
    """Write the fused graph of `plain` to `fused` when the architecture is one the optimizer knows and at
    least one pattern matched; otherwise write nothing and say why."""
    architecture = config.get("model_type", "?")
    optimizer_type = FUSABLE.get(architecture)
    if optimizer_type is None:
        return Fusion(
            False, f"ONNX Runtime's transformer optimizer has no fusions for {architecture}: plain graph"
        )
    try:
        from onnxruntime.transformers import optimizer

        heads, hidden = heads_and_hidden(config)
        model = optimizer.optimize_model(
            str(plain), model_type=optimizer_type, num_heads=heads, hidden_size=hidden, opt_level=0
        )
        counts = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    except Exception as exc:  # the optimizer raises many types on graphs it does not expect
        return Fusion(False, f"the transformer optimizer failed ({type(exc).__name__}: {exc}): plain graph")
    if not counts:
        return Fusion(False, f"no fusion pattern matched the {architecture} graph: plain graph")
    model.save_model_to_file(str(fused))
    summary = ", ".join(f"{n} {op}" for op, n in sorted(counts.items()))
    return Fusion(True, f"fused: {summary}", counts)
