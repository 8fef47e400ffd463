"""What the Azure adapter makes of Azure's answers and asks with: an ObjectInfo from a blob's
properties, the block ids of a multipart upload, the If-Match arguments of a pinned write."""

from __future__ import annotations

from datetime import datetime

from azure.core import MatchConditions
from azure.storage.blob import BlobProperties

from storage_adapters.base import ObjectInfo, UploadedPart
from storage_adapters.common import strip_etag


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
