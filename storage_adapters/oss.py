"""Alibaba Cloud OSS through oss2 (v1 signatures, what oss2 sends by default)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import oss2
import oss2.exceptions as oss_errors
import requests.exceptions
import urllib3.exceptions
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
    read_listing,
    retry_after_seconds,
    still_version,
    strip_etag,
)
from storage_adapters.errors import ErrorKind, StorageError, changed
from storage_adapters.netguard import NetGuard, guarded_session, refused

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
        access_key = spec.credentials.get("accesskey_id") or ""
        secret = spec.credentials.get("accesskey_secret") or ""
        token = spec.credentials.get("security_token") or ""
        auth: Any
        if not access_key:
            auth = oss2.AnonymousAuth()
        elif token:
            auth = oss2.StsAuth(access_key, secret, token)
        else:
            auth = oss2.Auth(access_key, secret)
        try:
            # One attempt per call: oss2's Bucket methods do not retry (only its listing
            # iterators do, unused here) and its requests adapters have max_retries=0. The
            # tenacity layer is the only one that retries.
            self._bucket = _Bucket(
                auth,
                spec.endpoint,
                spec.bucket,
                session=_shared_session(max_pool_connections, spec.guard),
                connect_timeout=timeout,  # oss2 gives it to requests as connect and read timeout
                enable_crc=True,
            )
        except ValueError as exc:  # urllib's "Port could not be cast to integer value"
            raise StorageError(
                ErrorKind.INVALID_CONFIG, f"bad OSS endpoint {spec.endpoint!r}: {exc}"
            ) from exc
        except Exception as exc:  # oss2's ClientError for a malformed endpoint or bucket name
            raise _translate(exc, None, bucket=spec.bucket) from exc
        # The endpoint as oss2 normalised it (scheme://host[:port]), so spellings agree.
        self._endpoint: str = self._bucket.endpoint
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
            while chunk := resp.read(chunk_size):
                yield chunk
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

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        digest = hashlib.md5(data).digest()
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


class _Bucket(oss2.Bucket):
    """oss2's Bucket, its XML answers (a listing above all) read capped: oss2 would read a
    hostile endpoint's endless "listing" whole into memory."""

    @staticmethod
    def _parse_result(resp: Any, parse_func: Any, klass: Any) -> Any:
        result = klass(resp)
        internal = resp.response  # requests' response
        if internal._content_consumed:  # oss2 already read an empty answer's body
            parse_func(result, internal._content if isinstance(internal._content, bytes) else b"")
            return result
        chunks = internal.iter_content(1024 * 1024)  # its (decoded) body
        try:
            body = read_listing(lambda _: next(chunks, b""), key="an OSS answer")
        except StorageError:
            internal.close()  # the rest unread: this connection can't be reused
            raise
        parse_func(result, body)
        return result


def _shared_session(pool_size: int, guard: NetGuard | None) -> oss2.Session:
    """One oss2 Session (a requests connection pool) per pool size and connection guard,
    shared by every store: requests go out with each store's own signature, so credentials
    never mix. Its connections go only where the guard allows (also `bucket.endpoint`, the
    host oss2 actually contacts) and it follows no redirect."""
    with _sessions_lock:
        session = _sessions.get((pool_size, guard))
        if session is None:
            session = _sessions[(pool_size, guard)] = oss2.Session(pool_size=pool_size)
            session.session = guarded_session(
                guard, pool_connections=pool_size, pool_maxsize=pool_size
            )
        return session


_sessions: dict[tuple[int, NetGuard | None], oss2.Session] = {}
_sessions_lock = threading.Lock()


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


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers else None
    return retry_after_seconds(value)


_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchUpload", "NoSuchVersion", "404"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessForbidden",
        "403",
        "401",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "SecurityTokenExpired",
        "InvalidSecurityToken",
        "UserDisable",
    }
)


def _pinned(etag: str | None) -> dict[str, str] | None:
    """The header that makes a copy take version `etag` of its source only. OSS ETags are
    upper-case hex; ours are lower-cased, and OSS compares them as sent."""
    if etag is None:
        return None
    return {"x-oss-copy-source-if-match": f'"{etag.upper() if _HEX.fullmatch(etag) else etag}"'}


_HEX = re.compile(r"[0-9a-f]{32}(-[0-9]+)?")

_PRECONDITION = frozenset(
    {
        "PreconditionFailed",
        "412",
        "InvalidPart",
        "InvalidPartOrder",
        "EntityTooSmall",
        "EntityTooLarge",
        "FileTooLarge",
        "InvalidRange",
        "416",
    }
)
_RATE_LIMITED = frozenset(
    {
        "ServiceUnavailable",
        "ServerBusy",
        "QpsLimitExceeded",
        "Throttling",
        "TooManyRequests",
        "SlowDown",
        "DownloadTrafficRateLimitExceeded",
        "UploadTrafficRateLimitExceeded",
        "429",
        "503",
    }
)
_UNAVAILABLE = frozenset(
    {"InternalError", "RequestTimeout", "BadGateway", "GatewayTimeout", "500", "502", "504"}
)
_CHECKSUM = frozenset({"InvalidDigest", "BadDigest"})
_CONFIG = frozenset({"InvalidBucketName", "SecondLevelDomainForbidden", "PermanentRedirect", "301"})
_UNSUPPORTED = frozenset({"NotImplemented", "OperationNotSupported", "501", "InvalidObjectState"})
# Failures on the way: the request may succeed when made again.
_NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,  # refused, reset, connect timeout
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    http.client.IncompleteRead,
    ConnectionError,
    TimeoutError,
)
_BAD_URL = (
    requests.exceptions.SSLError,  # a certificate problem does not heal by itself
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
)


def _translate(exc: BaseException, key: str | None, *, bucket: str | None = None) -> StorageError:
    """The one place an oss2/requests failure becomes a StorageError."""
    if isinstance(exc, StorageError):
        return exc
    if (guarded := refused(exc)) is not None:  # a connection or redirect the guard refused
        return guarded
    if isinstance(exc, oss_errors.InconsistentError):  # CRC-64 of the bytes differs from OSS's
        detail = str(exc.body).rsplit("InconsistentError: ", 1)[-1]
        return StorageError(ErrorKind.CHECKSUM_MISMATCH, f"CRC-64 mismatch: {detail}", key=key)
    if isinstance(exc, oss_errors.RequestError):  # oss2's wrapper of a requests failure
        return _translate(exc.exception, key, bucket=bucket)
    if isinstance(exc, oss_errors.ClientError):  # oss2 refused the call before sending it
        return StorageError(ErrorKind.INVALID_CONFIG, exc.body, key=key)
    if isinstance(exc, oss_errors.OssError):
        code = str(exc.code or "")
        status = exc.status if isinstance(exc.status, int) and exc.status > 0 else None
        status_code = str(status or "")
        message = str(exc.message or code or f"HTTP {status}")
        if exc.request_id:
            message += f" (request id {exc.request_id})"
        facts: dict[str, Any] = {"key": key, "status": status, "code": code or None}
        if code == "NoSuchBucket":
            name = exc.details.get("BucketName") or bucket or "?"
            return StorageError(ErrorKind.NOT_FOUND, f"bucket {name!r} does not exist", **facts)
        table = (
            (_NOT_FOUND, ErrorKind.NOT_FOUND),
            (_DENIED, ErrorKind.PERMISSION_DENIED),
            (_PRECONDITION, ErrorKind.PRECONDITION_FAILED),
            (_CHECKSUM, ErrorKind.CHECKSUM_MISMATCH),
            (_CONFIG, ErrorKind.INVALID_CONFIG),
            (_UNSUPPORTED, ErrorKind.UNSUPPORTED),
            (_RATE_LIMITED, ErrorKind.RATE_LIMITED),
            (_UNAVAILABLE, ErrorKind.UNAVAILABLE),
        )
        # The error code decides; an unknown code falls back on the HTTP status.
        kind = next((k for codes, k in table if code in codes), None)
        kind = kind or next((k for codes, k in table if status_code in codes), None)
        if kind is None:
            is_5xx = status is not None and status >= 500
            kind = ErrorKind.UNAVAILABLE if is_5xx else ErrorKind.UNEXPECTED
        retry_after = None
        if kind is ErrorKind.RATE_LIMITED:
            retry_after = _retry_after(exc.headers)
        return StorageError(kind, message, retry_after=retry_after, **facts)
    if isinstance(exc, _BAD_URL):
        return StorageError(ErrorKind.INVALID_CONFIG, str(exc), key=key)
    if isinstance(exc, _NETWORK_ERRORS):
        return StorageError(ErrorKind.UNAVAILABLE, str(exc), key=key, transient=True)
    return StorageError(ErrorKind.UNEXPECTED, f"{type(exc).__name__}: {exc}", key=key)
