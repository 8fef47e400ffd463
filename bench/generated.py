"""A listing-only ObjectStore whose keys are generated page by page: a huge bucket in no memory."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence

from storage_adapters.base import (
    Blob,
    Capabilities,
    ListPage,
    ObjectInfo,
    ObjectStore,
    UploadedPart,
)
from storage_adapters.errors import ErrorKind, StorageError, not_found

KEY_PREFIX = "data/images/"
OBJECT_SIZE = 16 * 1024


class GeneratedListing:
    """`count` objects `data/images/{i:08d}.png` of 16 KiB each, ETag an MD5-like hex of i.

    Listing and HEAD work; every other method is UNSUPPORTED (planning never calls them).
    The cursor is the last key of a page, as with S3's StartAfter.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.capabilities = Capabilities(max_list_page=1000)

    @property
    def account(self) -> str:
        return "generated"

    @property
    def location(self) -> str:
        return f"generated://{self.count}/"

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 1000) -> ListPage:
        limit = max(1, min(limit, self.capabilities.max_list_page))
        # Keys sort like their numbers (zero-padded), so a binary search finds the cursor.
        start = 0 if cursor is None else bisect_right(range(self.count), cursor, key=_key)
        found: list[ObjectInfo] = []
        i = bisect_right(range(self.count), prefix, key=_key) if prefix > KEY_PREFIX else start
        i = max(i, start)
        while i < self.count and len(found) <= limit:
            key = _key(i)
            if not key.startswith(prefix):
                break
            found.append(_info(i))
            i += 1
        more = len(found) > limit
        found = found[:limit]
        return ListPage(objects=found, cursor=found[-1].key if more else None)

    def head(self, key: str) -> ObjectInfo:
        number = key.removeprefix(KEY_PREFIX).removesuffix(".png")
        if not (key.startswith(KEY_PREFIX) and number.isdigit() and int(number) < self.count):
            raise not_found(key)
        if _key(int(number)) != key:
            raise not_found(key)
        return _info(int(number))

    def open(
        self, key: str, *, chunk_size: int = 1024 * 1024, offset: int = 0, etag: str | None = None
    ) -> Iterator[bytes]:
        raise _unsupported("open")

    def get_bytes(self, key: str, *, max_size: int) -> bytes:
        raise _unsupported("get_bytes")

    def read(self, key: str, *, max_size: int) -> Blob:
        raise _unsupported("read")

    def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
        raise _unsupported("put")

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        raise _unsupported("delete")

    def can_copy_from(self, source: ObjectStore) -> bool:
        return False

    def copy_from(
        self,
        source: ObjectStore,
        src_key: str,
        dst_key: str,
        *,
        size: int | None = None,
        etag: str | None = None,
    ) -> ObjectInfo:
        raise _unsupported("copy_from")

    def create_multipart(self, key: str) -> str:
        raise _unsupported("create_multipart")

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        raise _unsupported("upload_part")

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
        raise _unsupported("copy_part")

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> ObjectInfo:
        raise _unsupported("complete_multipart")

    def abort_multipart(self, key: str, upload_id: str) -> None:
        raise _unsupported("abort_multipart")

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        return []


def _key(i: int) -> str:
    return f"{KEY_PREFIX}{i:08d}.png"


def _info(i: int) -> ObjectInfo:
    etag = f"{i:032x}"
    return ObjectInfo(key=_key(i), size=OBJECT_SIZE, etag=etag, md5=etag)


def _unsupported(method: str) -> StorageError:
    return StorageError(ErrorKind.UNSUPPORTED, f"a generated listing has no {method}")
