"""The fetch stage: bring the model source to a local Hugging Face-format directory.

Sources: a directory (relative to the spec file), or `pkg:MODULE/SUBDIR` for a model shipped inside an
installed Python package (how the demo model arrives without network).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from torchship.errors import SourceError
from torchship.hashing import sha256_file, sha256_json
from torchship.pipeline import StageContext
from torchship.settings import Settings
from torchship.spec import PKG_PREFIX, ModelSpec
from torchship.storage.model_dir import download_model_dir, list_model_dir
from torchship.storage.s3 import client_from_settings

MODEL_DIRNAME = "model"
# Files that describe a repository, not the model; copying them would only churn hashes.
_NOT_MODEL = frozenset({".gitattributes", ".gitignore"})
_NOT_MODEL_DIRS = frozenset({"__pycache__", ".git"})
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")


def resolve_source(spec: ModelSpec) -> Path:
    """The local directory the spec's `source` names, checked to look like a Hugging Face model."""
    source = spec.source
    if source.startswith(PKG_PREFIX):
        module, _, subdir = source[len(PKG_PREFIX) :].partition("/")
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None or not (found.origin or found.submodule_search_locations):
            raise SourceError(
                f"source '{source}': Python package module '{module}' is not installed",
                hint=f"Install the package that provides '{module}' (e.g. `pip install {module.replace('_', '-')}`).",
            )
        base = (
            Path(found.origin).parent
            if found.origin
            else Path(next(iter(found.submodule_search_locations or ())))
        )
        path = base / subdir if subdir else base
    elif "://" in source:
        raise SourceError(f"source '{source}' is remote: it is downloaded by the fetch stage, not resolved")
    else:
        path = spec.resolve(source)
    if not path.is_dir():
        builder = spec.spec_dir / "build_model.py"  # the demo specs build their checkpoint first
        raise SourceError(
            f"source directory {path} does not exist (from source '{source}' in {spec.spec_path})",
            hint=f"Build it first: python {builder}"
            if builder.is_file()
            else "Point `source` at a directory made by `save_pretrained` (relative paths start at the spec file).",
        )
    if not (path / "config.json").is_file():
        raise SourceError(
            f"source directory {path} has no config.json: it is not a Hugging Face model directory",
            hint="Save the model with `model.save_pretrained(dir)` and `tokenizer.save_pretrained(dir)`.",
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise SourceError(
            f"source directory {path} has no tokenizer files ({', '.join(TOKENIZER_FILES)})",
            hint="Save the tokenizer beside the model with `tokenizer.save_pretrained(dir)`.",
        )
    return path


def _symlink_target(link: Path, root: Path) -> Path:
    """Where a symlink inside the source tree leads; an error unless that is an existing path inside it."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop (RuntimeError before 3.13)
        raise SourceError(
            f"source {root}: symlink {link.relative_to(root)} -> {os.readlink(link)} is dangling",
            hint="Remove the broken link or restore the file it points to.",
        ) from None
    if not target.is_relative_to(root):
        raise SourceError(
            f"source {root}: symlink {link.relative_to(root)} points outside the model directory "
            f"(to {target})",
            hint="fetch copies only what is inside the source directory: copy the target in "
            "(e.g. `cp -rL SRC DEST` makes a copy without links) and point `source` at that.",
        )
    return target


def source_files(root: Path) -> dict[str, Path]:
    """{relative path: the file whose bytes fetch copies there}, sorted: every file below `root` except
    repository files. A symlink to a file or directory inside the tree counts as a copy of it; one that
    points out of the tree or nowhere is an error. Hashing and copying both use this one list, so the
    fetch stage's input hash is exactly what it copies."""
    root = root.resolve()
    found: dict[str, Path] = {}

    def walk(directory: Path, rel: Path, ancestors: frozenset[Path]) -> None:
        for entry in sorted(directory.iterdir(), key=lambda p: p.name):
            if entry.name in _NOT_MODEL or entry.name in _NOT_MODEL_DIRS:
                continue
            real = _symlink_target(entry, root) if entry.is_symlink() else entry
            if real.is_dir():
                if real in ancestors:
                    raise SourceError(
                        f"source {root}: symlink {(rel / entry.name)} loops back to {real}",
                        hint="Remove the link: a model directory has no cycles.",
                    )
                walk(real, rel / entry.name, ancestors | {real})
            elif real.is_file():
                found[str(rel / entry.name)] = real

    walk(root, Path(), frozenset({root}))
    return dict(sorted(found.items()))


def source_tree_sha256(root: Path) -> str:
    return sha256_json({rel: sha256_file(path) for rel, path in source_files(root).items()})


def copy_source(root: Path, target: Path) -> None:
    """Copy exactly `source_files(root)` into `target`: plain files, no links."""
    for rel, path in source_files(root).items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / rel)


def is_s3(spec: ModelSpec) -> bool:
    return spec.source.startswith("s3://")


def source_inputs(spec: ModelSpec, settings: Settings) -> dict[str, str]:
    if is_s3(spec):
        # Object sizes and ETags: a changed object re-runs fetch without downloading to find out.
        return {"source": sha256_json(list_model_dir(spec.source, client_from_settings(settings)))}
    return {"source": source_tree_sha256(resolve_source(spec))}


def run_fetch(ctx: StageContext) -> dict[str, Any]:
    target = ctx.out_dir / MODEL_DIRNAME
    if is_s3(ctx.spec):
        source = ctx.spec.source
        ctx.progress(f"downloading {source}")
        download_model_dir(source, target, client_from_settings(ctx.settings))
        for name in _NOT_MODEL:
            (target / name).unlink(missing_ok=True)
    else:
        local = resolve_source(ctx.spec)
        source = str(local)
        ctx.progress(f"copying {local}")
        copy_source(local, target)
    config = json.loads((target / "config.json").read_text())
    files = [p for p in target.rglob("*") if p.is_file()]
    return {
        "source": str(source),
        "model_type": config.get("model_type"),
        "architectures": config.get("architectures"),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }


def summarize_fetch(details: dict[str, Any]) -> str:
    return (
        f"{details.get('model_type')} · {details.get('files')} files · {details.get('bytes', 0) / 1e6:.1f} MB"
    )
