"""The requirement locks torchship was tested with, shipped inside the package (never read from a checkout).

`prod.txt`: torchship's own dependencies, pinned (what `torchship init` pins a user repository's CI to).
`serve.txt`: the serving image's runtime, pinned (what `torchship image` installs into the image).
`make lock` compiles them from requirements/prod.in and requirements/serve.in.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

LockName = Literal["prod", "serve"]


def lock_file(name: LockName) -> Path:
    """The path of the installed lock file `name` (a real file: the package is installed unzipped)."""
    path = Path(str(files("torchship") / "locks" / f"{name}.txt"))
    if not path.is_file():
        raise FileNotFoundError(
            f"torchship's {name} lock is missing from the installed package ({path}); reinstall torchship"
        )
    return path
