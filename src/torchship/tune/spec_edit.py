"""`tune --write`: put the chosen serve: values (and compile.backend / compile.precision, when the tune
chose another engine) into the spec file, changing nothing else.

The spec is edited as text, not re-dumped, so every other line — comments included — stays byte for
byte. A rewritten entry (serve:, compile:) becomes one flow mapping: its keys the tune does not set are
kept with their values, but comments inside a block-style section are lost (said in the README). The
result is loaded back as a spec and refused unless only those values changed; the file is replaced
atomically.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import yaml

from torchship.errors import SpecError
from torchship.spec import ServeSpec, load_spec
from torchship.tune.plan import Engine, ServeConfig

_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def serve_values(current: dict, config: ServeConfig) -> dict:
    """The spec's serve: mapping with the tuned values; keys the tune does not touch keep their values.
    omp_wait_policy is written when the spec has it or the tune chose other than the default."""
    values = {
        **current,
        "batch_size": config.batch_size,
        "max_batch_delay_ms": config.max_batch_delay_ms,
        "workers": config.workers,
        "threads": config.threads,
    }
    default = ServeSpec.model_fields["omp_wait_policy"].default
    if "omp_wait_policy" in current or config.omp_wait_policy != default:
        values["omp_wait_policy"] = config.omp_wait_policy
    return values


def entry_line(key: str, values: dict) -> str:
    flow = yaml.safe_dump(values, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return f"{key}: {flow}"


def serve_line(values: dict) -> str:
    return entry_line("serve", values)


def with_serve(text: str, values: dict) -> str:
    return with_entry(text, "serve", values)


def with_entry(text: str, key: str, values: dict) -> str:
    """`text` (a spec file) with its top-level `key:` entry replaced, or one appended when it has none."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(rf"^{key}\s*:", line)), None)
    new = entry_line(key, values) + "\n"
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


def write_tuned(spec_path: Path, config: ServeConfig, engine: Engine | None = None) -> list[str]:
    """Rewrite `spec_path`'s serve: entry with `config` and, when `engine` (backend, precision, products
    kept fp32) differs from the spec's, its compile: entry with it; returns the lines written."""
    original = spec_path.read_text(encoding="utf-8")
    before = load_spec(spec_path)
    document = yaml.safe_load(original) or {}
    values = serve_values(document.get("serve") or {}, config)
    updated = with_serve(original, values)
    written = [serve_line(values)]
    expected = before.model_copy(update={"serve": before.serve.model_copy(update=values)})
    wanted = (
        {"backend": engine.backend, "precision": engine.precision, "int8_keep_fp32": list(engine.keep_fp32)}
        if engine
        else {}
    )
    changes = {k: v for k, v in wanted.items() if v != getattr(before.compile, k)}
    if changes:
        compile_values = {**(document.get("compile") or {}), **changes}
        for key, default in (("precision", "fp32"), ("int8_keep_fp32", [])):
            if compile_values.get(key) == default:
                del compile_values[key]  # the default: a spec says it only when it differs
        updated = with_entry(updated, "compile", compile_values)
        written.append(entry_line("compile", compile_values))
        expected = expected.model_copy(update={"compile": before.compile.model_copy(update=changes)})
    fd, tmp_name = tempfile.mkstemp(dir=spec_path.parent, prefix=f".{spec_path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(updated)
        after = load_spec(tmp).model_dump(exclude={"spec_path"})
        wanted = expected.model_dump(exclude={"spec_path"})
        changed = [key for key, value in wanted.items() if after.get(key) != value]
        if changed:
            raise SpecError(
                f"{spec_path}: could not rewrite the tuned values alone (would change {', '.join(changed)})",
                hint=f"Paste these lines into the spec instead: {' / '.join(written)}",
            )
        os.replace(tmp, spec_path)
    finally:
        tmp.unlink(missing_ok=True)
    return written
