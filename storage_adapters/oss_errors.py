"""How an oss2 or requests failure becomes a StorageError: the OSS adapter's one error mapping."""

from __future__ import annotations

import http.client
from typing import Any

import oss2.exceptions as oss_errors
import requests.exceptions
import urllib3.exceptions

from storage_adapters.common import kind_of, retry_after_seconds
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.netguard import refused


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers else None
    return retry_after_seconds(value)


_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchUpload", "NoSuchVersion", "404"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessForbidden",
        "403",
        "401",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "SecurityTokenExpired",
        "InvalidSecurityToken",
        "UserDisable",
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
        "FileTooLarge",
        "InvalidRange",
        "416",
    }
)
_RATE_LIMITED = frozenset(
    {
        "ServiceUnavailable",
        "ServerBusy",
        "QpsLimitExceeded",
        "Throttling",
        "TooManyRequests",
        "SlowDown",
        "DownloadTrafficRateLimitExceeded",
        "UploadTrafficRateLimitExceeded",
        "429",
        "503",
    }
)
_UNAVAILABLE = frozenset(
    {"InternalError", "RequestTimeout", "BadGateway", "GatewayTimeout", "500", "502", "504"}
)
_CHECKSUM = frozenset({"InvalidDigest", "BadDigest"})
_CONFIG = frozenset({"InvalidBucketName", "SecondLevelDomainForbidden", "PermanentRedirect", "301"})
_UNSUPPORTED = frozenset({"NotImplemented", "OperationNotSupported", "501", "InvalidObjectState"})
# Failures on the way: the request may succeed when made again.
_NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,  # refused, reset, connect timeout
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    http.client.IncompleteRead,
    ConnectionError,
    TimeoutError,
)
_BAD_URL = (
    requests.exceptions.SSLError,  # a certificate problem does not heal by itself
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
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
    """The one place an oss2/requests failure becomes a StorageError."""
    if isinstance(exc, StorageError):
        return exc
    if (guarded := refused(exc)) is not None:  # a connection or redirect the guard refused
        return guarded
    if isinstance(exc, oss_errors.InconsistentError):  # CRC-64 of the bytes differs from OSS's
        detail = str(exc.body).rsplit("InconsistentError: ", 1)[-1]
        return StorageError(ErrorKind.CHECKSUM_MISMATCH, f"CRC-64 mismatch: {detail}", key=key)
    if isinstance(exc, oss_errors.RequestError):  # oss2's wrapper of a requests failure
        return translate(exc.exception, key, bucket=bucket)
    if isinstance(exc, oss_errors.ClientError):  # oss2 refused the call before sending it
        return StorageError(ErrorKind.INVALID_CONFIG, exc.body, key=key)
    if isinstance(exc, oss_errors.OssError):
        code = str(exc.code or "")
        status = exc.status if isinstance(exc.status, int) and exc.status > 0 else None
        message = str(exc.message or code or f"HTTP {status}")
        if exc.request_id:
            message += f" (request id {exc.request_id})"
        facts: dict[str, Any] = {"key": key, "status": status, "code": code or None}
        if code == "NoSuchBucket":
            name = exc.details.get("BucketName") or bucket or "?"
            return StorageError(ErrorKind.NOT_FOUND, f"bucket {name!r} does not exist", **facts)
        kind = kind_of(_TABLE, code, status)
        retry_after = None
        if kind is ErrorKind.RATE_LIMITED:
            retry_after = _retry_after(exc.headers)
        return StorageError(kind, message, retry_after=retry_after, **facts)
    if isinstance(exc, _BAD_URL):
        return StorageError(ErrorKind.INVALID_CONFIG, str(exc), key=key)
    if isinstance(exc, _NETWORK_ERRORS):
        return StorageError(ErrorKind.UNAVAILABLE, str(exc), key=key, transient=True)
    return StorageError(ErrorKind.UNEXPECTED, f"{type(exc).__name__}: {exc}", key=key)
