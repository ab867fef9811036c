"""Fixed-shape compilation: one module per (batch size, sequence-length bucket).

Backends whose compiled graphs accept only the exact shape they were compiled for (AWS Neuron; and
TorchScript traces of models whose control flow depends on the length) compile every combination of
`compile.batch_sizes` and `compile.buckets`, each taking the model's inputs positionally
(compiled.json "inputs"). At run time `handlers.loading.FixedShapeForward` pads every input up to the
bucket and the batch up to the nearest compiled batch size, and slices each output back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torchship.compile.common import compare_at, example_batch, probe_failure
from torchship.errors import CompileError
from torchship.handlers.encoder import pad_id_of, pad_type_id_of
from torchship.handlers.loading import FixedShapeForward
from torchship.handlers.model_io import Features, NamedIO

# (eager module, example features of that shape) -> a module compiled for that exact shape, taking the
# inputs positionally in eager.io.inputs order
TraceFn = Callable[[NamedIO, Features], Any]


def plan_shapes(lengths: list[int], batch_sizes: list[int]) -> list[tuple[int, int]]:
    """Every (batch, length) to compile, largest length first (the slowest compile shows up first)."""
    return [
        (batch, length) for length in sorted(set(lengths), reverse=True) for batch in sorted(set(batch_sizes))
    ]


def compile_fixed_shapes(
    trace: TraceFn,
    eager: NamedIO,
    tokenizer,
    lengths: list[int],
    batch_sizes: list[int],
    out_dir: Path,
    atol: float,
    rtol: float,
    progress: Callable[[str], None],
    save: Callable[[Any, Path], None] = lambda module, path: torch.jit.save(module, str(path)),
) -> dict[str, Any]:
    shapes: list[dict[str, Any]] = []
    modules: dict[tuple[int | None, int], Any] = {}
    plan = plan_shapes(lengths, batch_sizes)
    for i, (batch, length) in enumerate(plan, start=1):
        progress(f"compiling shape {i}/{len(plan)}: batch {batch} x length {length}")
        module = trace(eager, example_batch(tokenizer, eager.io, batch, length, seed=i))
        name = f"model-b{batch}-l{length}.pt"
        save(module, out_dir / name)
        shapes.append({"batch": batch, "length": length, "file": name})
        modules[(batch, length)] = module
    # Check the assembled runtime, padding included: partial batches and lengths between buckets.
    runtime = FixedShapeForward(modules, eager.io, pad_id_of(tokenizer), pad_type_id_of(tokenizer))
    probes = []
    for length in sorted(set(lengths)):
        for rows in sorted({1, max(batch_sizes) + 1, max(1, min(batch_sizes) + 1)}):
            probe_length = max(2, length - 1)
            features = example_batch(tokenizer, eager.io, rows, probe_length, seed=length + rows)
            probe = compare_at(eager.named, runtime, features, atol, rtol)
            probes.append(probe)
            if not probe["ok"]:
                raise CompileError(
                    f"the fixed-shape modules differ from the source model at batch {rows} x length "
                    f"{probe_length} (bucket {length}): {probe_failure(probe, atol)}",
                    hint="Check compile.buckets and compile.batch_sizes; the gate would refuse this model.",
                )
    return {"format": "fixed-shape", "shapes": shapes, "probes": probes}
