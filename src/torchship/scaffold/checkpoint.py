"""What init reads from the saved checkpoint: is it complete, what task is it made for, its labels and the
longest input it accepts. The tables are the gate's own (validate/source_integrity.py, modeling.py,
sources.py), so init never proposes a spec the gate would refuse for the same reason."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torchship.modeling import TokenLimit, default_max_length, token_limit
from torchship.scaffold.errors import InitError, TaskMismatchError
from torchship.sources import TOKENIZER_FILES
from torchship.tasks import TASKS
from torchship.tasks.checkpoints import ENCODER
from torchship.validate.source_integrity import (
    check_head,
    describe_checkpoint,
    task_of_architecture,
    tasks_served_by,
)

# What save_pretrained writes for the weights: one file, or an index beside its shards.
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
# sentence-transformers saves this beside the encoder: the folder is an embedding model.
SENTENCE_TRANSFORMERS_MARKER = "modules.json"


@dataclass(frozen=True)
class Checkpoint:
    """A model folder saved by save_pretrained, as far as init needs it."""

    path: Path
    architecture: str | None  # config.json architectures[0]
    made_for: str | None  # the task its head looks made for ("embeddings" for an encoder); None: unknown
    labels: tuple[str, ...]  # id2label in id order
    limit: TokenLimit
    max_length: int  # what compile.max_length becomes when the spec leaves it out
    config: dict = field(default_factory=dict)  # config.json

    def describe(self, subject: str | None = None) -> str:
        """'<subject> is a BertModel checkpoint: an encoder, made for embeddings or keywords'."""
        subject = subject or str(self.path)
        if self.architecture:
            return f"{subject} is {describe_checkpoint(self.architecture, self.config)}"
        if self.made_for is not None:  # a sentence-transformers folder (read_checkpoint says so)
            served = " or ".join(tasks_served_by(self.made_for))
            return f"{subject} is a sentence-transformers folder: {ENCODER.noun}, made for {served}"
        return f"{subject} does not say what it is made for (config.json has no architectures)"

    def max_length_reason(self) -> str:
        """Why compile.max_length defaults to max_length (modeling.default_max_length's choice)."""
        if self.limit.limit is None:
            return "nothing in the model's files gives a limit: torchship's fallback"
        if self.limit.preferred is not None and self.max_length == self.limit.preferred:
            return f"its sentence-transformers max_seq_length; it accepts up to {self.limit.limit}"
        return f"what it accepts: {self.limit.why}"


def _missing_parts(path: Path) -> list[str]:
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    return missing


def read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint at `path`; an InitError naming every missing part when it is not a saved model."""
    if not path.is_dir():
        raise InitError(
            f"--model {path}: no such directory",
            hint="Pass the folder your training script saved with model.save_pretrained(...).",
        )
    missing = _missing_parts(path)
    if missing:
        raise InitError(
            f"--model {path} is not a saved checkpoint: it has no {'; no '.join(missing)}",
            hint="Save the model and its tokenizer into one folder: model.save_pretrained(dir) and "
            "tokenizer.save_pretrained(dir).",
        )
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InitError(f"{path / 'config.json'} is not readable JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InitError(f"{path / 'config.json'} is not a JSON object")
    architectures = config.get("architectures") or []
    architecture = str(architectures[0]) if isinstance(architectures, list) and architectures else None
    if architecture is not None:
        made_for = task_of_architecture(architecture, config)
    else:
        encoder_task = next(name for name, d in TASKS.items() if d.checkpoint is ENCODER)
        made_for = encoder_task if (path / SENTENCE_TRANSFORMERS_MARKER).is_file() else None
    id2label = config.get("id2label") or {}
    try:
        labels = tuple(str(id2label[key]) for key in sorted(id2label, key=int))
    except (TypeError, ValueError):
        raise InitError(
            f"{path / 'config.json'}: id2label must map label ids (0, 1, …) to names, got {id2label!r}",
            hint="Set config.id2label to one name per output, then save_pretrained again.",
        ) from None
    limit = token_limit(path)
    return Checkpoint(path, architecture, made_for, labels, limit, default_max_length(limit), config)


def choose_task(checkpoint: Checkpoint, requested: str | None) -> str:
    """The spec's task: --task when the checkpoint can serve it, else what its config.json says."""
    if requested is not None and requested not in TASKS:
        raise InitError(
            f"--task {requested!r} is not a task; the tasks are {', '.join(TASKS)}",
            hint="Leave --task out to read it from the checkpoint's config.json.",
        )
    if checkpoint.architecture is not None and checkpoint.made_for is None:
        raise TaskMismatchError(
            checkpoint.describe(),
            hint="torchship serves "
            + "; ".join(dict.fromkeys(d.checkpoint.phrase for d in TASKS.values()))
            + " checkpoints; save one of those with save_pretrained.",
        )
    if checkpoint.made_for is None:
        if requested is None:
            raise InitError(
                f"{checkpoint.describe()}, so init cannot choose the task",
                hint=f"Pass --task, one of {', '.join(TASKS)} (the gate checks that the weights fit it).",
            )
        task = requested
    else:
        servable = tasks_served_by(checkpoint.made_for, checkpoint.architecture, checkpoint.config)
        if requested is not None and requested not in servable:
            raise TaskMismatchError(
                f"{checkpoint.describe()}; it cannot serve --task {requested} (it can serve: "
                f"{', '.join(servable)})",
                hint=f"Leave --task out (init reads {checkpoint.made_for} from config.json)"
                + (f" or use --task {' / '.join(servable)}" if len(servable) > 1 else "")
                + f"; to serve {requested}, point --model at a checkpoint trained for it.",
            )
        task = requested or checkpoint.made_for
    # A head that cannot give the task's answers (a classifier without label names would answer
    # LABEL_0…): the gate refuses it, so init does now.
    num_labels = int(checkpoint.config.get("num_labels") or len(checkpoint.labels))
    check_head(checkpoint.path, task, dict(enumerate(checkpoint.labels)), num_labels, "config.json")
    return task
