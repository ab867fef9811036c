"""A copy of the packaged .mar that differs only in its serving configuration.

TorchServe reads batch size, batch delay and workers from the archive's model-config.yaml at load time,
and the handler reads its torch thread count from the same file; this TorchServe runs with the model
register API off (hardening), so re-registering with new query parameters is not available. Rewriting
model-config.yaml into a copy costs about a second for the demo model and needs no repackaging, no
compile and no torch-model-archiver: every other file is copied byte for byte (archiver/stored.py).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import yaml

from torchship.archiver.package import MODEL_CONFIG_FILE
from torchship.archiver.stored import write_stored
from torchship.errors import PackageError
from torchship.tune.plan import ServeConfig


def configured_model_config(original: dict, config: ServeConfig) -> dict:
    """`original` (a .mar's model-config.yaml) with `config`'s serving values."""
    updated = dict(original)
    updated.update(
        minWorkers=config.workers,
        maxWorkers=config.workers,
        batchSize=config.batch_size,
        maxBatchDelay=config.max_batch_delay_ms,
    )
    handler = dict(updated.get("handler") or {})
    handler.update(workers=config.workers, threads=config.threads)
    updated["handler"] = handler
    return updated


def read_model_config(mar: Path) -> dict:
    try:
        with zipfile.ZipFile(mar) as archive:
            config = yaml.safe_load(archive.read(MODEL_CONFIG_FILE))
    except (KeyError, zipfile.BadZipFile, OSError, yaml.YAMLError) as exc:
        raise PackageError(
            f"{mar} has no readable {MODEL_CONFIG_FILE} ({exc})",
            hint="Re-package it: `torchship run SPEC --until package --force`.",
        ) from None
    if not isinstance(config, dict):
        raise PackageError(f"{mar}: {MODEL_CONFIG_FILE} is not a mapping", hint="Re-package it.")
    return config


def write_variant(mar: Path, config: ServeConfig, target: Path) -> Path:
    """Write the variant of `mar` for `config` to `target` (a .mar path) and return it."""
    model_config = configured_model_config(read_model_config(mar), config)
    return write_stored(
        mar, target, {MODEL_CONFIG_FILE: yaml.safe_dump(model_config, sort_keys=False).encode()}
    )
