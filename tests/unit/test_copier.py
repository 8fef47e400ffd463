"""The copier on memory and local stores: which path it takes, what it verifies, how much
memory a large streamed copy holds."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from importer.copier import CopyLimits, copy_object
from storage_adapters.base import ObjectInfo, ObjectStore, UploadedPart
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.local import LocalStore
from storage_adapters.memory import MemoryBackend, MemoryStore

MiB = 1024 * 1024
LIMITS = CopyLimits(multipart_threshold=5 * MiB, part_size=5 * MiB, max_single_copy_size=5 * MiB)


class Recording:
    """Wraps a store (our own port, not an SDK) and records the sizes of what passes."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.part_sizes: list[int] = []
        self.chunk_sizes: list[int] = []
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.inner, name)

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        self.calls.append("upload_part")
        self.part_sizes.append(len(data))
        return self.inner.upload_part(key, upload_id, number, data)

    def open(self, key: str, *, chunk_size: int = MiB) -> Iterator[bytes]:
        self.calls.append("open")
        for chunk in self.inner.open(key, chunk_size=chunk_size):
            self.chunk_sizes.append(len(chunk))
            yield chunk


def _mem(name: str) -> MemoryStore:
    return MemoryStore(MemoryBackend(name))


def test_same_account_copies_server_side(tmp_path: Path) -> None:
    backend = MemoryBackend("b", account="acct")
    src, dst = MemoryStore(backend), MemoryStore(MemoryBackend("c", account="acct"))
    info = src.put("a.png", b"png")
    result = copy_object(src, dst, info, "x/a.png", LIMITS)
    assert (result.method, result.checksum) == ("server", f"md5:{hashlib.md5(b'png').hexdigest()}")


def test_large_streamed_copy_holds_one_part_at_a_time(tmp_path: Path) -> None:
    src = Recording(_mem("src"))
    data = os.urandom(17 * MiB + 3)
    info = src.inner.put("big.bin", data)
    (tmp_path / "bucket").mkdir()
    dst = Recording(LocalStore(tmp_path / "bucket"))
    result = copy_object(src, dst, info, "big.bin", LIMITS)  # type: ignore[arg-type]
    assert result.method == "stream_multipart"
    assert dst.part_sizes == [5 * MiB, 5 * MiB, 5 * MiB, 2 * MiB + 3]
    assert max(src.chunk_sizes) <= MiB
    assert (tmp_path / "bucket" / "big.bin").read_bytes() == data
    assert result.checksum == f"md5:{hashlib.md5(data).hexdigest()}"


def test_bytes_that_differ_from_the_sources_md5_are_caught(tmp_path: Path) -> None:
    src, dst = _mem("s"), _mem("d")
    info = src.put("a", b"original")
    lying = ObjectInfo(key="a", size=info.size, md5=hashlib.md5(b"differen").hexdigest())
    with pytest.raises(StorageError) as err:
        copy_object(src, dst, lying, "a", LIMITS)
    assert err.value.kind is ErrorKind.CHECKSUM_MISMATCH and not err.value.transient
    with pytest.raises(StorageError):
        dst.head("a")  # nothing was written


def test_a_short_read_is_caught(tmp_path: Path) -> None:
    src, dst = _mem("s"), _mem("d")
    src.put("a", b"1234")
    with pytest.raises(StorageError) as err:
        listed = ObjectInfo(key="a", size=5, md5=hashlib.md5(b"12345").hexdigest())
        copy_object(src, dst, listed, "a", LIMITS)
    assert err.value.kind is ErrorKind.CHECKSUM_MISMATCH and "read 4 bytes" in str(err.value)


def test_crc64_is_checked_when_the_source_states_one() -> None:
    src, dst = _mem("s"), _mem("d")
    src.put("a", b"content")
    bad = ObjectInfo(key="a", size=7, crc64="12345")
    with pytest.raises(StorageError, match="CRC-64"):
        copy_object(src, dst, bad, "a", LIMITS)


def test_a_store_without_part_copies_falls_back_to_streaming() -> None:
    backend = MemoryBackend("big", account="acct")
    src = MemoryStore(backend, max_single_copy_size=5 * MiB)
    dst = MemoryStore(MemoryBackend("dst", account="acct"), max_single_copy_size=5 * MiB)
    backend_dst = dst.backend
    data = os.urandom(6 * MiB)
    info = src.put("big", data)
    backend_dst.fail_next(
        "copy_part", StorageError(ErrorKind.UNSUPPORTED, "UploadPartCopy is not implemented")
    )
    result = copy_object(src, dst, info, "big", LIMITS)
    assert result.method == "stream_multipart"
    assert dst.get_bytes("big", max_size=7 * MiB) == data


def test_above_the_single_copy_limit_parts_are_copied_server_side() -> None:
    src = MemoryStore(MemoryBackend("big2", account="acct"), max_single_copy_size=5 * MiB)
    dst = MemoryStore(MemoryBackend("dst2", account="acct"), max_single_copy_size=5 * MiB)
    data = os.urandom(11 * MiB)
    info = src.put("big", data)
    result = copy_object(src, dst, info, "big", LIMITS)
    assert result.method == "server_multipart"
    assert dst.get_bytes("big", max_size=12 * MiB) == data


def test_parts_grow_when_an_object_would_need_too_many() -> None:
    from importer.copier import part_size_for

    dst = _mem("parts")
    assert part_size_for(dst, 10 * MiB, 5 * MiB) == 5 * MiB
    huge = 200 * 1024 * MiB  # 200 GiB: 5 MiB parts would be 40,960 of them
    size = part_size_for(dst, huge, 5 * MiB)
    assert -(-huge // size) <= dst.capabilities.max_parts
