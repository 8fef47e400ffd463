"""What the Azure adapter makes of Azure's answers and asks with: an ObjectInfo from a blob's
properties, the block ids of a multipart upload, the If-Match arguments of a pinned write, and
the wait for an async Copy Blob to end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobClient, BlobProperties

from storage_adapters.base import ObjectInfo, UploadedPart
from storage_adapters.common import strip_etag
from storage_adapters.errors import ErrorKind, StorageError


def object_info(key: str, item: BlobProperties) -> ObjectInfo:
    md5 = item.content_settings.content_md5 if item.content_settings else None
    return ObjectInfo(
        key=key,
        size=int(item.size or 0),
        etag=strip_etag(item.etag, lower=False),
        last_modified=item.last_modified,
        md5=bytes(md5).hex() if md5 else None,
    )


def block_id(upload_id: str, number: int, tag: str) -> str:
    """'<upload id>-<part number>-<part tag>', which the SDK sends base64-encoded. All block
    ids of a blob must have one length, at most 64 bytes before encoding: 16 + 1 + 6 + 1 + 32.
    The tag (the part's MD5) makes a part whose bytes changed a different block, and a wrong
    ETag an unknown one."""
    return f"{upload_id}-{number:06d}-{tag}"


def part_number(part: UploadedPart) -> int:
    return part.number


def as_datetime(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def only_version(etag: str | None) -> dict[str, object]:
    """The arguments that make a write take version `etag` only (If-Match)."""
    if etag is None:
        return {}
    return {"etag": f'"{etag}"', "match_condition": MatchConditions.IfNotModified}


# An async Copy Blob is polled this often at first, backing off to the second figure.
_COPY_POLL = (0.05, 2.0)


def await_copy(
    call: Callable[..., Any], blob: BlobClient, key: str, copy_id: str, timeout: float
) -> BlobProperties:
    """The blob's properties once its pending Copy Blob ended well; UNAVAILABLE when it failed
    or did not end within `timeout` seconds (then it is aborted). `call` runs a request the
    store's way (its errors translated)."""
    deadline = time.monotonic() + timeout
    wait = _COPY_POLL[0]
    while True:
        props: BlobProperties = call(blob.get_blob_properties, key)
        status = props.copy.status if props.copy else None
        if status in (None, "success"):
            return props
        if status != "pending":  # failed or aborted: the service says why
            raise StorageError(
                ErrorKind.UNAVAILABLE,
                f"Copy Blob {status}: {props.copy.status_description or 'no reason given'}",
                key=key,
            )
        if time.monotonic() > deadline:
            break
        time.sleep(wait)
        wait = min(wait * 2, _COPY_POLL[1])
    # Stop the copy rather than leave it running: a copy onto a blob with a pending one
    # is refused, so a retry would fail until it ended.
    # It may have ended meanwhile; the timeout is the error to report either way.
    with contextlib.suppress(StorageError):
        call(blob.abort_copy, key, copy_id=copy_id)
    raise StorageError(
        ErrorKind.UNAVAILABLE,
        f"Copy Blob did not finish within {timeout:.0f}s",
        key=key,
    )
