"""sha256 of files, directory trees and values: the cache keys and output records of stages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_text(json.dumps(value, sort_keys=True, separators=(",", ":")))


def files_under(root: Path, skip_names: frozenset[str] = frozenset()) -> list[Path]:
    """Regular files below root, sorted, relative paths; names in skip_names are left out."""
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and p.name not in skip_names and "__pycache__" not in p.parts
    )


def file_table(root: Path, skip_names: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, bytes}} for every file below root."""
    return {
        str(rel): {"sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size}
        for rel in files_under(root, skip_names)
    }


def sha256_tree(root: Path, skip_names: frozenset[str] = frozenset()) -> str:
    """One digest over the names and contents of every file below root."""
    return sha256_json({k: v["sha256"] for k, v in file_table(root, skip_names).items()})
