"""`tune --write`: put the chosen serve: values into the spec file, changing nothing else.

The spec is edited as text, not re-dumped, so every other line — comments included — stays byte for
byte. The serve: entry itself is rewritten as one flow mapping: its keys the tune does not set are kept
with their values, but comments inside a block-style serve: section are lost (said in the README). The
result is loaded back as a spec and refused unless only serve: changed; the file is replaced atomically.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import yaml

from torchship.errors import SpecError
from torchship.spec import load_spec
from torchship.tune.plan import ServeConfig

_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def serve_values(current: dict, config: ServeConfig) -> dict:
    """The spec's serve: mapping with the tuned values; keys the tune does not touch keep their values."""
    return {
        **current,
        "batch_size": config.batch_size,
        "max_batch_delay_ms": config.max_batch_delay_ms,
        "workers": config.workers,
        "threads": config.threads,
    }


def serve_line(values: dict) -> str:
    flow = yaml.safe_dump(values, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return f"serve: {flow}"


def with_serve(text: str, values: dict) -> str:
    """`text` (a spec file) with its top-level serve: entry replaced, or one appended when it has none."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"^serve\s*:", line)), None)
    new = serve_line(values) + "\n"
    if start is None:
        return text + ("" if text.endswith("\n") or not text else "\n") + new
    end = start + 1
    # The entry runs on over indented lines (a block mapping or a wrapped flow) up to the next top-level
    # key; blank lines and comments at column 0 right before that key belong to what follows.
    while end < len(lines) and not _TOP_LEVEL_KEY.match(lines[end]):
        end += 1
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return "".join(lines[:start]) + new + "".join(lines[end:])


def write_serve(spec_path: Path, config: ServeConfig) -> str:
    """Rewrite `spec_path`'s serve: entry with `config`; returns the new serve: line."""
    original = spec_path.read_text(encoding="utf-8")
    before = load_spec(spec_path)
    current = (yaml.safe_load(original) or {}).get("serve") or {}
    values = serve_values(current, config)
    updated = with_serve(original, values)
    fd, tmp_name = tempfile.mkstemp(dir=spec_path.parent, prefix=f".{spec_path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(updated)
        after = load_spec(tmp)
        changed = [
            key
            for key, value in before.model_dump(exclude={"spec_path"}).items()
            if key != "serve" and after.model_dump(exclude={"spec_path"}).get(key) != value
        ]
        if changed or after.serve.model_dump() != before.serve.model_copy(update=values).model_dump():
            raise SpecError(
                f"{spec_path}: could not rewrite serve: alone (would change {', '.join(changed) or 'serve'})",
                hint=f"Paste this line into the spec instead: {serve_line(values)}",
            )
        os.replace(tmp, spec_path)
    finally:
        tmp.unlink(missing_ok=True)
    return serve_line(values)
