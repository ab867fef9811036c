"""Rewrite a .mar with every entry stored (no compression), optionally replacing some entries' bytes.

Why stored: TorchServe extracts the archive at every start, and inflating the weights is most of that —
measured with the demo model (bench/serving.py): 6.4 s from process start to the first 200 with the
deflated archive torch-model-archiver writes, 4.7 s with the same archive stored. Float weights hardly
compress (83 MB deflated vs 91 MB stored for MiniLM), so a restart is cheaper at a small cost on disk.
Every entry keeps its name, date and permissions; only the compression method (and any replaced
entry's bytes) change.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

_CHUNK = 1 << 20


def write_stored(source: Path, target: Path, replacements: dict[str, bytes] | None = None) -> Path:
    """Copy the zip `source` to `target` with every entry stored; entries named in `replacements` get
    those bytes instead. Written beside `target` first, then renamed: a failure leaves no partial file."""
    replacements = replacements or {}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(source) as original, zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as copy:
            for info in original.infolist():
                entry = _stored(info)
                if info.filename in replacements:
                    copy.writestr(entry, replacements[info.filename])
                elif info.is_dir():
                    copy.writestr(entry, b"")
                else:
                    with original.open(info) as data, copy.open(entry, "w") as out:
                        while chunk := data.read(_CHUNK):
                            out.write(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _stored(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
    copy.external_attr = info.external_attr
    copy.compress_type = zipfile.ZIP_STORED
    return copy
