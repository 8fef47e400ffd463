"""What a streamed copy computes of the bytes it reads, to prove them the source's: their MD5,
their CRC-64 where a side states one (OSS), and, for a source uploaded in parts (S3's
multipart ETag, the MD5 of its parts' MD5s), the MD5 of each of the source's parts, cut
where the source's own parts were cut. importer/copier.py streams the copies."""

from __future__ import annotations

import hashlib
from functools import partial

from importer.copy_checks import (
    CopyResult,
    Requests,
    checksum_of,
    composite_etag,
    mismatch,
    same_etag,
)
from importer.crc64 import Crc64
from storage_adapters.base import ObjectInfo, ObjectStore


class Digest:
    """MD5 of a stream, and CRC-64/ECMA when `crc64` (a side that states one: OSS), computed
    as the bytes go by. Each is a pass over every byte under the GIL: the CRC only where
    there is a CRC to compare it with. With `layout` (the source's part size), the MD5 of
    each source part too: what the source's multipart ETag is made of."""

    def __init__(self, *, crc64: bool = True, layout: int | None = None) -> None:
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._crc = Crc64() if crc64 else None
        self._layout = layout
        self._part = hashlib.md5(usedforsecurity=False)
        self._part_size = 0
        self._parts: list[str] = []

    @classmethod
    def for_copy(cls, source: ObjectInfo, dst: ObjectStore, *, layout: int | None = None) -> Digest:
        return cls(crc64=source.crc64 is not None or dst.capabilities.reports_crc64, layout=layout)

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._md5.update(chunk)
        if self._crc is not None:
            self._crc.update(chunk)
        if self._layout is not None:
            self._track_parts(memoryview(chunk))

    def _track_parts(self, view: memoryview) -> None:
        assert self._layout is not None
        while view:
            take = min(len(view), self._layout - self._part_size)
            self._part.update(view[:take])
            self._part_size += take
            view = view[take:]
            if self._part_size == self._layout:
                self._parts.append(self._part.hexdigest())
                self._part, self._part_size = hashlib.md5(usedforsecurity=False), 0

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def crc64(self) -> str | None:
        return str(self._crc.value) if self._crc is not None else None

    @property
    def composite(self) -> str | None:
        """The multipart ETag the bytes read make in the source's layout (None without one)."""
        if self._layout is None:
            return None
        parts = list(self._parts)
        if self._part_size or not parts:
            parts.append(self._part.hexdigest())
        return composite_etag(parts)

    def check_source(self, call: Requests, src: ObjectStore, source: ObjectInfo) -> ObjectInfo:
        """`check` against the source as listed; on an MD5 mismatch, against its HEAD: a
        listing's MD5 is its ETag, which an SSE-KMS or SSE-C object's is not (the HEAD says
        so). A source with a multipart ETag and a known layout must have the ETag the bytes
        read make in it. Returns what the bytes were checked against."""
        if source.md5 and source.md5 != self.md5:
            fresh = call(partial(src.head, source.key))
            if fresh.md5 is None:  # encrypted: its ETag was never an MD5
                source = fresh
        self.check(source.key, source, "the source")
        composite = self.composite
        if source.md5 is None and composite is not None and not same_etag(source.etag, composite):
            raise mismatch(
                source.key, f"the source has ETag {source.etag}, the bytes read {composite}"
            )
        return source

    def check(self, key: str, other: ObjectInfo, what: str) -> None:
        """Compare with every checksum `other` states; raise on the first that differs."""
        if other.md5 and other.md5 != self.md5:
            raise mismatch(key, f"{what} has MD5 {other.md5}, the bytes copied {self.md5}")
        if other.crc64 and self.crc64 is not None and other.crc64 != self.crc64:
            raise mismatch(key, f"{what} has CRC-64 {other.crc64}, the bytes copied {self.crc64}")

    def result(self, method: str, source: ObjectInfo) -> CopyResult:
        """What `check_source` against `source` proved. The MD5 of the bytes read is the
        copy's checksum only when the source stated one to compare with: otherwise it would
        claim an end-to-end check that was never made."""
        if source.md5:
            return CopyResult(self.size, f"md5:{self.md5}", method, verified_by="md5")
        if source.crc64 and self.crc64 is not None:
            return CopyResult(self.size, f"crc64:{self.crc64}", method, verified_by="crc64")
        composite = self.composite
        if composite is not None and same_etag(source.etag, composite):
            return CopyResult(self.size, f"etag:{composite}", method, verified_by="etag")
        return CopyResult(self.size, checksum_of(source), method, verified_by="size")
