"""Azure Blob Storage (Global, China and Azurite) through azure-storage-blob: block blobs only.

The store itself; azure_client checks the account it names and makes the ContainerClient it
sends its requests on, azure_errors maps every failure, and azure_pull makes the copies Azure
pulls itself from another provider's presigned URL (Put Blob From URL); azure_answers reads
blob properties into ObjectInfo and spells block ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    ContentSettings,
    generate_blob_sas,
)

from storage_adapters.azure_answers import (
    as_datetime,
    await_copy,
    block_id,
    object_info,
    only_version,
    part_number,
)
from storage_adapters.azure_client import (
    account_key,
    account_name,
    global_endpoint,
    new_container_client,
)
from storage_adapters.azure_errors import translate as _translate
from storage_adapters.azure_pull import LacksPull, SourceUnreachable, pull, refusal
from storage_adapters.base import (
    Blob,
    Capabilities,
    ListPage,
    ObjectInfo,
    ObjectStore,
    StorageSpec,
    UploadedPart,
)
from storage_adapters.common import (
    normalize_root,
    page_limit,
    presign_seconds,
    still_version,
    strip_etag,
)
from storage_adapters.errors import ErrorKind, StorageError, changed


class AzureBlobStore:
    """One container of one storage account; `spec.root` is a key prefix hidden from callers.

    `spec.endpoint` is the account URL (https://ACCOUNT.blob.core.windows.net, the China
    cloud's ...blob.core.chinacloudapi.cn, or Azurite's http://127.0.0.1:PORT/ACCOUNT); without
    it the Global one is built from the account name. Without an account key the store is
    anonymous (a public container). `multipart_copy=False` declares a server without Put Block
    From URL (Azurite). `copy_timeout` bounds the wait for an asynchronous Copy Blob, and for
    the answer of a Put Blob From URL. `pull_from_url=False` streams every copy from another
    provider (else Azure pulls what it can from a presigned URL: azure_pull).
    """

    def __init__(
        self,
        spec: StorageSpec,
        *,
        timeout: float = 60,
        max_pool_connections: int = 64,
        multipart_copy: bool = True,
        copy_timeout: float = 600,
        pull_from_url: bool = True,
    ) -> None:
        if not spec.bucket:
            raise StorageError(ErrorKind.INVALID_CONFIG, "an Azure storage needs a container name")
        self.container = spec.bucket
        self._root = normalize_root(spec.root)
        self._account_name = account_name(spec)
        self._endpoint = (spec.endpoint or global_endpoint(self._account_name)).rstrip("/")
        self._key = account_key(spec)
        self._account = hashlib.sha256(
            f"azure\n{self._endpoint}\n{self._account_name}".encode()
        ).hexdigest()
        self._copy_timeout = copy_timeout
        # Accounts of other providers whose endpoint Azure could not reach (private ones).
        self._unreachable_sources: set[str] = set()
        self._container = new_container_client(
            spec,
            endpoint=self._endpoint,
            account_name=self._account_name,
            account_key=self._key,
            timeout=timeout,
            max_pool_connections=max_pool_connections,
        )
        self.capabilities = Capabilities(
            server_side_copy=True,
            server_side_copy_across_buckets=True,
            # Copy Blob (async) takes a blob of any size in one request; the service moves the
            # bytes and we poll. Copy Blob From URL, the sync one, would stop at 256 MiB.
            max_single_copy_size=None,
            multipart_copy=multipart_copy,
            multipart_upload=True,
            min_part_size=1,  # blocks may be any size up to 4000 MiB
            max_parts=50_000,
            max_list_page=5000,
            presigned_urls=True,
            copy_from_url=pull_from_url,
        )

    @classmethod
    def from_spec(cls, spec: StorageSpec, **opts: Any) -> AzureBlobStore:
        return cls(spec, **opts)

    @property
    def account(self) -> str:
        return self._account

    @property
    def location(self) -> str:
        return f"azure://{self.container}/{self._root}"

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 1000) -> ListPage:
        limit = page_limit(limit, self.capabilities.max_list_page)
        # The cursor is Azure's own marker: opaque, so a listing resumes only from a cursor a
        # previous page handed out (List Blobs has no StartAfter).
        pages: Any = self._container.list_blobs(
            name_starts_with=self._root + prefix, include=["metadata"], results_per_page=limit
        ).by_page(continuation_token=cursor)
        try:
            items = list(next(pages, ()))
        except Exception as exc:
            raise _translate(exc, prefix, container=self.container) from exc
        found: list[ObjectInfo] = []
        folders: list[str] = []
        for item in items:
            name: str = item.name
            if not name.startswith(self._root):
                continue
            if name.endswith("/"):
                if item.size:
                    folders.append(name[len(self._root) :])
                continue
            # A hierarchical-namespace account lists its directories as empty blobs.
            if (item.metadata or {}).get("hdi_isfolder") == "true":
                continue
            found.append(object_info(name[len(self._root) :], item))
        return ListPage(
            objects=found,
            cursor=pages.continuation_token or None,
            folder_keys_with_data=folders,
        )

    def head(self, key: str) -> ObjectInfo:
        props = self._call(self._blob(key).get_blob_properties, key)
        return object_info(key, props)

    def open(
        self,
        key: str,
        *,
        chunk_size: int = 1024 * 1024,
        offset: int = 0,
        etag: str | None = None,
    ) -> Iterator[bytes]:
        options: dict[str, Any] = {}
        if offset > 0:
            options["offset"] = offset
        if etag is not None:
            # The SDK pins its later range reads to the first one's ETag by itself.
            options.update(etag=f'"{etag}"', match_condition=MatchConditions.IfNotModified)
        try:
            download = self._call(self._blob(key).download_blob, key, **options)
        except StorageError as exc:
            if etag is not None and exc.status == 412:
                raise changed(key, etag) from exc
            if offset > 0 and exc.status == 416:  # at or past the end
                return
            raise
        now = strip_etag(download.properties.etag, lower=False)
        if etag is not None and now != strip_etag(etag, lower=False):
            raise changed(key, etag, now)
        try:
            # iter(read, b""): no frame keeps the chunk given while the caller holds it.
            yield from iter(partial(download.read, chunk_size), b"")
        except Exception as exc:
            raise _translate(exc, key, container=self.container) from exc

    def get_bytes(self, key: str, *, max_size: int) -> bytes:
        return self.read(key, max_size=max_size).data

    def read(self, key: str, *, max_size: int) -> Blob:
        download = self._call(self._blob(key).download_blob, key)
        if download.size > max_size:
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED,
                f"object is {download.size} bytes, more than the {max_size} allowed",
                key=key,
            )
        try:
            data: bytes = download.readall()
        except Exception as exc:
            raise _translate(exc, key, container=self.container) from exc
        return Blob(data=data, info=object_info(key, download.properties))

    def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
        # azure-storage-blob takes a bytearray for an iterable of ints: bytes it must be.
        data = bytes(data) if isinstance(data, bytearray) else data
        digest = hashlib.md5(data)
        resp = self._call(
            self._blob(key).upload_blob,
            key,
            data=data,
            overwrite=True,
            # validate_content sends the Content-MD5 the service checks the bytes against; the
            # same MD5 stored as the blob's property is what head and listings then report.
            content_settings=ContentSettings(content_md5=bytearray(digest.digest())),
            validate_content=True,
        )
        return ObjectInfo(
            key=key,
            size=len(data),
            etag=strip_etag(resp.get("etag"), lower=False),
            last_modified=resp.get("last_modified"),
            md5=digest.hexdigest(),
        )

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        try:
            self._call(
                self._blob(key).delete_blob,
                key,
                delete_snapshots="include",
                **only_version(if_match),
            )
        except StorageError as exc:
            if exc.kind is ErrorKind.PRECONDITION_FAILED and if_match is not None:
                # Azurite answers 412 for a missing blob too: gone is no error here.
                if not still_version(lambda: self.head(key), key, if_match):
                    return
                raise
            if exc.kind is not ErrorKind.NOT_FOUND or exc.code == "ContainerNotFound":
                raise

    def can_copy_from(self, source: ObjectStore) -> bool:
        if isinstance(source, AzureBlobStore):
            return source.account == self.account
        # Another provider's store that signs GET URLs: Azure fetches the object itself,
        # unless Azure found its endpoint unreachable before.
        return (
            self.capabilities.copy_from_url
            and source.capabilities.presigned_urls
            and source.account not in self._unreachable_sources
        )

    def copy_from(
        self,
        source: ObjectStore,
        src_key: str,
        dst_key: str,
        *,
        size: int | None = None,
        etag: str | None = None,
    ) -> ObjectInfo:
        if not isinstance(source, AzureBlobStore):
            return self._pull_from_url(source, src_key, dst_key, size=size, etag=etag)
        src = self._copy_source(source, dst_key)
        blob = self._blob(dst_key)
        pinned = (
            {"source_etag": f'"{etag}"', "source_match_condition": MatchConditions.IfNotModified}
            if etag
            else {}
        )
        resp = self._call(
            blob.start_copy_from_url,
            dst_key,
            source_url=self._source_url(src, src_key),
            **pinned,
        )
        if resp.get("copy_status") == "success" and size is not None:
            # Copied in the request (as within one account, nearly always). The answer has no
            # size; the caller checks it with a HEAD when it wants.
            return ObjectInfo(
                key=dst_key,
                size=size,
                etag=strip_etag(str(resp.get("etag") or ""), lower=False),
                last_modified=as_datetime(resp.get("last_modified")),
            )
        return object_info(
            dst_key,
            await_copy(
                self._call, blob, dst_key, str(resp.get("copy_id") or ""), self._copy_timeout
            ),
        )

    def create_multipart(self, key: str) -> str:
        # Nothing to call: staged blocks need no session, only block ids unique to this upload.
        return secrets.token_hex(8)

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        digest = md5 or hashlib.md5(data).digest()
        tag = digest.hex()
        self._call(
            self._blob(key).stage_block,
            key,
            block_id=block_id(upload_id, number, tag),
            data=data,
            # The Content-MD5 the service checks the block against (what validate_content
            # sends, without the SDK hashing the block once more).
            transactional_content_md5=digest,
        )
        return UploadedPart(number=number, etag=tag)

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
        if not self.capabilities.multipart_copy:
            raise StorageError(
                ErrorKind.UNSUPPORTED, f"{self.location} has no multipart copy", key=key
            )
        first, last = byte_range
        # The block's content is unknown here, so its tag names what was asked for instead.
        tag = hashlib.md5(
            f"{src.container}\n{src._root}{src_key}\n{first}-{last}".encode()
        ).hexdigest()
        self._call(
            self._blob(key).stage_block_from_url,
            key,
            block_id=block_id(upload_id, number, tag),
            source_url=self._source_url(src, src_key),
            source_offset=first,
            source_length=last - first + 1,
            # Put Block From URL's source condition (the SDK has no argument for it).
            **({"headers": {"x-ms-source-if-match": f'"{etag}"'}} if etag else {}),
        )
        return UploadedPart(number=number, etag=tag)

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        content_md5: str | None = None,
    ) -> ObjectInfo:
        settings = None
        if content_md5 is not None:
            # Put Block List stores this without checking it (each block was checked on upload).
            try:
                settings = ContentSettings(content_md5=bytearray.fromhex(content_md5))
            except ValueError as exc:
                raise StorageError(
                    ErrorKind.INVALID_CONFIG, f"content_md5 is not hex: {content_md5!r}", key=key
                ) from exc
        self._call(
            self._blob(key).commit_block_list,
            key,
            block_list=[
                block_id(upload_id, p.number, p.etag) for p in sorted(parts, key=part_number)
            ],
            content_settings=settings,
        )
        # The answer has no size.
        return self.head(key)

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        return []  # uncommitted blocks expire by themselves (7 days)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        # Azure has no call that drops uncommitted blocks; committing a block list does. So
        # where no blob exists yet, commit an empty one and delete it, both conditionally so
        # a blob someone else commits meanwhile is left alone. Beside an existing blob the
        # blocks stay until the next commit or their expiry (7 days).
        blob = self._blob(key)
        try:
            resp = self._call(
                blob.commit_block_list,
                key,
                block_list=[],
                match_condition=MatchConditions.IfMissing,
            )
        except StorageError as exc:
            if exc.kind in (ErrorKind.ALREADY_EXISTS, ErrorKind.PRECONDITION_FAILED):
                return
            raise
        try:
            self._call(
                blob.delete_blob,
                key,
                etag=resp.get("etag"),
                match_condition=MatchConditions.IfNotModified,
            )
        except StorageError as exc:
            gone_or_replaced = (ErrorKind.NOT_FOUND, ErrorKind.PRECONDITION_FAILED)
            if exc.kind not in gone_or_replaced or exc.code == "ContainerNotFound":
                raise

    def presign_get(self, key: str, *, expires_in: int) -> str:
        # A service SAS for this one blob, read only, signed with the account key; the store
        # knows no other credential (no SAS token, no Entra ID), and without a key it is
        # anonymous: a public container, whose blob URL needs no signature.
        seconds = presign_seconds(expires_in)
        url: str = self._blob(key).url
        if self._key is None:
            return url
        sas: str = self._call(
            generate_blob_sas,
            key,
            account_name=self._account_name,
            container_name=self.container,
            blob_name=self._root + key,
            account_key=self._key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(seconds=seconds),
        )
        return f"{url}?{sas}"

    # -- private helpers ---------------------------------------------------------------------

    def _call(self, operation: Callable[..., Any], key: str | None, **params: Any) -> Any:
        try:
            return operation(**params)
        except Exception as exc:
            raise _translate(exc, key, container=self.container) from exc

    def _pull_from_url(
        self, source: ObjectStore, src_key: str, dst_key: str, *, size: int | None, etag: str | None
    ) -> ObjectInfo:
        """Put Blob From URL, pinned to the listed MD5; UNSUPPORTED (the copier streams the
        object) where it cannot be pinned or the server lacks the call, which is then not
        tried again on this store."""
        if not self.can_copy_from(source):
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"no server-side copy from {source.location} to {self.location}",
                key=dst_key,
            )
        refused = refusal(size, etag, dst_key)
        if refused is not None:
            raise refused
        assert size is not None and etag is not None  # (refusal checked them)
        try:
            return pull(
                self._blob(dst_key),
                source,
                src_key,
                dst_key,
                size=size,
                etag=etag,
                expires_in=int(self._copy_timeout) + 900,
                wait=self._copy_timeout,
            )
        except LacksPull:
            self.capabilities = dataclasses.replace(self.capabilities, copy_from_url=False)
            raise
        except SourceUnreachable:
            self._unreachable_sources.add(source.account)
            raise

    def _copy_source(self, source: ObjectStore, key: str) -> AzureBlobStore:
        if not isinstance(source, AzureBlobStore) or not self.can_copy_from(source):
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"no server-side copy from {source.location} to {self.location}",
                key=key,
            )
        return source

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(self._root + key)

    def _source_url(self, src: AzureBlobStore, src_key: str) -> str:
        """The source blob's URL, with a read-only SAS signed by the account key: Copy Blob
        accepts a shared-key-authorized source within the account, Put Block From URL does not.
        It lives as long as a copy may be polled, plus a margin."""
        url: str = src._blob(src_key).url
        key = src._key or self._key  # one account, so either store's key signs for both
        if key is None:
            return url  # a public container
        sas = generate_blob_sas(
            self._account_name,
            src.container,
            src._root + src_key,
            account_key=key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(seconds=self._copy_timeout + 900),
        )
        return f"{url}?{sas}"
