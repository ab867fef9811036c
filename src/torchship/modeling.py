"""Loading the source model for a task (eager, traceable), with errors a user can act on, and the
model's own limits (how many tokens it accepts).

The eager wrapper (TensorOutput) lives in handlers/loading.py, because the "eager" backend's handler
loads the same way inside TorchServe. Loading here also runs the gate's source-model integrity checks
(validate/source_integrity.py): the architecture fits the task, nothing is randomly initialised, labels
are named — so a checkpoint that does not fit never reaches compile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torchship.errors import CompileError, SpecError
from torchship.handlers.model_io import ModelIO, NamedIO, model_inputs
from torchship.spec import ModelSpec
from torchship.validate.source_integrity import LoadingInfo, check_architecture, check_head, check_loaded

__all__ = [
    "default_max_length",
    "fit_to_model",
    "load_source_model",
    "load_tokenizer",
    "token_limit",
]

# transformers' "no limit" placeholder for tokenizer.model_max_length is 1e30; anything this large is
# not a real limit.
_SANE_TOKENIZER_LIMIT = 1_000_000
MODEL_DIRNAME = "model"  # the fetch stage's output folder (sources.MODEL_DIRNAME)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_source_model(model_dir: Path, task: str, spec_path: Path | str | None = None) -> NamedIO:
    """The eager source model in eval mode, taking the inputs its tokenizer and forward share and
    returning the task's outputs by name; refused (exit 3) when the checkpoint does not fit the task."""
    import transformers

    from torchship.tasks import task_definition

    definition = task_definition(task)
    transformers.utils.logging.disable_progress_bar()  # a bar per load would drown the stage output
    where = str(spec_path or "the spec")
    config = _read_json(model_dir / "config.json")
    architectures = config.get("architectures")
    check_architecture(model_dir, task, architectures, where, config)
    auto_class = getattr(transformers, definition.auto_class)
    try:
        model, info = auto_class.from_pretrained(
            str(model_dir), attn_implementation="eager", output_loading_info=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise CompileError(
            f"cannot load {model_dir} as a {task} model ({definition.auto_class}): {exc}",
            hint="Check that the source directory holds the model saved by save_pretrained for this task.",
        ) from None
    check_loaded(
        model_dir, task, type(model).__name__, architectures, LoadingInfo.from_transformers(info), where
    )
    check_head(model_dir, task, dict(model.config.id2label or {}), int(model.config.num_labels), where)
    io = ModelIO(model_inputs(load_tokenizer(model_dir), model), definition.outputs)
    return NamedIO(model.eval(), io).eval()


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


@dataclass(frozen=True)
class TokenLimit:
    """The longest input the model accepts, and the shorter length it was trained to use (if any)."""

    limit: int | None  # None: nothing in the model's files says
    why: str  # which file/key the limit comes from, for error messages
    preferred: int | None = None  # sentence-transformers' max_seq_length: what its encode() truncates to


def token_limit(model_dir: Path) -> TokenLimit:
    """min(position table, tokenizer.model_max_length when sane); RoBERTa-like models reserve
    padding_idx + 1 positions (their position ids start after the pad id)."""
    config = _read_json(model_dir / "config.json")
    candidates: list[tuple[int, str]] = []
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        offset = 0
        if config.get("model_type") in {"roberta", "xlm-roberta", "camembert", "longformer", "bart"}:
            offset = int(config.get("pad_token_id") or 1) + 1
        why = f"max_position_embeddings {positions}" + (
            f" minus {offset} reserved positions" if offset else ""
        )
        candidates.append((positions - offset, why))
    tokenizer_max = _read_json(model_dir / "tokenizer_config.json").get("model_max_length")
    if isinstance(tokenizer_max, (int, float)) and 0 < tokenizer_max < _SANE_TOKENIZER_LIMIT:
        candidates.append((int(tokenizer_max), f"the tokenizer's model_max_length {int(tokenizer_max)}"))
    preferred = _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length")
    if not candidates:
        return TokenLimit(None, "no limit in config.json or tokenizer_config.json", preferred)
    limit, why = min(candidates)
    return TokenLimit(limit, f"{why} in {model_dir.name}", preferred if isinstance(preferred, int) else None)


# Without any limit in the model's files: the old default, a length every common encoder supports.
FALLBACK_MAX_LENGTH = 256


def default_max_length(limits: TokenLimit) -> int:
    """compile.max_length when the spec leaves it out: the model's limit or, for a sentence-transformers
    model, its max_seq_length (never beyond the limit), within the spec's allowed range."""
    chosen = limits.preferred or limits.limit or FALLBACK_MAX_LENGTH
    if limits.limit is not None:
        chosen = min(chosen, limits.limit)
    return min(max(chosen, 2), 8192)


def fit_to_model(spec: ModelSpec, stage_dirs: dict[str, Path]) -> ModelSpec:
    """fit_to_model_dir on the fetch stage's model (the stages' fit_spec)."""
    return fit_to_model_dir(spec, stage_dirs["fetch"] / MODEL_DIRNAME)


def fit_to_model_dir(spec: ModelSpec, model_dir: Path) -> ModelSpec:
    """The spec with compile.max_length fitted to the model in `model_dir`: the model's limit (or, for a
    sentence-transformers model, its max_seq_length) when the spec leaves it out; a spec error (exit 2)
    naming the limit when the spec asks for more than the model's position table holds."""
    limits = token_limit(model_dir)
    asked = spec.compile.max_length
    if asked is None:
        return spec.with_max_length(default_max_length(limits))
    if limits.limit is not None and asked > limits.limit:
        raise SpecError(
            f"{spec.spec_path}: key 'compile.max_length': {asked} tokens is more than the model accepts "
            f"({limits.limit}: {limits.why})",
            hint=f"Set compile.max_length to {limits.limit} or less, or leave it out to use the model's limit.",
        )
    return spec.with_max_length(asked)
