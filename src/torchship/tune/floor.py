"""An engine's in-process floor: requests per second of the handler's own code (tokenize, run, answer) on
its compiled model in this process, a batch of requests per call and every core in one pool. No server can
beat it (no HTTP, no queue), so it is the speed axis of tune's frontier — measured for refused engines too,
whose compiled model exists even though the gate kept it from being packaged — and what a served
configuration is compared with (served / floor)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from torchship.handler_settings import in_process_settings
from torchship.handlers.service import answer_bodies, build_task
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec

FLOOR_SECONDS = 3.0  # long enough for a few hundred short requests on 2 cores, short against a sweep


def floor_rps(spec: ModelSpec, stage_root: Path, bodies: list[Any], seconds: float = FLOOR_SECONDS) -> float:
    """Requests/s over `bodies` (cycled, spec.serve.batch_size per call) on the engine compiled under
    `stage_root` (its fetch/ and compile/ stage outputs), after one warm-up call."""
    model_dir = stage_root / "fetch" / MODEL_DIRNAME
    compiled_dir = stage_root / "compile"
    previous = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # ONNX Runtime's pool is sized from it at load
    try:
        task = build_task(
            model_dir, in_process_settings(spec, model_dir, compiled_dir), compiled_dir=compiled_dir
        )
        batch = max(1, spec.serve.batch_size)
        answer_bodies(task, bodies[:batch])
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            chunk = [bodies[(done + i) % len(bodies)] for i in range(batch)]
            answer_bodies(task, chunk)
            done += batch
        return done / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
