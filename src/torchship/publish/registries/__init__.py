"""Model registries: which versions of a model exist, and which version each stage alias (`staging`,
`production`) points at. One backend per module: `s3` (S3Registry, an index beside the published files),
`neptune` (NeptuneRegistry, the neptune client's model registry), `none` (NoRegistry); `base` holds the
interface they share. `make_registry(kind, ...)` builds one."""

from __future__ import annotations

from typing import Any

from torchship.publish.errors import RegistryError
from torchship.publish.registries.base import STAGE_ALIASES, Registry, check_stage, version_sort_key
from torchship.publish.registries.neptune import NeptuneRegistry
from torchship.publish.registries.none import NoRegistry
from torchship.publish.registries.s3 import S3Registry

KINDS = ("s3", "neptune", "none")

__all__ = [
    "KINDS",
    "STAGE_ALIASES",
    "NeptuneRegistry",
    "NoRegistry",
    "Registry",
    "S3Registry",
    "check_stage",
    "make_registry",
    "version_sort_key",
]


def make_registry(
    kind: str,
    *,
    client: Any = None,
    uri: str | None = None,
    project: str | None = None,
    mode: str = "async",
) -> Registry:
    """kind "s3": an S3Registry at `uri` (s3://BUCKET[/PREFIX], the publish root) through `client`;
    "neptune": a NeptuneRegistry for `project` in `mode`; "none": NoRegistry."""
    if kind == "none":
        return NoRegistry()
    if kind == "s3":
        if client is None or not uri:
            raise RegistryError(
                "the s3 registry needs the storage URI and a client",
                hint="Give the publish URI (s3://BUCKET/PREFIX): the registry lives under its _registry/ folder.",
            )
        return S3Registry.from_uri(client, uri)
    if kind == "neptune":
        if not project:
            raise RegistryError(
                "the neptune registry needs a project (workspace/project)",
                hint="Set the Neptune project, e.g. `--neptune-project team/models`.",
            )
        return NeptuneRegistry(project, mode)
    raise RegistryError(f"unknown registry '{kind}'", hint=f"Use one of: {', '.join(KINDS)}.")
