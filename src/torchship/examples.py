"""The spec's example texts (`validate.examples`, JSON lines of {"text": ...})."""

from __future__ import annotations

import json

from torchship.errors import SpecError
from torchship.spec import ModelSpec


def load_examples(spec: ModelSpec) -> list[str]:
    path = spec.examples_path()
    if path is None:
        return []
    if not path.is_file():
        raise SpecError(
            f"{spec.spec_path}: key 'validate.examples': file {path} does not exist",
            hint='Create it with one JSON object per line, e.g. {"text": "A short example."}',
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
