"""Azure Blob Storage (Global, China and Azurite) through azure-storage-blob: block blobs only."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import re
import secrets
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobClient,
    BlobProperties,
    BlobSasPermissions,
    ContainerClient,
    ContentSettings,
    generate_blob_sas,
)
from urllib3.util.retry import Retry

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
    read_listing,
    retry_after_seconds,
    still_version,
    strip_etag,
)
from storage_adapters.errors import ErrorKind, StorageError, changed
from storage_adapters.netguard import guarded_session, refused

MiB = 1024 * 1024
# Put Blob takes up to 5000 MiB in one request; above the SDK's default (64 MiB) it would
# silently switch to blocks, and `put` promises one request.
_MAX_SINGLE_PUT = 5000 * MiB
# Reads go out as ranged GETs of this size: `open` holds one range in memory, and
# `get_bytes` learns the size (to refuse a large object) from the first one.
_GET_RANGE = 8 * MiB
# An async Copy Blob is polled this often at first, backing off to the second figure.
_COPY_POLL = (0.05, 2.0)
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")


class AzureBlobStore:
    """One container of one storage account; `spec.root` is a key prefix hidden from callers.

    `spec.endpoint` is the account URL (https://ACCOUNT.blob.core.windows.net, the China
    cloud's ...blob.core.chinacloudapi.cn, or Azurite's http://127.0.0.1:PORT/ACCOUNT); without
    it the Global one is built from the account name. Without an account key the store is
    anonymous (a public container). `multipart_copy=False` declares a server without Put Block
    From URL (Azurite). `copy_timeout` bounds the wait for an asynchronous Copy Blob.
    """

    def __init__(
        self,
        spec: StorageSpec,
        *,
        timeout: float = 60,
        max_pool_connections: int = 64,
        multipart_copy: bool = True,
        copy_timeout: float = 600,
    ) -> None:
        if not spec.bucket:
            raise StorageError(ErrorKind.INVALID_CONFIG, "an Azure storage needs a container name")
        self.container = spec.bucket
        self._root = normalize_root(spec.root)
        self._account_name = _account_name(spec)
        self._endpoint = (spec.endpoint or _global_endpoint(self._account_name)).rstrip("/")
        self._key = spec.credentials.get("account_key") or None
        if self._key is not None:
            try:
                base64.b64decode(self._key, validate=True)
            except ValueError as exc:  # binascii.Error, or a key that is not even ASCII
                raise StorageError(
                    ErrorKind.INVALID_CONFIG, "the Azure account key is not base64"
                ) from exc
        self._account = hashlib.sha256(
            f"azure\n{self._endpoint}\n{self._account_name}".encode()
        ).hexdigest()
        self._copy_timeout = copy_timeout
        # One pool per store, shared by every blob client made from its container client.
        # Its connections go only where the spec's guard allows; it follows no redirect
        # (neither does the pipeline: permit_redirects=False below).
        session = guarded_session(
            spec.guard,
            pool_connections=max_pool_connections,
            pool_maxsize=max_pool_connections,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )
        credential = (
            {"account_name": self._account_name, "account_key": self._key} if self._key else None
        )
        try:
            self._container = ContainerClient(
                self._endpoint,
                self.container,
                credential=credential,
                transport=_WholeAnswerTransport(
                    session=session, connection_timeout=timeout, read_timeout=timeout
                ),
                # Our tenacity layer retries; the SDK making its own attempts would multiply them.
                retry_total=0,
                permit_redirects=False,
                max_single_put_size=_MAX_SINGLE_PUT,
                max_single_get_size=_GET_RANGE,
                max_chunk_get_size=_GET_RANGE,
            )
        except ValueError as exc:  # "Invalid URL", "Account URL must be a string", ...
            raise StorageError(ErrorKind.INVALID_CONFIG, str(exc)) from exc
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
            found.append(_info(name[len(self._root) :], item))
        return ListPage(
            objects=found,
            cursor=pages.continuation_token or None,
            folder_keys_with_data=folders,
        )

    def head(self, key: str) -> ObjectInfo:
        props = self._call(self._blob(key).get_blob_properties, key)
        return _info(key, props)

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
            while chunk := download.read(chunk_size):
                yield chunk
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
        return Blob(data=data, info=_info(key, download.properties))

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
                self._blob(key).delete_blob, key, delete_snapshots="include", **_only(if_match)
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
        return isinstance(source, AzureBlobStore) and source.account == self.account

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
                last_modified=_as_datetime(resp.get("last_modified")),
            )
        return _info(dst_key, self._await_copy(blob, dst_key, str(resp.get("copy_id") or "")))

    def create_multipart(self, key: str) -> str:
        # Nothing to call: staged blocks need no session, only block ids unique to this upload.
        return secrets.token_hex(8)

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        tag = hashlib.md5(data).hexdigest()
        self._call(
            self._blob(key).stage_block,
            key,
            block_id=_block_id(upload_id, number, tag),
            data=data,
            validate_content=True,
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
            block_id=_block_id(upload_id, number, tag),
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
                _block_id(upload_id, p.number, p.etag) for p in sorted(parts, key=_part_number)
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

    def _await_copy(self, blob: BlobClient, key: str, copy_id: str) -> BlobProperties:
        deadline = time.monotonic() + self._copy_timeout
        wait = _COPY_POLL[0]
        while True:
            props: BlobProperties = self._call(blob.get_blob_properties, key)
            status = props.copy.status if props.copy else None
            if status in (None, "success"):
                return props
            if status != "pending":  # failed or aborted: the service says why
                raise StorageError(
                    ErrorKind.UNAVAILABLE,
                    f"Copy Blob {status}: {props.copy.status_description or 'no reason given'}",
                    key=key,
                )
            if time.monotonic() > deadline:
                break
            time.sleep(wait)
            wait = min(wait * 2, _COPY_POLL[1])
        # Stop the copy rather than leave it running: a copy onto a blob with a pending one
        # is refused, so a retry would fail until it ended.
        # It may have ended meanwhile; the timeout is the error to report either way.
        with contextlib.suppress(StorageError):
            self._call(blob.abort_copy, key, copy_id=copy_id)
        raise StorageError(
            ErrorKind.UNAVAILABLE,
            f"Copy Blob did not finish within {self._copy_timeout:.0f}s",
            key=key,
        )


class _WholeAnswerTransport(RequestsTransport):
    """Reads every answer whole inside the pipeline's call, downloads too, so a body cut
    short (or a connection lost while reading it) fails the call itself and reaches our retry
    layer, which counts it. Streamed, the SDK's downloader would read the body later and
    re-request a failed one up to three times with 1 s sleeps, a hard-coded loop no
    `retry_total` turns off. A download's range is held in memory either way (`_GET_RANGE`)."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        # Read here, capped (requests would read any length): a hostile endpoint may stream
        # an endless listing, or more than the range a download asked for.
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        internal = response.internal_response
        chunks = internal.iter_content(1024 * 1024)
        try:
            body = read_listing(lambda _: next(chunks, b""), key="an Azure answer")
        except BaseException as exc:
            internal.close()  # the rest unread: this connection can't be reused
            if isinstance(exc, requests.RequestException):  # as the SDK's own read says it
                if "IncompleteRead" in str(exc):
                    raise IncompleteReadError(exc, error=exc) from exc
                raise ServiceResponseError(exc, error=exc) from exc
            raise
        internal._content, internal._content_consumed = body, True
        if hasattr(response, "_content"):  # azure.core.rest's response keeps its own
            response._content = body
        return response


def _info(key: str, item: BlobProperties) -> ObjectInfo:
    md5 = item.content_settings.content_md5 if item.content_settings else None
    return ObjectInfo(
        key=key,
        size=int(item.size or 0),
        etag=strip_etag(item.etag, lower=False),
        last_modified=item.last_modified,
        md5=bytes(md5).hex() if md5 else None,
    )


def _block_id(upload_id: str, number: int, tag: str) -> str:
    """'<upload id>-<part number>-<part tag>', which the SDK sends base64-encoded. All block
    ids of a blob must have one length, at most 64 bytes before encoding: 16 + 1 + 6 + 1 + 32.
    The tag (the part's MD5) makes a part whose bytes changed a different block, and a wrong
    ETag an unknown one."""
    return f"{upload_id}-{number:06d}-{tag}"


def _part_number(part: UploadedPart) -> int:
    return part.number


def _account_name(spec: StorageSpec) -> str:
    """The account name from the credentials, else from the endpoint (its first host label,
    or the first path segment for an emulator's http://127.0.0.1:PORT/ACCOUNT)."""
    name = spec.credentials.get("account_name")
    if not name and spec.endpoint:
        parts = urlsplit(spec.endpoint)
        host = parts.hostname or ""
        on_host = ".blob." in host
        name = host.split(".", 1)[0] if on_host else parts.path.strip("/").split("/", 1)[0]
    if not name:
        raise StorageError(ErrorKind.INVALID_CONFIG, "an Azure storage needs an account name")
    return name


def _global_endpoint(account_name: str) -> str:
    if not _ACCOUNT_NAME.fullmatch(account_name):
        raise StorageError(
            ErrorKind.INVALID_CONFIG,
            f"{account_name!r} is not an Azure storage account name (3-24 lowercase letters "
            "and digits); give the endpoint for anything else",
        )
    return f"https://{account_name}.blob.core.windows.net"


def _as_datetime(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    return retry_after_seconds(value)


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether `exc` or an error it wraps (azure-core's inner_exception, or the chain) is one
    of `kinds`."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kinds):
            return True
        seen = getattr(seen, "inner_exception", None) or seen.__cause__ or seen.__context__
    return False


_NOT_FOUND = frozenset({"BlobNotFound", "ResourceNotFound", "404"})
_DENIED = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationSourceIPMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "InsufficientAccountPermissions",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
        "KeyBasedAuthenticationNotPermitted",
        "PublicAccessNotPermitted",
        "AccountIsDisabled",
        "401",
        "403",
    }
)
_ALREADY_EXISTS = frozenset({"BlobAlreadyExists", "ContainerAlreadyExists"})


def _only(etag: str | None) -> dict[str, object]:
    """The arguments that make a write take version `etag` only (If-Match)."""
    if etag is None:
        return {}
    return {"etag": f'"{etag}"', "match_condition": MatchConditions.IfNotModified}


_PRECONDITION = frozenset(
    {
        "ConditionNotMet",
        "SourceConditionNotMet",
        "TargetConditionNotMet",
        "InvalidBlockList",
        "InvalidBlockId",
        "InvalidBlobOrBlock",
        "BlockCountExceedsLimit",
        "BlockListTooLong",
        "RequestBodyTooLarge",
        "InvalidRange",
        "LeaseIdMissing",
        "LeaseNotPresentWithBlobOperation",
        "LeaseIdMismatchWithBlobOperation",
        "412",
        "413",
        "416",
    }
)
_RATE_LIMITED = frozenset({"ServerBusy", "TooManyRequests", "429", "503"})
_UNAVAILABLE = frozenset(
    {"InternalError", "OperationTimedOut", "PendingCopyOperation", "500", "502", "504"}
)
_CHECKSUM = frozenset({"Md5Mismatch", "Crc64Mismatch", "InvalidMd5"})
_CONFIG = frozenset({"InvalidResourceName", "OutOfRangeInput", "InvalidUri"})
_UNSUPPORTED = frozenset({"APINotImplemented", "NotImplemented", "BlobArchived", "501"})
# Failures before or while reading an answer: the request may succeed when made again.
_NETWORK_ERRORS = (
    ServiceRequestError,  # connection refused or reset, DNS, connect timeout
    ServiceResponseError,  # read timeout, connection dropped mid-answer
    IncompleteReadError,
    requests.exceptions.ChunkedEncodingError,  # a body cut short, seen through azure-core
    urllib3.exceptions.ProtocolError,
    http.client.IncompleteRead,
    ConnectionError,
    TimeoutError,
)
_TABLE = (
    (_NOT_FOUND, ErrorKind.NOT_FOUND),
    (_DENIED, ErrorKind.PERMISSION_DENIED),
    (_ALREADY_EXISTS, ErrorKind.ALREADY_EXISTS),
    (_PRECONDITION, ErrorKind.PRECONDITION_FAILED),
    (_CHECKSUM, ErrorKind.CHECKSUM_MISMATCH),
    (_CONFIG, ErrorKind.INVALID_CONFIG),
    (_UNSUPPORTED, ErrorKind.UNSUPPORTED),
    (_RATE_LIMITED, ErrorKind.RATE_LIMITED),
    (_UNAVAILABLE, ErrorKind.UNAVAILABLE),
)


def _translate(
    exc: BaseException, key: str | None, *, container: str | None = None
) -> StorageError:
    """The one place an azure-core/azure-storage failure becomes a StorageError."""
    if isinstance(exc, StorageError):
        return exc
    if (guarded := refused(exc)) is not None:  # a connection or redirect the guard refused
        return guarded
    if isinstance(exc, DecodeError) and (exc.status_code or 0) < 400:
        # A body cut short (IncompleteReadError) or garbled on the way; an error answer whose
        # body does not parse is still judged by its status below.
        return StorageError(ErrorKind.UNAVAILABLE, str(exc), key=key, transient=True)
    response = getattr(exc, "response", None)
    if isinstance(exc, HttpResponseError) and response is not None:
        headers = response.headers or {}
        status: int | None = exc.status_code
        # The header, not the body: a HEAD's error has no body.
        raw_code = headers.get("x-ms-error-code") or getattr(exc, "error_code", None) or ""
        code = str(getattr(raw_code, "value", raw_code))  # the SDK's StorageErrorCode enum
        message = (str(exc.message or "") or code or str(exc)).splitlines()[0]
        facts: dict[str, Any] = {"key": key, "status": status, "code": code or None}
        if code == "ContainerNotFound":
            name = container or "?"
            return StorageError(ErrorKind.NOT_FOUND, f"container {name!r} does not exist", **facts)
        # Azurite says InvalidOperation where Azure says Md5Mismatch.
        if status == 400 and "md5" in message.lower() and code not in _CHECKSUM:
            return StorageError(ErrorKind.CHECKSUM_MISMATCH, message, **facts)
        status_code = str(status or "")
        # The error code decides; an unknown code falls back on the HTTP status.
        kind = next((k for codes, k in _TABLE if code in codes), None)
        kind = kind or next((k for codes, k in _TABLE if status_code in codes), None)
        if kind is None:
            is_5xx = isinstance(status, int) and status >= 500
            kind = ErrorKind.UNAVAILABLE if is_5xx else ErrorKind.UNEXPECTED
        retry_after = _retry_after(headers) if kind is ErrorKind.RATE_LIMITED else None
        return StorageError(kind, message, retry_after=retry_after, **facts)
    # Also when wrapped: the SDK's downloader re-raises a body it failed to read three times
    # as an HttpResponseError without a response.
    if _caused_by(exc, _NETWORK_ERRORS):
        if _caused_by(exc, (ssl.SSLError, requests.exceptions.SSLError)):
            # A certificate problem does not heal by itself.
            return StorageError(ErrorKind.INVALID_CONFIG, str(exc), key=key)
        return StorageError(ErrorKind.UNAVAILABLE, str(exc), key=key, transient=True)
    if isinstance(exc, ClientAuthenticationError):  # raised before any answer: bad signing key
        return StorageError(ErrorKind.PERMISSION_DENIED, str(exc), key=key)
    if isinstance(exc, ResourceNotFoundError):
        return StorageError(ErrorKind.NOT_FOUND, str(exc), key=key)
    if isinstance(exc, ValueError):  # the SDK refusing an argument before sending anything
        return StorageError(ErrorKind.INVALID_CONFIG, f"{type(exc).__name__}: {exc}", key=key)
    return StorageError(ErrorKind.UNEXPECTED, f"{type(exc).__name__}: {exc}", key=key)
