"""Publish a packaged model version to object storage, and take it down again.

A version is complete when its `manifest.json` exists: it is written last, only if absent
(If-None-Match: *), and lists the sha256 and size of every other file. Versions are immutable: publishing a
version again is a no-op when every file is byte-identical and an error otherwise. A publish that was
interrupted (no manifest yet) is resumed: files already stored with the same sha256 and size are skipped.

Every file is written create-only too (If-None-Match: *, on single puts and on completing multipart
uploads), so no publisher, racing or late, ever replaces a stored file: a version's files are the ones its
manifest lists for as long as it exists. Files left with other bytes by an unfinished publish are therefore
refused, not replaced (`unpublish` clears an incomplete version). With `verified` (what verify recorded),
a file that changed after verify is refused before anything is uploaded.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchship.hashing import sha256_file
from torchship.publish.errors import (
    ConditionFailedError,
    GateNotPassedError,
    IntegrityError,
    PublishError,
    VersionExistsError,
    VersionInUseError,
    VersionNotFoundError,
)
from torchship.publish.layout import (
    ANSWERS_JSON,
    MODEL_CONFIG,
    PACKAGE_MANIFEST,
    REPORT_HTML,
    REPORT_JSON,
    VERSION_MANIFEST,
    check_segment,
    content_type,
    version_prefix,
)
from torchship.publish.manifest import FileTable, build_manifest, check_stored_manifest, differing_files
from torchship.publish.registries.base import Registry
from torchship.storage import s3

_AUTO: Any = object()
# What hints name when the caller did not say which spec file the package came from.
SPEC_PLACEHOLDER = "SPEC"


@dataclass(frozen=True)
class PublishResult:
    """status: "published" (this call wrote the manifest) or "unchanged" (the same bytes were already
    published). `uploaded`: files this call stored; `skipped`: files already stored by an interrupted
    earlier publish (or, when unchanged, every file)."""

    status: str
    uri: str
    name: str
    version: str
    manifest: dict[str, Any]
    uploaded: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    bytes_uploaded: int = 0
    registered: bool = False

    @property
    def unchanged(self) -> bool:
        return self.status == "unchanged"

    @property
    def message(self) -> str:
        if self.unchanged:
            return f"{self.name} {self.version} is already published at {self.uri} with identical files: nothing to do"
        resumed = f" ({len(self.skipped)} already there from an interrupted publish)" if self.skipped else ""
        return f"published {self.name} {self.version} to {self.uri}: {len(self.uploaded)} file(s) uploaded{resumed}"


@dataclass(frozen=True)
class UnpublishResult:
    uri: str
    name: str
    version: str
    was_complete: bool
    deleted: tuple[str, ...] = field(default_factory=tuple)
    aborted_uploads: int = 0
    unregistered: bool = False


# --- the package on disk ---------------------------------------------------------------------------------


def read_package_record(package_dir: Path, spec: str = SPEC_PLACEHOLDER) -> dict[str, Any]:
    """The package's torchship.json, refused unless its gate verdict is "pass". `spec`: the spec file the hints
    name (the CLI passes the user's; a library caller without one gets the placeholder SPEC)."""
    path = Path(package_dir) / PACKAGE_MANIFEST
    if not path.is_file():
        raise GateNotPassedError(
            f"{package_dir} has no {PACKAGE_MANIFEST}: the .mar has no gate record",
            hint=f"Publish only what `torchship package {spec}` built (it writes the gate record beside the .mar).",
        )
    try:
        record = json.loads(path.read_text())
    except ValueError:
        raise GateNotPassedError(
            f"{path} is not valid JSON: the .mar has no readable gate record",
            hint=f"Rebuild the package with `torchship package {spec}`.",
        ) from None
    gate = record.get("gate") if isinstance(record, dict) else None
    if not isinstance(gate, dict) or "verdict" not in gate:
        raise GateNotPassedError(
            f"{path} has no gate record: the .mar was not validated",
            hint=f"Rebuild the package with `torchship run {spec}` (validate, then package).",
        )
    if gate["verdict"] != "pass":
        failed = [c.get("name", "?") for c in gate.get("checks", []) if c.get("status") == "fail"]
        which = f" (failed: {', '.join(failed)})" if failed else ""
        raise GateNotPassedError(
            f"the .mar's gate did not pass: verdict '{gate['verdict']}'{which}",
            hint=f"Fix what `torchship validate {spec}` reports, rebuild the package, then publish.",
        )
    for key in ("name", "version"):
        check_segment(record.get(key), f"{PACKAGE_MANIFEST} {key}")
    return record


def package_files(
    package_dir: Path,
    report_dir: Path,
    record: dict[str, Any],
    spec: str = SPEC_PLACEHOLDER,
    answers_dir: Path | None = None,
) -> list[tuple[str, Path]]:
    """(stored name, local path) of every file to publish, in upload order; checks they exist and that
    report.json is the report the gate recorded. `answers_dir`: verify's folder, whose answer sheet goes too."""
    package_dir, report_dir = Path(package_dir), Path(report_dir)
    name = record["name"]
    files = [
        (f"{name}.mar", package_dir / f"{name}.mar"),
        (MODEL_CONFIG, package_dir / MODEL_CONFIG),
        (REPORT_JSON, report_dir / REPORT_JSON),
        (REPORT_HTML, report_dir / REPORT_HTML),
        (PACKAGE_MANIFEST, package_dir / PACKAGE_MANIFEST),
    ]
    if answers_dir is not None:
        files.append((ANSWERS_JSON, Path(answers_dir) / ANSWERS_JSON))
    for _, path in files:
        if not path.is_file():
            raise PublishError(
                f"{path} is missing: the package is incomplete",
                hint=f"Run `torchship run {spec}` up to the package stage; pass the validate stage's folder as the report folder.",
            )
    recorded = record["gate"].get("report_sha256")
    if recorded and sha256_file(report_dir / REPORT_JSON) != recorded:
        raise PublishError(
            f"{report_dir / REPORT_JSON} is not the report this package's gate recorded",
            hint="Pass the validate folder of the same run (outputs/<name>/<version>/validate), or rebuild the package.",
        )
    return files


def current_git_commit(cwd: Path | None = None) -> str | None:
    """`git rev-parse HEAD` in cwd, or None outside a git checkout / without git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) in (40, 64) else None


def _exists_error(name: str, version: str, uri: str, differing: list[str]) -> VersionExistsError:
    return VersionExistsError(
        f"{name} {version} is already published at {uri} with other bytes ({', '.join(differing)})",
        hint="Published versions are never overwritten: bump `version` in the spec, "
        "or unpublish the old one first.",
    )


def _taken_error(name: str, version: str, uri: str, rel: str) -> IntegrityError:
    return IntegrityError(
        f"{uri}{rel} already holds other bytes, from another publish of {name} {version} that is running "
        "or was interrupted",
        hint=f"Stored files are never replaced. If no other publish is running, clear the incomplete "
        f"version with `torchship unpublish {name} {version}`, then publish again.",
    )


def check_verified(
    table: FileTable, verified: FileTable, paths: dict[str, Path], spec: str = SPEC_PLACEHOLDER
) -> None:
    """Every file to upload must be the bytes verify recorded."""
    for rel, local in table.items():
        want = verified.get(rel)
        if want is None or want.get("sha256") != local["sha256"] or want.get("bytes") != local["bytes"]:
            recorded = f"sha256 {want['sha256'][:12]}…" if want and want.get("sha256") else "nothing"
            raise IntegrityError(
                f"{paths[rel]} changed after verify (now sha256 {local['sha256'][:12]}…, verify recorded "
                f"{recorded}): refusing to publish a file that was not verified",
                hint=f"Run `torchship run {spec}` again so that verify serves and checks this file, then publish.",
            )


# --- publish ---------------------------------------------------------------------------------------------


def publish(
    package_dir: Path,
    report_dir: Path,
    uri: str,
    client: Any,
    *,
    progress: s3.Progress | None = None,
    multipart_threshold: int = s3.DEFAULT_MULTIPART_THRESHOLD,
    part_size: int = s3.DEFAULT_PART_SIZE,
    registry: Registry | None = None,
    git_commit: str | None = _AUTO,
    verified: dict[str, dict[str, Any]] | None = None,
    spec_path: str | Path | None = None,
    answers_dir: Path | None = None,
) -> PublishResult:
    """Publish the package in `package_dir` (its .mar, model-config.yaml, torchship.json) and the validation
    report in `report_dir` (report.json, report.html) to `uri` (s3://BUCKET[/PREFIX]) under
    `<name>/<version>/`, then manifest.json. Refused unless torchship.json's gate verdict is "pass".

    `progress(bytes_done, bytes_total, filename)` is called after each uploaded part / file. `registry`,
    when given, registers the version after the manifest is stored (also when unchanged: it is idempotent).
    `git_commit`: recorded in the manifest; by default `git rev-parse HEAD` in the current directory.
    `verified`: {stored name: {sha256, bytes}} as verify recorded them (publish.verified_files); every
    file must still be those bytes (they are hashed again while uploading, too). `spec_path`: the model's
    spec file, named in the hints of refusals (SPEC when not given). `answers_dir`: the verify folder whose
    answer sheet (answers.json, what `diff` compares later versions with) is published too.
    """
    spec = str(spec_path) if spec_path is not None else SPEC_PLACEHOLDER
    record = read_package_record(package_dir, spec)
    local_files = package_files(package_dir, report_dir, record, spec, answers_dir)
    table: FileTable = {
        rel: {"sha256": sha256_file(path), "bytes": path.stat().st_size} for rel, path in local_files
    }
    if verified is not None:
        check_verified(table, verified, dict(local_files), spec)
    dest = _Destination.of(client, uri, record["name"], record["version"])
    s3.ensure_bucket(client, dest.bucket)

    existing = s3.get_json(client, dest.bucket, dest.manifest_key)
    if existing is not None:
        return _unchanged(dest, existing[0], table, registry)
    options = _UploadOptions(progress, multipart_threshold, part_size)
    uploaded: list[str] = []
    skipped: list[str] = []
    for rel, path in local_files:
        (uploaded if _upload_if_missing(dest, rel, path, table[rel], options) else skipped).append(rel)
    _check_all_stored(dest, table)

    manifest = build_manifest(record, table, current_git_commit() if git_commit is _AUTO else git_commit)
    try:
        s3.put_json(client, dest.bucket, dest.manifest_key, manifest, if_none_match=True)
    except ConditionFailedError:
        # Another publisher wrote the manifest between our check and our write.
        stored = s3.get_json(client, dest.bucket, dest.manifest_key)
        if stored is None:
            raise
        return _unchanged(dest, stored[0], table, registry)
    return PublishResult(
        status="published",
        uri=dest.version_uri,
        name=dest.name,
        version=dest.version,
        manifest=manifest,
        uploaded=tuple(uploaded),
        skipped=tuple(skipped),
        bytes_uploaded=sum(table[rel]["bytes"] for rel in uploaded),
        registered=_register(registry, manifest, dest.version_uri),
    )


@dataclass(frozen=True)
class _Destination:
    """Where one version goes: its bucket, key prefix (with '/') and s3:// URI."""

    client: Any
    bucket: str
    base: str
    name: str
    version: str

    @classmethod
    def of(cls, client: Any, uri: str, name: str, version: str) -> _Destination:
        bucket, prefix = s3.parse_s3_uri(uri)
        return cls(client, bucket, version_prefix(prefix, name, version), name, version)

    @property
    def version_uri(self) -> str:
        return s3.s3_url(self.bucket, self.base)

    @property
    def manifest_key(self) -> str:
        return self.base + VERSION_MANIFEST


@dataclass(frozen=True)
class _UploadOptions:
    progress: s3.Progress | None
    multipart_threshold: int
    part_size: int


def _unchanged(dest: _Destination, stored: Any, table: FileTable, registry: Registry | None) -> PublishResult:
    """The version is already complete: a no-op if its files are these bytes, else VersionExistsError."""
    stored = check_stored_manifest(stored, dest.name, dest.version, dest.version_uri)
    differing = differing_files(stored["files"], table)
    if differing:
        raise _exists_error(dest.name, dest.version, dest.version_uri, differing)
    return PublishResult(
        status="unchanged",
        uri=dest.version_uri,
        name=dest.name,
        version=dest.version,
        manifest=stored,
        skipped=tuple(table),
        registered=_register(registry, stored, dest.version_uri),
    )


def _upload_if_missing(
    dest: _Destination, rel: str, path: Path, want: dict[str, Any], options: _UploadOptions
) -> bool:
    """Store one file create-only; True when this call uploaded it, False when the same bytes were already
    there (an interrupted publish, or a rival publisher of the same bytes). Other bytes: IntegrityError."""
    client, bucket, key = dest.client, dest.bucket, dest.base + rel
    stored = s3.head(client, bucket, key)
    if s3.stored_matches(stored, want["sha256"], want["bytes"]):
        return False
    if stored is not None:
        raise _taken_error(dest.name, dest.version, dest.version_uri, rel)
    try:
        done = s3.upload_file(
            client,
            bucket,
            key,
            path,
            sha256=want["sha256"],
            size=want["bytes"],
            label=rel,
            content_type=content_type(rel),
            multipart_threshold=options.multipart_threshold,
            part_size=options.part_size,
            progress=options.progress,
            if_none_match=True,
        )
    except ConditionFailedError:
        # Another publisher created it between our head and our write: fine if it is the same bytes.
        if s3.stored_matches(s3.head(client, bucket, key), want["sha256"], want["bytes"]):
            return False
        raise _taken_error(dest.name, dest.version, dest.version_uri, rel) from None
    s3.verify_upload(client, bucket, key, sha256=want["sha256"], size=want["bytes"], uploaded=done)
    return True


def _check_all_stored(dest: _Destination, table: FileTable) -> None:
    """Every file is checked once more just before the manifest makes the version visible."""
    for rel, want in table.items():
        if not s3.stored_matches(
            s3.head(dest.client, dest.bucket, dest.base + rel), want["sha256"], want["bytes"]
        ):
            raise IntegrityError(
                f"{dest.version_uri}{rel} changed before the manifest was written",
                hint="Another publish of the same version is running with other files; stop it and run again.",
            )


def _register(registry: Registry | None, manifest: dict[str, Any], location: str) -> bool:
    if registry is None:
        return False
    registry.register_version(manifest, location=location)
    return registry.kind != "none"


def read_manifest(client: Any, uri_root: str, name: str, version: str) -> dict[str, Any] | None:
    """The stored manifest of a version, or None when the version is not complete (or absent)."""
    bucket, prefix = s3.parse_s3_uri(uri_root)
    base = version_prefix(prefix, name, version)
    s3.ensure_bucket(client, bucket)
    found = s3.get_json(client, bucket, base + VERSION_MANIFEST)
    if found is None:
        return None
    return check_stored_manifest(found[0], name, version, s3.s3_url(bucket, base))


# --- unpublish -------------------------------------------------------------------------------------------


def unpublish(uri_root: str, name: str, version: str, client: Any, registry: Registry) -> UnpublishResult:
    """Remove a published (or half-published) version: refused while a stage alias of `registry` points at
    it. The manifest goes first (readers see the version incomplete at once), then the other files and any
    unfinished multipart uploads, then the registry entry. Asking the user to confirm is the caller's job."""
    bucket, prefix = s3.parse_s3_uri(uri_root)
    base = version_prefix(prefix, name, version)
    version_uri = s3.s3_url(bucket, base)
    s3.ensure_bucket(client, bucket)

    pointing = sorted(stage for stage, v in registry.aliases(name).items() if v == version)
    if pointing:
        raise VersionInUseError(
            f"{name} {version} is the '{pointing[0]}' alias"
            + (f" (and {', '.join(repr(p) for p in pointing[1:])})" if len(pointing) > 1 else ""),
            hint=f"Promote another version to {pointing[0]}, or clear the alias with `torchship promote SPEC "
            f"--stage {pointing[0]} --clear` (SPEC: the model's spec file), before unpublishing this one.",
        )

    keys = [o["Key"] for o in s3.list_objects(client, bucket, base)]
    registered = version in registry.list_versions(name)
    if not keys and not registered:
        raise VersionNotFoundError(
            f"{name} {version} is not published at {version_uri}",
            hint="Check the name, version and storage URI.",
        )
    manifest_key = base + VERSION_MANIFEST
    was_complete = manifest_key in keys
    if was_complete:
        s3.delete_object(client, bucket, manifest_key)
    rest = [k for k in keys if k != manifest_key]
    s3.delete_objects(client, bucket, rest)
    aborted = s3.abort_uploads(client, bucket, base)
    unregistered = registry.remove_version(name, version) if registered else False
    return UnpublishResult(
        uri=version_uri,
        name=name,
        version=version,
        was_complete=was_complete,
        deleted=tuple(keys),
        aborted_uploads=aborted,
        unregistered=bool(unregistered),
    )
