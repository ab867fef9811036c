"""Object storage helpers on boto3: the client, `s3://` URIs, verified uploads and downloads, and one clear
error line for each way S3 can fail.

Credentials come only from boto3's default chain (environment variables, shared config / profile, container or
instance role): nothing here reads, takes or prints a secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from torchship.settings import Settings

MiB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 8 * MiB
DEFAULT_PART_SIZE = 8 * MiB
MAX_PARTS = 10_000  # S3's limit on parts per multipart upload
_CHUNK = MiB

# progress(bytes_done, bytes_total, filename): bytes of one file, after each part (or the single put).
Progress = Callable[[int, int, str], None]

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # fullmatch: no trailing newline
_URI_HINT = "Write it as s3://BUCKET or s3://BUCKET/PREFIX (e.g. s3://models/torchship)."


# --- URIs and keys ---------------------------------------------------------------------------------------


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` -> (bucket, prefix): the prefix without leading or trailing '/', '' for none."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InvalidURIError(f"'{uri}' is not an s3:// URI", hint=_URI_HINT)
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise InvalidURIError(f"'{uri}' names no bucket", hint=_URI_HINT)
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidURIError(
            f"'{uri}': '{bucket}' is not a valid S3 bucket name",
            hint="Bucket names are 3-63 lowercase letters, digits, dots and hyphens. " + _URI_HINT,
        )
    prefix = prefix.strip("/")
    if prefix:
        parts = prefix.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise InvalidURIError(
                f"'{uri}': the prefix '{prefix}' has an empty, '.' or '..' segment", hint=_URI_HINT
            )
        if any(ord(ch) < 32 for ch in prefix):
            raise InvalidURIError(f"'{uri}': the prefix has control characters", hint=_URI_HINT)
    return bucket, prefix


def join_key(*parts: str) -> str:
    """Join key segments with '/', ignoring empty ones (an empty prefix is the bucket's root)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def s3_url(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


def safe_relpath(rel: str, where: str) -> str:
    """A relative POSIX path that stays inside its directory (no absolute path, no '..')."""
    path = PurePosixPath(rel)
    if (
        not rel
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in rel.split("/"))
        or "\\" in rel
    ):
        raise IntegrityError(
            f"{where} lists an unsafe file path '{rel}'",
            hint="Only plain relative paths are accepted; the stored data was not written by torchship.",
        )
    return rel


# --- the client ------------------------------------------------------------------------------------------


def make_client(endpoint_url: str | None, region: str | None, *, max_attempts: int = 3) -> Any:
    """An S3 client for `endpoint_url` (None: AWS) in `region` (None: boto3's default), credentials from
    boto3's default chain. Custom endpoints (MinIO, Ceph, moto, ...) get path-style addressing."""
    import boto3
    from botocore.config import Config

    if endpoint_url is not None and not re.match(r"^https?://[^/\s]+", endpoint_url):
        raise InvalidURIError(
            f"endpoint URL '{endpoint_url}' is not an http(s):// URL",
            hint="Give the endpoint as http://HOST:PORT or https://HOST (leave it unset for AWS S3).",
        )
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=120,
        s3={"addressing_style": "path"} if endpoint_url else None,
        # torchship asks for SHA-256 checksums itself; no CRC32 on every request (S3-compatible stores
        # without flexible-checksum support then still work for the rest).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def client_from_settings(settings: Settings) -> Any:
    """The S3 client of this environment: Settings' endpoint (None: AWS) and region. Fetch (s3:// sources),
    publish, pull, promote and unpublish all take their client from here."""
    return make_client(settings.aws_endpoint_url, settings.aws_region)


def _endpoint(client: Any) -> str:
    return getattr(getattr(client, "meta", None), "endpoint_url", None) or "the S3 endpoint"


def _region(client: Any) -> str:
    return getattr(getattr(client, "meta", None), "region_name", None) or "(default)"


# --- errors ----------------------------------------------------------------------------------------------

_DENIED = {"AccessDenied", "AllAccessDisabled", "403", "Forbidden", "AccountProblem"}
_REJECTED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
}
_REDIRECT = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301"}
_CONDITION = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


class ObjectNotFound(StorageError):
    """Internal: the key does not exist (callers decide what that means)."""


def translate(exc: BaseException, client: Any, action: str, bucket: str, key: str | None = None) -> Exception:
    """The TorchshipError for a botocore exception (or `exc` itself when it is not one)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return _translate_answer(exc, client, action, bucket, key)
    return _translate_transport(exc, client, action, bucket, key) or (
        exc
        if isinstance(exc, Exception)
        else StorageError(f"{action} {s3_url(bucket, key or '')} failed: {exc!r}")
    )


def _translate_transport(
    exc: BaseException, client: Any, action: str, bucket: str, key: str | None
) -> Exception | None:
    """Failures before S3 answered: credentials, connection, timeouts, checksums; None for anything else."""
    from botocore import exceptions as bx

    where = s3_url(bucket, key or "")
    endpoint = _endpoint(client)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return CredentialsMissingError(
            f"no AWS credentials found for {action} {where}",
            hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (a profile in ~/.aws), "
            "or run where an instance/container role provides them.",
        )
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ConnectionClosedError):
        return EndpointUnreachableError(
            f"cannot reach the S3 endpoint {endpoint} ({action} {where})",
            hint="Check the endpoint URL and port, the network, and the region.",
        )
    if isinstance(exc, bx.ReadTimeoutError):
        return EndpointUnreachableError(
            f"the S3 endpoint {endpoint} stopped answering during {action} {where}",
            hint="Retry; if it persists, check the endpoint's health and the network.",
        )
    if isinstance(exc, bx.FlexibleChecksumError):
        return IntegrityError(
            f"{where}: the downloaded bytes do not match the object's stored checksum",
            hint="The object is corrupted in storage or in transit; retry, then re-publish the version.",
        )
    return None


def _translate_answer(exc: Any, client: Any, action: str, bucket: str, key: str | None) -> Exception:
    """S3 answered with an error: map its code (or HTTP status) to the error the user can act on."""
    where = s3_url(bucket, key or "")
    endpoint = _endpoint(client)
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    if code == "NoSuchBucket" or (action == "head_bucket" and (code in ("404", "NotFound") or status == 404)):
        return BucketNotFoundError(
            f"bucket '{bucket}' does not exist at {endpoint}",
            hint="Create the bucket, or fix the bucket name in the URI (s3://BUCKET/...) or the endpoint URL.",
        )
    if code in _REDIRECT or status == 301:
        actual = error.get("Region") or headers.get("x-amz-bucket-region")
        told = (
            f"is in region {actual}, not {_region(client)}"
            if actual
            else f"is not in region {_region(client)}"
        )
        return WrongRegionError(
            f"bucket '{bucket}' {told} (or the endpoint {endpoint} is the wrong one)",
            hint=f"Pass --region {actual} (or set AWS_REGION)."
            if actual
            else "Set the bucket's region (--region / AWS_REGION) or the right endpoint URL.",
        )
    if code in _REJECTED:
        return CredentialsRejectedError(
            f"{endpoint} rejected the AWS credentials ({code}) during {action} {where}",
            hint="Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or the profile in use; "
            "temporary tokens expire.",
        )
    if code in _DENIED or status == 403:
        return AccessDeniedError(
            f"access denied: {action} {where}",
            hint=f"The credentials in use lack the permission for {action} on bucket '{bucket}'; "
            "grant it or use other credentials (AWS_PROFILE).",
        )
    if code in _CONDITION or status == 412:
        return ConditionFailedError(
            f"{where} was written by someone else at the same time ({action})",
            hint="Re-run the command: it re-reads the current state.",
        )
    if code in _MISSING_KEY or status == 404:
        return ObjectNotFound(f"{where} does not exist", hint="Check the name and version.")
    message = error.get("Message") or exc.response.get("Error", {}).get("Code") or str(exc)
    return StorageError(
        f"S3 {action} {where} failed: {code or status} ({message})",
        hint="Check the endpoint, bucket and permissions; retry if the service had a transient fault.",
    )


@contextmanager
def storage_errors(client: Any, action: str, bucket: str, key: str | None = None) -> Iterator[None]:
    """Turn botocore exceptions raised inside into one-line TorchshipErrors."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, client, action, bucket, key) from None


# --- operations ------------------------------------------------------------------------------------------


def ensure_bucket(client: Any, bucket: str) -> None:
    """Raise BucketNotFoundError / AccessDeniedError / ... unless the bucket is there and reachable."""
    with storage_errors(client, "head_bucket", bucket):
        client.head_bucket(Bucket=bucket)


def head(client: Any, bucket: str, key: str, *, checksums: bool = True) -> dict[str, Any] | None:
    """head_object (with ChecksumMode=ENABLED), or None when the key does not exist."""
    try:
        with storage_errors(client, "head_object", bucket, key):
            kwargs: dict[str, Any] = {"ChecksumMode": "ENABLED"} if checksums else {}
            return client.head_object(Bucket=bucket, Key=key, **kwargs)
    except ObjectNotFound:
        return None


def get_bytes(client: Any, bucket: str, key: str) -> tuple[bytes, str] | None:
    """(body, ETag) of an object, or None when it does not exist."""
    try:
        with storage_errors(client, "get_object", bucket, key):
            response = client.get_object(Bucket=bucket, Key=key)
            return response["Body"].read(), response.get("ETag", "")
    except ObjectNotFound:
        return None


def get_json(client: Any, bucket: str, key: str) -> tuple[Any, str] | None:
    """(parsed JSON, ETag) of an object, or None when it does not exist."""
    found = get_bytes(client, bucket, key)
    if found is None:
        return None
    body, etag = found
    try:
        return json.loads(body), etag
    except ValueError:
        raise IntegrityError(
            f"{s3_url(bucket, key)} is not valid JSON",
            hint="The object was not written by torchship or is corrupted; inspect it with `aws s3 cp`.",
        ) from None


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def put_bytes(
    client: Any,
    bucket: str,
    key: str,
    body: bytes,
    *,
    content_type: str = "application/octet-stream",
    if_none_match: bool = False,
    if_match: str | None = None,
) -> dict[str, Any]:
    """One put_object with a SHA-256 additional checksum and the sha256 hex in metadata. `if_none_match`:
    only create (If-None-Match: *); `if_match`: only replace that ETag. A lost condition raises
    ConditionFailedError."""
    digest = hashlib.sha256(body).digest()
    kwargs: dict[str, Any] = {}
    if if_none_match:
        kwargs["IfNoneMatch"] = "*"
    if if_match is not None:
        kwargs["IfMatch"] = if_match
    with storage_errors(client, "put_object", bucket, key):
        return client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64(digest),
            Metadata={"sha256": digest.hex()},
            **kwargs,
        )


def put_json(client: Any, bucket: str, key: str, value: Any, **kwargs: Any) -> dict[str, Any]:
    body = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return put_bytes(client, bucket, key, body, content_type="application/json", **kwargs)


@dataclass(frozen=True)
class Uploaded:
    """What upload_file stored: the number of parts (1 for a single put) and S3's SHA-256 checksum value
    (base64; for a multipart upload the composite checksum of the parts, with its `-N` suffix)."""

    parts: int
    checksum_sha256: str


def _changed(path: Path) -> PublishError:
    return PublishError(
        f"{path} changed while it was being published",
        hint="Do not rebuild the package during a publish; run the publish again.",
    )


def upload_file(
    client: Any,
    bucket: str,
    key: str,
    path: Path,
    *,
    sha256: str,
    size: int,
    label: str | None = None,
    content_type: str = "application/octet-stream",
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    part_size: int = DEFAULT_PART_SIZE,
    progress: Progress | None = None,
    if_none_match: bool = False,
) -> Uploaded:
    """Upload `path` (whose sha256 and size the caller measured) with SHA-256 checksums: one put below
    `multipart_threshold` bytes, else a multipart upload of `part_size` parts (grown to stay within S3's
    10 000 parts). The full-file sha256 goes in metadata `sha256`. `progress(done, total, label)` is called
    after each part; its call with done == total comes once the object is stored. The bytes sent are hashed
    again on the way, so a file that changed since it was measured is refused. A failed multipart upload is
    aborted. `if_none_match`: only create the object (If-None-Match: * on the put, or on completing the
    multipart upload); an object already there raises ConditionFailedError and stays as it was.

    Not boto3's transfer manager: it cannot hash the bytes it sends against the caller's sha256, and
    conditional completion (If-None-Match on complete_multipart_upload) is what keeps versions immutable."""
    label = label or path.name
    if part_size < 1 or multipart_threshold < 1:
        raise PublishError(
            f"part size and multipart threshold must be positive (got {part_size}, {multipart_threshold})",
            hint="S3 needs parts of at least 5 MiB (except the last).",
        )
    target = _Target(client, bucket, key, path, sha256, size, content_type, if_none_match)
    if size <= multipart_threshold:
        uploaded = _put_whole(target)
    else:
        while -(-size // part_size) > MAX_PARTS:
            part_size *= 2

        def part_done(done: int) -> None:
            if progress is not None:
                progress(done, size, label)

        uploaded = _put_multipart(target, part_size, part_done)
    if progress is not None:
        progress(size, size, label)  # the last call comes once the object is complete
    return uploaded


@dataclass(frozen=True)
class _Target:
    """One object to upload and what its bytes must be."""

    client: Any
    bucket: str
    key: str
    path: Path
    sha256: str
    size: int
    content_type: str
    if_none_match: bool


def _put_whole(t: _Target) -> Uploaded:
    body = t.path.read_bytes()
    if len(body) != t.size or hashlib.sha256(body).hexdigest() != t.sha256:
        raise _changed(t.path)
    put_bytes(t.client, t.bucket, t.key, body, content_type=t.content_type, if_none_match=t.if_none_match)
    return Uploaded(parts=1, checksum_sha256=_b64(bytes.fromhex(t.sha256)))


def _put_multipart(t: _Target, part_size: int, part_done: Callable[[int], Any]) -> Uploaded:
    """create -> upload every part -> complete (conditionally); aborted on any failure, so no parts linger."""
    with storage_errors(t.client, "create_multipart_upload", t.bucket, t.key):
        upload_id = t.client.create_multipart_upload(
            Bucket=t.bucket,
            Key=t.key,
            ContentType=t.content_type,
            ChecksumAlgorithm="SHA256",
            Metadata={"sha256": t.sha256},
        )["UploadId"]
    try:
        parts, part_digests = _upload_parts(t, upload_id, part_size, part_done)
        condition: dict[str, Any] = {"IfNoneMatch": "*"} if t.if_none_match else {}
        with storage_errors(t.client, "complete_multipart_upload", t.bucket, t.key):
            t.client.complete_multipart_upload(
                Bucket=t.bucket, Key=t.key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **condition
            )
    except BaseException:
        with suppress(Exception):
            t.client.abort_multipart_upload(Bucket=t.bucket, Key=t.key, UploadId=upload_id)
        raise
    composite = _b64(hashlib.sha256(part_digests).digest())
    return Uploaded(parts=len(parts), checksum_sha256=f"{composite}-{len(parts)}")


def _upload_parts(
    t: _Target, upload_id: str, part_size: int, part_done: Callable[[int], Any]
) -> tuple[list[dict[str, Any]], bytes]:
    """Send the file in parts, each with its SHA-256; the whole file is hashed on the way and must still be
    the bytes the caller measured. Returns the parts for completion and the concatenated part digests."""
    whole = hashlib.sha256()
    part_digests = bytearray()
    parts: list[dict[str, Any]] = []
    done = 0
    with t.path.open("rb") as f:
        while chunk := f.read(part_size):
            number = len(parts) + 1
            whole.update(chunk)
            digest = hashlib.sha256(chunk).digest()
            part_digests += digest
            with storage_errors(t.client, f"upload_part {number}", t.bucket, t.key):
                response = t.client.upload_part(
                    Bucket=t.bucket,
                    Key=t.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(digest),
                )
            parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": _b64(digest)})
            done += len(chunk)
            if done < t.size:
                part_done(done)
    if done != t.size or whole.hexdigest() != t.sha256:
        raise _changed(t.path)
    return parts, bytes(part_digests)


def _checksum_base(value: str) -> str:
    return value.split("-", 1)[0]


def stored_matches(info: dict[str, Any] | None, sha256: str, size: int) -> bool:
    """Does a head_object answer describe these bytes? Size and the `sha256` metadata must agree; a full-object
    SHA-256 checksum (single put), where the store returns one, must agree too."""
    if info is None:
        return False
    if info.get("ContentLength") != size or info.get("Metadata", {}).get("sha256") != sha256:
        return False
    checksum = info.get("ChecksumSHA256")
    # Multipart objects (ETag "...-N") carry a composite checksum of their parts: only single puts compare.
    single = "-" not in info.get("ETag", "").strip('"')
    if (
        checksum
        and single
        and "-" not in checksum
        and info.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
    ):
        return checksum == _b64(bytes.fromhex(sha256))
    return True


def verify_upload(client: Any, bucket: str, key: str, *, sha256: str, size: int, uploaded: Uploaded) -> None:
    """After an upload: the object's size, sha256 metadata and S3 SHA-256 checksum (where the store returns
    one; composite for multipart) must be what was sent."""
    info = head(client, bucket, key)
    problem = None
    if info is None:
        problem = "is missing right after its upload"
    elif info.get("ContentLength") != size:
        problem = f"has {info.get('ContentLength')} bytes, not {size}"
    elif info.get("Metadata", {}).get("sha256") != sha256:
        problem = "has lost its sha256 metadata"
    elif info.get("ChecksumSHA256") and _checksum_base(info["ChecksumSHA256"]) != _checksum_base(
        uploaded.checksum_sha256
    ):
        problem = "has another SHA-256 checksum than the bytes sent"
    if problem:
        raise IntegrityError(
            f"{s3_url(bucket, key)} {problem}",
            hint="Another writer may be publishing the same version, or the store corrupted it; run the publish again.",
        )


def download_file(
    client: Any,
    bucket: str,
    key: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    label: str | None = None,
) -> tuple[str, int]:
    """Stream an object into `dest`, hashing it; botocore also checks S3's stored full-object checksum
    (ChecksumMode=ENABLED). A size or sha256 other than expected raises IntegrityError naming the file.
    With `expected_size`, an object whose Content-Length differs is refused before its first byte and a
    stream that runs past it is cut off there: a store that lies about sizes cannot fill the disk.
    Returns (sha256 hex, bytes)."""
    label = label or key
    digest = hashlib.sha256()
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)

    def mismatch(got: str) -> IntegrityError:
        return IntegrityError(
            f"{label} from {s3_url(bucket, key)} does not match its manifest ({got}; expected "
            f"{expected_size} bytes, sha256 {(expected_sha256 or '?')[:12]}…)",
            hint="The stored object was changed or corrupted: unpublish and re-publish this version, or pull another.",
        )

    with storage_errors(client, "get_object", bucket, key):
        response = client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        announced = response.get("ContentLength")
        if expected_size is not None and announced is not None and announced != expected_size:
            response["Body"].close()
            raise mismatch(f"the store announces {announced} bytes")
        with dest.open("wb") as f:
            for chunk in response["Body"].iter_chunks(_CHUNK):
                size += len(chunk)
                if expected_size is not None and size > expected_size:
                    response["Body"].close()
                    raise mismatch(f"got more than {expected_size} bytes")
                digest.update(chunk)
                f.write(chunk)
    sha = digest.hexdigest()
    if (expected_size is not None and size != expected_size) or (
        expected_sha256 is not None and sha != expected_sha256
    ):
        raise mismatch(f"got {size} bytes, sha256 {sha[:12]}…")
    return sha, size


def list_objects(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every object under `prefix` (a key prefix: pass one ending in '/' for a folder), as list_objects_v2
    entries (Key, Size, ETag, ...), sorted by key."""
    found: list[dict[str, Any]] = []
    with storage_errors(client, "list_objects_v2", bucket, prefix):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(page.get("Contents", []))
    return sorted(found, key=lambda o: o["Key"])


def delete_object(client: Any, bucket: str, key: str) -> None:
    with storage_errors(client, "delete_object", bucket, key):
        client.delete_object(Bucket=bucket, Key=key)


def delete_objects(client: Any, bucket: str, keys: list[str]) -> None:
    """Delete keys in batches of 1000; any key S3 could not delete is an error."""
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        with storage_errors(client, "delete_objects", bucket, batch[0]):
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageError(
                f"could not delete {s3_url(bucket, first.get('Key', '?'))}: {first.get('Code')} "
                f"({len(errors)} object(s) left)",
                hint="Check the delete permission (s3:DeleteObject) and run the command again.",
            )


def abort_uploads(client: Any, bucket: str, prefix: str) -> int:
    """Abort unfinished multipart uploads under prefix (left by a killed publish); returns how many."""
    aborted = 0
    with storage_errors(client, "list_multipart_uploads", bucket, prefix):
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
    return aborted
