"""The S3-native registry: an index of small objects beside the published files; needs no extra service."""

from __future__ import annotations

import uuid
from typing import Any

from torchship.publish.errors import (
    AliasConflictError,
    ConditionFailedError,
    IntegrityError,
    VersionExistsError,
    VersionNotFoundError,
)
from torchship.publish.history import PromotionEntry
from torchship.publish.layout import REGISTRY_DIR, check_segment
from torchship.publish.manifest import check_manifest_format, differing_files
from torchship.publish.registries.base import (
    STAGE_ALIASES,
    Registry,
    check_manifest_to_register,
    check_stage,
    now_utc,
    version_sort_key,
)
from torchship.storage import s3
from torchship.versions import this_version


class S3Registry(Registry):
    """An index under s3://BUCKET/PREFIX/_registry/<name>/:

        versions/<version>.json   {"name", "version", "location", "registered_at", "torchship_version", "manifest"}
        aliases/<stage>.json      {"name", "stage", "version", "previous", "set_at", "torchship_version"}
        history/<at>-<stage>-<version>.json   one PromotionEntry per promotion (create-only, never rewritten)

    `torchship_version` is the torchship that wrote the entry. Entries of any version are read: an alias is read
    for its `version` alone, and a version entry's manifest is held to the manifest format rule (versions.py).

    Each alias is its own object, written by one put_object conditioned on the ETag read just before
    (If-Match; If-None-Match: * when the alias is new): two concurrent promotions cannot both win, the loser
    gets AliasConflictError. There is no shared list that is read, modified and written back.
    """

    kind = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_uri(cls, client: Any, uri: str) -> S3Registry:
        bucket, prefix = s3.parse_s3_uri(uri)
        return cls(client, bucket, prefix)

    def _root(self, name: str) -> str:
        return s3.join_key(self.prefix, REGISTRY_DIR, check_segment(name, "model name")) + "/"

    def _version_key(self, name: str, version: str) -> str:
        return f"{self._root(name)}versions/{check_segment(version, 'version')}.json"

    def _alias_key(self, name: str, stage: str) -> str:
        return f"{self._root(name)}aliases/{check_stage(stage)}.json"

    def _read(self, key: str) -> tuple[dict[str, Any], str] | None:
        found = s3.get_json(self.client, self.bucket, key)
        if found is not None and not isinstance(found[0], dict):
            raise IntegrityError(
                f"{s3.s3_url(self.bucket, key)} is not a registry object",
                hint="It was not written by torchship; remove or fix it.",
            )
        return found

    def register_version(self, manifest: dict[str, Any], *, location: str | None = None) -> None:
        name, version = check_manifest_to_register(manifest)
        key = self._version_key(name, version)
        entry = {
            "name": name,
            "version": version,
            "location": location,
            "registered_at": now_utc(),
            "torchship_version": this_version(),
            "manifest": manifest,
        }
        try:
            s3.put_json(self.client, self.bucket, key, entry, if_none_match=True)
        except ConditionFailedError:
            found = self._read(key)
            if found is None:
                raise
            differing = differing_files(found[0].get("manifest", {}).get("files", {}), manifest["files"])
            if differing:
                raise VersionExistsError(
                    f"{name} {version} is already registered with other files ({', '.join(differing)})",
                    hint="Unpublish the old version first, or publish under a new version.",
                ) from None

    def list_versions(self, name: str) -> list[str]:
        folder = self._root(name) + "versions/"
        versions = [
            o["Key"][len(folder) : -len(".json")]
            for o in s3.list_objects(self.client, self.bucket, folder)
            if o["Key"].endswith(".json")
        ]
        return sorted(versions, key=version_sort_key)

    def get_manifest(self, name: str, version: str) -> dict[str, Any]:
        found = self._read(self._version_key(name, version))
        if found is None:
            raise VersionNotFoundError(
                f"{name} {version} is not registered in {s3.s3_url(self.bucket, self._root(name))}",
                hint="Publish it first, or list the registered versions.",
            )
        manifest = found[0].get("manifest")
        where = s3.s3_url(self.bucket, self._version_key(name, version))
        if not isinstance(manifest, dict):
            raise IntegrityError(
                f"{where} holds no manifest", hint="It was not written by torchship; remove or fix it."
            )
        check_manifest_format(manifest, f"the manifest in {where}")
        return manifest

    def set_alias(self, name: str, stage: str, version: str) -> str | None:
        key = self._alias_key(name, stage)
        if self._read(self._version_key(name, version)) is None:
            raise VersionNotFoundError(
                f"cannot promote {name} {version} to {stage}: that version is not registered",
                hint="Publish it first (publish registers it), or pick a registered version.",
            )
        current = self._read(key)
        previous = current[0].get("version") if current else None
        if previous == version:
            return previous
        value = {
            "name": name,
            "stage": stage,
            "version": version,
            "previous": previous,
            "set_at": now_utc(),
            "torchship_version": this_version(),
        }
        try:
            if current is None:
                s3.put_json(self.client, self.bucket, key, value, if_none_match=True)
            else:
                s3.put_json(self.client, self.bucket, key, value, if_match=current[1])
        except (ConditionFailedError, s3.ObjectNotFound):
            raise AliasConflictError(
                f"{name}'s '{stage}' alias changed while it was being set (another promotion ran at the same time)",
                hint="Look at the aliases again and repeat the promotion if it is still wanted.",
            ) from None
        return previous

    def clear_alias(self, name: str, stage: str) -> str | None:
        key = self._alias_key(name, stage)
        current = self._read(key)
        if current is None:
            return None
        s3.delete_object(self.client, self.bucket, key)
        return current[0].get("version")

    def aliases(self, name: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for stage in STAGE_ALIASES:
            current = self._read(self._alias_key(name, stage))
            if current is not None and current[0].get("version"):
                found[stage] = current[0]["version"]
        return found

    def record_promotion(self, entry: PromotionEntry) -> None:
        # Keys sort in time order; the random tail keeps two promotions in one second apart.
        stamp = "".join(c for c in entry.at if c.isdigit())[:14]
        version = check_segment(entry.version, "version")
        key = f"{self._root(entry.name)}history/{stamp}-{check_stage(entry.stage)}-{version}-{uuid.uuid4().hex[:8]}.json"
        s3.put_json(self.client, self.bucket, key, entry.model_dump(mode="json"), if_none_match=True)

    def history(self, name: str) -> list[PromotionEntry]:
        folder = self._root(name) + "history/"
        entries = []
        for listed in sorted(s3.list_objects(self.client, self.bucket, folder), key=lambda o: o["Key"]):
            found = self._read(listed["Key"])
            if found is not None:
                entries.append(PromotionEntry.model_validate(found[0]))
        return entries

    def remove_version(self, name: str, version: str) -> bool:
        self._refuse_if_aliased(name, version)
        key = self._version_key(name, version)
        if s3.head(self.client, self.bucket, key, checksums=False) is None:
            return False
        s3.delete_object(self.client, self.bucket, key)
        return True
