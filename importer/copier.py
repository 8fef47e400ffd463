"""Copying one object between two stores: server-side when they allow it, else streamed, and
verified either way: size always, content by the best checksum the pair allows."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

from oss2.utils import Crc64  # CRC-64/ECMA as OSS computes it (C-accelerated via crcmod)

from storage_adapters.base import ObjectInfo, ObjectStore, UploadedPart
from storage_adapters.errors import ErrorKind, StorageError


@dataclass(frozen=True)
class CopyLimits:
    multipart_threshold: int
    part_size: int
    max_single_copy_size: int


@dataclass(frozen=True)
class CopyResult:
    size: int
    checksum: str | None
    method: str  # "server", "server_multipart", "stream", "stream_multipart"


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


class _Digest:
    """MD5 and CRC-64/ECMA of a stream, both computed as the bytes go by."""

    def __init__(self) -> None:
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._crc = Crc64(0)

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._md5.update(chunk)
        self._crc.update(chunk)

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def crc64(self) -> str:
        return str(self._crc.crc)

    def check(self, key: str, other: ObjectInfo, what: str) -> None:
        """Compare with every checksum `other` states; raise on the first that differs."""
        if other.md5 and other.md5 != self.md5:
            raise mismatch(key, f"{what} has MD5 {other.md5}, the bytes copied {self.md5}")
        if other.crc64 and other.crc64 != self.crc64:
            raise mismatch(key, f"{what} has CRC-64 {other.crc64}, the bytes copied {self.crc64}")

    def result(self, method: str) -> CopyResult:
        return CopyResult(size=self.size, checksum=f"md5:{self.md5}", method=method)


def copy_object(
    src: ObjectStore, dst: ObjectStore, source: ObjectInfo, dst_key: str, limits: CopyLimits
) -> CopyResult:
    """Copy `source` (as listed in `src`) to `dst_key` in `dst` and verify it."""
    if dst.can_copy_from(src):
        max_single = min(
            limits.max_single_copy_size, dst.capabilities.max_single_copy_size or 2**63
        )
        if source.size <= max_single:
            info = dst.copy_from(src, source.key, dst_key, size=source.size)
            return _verify_server_copy(dst, source, dst_key, info, "server")
        if dst.capabilities.multipart_copy:
            try:
                info = _multipart_server_copy(src, dst, source, dst_key, limits.part_size)
            except StorageError as exc:
                # A server that turns out to lack part copies (emulators, some S3-compatible
                # stores) still gets the object, streamed.
                if exc.kind is not ErrorKind.UNSUPPORTED:
                    raise
            else:
                return _verify_server_copy(dst, source, dst_key, info, "server_multipart")
    if source.md5 is None and source.crc64 is None:
        # A listing without a content hash (a multipart ETag): ask the source for one, so
        # the bytes read can be checked against something the source itself states.
        source = src.head(source.key)
    if source.size < limits.multipart_threshold or not dst.capabilities.multipart_upload:
        return _stream_single(src, dst, source, dst_key)
    return _stream_multipart(src, dst, source, dst_key, limits.part_size)


def _verify_server_copy(
    dst: ObjectStore, source: ObjectInfo, dst_key: str, info: ObjectInfo, method: str
) -> CopyResult:
    if source.md5 and info.md5:
        if source.md5 != info.md5:
            raise mismatch(dst_key, f"copy has MD5 {info.md5}, source {source.md5}")
        return CopyResult(size=source.size, checksum=f"md5:{info.md5}", method=method)
    # No comparable content hash in the copy's answer: check what the copy reports.
    landed = dst.head(dst_key)
    if landed.size != source.size:
        raise mismatch(dst_key, f"copy has {landed.size} bytes, source {source.size}")
    if source.crc64 and landed.crc64 and source.crc64 != landed.crc64:
        raise mismatch(dst_key, f"copy has CRC-64 {landed.crc64}, source {source.crc64}")
    return CopyResult(size=landed.size, checksum=checksum_of(landed), method=method)


def part_size_for(dst: ObjectStore, size: int, wanted: int) -> int:
    """The configured part size, grown when the object would need more parts than the
    destination allows."""
    return max(wanted, -(-size // dst.capabilities.max_parts), dst.capabilities.min_part_size)


def _multipart_server_copy(
    src: ObjectStore, dst: ObjectStore, source: ObjectInfo, dst_key: str, part_size: int
) -> ObjectInfo:
    part_size = part_size_for(dst, source.size, part_size)
    upload_id = dst.create_multipart(dst_key)
    try:
        parts: list[UploadedPart] = []
        for number, start in enumerate(range(0, source.size, part_size), start=1):
            end = min(start + part_size, source.size) - 1
            parts.append(dst.copy_part(src, source.key, dst_key, upload_id, number, (start, end)))
        return dst.complete_multipart(dst_key, upload_id, parts)
    except BaseException:
        _abort_quietly(dst, dst_key, upload_id)
        raise


def _stream_single(
    src: ObjectStore, dst: ObjectStore, source: ObjectInfo, dst_key: str
) -> CopyResult:
    digest = _Digest()
    chunks = []
    for chunk in src.open(source.key):
        digest.update(chunk)
        chunks.append(chunk)
    if digest.size != source.size:
        raise mismatch(source.key, f"read {digest.size} bytes, listed {source.size}")
    digest.check(source.key, source, "the source")
    info = dst.put(dst_key, b"".join(chunks))
    digest.check(dst_key, info, "the stored copy")
    return digest.result("stream")


def _stream_multipart(
    src: ObjectStore, dst: ObjectStore, source: ObjectInfo, dst_key: str, part_size: int
) -> CopyResult:
    """Parts of `part_size` bytes, each joined once from the chunks read and dropped as soon
    as it is uploaded: memory is about one part per copy, whatever the object's size."""
    part_size = part_size_for(dst, source.size, part_size)
    digest = _Digest()
    upload_id = dst.create_multipart(dst_key)
    try:
        parts: list[UploadedPart] = []
        pending: list[bytes] = []
        pending_size = 0
        for chunk in src.open(source.key, chunk_size=min(part_size, 1024 * 1024)):
            digest.update(chunk)
            while chunk:
                take = min(len(chunk), part_size - pending_size)
                pending.append(chunk[:take] if take < len(chunk) else chunk)
                pending_size += take
                chunk = chunk[take:]
                if pending_size == part_size:
                    part, pending, pending_size = b"".join(pending), [], 0
                    parts.append(dst.upload_part(dst_key, upload_id, len(parts) + 1, part))
                    del part
        if pending or not parts:
            part = b"".join(pending)
            parts.append(dst.upload_part(dst_key, upload_id, len(parts) + 1, part))
        if digest.size != source.size:
            raise mismatch(source.key, f"read {digest.size} bytes, listed {source.size}")
        digest.check(source.key, source, "the source")
        info = dst.complete_multipart(dst_key, upload_id, parts, content_md5=digest.md5)
    except BaseException:
        _abort_quietly(dst, dst_key, upload_id)
        raise
    digest.check(dst_key, info, "the stored copy")
    return digest.result("stream_multipart")


def _abort_quietly(dst: ObjectStore, key: str, upload_id: str) -> None:
    # The original error is the one worth reporting; an unfinished upload expires anyway.
    with contextlib.suppress(StorageError):
        dst.abort_multipart(key, upload_id)
