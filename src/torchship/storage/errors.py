"""Errors of object storage, and the base of publish / pull / registry errors: each one line naming the problem
plus a hint. They live here, below fetch and publish, because both stages talk to storage."""

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


class IntegrityError(PublishError):
    """Stored bytes differ from what the manifest (or the local file) says."""
