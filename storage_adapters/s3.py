"""Amazon S3 and S3-compatible servers (rclone, MinIO, moto, ...) through boto3.

The store itself; s3_client makes its connections (boto3's client and the lean path, s3_wire),
s3_answers reads what the server answers, and s3_errors maps every failure.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

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
from storage_adapters.s3_answers import last_part_fits, listing_page, object_info, part_layout
from storage_adapters.s3_client import new_client, new_wire
from storage_adapters.s3_errors import translate as _translate
from storage_adapters.s3_wire import Redirected, S3Wire

MiB = 1024 * 1024
GiB = 1024 * MiB
# The longest a SigV4 presigned URL may live (X-Amz-Expires): AWS refuses more than 7 days.
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600


class S3Store:
    """One bucket under one set of credentials; `spec.root` is a key prefix hidden from callers.

    With `spec.endpoint` set (an S3-compatible server) requests use path-style addressing.
    Without an access key the store is anonymous: it never falls back to the worker's own AWS
    identity. `multipart_copy=False` declares a server without UploadPartCopy (rclone serve s3).
    """

    def __init__(
        self,
        spec: StorageSpec,
        *,
        timeout: float = 60,
        max_pool_connections: int = 64,
        multipart_copy: bool = True,
        wire: bool = True,
    ) -> None:
        if not spec.bucket:
            raise StorageError(ErrorKind.INVALID_CONFIG, "an S3 storage needs a bucket name")
        self.bucket = spec.bucket
        self._root = normalize_root(spec.root)
        self._endpoint = spec.endpoint or None
        access_key = spec.credentials.get("accesskey_id") or None
        self._account = hashlib.sha256(
            f"s3\n{self._endpoint or 'aws'}\n{access_key or ''}".encode()
        ).hexdigest()
        self._client = new_client(spec, timeout=timeout, max_pool_connections=max_pool_connections)
        # The per-object requests take the lean path (s3_wire) unless `wire=False` or an
        # environment proxy is set; boto3 takes over for good if the server redirects.
        self._wire: S3Wire | None = None
        if wire:
            self._wire = new_wire(
                self._client, spec, timeout=timeout, pool_size=max_pool_connections
            )
        self.capabilities = Capabilities(
            lists_uploads=True,
            server_side_copy=True,
            server_side_copy_across_buckets=True,
            max_single_copy_size=5 * GiB,
            multipart_copy=multipart_copy,
            multipart_upload=True,
            min_part_size=5 * MiB,
            max_list_page=1000,
            presigned_urls=True,
        )

    @classmethod
    def from_spec(cls, spec: StorageSpec, **opts: Any) -> S3Store:
        return cls(spec, **opts)

    @property
    def account(self) -> str:
        return self._account

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self._root}"

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 1000) -> ListPage:
        limit = page_limit(limit, self.capabilities.max_list_page)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self._root + prefix,
            "MaxKeys": limit,
        }
        if cursor is not None:
            # StartAfter, not a continuation token: any key resumes a listing, even one saved
            # by another process or after the key itself was deleted.
            params["StartAfter"] = self._root + cursor
        listed = self._on_wire(
            prefix,
            lambda wire: wire.list(
                params["Prefix"], start_after=params.get("StartAfter"), max_keys=limit
            ),
        )
        if listed is not _BOTO3:
            return listing_page(
                [(o.key, o.size, o.etag, o.last_modified) for o in listed.objects],
                root=self._root,
                truncated=listed.truncated,
                prefix=prefix,
            )
        resp = self._call(self._client.list_objects_v2, prefix, **params)
        items = [
            (item["Key"], item.get("Size", 0), item.get("ETag"), item.get("LastModified"))
            for item in resp.get("Contents", ())
        ]
        return listing_page(
            items, root=self._root, truncated=bool(resp.get("IsTruncated")), prefix=prefix
        )

    def head(self, key: str) -> ObjectInfo:
        answer = self._on_wire(key, lambda wire: wire.head(self._root + key))
        if answer is not _BOTO3:
            sse = answer.headers.get("x-amz-server-side-encryption")
            sse_c = answer.headers.get("x-amz-server-side-encryption-customer-algorithm")
            info = object_info(key, answer.length, answer.etag, answer.last_modified)
        else:
            resp = self._call(
                self._client.head_object, key, Bucket=self.bucket, Key=self._root + key
            )
            sse, sse_c = resp.get("ServerSideEncryption"), resp.get("SSECustomerAlgorithm")
            info = object_info(
                key, resp["ContentLength"], resp.get("ETag"), resp.get("LastModified")
            )
        if _sse_opaque(sse, sse_c):
            # An SSE-KMS or SSE-C object's ETag is no MD5 of its content, 32 hex digits or not.
            return dataclasses.replace(info, md5=None)
        return info

    def part_layout(self, key: str) -> tuple[int, int] | None:
        first = self._head_part(key, 1)
        layout = part_layout(*first) if first is not None else None
        if layout is None or layout[1] == 1:
            return layout
        # Part 1's size making the count proves no more than that: the last part must be
        # what is left (a layout of unequal parts would cut the bytes elsewhere).
        last = self._head_part(key, layout[1])
        return layout if last is not None and last_part_fits(layout, *last) else None

    def _head_part(self, key: str, number: int) -> tuple[int, str | None, str | None] | None:
        """(Content-Length, PartsCount, Content-Range) of a HeadObject of part `number`;
        None for an object whose parts' ETags are no MD5s (SSE-KMS, SSE-C)."""
        answer = self._on_wire(key, lambda wire: wire.head(self._root + key, part_number=number))
        if answer is not _BOTO3:
            headers = answer.headers
            sse = headers.get("x-amz-server-side-encryption")
            if _sse_opaque(sse, headers.get("x-amz-server-side-encryption-customer-algorithm")):
                return None  # its parts' ETags are no MD5s: the layout proves nothing
            return answer.length, headers.get("x-amz-mp-parts-count"), headers.get("content-range")
        resp = self._call(
            self._client.head_object,
            key,
            Bucket=self.bucket,
            Key=self._root + key,
            PartNumber=number,
        )
        if _sse_opaque(resp.get("ServerSideEncryption"), resp.get("SSECustomerAlgorithm")):
            return None
        count = resp.get("PartsCount")
        return (
            resp["ContentLength"],
            None if count is None else str(count),
            resp.get("ContentRange"),
        )

    def open(
        self,
        key: str,
        *,
        chunk_size: int = 1024 * 1024,
        offset: int = 0,
        etag: str | None = None,
    ) -> Iterator[bytes]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._root + key}
        if offset > 0:
            params["Range"] = f"bytes={offset}-"
        if etag is not None:
            params["IfMatch"] = f'"{etag}"'
        try:
            started = self._start_read(key, params, chunk_size)
        except StorageError as exc:
            if etag is not None and exc.status == 412:
                raise changed(key, etag) from exc
            if offset > 0 and exc.status == 416:  # at or past the end
                return
            raise
        answer_etag, content_range, chunks = started
        try:
            # Checked here too: a server may ignore If-Match, or a Range.
            now = strip_etag(answer_etag)
            if etag is not None and now != strip_etag(etag):
                raise changed(key, etag, now)
            if offset > 0:
                check_range(key, offset, content_range)
            yield from chunks
        except Exception as exc:
            raise _translate(exc, key, bucket=self.bucket) from exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _start_read(
        self, key: str, params: dict[str, Any], chunk_size: int
    ) -> tuple[str | None, str | None, Iterator[bytes]]:
        """A GET begun: the answer's ETag and Content-Range, and its body's chunks."""
        headers = {}
        if "Range" in params:
            headers["Range"] = params["Range"]
        if "IfMatch" in params:
            headers["If-Match"] = params["IfMatch"]
        started = self._on_wire(
            key, lambda wire: wire.get_stream(params["Key"], chunk_size=chunk_size, headers=headers)
        )
        if started is not _BOTO3:
            answer, chunks = started
            return answer.etag, answer.headers.get("content-range"), chunks
        resp = self._call(self._client.get_object, key, **params)
        body = resp["Body"]

        def chunks_of_body() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            finally:
                body.close()

        return resp.get("ETag"), resp.get("ContentRange"), chunks_of_body()

    def get_bytes(self, key: str, *, max_size: int) -> bytes:
        return self.read(key, max_size=max_size).data

    def read(self, key: str, *, max_size: int) -> Blob:
        blob = self._on_wire(key, lambda wire: self._read_on_wire(wire, key, max_size))
        if blob is not _BOTO3:
            return blob
        resp = self._call(self._client.get_object, key, Bucket=self.bucket, Key=self._root + key)
        body = resp["Body"]
        try:
            if resp["ContentLength"] > max_size:
                raise StorageError(
                    ErrorKind.PRECONDITION_FAILED,
                    f"object is {resp['ContentLength']} bytes, more than the {max_size} allowed",
                    key=key,
                )
            data: bytes = body.read()
        except StorageError:
            raise
        except Exception as exc:
            raise _translate(exc, key, bucket=self.bucket) from exc
        finally:
            body.close()
        info = object_info(key, len(data), strip_etag(resp.get("ETag")), resp.get("LastModified"))
        return Blob(data=data, info=info)

    def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
        digest = hashlib.md5(data)
        content_md5 = base64.b64encode(digest.digest()).decode()
        answer = self._on_wire(
            key, lambda wire: wire.put(self._root + key, data, content_md5=content_md5)
        )
        if answer is not _BOTO3:
            etag = strip_etag(answer.etag)
            return ObjectInfo(key=key, size=len(data), etag=etag, md5=digest.hexdigest())
        resp = self._call(
            self._client.put_object,
            key,
            Bucket=self.bucket,
            Key=self._root + key,
            Body=data,
            ContentMD5=base64.b64encode(digest.digest()).decode(),
        )
        etag = strip_etag(resp.get("ETag"))
        return ObjectInfo(key=key, size=len(data), etag=etag, md5=digest.hexdigest())

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        # S3 servers that make a DELETE conditional (If-Match) are few: the HEAD first
        # decides for the others, and the header is sent as well, for those that honour it.
        if if_match is not None and not still_version(lambda: self.head(key), key, if_match):
            return  # gone already
        try:
            if (
                self._on_wire(key, lambda wire: wire.delete(self._root + key, if_match=if_match))
                is not _BOTO3
            ):
                return
            self._call(self._client.delete_object, key, Bucket=self.bucket, Key=self._root + key)
        except StorageError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND or exc.code == "NoSuchBucket":
                raise

    def can_copy_from(self, source: ObjectStore) -> bool:
        return isinstance(source, S3Store) and source.account == self.account

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
        pinned, etag = etag, self._copy_object(src, src_key, dst_key, if_match=etag)
        if pinned is not None and etag != pinned:
            # Not every S3 server honours x-amz-copy-source-if-match (rclone's and moto's
            # ignore it). A copy whose ETag is not the one pinned was made of another version
            # unless the source still has it (a multipart or KMS source's copy gets an ETag of
            # its own): then the copy is refused after the fact. It holds one whole version,
            # never a splice, and the object fails, to be copied again by the next run.
            now = src.head(src_key).etag
            if now != pinned:
                raise changed(src_key, pinned, now)
        if size is None or etag is None:
            # CopyObject does not say the size; the HEAD also proves the copy landed.
            return self.head(dst_key)
        return object_info(dst_key, size, etag, None)

    def _copy_object(
        self, src: S3Store, src_key: str, dst_key: str, *, if_match: str | None
    ) -> str | None:
        etag = self._on_wire(
            dst_key,
            lambda wire: wire.copy(
                src.bucket, src._root + src_key, self._root + dst_key, if_match=if_match
            ),
        )
        if etag is not _BOTO3:
            return strip_etag(etag)
        pinned = {"CopySourceIfMatch": f'"{if_match}"'} if if_match else {}
        resp = self._call(
            self._client.copy_object,
            dst_key,
            Bucket=self.bucket,
            Key=self._root + dst_key,
            CopySource={"Bucket": src.bucket, "Key": src._root + src_key},
            **pinned,
        )
        return strip_etag(resp.get("CopyObjectResult", {}).get("ETag"))

    def create_multipart(self, key: str) -> str:
        resp = self._call(
            self._client.create_multipart_upload, key, Bucket=self.bucket, Key=self._root + key
        )
        upload_id: str = resp["UploadId"]
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        digest = md5 or hashlib.md5(data).digest()
        resp = self._call(
            self._client.upload_part,
            key,
            Bucket=self.bucket,
            Key=self._root + key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ContentMD5=base64.b64encode(digest).decode(),
        )
        return UploadedPart(number=number, etag=strip_etag(resp.get("ETag")) or digest.hex())

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
        resp = self._call(
            self._client.upload_part_copy,
            key,
            Bucket=self.bucket,
            Key=self._root + key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": src.bucket, "Key": src._root + src_key},
            CopySourceRange=f"bytes={first}-{last}",
            **({"CopySourceIfMatch": f'"{etag}"'} if etag else {}),
        )
        etag = strip_etag(resp.get("CopyPartResult", {}).get("ETag"))
        if etag is None:
            # rclone serve s3 answers UploadPartCopy with 200 and an empty part.
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"{self.location} answered UploadPartCopy without a part ETag; "
                "open this storage with multipart_copy=False",
                key=key,
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
        self._call(
            self._client.complete_multipart_upload,
            key,
            Bucket=self.bucket,
            Key=self._root + key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"ETag": f'"{p.etag}"', "PartNumber": p.number} for p in parts]
            },
        )
        # The response has no size, and some servers' ETag here differs from HEAD's.
        return self.head(key)

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        resp = self._call(
            self._client.list_multipart_uploads,
            prefix,
            Bucket=self.bucket,
            Prefix=self._root + prefix,
            MaxUploads=min(limit, 1000),
        )
        return [
            (u["Key"][len(self._root) :], u["UploadId"])
            for u in resp.get("Uploads", ())
            if u["Key"].startswith(self._root)
        ]

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._call(
                self._client.abort_multipart_upload,
                key,
                Bucket=self.bucket,
                Key=self._root + key,
                UploadId=upload_id,
            )
        except StorageError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND or exc.code == "NoSuchBucket":
                raise

    def presign_get(self, key: str, *, expires_in: int) -> str:
        # botocore signs for the client's region (spec.region, else us-east-1): a bucket in
        # another region needs its region in the spec, as a URL cannot follow a redirect.
        params = {"Bucket": self.bucket, "Key": self._root + key}
        seconds = presign_seconds(expires_in, maximum=_MAX_PRESIGN_SECONDS)
        url: str = self._call(
            self._client.generate_presigned_url,
            key,
            ClientMethod="get_object",
            Params=params,
            ExpiresIn=seconds,
        )
        return url

    # -- private helpers ---------------------------------------------------------------------

    def _on_wire(self, key: str, request: Callable[[S3Wire], Any]) -> Any:
        """Make `request` on the lean path, its failures translated as boto3's are; or
        `_BOTO3` when boto3 must make it: there is no lean path, or the server redirected (a
        bucket in another region), which hands this store to boto3 for good."""
        wire = self._wire
        if wire is None:
            return _BOTO3
        try:
            return request(wire)
        except Redirected:
            self._wire = None
            return _BOTO3
        except StorageError:
            raise
        except Exception as exc:
            raise _translate(exc, key, bucket=self.bucket) from exc

    def _read_on_wire(self, wire: S3Wire, key: str, max_size: int) -> Blob:
        answer, chunks = wire.get_stream(self._root + key, chunk_size=256 * 1024)
        try:
            if answer.length > max_size:  # refused by its size, before reading it
                raise StorageError(
                    ErrorKind.PRECONDITION_FAILED,
                    f"object is {answer.length} bytes, more than the {max_size} allowed",
                    key=key,
                )
            data = b"".join(chunks)
        finally:
            chunks.close()
        return Blob(data=data, info=object_info(key, len(data), answer.etag, answer.last_modified))

    def _call(self, operation: Callable[..., Any], key: str | None, **params: Any) -> Any:
        try:
            return operation(**params)
        except Exception as exc:
            raise _translate(exc, key, bucket=self.bucket) from exc

    def _copy_source(self, source: ObjectStore, key: str) -> S3Store:
        if not isinstance(source, S3Store) or not self.can_copy_from(source):
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"no server-side copy from {source.location} to {self.location}",
                key=key,
            )
        return source


def _sse_opaque(sse: str | None, sse_c: str | None) -> bool:
    """Is an object's ETag (and each part's) no MD5 of its bytes: SSE-KMS or SSE-C?"""
    return bool(sse_c) or (sse or "").startswith("aws:kms")


# Returned by S3Store._on_wire when boto3 is to make the request.
_BOTO3: Any = object()
