"""The serving runtime's wheels, downloaded once per the serve lock (torchship/locks/serve.txt) and reused by every build.

The image installs them with `pip install --no-index`, so a build needs no network for Python packages and
installs exactly the pinned closure in serve.txt. In CodeBuild, pip needs the CPU-only torch index
(`--extra-index-url https://download.pytorch.org/whl/cpu`) to find `torch==2.13.0+cpu`; here pip's own
configuration already finds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from torchship.hashing import sha256_file
from torchship.image.errors import ImageBuildError

# The image's Python (Debian 12) and platform: wheels are chosen for it, not for the host running torchship.
PLATFORM_ARGS = (
    "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux2014_x86_64",
)  # fmt: skip


def pinned_names(requirements: Path) -> set[str]:
    """The distribution names serve.txt pins (normalized as wheel file names spell them)."""
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(line.split("==", 1)[0].strip().lower().replace("-", "_"))
    return names


def missing_wheels(wheelhouse: Path, requirements: Path) -> list[str]:
    present = {p.name.split("-", 1)[0].lower() for p in wheelhouse.glob("*.whl")}
    return sorted(pinned_names(requirements) - present)


def default_cache(requirements: Path) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "torchship" / "wheelhouse" / sha256_file(requirements)[:16]


def ensure_wheelhouse(requirements: Path, wheelhouse: Path | None, log: Path) -> Path:
    """A directory with every wheel serve.txt pins: the given one (checked), or the cache (filled once)."""
    if wheelhouse is not None:
        missing = missing_wheels(wheelhouse, requirements)
        if missing:
            raise ImageBuildError(
                f"the wheelhouse {wheelhouse} lacks wheels for: {', '.join(missing)}",
                hint=f"Fill it: pip download --no-deps {' '.join(PLATFORM_ARGS)} -d {wheelhouse} -r {requirements}",
            )
        return wheelhouse
    target = default_cache(requirements)
    if target.is_dir() and not missing_wheels(target, requirements):
        return target
    # Download into a temp dir and rename: a half-filled wheelhouse is never mistaken for a complete one.
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", *PLATFORM_ARGS,
        "-d", str(tmp), "-r", str(requirements),
    ]  # fmt: skip
    try:
        with log.open("ab") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise ImageBuildError(
                f"pip could not download the serving runtime's wheels (exit {done.returncode})",
                hint=f"See {log}. A CPU-only torch needs --extra-index-url https://download.pytorch.org/whl/cpu "
                "(PIP_EXTRA_INDEX_URL); or point TORCHSHIP_WHEELHOUSE at a prepared directory.",
            )
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
