"""What S3's answers say in an S3Store's terms, whichever path brought them (boto3 or s3_wire):
an object's ObjectInfo (is its ETag its MD5?) and a listing's page under the store's root."""

from __future__ import annotations

import re
from datetime import datetime

from storage_adapters.base import ListPage, ObjectInfo
from storage_adapters.common import strip_etag
from storage_adapters.errors import ErrorKind, StorageError

_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_CONTENT_RANGE = re.compile(r"bytes 0-\d+/(\d+)")
_LAST_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def object_info(
    key: str, size: int, etag: str | None, last_modified: datetime | None
) -> ObjectInfo:
    etag = strip_etag(etag)
    # A single-part upload's ETag is the content MD5 (SSE-KMS aside); a multipart one has '-N'.
    md5 = etag if etag is not None and _MD5_HEX.fullmatch(etag) else None
    return ObjectInfo(key=key, size=size, etag=etag, last_modified=last_modified, md5=md5)


def part_layout(
    part_size: int, parts_count: int | str | None, content_range: str | None
) -> tuple[int, int] | None:
    """(part size, parts count) from a HeadObject of part 1 (its Content-Length, the
    object's PartsCount, its Content-Range `bytes 0-N/total`), when the parts are uniform as
    far as that tells: every part but the last of part 1's size makes exactly that count."""
    if parts_count is None or content_range is None or part_size <= 0:
        return None
    match = _CONTENT_RANGE.fullmatch(content_range.strip())
    try:
        count = int(parts_count)
    except ValueError:
        return None
    if match is None or count < 1:
        return None
    total = int(match.group(1))
    return (part_size, count) if -(-total // part_size) == count else None


def last_part_fits(
    layout: tuple[int, int], length: int, parts_count: str | None, content_range: str | None
) -> bool:
    """Is the last part, as a HeadObject of it tells, what `layout` leaves for it: its range
    the object's last bytes, of the size left after every other part of the layout's size?"""
    part_size, count = layout
    match = _LAST_RANGE.fullmatch((content_range or "").strip())
    if match is None or parts_count is None or str(parts_count) != str(count):
        return False
    first, last, total = (int(g) for g in match.groups())
    return first == part_size * (count - 1) and last == total - 1 and length == total - first


def listing_page(
    items: list[tuple[str, int, str | None, datetime | None]],
    *,
    root: str,
    truncated: bool,
    prefix: str,
) -> ListPage:
    """A listing's page in the store's terms: keys under its root, folder markers out,
    the last key listed as the cursor when there is more."""
    found: list[ObjectInfo] = []
    folders: list[str] = []
    last: str | None = None
    for last, size, etag, modified in items:
        if not last.startswith(root):
            continue
        if last.endswith("/"):
            if size:
                folders.append(last[len(root) :])
            continue
        found.append(object_info(last[len(root) :], size, etag, modified))
    if not truncated:
        return ListPage(objects=found, cursor=None, folder_keys_with_data=folders)
    if last is None:
        raise StorageError(
            ErrorKind.UNEXPECTED, "the server said truncated but listed nothing", key=prefix
        )
    return ListPage(objects=found, cursor=last[len(root) :], folder_keys_with_data=folders)
