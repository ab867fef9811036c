"""Loading the source model for a task, and the wrapper that makes it traceable.

The wrapper returns the model's first output as a plain tensor (last_hidden_state or logits): traced
modules cannot return the dict-like ModelOutput that transformers builds by default.
"""

from __future__ import annotations

from pathlib import Path

import torch

from torchship.errors import CompileError

# AutoModel class per task; classification heads come with their id2label in the config.
_AUTO_CLASS = {
    "embeddings": "AutoModel",
    "keywords": "AutoModel",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}


class TensorOutput(torch.nn.Module):
    """(input_ids, attention_mask) -> first output tensor."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]


def load_source_model(model_dir: Path, task: str) -> torch.nn.Module:
    """The eager source model in eval mode, with attention that traces to plain tensor ops."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # a bar per load would drown the stage output
    auto_class = getattr(transformers, _AUTO_CLASS[task])
    try:
        model = auto_class.from_pretrained(str(model_dir), attn_implementation="eager")
    except (OSError, ValueError, KeyError) as exc:
        raise CompileError(
            f"cannot load {model_dir} as a {task} model ({auto_class.__name__}): {exc}",
            hint="Check that the source directory holds the model saved by save_pretrained for this task.",
        ) from None
    return TensorOutput(model.eval()).eval()


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))
