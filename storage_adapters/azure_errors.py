"""How an azure-core or azure-storage-blob failure becomes a StorageError: the Azure adapter's
one error mapping."""

from __future__ import annotations

import http.client
import ssl
from typing import Any

import requests
import urllib3.exceptions
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from storage_adapters.common import kind_of, retry_after_seconds
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.netguard import refused


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    return retry_after_seconds(value)


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether `exc` or an error it wraps (azure-core's inner_exception, or the chain) is one
    of `kinds`."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kinds):
            return True
        seen = getattr(seen, "inner_exception", None) or seen.__cause__ or seen.__context__
    return False


_NOT_FOUND = frozenset({"BlobNotFound", "ResourceNotFound", "404"})
_DENIED = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationSourceIPMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "InsufficientAccountPermissions",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
        "KeyBasedAuthenticationNotPermitted",
        "PublicAccessNotPermitted",
        "AccountIsDisabled",
        "401",
        "403",
    }
)
_ALREADY_EXISTS = frozenset({"BlobAlreadyExists", "ContainerAlreadyExists"})
_PRECONDITION = frozenset(
    {
        "ConditionNotMet",
        "SourceConditionNotMet",
        "TargetConditionNotMet",
        "InvalidBlockList",
        "InvalidBlockId",
        "InvalidBlobOrBlock",
        "BlockCountExceedsLimit",
        "BlockListTooLong",
        "RequestBodyTooLarge",
        "InvalidRange",
        "LeaseIdMissing",
        "LeaseNotPresentWithBlobOperation",
        "LeaseIdMismatchWithBlobOperation",
        "412",
        "413",
        "416",
    }
)
_RATE_LIMITED = frozenset({"ServerBusy", "TooManyRequests", "429", "503"})
_UNAVAILABLE = frozenset(
    {"InternalError", "OperationTimedOut", "PendingCopyOperation", "500", "502", "504"}
)
_CHECKSUM = frozenset({"Md5Mismatch", "Crc64Mismatch", "InvalidMd5"})
_CONFIG = frozenset({"InvalidResourceName", "OutOfRangeInput", "InvalidUri"})
_UNSUPPORTED = frozenset({"APINotImplemented", "NotImplemented", "BlobArchived", "501"})
# Failures before or while reading an answer: the request may succeed when made again.
_NETWORK_ERRORS = (
    ServiceRequestError,  # connection refused or reset, DNS, connect timeout
    ServiceResponseError,  # read timeout, connection dropped mid-answer
    IncompleteReadError,
    requests.exceptions.ChunkedEncodingError,  # a body cut short, seen through azure-core
    urllib3.exceptions.ProtocolError,
    http.client.IncompleteRead,
    ConnectionError,
    TimeoutError,
)
_TABLE = (
    (_NOT_FOUND, ErrorKind.NOT_FOUND),
    (_DENIED, ErrorKind.PERMISSION_DENIED),
    (_ALREADY_EXISTS, ErrorKind.ALREADY_EXISTS),
    (_PRECONDITION, ErrorKind.PRECONDITION_FAILED),
    (_CHECKSUM, ErrorKind.CHECKSUM_MISMATCH),
    (_CONFIG, ErrorKind.INVALID_CONFIG),
    (_UNSUPPORTED, ErrorKind.UNSUPPORTED),
    (_RATE_LIMITED, ErrorKind.RATE_LIMITED),
    (_UNAVAILABLE, ErrorKind.UNAVAILABLE),
)


def translate(exc: BaseException, key: str | None, *, container: str | None = None) -> StorageError:
    """The one place an azure-core/azure-storage failure becomes a StorageError."""
    if isinstance(exc, StorageError):
        return exc
    if (guarded := refused(exc)) is not None:  # a connection or redirect the guard refused
        return guarded
    if isinstance(exc, DecodeError) and (exc.status_code or 0) < 400:
        # A body cut short (IncompleteReadError) or garbled on the way; an error answer whose
        # body does not parse is still judged by its status below.
        return StorageError(ErrorKind.UNAVAILABLE, str(exc), key=key, transient=True)
    response = getattr(exc, "response", None)
    if isinstance(exc, HttpResponseError) and response is not None:
        headers = response.headers or {}
        status: int | None = exc.status_code
        # The header, not the body: a HEAD's error has no body.
        raw_code = headers.get("x-ms-error-code") or getattr(exc, "error_code", None) or ""
        code = str(getattr(raw_code, "value", raw_code))  # the SDK's StorageErrorCode enum
        message = (str(exc.message or "") or code or str(exc)).splitlines()[0]
        facts: dict[str, Any] = {"key": key, "status": status, "code": code or None}
        if code == "ContainerNotFound":
            name = container or "?"
            return StorageError(ErrorKind.NOT_FOUND, f"container {name!r} does not exist", **facts)
        # Azurite says InvalidOperation where Azure says Md5Mismatch.
        if status == 400 and "md5" in message.lower() and code not in _CHECKSUM:
            return StorageError(ErrorKind.CHECKSUM_MISMATCH, message, **facts)
        kind = kind_of(_TABLE, code, status)
        retry_after = _retry_after(headers) if kind is ErrorKind.RATE_LIMITED else None
        return StorageError(kind, message, retry_after=retry_after, **facts)
    # Also when wrapped: the SDK's downloader re-raises a body it failed to read three times
    # as an HttpResponseError without a response.
    if _caused_by(exc, _NETWORK_ERRORS):
        if _caused_by(exc, (ssl.SSLError, requests.exceptions.SSLError)):
            # A certificate problem does not heal by itself.
            return StorageError(ErrorKind.INVALID_CONFIG, str(exc), key=key)
        return StorageError(ErrorKind.UNAVAILABLE, str(exc), key=key, transient=True)
    if isinstance(exc, ClientAuthenticationError):  # raised before any answer: bad signing key
        return StorageError(ErrorKind.PERMISSION_DENIED, str(exc), key=key)
    if isinstance(exc, ResourceNotFoundError):
        return StorageError(ErrorKind.NOT_FOUND, str(exc), key=key)
    if isinstance(exc, ValueError):  # the SDK refusing an argument before sending anything
        return StorageError(ErrorKind.INVALID_CONFIG, f"{type(exc).__name__}: {exc}", key=key)
    return StorageError(ErrorKind.UNEXPECTED, f"{type(exc).__name__}: {exc}", key=key)
