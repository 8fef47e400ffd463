"""A store whose every request first passes a gate: shared rates and caps, held elsewhere.

The gate (stores/throttle.py keeps its state in Redis, so that every worker process shares it)
decides how long a request waits; this wrapper only asks it before each request, tells it the
bytes each request moves, and tells it when the provider answered "slow down". It knows
nothing of Redis.

What a request is charged: one request each, plus the bytes it moves. Writes (put, a part)
are charged their bytes before they are sent; reads after they arrive (their size is known
only then), chunk by chunk for a stream. A server-side copy (or part copy) is one request at
the object's (the range's) size: the provider moves those bytes, reading the source's bucket
and writing the destination's, so it is charged to the rates of both stores' gates — once to
each, the account and a job they share counting it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from storage_adapters.base import (
    Blob,
    Capabilities,
    ListPage,
    ObjectInfo,
    ObjectStore,
    PartLayouts,
    UploadedPart,
)
from storage_adapters.errors import ErrorKind, StorageError

T = TypeVar("T")


class Gate(Protocol):
    """Admission of one store's requests."""

    def admit(self, requests: int, nbytes: int) -> None:
        """Return when `requests` requests moving `nbytes` bytes may go (either may be 0:
        bytes learned after a request are charged with `admit(0, n)`). Blocks, sleeping,
        as long as a shared rate or a cap says; never raises."""
        ...

    def throttled(self) -> None:
        """The provider answered one of this store's requests with "slow down"."""
        ...

    def joined(self, other: Gate) -> Gate:
        """One gate holding the rates of both, each once: a server-side copy's."""
        ...


def unwrap(store: ObjectStore) -> ObjectStore:
    """The adapter under any number of ThrottledStore layers (adapters compare their own
    types to decide on server-side copies)."""
    while isinstance(store, ThrottledStore):
        store = store.inner
    return store


class ThrottledStore:
    """`inner`, each request admitted by `gate` first; rate_limited errors are reported to
    the gate (and raised as they were: the retry policy still retries them)."""

    def __init__(self, inner: ObjectStore, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate
        self.capabilities: Capabilities = inner.capabilities
        self._joined: tuple[Gate, Gate] | None = None  # (a source's gate, joined with ours)

    @property
    def account(self) -> str:
        return self.inner.account

    @property
    def location(self) -> str:
        return self.inner.location

    def _call(self, fn: Callable[[], T], *, nbytes: int = 0, gate: Gate | None = None) -> T:
        gate = gate or self.gate
        gate.admit(1, nbytes)
        try:
            return fn()
        except StorageError as exc:
            if exc.kind is ErrorKind.RATE_LIMITED:
                gate.throttled()
            raise

    def _copy_gate(self, source: ObjectStore) -> Gate:
        if not isinstance(source, ThrottledStore):
            return self.gate
        # A shard copies from one source: its joined gate is made once, not per object.
        cached = self._joined
        if cached is not None and cached[0] is source.gate:
            return cached[1]
        joined = self.gate.joined(source.gate)
        self._joined = (source.gate, joined)
        return joined

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 1000) -> ListPage:
        return self._call(lambda: self.inner.list_page(prefix, cursor=cursor, limit=limit))

    def head(self, key: str) -> ObjectInfo:
        return self._call(lambda: self.inner.head(key))

    def part_layout(self, key: str) -> tuple[int, int] | None:
        inner = self.inner
        if not isinstance(inner, PartLayouts):
            return None
        return self._call(lambda: inner.part_layout(key))

    def open(
        self,
        key: str,
        *,
        chunk_size: int = 1024 * 1024,
        offset: int = 0,
        etag: str | None = None,
    ) -> Iterator[bytes]:
        # A generator, like the adapters' own: the request is made on the first advance.
        self.gate.admit(1, 0)
        chunks = self.inner.open(key, chunk_size=chunk_size, offset=offset, etag=etag)
        try:
            # Through map, not a for loop: this generator's frame keeps no reference to the
            # chunk it gave while the caller holds it (a streamed copy's chunk is a part).
            yield from map(self._charged, chunks)
        except StorageError as exc:
            if exc.kind is ErrorKind.RATE_LIMITED:
                self.gate.throttled()
            raise

    def _charged(self, chunk: bytes) -> bytes:
        self.gate.admit(0, len(chunk))
        return chunk

    def read(self, key: str, *, max_size: int) -> Blob:
        blob = self._call(lambda: self.inner.read(key, max_size=max_size))
        self.gate.admit(0, len(blob.data))
        return blob

    def get_bytes(self, key: str, *, max_size: int) -> bytes:
        return self.read(key, max_size=max_size).data

    def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
        return self._call(lambda: self.inner.put(key, data), nbytes=len(data))

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self._call(lambda: self.inner.delete(key, if_match=if_match))

    def can_copy_from(self, source: ObjectStore) -> bool:
        return self.inner.can_copy_from(unwrap(source))

    def copy_from(
        self,
        source: ObjectStore,
        src_key: str,
        dst_key: str,
        *,
        size: int | None = None,
        etag: str | None = None,
    ) -> ObjectInfo:
        raw, gate = unwrap(source), self._copy_gate(source)
        info = self._call(
            lambda: self.inner.copy_from(raw, src_key, dst_key, size=size, etag=etag),
            nbytes=size or 0,
            gate=gate,
        )
        if size is None:
            gate.admit(0, info.size)
        return info

    def create_multipart(self, key: str) -> str:
        return self._call(lambda: self.inner.create_multipart(key))

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        return self._call(
            lambda: self.inner.upload_part(key, upload_id, number, data, md5=md5), nbytes=len(data)
        )

    def copy_part(
        self,
        source: ObjectStore,
        src_key: str,
        key: str,
        upload_id: str,
        number: int,
        byte_range: tuple[int, int],
        *,
        etag: str | None = None,
    ) -> UploadedPart:
        raw = unwrap(source)
        return self._call(
            lambda: self.inner.copy_part(
                raw, src_key, key, upload_id, number, byte_range, etag=etag
            ),
            nbytes=byte_range[1] - byte_range[0] + 1,
            gate=self._copy_gate(source),
        )

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        content_md5: str | None = None,
    ) -> ObjectInfo:
        return self._call(
            lambda: self.inner.complete_multipart(key, upload_id, parts, content_md5=content_md5)
        )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._call(lambda: self.inner.abort_multipart(key, upload_id))

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        return self._call(lambda: self.inner.list_uploads(prefix, limit=limit))

    def presign_get(self, key: str, *, expires_in: int) -> str:
        # Signed locally, no request made: nothing to admit.
        return self.inner.presign_get(key, expires_in=expires_in)
