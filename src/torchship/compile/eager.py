"""The eager backend: no compilation. The source model is saved as it is (save_pretrained) and the
handler loads it with from_pretrained — for models that cannot be traced."""

from __future__ import annotations

from typing import Any

from torchship.compile.common import write_manifest
from torchship.pipeline import StageContext

EAGER_DIR = "hf"


def compile_eager(ctx: StageContext, eager, tokenizer) -> dict[str, Any]:
    ctx.progress("saving the model for from_pretrained loading (no compilation)")
    eager.model.save_pretrained(str(ctx.out_dir / EAGER_DIR))
    write_manifest(ctx.out_dir, {"format": "eager", "dir": EAGER_DIR})
    return {"backend": "eager", "format": "eager", "mode": "eager", "dynamic_shapes": True}
