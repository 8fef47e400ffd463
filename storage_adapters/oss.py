"""Alibaba Cloud OSS through oss2 (v1 signatures, what oss2 sends by default).

The store itself; oss_client makes the oss2 Bucket it sends its requests on, and oss_errors
maps every failure.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import oss2
from oss2.models import PartInfo

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
    check_range,
    normalize_root,
    page_limit,
    presign_seconds,
    still_version,
    strip_etag,
)
from storage_adapters.errors import ErrorKind, StorageError, changed
from storage_adapters.oss_client import new_bucket
from storage_adapters.oss_errors import translate as _translate

KiB = 1024
GiB = 1024 * 1024 * KiB
_MD5_HEX = re.compile(r"[0-9a-f]{32}")


class OssStore:
    """One bucket under one set of credentials; `spec.root` is a key prefix hidden from callers.

    `spec.endpoint` is the region's endpoint (`https://oss-cn-hangzhou.aliyuncs.com`): oss2
    addresses `bucket.endpoint` there, and path style (`endpoint/bucket/key`) when the endpoint
    is an IP address or localhost. Without an access key the store is anonymous. oss2 checks
    CRC-64 on every upload (`enable_crc`) and the adapter checks it on every full download.
    """

    def __init__(
        self,
        spec: StorageSpec,
        *,
        timeout: float = 60,
        max_pool_connections: int = 64,
    ) -> None:
        if not spec.bucket:
            raise StorageError(ErrorKind.INVALID_CONFIG, "an OSS storage needs a bucket name")
        if not spec.endpoint:
            raise StorageError(
                ErrorKind.INVALID_CONFIG,
                "an OSS storage needs an endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com",
            )
        self.bucket = spec.bucket
        self._root = normalize_root(spec.root)
        self._bucket = new_bucket(spec, timeout=timeout, max_pool_connections=max_pool_connections)
        # The endpoint as oss2 normalised it (scheme://host[:port]), so spellings agree.
        self._endpoint: str = self._bucket.endpoint
        access_key = spec.credentials.get("accesskey_id") or ""
        self._account = hashlib.sha256(f"oss\n{self._endpoint}\n{access_key}".encode()).hexdigest()
        self.capabilities = Capabilities(
            lists_uploads=True,
            server_side_copy=True,
            server_side_copy_across_buckets=True,  # buckets of one region: one endpoint
            # OSS documents CopyObject up to 1 GB (UploadPartCopy above that); newer pages
            # allow 5 GB when the storage class stays, the 1 GB limit holds on every version.
            max_single_copy_size=1 * GiB,
            multipart_copy=True,
            multipart_upload=True,
            min_part_size=100 * KiB,
            max_list_page=1000,
            reports_crc64=True,
            presigned_urls=True,
        )

    @classmethod
    def from_spec(cls, spec: StorageSpec, **opts: Any) -> OssStore:
        return cls(spec, **opts)

    @property
    def account(self) -> str:
        return self._account

    @property
    def location(self) -> str:
        return f"oss://{self.bucket}/{self._root}"

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 1000) -> ListPage:
        limit = page_limit(limit, self.capabilities.max_list_page)
        # start-after, not a continuation token: any key resumes a listing. oss2 asks for
        # url-encoded keys (encoding-type=url) and decodes them, so any character survives.
        resp = self._call(
            self._bucket.list_objects_v2,
            prefix,
            prefix=self._root + prefix,
            start_after=self._root + cursor if cursor is not None else "",
            max_keys=limit,
        )
        found: list[ObjectInfo] = []
        folders: list[str] = []
        last: str | None = None
        for item in resp.object_list:
            last = item.key
            if not last.startswith(self._root):
                continue
            if last.endswith("/"):
                if item.size:
                    folders.append(last[len(self._root) :])
                continue
            found.append(
                _info(
                    last[len(self._root) :],
                    item.size,
                    item.etag,
                    datetime.fromtimestamp(item.last_modified, UTC),
                )
            )
        if not resp.is_truncated:
            return ListPage(objects=found, cursor=None, folder_keys_with_data=folders)
        if last is None:
            raise StorageError(
                ErrorKind.UNEXPECTED, "the server said truncated but listed nothing", key=prefix
            )
        return ListPage(
            objects=found, cursor=last[len(self._root) :], folder_keys_with_data=folders
        )

    def head(self, key: str) -> ObjectInfo:
        resp = self._call(self._bucket.head_object, key, key=self._root + key)
        return _info(
            key,
            resp.content_length or 0,
            resp.etag,
            _unix_time(resp.last_modified),
            resp.server_crc,
        )

    def open(
        self,
        key: str,
        *,
        chunk_size: int = 1024 * 1024,
        offset: int = 0,
        etag: str | None = None,
    ) -> Iterator[bytes]:
        headers: dict[str, str] = {}
        if etag is not None:
            headers["If-Match"] = f'"{etag.upper()}"'  # OSS's ETags are upper-case hex
        if offset > 0:
            # Else OSS answers a range past the end with the whole object.
            headers["x-oss-range-behavior"] = "standard"
        try:
            resp = self._call(
                self._bucket.get_object,
                key,
                key=self._root + key,
                byte_range=(offset, None) if offset > 0 else None,
                headers=headers or None,
            )
        except StorageError as exc:
            if etag is not None and exc.status == 412:
                raise changed(key, etag) from exc
            if offset > 0 and exc.status == 416:  # at or past the end
                return
            raise
        try:
            # Checked here too: a server may ignore If-Match, or a Range.
            now = strip_etag(resp.etag)
            if etag is not None and now != strip_etag(etag):
                raise changed(key, etag, now)
            if offset > 0:
                check_range(key, offset, resp.content_range)
            # iter(read, b""): no frame keeps the chunk given while the caller holds it.
            yield from iter(partial(resp.read, chunk_size), b"")
            _check_download(resp)
        except StorageError:
            raise
        except Exception as exc:
            raise _translate(exc, key, bucket=self.bucket) from exc
        finally:
            resp.close()

    def get_bytes(self, key: str, *, max_size: int) -> bytes:
        return self.read(key, max_size=max_size).data

    def read(self, key: str, *, max_size: int) -> Blob:
        resp = self._call(self._bucket.get_object, key, key=self._root + key)
        try:
            size = resp.content_length
            if size is not None and size > max_size:
                raise StorageError(
                    ErrorKind.PRECONDITION_FAILED,
                    f"object is {size} bytes, more than the {max_size} allowed",
                    key=key,
                )
            chunks: list[bytes] = []
            received = 0
            while chunk := resp.read(1024 * 1024):
                received += len(chunk)
                if received > max_size:  # no Content-Length: stop as soon as it is too big
                    raise StorageError(
                        ErrorKind.PRECONDITION_FAILED,
                        f"object is more than the {max_size} bytes allowed",
                        key=key,
                    )
                chunks.append(chunk)
            _check_download(resp)
        except StorageError:
            raise
        except Exception as exc:
            raise _translate(exc, key, bucket=self.bucket) from exc
        finally:
            resp.close()
        data = b"".join(chunks)
        info = _info(key, len(data), resp.etag, _unix_time(resp.last_modified), resp.server_crc)
        return Blob(data=data, info=info)

    def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
        # oss2 sends bytes or a file; a bytearray it would take for neither.
        data = bytes(data) if isinstance(data, bytearray) else data
        digest = hashlib.md5(data)
        # oss2 (enable_crc) computes the CRC-64 of what it sends and compares it with the
        # x-oss-hash-crc64ecma of the answer: a mismatch raises InconsistentError.
        resp = self._call(
            self._bucket.put_object,
            key,
            key=self._root + key,
            data=data,
            headers={"Content-MD5": base64.b64encode(digest.digest()).decode()},
        )
        etag = strip_etag(resp.etag)
        crc64 = str(resp.crc) if resp.crc is not None else None
        return ObjectInfo(key=key, size=len(data), etag=etag, md5=digest.hexdigest(), crc64=crc64)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        # OSS makes no DELETE conditional: a HEAD decides first (a window of one request).
        if if_match is not None and not still_version(lambda: self.head(key), key, if_match):
            return  # gone already
        try:
            self._call(self._bucket.delete_object, key, key=self._root + key)
        except StorageError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND or exc.code == "NoSuchBucket":
                raise

    def can_copy_from(self, source: ObjectStore) -> bool:
        return isinstance(source, OssStore) and source.account == self.account

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
        resp = self._call(
            self._bucket.copy_object,
            dst_key,
            source_bucket_name=src.bucket,
            source_key=src._root + src_key,
            target_key=self._root + dst_key,
            headers=_pinned(etag),
        )
        _drain(resp)
        etag = strip_etag(resp.etag)
        if size is None or etag is None:
            # CopyObject does not say the size; the HEAD also proves the copy landed.
            return self.head(dst_key)
        return _info(dst_key, size, etag, None, resp.crc)

    def create_multipart(self, key: str) -> str:
        resp = self._call(self._bucket.init_multipart_upload, key, key=self._root + key)
        upload_id: str = resp.upload_id
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        digest = md5 or hashlib.md5(data).digest()
        resp = self._call(
            self._bucket.upload_part,
            key,
            key=self._root + key,
            upload_id=upload_id,
            part_number=number,
            data=data,
            headers={"Content-MD5": base64.b64encode(digest).decode()},
        )
        return UploadedPart(number=number, etag=_part_etag(resp.etag) or digest.hex().upper())

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
        resp = self._call(
            self._bucket.upload_part_copy,
            key,
            source_bucket_name=src.bucket,
            source_key=src._root + src_key,
            byte_range=byte_range,
            target_key=self._root + key,
            target_upload_id=upload_id,
            target_part_number=number,
            headers=_pinned(etag),
        )
        _drain(resp)
        etag = _part_etag(resp.etag)
        if etag is None:
            raise StorageError(
                ErrorKind.UNEXPECTED, f"{self.location} answered UploadPartCopy without an ETag"
            )
        return UploadedPart(number=number, etag=etag)

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        content_md5: str | None = None,
    ) -> ObjectInfo:
        resp = self._call(
            self._bucket.complete_multipart_upload,
            key,
            key=self._root + key,
            upload_id=upload_id,
            parts=[PartInfo(p.number, p.etag) for p in parts],
        )
        _drain(resp)
        # The answer has no size; HEAD gives it along with the CRC-64 of the whole object.
        return self.head(key)

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        resp = self._call(
            self._bucket.list_multipart_uploads,
            prefix,
            prefix=self._root + prefix,
            max_uploads=min(limit, 1000),
        )
        return [
            (u.key[len(self._root) :], u.upload_id)
            for u in resp.upload_list
            if u.key.startswith(self._root)
        ]

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._call(
                self._bucket.abort_multipart_upload,
                key,
                key=self._root + key,
                upload_id=upload_id,
            )
        except StorageError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND or exc.code == "NoSuchBucket":
                raise

    def presign_get(self, key: str, *, expires_in: int) -> str:
        # A v1 query signature (OSSAccessKeyId, Expires, Signature; STS adds security-token).
        # Anonymous, oss2 answers the plain URL with a bare '?' after it.
        seconds = presign_seconds(expires_in)
        url: str = self._call(
            self._bucket.sign_url,
            key,
            method="GET",
            key=self._root + key,
            expires=seconds,
            slash_safe=True,
        )
        return url.removesuffix("?")

    # -- private helpers ---------------------------------------------------------------------

    def _call(self, operation: Callable[..., Any], key: str | None, /, **params: Any) -> Any:
        try:
            return operation(**params)
        except Exception as exc:
            raise _translate(exc, key, bucket=self.bucket) from exc

    def _copy_source(self, source: ObjectStore, key: str) -> OssStore:
        if not isinstance(source, OssStore) or not self.can_copy_from(source):
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"no server-side copy from {source.location} to {self.location}",
                key=key,
            )
        return source


def _check_download(resp: Any) -> None:
    """A whole object read: the CRC-64 of the bytes received must be the one OSS states."""
    if resp.content_range is None:
        oss2.utils.check_crc("get object", resp.client_crc, resp.server_crc, resp.request_id)


def _drain(resp: Any) -> None:
    """Read an answer's unread XML so its connection goes back to the pool."""
    # The call succeeded: a connection lost while draining costs a reconnect, nothing more.
    with contextlib.suppress(Exception):
        resp.resp.read()


def _info(
    key: str,
    size: int,
    etag: str | None,
    last_modified: datetime | None,
    crc64: int | None = None,
) -> ObjectInfo:
    etag = strip_etag(etag)
    # A simple upload's ETag is the content MD5 (OSS writes it in upper case); a multipart
    # one has '-N'.
    md5 = etag if etag is not None and _MD5_HEX.fullmatch(etag) else None
    return ObjectInfo(
        key=key,
        size=size,
        etag=etag,
        last_modified=last_modified,
        md5=md5,
        crc64=str(crc64) if crc64 is not None else None,
    )


def _part_etag(etag: str | None) -> str | None:
    """A part's ETag as OSS sent it (upper case): CompleteMultipartUpload gets it back as is."""
    if not etag:
        return None
    return etag.strip().strip('"') or None


def _unix_time(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _pinned(etag: str | None) -> dict[str, str] | None:
    """The header that makes a copy take version `etag` of its source only. OSS ETags are
    upper-case hex; ours are lower-cased, and OSS compares them as sent."""
    if etag is None:
        return None
    return {"x-oss-copy-source-if-match": f'"{etag.upper() if _HEX.fullmatch(etag) else etag}"'}


_HEX = re.compile(r"[0-9a-f]{32}(-[0-9]+)?")
