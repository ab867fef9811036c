"""The two sides of a diff: the spec's version from its verified outputs, or a published version (by number
or by the stage alias that points at it) pulled from storage with every file's sha256 checked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchship.archiver.package import mar_path
from torchship.diff.answers import ANSWERS_JSON, AnswerSheet, read_answer_sheet
from torchship.errors import TorchshipError
from torchship.pipeline import Runner
from torchship.publish import pull, read_manifest
from torchship.publish.layout import VERSION_MANIFEST
from torchship.publish.registries.base import STAGE_ALIASES, Registry
from torchship.spec import ModelSpec


@dataclass(frozen=True)
class VersionFiles:
    """One version to serve: its .mar, its task, its answer sheet (None: published before sheets existed)."""

    version: str
    origin: str
    mar: Path
    task: str | None
    sheet: AnswerSheet | None


def local_version(spec: ModelSpec, runner: Runner) -> VersionFiles:
    """The spec's version as its own verify left it (the outputs must be current: what the gate passed)."""
    runner.require_current("verify")
    root = runner.settings.stage_root(spec.name, spec.version)
    sheet_path = root / "verify" / ANSWERS_JSON
    return VersionFiles(
        version=spec.version,
        origin=f"{root} (local, verified)",
        mar=mar_path(root / "package", spec),
        task=spec.task,
        sheet=read_answer_sheet(sheet_path) if sheet_path.is_file() else None,
    )


def resolve_version(registry: Registry, client: Any, uri: str, name: str, ref: str) -> tuple[str, str]:
    """(version, how it was named) for a version number or a stage alias; errors name what there is."""
    if ref in STAGE_ALIASES:
        aliases = registry.aliases(name)
        if ref not in aliases:
            there = ", ".join(f"{stage} → {version}" for stage, version in sorted(aliases.items()))
            raise TorchshipError(
                f"no version of {name} is '{ref}' in the {registry.kind} registry",
                hint=f"Aliases set: {there}."
                if there
                else "No stage alias is set yet: name a version instead.",
            )
        return aliases[ref], f"{ref} → {aliases[ref]}"
    if read_manifest(client, uri, name, ref) is None:
        versions = registry.list_versions(name)
        there = ", ".join(versions) if versions else "none registered"
        raise TorchshipError(
            f"{name} {ref} is not a published version under {uri}",
            hint=f"Published versions of {name}: {there}. A stage alias works too: {', '.join(STAGE_ALIASES)}.",
        )
    return ref, ref


def published_version(client: Any, uri: str, name: str, version: str, named: str, into: Path) -> VersionFiles:
    """Pull a published version into `into`/<version> (each file checked against the manifest)."""
    dest = pull(uri, name, version, Path(into) / version, client)
    manifest = json.loads((dest / VERSION_MANIFEST).read_text())  # pull wrote the manifest it checked against
    sheet_path = dest / ANSWERS_JSON
    return VersionFiles(
        version=version,
        origin=f"{uri.rstrip('/')}/{name}/{version}/ ({named}, pulled and checked)",
        mar=dest / f"{name}.mar",
        task=manifest.get("task"),
        sheet=read_answer_sheet(sheet_path) if sheet_path.is_file() else None,
    )
