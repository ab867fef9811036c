"""Local directories written all or nothing: build in a temporary directory beside the destination, then
rename it into place (one rename on the same filesystem), so a failure never leaves half a directory."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from torchship.storage.errors import PublishError


def staging_dir(dest: Path) -> Path:
    """A fresh temporary directory beside `dest` (same filesystem, so the final rename is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))


def move_into_place(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Rename the verified `tmp` to `dest`; an existing `dest` is replaced only with `overwrite`."""
    if dest.exists() or dest.is_symlink():
        if not overwrite:
            raise PublishError(
                f"{dest} already exists",
                hint="Choose another destination, remove it, or pass overwrite (--force).",
            )
        old = dest.parent / f".{dest.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        dest.rename(old)
        try:
            tmp.rename(dest)
        except BaseException:
            old.rename(dest)
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        tmp.rename(dest)
