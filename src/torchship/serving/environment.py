"""The environment TorchServe and its model workers get: an allow-list, not a copy of ours.

Model code runs in the workers with whatever environment the frontend had, and TorchServe's launcher
reads some variables itself (TS_CONFIG_FILE replaces our config.properties; JAVA_TOOL_OPTIONS adds JVM
flags). torchship's own environment, on the other hand, holds credentials for publishing (AWS_*),
the registry (NEPTUNE_*) and perhaps a hub token (HF_TOKEN). None of that is the model's business: only
the variables a Python/Java process needs to run, locale and the numeric libraries' tuning pass.
"""

from __future__ import annotations

from collections.abc import Mapping

# Exact names that pass.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "LD_LIBRARY_PATH",
        "CUDA_VISIBLE_DEVICES",
        "TRANSFORMERS_VERBOSITY",
    }
)
# Prefixes that pass: locale, and the tuning knobs of the numeric libraries and accelerators (some
# OpenBLAS builds crash without OPENBLAS_CORETYPE on some processors).
ALLOWED_PREFIXES = ("LC_", "OPENBLAS_", "OMP_", "MKL_", "KMP_", "NEURON_RT_", "NEURON_CC_")

# Always set, whatever the caller's environment says: models load from the archive, never a hub.
FORCED = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

# serve.omp_wait_policy's default when a caller names none (spec.py says why passive).
DEFAULT_OMP_WAIT_POLICY = "passive"


def omp_environment(policy: str = DEFAULT_OMP_WAIT_POLICY) -> dict[str, str]:
    """The variables that make torch's OpenMP threads sleep (passive) or spin (active) between parallel
    regions: libgomp reads them once, when the worker imports torch, so they must be in the worker's
    environment from the start (the handler runs too late to set them)."""
    return {"OMP_WAIT_POLICY": policy.upper()}


def is_allowed(name: str) -> bool:
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def torchserve_environment(current: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """The default OpenMP wait policy, then the allow-listed part of `current` (a user's OMP_WAIT_POLICY
    wins over the default), then FORCED, then `own` (TorchServe's work dirs, JAVA_HOME, a spec's policy)."""
    env = omp_environment()
    env.update({name: value for name, value in current.items() if is_allowed(name)})
    env.update(FORCED)
    env.update(own)
    return env
