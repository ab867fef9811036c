"""The eager backend: no compilation. The source model is saved as it is (save_pretrained) and the
handler loads it with from_pretrained — for models that cannot be traced. compiled.json records the
transformers Auto class that loads it ("auto_class", the task's) and the model's input and output names."""

from __future__ import annotations

from typing import Any

from torchship.compile.common import write_manifest
from torchship.handlers.model_io import NamedIO
from torchship.pipeline import StageContext
from torchship.tasks import task_definition

EAGER_DIR = "hf"


def compile_eager(ctx: StageContext, eager: NamedIO, tokenizer) -> dict[str, Any]:
    ctx.progress("saving the model for from_pretrained loading (no compilation)")
    model: Any = eager.model  # a transformers PreTrainedModel (load_source_model), typed as nn.Module
    model.save_pretrained(str(ctx.out_dir / EAGER_DIR))
    auto_class = task_definition(ctx.spec.task).auto_class
    write_manifest(ctx.out_dir, {"format": "eager", "dir": EAGER_DIR, "auto_class": auto_class}, eager.io)
    return {
        "backend": "eager",
        "format": "eager",
        "mode": "eager",
        "dynamic_shapes": True,
        "auto_class": auto_class,
    } | eager.io.to_manifest()
