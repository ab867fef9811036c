"""An engine's in-process floor: requests per second of the handler's own code (tokenize, run, answer) on
its compiled model, a batch of requests per call and every core in one pool. No server can beat it (no
HTTP, no queue), so it is the speed axis of tune's frontier — measured for refused engines too, whose
compiled model exists even though the gate kept it from being packaged — and what a served configuration
is compared with (served / floor).

Measured in a process of its own with the serving OpenMP wait policy in its environment from the start
(libgomp reads OMP_WAIT_POLICY once, when torch loads): in the caller's process torch's threads spin, and
on a loaded machine a spinning TorchScript floor collapsed to 11.7 req/s where the served model did 60 —
a floor that measures the caller's threads, not the engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from torchship.errors import TorchshipError
from torchship.serving.environment import omp_environment
from torchship.spec import ModelSpec

FLOOR_SECONDS = 3.0  # long enough for a few hundred short requests on 2 cores, short against a sweep


def floor_rps(
    spec: ModelSpec,
    stage_root: Path,
    bodies: list[Any],
    seconds: float = FLOOR_SECONDS,
    omp_wait_policy: str | None = None,
) -> float:
    """Requests/s over `bodies` (cycled, spec.serve.batch_size per call) on the engine compiled under
    `stage_root` (its fetch/ and compile/ stage outputs), after one warm-up call, in a child process whose
    OpenMP threads follow `omp_wait_policy` (default: the spec's serve.omp_wait_policy)."""
    job = {
        "spec": spec.model_dump(mode="json"),
        "spec_path": str(spec.spec_path),
        "stage_root": str(stage_root),
        "bodies": bodies,
        "seconds": seconds,
    }
    env = {**os.environ, **omp_environment(omp_wait_policy or spec.serve.omp_wait_policy)}
    done = subprocess.run(
        [sys.executable, "-m", "torchship.tune.floor"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds * 20 + 300,  # loading a large model and tokenizer dominates; never hang a tune
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TorchshipError(
            f"the in-process floor of {stage_root} failed: {last}",
            hint="Run `torchship run SPEC --until validate` for that engine to see why it does not load.",
        )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["rps"])


def _measure(spec: ModelSpec, stage_root: Path, bodies: list[Any], seconds: float) -> float:
    import torch  # here, in the child: the caller's process never loads a second model

    from torchship.handler_settings import in_process_settings
    from torchship.handlers.service import answer_bodies, build_task
    from torchship.sources import MODEL_DIRNAME

    model_dir = stage_root / "fetch" / MODEL_DIRNAME
    compiled_dir = stage_root / "compile"
    torch.set_num_threads(os.cpu_count() or 1)  # ONNX Runtime's pool is sized from it at load
    task = build_task(
        model_dir, in_process_settings(spec, model_dir, compiled_dir), compiled_dir=compiled_dir
    )
    batch = max(1, spec.serve.batch_size)
    answer_bodies(task, bodies[:batch])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        answer_bodies(task, [bodies[(done + i) % len(bodies)] for i in range(batch)])
        done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    job = json.loads(sys.stdin.read())
    spec = ModelSpec.model_validate(job["spec"]).model_copy(update={"spec_path": Path(job["spec_path"])})
    rps = _measure(spec, Path(job["stage_root"]), job["bodies"], float(job["seconds"]))
    print(json.dumps({"rps": rps}))


if __name__ == "__main__":
    main()
