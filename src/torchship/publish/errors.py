"""Errors of publishing, pulling and registering packages: each one line naming the problem plus a hint."""

from __future__ import annotations

from torchship.errors import TorchshipError


class PublishError(TorchshipError):
    """Base of every publish / pull / registry failure."""


class InvalidURIError(PublishError):
    """A storage URI is not `s3://bucket[/prefix]`."""

    exit_code = 2


class StorageError(PublishError):
    """Object storage answered with an error, or could not be reached."""


class CredentialsMissingError(StorageError):
    """boto3's default chain found no credentials."""


class CredentialsRejectedError(StorageError):
    """The endpoint did not accept the credentials (unknown key, bad signature, expired token)."""


class AccessDeniedError(StorageError):
    """The credentials are valid but lack permission (HTTP 403)."""


class BucketNotFoundError(StorageError):
    """The bucket does not exist at the endpoint."""


class EndpointUnreachableError(StorageError):
    """No connection to the endpoint (wrong URL, closed port, no network)."""


class WrongRegionError(StorageError):
    """The bucket lives in another region than the client's (PermanentRedirect, AuthorizationHeaderMalformed)."""


class ConditionFailedError(StorageError):
    """A conditional write (If-None-Match / If-Match) lost: someone else wrote the object first."""


class GateNotPassedError(PublishError):
    """The package's validation gate did not pass, or the package carries no gate record."""

    exit_code = 3


class VersionExistsError(PublishError):
    """The version is already published with other bytes: versions are immutable."""


class VersionNotFoundError(PublishError):
    """No such version in storage or in the registry."""


class IncompleteVersionError(PublishError):
    """Files of the version are stored but its manifest.json is not: a publish was interrupted or is running."""


class IntegrityError(PublishError):
    """Stored bytes differ from what the manifest (or the local file) says."""


class VersionInUseError(PublishError):
    """A stage alias points at the version, so it cannot be removed."""


class RegistryError(PublishError):
    """The model registry cannot do what was asked."""


class AliasConflictError(RegistryError):
    """The alias changed between reading and writing it (a concurrent promote)."""
