"""Copying one object between two stores: server-side when they allow it, else streamed, and
verified either way: size always, content by the best checksum the pair allows.

Each storage request of a copy is retried on its own by the caller's RetryPolicy: a part that
fails is sent again, and a read that breaks resumes at the byte where it broke, pinned to the
version it began on. A large copy so gets through a flaky provider part by part, instead of
starting over whole at each fault (which a 66-part copy at 10% faults almost never survived)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial

from importer.copy_checks import (
    CopyResult,
    Requests,
    checksum_of,
    composite_etag,
    matches,
    mismatch,
    parts_in,
    same_etag,
    source_layout,
    states_composite,
    takes_layout,
    verify_layout_copy,
    verify_server_copy,
)
from importer.part_uploads import PartSlots, PartUploads
from importer.stream_digest import Digest
from storage_adapters.base import ObjectInfo, ObjectStore, UploadedPart
from storage_adapters.errors import ErrorKind, StorageError, changed
from storage_adapters.retry import OnRetry, RetryPolicy

MiB = 1024 * 1024

__all__ = [
    "CopyLimits",
    "CopyResult",
    "checksum_of",
    "composite_etag",
    "copy_object",
    "matches",
    "mismatch",
    "part_size_for",
]

# Without a policy, each request is made once (what unit tests of the paths want).
_ONCE = RetryPolicy(attempts=1)
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
# The largest source part a streamed copy takes the source's layout with: a streamed copy
# holds one part in memory.
_MAX_STREAMED_LAYOUT_PART = 64 * MiB


@dataclass(frozen=True)
class CopyLimits:
    multipart_threshold: int
    part_size: int
    max_single_copy_size: int
    # The parts all streamed multipart copies of the process may hold at once (None: each
    # copy uploads its parts one at a time, in its own thread).
    slots: PartSlots | None = None


def copy_object(
    src: ObjectStore,
    dst: ObjectStore,
    source: ObjectInfo,
    dst_key: str,
    limits: CopyLimits,
    *,
    retry: RetryPolicy = _ONCE,
    on_retry: OnRetry | None = None,
) -> CopyResult:
    """Copy `source` (as listed in `src`) to `dst_key` in `dst` and verify it. Every request
    is retried alone by `retry` (`on_retry` hears of each retry, as the policy's observer
    does); a mismatch is raised as it is, for the caller to decide on."""
    call = Requests(retry, on_retry)
    # A source uploaded in parts (a multipart ETag) whose layout its store tells is proven
    # by that ETag alone: copied in those parts (server-side or streamed), or read in them.
    layout = source_layout(call, src, source)
    if dst.can_copy_from(src):
        if layout is not None:
            # Its copy gets an ETag of its own (a plain MD5 from CopyObject, the MD5 of other
            # parts' MD5s from other parts), which proves nothing of its content; copied in
            # the source's own parts, its ETag is the source's when the bytes are. Where the
            # destination can't, the object is streamed: the bytes read prove themselves.
            if dst.capabilities.multipart_copy and takes_layout(dst, source, layout):
                try:
                    info = _multipart_server_copy(call, src, dst, source, dst_key, layout)
                except StorageError as exc:
                    if exc.kind is not ErrorKind.UNSUPPORTED:
                        raise
                else:
                    return verify_layout_copy(call, dst, source, dst_key, info)
        else:
            copied = _server_copy(call, src, dst, source, dst_key, limits)
            if copied is not None:
                return copied
    if source.md5 is None and source.crc64 is None:
        # A listing without a content hash (a multipart ETag): ask the source for one, so
        # the bytes read can be checked against something the source itself states.
        source = call(partial(src.head, source.key))
    if source.size < limits.multipart_threshold or not dst.capabilities.multipart_upload:
        return _stream_single(call, src, dst, source, dst_key, layout)
    # Streamed in the source's own parts, the parts' MD5s as sent make its multipart ETag;
    # in others, the digest cuts the bytes read where the source's parts end.
    part_size = limits.part_size
    if (
        layout is not None
        and layout <= max(limits.part_size, _MAX_STREAMED_LAYOUT_PART)
        and takes_layout(dst, source, layout)
    ):
        part_size = layout
    return _stream_multipart(call, src, dst, source, dst_key, part_size, layout, limits.slots)


def _server_copy(
    call: Requests,
    src: ObjectStore,
    dst: ObjectStore,
    source: ObjectInfo,
    dst_key: str,
    limits: CopyLimits,
) -> CopyResult | None:
    """A server-side copy of a source without a part layout to prove it; None where the
    pair turns out unable (UNSUPPORTED), for the object to be streamed instead."""
    whole = dst.capabilities.max_single_copy_size or 2**63
    # Above the configured size a copy is made in parts, unless only the whole copy can be
    # proven: a copy made of parts gets a checksum of its own (an Azure blob of blocks none,
    # an S3 object another multipart ETag); only OSS's CRC-64 spans the parts, and a whole
    # copy keeps the source's MD5 (S3's CopyObject as its ETag, Azure's Copy Blob as
    # Content-MD5).
    parts_proven = source.crc64 is not None and dst.capabilities.reports_crc64
    only_whole_proven = source.md5 is not None and not parts_proven
    if source.size <= whole and (source.size <= limits.max_single_copy_size or only_whole_proven):
        try:
            info = call(
                partial(dst.copy_from, src, source.key, dst_key, size=source.size, etag=source.etag)
            )
        except StorageError as exc:
            # A copy from a URL that cannot be pinned to this version (a multipart ETag), or
            # a server that turns out to lack it: the object is streamed instead.
            if exc.kind is not ErrorKind.UNSUPPORTED:
                raise
            return None
        return verify_server_copy(call, src, dst, source, dst_key, info, "server")
    if dst.capabilities.multipart_copy:
        try:
            info = _multipart_server_copy(call, src, dst, source, dst_key, limits.part_size)
        except StorageError as exc:
            # A server that turns out to lack part copies (emulators, some S3-compatible
            # stores) still gets the object, streamed.
            if exc.kind is not ErrorKind.UNSUPPORTED:
                raise
            return None
        return verify_server_copy(call, src, dst, source, dst_key, info, "server_multipart")
    return None


class _Reader:
    """The source object's bytes in order, one chunk per `next_chunk()`, each call one
    request's worth to retry: when the read breaks (a transient error from its chunks), the
    next call opens it again at the byte reached, pinned to the version listed, so no byte
    is read twice and no two versions are spliced together."""

    def __init__(self, src: ObjectStore, source: ObjectInfo, chunk_size: int) -> None:
        self._src = src
        self._source = source
        self._chunk_size = chunk_size
        self._chunks: Iterator[bytes] | None = None
        self.offset = 0

    def next_chunk(self) -> bytes | None:
        """The next chunk, None at the end."""
        if self._chunks is None:
            self._chunks = self._src.open(
                self._source.key,
                chunk_size=self._chunk_size,
                offset=self.offset,
                etag=self._source.etag,
            )
        try:
            chunk = next(self._chunks, None)
        except StorageError:
            self._chunks = None  # that read is over: the next call resumes where it broke
            raise
        if chunk is None:
            self._chunks = None
            return None
        self.offset += len(chunk)
        return chunk

    def close(self) -> None:
        """Let go of an unfinished read's connection (a copy given up)."""
        close = getattr(self._chunks, "close", None)
        self._chunks = None
        if close is not None:
            close()


def part_size_for(dst: ObjectStore, size: int, wanted: int) -> int:
    """The configured part size, grown when the object would need more parts than the
    destination allows."""
    return max(wanted, -(-size // dst.capabilities.max_parts), dst.capabilities.min_part_size)


def _multipart_server_copy(
    call: Requests,
    src: ObjectStore,
    dst: ObjectStore,
    source: ObjectInfo,
    dst_key: str,
    part_size: int,
) -> ObjectInfo:
    part_size = part_size_for(dst, source.size, part_size)
    # A create whose answer was lost leaves an empty upload behind; it expires (lifecycle).
    upload_id = call(partial(dst.create_multipart, dst_key))
    try:
        parts: list[UploadedPart] = []
        for number, start in enumerate(range(0, source.size, part_size), start=1):
            end = min(start + part_size, source.size) - 1
            copy_part = partial(
                dst.copy_part,
                src,
                source.key,
                dst_key,
                upload_id,
                number,
                (start, end),
                etag=source.etag,
            )
            parts.append(call(copy_part))
        # Each part was pinned to the version listed, but not every server honours that: the
        # source must still be that version before the parts become the object, else the
        # upload is dropped and the destination keeps what it held (never pieces of two).
        if source.etag is not None:
            now = call(partial(src.head, source.key)).etag
            if now != source.etag:
                raise changed(source.key, source.etag, now)
        info = _complete(call, dst, dst_key, upload_id, parts, size=source.size)
    except BaseException:
        _abort_quietly(call, dst, dst_key, upload_id)
        raise
    return info


def _complete(
    call: Requests,
    dst: ObjectStore,
    key: str,
    upload_id: str,
    parts: Sequence[UploadedPart],
    *,
    size: int,
    content_md5: str | None = None,
) -> ObjectInfo:
    """Complete the upload, retried: an attempt whose answer was lost may have completed it,
    and the next one then finds no upload (S3's NoSuchUpload). The object is checked by HEAD
    then: the upload's size, and its MD5 or multipart ETag where the destination states one."""
    attempts = 0

    def attempt() -> ObjectInfo:
        nonlocal attempts
        attempts += 1
        try:
            return dst.complete_multipart(key, upload_id, parts, content_md5=content_md5)
        except StorageError as exc:
            if attempts == 1 or exc.kind is not ErrorKind.NOT_FOUND:
                raise
            landed = dst.head(key)
            if not _assembled(landed, size, parts, content_md5):
                raise
            return landed

    return call(attempt)


def _assembled(
    landed: ObjectInfo, size: int, parts: Sequence[UploadedPart], content_md5: str | None
) -> bool:
    """Is `landed` what completing `parts` makes, as far as the destination tells?"""
    if landed.size != size:
        return False
    if content_md5 is not None and landed.md5 is not None:
        return landed.md5 == content_md5
    etags = [p.etag.strip('"').lower() for p in parts]
    multipart = landed.etag is not None and landed.etag.endswith(f"-{len(parts)}")
    if multipart and all(_MD5_HEX.fullmatch(e) for e in etags):
        # S3's and OSS's multipart ETag: the MD5 of the parts' MD5s, dash, their count.
        composite = hashlib.md5(b"".join(bytes.fromhex(e) for e in etags)).hexdigest()
        return landed.etag == f"{composite}-{len(parts)}"
    return True


def _stream_single(
    call: Requests,
    src: ObjectStore,
    dst: ObjectStore,
    source: ObjectInfo,
    dst_key: str,
    layout: int | None,
) -> CopyResult:
    digest = Digest.for_copy(source, dst, layout=layout)
    # One buffer of the listed size, filled in place: the object is held once (not as its
    # chunks and then their join, twice its size), and handed to the put as it is.
    body = bytearray(source.size)
    view = memoryview(body)
    reader = _Reader(src, source, MiB)
    try:
        while (chunk := call(reader.next_chunk)) is not None:
            start = digest.size
            digest.update(chunk)
            if digest.size > source.size:
                raise mismatch(source.key, f"read more than the {source.size} bytes listed")
            view[start : digest.size] = chunk
    finally:
        reader.close()
        view.release()
    if digest.size != source.size:
        raise mismatch(source.key, f"read {digest.size} bytes, listed {source.size}")
    source = digest.check_source(call, src, source)
    info = call(partial(dst.put, dst_key, body))
    digest.check(dst_key, info, "the stored copy")
    return digest.result("stream", source)


def _stream_multipart(
    call: Requests,
    src: ObjectStore,
    dst: ObjectStore,
    source: ObjectInfo,
    dst_key: str,
    part_size: int,
    layout: int | None,
    slots: PartSlots | None,
) -> CopyResult:
    """Parts of `part_size` bytes, each read whole and dropped as soon as it is uploaded;
    with `slots`, a part uploads while the next is read, and the process's copies together
    hold at most the slots' parts, whatever the objects' sizes. A part whose upload fails
    is sent again from memory; a read that breaks resumes."""
    part_size = part_size_for(dst, source.size, part_size)
    # Parts of the source's own size: the MD5s sent make its ETag, with no pass more.
    digest = Digest.for_copy(source, dst, layout=layout if layout != part_size else None)
    # A part read in one chunk is the part itself: no second copy of its bytes is made to
    # join it, so the parts in flight are all the memory the copy takes. A read that breaks
    # resumes at the part it was reading.
    reader = _Reader(src, source, part_size)
    upload_id = call(partial(dst.create_multipart, dst_key))
    uploads = PartUploads(call, dst, dst_key, upload_id, slots)
    try:
        pending: list[bytes] = []
        pending_size = 0
        uploads.reserve()
        while (chunk := call(reader.next_chunk)) is not None:
            digest.update(chunk)
            while chunk:
                take = min(len(chunk), part_size - pending_size)
                pending.append(chunk[:take] if take < len(chunk) else chunk)
                pending_size += take
                chunk = chunk[take:]
                if pending_size == part_size:
                    part, pending, pending_size = b"".join(pending), [], 0
                    uploads.send(part)
                    del part
                    uploads.reserve()
        if pending or not uploads.count:
            uploads.send(b"".join(pending))
        parts, sent = uploads.finish()
        if digest.size != source.size:
            raise mismatch(source.key, f"read {digest.size} bytes, listed {source.size}")
        source = digest.check_source(call, src, source)
        info = _complete(
            call, dst, dst_key, upload_id, parts, size=digest.size, content_md5=digest.md5
        )
    except BaseException:
        reader.close()
        uploads.cancel()
        _abort_quietly(call, dst, dst_key, upload_id)
        raise
    digest.check(dst_key, info, "the stored copy")
    composite = composite_etag(sent)
    # The parts' MD5s as sent making another ETag than the one the upload has: unless the
    # destination's ETags are no MD5s (SSE-KMS), it holds other bytes than were sent.
    if (
        parts_in(info.etag) == len(sent)
        and not same_etag(info.etag, composite)
        and states_composite(call, dst, dst_key)
    ):
        raise mismatch(dst_key, f"the stored copy has ETag {info.etag}, the parts sent {composite}")
    if source.md5 is None and layout == part_size:
        # Read in the source's parts: the bytes read are the source's by its own ETag, or
        # they are not.
        if not same_etag(source.etag, composite):
            raise mismatch(
                source.key, f"the source has ETag {source.etag}, the bytes read {composite}"
            )
        return CopyResult(digest.size, f"etag:{composite}", "stream_multipart", verified_by="etag")
    return digest.result("stream_multipart", source)


def _abort_quietly(call: Requests, dst: ObjectStore, key: str, upload_id: str) -> None:
    # The original error is the one worth reporting; an unfinished upload expires anyway.
    with contextlib.suppress(StorageError):
        call(partial(dst.abort_multipart, key, upload_id))
