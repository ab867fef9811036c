"""The spec's example texts (`validate.examples`, JSON lines of {"text": ...}), or the built-in set.

Without an examples file the gate and verify still need texts to compare the compiled and served model
against the source: BUILTIN_EXAMPLES, a fixed, documented set (README: "Built-in examples") with
sentiment, named entities and plain descriptive sentences, so every task gets meaningful answers.
"""

from __future__ import annotations

import json

from torchship.errors import SpecError
from torchship.spec import ModelSpec

BUILTIN_EXAMPLES = (
    "TorchServe serves PyTorch models over HTTP.",
    "The cat sat on the mat.",
    "I loved this film, the acting was wonderful.",
    "The service was slow and the food arrived cold.",
    "John Smith moved from London to Paris to work for Google.",
    "Marie Curie won the Nobel Prize in Physics in 1903.",
    "ok",
    "Transformers turn tokens into vectors; batching many short texts together keeps the CPU busy "
    "while padding each batch only to its longest text keeps the wasted work small.",
)


def examples_origin(spec: ModelSpec) -> str:
    """Where the examples come from, as the output says it."""
    path = spec.examples_path()
    return str(path) if path is not None else f"built-in ({len(BUILTIN_EXAMPLES)} texts; no examples file)"


def uses_builtin_examples(spec: ModelSpec) -> bool:
    return spec.examples_path() is None


def load_examples(spec: ModelSpec) -> list[str]:
    path = spec.examples_path()
    if path is None:
        return list(BUILTIN_EXAMPLES)
    if not path.is_file():
        raise SpecError(
            f"{spec.spec_path}: key 'validate.examples': file {path} does not exist",
            hint='Create it with one JSON object per line, e.g. {"text": "A short example."}, '
            "or remove the key to use the built-in example texts.",
        )
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise SpecError(f"{path}:{number}: not valid JSON: {exc}") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise SpecError(f'{path}:{number}: each line must be an object with a non-empty "text" string')
        texts.append(item["text"])
    if not texts:
        raise SpecError(f"{path}: has no examples", hint='Add lines like {"text": "A short example."}')
    return texts
