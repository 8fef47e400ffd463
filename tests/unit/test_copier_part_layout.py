"""A multipart source's copy proven by its own multipart ETag: copied (or streamed) in the
source's part layout, the copy's ETag is the source's only when its bytes are."""

from __future__ import annotations

import hashlib
import os

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

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
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


def test_a_layout_the_destination_cannot_take_is_copied_as_before() -> None:
    src = _store("src")
    dst = MemoryStore(MemoryBackend("dst", account="acct"), min_part_size=128 * KiB)
    listed = _upload_in_parts(src, "k", os.urandom(3 * PART + 5), PART)
    result = copy_object(src, dst, listed, "copy", LIMITS)
    assert result.verified_by == "size"  # no proof to be had: said so, not claimed
    assert dst.backend.calls["copy_part"] == 0


def test_a_streamed_copy_of_a_multipart_source_reads_it_in_its_parts() -> None:
    src, dst = _store("src", account="one"), _store("dst", account="two")
    data = os.urandom(3 * PART + 5)
    listed = _upload_in_parts(src, "k", data, PART)
    result = copy_object(src, dst, listed, "copy", LIMITS)
    assert (result.method, result.verified_by) == ("stream_multipart", "etag")
    assert result.checksum == f"etag:{listed.etag}"
    assert dst.head("copy").etag == listed.etag
    assert dst.get_bytes("copy", max_size=1 << 20) == data


def test_a_streamed_multipart_copy_whose_stored_parts_differ_fails() -> None:
    src, dst = _store("src", account="one"), CorruptingParts(_store("dst", account="two"))
    data = os.urandom(3 * PART + 5)
    listed = src.put("k", data)  # states its MD5: the bytes read are checked against it
    with pytest.raises(StorageError) as err:
        copy_object(src, dst, listed, "copy", LIMITS)  # type: ignore[arg-type]
    assert err.value.kind is ErrorKind.CHECKSUM_MISMATCH
