"""The handler's settings: the `handler:` section of a .mar's model-config.yaml, typed.

Every shared key and the value the handler uses when a config lacks it are declared here and nowhere
else; a task's own keys sit under `settings:` and are declared by its runtime module (handlers/tasks/). The
packager writes this section (torchship/handler_settings.py builds it from the spec, whose own defaults
stay in spec.py); the handler reads it back with `from_dict`. Like the rest of handlers/, this module
depends on the standard library only: it is shipped inside the .mar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# TorchServe's own default max_response_size: a larger answer makes TorchServe drop the worker.
DEFAULT_MAX_RESPONSE_BYTES = 6_553_500


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_ints(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


@dataclass(frozen=True)
class HandlerConfig:
    """What the handler needs besides the model, the tokenizer and the model's config.json."""

    max_length: int  # tokens per text; no default: every .mar states it
    task: str = "embeddings"
    # Layout inside the extracted .mar (in-process checks point tokenizer_dir at the HF model dir).
    compiled_dir: str = "compiled"
    tokenizer_dir: str = "."
    truncation: bool = True
    compute_batch_size: int = 8  # texts per model call
    buckets: tuple[int, ...] | None = None  # padding lengths; None: pad to the longest text of a sub-batch
    workers: int = 1
    threads: int | None = None  # None: the host's cores divided by workers
    # Per-request budgets (the answer is that request's 400/413, the batch goes on).
    max_texts_per_request: int = 64
    max_body_bytes: int = 1024 * 1024
    max_tokens_per_request: int | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    # The task's own settings (handlers/tasks/<task>.py: its Settings class reads them).
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HandlerConfig:
        """The config from a model-config.yaml `handler:` section: missing keys take the defaults above,
        values are converted to their types; an unknown key is refused (a typo would otherwise be a
        silently ignored setting)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown handler setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
            )
        if "max_length" not in values or values["max_length"] is None:
            raise ValueError("the handler config lacks 'max_length' (tokens per text)")
        converted = {}
        for key, value in values.items():
            if value is None and key not in _NULLABLE:
                continue  # null where a value is required: the default
            converted[key] = _CONVERT[key](value) if key in _CONVERT else value
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values (lists, not tuples), every key written, so a .mar states all it uses."""
        return {
            key: list(value)
            if isinstance(value, tuple)
            else dict(value)
            if isinstance(value, Mapping)
            else value
            for key, value in dataclasses.asdict(self).items()
        }


_NULLABLE = {"buckets", "threads", "max_tokens_per_request"}
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "max_length": int,
    "task": str,
    "compiled_dir": str,
    "tokenizer_dir": str,
    "truncation": bool,
    "compute_batch_size": int,
    "buckets": _optional_ints,
    "workers": int,
    "threads": _optional_int,
    "max_texts_per_request": int,
    "max_body_bytes": int,
    "max_tokens_per_request": _optional_int,
    "max_response_bytes": int,
    "settings": dict,
}
