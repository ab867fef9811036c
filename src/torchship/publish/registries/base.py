"""What every model registry backend offers (the `Registry` interface), and the rules they share: the stage
aliases, natural version order, and what a manifest to register must hold."""

from __future__ import annotations

import abc
import re
from datetime import UTC, datetime
from typing import Any

from torchship.publish.errors import RegistryError, VersionInUseError
from torchship.publish.history import PromotionEntry
from torchship.publish.layout import check_segment

STAGE_ALIASES = ("staging", "production")


def check_stage(stage: str) -> str:
    if stage not in STAGE_ALIASES:
        raise RegistryError(
            f"'{stage}' is not a stage alias", hint=f"Use one of: {', '.join(STAGE_ALIASES)}."
        )
    return stage


def version_sort_key(version: str) -> tuple:
    """Natural order: 1.10.0 after 1.9.0; numbers before words within a position."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+_]", version))


def now_utc() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def check_manifest_to_register(manifest: Any) -> tuple[str, str]:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise RegistryError(
            "the manifest to register is not a torchship manifest",
            hint="Register the manifest `publish` returned (PublishResult.manifest).",
        )
    return check_segment(manifest.get("name"), "model name"), check_segment(
        manifest.get("version"), "version"
    )


class Registry(abc.ABC):
    """What a model registry offers. Names and versions are those of the published manifests."""

    kind: str = "?"

    @abc.abstractmethod
    def register_version(self, manifest: dict[str, Any], *, location: str | None = None) -> None:
        """Record a published version (idempotent for the same files; other files: VersionExistsError).
        `location`: where the version's files are, e.g. s3://bucket/prefix/name/version/."""

    @abc.abstractmethod
    def list_versions(self, name: str) -> list[str]:
        """Registered versions of `name`, oldest first (natural version order)."""

    @abc.abstractmethod
    def get_manifest(self, name: str, version: str) -> dict[str, Any]:
        """The manifest registered for the version; VersionNotFoundError when not registered."""

    @abc.abstractmethod
    def set_alias(self, name: str, stage: str, version: str) -> str | None:
        """Point the stage alias at `version` (promote); returns the version it pointed at before."""

    @abc.abstractmethod
    def clear_alias(self, name: str, stage: str) -> str | None:
        """Remove the stage alias; returns the version it pointed at (None: it was not set)."""

    @abc.abstractmethod
    def aliases(self, name: str) -> dict[str, str]:
        """{stage: version} of the aliases that are set."""

    @abc.abstractmethod
    def remove_version(self, name: str, version: str) -> bool:
        """Forget a version (VersionInUseError while an alias points at it); False when it was not there."""

    def record_promotion(self, entry: PromotionEntry) -> None:
        """Add a promotion to the stage history (`torchship history`). Backends without one refuse."""
        raise RegistryError(
            f"the {self.kind} registry keeps no promotion history",
            hint="Use the s3 registry (publish.registry: s3) for an audit trail of promotions.",
        )

    def history(self, name: str) -> list[PromotionEntry]:
        """Every recorded promotion of `name`, oldest first."""
        raise RegistryError(
            f"the {self.kind} registry keeps no promotion history",
            hint="Use the s3 registry (publish.registry: s3) for an audit trail of promotions.",
        )

    def _refuse_if_aliased(self, name: str, version: str) -> None:
        pointing = sorted(stage for stage, v in self.aliases(name).items() if v == version)
        if pointing:
            raise VersionInUseError(
                f"{name} {version} is the '{pointing[0]}' alias",
                hint=f"Promote another version to {pointing[0]} first, or clear the alias with "
                f"`torchship promote SPEC --stage {pointing[0]} --clear` (SPEC: the model's spec file).",
            )
