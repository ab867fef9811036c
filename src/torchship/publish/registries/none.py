"""The registry for "no registry": registering only checks the manifest, nothing is listed or aliased."""

from __future__ import annotations

from typing import Any

from torchship.publish.errors import RegistryError
from torchship.publish.registries.base import Registry, check_manifest_to_register, check_stage


class NoRegistry(Registry):
    """No registry: registering does nothing, nothing is listed, aliases cannot be set."""

    kind = "none"

    def register_version(self, manifest: dict[str, Any], *, location: str | None = None) -> None:
        check_manifest_to_register(manifest)

    def list_versions(self, name: str) -> list[str]:
        return []

    def get_manifest(self, name: str, version: str) -> dict[str, Any]:
        raise RegistryError(
            f"no registry is configured, so {name} {version} cannot be looked up in one",
            hint="Read the manifest from storage instead, or configure a registry (s3 or neptune).",
        )

    def set_alias(self, name: str, stage: str, version: str) -> str | None:
        check_stage(stage)
        raise RegistryError(
            f"no registry is configured: cannot point {name}'s '{stage}' alias at {version}",
            hint="Configure a registry: s3 (an index beside the published files) or neptune.",
        )

    def clear_alias(self, name: str, stage: str) -> str | None:
        check_stage(stage)
        return None

    def aliases(self, name: str) -> dict[str, str]:
        return {}

    def remove_version(self, name: str, version: str) -> bool:
        return False
