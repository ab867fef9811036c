"""Model sources in object storage: an uncompiled Hugging Face model directory under `s3://bucket/prefix/`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torchship.errors import SourceError
from torchship.storage import s3
from torchship.storage.local import move_into_place, staging_dir

# Zero-byte "folder" markers some tools (the S3 console) create; not files of the model.
_FOLDER_MARKER = "/"


def _folder(prefix: str) -> str:
    return prefix + "/" if prefix else ""


def list_model_dir(uri: str, client: Any) -> dict[str, dict[str, Any]]:
    """{relative path: {"bytes", "etag"}} of every object under the URI's prefix (a fingerprint for caching:
    it changes when any object is replaced)."""
    bucket, prefix = s3.parse_s3_uri(uri)
    s3.ensure_bucket(client, bucket)
    folder = _folder(prefix)
    found: dict[str, dict[str, Any]] = {}
    for obj in s3.list_objects(client, bucket, folder):
        key = obj["Key"]
        if key.endswith(_FOLDER_MARKER):
            continue
        rel = s3.safe_relpath(key[len(folder) :], uri)
        found[rel] = {"bytes": obj.get("Size"), "etag": obj.get("ETag", "").strip('"')}
    return found


def download_model_dir(uri: str, dest: Path, client: Any, *, overwrite: bool = False) -> Path:
    """Download every object under `uri` (s3://BUCKET/PREFIX/) into the directory `dest`, keeping the paths
    below the prefix. It must be a Hugging Face model directory (config.json at its top). Files go to a
    temporary directory beside `dest`, renamed once all arrived (sizes checked, and S3's stored checksums
    where objects have them): on any error `dest` is left as it was. Returns `dest`."""
    dest = Path(dest)
    bucket, prefix = s3.parse_s3_uri(uri)
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise SourceError(
            f"{dest} already exists", hint="Remove it, or let the fetch stage choose its output."
        )
    listing = list_model_dir(uri, client)
    if not listing:
        raise SourceError(
            f"source '{uri}': no objects under that prefix",
            hint="Upload the output of `save_pretrained` there, or fix the bucket / prefix (it is a folder).",
        )
    if "config.json" not in listing:
        raise SourceError(
            f"source '{uri}' has no config.json: it is not a Hugging Face model directory",
            hint="Point the URI at the folder `model.save_pretrained(dir)` wrote (the one holding config.json).",
        )
    folder = _folder(prefix)
    tmp = staging_dir(dest)
    try:
        for rel, info in listing.items():
            s3.download_file(client, bucket, folder + rel, tmp / rel, expected_size=info["bytes"], label=rel)
        move_into_place(tmp, dest, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
