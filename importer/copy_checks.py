"""How a copy proves itself its source's: the result a copy reports (its checksum and what
verified it), the checks of a server-side copy (the best checksum both sides state; a multipart
copy made in the source's own parts must carry the source's multipart ETag), and the one
request of a copy, retried on its own (`Requests`). importer/copier.py makes the copies."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from storage_adapters.base import ObjectInfo, ObjectStore, PartLayouts
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.retry import OnRetry, RetryPolicy

T = TypeVar("T")
_COMPOSITE = re.compile(r"[0-9a-f]{32}-([0-9]+)")


@dataclass(frozen=True)
class CopyResult:
    size: int
    checksum: str | None
    method: str  # "server", "server_multipart", "stream", "stream_multipart"
    # The check that proved the copy equal to its source: "md5" or "crc64" (both sides
    # stated one, and they agreed), "etag" (a multipart copy made with the source's part
    # layout has the source's multipart ETag: MD5 of the parts' MD5s, computed by the
    # provider), or "size" (no checksum both sides state).
    verified_by: str = "size"


def checksum_of(info: ObjectInfo) -> str | None:
    """The ledger's checksum: MD5 when known, else OSS's CRC-64, else the ETag."""
    if info.md5:
        return f"md5:{info.md5}"
    if info.crc64:
        return f"crc64:{info.crc64}"
    return f"etag:{info.etag}" if info.etag else None


def matches(existing: ObjectInfo, source: ObjectInfo) -> bool:
    """Is `existing` (at the destination) the same content as `source`, by size and ETag?"""
    if existing.size != source.size:
        return False
    if existing.md5 and source.md5:
        return existing.md5 == source.md5
    if existing.crc64 and source.crc64:
        return existing.crc64 == source.crc64
    return existing.etag is not None and existing.etag == source.etag


def mismatch(key: str, what: str) -> StorageError:
    """A copy that is not what was read: permanent for the retry policy, which would only
    repeat it; the shard copier tries such an object once more, as the issue of a moment."""
    return StorageError(ErrorKind.CHECKSUM_MISMATCH, what, key=key, transient=False)


@dataclass(frozen=True, slots=True)
class Requests:
    """Makes one storage request of a copy, retried on its own by the policy."""

    policy: RetryPolicy
    on_retry: OnRetry | None

    def __call__(self, request: Callable[[], T]) -> T:
        return self.policy.call(request, on_retry=self.on_retry)


def verify_server_copy(
    call: Requests,
    src: ObjectStore,
    dst: ObjectStore,
    source: ObjectInfo,
    dst_key: str,
    info: ObjectInfo,
    method: str,
) -> CopyResult:
    if source.md5 and info.md5 and source.md5 != info.md5:
        # A listing's MD5 is its ETag, which for an SSE-KMS or SSE-C object is none: the
        # source's HEAD says whether it states one. If not, the copy is checked without.
        source = call(partial(src.head, source.key))
        if source.md5:
            raise mismatch(dst_key, f"copy has MD5 {info.md5}, source {source.md5}")
        info = call(partial(dst.head, dst_key))
    if source.md5 and info.md5:
        return CopyResult(source.size, f"md5:{info.md5}", method, verified_by="md5")
    # No comparable content hash in the copy's answer: check what the copy reports.
    landed = call(partial(dst.head, dst_key))
    if landed.size != source.size:
        raise mismatch(dst_key, f"copy has {landed.size} bytes, source {source.size}")
    if source.md5 and landed.md5:  # Azure's Content-MD5, kept by the copy
        if source.md5 != landed.md5:
            raise mismatch(dst_key, f"copy has MD5 {landed.md5}, source {source.md5}")
        return CopyResult(landed.size, f"md5:{landed.md5}", method, verified_by="md5")
    if source.crc64 and landed.crc64:
        if source.crc64 != landed.crc64:
            raise mismatch(dst_key, f"copy has CRC-64 {landed.crc64}, source {source.crc64}")
        return CopyResult(landed.size, f"crc64:{landed.crc64}", method, verified_by="crc64")
    return CopyResult(landed.size, checksum_of(landed), method, verified_by="size")


def composite_etag(part_md5s: Sequence[str]) -> str:
    """S3's multipart ETag of parts with these MD5s (hex): the MD5 of the parts' MD5s, dash,
    their count."""
    digest = hashlib.md5(b"".join(bytes.fromhex(m) for m in part_md5s), usedforsecurity=False)
    return f"{digest.hexdigest()}-{len(part_md5s)}"


def parts_in(etag: str | None) -> int | None:
    """The parts count of a multipart ETag (`<md5 of part MD5s>-N`); None for any other."""
    match = _COMPOSITE.fullmatch((etag or "").strip('"').lower())
    return int(match.group(1)) if match else None


def same_etag(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip('"').lower() == b.strip('"').lower()


def source_layout(call: Requests, src: ObjectStore, source: ObjectInfo) -> int | None:
    """The part size `source` was uploaded with, when it has a multipart ETag and its store
    tells a uniform layout of that many parts (`PartLayouts`); else None (no proof of its
    bytes to be had from its ETag)."""
    count = parts_in(source.etag)
    if count is None or not isinstance(src, PartLayouts):
        return None
    try:
        layout = call(partial(src.part_layout, source.key))
    except StorageError:
        return None  # a server that won't tell: copied as before, and checked by size
    if layout is None:
        return None
    part_size, parts = layout
    if parts != count or -(-source.size // part_size) != parts:
        return None
    return part_size


def takes_layout(dst: ObjectStore, source: ObjectInfo, part_size: int) -> bool:
    """Does `dst` take `source` in parts of `part_size` bytes (its part count and size)?"""
    caps = dst.capabilities
    parts = -(-source.size // part_size)
    return parts <= caps.max_parts and (parts == 1 or part_size >= caps.min_part_size)


def verify_layout_copy(
    call: Requests, dst: ObjectStore, source: ObjectInfo, dst_key: str, info: ObjectInfo
) -> CopyResult:
    """A copy made in the source's parts: its ETag must be the source's."""
    if info.size != source.size:
        raise mismatch(dst_key, f"copy has {info.size} bytes, source {source.size}")
    if not same_etag(info.etag, source.etag):
        if not states_composite(call, dst, dst_key):
            # A destination whose parts' ETags are no MD5s (a bucket encrypting with
            # SSE-KMS by default): its ETag can't be compared, and the copy is checked as any.
            return CopyResult(info.size, checksum_of(info), "server_multipart", verified_by="size")
        raise mismatch(
            dst_key, f"copy in the source's parts has ETag {info.etag}, source {source.etag}"
        )
    return CopyResult(info.size, f"etag:{info.etag}", "server_multipart", verified_by="etag")


def states_composite(call: Requests, dst: ObjectStore, key: str) -> bool:
    """Does `dst` say that the object at `key` has an ETag made of its parts' MD5s?"""
    if not isinstance(dst, PartLayouts):
        return False
    try:
        return call(partial(dst.part_layout, key)) is not None
    except StorageError:
        return False
