"""Copying one object between two stores: server-side when they allow it, else streamed."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

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
    if info.md5:
        return f"md5:{info.md5}"
    return f"etag:{info.etag}" if info.etag else None


def matches(existing: ObjectInfo, source: ObjectInfo) -> bool:
    """Is `existing` (at the destination) the same content as `source`, by size and ETag?"""
    if existing.size != source.size:
        return False
    if existing.md5 and source.md5:
        return existing.md5 == source.md5
    return existing.etag is not None and existing.etag == source.etag


def _mismatch(key: str, what: str) -> StorageError:
    return StorageError(ErrorKind.CHECKSUM_MISMATCH, what, key=key)


def copy_object(
    src: ObjectStore, dst: ObjectStore, source: ObjectInfo, dst_key: str, limits: CopyLimits
) -> CopyResult:
    """Copy `source` (as listed in `src`) to `dst_key` in `dst` and verify it: size always,
    content by MD5 when both sides know it. A mismatch is a transient CHECKSUM_MISMATCH."""
    if dst.can_copy_from(src):
        max_single = min(
            limits.max_single_copy_size, dst.capabilities.max_single_copy_size or 2**63
        )
        if source.size <= max_single:
            info = dst.copy_from(src, source.key, dst_key, size=source.size)
            return _verify_server_copy(dst, source, dst_key, info, "server")
        if dst.capabilities.multipart_copy:
            info = _multipart_server_copy(src, dst, source, dst_key, limits.part_size)
            return _verify_server_copy(dst, source, dst_key, info, "server_multipart")
    if source.size < limits.multipart_threshold or not dst.capabilities.multipart_upload:
        return _stream_single(src, dst, source, dst_key)
    return _stream_multipart(src, dst, source, dst_key, limits.part_size)


def _verify_server_copy(
    dst: ObjectStore, source: ObjectInfo, dst_key: str, info: ObjectInfo, method: str
) -> CopyResult:
    if source.md5 and info.md5:
        if source.md5 != info.md5:
            raise _mismatch(dst_key, f"copy has MD5 {info.md5}, source {source.md5}")
        return CopyResult(size=source.size, checksum=f"md5:{info.md5}", method=method)
    # No comparable content hash in the copy's answer: check the size it reports.
    landed = dst.head(dst_key)
    if landed.size != source.size:
        raise _mismatch(dst_key, f"copy has {landed.size} bytes, source {source.size}")
    return CopyResult(size=landed.size, checksum=checksum_of(landed), method=method)


def _multipart_server_copy(
    src: ObjectStore, dst: ObjectStore, source: ObjectInfo, dst_key: str, part_size: int
) -> ObjectInfo:
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
    data = b"".join(src.open(source.key))
    if len(data) != source.size:
        raise _mismatch(source.key, f"read {len(data)} bytes, listed {source.size}")
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if source.md5 and source.md5 != md5:
        raise _mismatch(source.key, f"read content has MD5 {md5}, source states {source.md5}")
    info = dst.put(dst_key, data)
    if info.md5 and info.md5 != md5:
        raise _mismatch(dst_key, f"stored MD5 {info.md5}, sent {md5}")
    return CopyResult(size=len(data), checksum=f"md5:{md5}", method="stream")


def _stream_multipart(
    src: ObjectStore, dst: ObjectStore, source: ObjectInfo, dst_key: str, part_size: int
) -> CopyResult:
    """Parts of `part_size` bytes: memory is one part per copy, whatever the object's size."""
    digest = hashlib.md5(usedforsecurity=False)
    total = 0
    upload_id = dst.create_multipart(dst_key)
    try:
        parts: list[UploadedPart] = []
        buffer = bytearray()
        for chunk in src.open(source.key, chunk_size=min(part_size, 1024 * 1024)):
            digest.update(chunk)
            total += len(chunk)
            buffer += chunk
            if len(buffer) >= part_size:
                part = bytes(buffer[:part_size])
                del buffer[:part_size]
                parts.append(dst.upload_part(dst_key, upload_id, len(parts) + 1, part))
        if buffer or not parts:
            parts.append(dst.upload_part(dst_key, upload_id, len(parts) + 1, bytes(buffer)))
        if total != source.size:
            raise _mismatch(source.key, f"read {total} bytes, listed {source.size}")
        md5 = digest.hexdigest()
        if source.md5 and source.md5 != md5:
            raise _mismatch(source.key, f"read content has MD5 {md5}, source states {source.md5}")
        dst.complete_multipart(dst_key, upload_id, parts, content_md5=digest.hexdigest())
    except BaseException:
        _abort_quietly(dst, dst_key, upload_id)
        raise
    return CopyResult(size=total, checksum=f"md5:{md5}", method="stream_multipart")


def _abort_quietly(dst: ObjectStore, key: str, upload_id: str) -> None:
    # The original error is the one worth reporting; an unfinished upload expires anyway.
    with contextlib.suppress(StorageError):
        dst.abort_multipart(key, upload_id)
