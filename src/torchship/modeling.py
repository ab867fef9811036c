"""Loading the source model for a task (eager, traceable), with errors a user can act on.

The loading code itself lives in handlers/loading.py, because the "eager" backend's handler loads the
same way inside TorchServe.
"""

from __future__ import annotations

from pathlib import Path

from torchship.errors import CompileError
from torchship.handlers.loading import AUTO_CLASS, TensorOutput, load_hf_model

__all__ = ["TensorOutput", "load_source_model", "load_tokenizer"]


def load_source_model(model_dir: Path, task: str) -> TensorOutput:
    """The eager source model in eval mode, returning its first output as a tensor."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # a bar per load would drown the stage output
    try:
        return load_hf_model(model_dir, task)
    except (OSError, ValueError, KeyError) as exc:
        raise CompileError(
            f"cannot load {model_dir} as a {task} model ({AUTO_CLASS[task]}): {exc}",
            hint="Check that the source directory holds the model saved by save_pretrained for this task.",
        ) from None


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))
