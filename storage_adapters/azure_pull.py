"""Copies into Azure that Azure makes itself from another provider's presigned GET URL (Put Blob
From URL): which objects may go that way, the call, and how its failures read.

The copy is pinned to the listed version by the source's MD5, sent as x-ms-source-content-md5:
Azure hashes the bytes it fetched and refuses to commit others (400 Md5Mismatch). Only a
plain-MD5 ETag (an S3 or OSS single-part upload) gives that MD5 before any byte moves; a
multipart ETag does not, nor does a block of an object (its MD5 is nobody's to state), so those
objects are not pulled but streamed, where the copier hashes what it reads.

A presigned URL is a secret: it appears in no error raised here (the SDK's own logging drops
the x-ms-copy-source header; see _scrubbed for our messages)."""

from __future__ import annotations

import base64
import re
from typing import Any

from azure.storage.blob import BlobClient

from storage_adapters.azure_errors import translate
from storage_adapters.base import ObjectInfo, ObjectStore
from storage_adapters.common import strip_etag
from storage_adapters.errors import ErrorKind, StorageError, changed

MiB = 1024 * 1024
# Azure's limit for one Put Blob From URL; larger objects are streamed (see module docstring).
MAX_PUT_BLOB_FROM_URL = 5000 * MiB
_PLAIN_MD5 = re.compile(r"[0-9a-fA-F]{32}")
# What a server lacking the call answers: Azurite says 501 APINotImplemented; an older API
# version or a gateway refuses the headers.
_LACKS_THE_CALL = frozenset(
    {"APINotImplemented", "NotImplemented", "UnsupportedHeader", "InvalidHeaderValue"}
)


class LacksPull(StorageError):
    """The server has no Put Blob From URL: the store stops trying it."""


class SourceUnreachable(StorageError):
    """Azure could not connect to the source's endpoint (one only the worker reaches): the
    object is streamed, and that source account is not offered to Azure again."""


def plain_md5(etag: str | None) -> str | None:
    """The MD5 an S3/OSS ETag states (a single-part upload's: 32 hex digits), else None."""
    etag = strip_etag(etag)
    return etag if etag is not None and _PLAIN_MD5.fullmatch(etag) else None


def refusal(size: int | None, etag: str | None, key: str) -> StorageError | None:
    """Why this object is not pulled (UNSUPPORTED: the copier streams it), or None."""
    reason = None
    if plain_md5(etag) is None:
        reason = "its ETag is not a plain MD5 (a multipart upload), so nothing pins the version"
    elif size is None or size > MAX_PUT_BLOB_FROM_URL:
        reason = f"it is larger than Put Blob From URL's {MAX_PUT_BLOB_FROM_URL // MiB} MiB"
    if reason is None:
        return None
    return StorageError(ErrorKind.UNSUPPORTED, f"not copied from a URL: {reason}", key=key)


def pull(
    blob: BlobClient,
    source: ObjectStore,
    src_key: str,
    dst_key: str,
    *,
    size: int,
    etag: str,
    expires_in: int,
    wait: float,
) -> ObjectInfo:
    """Put Blob From URL of version `etag` (a plain MD5) of `src_key` onto `blob`, waiting up
    to `wait` seconds for Azure's answer (it comes once the whole object is in)."""
    md5 = bytes.fromhex(plain_md5(etag) or "")
    url = source.presign_get(src_key, expires_in=expires_in)
    try:
        resp: dict[str, Any] = blob.upload_blob_from_url(
            url,
            overwrite=True,
            # Properties from the request, not from the S3/OSS answer: the Content-MD5 below
            # is the one Azure verified.
            include_source_blob_properties=False,
            source_content_md5=bytearray(md5),
            headers={"x-ms-blob-content-md5": base64.b64encode(md5).decode()},
            read_timeout=wait,
        )
    except Exception as exc:
        error = _failure(exc, source, src_key, dst_key, etag, url)
        # The SDK's error holds the request (its x-ms-copy-source header is the URL); it is
        # chained only when its text holds no part of the URL's signature.
        raise error from (None if _holds(exc, url) else exc)
    stated = resp.get("content_md5")
    return ObjectInfo(
        key=dst_key,
        size=size,
        etag=strip_etag(str(resp.get("etag") or ""), lower=False),
        last_modified=resp.get("last_modified"),
        md5=bytes(stated).hex() if stated else None,
    )


def _failure(
    exc: BaseException, source: ObjectStore, src_key: str, dst_key: str, etag: str, url: str
) -> StorageError:
    error = translate(exc, dst_key)
    where = f"{source.location.rstrip('/')}/{src_key}"
    if error.code in _LACKS_THE_CALL or error.status == 501:
        return LacksPull(
            ErrorKind.UNSUPPORTED,
            f"the server has no Put Blob From URL ({error.status} {error.code})",
            key=dst_key,
            status=error.status,
            code=error.code,
        )
    if error.kind is ErrorKind.CHECKSUM_MISMATCH:
        # Azure fetched bytes whose MD5 is not the listed ETag: another version now, or an
        # object whose ETag was never its MD5 (S3 SSE-KMS/SSE-C), which the stream handles.
        now = source.head(src_key).etag
        if strip_etag(now) != strip_etag(etag):
            return changed(src_key, etag, now)
        return StorageError(
            ErrorKind.UNSUPPORTED,
            f"not copied from a URL: {where}'s ETag {etag} is not the MD5 of its bytes",
            key=dst_key,
        )
    if error.code == "CannotVerifyCopySource":
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        if headers.get("x-ms-copy-source-status-code") is None:
            # Azure reached no server at all: a source only the worker can see (a private
            # endpoint). The worker streams it, and its store stops offering it to Azure.
            return SourceUnreachable(
                ErrorKind.UNSUPPORTED,
                f"Azure could not reach the copy source {where}: the worker streams it",
                key=dst_key,
                status=error.status,
                code=error.code,
            )
        status = _int(headers.get("x-ms-copy-source-status-code")) or error.status
        said = headers.get("x-ms-copy-source-error-code") or ""
        message = f"Azure could not read the copy source {where}: it answered {status} {said}"
        if status == 404:
            return StorageError(
                ErrorKind.NOT_FOUND, message.rstrip(), key=src_key, status=404, code=error.code
            )
        if status == 412:
            return changed(src_key, etag)
        kind = ErrorKind.PERMISSION_DENIED if status in (401, 403) else ErrorKind.UNAVAILABLE
        return StorageError(kind, message.rstrip(), key=dst_key, status=status, code=error.code)
    return _scrubbed(error, url)


def _scrubbed(error: StorageError, url: str) -> StorageError:
    """`error` with the URL, and its query string (the signature), masked in its message."""
    message = error.message
    query = url.partition("?")[2]
    for secret in (url, query):
        if secret:
            message = message.replace(secret, "***")
    if message == error.message:
        return error
    return StorageError(
        error.kind,
        message,
        key=error.key,
        transient=error.transient,
        retry_after=error.retry_after,
        status=error.status,
        code=error.code,
    )


def _holds(exc: BaseException, url: str) -> bool:
    query = url.partition("?")[2]
    text = f"{exc}\n{exc!r}"
    return url in text or bool(query and query in text)


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
