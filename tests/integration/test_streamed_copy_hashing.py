"""A streamed copy into Azure (Azurite) hashes each byte twice, no more: once for the whole
object's MD5 (checked against the source's), once for its part's Content-MD5, which the
service checks. The store used to hash each block again, and the SDK once more."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from typing import Any

import pytest

from importer.copier import CopyLimits, copy_object
from importer.part_uploads import PartSlots
from storage_adapters.memory import MemoryBackend, MemoryStore
from tests.azure_fixtures import azure_store, make_container

pytest_plugins = ["tests.azure_fixtures"]

MiB = 1024 * 1024


class CountedMd5:
    """hashlib.md5 that counts the bytes it is given, in every module that calls it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.bytes = 0
        self.lock = threading.Lock()

    def __call__(self, data: bytes = b"", **kwargs: Any) -> Any:
        counter = self
        inner = self.real(data, **kwargs)
        counter.count(len(data))

        class Hash:
            def update(self, more: bytes) -> None:
                counter.count(len(more))
                inner.update(more)

            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

        return Hash()

    def count(self, n: int) -> None:
        with self.lock:
            self.bytes += n


class OtherProvider:
    """The source as a store of another provider (no server-side copy into Azure)."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("slots", [None, PartSlots(4)], ids=["one-part-at-a-time", "in-flight"])
def test_a_streamed_copy_into_azure_hashes_each_byte_twice_at_most(
    azurite: dict[str, str], monkeypatch: pytest.MonkeyPatch, slots: PartSlots | None
) -> None:
    container = f"hash-{uuid.uuid4().hex[:10]}"
    make_container(azurite, container)
    dst = azure_store(azurite, container)
    src = MemoryStore(MemoryBackend(f"hash-src-{uuid.uuid4().hex}"))
    data = os.urandom(12 * MiB + 5)
    info = src.put("big.bin", data)
    limits = CopyLimits(
        multipart_threshold=5 * MiB, part_size=5 * MiB, max_single_copy_size=5 * MiB, slots=slots
    )
    counted = CountedMd5(hashlib.md5)
    monkeypatch.setattr(hashlib, "md5", counted)

    result = copy_object(OtherProvider(src), dst, info, "big.bin", limits)  # type: ignore[arg-type]

    monkeypatch.undo()
    assert result.method == "stream_multipart"
    assert result.checksum == f"md5:{hashlib.md5(data).hexdigest()}"
    assert b"".join(dst.open("big.bin")) == data
    assert counted.bytes <= 2 * len(data) + MiB  # (+ small requests' own hashes)
