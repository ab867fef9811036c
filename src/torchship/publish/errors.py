"""Errors of publishing, pulling and registering packages: each one line naming the problem plus a hint.

The storage errors (and the base `PublishError`) are defined in `torchship.storage.errors`, which fetch shares;
they are re-exported here so that publish code and its callers find the whole tree in one place."""

from __future__ import annotations

from torchship.storage.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    ConditionFailedError,
    CredentialsMissingError,
    CredentialsRejectedError,
    EndpointUnreachableError,
    IntegrityError,
    InvalidURIError,
    PublishError,
    StorageError,
    WrongRegionError,
)

__all__ = [
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
    "PublishError",
    "RegistryError",
    "StorageError",
    "VersionExistsError",
    "VersionInUseError",
    "VersionNotFoundError",
    "WrongRegionError",
]


class GateNotPassedError(PublishError):
    """The package's validation gate did not pass, or the package carries no gate record."""

    exit_code = 3


class VersionExistsError(PublishError):
    """The version is already published with other bytes: versions are immutable."""


class VersionNotFoundError(PublishError):
    """No such version in storage or in the registry."""


class IncompleteVersionError(PublishError):
    """Files of the version are stored but its manifest.json is not: a publish was interrupted or is running."""


class VersionInUseError(PublishError):
    """A stage alias points at the version, so it cannot be removed."""


class RegistryError(PublishError):
    """The model registry cannot do what was asked."""


class AliasConflictError(RegistryError):
    """The alias changed between reading and writing it (a concurrent promote)."""
