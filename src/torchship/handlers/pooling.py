"""Sentence-transformers pooling, re-implemented on torch alone (the handler cannot import it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

POOLING_MODES = ("mean", "cls", "max")


def pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    if mode == "mean":
        # Same arithmetic as sentence-transformers: padded positions are zeroed, divided by real length.
        summed = (token_embeddings * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1e-9)
    if mode == "cls":
        return token_embeddings[:, 0]
    if mode == "max":
        filled = token_embeddings.masked_fill(mask == 0, torch.finfo(token_embeddings.dtype).min)
        return filled.max(dim=1).values
    raise ValueError(f"unknown pooling mode {mode!r}; allowed: {', '.join(POOLING_MODES)}")


def embed(
    token_embeddings: torch.Tensor, attention_mask: torch.Tensor, mode: str, normalize: bool
) -> torch.Tensor:
    pooled = pool(token_embeddings, attention_mask, mode)
    return F.normalize(pooled, p=2, dim=1) if normalize else pooled


def sentence_transformers_pooling(model_dir: Path) -> tuple[str, bool]:
    """(pooling mode, normalize) from a sentence-transformers model dir; ('mean', False) without one."""
    mode, normalize = "mean", False
    modules_file = model_dir / "modules.json"
    if modules_file.is_file():
        for module in json.loads(modules_file.read_text()):
            kind = module.get("type", "")
            if kind.endswith("Normalize"):
                normalize = True
            if kind.endswith("Pooling"):
                config_file = model_dir / module.get("path", "") / "config.json"
                if config_file.is_file():
                    config = json.loads(config_file.read_text())
                    for candidate in POOLING_MODES:
                        if config.get(f"pooling_mode_{candidate}_tokens") or config.get(
                            f"pooling_mode_{candidate}_token"
                        ):
                            mode = candidate
                            break
    return mode, normalize
