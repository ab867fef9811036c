"""Model names: the spec's `name` is a Kubernetes object name (DNS-1123 label), so init derives one from
the model folder and suggests one when --name is not."""

from __future__ import annotations

import re

from torchship.scaffold.errors import InitError
from torchship.spec import NAME_PATTERN

MAX_NAME_LENGTH = 63  # ModelSpec.name's limit, a DNS-1123 label's


def kubernetes_name(text: str) -> str:
    """`text` made a valid name: lowercase, every run of other characters one '-', trimmed to 63
    characters without a leading or trailing '-' ("" when nothing usable is left)."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name[:MAX_NAME_LENGTH].rstrip("-")


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and re.fullmatch(NAME_PATTERN, name) is not None


def model_name(requested: str | None, model_folder_name: str) -> str:
    """--name when it is valid, else the model folder's name made valid; a clear error otherwise."""
    if requested is not None:
        if is_valid_name(requested):
            return requested
        suggestion = kubernetes_name(requested)
        raise InitError(
            f"--name {requested!r} is not a valid model name: it becomes Kubernetes object names, so it "
            "must be at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            hint=f"Use --name {suggestion}" if suggestion else "Use e.g. --name sentiment-classifier",
        )
    derived = kubernetes_name(model_folder_name)
    if not derived:
        raise InitError(
            f"cannot make a model name from the folder name {model_folder_name!r}",
            hint="Pass one with --name, e.g. --name sentiment-classifier",
        )
    return derived
