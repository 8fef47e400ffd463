"""Small rules every adapter applies the same way: roots, page sizes, ETags, Retry-After,
URL lifetimes."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from storage_adapters.base import ObjectInfo
from storage_adapters.errors import ErrorKind, StorageError, changed

# The most one listing page's answer may hold. A page of 1000 keys (up to 1 KiB each,
# URL-encoded) with their metadata is a few MiB; a server sending more is refused, not
# buffered: a hostile endpoint could stream gigabytes into a worker.
MAX_LISTING_BYTES = 64 * 1024 * 1024


def read_listing(
    read: Callable[[int], bytes], *, key: str, limit: int = MAX_LISTING_BYTES
) -> bytes:
    """A listing answer's body through `read(n)` (b"" at its end), or a permanent
    StorageError once more than `limit` bytes came."""
    parts: list[bytes] = []
    size = 0
    while chunk := read(min(1024 * 1024, limit + 1 - size)):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise StorageError(
                ErrorKind.UNEXPECTED,
                f"the server's listing answer is more than {limit} bytes, the most one page "
                "may hold: not a storage server's answer",
                key=key,
                transient=False,
            )
    return b"".join(parts)


def still_version(head: Callable[[], ObjectInfo], key: str, etag: str) -> bool:
    """For a provider that cannot make a write conditional: is the object still version
    `etag`? False when it is gone; PRECONDITION_FAILED (permanent) when it is another one.
    The answer holds until the next write of someone else: a window of one request."""
    try:
        now = head().etag
    except StorageError as exc:
        if exc.kind is ErrorKind.NOT_FOUND:
            return False
        raise
    if now != etag:
        raise changed(key, etag, now)
    return True


def normalize_root(root: str) -> str:
    """A store's root as a key prefix: 'a/b', '/a/b/' -> 'a/b/'; '' -> ''."""
    root = root.strip("/")
    return f"{root}/" if root else ""


def page_limit(limit: int, max_list_page: int) -> int:
    if limit < 1:
        raise StorageError(ErrorKind.INVALID_CONFIG, f"page limit must be positive, got {limit}")
    return min(limit, max_list_page)


def strip_etag(etag: str | None, *, lower: bool = True) -> str | None:
    """An ETag without its quotes (lower-cased: S3 and OSS hex digests differ only in case)."""
    if not etag:
        return None
    etag = etag.strip().strip('"')
    return (etag.lower() if lower else etag) or None


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def check_range(key: str, offset: int, content_range: str | None) -> None:
    """A ranged read's answer must start at `offset`: a server that ignored the Range header
    sends the whole object, which read as the rest of it would corrupt the copy."""
    if not (content_range or "").startswith(f"bytes {offset}-"):
        answered = content_range or "the whole object"
        raise StorageError(
            ErrorKind.UNEXPECTED,
            f"asked for the bytes from {offset} on, the server sent {answered}",
            key=key,
            transient=False,
        )


def presign_seconds(expires_in: int, *, maximum: int | None = None) -> int:
    """`expires_in` of a presigned URL, checked: at least 1 second, at most `maximum`."""
    if expires_in < 1 or (maximum is not None and expires_in > maximum):
        most = f" and at most {maximum}" if maximum is not None else ""
        raise StorageError(
            ErrorKind.INVALID_CONFIG,
            f"a presigned URL lives at least 1 second{most}, not {expires_in}",
        )
    return expires_in


# (error codes or HTTP statuses, the kind they are), first match wins: each adapter's own.
ErrorTable = Sequence[tuple[Collection[str], ErrorKind]]


def kind_of(table: ErrorTable, code: str, status: int | None) -> ErrorKind:
    """The kind of a provider's error answer: the error code decides; an unknown code falls
    back on the HTTP status; an unknown status is UNAVAILABLE when 5xx, else UNEXPECTED."""
    status_code = str(status or "")
    kind = next((k for codes, k in table if code in codes), None)
    kind = kind or next((k for codes, k in table if status_code in codes), None)
    if kind is None:
        is_5xx = isinstance(status, int) and status >= 500
        kind = ErrorKind.UNAVAILABLE if is_5xx else ErrorKind.UNEXPECTED
    return kind


def check_part_md5(key: str, number: int, etag: str, md5: bytes | None) -> None:
    """A store that hashes a part itself, given the caller's MD5 of it (`upload_part`'s
    `md5`): CHECKSUM_MISMATCH when they differ, as a provider refuses a wrong Content-MD5."""
    if md5 is not None and md5.hex() != etag.lower():
        raise StorageError(
            ErrorKind.CHECKSUM_MISMATCH,
            f"part {number}: its bytes have MD5 {etag.lower()}, Content-MD5 says {md5.hex()}",
            key=key,
        )
