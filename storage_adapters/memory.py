"""An in-process object store: the fake that unit tests and benchmarks use in place of a bucket."""

from __future__ import annotations

import hashlib
import threading
import uuid
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from storage_adapters.base import (
    Blob,
    Capabilities,
    ListPage,
    ObjectInfo,
    ObjectStore,
    StorageSpec,
    UploadedPart,
)
from storage_adapters.common import check_part_md5, normalize_root, page_limit
from storage_adapters.errors import ErrorKind, StorageError, changed, not_found

MiB = 1024 * 1024
GiB = 1024 * MiB
# The account of every named backend of this process (what `open_store` hands out): like one
# set of S3 credentials, it may copy between all its buckets.
PROCESS_ACCOUNT = "memory"

_named_backends: dict[str, MemoryBackend] = {}
_named_lock = threading.Lock()


class MemoryBackend:
    """The contents of one bucket, shared by every MemoryStore opened on it.

    `exists = False` makes the bucket vanish (every call is NOT_FOUND), and `fail_next` queues
    errors for a method to raise: the two failures unit tests of the import logic need.
    """

    def __init__(self, name: str = "memory", *, account: str | None = None) -> None:
        self.name = name
        # Stores opened on one backend share its account unless told otherwise.
        self.account = account or uuid.uuid4().hex
        self.exists = True
        self.lock = threading.RLock()
        self._objects: dict[str, _Object] = {}
        self._keys = _SortedKeys()
        self._uploads: dict[str, _Upload] = {}
        self._faults: dict[str, list[StorageError]] = {}
        # How often each store method was called (tests count requests with it).
        self.calls: Counter[str] = Counter()

    @classmethod
    def named(cls, name: str) -> MemoryBackend:
        """The process-wide backend called `name`, created on first use."""
        with _named_lock:
            backend = _named_backends.get(name)
            if backend is None:
                backend = _named_backends[name] = cls(name, account=PROCESS_ACCOUNT)
            return backend

    @staticmethod
    def forget_named() -> None:
        """Drop every named backend (test isolation)."""
        with _named_lock:
            _named_backends.clear()

    def fail_next(self, operation: str, error: StorageError, *, times: int = 1) -> None:
        """Make the next `times` calls of the store method `operation` (e.g. "copy_from") on
        this bucket raise `error`; "copy_source" names the read side of a copy from it."""
        with self.lock:
            self._faults.setdefault(operation, []).extend([error] * times)

    def __len__(self) -> int:
        return len(self._objects)

    def _enter(self, operation: str) -> None:
        """Called under the lock by every store method before it acts."""
        if not self.exists:
            raise StorageError(
                ErrorKind.NOT_FOUND, f"bucket {self.name!r} does not exist", status=404
            )
        self.calls[operation] += 1
        queued = self._faults.get(operation)
        if queued:
            raise queued.pop(0)

    def _store(self, key: str, obj: _Object) -> None:
        if key not in self._objects:
            self._keys.add(key)
        self._objects[key] = obj

    def _drop(self, key: str) -> None:
        if self._objects.pop(key, None) is not None:
            self._keys.remove(key)


class MemoryStore:
    """A MemoryBackend seen as an ObjectStore, under an optional key prefix `root`."""

    def __init__(
        self,
        backend: MemoryBackend | None = None,
        *,
        root: str = "",
        account: str | None = None,
        min_part_size: int = 5 * MiB,
        max_single_copy_size: int | None = 5 * GiB,
    ) -> None:
        self.backend = backend if backend is not None else MemoryBackend()
        self._root = normalize_root(root)
        self._account = account or self.backend.account
        # Both limits are knobs so that unit tests can drive multipart paths with small objects.
        self.capabilities = Capabilities(
            lists_uploads=True,
            server_side_copy=True,
            server_side_copy_across_buckets=True,
            max_single_copy_size=max_single_copy_size,
            multipart_copy=True,
            multipart_upload=True,
            min_part_size=min_part_size,
            max_list_page=1000,
        )

    @classmethod
    def from_spec(cls, spec: StorageSpec, **opts: object) -> MemoryStore:
        """spec.bucket names a process-wide backend: two specs with one bucket share data."""
        backend = MemoryBackend.named(spec.bucket or "default")
        return cls(backend, root=spec.root, **opts)  # type: ignore[arg-type]

    @property
    def account(self) -> str:
        return self._account

    @property
    def location(self) -> str:
        return f"memory://{self.backend.name}/{self._root}"

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 1000) -> ListPage:
        limit = page_limit(limit, self.capabilities.max_list_page)
        full_prefix = self._root + prefix
        start, inclusive = full_prefix, True
        if cursor is not None and self._root + cursor >= full_prefix:
            start, inclusive = self._root + cursor, False
        found: list[ObjectInfo] = []
        folders: list[str] = []
        more = False
        with self.backend.lock:
            self.backend._enter("list_page")
            for key in self.backend._keys.iter_from(start, inclusive=inclusive):
                if not key.startswith(full_prefix):
                    break
                if key.endswith("/"):
                    if self.backend._objects[key].data:
                        folders.append(key[len(self._root) :])
                    continue
                if len(found) == limit:
                    more = True
                    break
                found.append(self._info(key, self.backend._objects[key]))
        return ListPage(
            objects=found,
            cursor=found[-1].key if more else None,
            folder_keys_with_data=folders,
        )

    def head(self, key: str) -> ObjectInfo:
        with self.backend.lock:
            self.backend._enter("head")
            return self._info(self._root + key, self._get(key))

    def part_layout(self, key: str) -> tuple[int, int] | None:
        """As S3 tells it (HeadObject of part 1, then of the last): part 1's size and the
        parts count, when the last part is what that layout leaves for it."""
        with self.backend.lock:
            self.backend._enter("part_layout")
            sizes = self._get(key).part_sizes
        if not sizes or sizes[0] <= 0:
            return None
        # S3 tells part 1 and, asked, the last: every part but the last of part 1's size.
        last = sum(sizes) - sizes[0] * (len(sizes) - 1)
        return (sizes[0], len(sizes)) if 0 < last <= sizes[0] else None

    def open(
        self,
        key: str,
        *,
        chunk_size: int = 1024 * 1024,
        offset: int = 0,
        etag: str | None = None,
    ) -> Iterator[bytes]:
        with self.backend.lock:
            self.backend._enter("open")
            obj = self._get(key)
        if etag is not None and obj.etag != etag:
            raise changed(key, etag, obj.etag)
        data = memoryview(obj.data)
        for start in range(offset, len(data), chunk_size):
            yield bytes(data[start : start + chunk_size])

    def get_bytes(self, key: str, *, max_size: int) -> bytes:
        return self.read(key, max_size=max_size).data

    def read(self, key: str, *, max_size: int) -> Blob:
        with self.backend.lock:
            self.backend._enter("get_bytes")
            obj = self._get(key)
            info = self._info(self._root + key, obj)
        if len(obj.data) > max_size:
            raise _too_large(key, len(obj.data), max_size)
        return Blob(data=obj.data, info=info)

    def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
        obj = _Object.of(bytes(data))
        with self.backend.lock:
            self.backend._enter("put")
            self.backend._store(self._root + key, obj)
        return self._info(self._root + key, obj)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        with self.backend.lock:
            self.backend._enter("delete")
            found = self.backend._objects.get(self._root + key)
            if if_match is not None and found is not None and found.etag != if_match:
                raise changed(key, if_match, found.etag)
            self.backend._drop(self._root + key)

    def can_copy_from(self, source: ObjectStore) -> bool:
        return isinstance(source, MemoryStore) and source.account == self.account

    def copy_from(
        self,
        source: ObjectStore,
        src_key: str,
        dst_key: str,
        *,
        size: int | None = None,
        etag: str | None = None,
    ) -> ObjectInfo:
        src = self._copy_source(source, dst_key)
        with src.backend.lock:
            src.backend._enter("copy_source")
            obj = src._get(src_key)
            if etag is not None and obj.etag != etag:
                raise changed(src_key, etag, obj.etag)
        limit = self.capabilities.max_single_copy_size
        if limit is not None and len(obj.data) > limit:
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"source is larger ({len(obj.data)} bytes) than one copy may take ({limit}); "
                "use a multipart copy",
                key=src_key,
            )
        with self.backend.lock:
            self.backend._enter("copy_from")
            self.backend._store(self._root + dst_key, obj)
        return self._info(self._root + dst_key, obj)

    def create_multipart(self, key: str) -> str:
        upload_id = uuid.uuid4().hex
        with self.backend.lock:
            self.backend._enter("create_multipart")
            self.backend._uploads[upload_id] = _Upload(key=self._root + key)
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        data = bytes(data)
        if md5 is not None:  # the service's check of the Content-MD5 sent
            check_part_md5(key, number, hashlib.md5(data).hexdigest(), md5)
        return self._store_part("upload_part", key, upload_id, number, data)

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
        src = self._copy_source(source, key)
        with src.backend.lock:
            src.backend._enter("copy_source")
            found = src._get(src_key)
            if etag is not None and found.etag != etag:
                raise changed(src_key, etag, found.etag)
            data = found.data
        first, last = byte_range
        if not 0 <= first <= last < len(data):
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED,
                f"byte range {first}-{last} is outside the source ({len(data)} bytes)",
                key=src_key,
                status=416,
            )
        return self._store_part("copy_part", key, upload_id, number, data[first : last + 1])

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        content_md5: str | None = None,
    ) -> ObjectInfo:
        with self.backend.lock:
            self.backend._enter("complete_multipart")
            upload = self._upload(key, upload_id)
            chunks = _assemble(key, upload.parts, parts, self.capabilities.min_part_size)
            digest = hashlib.md5(b"".join(hashlib.md5(c).digest() for c in chunks)).hexdigest()
            obj = _Object(
                data=b"".join(chunks),
                etag=f"{digest}-{len(chunks)}",
                md5=None,
                last_modified=datetime.now(UTC),
                part_sizes=tuple(len(c) for c in chunks),
            )
            self.backend._store(self._root + key, obj)
            del self.backend._uploads[upload_id]
        return self._info(self._root + key, obj)

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        with self.backend.lock:
            self.backend._enter("list_uploads")
            found = [
                (u.key[len(self._root) :], upload_id)
                for upload_id, u in self.backend._uploads.items()
                if u.key.startswith(self._root + prefix)
            ]
        return sorted(found)[:limit]

    def abort_multipart(self, key: str, upload_id: str) -> None:
        with self.backend.lock:
            self.backend._enter("abort_multipart")
            self.backend._uploads.pop(upload_id, None)

    def presign_get(self, key: str, *, expires_in: int) -> str:
        raise StorageError(
            ErrorKind.UNSUPPORTED,
            f"{self.location} is in this process's memory: no URL reaches it",
            key=key,
        )

    # -- private helpers ---------------------------------------------------------------------

    def _get(self, key: str) -> _Object:
        """The object at relative `key`; the caller holds the backend lock."""
        obj = self.backend._objects.get(self._root + key)
        if obj is None or key.endswith("/"):
            raise not_found(key)
        return obj

    def _info(self, full_key: str, obj: _Object) -> ObjectInfo:
        return ObjectInfo(
            key=full_key[len(self._root) :],
            size=len(obj.data),
            etag=obj.etag,
            last_modified=obj.last_modified,
            md5=obj.md5,
        )

    def _copy_source(self, source: ObjectStore, key: str) -> MemoryStore:
        if not isinstance(source, MemoryStore) or not self.can_copy_from(source):
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"no server-side copy from {source.location} to {self.location}",
                key=key,
            )
        return source

    def _upload(self, key: str, upload_id: str) -> _Upload:
        upload = self.backend._uploads.get(upload_id)
        if upload is None or upload.key != self._root + key:
            raise not_found(key, f"no multipart upload {upload_id}")
        return upload

    def _store_part(
        self, operation: str, key: str, upload_id: str, number: int, data: bytes
    ) -> UploadedPart:
        if not 1 <= number <= 10_000:
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED, f"part number {number} is not in 1..10000", key=key
            )
        with self.backend.lock:
            self.backend._enter(operation)
            self._upload(key, upload_id).parts[number] = data
        return UploadedPart(number=number, etag=hashlib.md5(data).hexdigest())


@dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    etag: str
    md5: str | None
    last_modified: datetime
    # The sizes of the parts a multipart upload assembled it from; () for one put.
    part_sizes: tuple[int, ...] = ()

    @classmethod
    def of(cls, data: bytes) -> _Object:
        digest = hashlib.md5(data).hexdigest()
        return cls(data=data, etag=digest, md5=digest, last_modified=datetime.now(UTC))


@dataclass(slots=True)
class _Upload:
    key: str
    parts: dict[int, bytes] = field(default_factory=dict)


class _SortedKeys:
    """Keys in ascending order, kept as a list of short sorted lists (the layout of
    sortedcontainers.SortedList): insert and remove cost O(log n + load), a range scan
    O(log n + page), so listing stays cheap with millions of keys and interleaved writes."""

    _LOAD = 1000
    __slots__ = ("_lists", "_maxes")

    def __init__(self) -> None:
        self._lists: list[list[str]] = []
        self._maxes: list[str] = []

    def add(self, key: str) -> None:
        """Insert `key`, which must not be present."""
        if not self._maxes:
            self._lists.append([key])
            self._maxes.append(key)
            return
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            i -= 1
            self._lists[i].append(key)
            self._maxes[i] = key
        else:
            insort(self._lists[i], key)
        chunk = self._lists[i]
        if len(chunk) > 2 * self._LOAD:
            tail = chunk[self._LOAD :]
            del chunk[self._LOAD :]
            self._lists.insert(i + 1, tail)
            self._maxes[i] = chunk[-1]
            self._maxes.insert(i + 1, tail[-1])

    def remove(self, key: str) -> None:
        """Remove `key`, which must be present."""
        i = bisect_left(self._maxes, key)
        chunk = self._lists[i]
        del chunk[bisect_left(chunk, key)]
        if chunk:
            self._maxes[i] = chunk[-1]
        else:
            del self._lists[i]
            del self._maxes[i]

    def iter_from(self, start: str, *, inclusive: bool) -> Iterator[str]:
        """Keys >= start (inclusive) or > start, ascending; the caller holds the lock."""
        find = bisect_left if inclusive else bisect_right
        i = find(self._maxes, start)
        if i == len(self._lists):
            return
        j = find(self._lists[i], start)
        while i < len(self._lists):
            chunk = self._lists[i]
            while j < len(chunk):
                yield chunk[j]
                j += 1
            i += 1
            j = 0


def _assemble(
    key: str, stored: dict[int, bytes], parts: Sequence[UploadedPart], min_part_size: int
) -> list[bytes]:
    """The parts' bytes in order, checked the way S3 checks a CompleteMultipartUpload."""
    if not parts:
        raise StorageError(ErrorKind.PRECONDITION_FAILED, "no parts to complete", key=key)
    chunks: list[bytes] = []
    previous = 0
    for index, part in enumerate(parts):
        data = stored.get(part.number)
        if part.number <= previous:
            raise StorageError(ErrorKind.PRECONDITION_FAILED, "parts out of order", key=key)
        if data is None or hashlib.md5(data).hexdigest() != part.etag.strip('"'):
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED, f"part {part.number} was not uploaded", key=key
            )
        if index < len(parts) - 1 and len(data) < min_part_size:
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED,
                f"part {part.number} is smaller ({len(data)}) than {min_part_size} bytes",
                key=key,
            )
        chunks.append(data)
        previous = part.number
    return chunks


def _too_large(key: str, size: int, max_size: int) -> StorageError:
    return StorageError(
        ErrorKind.PRECONDITION_FAILED,
        f"object is {size} bytes, more than the {max_size} allowed",
        key=key,
    )
