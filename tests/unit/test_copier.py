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
from storage_adapters.retry import RetryPolicy

MiB = 1024 * 1024
LIMITS = CopyLimits(multipart_threshold=5 * MiB, part_size=5 * MiB, max_single_copy_size=5 * MiB)


class Recording:
    """Wraps a store (our own port, not an SDK) and records the sizes of what passes."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.part_sizes: list[int] = []
        self.chunk_sizes: list[int] = []
        self.calls: list[str] = []
        self.offsets: list[int] = []  # where each read began

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.inner, name)

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        self.calls.append("upload_part")
        self.part_sizes.append(len(data))
        return self.inner.upload_part(key, upload_id, number, data, md5=md5)

    def open(
        self, key: str, *, chunk_size: int = MiB, offset: int = 0, etag: str | None = None
    ) -> Iterator[bytes]:
        self.calls.append("open")
        self.offsets.append(offset)
        for chunk in self.inner.open(key, chunk_size=chunk_size, offset=offset, etag=etag):
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
    # Each part read in one chunk: it is sent as read, with no second copy made to join it.
    assert src.chunk_sizes == dst.part_sizes
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


# -- faults: each request retried alone ----------------------------------------------------------


def _reset(key: str = "") -> StorageError:
    return StorageError(ErrorKind.UNAVAILABLE, "connection reset by peer", key=key)


class BreakingReads:
    """A store whose reads break: the n-th read opened (1-based) raises a transient error
    after yielding `breaks[n]` chunks, as a connection reset mid-answer does."""

    def __init__(self, inner: MemoryStore, breaks: dict[int, int]) -> None:
        self.inner = inner
        self.breaks = breaks
        self.opens: list[tuple[int, str | None]] = []
        self.bytes_read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open(
        self, key: str, *, chunk_size: int = MiB, offset: int = 0, etag: str | None = None
    ) -> Iterator[bytes]:
        self.opens.append((offset, etag))
        after = self.breaks.get(len(self.opens))
        chunks = self.inner.open(key, chunk_size=chunk_size, offset=offset, etag=etag)
        for n, chunk in enumerate(chunks):
            if n == after:
                raise _reset(key)
            self.bytes_read += len(chunk)
            yield chunk


class LostAnswers:
    """A store whose next `complete_multipart` completes the upload, then loses its answer."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def complete_multipart(self, *args: Any, **kwargs: Any) -> ObjectInfo:
        info = self.inner.complete_multipart(*args, **kwargs)
        if not self.lost:
            self.lost += 1
            raise _reset()
        return info


class Counted:
    """A retry policy that does not wait, and what its observer heard."""

    def __init__(self, attempts: int = 6) -> None:
        self.kinds: list[str] = []
        self.policy = RetryPolicy(
            attempts=attempts,
            initial_wait=0,
            max_wait=0,
            observer=lambda error, _attempt: self.kinds.append(error.kind.value),
        )


def test_a_streamed_multipart_copy_survives_faults_on_parts_and_mid_read() -> None:
    data = os.urandom(17 * MiB + 3)
    src = BreakingReads(_mem("flaky-src"), breaks={1: 2, 2: 0, 3: 1})  # after chunks of a part
    info = src.inner.put("big.bin", data)
    dst = _mem("flaky-dst")
    dst.backend.fail_next("upload_part", _reset(), times=2)
    dst.backend.fail_next("create_multipart", StorageError(ErrorKind.RATE_LIMITED, "SlowDown"))
    retries = Counted()
    heard: list[int] = []

    result = copy_object(
        src,  # type: ignore[arg-type]
        dst,
        info,
        "big.bin",
        LIMITS,
        retry=retries.policy,
        on_retry=lambda _error, attempt: heard.append(attempt),
    )

    assert result.method == "stream_multipart"
    assert dst.get_bytes("big.bin", max_size=18 * MiB) == data
    assert result.checksum == f"md5:{hashlib.md5(data).hexdigest()}"
    # Each break resumed where it broke, pinned to the version listed; no byte read twice.
    assert src.opens == [
        (0, info.etag),
        (10 * MiB, info.etag),
        (10 * MiB, info.etag),
        (15 * MiB, info.etag),
    ]
    assert src.bytes_read == len(data)
    # 3 broken reads + 2 failed parts + 1 SlowDown, each retried alone and counted once.
    assert sorted(retries.kinds) == ["rate_limited"] + ["unavailable"] * 5
    assert len(heard) == 6
    assert dst.backend.calls["upload_part"] == 4 + 2
    assert dst.backend.calls["create_multipart"] == 2
    assert not dst.backend._uploads  # completed, nothing left behind


def test_a_server_multipart_copy_retries_each_part_copy() -> None:
    src = MemoryStore(MemoryBackend("s-big", account="acct"), max_single_copy_size=5 * MiB)
    dst = MemoryStore(MemoryBackend("d-big", account="acct"), max_single_copy_size=5 * MiB)
    data = os.urandom(11 * MiB)
    info = src.put("big", data)
    dst.backend.fail_next("copy_part", _reset(), times=3)
    retries = Counted()
    result = copy_object(src, dst, info, "big", LIMITS, retry=retries.policy)
    assert result.method == "server_multipart"
    assert dst.get_bytes("big", max_size=12 * MiB) == data
    assert retries.kinds == ["unavailable"] * 3
    assert dst.backend.calls["copy_part"] == 3 + 3
    assert dst.backend.calls["create_multipart"] == 1


def test_a_complete_whose_answer_was_lost_is_checked_by_head() -> None:
    data = os.urandom(11 * MiB)
    src = _mem("lost-src")
    info = src.put("big", data)
    dst = LostAnswers(_mem("lost-dst"))
    retries = Counted()
    result = copy_object(src, dst, info, "big", LIMITS, retry=retries.policy)  # type: ignore[arg-type]
    assert result.method == "stream_multipart"
    assert dst.lost == 1 and retries.kinds == ["unavailable"]
    # The retried complete found no upload (it had completed): the HEAD vouched for it.
    assert dst.inner.backend.calls["complete_multipart"] == 2
    assert dst.inner.get_bytes("big", max_size=12 * MiB) == data


def test_a_lost_complete_is_not_taken_for_someone_elses_object() -> None:
    """No upload on the retry, and the object there is not the one assembled: the error."""
    src, dst = _mem("other-src"), LostAnswers(_mem("other-dst"))
    info = src.put("big", os.urandom(11 * MiB))
    real_complete = dst.inner.complete_multipart

    def complete_then_overwrite(*args: Any, **kwargs: Any) -> ObjectInfo:
        landed = real_complete(*args, **kwargs)
        dst.inner.put("big", b"someone else's object")
        return landed

    dst.inner.complete_multipart = complete_then_overwrite  # type: ignore[method-assign]
    with pytest.raises(StorageError) as err:
        copy_object(src, dst, info, "big", LIMITS, retry=Counted().policy)  # type: ignore[arg-type]
    assert err.value.kind is ErrorKind.NOT_FOUND


def test_a_source_changed_during_a_resumed_read_is_a_permanent_error() -> None:
    src = BreakingReads(_mem("changing-src"), breaks={1: 1})
    info = src.inner.put("big.bin", os.urandom(12 * MiB))
    dst = _mem("changing-dst")
    real_open = src.open

    def open_after_a_change(key: str, **kwargs: Any) -> Iterator[bytes]:
        if src.opens:  # the object is replaced between the break and the resumed read
            src.inner.put("big.bin", os.urandom(12 * MiB))
        return real_open(key, **kwargs)

    src.open = open_after_a_change  # type: ignore[method-assign]
    with pytest.raises(StorageError) as err:
        copy_object(src, dst, info, "big.bin", LIMITS, retry=Counted().policy)  # type: ignore[arg-type]
    assert err.value.kind is ErrorKind.PRECONDITION_FAILED and not err.value.transient
    assert err.value.key == "big.bin" and "changed" in str(err.value)
    assert len(src.opens) == 2  # one resumed read, refused; not retried
    assert not dst.backend._uploads  # the upload was aborted
    with pytest.raises(StorageError):
        dst.head("big.bin")


def test_a_part_that_keeps_failing_gives_up_and_aborts_the_upload() -> None:
    src, dst = _mem("give-up-src"), _mem("give-up-dst")
    info = src.put("big", os.urandom(11 * MiB))
    dst.backend.fail_next("upload_part", _reset(), times=100)
    retries = Counted(attempts=4)
    with pytest.raises(StorageError) as err:
        copy_object(src, dst, info, "big", LIMITS, retry=retries.policy)
    assert err.value.kind is ErrorKind.UNAVAILABLE and err.value.transient
    assert dst.backend.calls["upload_part"] == 4  # the first part, tried 4 times in all
    assert retries.kinds == ["unavailable"] * 3
    assert dst.backend.calls["abort_multipart"] == 1
    assert not dst.backend._uploads


def test_a_streamed_single_copy_retries_its_read_and_its_write_apart() -> None:
    src = BreakingReads(_mem("single-src"), breaks={1: 1})
    data = os.urandom(3 * MiB + 5)
    info = src.inner.put("a.bin", data)
    dst = _mem("single-dst")
    dst.backend.fail_next("put", _reset())
    retries = Counted()
    result = copy_object(src, dst, info, "a.bin", LIMITS, retry=retries.policy)  # type: ignore[arg-type]
    assert result.method == "stream"
    assert dst.get_bytes("a.bin", max_size=4 * MiB) == data
    assert src.opens == [(0, info.etag), (MiB, info.etag)]  # one read, resumed once
    assert src.bytes_read == len(data)
    assert dst.backend.calls["put"] == 2
    assert retries.kinds == ["unavailable"] * 2


def test_a_streamed_copy_computes_crc64_only_where_a_side_states_one() -> None:
    """Each checksum is a pass over every byte: CRC-64 only for a source that lists one
    (OSS) or a destination that answers writes with one (`reports_crc64`)."""
    from dataclasses import replace

    from importer.stream_digest import Digest as _Digest

    plain = MemoryStore(MemoryBackend())
    reporting = MemoryStore(MemoryBackend())
    reporting.capabilities = replace(plain.capabilities, reports_crc64=True)
    listed = ObjectInfo(key="k", size=3, md5=hashlib.md5(b"abc").hexdigest())
    oss_listed = replace(listed, crc64="12345")
    assert _Digest.for_copy(listed, plain).crc64 is None
    for source, dst in ((oss_listed, plain), (listed, reporting)):
        digest = _Digest.for_copy(source, dst)
        digest.update(b"abc")
        assert digest.crc64 is not None
        with pytest.raises(StorageError) as caught:  # a CRC that differs is still caught
            digest.check("k", replace(source, crc64="1"), "the source")
        assert caught.value.kind is ErrorKind.CHECKSUM_MISMATCH
