"""Download a published version, verified file by file against its manifest; all or nothing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from torchship.publish.errors import (
    IncompleteVersionError,
    IntegrityError,
    PublishError,
    VersionNotFoundError,
)
from torchship.publish.layout import VERSION_MANIFEST, version_prefix
from torchship.publish.manifest import check_stored_manifest
from torchship.storage import s3
from torchship.storage.local import move_into_place, staging_dir

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_entry(rel: str, want: Any, manifest_uri: str) -> None:
    """A manifest entry must say what the file is (sha256) and how big (bytes): without both, a pulled
    file could be anything, of any size."""
    sha = want.get("sha256") if isinstance(want, dict) else None
    size = want.get("bytes") if isinstance(want, dict) else None
    problems = []
    if not isinstance(sha, str) or not _SHA256_HEX.fullmatch(sha):
        problems.append("no sha256 (64 hex digits)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        problems.append("no size in bytes")
    if problems:
        raise IntegrityError(
            f"{manifest_uri} lists {rel} with {' and '.join(problems)}: it cannot be verified",
            hint="Refusing to pull unverifiable files; re-publish this version with torchship (its manifest "
            "records both), or pull another version.",
        )


def _complete_manifest(client: Any, bucket: str, base: str, name: str, version: str) -> dict[str, Any]:
    """The version's manifest with every entry checked (safe path, sha256, size); a version without one is
    IncompleteVersionError (files but no manifest) or VersionNotFoundError (nothing)."""
    version_uri = s3.s3_url(bucket, base)
    found = s3.get_json(client, bucket, base + VERSION_MANIFEST)
    if found is None:
        if s3.list_objects(client, bucket, base):
            raise IncompleteVersionError(
                f"{name} {version} at {version_uri} is an incomplete version (no {VERSION_MANIFEST})",
                hint="A publish was interrupted or is still running: run the publish again, or pull another version.",
            )
        raise VersionNotFoundError(
            f"{name} {version} is not published at {version_uri}",
            hint="Check the name, version and storage URI (list versions with the registry).",
        )
    manifest = check_stored_manifest(found[0], name, version, version_uri)
    for rel, want in manifest["files"].items():
        s3.safe_relpath(rel, f"{version_uri}{VERSION_MANIFEST}")
        if rel == VERSION_MANIFEST:
            raise PublishError(
                f"{version_uri}{VERSION_MANIFEST} lists itself", hint="The manifest is malformed."
            )
        check_entry(rel, want, f"{version_uri}{VERSION_MANIFEST}")
    return manifest


def pull(uri_root: str, name: str, version: str, dest: Path, client: Any, *, overwrite: bool = False) -> Path:
    """Download `name` `version` from `uri_root` (s3://BUCKET[/PREFIX]) into the directory `dest`: every file
    the manifest lists, each checked against its sha256 and size, plus manifest.json itself. Only complete
    versions (manifest present) are pulled. Files land in a temporary directory beside `dest`, renamed to
    `dest` once all are verified: on any error `dest` is left as it was. Returns `dest`."""
    dest = Path(dest)
    bucket, prefix = s3.parse_s3_uri(uri_root)
    base = version_prefix(prefix, name, version)
    version_uri = s3.s3_url(bucket, base)
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise PublishError(
            f"{dest} already exists",
            hint="Choose another destination, remove it, or pass overwrite (--force).",
        )
    s3.ensure_bucket(client, bucket)
    manifest = _complete_manifest(client, bucket, base, name, version)
    files = manifest["files"]
    tmp = staging_dir(dest)
    try:
        for rel, want in files.items():
            try:
                s3.download_file(
                    client,
                    bucket,
                    base + rel,
                    tmp / rel,
                    expected_sha256=want["sha256"],
                    expected_size=want["bytes"],
                    label=rel,
                )
            except s3.ObjectNotFound:
                raise IntegrityError(
                    f"{rel} is listed in {version_uri}{VERSION_MANIFEST} but missing from storage",
                    hint="The version was damaged (a partial unpublish?): unpublish it and publish it again.",
                ) from None
        (tmp / VERSION_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        move_into_place(tmp, dest, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
