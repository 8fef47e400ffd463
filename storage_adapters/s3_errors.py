"""How a botocore, boto3 or urllib3 failure becomes a StorageError: the S3 adapter's one error
mapping, used by both of its paths (boto3 and the lean one, s3_wire, whose failures come back in
botocore's shape)."""

from __future__ import annotations

import http.client
from typing import Any

import botocore.exceptions as boto_errors
import urllib3.exceptions

from storage_adapters.common import kind_of, retry_after_seconds
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.netguard import refused


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    return retry_after_seconds(value)


_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchUpload", "NoSuchVersion", "NotFound", "404"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "Forbidden",
        "403",
        "401",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidToken",
        "InvalidSecurity",
    }
)
_PRECONDITION = frozenset(
    {
        "PreconditionFailed",
        "412",
        "InvalidPart",
        "InvalidPartOrder",
        "EntityTooSmall",
        "EntityTooLarge",
        "InvalidRange",
        "416",
    }
)
_RATE_LIMITED = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequests",
        "ServiceUnavailable",
        "429",
        "503",
    }
)
_UNAVAILABLE = frozenset(
    {"InternalError", "RequestTimeout", "BadGateway", "GatewayTimeout", "500", "502", "504"}
)
_CHECKSUM = frozenset({"BadDigest", "XAmzContentSHA256Mismatch"})
_CONFIG = frozenset(
    {
        "InvalidBucketName",
        "PermanentRedirect",
        "301",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    }
)
_UNSUPPORTED = frozenset({"NotImplemented", "501", "InvalidObjectState"})
# Network failures: the request may succeed when made again.
_NETWORK_ERRORS = (
    boto_errors.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, proxies
    boto_errors.HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ResponseStreaming
    boto_errors.IncompleteReadError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,  # connect and read timeouts of the lean path (s3_wire)
    urllib3.exceptions.NewConnectionError,  # refused, unreachable, no such host
    urllib3.exceptions.ProxyError,
    http.client.IncompleteRead,
    ConnectionError,
    TimeoutError,
)


_TABLE = (
    (_NOT_FOUND, ErrorKind.NOT_FOUND),
    (_DENIED, ErrorKind.PERMISSION_DENIED),
    (_PRECONDITION, ErrorKind.PRECONDITION_FAILED),
    (_CHECKSUM, ErrorKind.CHECKSUM_MISMATCH),
    (_CONFIG, ErrorKind.INVALID_CONFIG),
    (_UNSUPPORTED, ErrorKind.UNSUPPORTED),
    (_RATE_LIMITED, ErrorKind.RATE_LIMITED),
    (_UNAVAILABLE, ErrorKind.UNAVAILABLE),
)


def translate(exc: BaseException, key: str | None, *, bucket: str | None = None) -> StorageError:
    """The one place a botocore/boto3/urllib3 failure becomes a StorageError."""
    if isinstance(exc, StorageError):
        return exc
    if (guarded := refused(exc)) is not None:  # a connection or redirect the guard refused
        return guarded
    if isinstance(exc, boto_errors.ClientError):
        error: Any = exc.response.get("Error", {})
        meta: Any = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "")
        status = meta.get("HTTPStatusCode")
        message = str(error.get("Message") or code or exc)
        facts: dict[str, Any] = {"key": key, "status": status, "code": code or None}
        if code == "NoSuchBucket":
            name = error.get("BucketName") or bucket or "?"
            return StorageError(ErrorKind.NOT_FOUND, f"bucket {name!r} does not exist", **facts)
        kind = kind_of(_TABLE, code, status)
        retry_after = None
        if kind is ErrorKind.RATE_LIMITED:
            retry_after = _retry_after(meta.get("HTTPHeaders", {}))
        return StorageError(kind, message, retry_after=retry_after, **facts)
    if isinstance(exc, boto_errors.SSLError | urllib3.exceptions.SSLError):
        # A certificate problem does not heal by itself.
        return StorageError(ErrorKind.INVALID_CONFIG, str(exc), key=key)
    if isinstance(exc, _NETWORK_ERRORS):
        return StorageError(ErrorKind.UNAVAILABLE, str(exc), key=key, transient=True)
    if isinstance(
        exc,
        boto_errors.NoCredentialsError
        | boto_errors.PartialCredentialsError
        | boto_errors.ParamValidationError
        | boto_errors.NoRegionError,
    ):
        return StorageError(ErrorKind.INVALID_CONFIG, str(exc), key=key)
    return StorageError(ErrorKind.UNEXPECTED, f"{type(exc).__name__}: {exc}", key=key)
