"""The version manifest (`manifest.json`): what publish writes last to make a version complete, and what
publish, pull and every registry backend compare. Shared here so that registries and the publisher import it
from one module instead of from each other."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from torchship.publish.errors import IntegrityError
from torchship.publish.layout import MANIFEST_FORMAT, VERSION_MANIFEST
from torchship.versions import check_format

# {stored file name: {"sha256": hex, "bytes": size}}
FileTable = dict[str, dict[str, Any]]


class FileEntry(BaseModel):
    """One stored file as the manifest lists it."""

    model_config = ConfigDict(extra="forbid")

    sha256: str
    bytes: int


class VersionManifest(BaseModel):
    """The fields of manifest.json, in one place. Stored and passed on as its JSON dict (`model_dump`), which is
    what registries record and PublishResult.manifest holds."""

    manifest_format: int = MANIFEST_FORMAT
    name: str
    version: str
    task: str | None
    files: dict[str, FileEntry]
    source: Any  # the package record's source block, as recorded
    compiled: Any
    torchship_version: str | None
    git_commit: str | None
    gate: dict[str, Any]  # the package's gate record: verdict, checks, report_sha256
    published_at: str


def build_manifest(record: dict[str, Any], files: FileTable, git_commit: str | None) -> dict[str, Any]:
    """The manifest of a version from its package record (torchship.json) and the file table."""
    manifest = VersionManifest(
        name=record["name"],
        version=record["version"],
        task=record.get("task"),
        files={rel: FileEntry(**entry) for rel, entry in files.items()},
        source=record.get("source"),
        compiled=record.get("compiled"),
        torchship_version=record.get("torchship_version"),
        git_commit=git_commit,
        gate=record["gate"],
        published_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
    )
    return manifest.model_dump(mode="json")


def differing_files(stored: dict[str, Any], local: dict[str, dict[str, Any]]) -> list[str]:
    """Names whose sha256 or size differ, or that only one side has."""
    names = sorted(set(stored) | set(local))
    return [
        n
        for n in names
        if n not in stored
        or n not in local
        or stored[n].get("sha256") != local[n]["sha256"]
        or stored[n].get("bytes") != local[n]["bytes"]
    ]


def check_stored_manifest(stored: Any, name: str, version: str, uri: str) -> dict[str, Any]:
    if (
        not isinstance(stored, dict)
        or stored.get("name") != name
        or stored.get("version") != version
        or not isinstance(stored.get("files"), dict)
    ):
        raise IntegrityError(
            f"{uri}{VERSION_MANIFEST} is not a torchship manifest of {name} {version}",
            hint="Inspect the object; if it is stray, unpublish this version and publish again.",
        )
    check_manifest_format(stored, f"{uri}{VERSION_MANIFEST}")
    return stored


def check_manifest_format(manifest: dict[str, Any], where: str) -> int:
    """A manifest this torchship can read: its own format or an older one, whichever version published it; a
    newer format is refused (UnknownFormatError) before any of its fields is trusted."""
    return check_format(
        manifest.get("manifest_format"),
        known=MANIFEST_FORMAT,
        field="manifest_format",
        what=where,
        written_by=manifest.get("torchship_version"),
    )
