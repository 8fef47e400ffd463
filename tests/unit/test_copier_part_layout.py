"""A multipart source's copy proven by its own multipart ETag: copied (or streamed) in the
source's part layout, the copy's ETag is the source's only when its bytes are."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from importer.copier import CopyLimits, composite_etag, copy_object
from storage_adapters.base import ObjectInfo, ObjectStore, PartLayouts, UploadedPart
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.memory import MemoryBackend, MemoryStore
from storage_adapters.throttled import ThrottledStore

KiB = 1024
PART = 64 * KiB  # the source's layout
# The copier's own part size differs from the source's: the layout must come from the source.
LIMITS = CopyLimits(multipart_threshold=100 * KiB, part_size=96 * KiB, max_single_copy_size=1 << 30)


def _store(name: str, account: str = "acct") -> MemoryStore:
    return MemoryStore(MemoryBackend(name, account=account), min_part_size=32 * KiB)


def _upload_in_parts(store: ObjectStore, key: str, data: bytes, part: int) -> ObjectInfo:
    upload_id = store.create_multipart(key)
    parts = [
        store.upload_part(key, upload_id, n, data[start : start + part])
        for n, start in enumerate(range(0, len(data), part), start=1)
    ]
    return store.complete_multipart(key, upload_id, parts)


class _Gate:
    def admit(self, requests: int, nbytes: int) -> None:
        pass

    def throttled(self) -> None:
        pass

    def joined(self, other: object) -> _Gate:
        return self


class CorruptingParts:
    """A destination whose parts hold other bytes than it was given (a faulty store or
    wire): each answers the ETag of what it holds, so the upload completes."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        # A server that does not check the part's Content-MD5 (moto's): the MD5 is dropped.
        return self.inner.upload_part(key, upload_id, number, _flip(data))

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
        data = source.get_bytes(src_key, max_size=1 << 30)[byte_range[0] : byte_range[1] + 1]
        return self.inner.upload_part(key, upload_id, number, _flip(data))


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def test_the_memory_store_tells_an_s3_style_layout() -> None:
    store = _store("a")
    data = os.urandom(3 * PART + 5)
    info = _upload_in_parts(store, "k", data, PART)
    md5s = [hashlib.md5(data[s : s + PART]).hexdigest() for s in range(0, len(data), PART)]
    assert info.etag == composite_etag(md5s) and info.md5 is None
    assert isinstance(store, PartLayouts)
    assert store.part_layout("k") == (PART, 4)
    store.put("single", b"abc")
    assert store.part_layout("single") is None
    # Through the throttling wrapper the workers use, too.
    assert ThrottledStore(store, _Gate()).part_layout("k") == (PART, 4)


@pytest.mark.parametrize("size", [3 * PART + 5, 2 * PART])
def test_a_server_copy_of_a_multipart_source_is_verified_by_its_etag(size: int) -> None:
    src, dst = _store("src"), _store("dst")
    listed = _upload_in_parts(src, "k", os.urandom(size), PART)
    result = copy_object(src, dst, listed, "copy", LIMITS)
    assert (result.method, result.verified_by) == ("server_multipart", "etag")
    assert result.checksum == f"etag:{listed.etag}"
    assert dst.head("copy").etag == listed.etag
    assert dst.get_bytes("copy", max_size=1 << 20) == src.get_bytes("k", max_size=1 << 20)
    assert dst.backend.calls["copy_part"] == -(-size // PART)


def test_a_server_copy_whose_parts_differ_from_the_source_fails() -> None:
    src, dst = _store("src"), CorruptingParts(_store("dst"))
    listed = _upload_in_parts(src, "k", os.urandom(3 * PART + 5), PART)
    with pytest.raises(StorageError) as err:
        copy_object(src, dst, listed, "copy", LIMITS)  # type: ignore[arg-type]
    assert err.value.kind is ErrorKind.CHECKSUM_MISMATCH


def test_a_layout_the_destination_cannot_copy_in_is_streamed_and_proven() -> None:
    """A server copy made whole or in other parts would prove nothing of the bytes (its ETag
    is its own): the object is streamed instead, the bytes read cut in the source's parts."""
    src = _store("src")
    dst = MemoryStore(MemoryBackend("dst", account="acct"), min_part_size=128 * KiB)
    data = os.urandom(3 * PART + 5)
    listed = _upload_in_parts(src, "k", data, PART)
    result = copy_object(src, dst, listed, "copy", LIMITS)
    assert (result.method, result.verified_by) == ("stream_multipart", "etag")
    assert result.checksum == f"etag:{listed.etag}"
    assert dst.backend.calls["copy_part"] == 0 and dst.backend.calls["copy_from"] == 0
    assert dst.get_bytes("copy", max_size=1 << 20) == data


class CorruptingReads:
    """A source whose reads give other bytes than it holds (a faulty wire or cache)."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def open(self, key: str, **kwargs: object) -> Iterator[bytes]:
        first = True
        for chunk in self.inner.open(key, **kwargs):  # type: ignore[arg-type]
            yield _flip(chunk) if first else chunk
            first = False


# Below the multipart threshold: one PUT of the bytes read.
SINGLE = CopyLimits(multipart_threshold=1 << 30, part_size=96 * KiB, max_single_copy_size=1 << 30)


@pytest.mark.parametrize(
    "limits",
    [
        SINGLE,
        # upload parts of the source's own size
        CopyLimits(multipart_threshold=100 * KiB, part_size=PART, max_single_copy_size=1 << 30),
        # upload parts of another size (the destination takes none of the source's): the
        # digest cuts the bytes in the source's parts
        CopyLimits(multipart_threshold=100 * KiB, part_size=128 * KiB, max_single_copy_size=1),
    ],
    ids=["single", "source-parts", "other-parts"],
)
def test_a_streamed_copy_of_bytes_other_than_the_multipart_source_fails(
    limits: CopyLimits,
) -> None:
    """The bytes read are not the source's: its multipart ETag says so, where only the size
    had been checked."""
    inner = _store("src", account="one")
    listed = _upload_in_parts(inner, "k", os.urandom(3 * PART + 5), PART)
    dst = MemoryStore(MemoryBackend("dst", account="two"), min_part_size=limits.part_size)
    src = CorruptingReads(inner)
    with pytest.raises(StorageError) as err:
        copy_object(src, dst, listed, "copy", limits)  # type: ignore[arg-type]
    assert err.value.kind is ErrorKind.CHECKSUM_MISMATCH
    assert "ETag" in str(err.value)


def test_a_streamed_multipart_copy_in_other_parts_is_proven_by_the_source_etag() -> None:
    src = _store("src", account="one")
    # Takes no part of the source's size: uploaded in parts of its own.
    dst = MemoryStore(MemoryBackend("dst", account="two"), min_part_size=128 * KiB)
    data = os.urandom(5 * PART + 5)
    listed = _upload_in_parts(src, "k", data, PART)
    result = copy_object(
        src,
        dst,
        listed,
        "copy",
        CopyLimits(multipart_threshold=100 * KiB, part_size=96 * KiB, max_single_copy_size=1),
    )
    assert (result.method, result.verified_by) == ("stream_multipart", "etag")
    assert dst.head("copy").etag != listed.etag  # uploaded in parts of its own
    assert dst.get_bytes("copy", max_size=1 << 20) == data


def test_a_large_copy_within_a_store_that_copies_any_size_whole_keeps_its_md5() -> None:
    """Above the configured single-copy size, a copy in parts (Azure's Put Block From URL)
    would be checked by its size alone; a destination that copies any size in one request
    (Azure's Copy Blob, which keeps Content-MD5) copies it whole, proven by MD5."""
    src = _store("src")
    dst = MemoryStore(
        MemoryBackend("dst", account="acct"), min_part_size=32 * KiB, max_single_copy_size=None
    )
    data = os.urandom(3 * PART + 5)
    listed = src.put("k", data)
    small = CopyLimits(multipart_threshold=100 * KiB, part_size=PART, max_single_copy_size=PART)
    result = copy_object(src, dst, listed, "copy", small)
    assert (result.method, result.verified_by) == ("server", "md5")
    assert dst.backend.calls["copy_part"] == 0
    assert dst.get_bytes("copy", max_size=1 << 20) == data


@pytest.mark.parametrize(
    ("limits", "method"),
    [(LIMITS, "stream_multipart"), (SINGLE, "stream")],
    ids=["in-its-parts", "one-put"],
)
def test_a_streamed_copy_of_a_multipart_source_is_proven_by_its_etag(
    limits: CopyLimits, method: str
) -> None:
    """Uploaded in the source's parts, or put whole (the bytes read cut in its parts)."""
    src, dst = _store("src", account="one"), _store("dst", account="two")
    data = os.urandom(3 * PART + 5)
    listed = _upload_in_parts(src, "k", data, PART)
    result = copy_object(src, dst, listed, "copy", limits)
    assert (result.method, result.verified_by) == (method, "etag")
    assert result.checksum == f"etag:{listed.etag}"
    assert dst.get_bytes("copy", max_size=1 << 20) == data


def test_a_streamed_multipart_copy_whose_stored_parts_differ_fails() -> None:
    src, dst = _store("src", account="one"), CorruptingParts(_store("dst", account="two"))
    data = os.urandom(3 * PART + 5)
    listed = src.put("k", data)  # states its MD5: the bytes read are checked against it
    with pytest.raises(StorageError) as err:
        copy_object(src, dst, listed, "copy", LIMITS)  # type: ignore[arg-type]
    assert err.value.kind is ErrorKind.CHECKSUM_MISMATCH
