"""Streamed multipart copies with parts in flight (importer/part_uploads.py): a part uploads
while the next is read, every copy of the process together holds at most the setting's
parts, and a failure stops the reading, waits for the parts on their way and aborts."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from importer.copier import CopyLimits, copy_object
from importer.part_uploads import PartSlots
from storage_adapters.base import UploadedPart
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.memory import MemoryBackend, MemoryStore
from storage_adapters.retry import RetryPolicy

MiB = 1024 * 1024
PART = 5 * MiB


def _mem(name: str) -> MemoryStore:
    return MemoryStore(MemoryBackend(f"parts-{name}-{os.urandom(4).hex()}"))


def _limits(slots: PartSlots | None) -> CopyLimits:
    return CopyLimits(
        multipart_threshold=PART, part_size=PART, max_single_copy_size=PART, slots=slots
    )


class Held:
    """Bytes read from the source and not yet uploaded, across all copies: what the
    process holds of parts; its peak is the memory the parts took."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.uploading = 0
        self.peak_uploading = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.now += n
            self.peak = max(self.peak, self.now)


class Reading:
    def __init__(self, inner: MemoryStore, held: Held) -> None:
        self.inner, self.held = inner, held

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open(self, key: str, **kwargs: Any) -> Iterator[bytes]:
        for chunk in self.inner.open(key, **kwargs):
            self.held.add(len(chunk))
            yield chunk


class Uploading:
    """Each part takes `delay` seconds to upload; the bytes count as held until it is done."""

    def __init__(self, inner: MemoryStore, held: Held, delay: float = 0.02) -> None:
        self.inner, self.held, self.delay = inner, held, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        with self.held.lock:
            self.held.uploading += 1
            self.held.peak_uploading = max(self.held.peak_uploading, self.held.uploading)
        try:
            time.sleep(self.delay)
            return self.inner.upload_part(key, upload_id, number, data, md5=md5)
        finally:
            with self.held.lock:
                self.held.uploading -= 1
            self.held.add(-len(data))


def test_the_parts_all_copies_hold_stay_within_the_setting() -> None:
    held = Held()
    src, dst = Reading(_mem("src"), held), Uploading(_mem("dst"), held)
    blobs = {f"big-{i}.bin": os.urandom(6 * PART + 123) for i in range(4)}
    infos = [src.inner.put(key, data) for key, data in blobs.items()]
    slots = PartSlots(3)

    with ThreadPoolExecutor(4) as pool:  # four copies at once, as a shard's threads make them
        results = list(
            pool.map(
                lambda info: copy_object(src, dst, info, info.key, _limits(slots)),  # type: ignore[arg-type]
                infos,
            )
        )

    for info, result in zip(infos, results, strict=True):
        assert result.method == "stream_multipart"
        data = blobs[info.key]
        assert dst.inner.get_bytes(info.key, max_size=len(data)) == data
        assert result.checksum == f"md5:{hashlib.md5(data).hexdigest()}"
    # Read but not yet uploaded, all four copies together: never more than 3 parts.
    assert held.peak <= 3 * PART
    assert held.peak_uploading == 3  # and the slots were used: uploads overlapped
    for _ in range(3):  # every slot was given back
        slots.take()


def test_a_part_uploads_while_the_next_one_is_read() -> None:
    """With slots, part 1's upload waits until part 2's first bytes were read: a copy that
    read and sent one part at a time would never get there."""
    src, dst = _mem("overlap-src"), _mem("overlap-dst")
    info = src.put("big.bin", os.urandom(2 * PART))
    next_part_read = threading.Event()
    read = 0

    real_open = src.open

    def open_counting(key: str, **kwargs: Any) -> Iterator[bytes]:
        nonlocal read
        for chunk in real_open(key, **kwargs):
            read += len(chunk)
            if read > PART:
                next_part_read.set()
            yield chunk

    real_upload = dst.upload_part

    def upload_waiting(
        key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        if number == 1:
            assert next_part_read.wait(5), "part 2 was not read while part 1 was on its way"
        return real_upload(key, upload_id, number, data, md5=md5)

    src.open = open_counting  # type: ignore[method-assign]
    dst.upload_part = upload_waiting  # type: ignore[method-assign]
    other = Reading(src, Held())  # another provider's store: no server-side copy
    result = copy_object(other, dst, info, "big.bin", _limits(PartSlots(2)))  # type: ignore[arg-type]
    assert result.method == "stream_multipart"
    assert dst.get_bytes("big.bin", max_size=2 * PART) == src.get_bytes(
        "big.bin", max_size=2 * PART
    )


def test_a_failed_part_stops_the_copy_waits_for_the_others_and_aborts() -> None:
    held = Held()
    src, dst = Reading(_mem("fail-src"), held), Uploading(_mem("fail-dst"), held, delay=0.01)
    info = src.inner.put("big.bin", os.urandom(20 * PART))
    dst.inner.backend.fail_next(
        "upload_part", StorageError(ErrorKind.PERMISSION_DENIED, "AccessDenied"), times=1
    )
    slots = PartSlots(4)
    with pytest.raises(StorageError) as err:
        copy_object(
            src,  # type: ignore[arg-type]
            dst,  # type: ignore[arg-type]
            info,
            "big.bin",
            _limits(slots),
            retry=RetryPolicy(attempts=1),
        )
    assert err.value.kind is ErrorKind.PERMISSION_DENIED
    assert held.uploading == 0  # no part still on its way once the copy gave up
    assert held.now < 20 * PART  # the reading stopped: the object was not read to its end
    assert dst.inner.backend.calls["abort_multipart"] == 1
    assert not dst.inner.backend._uploads
    for _ in range(4):
        slots.take()


def test_slots_are_made_again_in_a_forked_process() -> None:
    """A pool made in the Celery parent would not survive the fork: each process makes its
    own on first use."""
    slots = PartSlots(2)
    first = slots.submit(lambda: os.getpid())  # type: ignore[arg-type]
    assert first.result() == os.getpid()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new pool, and slots of its own
        try:
            slots.take()
            slots.take()
            ok = slots.submit(lambda: 7).result(timeout=5) == 7  # type: ignore[arg-type]
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)


class LateStart(PartSlots):
    """Slots whose uploads wait on one thread that starts only when told: parts given up
    before they began are still waiting when the copy fails."""

    def __init__(self, parts_in_flight: int) -> None:
        super().__init__(parts_in_flight)
        self.go = threading.Event()
        self.pool = ThreadPoolExecutor(1)

    def submit(self, upload: Any) -> Any:
        def later() -> UploadedPart:
            self.go.wait(5)
            return upload()  # type: ignore[no-any-return]

        return self.pool.submit(later)


def test_parts_given_up_before_they_began_give_their_slots_back() -> None:
    from importer.copy_checks import Requests
    from importer.part_uploads import PartUploads

    dst = _mem("late-dst")
    upload_id = dst.create_multipart("k")
    slots = LateStart(4)
    uploads = PartUploads(Requests(RetryPolicy(attempts=1), None), dst, "k", upload_id, slots)
    for _ in range(3):
        uploads.reserve()
        uploads.send(os.urandom(1024))
    uploads.reserve()  # a fourth slot, for a part never read
    threading.Timer(0.2, slots.go.set).start()
    uploads.cancel()  # the first part waits on the thread; the two behind it never begin
    slots.pool.shutdown(wait=True)
    for _ in range(4):  # all four back: none lost with the parts that never ran
        assert slots._here()[0].acquire(timeout=1)
