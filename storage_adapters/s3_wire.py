"""The per-object S3 requests (GET, HEAD, PUT, CopyObject, DELETE) without boto3's pipeline.

An import makes one or two small requests per object, and boto3 spends about 1.3 ms of CPU on
each: parameter validation, endpoint rules, user agent, event hooks, a modelled response
parser. Measured on 2 cores, that was three quarters of a worker's CPU per object. Here the
same requests are signed by botocore's own SigV4 signer (`S3SigV4Auth`) and sent on a urllib3
connection pool (what botocore sends them on), reading only the headers the adapter uses:
about 0.2 ms each. Listing, multipart uploads and everything else stay on boto3.

Errors come back in the shape botocore gives them (`ClientError` with the S3 error code, the
status and headers), so `storage_adapters.s3_errors.translate` stays the one place they
become StorageErrors. An answer boto3 would follow and this path does not (a redirect to the
bucket's region) raises `Redirected`: the store then hands the request, and every later one,
to boto3.
"""

from __future__ import annotations

import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode, urlsplit

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path
from botocore.utils import check_dns_name, percent_encode

from storage_adapters.common import read_listing
from storage_adapters.netguard import NetGuard, guard_pool

# What botocore's serializer leaves unescaped in a key (its greedy `{Key+}` label) and in an
# x-amz-copy-source header.
_KEY_SAFE = "/~"
_COPY_SOURCE_SAFE = "-._~/"
# Error answers (and CopyObject's result) are small; a larger one is cut, not buffered whole.
_MAX_ERROR_BODY = 64 * 1024
# Answers boto3 follows by asking the bucket's region, and this path does not.
_REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
_REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "TemporaryRedirect"}
)


class Redirected(Exception):
    """The server pointed elsewhere (another region): boto3 knows how to follow."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the adapter reads from a successful answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def length(self) -> int:
        return int(self.headers.get("content-length") or 0)

    @property
    def last_modified(self) -> datetime | None:
        value = self.headers.get("last-modified")
        if not value:
            return None
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None


class S3Wire:
    """Signed requests on one bucket, over one keep-alive connection pool."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        region: str,
        path_style: bool,
        access_key: str | None,
        secret_key: str | None,
        session_token: str | None,
        timeout: float,
        pool_size: int,
        guard: NetGuard | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        base_path = parts.path.rstrip("/")
        dotted_tls = "." in bucket and parts.scheme == "https"  # the certificate wouldn't match
        if path_style or not check_dns_name(bucket) or dotted_tls:
            host = parts.netloc
            self._prefix = f"{base_path}/{percent_encode(bucket, safe=_KEY_SAFE)}/"
        else:  # virtual-hosted, as boto3 addresses AWS itself
            host = f"{bucket}.{parts.netloc}"
            self._prefix = f"{base_path}/"
        self._origin = f"{parts.scheme}://{host}"
        self.bucket = bucket
        self._signer = (
            S3SigV4Auth(Credentials(access_key, secret_key or "", session_token), "s3", region)
            if access_key
            else None
        )
        timeouts = urllib3.Timeout(connect=timeout, read=timeout)
        options: dict[str, Any] = {
            "maxsize": pool_size,
            "block": False,
            "timeout": timeouts,
            "retries": False,  # the adapter's caller retries (tenacity)
        }
        if parts.scheme == "https":
            options["ca_certs"] = get_cert_path(True)
            options["cert_reqs"] = "CERT_REQUIRED"
        self._pool = urllib3.connection_from_url(self._origin, **options)
        guard_pool(self._pool, guard)  # connections only where the spec's guard allows

    @staticmethod
    def usable(endpoint_url: str) -> bool:
        """Not behind an HTTP(S) proxy from the environment: boto3 honours one, this path
        would not."""
        parts = urlsplit(endpoint_url)
        proxies = urllib.request.getproxies()
        bypassed = urllib.request.proxy_bypass(parts.hostname or "")
        return parts.scheme not in proxies or bool(bypassed)

    def close(self) -> None:
        self._pool.close()

    # --- the requests -------------------------------------------------------------------

    def get(self, key: str, *, headers: Mapping[str, str] | None = None) -> Answer:
        """GET the whole object into memory (labels, small objects)."""
        return self._request("GetObject", "GET", key, headers=headers, read_body=True)

    def get_stream(
        self, key: str, *, chunk_size: int, headers: Mapping[str, str] | None = None
    ) -> tuple[Answer, Body]:
        """GET an object as chunks (`Body`: close it when done with it early)."""
        response = self._send("GetObject", "GET", key, headers=headers)
        return Answer(response.status, _lower(response.headers)), Body(response, chunk_size)

    def list(self, prefix: str, *, start_after: str | None, max_keys: int) -> Listing:
        """One ListObjectsV2 page. Keys come URL-encoded (`encoding-type=url`, as boto3 asks
        for them: XML 1.0 can't carry every character a key may hold) and are decoded."""
        query = {"list-type": "2", "encoding-type": "url", "max-keys": str(max_keys)}
        if prefix:
            query["prefix"] = prefix
        if start_after is not None:
            query["start-after"] = start_after
        response = self._send("ListObjectsV2", "GET", "", query=query, bucket_level=True)
        try:  # capped: a hostile endpoint may stream an endless "listing"
            body = read_listing(response.read, key=prefix)
        except BaseException:
            response.close()
            raise
        finally:
            response.release_conn()
        root = _xml(body)
        if root is None or _local(root.tag) != "ListBucketResult":
            raise _client_error("ListObjectsV2", 200, _lower(response.headers), root)
        return _listing(root)

    def head(self, key: str, *, part_number: int | None = None) -> Answer:
        """HeadObject; with `part_number`, of that part: its Content-Length and Content-Range,
        and the object's parts count (x-amz-mp-parts-count) when it was uploaded in parts."""
        query = {"partNumber": str(part_number)} if part_number is not None else None
        return self._request("HeadObject", "HEAD", key, query=query)

    def put(self, key: str, data: bytes | bytearray, *, content_md5: str) -> Answer:
        return self._request(
            "PutObject", "PUT", key, body=data, headers={"Content-MD5": content_md5}
        )

    def delete(self, key: str, *, if_match: str | None = None) -> Answer:
        headers = {"If-Match": f'"{if_match}"'} if if_match else {}
        return self._request("DeleteObject", "DELETE", key, headers=headers)

    def copy(
        self, src_bucket: str, src_key: str, key: str, *, if_match: str | None = None
    ) -> str | None:
        """CopyObject (of version `if_match` only, when given); the copy's ETag. S3 may
        answer 200 and put the error in the body."""
        source = percent_encode(f"{src_bucket}/{src_key}", safe=_COPY_SOURCE_SAFE)
        headers = {"x-amz-copy-source": source}
        if if_match:
            headers["x-amz-copy-source-if-match"] = f'"{if_match}"'
        answer = self._request("CopyObject", "PUT", key, headers=headers, read_body=True)
        root = _xml(answer.body)
        if root is None:
            return None
        if _local(root.tag) == "Error":
            raise _client_error("CopyObject", 200, answer.headers, root)
        etag = next((e.text for e in root.iter() if _local(e.tag) == "ETag"), None)
        return etag

    # --- plumbing ----------------------------------------------------------------------

    def _request(
        self, operation: str, method: str, key: str, *, read_body: bool = False, **send: Any
    ) -> Answer:
        """`_send`, its body read (kept with `read_body`) and its connection released."""
        response = self._send(operation, method, key, **send)
        data = _read_all(response)
        return Answer(response.status, _lower(response.headers), data if read_body else b"")

    def _send(
        self,
        operation: str,
        method: str,
        key: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        query: Mapping[str, str] | None = None,
        bucket_level: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        if bucket_level:  # the bucket itself: "/bucket" or "/" (virtual-hosted)
            path = self._prefix.rstrip("/") or "/"
        else:
            path = self._prefix + percent_encode(key, safe=_KEY_SAFE)
        if query:
            path += "?" + urlencode(sorted(query.items()), quote_via=quote, safe="-_.~")
        sent = dict(headers or {})
        if self._signer is not None:
            request = AWSRequest(method=method, url=self._origin + path, headers=sent, data=body)
            self._signer.add_auth(request)
            sent = dict(request.headers.items())
        response = self._pool.urlopen(
            method,
            path,
            body=body or None,
            headers=sent,
            preload_content=False,
            redirect=False,
            retries=False,
            # A read of a ranged or If-Match GET whose body is cut short must raise, as
            # botocore's does.
            enforce_content_length=True,
        )
        if response.status < 300:
            return response
        data = _read_all(response, limit=_MAX_ERROR_BODY)
        answer_headers = _lower(response.headers)
        root = _xml(data)
        code = _text(root, "Code") if root is not None else None
        if response.status in _REDIRECT_STATUSES or code in _REGION_CODES:
            raise Redirected(f"{operation} {key!r}: {response.status} {code or ''}".strip())
        raise _client_error(operation, response.status, answer_headers, root)


class Body:
    """An answer's body as chunks. The connection goes back to the pool once the body has
    been read to its end; a body closed before that closes its connection instead (what is
    left unread would garble the next answer on it).

    Each chunk is read when asked for and not kept: urllib3's own `stream()` generator
    would hold the last chunk it gave until asked for the next, and a streamed copy's
    chunk is a whole part, uploaded meanwhile."""

    def __init__(self, response: urllib3.BaseHTTPResponse, chunk_size: int) -> None:
        self._response: urllib3.BaseHTTPResponse | None = response
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        response = self._response
        if response is None:
            raise StopIteration
        try:
            data = response.read(self._chunk_size)
        except BaseException:
            self.close()
            raise
        if not data:
            response.release_conn()
            self._response = None
            raise StopIteration
        return data

    def close(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()
            response.release_conn()


def _read_all(response: urllib3.BaseHTTPResponse, *, limit: int | None = None) -> bytes:
    """The answer's body (at most `limit` bytes of it), its connection released: back to the
    pool when the body was read to the end, else closed."""
    try:
        data = response.read(limit) if limit is not None else response.read()
        if limit is not None and response.read(1):
            response.close()  # more than we keep: this connection can't be reused
    except BaseException:
        response.close()
        raise
    finally:
        response.release_conn()
    return data


@dataclass(frozen=True, slots=True)
class Listed:
    key: str
    size: int
    etag: str | None
    last_modified: datetime | None


@dataclass(frozen=True, slots=True)
class Listing:
    objects: list[Listed]
    truncated: bool


def _listing(root: ET.Element) -> Listing:
    objects: list[Listed] = []
    truncated = False
    # Decoded (form-style: "+" is a space) only when the server says it encoded them, as
    # boto3 does: some S3-compatible servers ignore encoding-type and send keys as they are.
    encoded = (_text(root, "EncodingType") or "").strip().lower() == "url"
    for element in root:
        tag = _local(element.tag)
        if tag == "Contents":
            fields = {_local(e.tag): e.text or "" for e in element}
            key = fields.get("Key", "")
            objects.append(
                Listed(
                    key=unquote_plus(key) if encoded else key,
                    size=int(fields.get("Size") or 0),
                    etag=fields.get("ETag") or None,
                    last_modified=_iso_time(fields.get("LastModified")),
                )
            )
        elif tag == "IsTruncated":
            truncated = (element.text or "").strip().lower() == "true"
    return Listing(objects, truncated)


def _iso_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)  # 3.11 reads S3's "2026-11-24T06:58:45.000Z"
    except ValueError:
        return None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _xml(data: bytes) -> ET.Element | None:
    if not data.strip():
        return None
    try:
        return ET.fromstring(data)  # noqa: S314 - small answers from the configured server
    except ET.ParseError:
        return None


def _text(root: ET.Element, name: str) -> str | None:
    for element in root:
        if _local(element.tag) == name:
            return element.text or ""
    return None


def _client_error(
    operation: str, status: int, headers: Mapping[str, str], root: ET.Element | None
) -> ClientError:
    """The error as botocore reports it: the S3 code (or, with no body, the status, as
    botocore gives HEAD errors), the message and the answer's metadata."""
    error: dict[str, Any] = {"Code": str(status), "Message": ""}
    if root is not None:
        for element in root:
            error[_local(element.tag)] = element.text or ""
    response: Any = {
        "Error": error,
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": dict(headers)},
    }
    return ClientError(response, operation)
