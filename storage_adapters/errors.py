"""The storage layer's one error vocabulary: a kind for callers, a transient flag for retries."""

from __future__ import annotations

import enum


class ErrorKind(enum.StrEnum):
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PRECONDITION_FAILED = "precondition_failed"
    PERMISSION_DENIED = "permission_denied"
    INVALID_CONFIG = "invalid_config"
    UNSUPPORTED = "unsupported"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # 5xx, connection reset, timeout
    CHECKSUM_MISMATCH = "checksum_mismatch"
    UNEXPECTED = "unexpected"


# A checksum mismatch is not transient by default: repeating the same call would mostly repeat
# it. The shard copier tries a mismatched object exactly once more, on purpose.
_TRANSIENT_BY_DEFAULT = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE})


class StorageError(Exception):
    """Every failure an adapter raises. No SDK exception escapes an adapter.

    `transient` decides retries: a transient error may succeed if the same call is made again
    (throttling, 5xx, resets, timeouts); a permanent one will not (403, 404, bad config).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        key: str | None = None,
        transient: bool | None = None,
        retry_after: float | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.key = key
        self.transient = kind in _TRANSIENT_BY_DEFAULT if transient is None else transient
        self.retry_after = retry_after
        self.status = status
        self.code = code

    def __str__(self) -> str:
        where = f" ({self.key})" if self.key else ""
        return f"{self.kind.value}: {self.message}{where}"


def not_found(key: str, message: str = "no such object") -> StorageError:
    return StorageError(ErrorKind.NOT_FOUND, message, key=key, status=404)


def changed(key: str, etag: str, now: str | None = None) -> StorageError:
    """A read, copy or delete pinned to version `etag` of an object that now has another:
    permanent, since doing it again would only meet the new version (and splicing the two,
    or deleting the one never copied, is never right)."""
    found = f", now {now}" if now else ""
    message = f"the object changed since version {etag} was listed or read{found}"
    return StorageError(ErrorKind.PRECONDITION_FAILED, message, key=key, transient=False)
