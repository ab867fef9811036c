"""Where published things live in a bucket.

s3://BUCKET/PREFIX/<name>/<version>/<name>.mar
                                   /model-config.yaml
                                   /torchship.json
                                   /report.json        (the validation report the gate judged)
                                   /report.html
                                   /answers.json       (what the version served on the diff inputs at verify)
                                   /manifest.json      (written last: present = the version is complete)
s3://BUCKET/PREFIX/_registry/<name>/versions/<version>.json   (S3Registry: one entry per version)
s3://BUCKET/PREFIX/_registry/<name>/aliases/<stage>.json      (S3Registry: one object per stage alias)
"""

from __future__ import annotations

import re

from torchship.publish.errors import PublishError
from torchship.storage.s3 import join_key

VERSION_MANIFEST = "manifest.json"  # the version manifest: written last, lists every file
PACKAGE_MANIFEST = "torchship.json"
MODEL_CONFIG = "model-config.yaml"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
ANSWERS_JSON = "answers.json"
REGISTRY_DIR = "_registry"
MANIFEST_FORMAT = 1

# Matched with fullmatch: `$` alone would accept a trailing newline ("1.0.0\n").
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_segment(value: object, what: str) -> str:
    """A model name or version usable as one key segment."""
    if (
        not isinstance(value, str)
        or not _SEGMENT.fullmatch(value)
        or value in (".", "..")
        or value == REGISTRY_DIR
    ):
        raise PublishError(
            f"{what} '{value}' cannot be part of a storage key",
            hint="Use letters, digits, '.', '_', '+' and '-', starting with a letter or digit.",
        )
    return value


def version_prefix(prefix: str, name: str, version: str) -> str:
    """The key prefix of one version, with a trailing '/'."""
    return join_key(prefix, check_segment(name, "model name"), check_segment(version, "version")) + "/"


def content_type(filename: str) -> str:
    if filename.endswith(".json"):
        return "application/json"
    if filename.endswith((".yaml", ".yml")):
        return "application/yaml"
    if filename.endswith(".html"):
        return "text/html; charset=utf-8"
    return "application/octet-stream"
