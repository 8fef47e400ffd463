"""A streamed copy's parts on their way to the destination: each part is hashed and sent on a
thread of its own while the copy reads the next, and all the streamed copies of a worker
process together hold at most `Settings.multipart_parts_in_flight` parts in memory.

A part takes a slot before its first byte is read and gives it back once it is uploaded (or
given up), so the bound holds whatever the copy concurrency: memory is about parts in
flight × part size on top of the process, and one setting is all it takes to change it. The
part's MD5 is computed once, on the upload's thread (hashlib lets go of the GIL), and handed
to the store as the Content-MD5 the service checks the bytes against."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial

from importer.copy_checks import Requests
from storage_adapters.base import ObjectStore, UploadedPart


class PartSlots:
    """The parts one worker process's streamed copies may hold at once, all copies together,
    and the threads their uploads run on (one per slot, made on first use in the process
    that uses them: a pool made before a fork would not survive it)."""

    def __init__(self, parts_in_flight: int) -> None:
        if parts_in_flight < 1:
            raise ValueError("parts_in_flight must be at least 1")
        self.limit = parts_in_flight
        self._lock = threading.Lock()
        self._pid = -1
        self._free = threading.BoundedSemaphore(parts_in_flight)
        self._pool: ThreadPoolExecutor | None = None

    def _here(self) -> tuple[threading.BoundedSemaphore, ThreadPoolExecutor]:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._free = threading.BoundedSemaphore(self.limit)
                self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="bayport-part")
            return self._free, self._pool

    def take(self) -> None:
        """Wait for a free slot: the caller may now read one part into memory."""
        self._here()[0].acquire()

    def give_back(self) -> None:
        self._here()[0].release()

    def submit(self, upload: partial[UploadedPart]) -> Future[UploadedPart]:
        return self._here()[1].submit(upload)


class PartUploads:
    """One multipart upload's parts: `reserve()` before reading a part, `send(part)` once it
    is read (parts in order), `finish()` for the uploaded parts in order. Without slots each
    part is uploaded in the caller's thread, one at a time."""

    def __init__(
        self,
        call: Requests,
        dst: ObjectStore,
        key: str,
        upload_id: str,
        slots: PartSlots | None,
    ) -> None:
        self._call = call
        self._dst = dst
        self._key = key
        self._upload_id = upload_id
        self._slots = slots
        self._reserved = False
        self._futures: list[Future[UploadedPart]] = []
        self._done: list[UploadedPart] = []
        self._md5s: dict[int, str] = {}
        self.count = 0

    def reserve(self) -> None:
        """Hold a slot for the next part (waiting for one); raises at once the error of a
        part already given up, so a failed copy stops reading."""
        self._raise_failed()
        if self._slots is not None and not self._reserved:
            self._slots.take()
            self._reserved = True

    def send(self, part: bytes) -> None:
        """Upload the next part, on the slot reserved for it."""
        self.count += 1
        number = self.count
        if self._slots is None:
            self._done.append(self._upload(number, part))
            return
        self.reserve()
        self._reserved = False  # the slot goes with the part, given back when it is sent
        try:
            self._futures.append(self._slots.submit(partial(self._upload_on_slot, number, part)))
        except BaseException:
            self._slots.give_back()
            raise

    def finish(self) -> tuple[list[UploadedPart], list[str]]:
        """Every part uploaded, in order, and each one's MD5 as sent; the first failure is
        raised once all have ended."""
        self.release()
        wait(self._futures)
        self._raise_failed()
        parts = sorted(self._done + [f.result() for f in self._futures], key=lambda p: p.number)
        return parts, [self._md5s[p.number] for p in parts]

    def cancel(self) -> None:
        """Give up: parts not begun are dropped, the others awaited (so none is still being
        sent when the upload is aborted), and the reserved slot given back."""
        for future in self._futures:
            if future.cancel():  # never ran: the slot it took is given back here
                assert self._slots is not None
                self._slots.give_back()
        wait(self._futures)
        self.release()

    def release(self) -> None:
        """Give back the slot reserved for a part that was never read (the end came first)."""
        if self._reserved and self._slots is not None:
            self._reserved = False
            self._slots.give_back()

    def _raise_failed(self) -> None:
        for future in self._futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]

    def _upload_on_slot(self, number: int, part: bytes) -> UploadedPart:
        try:
            return self._upload(number, part)
        finally:
            assert self._slots is not None
            self._slots.give_back()

    def _upload(self, number: int, part: bytes) -> UploadedPart:
        md5 = hashlib.md5(part, usedforsecurity=False).digest()
        self._md5s[number] = md5.hex()
        upload = partial(self._dst.upload_part, self._key, self._upload_id, number, part, md5=md5)
        return self._call(upload)
