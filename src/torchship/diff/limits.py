"""Promotion limits (`promote.max_<measure>` / `promote.min_<measure>` in the spec): which names a task has,
and which limits a diff breaks."""

from __future__ import annotations

from torchship.diff.record import Breach, LatencyComparison, TaskDiff
from torchship.errors import SpecError
from torchship.spec import ModelSpec
from torchship.tasks import TaskDefinition

# new / old, measured side by side (diff/serve.py): every task has them.
LATENCY_MEASURES = ("p50_ratio", "p99_ratio", "throughput_ratio")


def measure_names(definition: TaskDefinition) -> tuple[str, ...]:
    return (*definition.diff_measures, *LATENCY_MEASURES)


def check_limit_names(spec: ModelSpec, definition: TaskDefinition) -> dict[str, float]:
    """The spec's limits, each naming a measure this task's diff has; else a SpecError listing them."""
    return _named(spec, "promote", spec.promote.limits(), definition, measure_names(definition))


def check_precision_limit_names(spec: ModelSpec, definition: TaskDefinition) -> dict[str, float]:
    """`validate.precision_limits`, each naming one of the task's diff measures (a reduced-precision model
    is compared with its source on answers, in-process: there is no latency side to limit)."""
    return _named(
        spec,
        "validate.precision_limits",
        spec.validate.precision_limits,
        definition,
        definition.diff_measures,
    )


def _named(
    spec: ModelSpec,
    section: str,
    limits: dict[str, float],
    definition: TaskDefinition,
    names: tuple[str, ...],
) -> dict[str, float]:
    for key in limits:
        measure = key.split("_", 1)[1]
        if measure not in names:
            raise SpecError(
                f"{spec.spec_path}: key '{section}.{key}': the {definition.name} diff has no measure '{measure}'",
                hint=f"The {definition.name} measures: {', '.join(names)} (limits: max_<name> or min_<name>).",
            )
    return limits


def _value(name: str, task_diff: TaskDiff, latency: LatencyComparison | None) -> float | None:
    if name in LATENCY_MEASURES:
        if latency is None:
            return None
        value = getattr(latency, name)
        return None if value != value else float(value)  # NaN: no old-side figure to divide by
    found = task_diff.measure(name)
    return found.value if found is not None else None


def breaches(
    limits: dict[str, float], task_diff: TaskDiff, latency: LatencyComparison | None
) -> list[Breach]:
    """Every limit the diff breaks. A limit on a measure these inputs cannot give (too few inputs, vectors of
    other dimensions) breaks too: a promotion gate that cannot measure must not pass."""
    found = []
    changed = [c.index for c in task_diff.changed]
    for key, limit in limits.items():
        kind, name = key.split("_", 1)
        value = _value(name, task_diff, latency)
        broken = value is None or (value > limit if kind == "max" else value < limit)
        if broken:
            inputs = [] if name in LATENCY_MEASURES else changed
            found.append(Breach(measure=name, value=value, limit=limit, kind=kind, inputs=inputs))
    return found
