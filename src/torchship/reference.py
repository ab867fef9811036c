"""In-process results of the source (eager) model: what served results must equal.

The same handler code that runs inside TorchServe runs here with the eager model in place of the traced
one, so a served/in-process difference can only come from the .mar (the traced model, the packaged
tokenizer and settings) or from TorchServe itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.handler_settings import in_process_settings
from torchship.handlers.service import answer_bodies, build_task
from torchship.modeling import fit_to_model_dir, load_source_model
from torchship.spec import ModelSpec


def source_results(spec: ModelSpec, model_dir: Path, bodies: list[Any]) -> list[Any]:
    """One answer per request body, as the handler answers it, from the source model.

    A spec that leaves compile.max_length out gets the model's own, as the stages fit it (image and rehearse
    read the spec as written, not the fitted one the stages recorded)."""
    spec = fit_to_model_dir(spec, model_dir)
    config = in_process_settings(spec, model_dir)
    task = build_task(
        model_dir, config, model=load_source_model(model_dir, spec.task, spec.spec_path).as_model()
    )
    return answer_bodies(task, bodies)
