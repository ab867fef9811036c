"""outputs/<name>/<version>/tune/: tune.json and tune.html, written together or not at all."""

from __future__ import annotations

from pathlib import Path

from torchship.pipeline import replace_dir, temp_dir_beside
from torchship.tune.chart import render_chart
from torchship.tune.records import TuneResult

TUNE_DIRNAME = "tune"


def write_outputs(root: Path, result: TuneResult) -> Path:
    """Fill a temp dir beside the final one, then swap it in with the pipeline's own rename; a failed or
    interrupted tune leaves the previous tune/ as it was."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / TUNE_DIRNAME
    tmp = temp_dir_beside(final)
    tmp.mkdir()
    (tmp / "tune.json").write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (tmp / "tune.html").write_text(render_chart(result), encoding="utf-8")
    replace_dir(tmp, final)
    return final
