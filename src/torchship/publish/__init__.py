"""Publish packaged models to object storage (S3 or S3-compatible), pull them back verified, and keep a
registry of versions and stage aliases. See `layout` for the keys in the bucket."""

from __future__ import annotations

from torchship.publish.errors import (
    AccessDeniedError,
    AliasConflictError,
    BucketNotFoundError,
    ConditionFailedError,
    CredentialsMissingError,
    CredentialsRejectedError,
    EndpointUnreachableError,
    GateNotPassedError,
    IncompleteVersionError,
    IntegrityError,
    InvalidURIError,
    PublishError,
    RegistryError,
    StorageError,
    VersionExistsError,
    VersionInUseError,
    VersionNotFoundError,
    WrongRegionError,
)
from torchship.publish.publisher import PublishResult, UnpublishResult, publish, read_manifest, unpublish
from torchship.publish.pull import pull
from torchship.publish.registries import (
    STAGE_ALIASES,
    NeptuneRegistry,
    NoRegistry,
    Registry,
    S3Registry,
    make_registry,
)
from torchship.publish.verified import verified_files
from torchship.storage.model_dir import download_model_dir, list_model_dir
from torchship.storage.s3 import (
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    make_client,
    parse_s3_uri,
)

__all__ = [
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "STAGE_ALIASES",
    "AccessDeniedError",
    "AliasConflictError",
    "BucketNotFoundError",
    "ConditionFailedError",
    "CredentialsMissingError",
    "CredentialsRejectedError",
    "EndpointUnreachableError",
    "GateNotPassedError",
    "IncompleteVersionError",
    "IntegrityError",
    "InvalidURIError",
    "NeptuneRegistry",
    "NoRegistry",
    "PublishError",
    "PublishResult",
    "Registry",
    "RegistryError",
    "S3Registry",
    "StorageError",
    "UnpublishResult",
    "VersionExistsError",
    "VersionInUseError",
    "VersionNotFoundError",
    "WrongRegionError",
    "download_model_dir",
    "list_model_dir",
    "make_client",
    "make_registry",
    "parse_s3_uri",
    "publish",
    "pull",
    "read_manifest",
    "unpublish",
    "verified_files",
]
