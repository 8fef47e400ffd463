"""The port every storage provider implements: one small Protocol plus declared capabilities."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from storage_adapters.netguard import NetGuard


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a listing or a HEAD tells about one object.

    `etag` is the provider's opaque entity tag without quotes; `md5` is the hex MD5 of the
    content when the provider states it (a non-multipart S3/OSS ETag, Azure Content-MD5),
    else None; `crc64` is OSS's CRC-64/ECMA of the content (x-oss-hash-crc64ecma, the
    decimal string OSS sends) when the provider states it, else None.
    """

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    md5: str | None = None
    crc64: str | None = None


@dataclass(frozen=True, slots=True)
class Blob:
    """A small object read whole, with what the GET said about it (its ETag is the one a
    listing shows)."""

    data: bytes
    info: ObjectInfo


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing and the cursor that resumes right after it (None: the end)."""

    objects: Sequence[ObjectInfo]
    cursor: str | None
    # Keys ending in '/' that hold bytes: folder markers are not objects, but one with data
    # in it is data no import can take (an S3 or OSS key may be 'a/' and hold 5 MB). Listed
    # here, so that an import counts and reports them rather than dropping them unseen.
    folder_keys_with_data: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Optional abilities, declared rather than discovered by calling and failing."""

    # Copy between two keys without moving bytes through Bayport, within one account.
    server_side_copy: bool = False
    # ... and between buckets/containers of that account.
    server_side_copy_across_buckets: bool = False
    # Largest object one server-side copy request may take; larger ones go multipart.
    max_single_copy_size: int | None = None
    # Multipart copy built from ranges of the source (S3 UploadPartCopy).
    multipart_copy: bool = False
    multipart_upload: bool = False
    # Smallest part a multipart upload accepts (except the last), and most parts per object
    # (S3 and OSS: 10,000; Azure: 50,000 blocks): larger objects need larger parts.
    min_part_size: int = 0
    max_parts: int = 10_000
    # Largest page one listing request returns.
    max_list_page: int = 1000
    # Answers a write with the stored object's CRC-64/ECMA (OSS): a streamed copy into it
    # computes that checksum too, to compare. Others are checked by MD5 alone.
    reports_crc64: bool = False
    # Makes a signed, time-limited GET URL for one object (`presign_get`): S3, OSS, Azure.
    presigned_urls: bool = False
    # Lists unfinished multipart uploads (`list_uploads`): S3, OSS, local, memory. Azure's
    # uncommitted blocks expire by themselves.
    lists_uploads: bool = False
    # Copies server-side from another provider's store by fetching the source's presigned
    # URL itself (Azure's Put Blob From URL): `can_copy_from` says for which sources.
    copy_from_url: bool = False


@dataclass(frozen=True, slots=True)
class UploadedPart:
    number: int
    etag: str


@runtime_checkable
class ObjectStore(Protocol):
    """A bucket (or container, or folder) seen through one set of credentials.

    Keys are '/'-separated strings relative to the store's root. Every method raises
    `storage_adapters.errors.StorageError` and nothing else.
    """

    capabilities: Capabilities

    @property
    def account(self) -> str:
        """An opaque identity of (provider, endpoint, credentials): two stores with the same
        account may copy server-side between each other when the capabilities allow it."""
        ...

    @property
    def location(self) -> str:
        """A display name for logs and errors (provider://bucket/root). Never a secret."""
        ...

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 1000) -> ListPage:
        """Up to `limit` objects whose keys start with `prefix`, in ascending key order,
        starting after `cursor` (a value from a previous page). Folder markers (keys ending
        in '/') are not returned. A missing bucket is NOT_FOUND; an empty prefix is an empty
        page with cursor None."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """The object's metadata; NOT_FOUND when it does not exist."""
        ...

    def open(
        self,
        key: str,
        *,
        chunk_size: int = 1024 * 1024,
        offset: int = 0,
        etag: str | None = None,
    ) -> Iterator[bytes]:
        """The object's content from byte `offset` on (an offset at or past its end: no
        chunks), as chunks of at most `chunk_size` bytes; NOT_FOUND when missing. The request
        is made when the iterator is first advanced.

        With `etag` (as a listing, head or read states it), only that version of the object is
        read: when the object now has another, PRECONDITION_FAILED (permanent, naming the key),
        before any byte is yielded. A read that broke is resumed by opening again at the
        offset reached with the same `etag`, so it never splices two versions together."""
        ...

    def read(self, key: str, *, max_size: int) -> Blob:
        """The whole object and its metadata, in one request; PRECONDITION_FAILED when
        larger than `max_size` (refused before its bytes are read where the size is sent)."""
        ...

    def get_bytes(self, key: str, *, max_size: int) -> bytes:
        """`read(...).data`."""
        ...

    def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
        """Create or replace an object in one request. `data` may be a bytearray (a streamed
        copy fills one buffer in place rather than joining its chunks into a second)."""
        ...

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete an object; deleting a missing object is not an error. With `if_match` (an
        ETag as listed), only that version is deleted: PRECONDITION_FAILED (permanent) when
        the object now has another. Where the provider cannot make a delete conditional
        (OSS), the adapter compares by HEAD first: a window of one request."""
        ...

    def can_copy_from(self, source: ObjectStore) -> bool:
        """True when `copy_from(source, ...)` runs server-side for objects up to
        `capabilities.max_single_copy_size` (multipart copy above it when declared)."""
        ...

    def copy_from(
        self,
        source: ObjectStore,
        src_key: str,
        dst_key: str,
        *,
        size: int | None = None,
        etag: str | None = None,
    ) -> ObjectInfo:
        """Server-side copy of one object; UNSUPPORTED unless `can_copy_from(source)`, and
        UNSUPPORTED for one object the adapter cannot copy so (Azure pulling from another
        provider: a multipart ETag, a source Azure cannot reach): the caller streams it.
        `size` is the source's size as listed: an adapter whose copy answer lacks the size
        may report it instead of asking again (the caller verifies by content hash). With
        `etag`, only that version of the source is copied (S3/OSS copy-source-if-match,
        Azure's source ETag condition): PRECONDITION_FAILED (permanent) when it changed."""
        ...

    def create_multipart(self, key: str) -> str:
        """Start a multipart upload; returns its upload id."""
        ...

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        """Upload part `number` (1-based). `md5`: the part's MD5 digest where the caller has
        computed it, sent as the Content-MD5 the service checks the bytes against instead of
        hashed again; a store that hashes the part itself refuses it when they differ
        (CHECKSUM_MISMATCH)."""
        ...

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
        """Fill part `number` from `byte_range` (inclusive) of a source object, server-side;
        UNSUPPORTED unless `capabilities.multipart_copy` and `can_copy_from(source)`. With
        `etag`, only from that version (PRECONDITION_FAILED when it changed): parts of two
        versions are never spliced into one object."""
        ...

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        content_md5: str | None = None,
    ) -> ObjectInfo:
        """Assemble the parts into the object. `content_md5` (hex, of the whole object, when
        the caller computed it) is recorded where the provider keeps one (Azure's
        Content-MD5); others ignore it."""
        ...

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload and its parts."""
        ...

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        """`(key, upload id)` of up to `limit` unfinished multipart uploads whose keys start
        with `prefix` (what a killed copy left behind). Azure has none to list: uncommitted
        blocks are dropped by the service after 7 days, or by the blob's next commit."""
        ...

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """A URL anyone holding it may GET the object at `key` with, for `expires_in`
        seconds (a signed URL from the provider). StorageError(UNSUPPORTED) where the
        store cannot make one (a local folder, memory).

        Made locally, without a request: it says nothing of whether the object exists (a GET
        of a missing one is the provider's 404). An anonymous store (a public bucket) answers
        the object's plain URL, which needs no signature. `expires_in` below 1, or above the
        provider's limit (S3: 7 days), is INVALID_CONFIG."""
        ...


@dataclass(frozen=True)
class StorageSpec:
    """What it takes to open a store: the decrypted form of a storage config.

    Lives only in worker and API memory: never logged, never put in a task message.
    """

    provider: str
    bucket: str = ""
    root: str = ""
    endpoint: str | None = None
    region: str | None = None
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    # Where the store's connections may go (the operator's endpoint policy, checked at each
    # new connection); None: anywhere (tests, the demo). Set by stores.resolver.spec_for_config.
    guard: NetGuard | None = field(default=None, repr=False, compare=False)


@runtime_checkable
class PartLayouts(Protocol):
    """An optional ability beside ObjectStore: the part layout an object was uploaded with.

    S3's multipart ETag is the MD5 of its parts' MD5s, dash, their count: a copy made with
    the same layout has the same ETag, computed by the provider over the copy's own bytes. A
    store that cannot tell (or a wrapper over one that cannot) answers None."""

    def part_layout(self, key: str) -> tuple[int, int] | None:
        """(part size, parts count) of an object uploaded in uniform parts (every part but
        the last that size, as the SDKs and the AWS CLI upload them); None when it was not
        uploaded in parts, its parts differ in size, its ETag is no MD5 of its parts' MD5s
        (S3's SSE-KMS and SSE-C), or the store does not say. NOT_FOUND when the object does
        not exist."""
        ...
