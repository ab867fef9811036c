"""torchship's own checkout ships its demo models the way a user repository does: its buildspec.yml and
infra/pipeline.yaml are renderings of the templates init writes, installing torchship from the checkout
(`make venv`) instead of the pinned requirement. tests/test_scaffold_own_checkout.py keeps the committed
files equal to the rendering; after changing a template, refresh them from the checkout's root with

    python -m torchship.scaffold.own_checkout
"""

from __future__ import annotations

import sys
from pathlib import Path

from torchship.scaffold.files import BUILDSPEC, PIPELINE, render_buildspec, render_pipeline
from torchship.scaffold.write import write_atomically


def own_checkout_files() -> dict[str, str]:
    """Path (relative to the checkout's root) -> the text it must hold."""
    return {BUILDSPEC: render_buildspec("checkout"), PIPELINE: render_pipeline()}


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path.cwd()
    if not (root / "src" / "torchship").is_dir():
        print(
            f"{root} is not torchship's checkout (no src/torchship): run this from its root", file=sys.stderr
        )
        return 2
    for relative, text in own_checkout_files().items():
        path = root / relative
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            print(f"unchanged {relative}")
            continue
        write_atomically(path, text)
        print(f"wrote     {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
