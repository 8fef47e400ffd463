"""An Alibaba Cloud OSS-protocol server for tests: objects on disk, v1 signatures checked.

No OSS emulator exists, and oss2 pointed at an S3 server writes empty copies without a word,
so the OSS adapter is tested against this: the part of the OSS REST API Bayport uses, with
OSS's own answers (upper-case hex ETags, `x-oss-hash-crc64ecma`, error XML, `x-oss-err` on
HEAD errors; signed URLs, refused once expired) and fault switches (`fail_next`,
`corrupt_next_get`, `corrupt_next_put`), and a quota mode (`set_quota`: at most N requests
a second per access key, the rest refused with 503 QpsLimitExceeded) with the traffic it
served counted per second (`traffic`).

Addressing: oss2 uses path style (`http://127.0.0.1:PORT/bucket/key`, '/' in the key escaped
as %2F) whenever the endpoint is an IP address or `localhost`; a Host of `bucket.<domain>` is
served virtual-host style.

    python -m tests.oss_server --root DIR --port 9000 --access-key AK --secret-key SK
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.etree import ElementTree as ET

import crcmod

# CRC-64/XZ (ECMA-182 reflected, init and xorout all ones): what OSS calls crc64ecma.
_crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_MAX_SKEW_SECONDS = 15 * 60
# Query parameters that belong to the signed resource in v1 signatures (OSS's documented list).
_SUBRESOURCE_NAMES = (
    "acl uploads location cors logging website referer lifecycle delete append tagging "
    "objectMeta uploadId partNumber security-token position img style styleName replication "
    "replicationProgress replicationLocation cname bucketInfo comp qos live status vod "
    "startTime endTime symlink x-oss-process response-content-type response-content-language "
    "response-expires response-cache-control response-content-disposition "
    "response-content-encoding restore callback callback-var continuation-token stat "
    "versions versioning versionId policy encryption worm wormId wormExtend inventory "
    "inventoryId x-oss-traffic-limit x-oss-request-payer sequential"
)
_SUBRESOURCES = frozenset(_SUBRESOURCE_NAMES.split())


class OssError(Exception):
    """An OSS error answer: status, code, message and any extra fields of the error XML."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.extra = status, code, message, extra
        self.headers: dict[str, str] = {}


@dataclass
class Request:
    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: Message
    body: bytes


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Record:
    """An object (or an uploaded part): its metadata, and the file holding its bytes."""

    key: str
    size: int
    etag: str
    crc64: str
    mtime: float
    blob: str
    type: str = "Normal"
    content_type: str = "application/octet-stream"

    def headers(self) -> dict[str, str]:
        return {"ETag": f'"{self.etag}"', "x-oss-hash-crc64ecma": self.crc64}


@dataclass
class Traffic:
    """What the server served, per access key and wall-clock second: requests (counted when
    let through the quota) and bytes moved (request bodies, GET bodies, server-side copies);
    and how many requests the quota refused."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    bytes: dict[tuple[str, int], int] = field(default_factory=dict)
    refused: int = 0

    def served(self, access_key: str, second: int) -> int:
        return self.requests.get((access_key, second), 0)

    def count(self, access_key: str, second: int, nbytes: int, *, requests: int = 1) -> None:
        where = (access_key, second)
        self.requests[where] = self.requests.get(where, 0) + requests
        self.bytes[where] = self.bytes.get(where, 0) + nbytes

    def per_second(self, access_key: str, *, of: str = "requests") -> list[int]:
        """Counts of each second from the first to the last with traffic (quiet ones: 0)."""
        table = self.requests if of == "requests" else self.bytes
        seconds = [s for k, s in table if k == access_key]
        if not seconds:
            return []
        return [table.get((access_key, s), 0) for s in range(min(seconds), max(seconds) + 1)]


@dataclass
class _Fault:
    method: str
    status: int
    code: str
    times: int
    retry_after: float | None


class OssTestServer:
    """The server; `start()` runs it in a background thread, `stop()` ends it."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        access_key: str,
        secret_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        domain: str = "oss-test.localhost",
        min_part_size: int = 100 * 1024,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.access_key, self.secret_key = access_key, secret_key
        self.domain, self.min_part_size = domain, min_part_size
        # (method, bucket, key) of the latest requests, for tests that count them.
        self.requests: deque[tuple[str, str, str]] = deque(maxlen=10_000)
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._corrupt: set[tuple[str, str]] = set()  # (method, key or bucket/key)
        self._quota: int | None = None
        self._copied = 0  # bytes the request being served copied server-side
        self.traffic = Traffic()
        self._http = ThreadingHTTPServer((host, port), _Handler)
        self._http.daemon_threads = True
        self._http.oss = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OssTestServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OssTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- fault switches and set-up ------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        code: str,
        times: int = 1,
        *,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `times` requests of `method` with this error, before any check."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), status, code, times, retry_after))

    def corrupt_next_get(self, key: str) -> None:
        """Flip one byte of the body of the next GET of `key` (the object's full key, or
        `bucket/key`). The headers still state the true ETag and CRC-64, as after a fault on
        the way."""
        with self._lock:
            self._corrupt.add(("GET", key))

    def corrupt_next_put(self, key: str) -> None:
        """Store the next PutObject of `key` (full key, or `bucket/key`) with one byte flipped,
        after checking its Content-MD5, and answer with the CRC-64 of what was stored."""
        with self._lock:
            self._corrupt.add(("PUT", key))

    def _corrupted(self, req: Request, data: bytes) -> bytes:
        for target in ((req.method, req.key), (req.method, f"{req.bucket}/{req.key}")):
            if target in self._corrupt and data:
                self._corrupt.discard(target)
                middle = len(data) // 2
                return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        return data

    def set_quota(self, per_second: int | None) -> None:
        """At most `per_second` requests in each second (wall clock, whole seconds) per
        access key; the others are answered 503 QpsLimitExceeded, as OSS does, and counted
        in `traffic.refused`. None: no quota."""
        with self._lock:
            self._quota = per_second

    def take_traffic(self) -> Traffic:
        """The traffic counted so far; counting starts again from nothing."""
        with self._lock:
            taken, self.traffic = self.traffic, Traffic()
            return taken

    def make_bucket(self, name: str) -> None:
        with self._lock:
            self._bucket(name, create=True)

    # -- requests --------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        second = int(time.time())
        access_key = _access_key_of(req)
        with self._lock:
            if self._quota is not None and self.traffic.served(access_key, second) >= self._quota:
                self.traffic.refused += 1
                raise OssError(503, "QpsLimitExceeded", "Please reduce your request rate.")
            self.traffic.count(access_key, second, len(req.body))
            self.requests.append((req.method, req.bucket, req.key))
            fault = next((f for f in self._faults if f.method == req.method), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                error = OssError(fault.status, fault.code, "injected by fail_next")
                if fault.retry_after is not None:
                    error.headers["Retry-After"] = f"{fault.retry_after:g}"
                raise error
        self._authenticate(req)
        with self._lock:
            self._copied = 0
            response = self._route(req)
            moved = self._copied + (len(response.body) if req.method == "GET" else 0)
            self.traffic.count(access_key, second, moved, requests=0)
            return response

    def _route(self, req: Request) -> Response:
        q, m = req.query, req.method
        if not req.bucket:
            pass  # service-level operations (ListBuckets, ...) are not served
        elif not req.key:
            if m == "PUT":
                self._bucket(req.bucket, create=True)
                return Response(headers={"Location": f"/{req.bucket}"})
            self._bucket(req.bucket)
            if m == "GET" and "bucketInfo" in q:
                return self._bucket_info(req)
            if m == "GET" and not q.keys() & (_SUBRESOURCES - {"continuation-token"}):
                return self._list(req)
            if m == "POST" and "delete" in q:
                return self._delete_multiple(req)
            if m == "GET" and "uploads" in q:
                return self._list_uploads(req)
        elif "uploadId" in q:
            if m == "PUT" and "partNumber" in q:
                return self._upload_part(req)
            actions = {"GET": self._list_parts, "POST": self._complete, "DELETE": self._abort}
            if m in actions:
                return actions[m](req)
        elif m == "POST" and "uploads" in q:
            return self._initiate(req)
        elif not q.keys() & _SUBRESOURCES:
            if m == "PUT":
                return self._copy(req) if "x-oss-copy-source" in req.headers else self._put(req)
            actions = {"GET": self._get, "HEAD": self._get, "DELETE": self._delete}
            if m in actions:
                return actions[m](req)
        raise OssError(501, "NotImplemented", f"{m} with {sorted(q)} is not served")

    def _authenticate(self, req: Request) -> None:
        auth = req.headers.get("Authorization", "")
        if not auth and "Signature" in req.query:
            self._authenticate_url(req)
            return
        access_key, _, signature = auth.removeprefix("OSS ").partition(":")
        if not auth.startswith("OSS ") or not signature:
            raise OssError(403, "AccessDenied", "You have no right to access this object.")
        self._check_access_key(access_key)
        date = req.headers.get("x-oss-date") or req.headers.get("Date") or ""
        try:
            skew = abs((datetime.now(UTC) - parsedate_to_datetime(date)).total_seconds())
        except (TypeError, ValueError):
            raise OssError(403, "AccessDenied", "The Date header is missing or invalid.") from None
        if skew > _MAX_SKEW_SECONDS:
            raise OssError(403, "RequestTimeTooSkewed", "The difference is too large.")
        self._check_signature(access_key, signature, string_to_sign(req))

    def _authenticate_url(self, req: Request) -> None:
        """A signed URL (oss2's `sign_url`, v1): OSSAccessKeyId, Expires (Unix seconds) and
        Signature in the query, Expires signed where a request signs its Date. Refused once
        Expires has passed, as OSS does, whatever the signature."""
        access_key = req.query.get("OSSAccessKeyId", "")
        expires = req.query.get("Expires", "")
        if not access_key or not expires.isdigit():
            raise OssError(403, "AccessDenied", "A signed URL needs OSSAccessKeyId and Expires.")
        self._check_access_key(access_key)
        now = time.time()
        if int(expires) < now:
            raise OssError(
                403,
                "AccessDenied",
                "Request has expired.",
                Expires=_iso(int(expires)),
                ServerTime=_iso(now),
            )
        self._check_signature(access_key, req.query["Signature"], string_to_sign(req, expires))

    def _check_access_key(self, access_key: str) -> None:
        if access_key != self.access_key:
            raise OssError(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
                OSSAccessKeyId=access_key,
            )

    def _check_signature(self, access_key: str, signature: str, to_sign: str) -> None:
        expected = hmac.new(self.secret_key.encode(), to_sign.encode(), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(expected).decode(), signature):
            raise OssError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
                StringToSign=to_sign,
                OSSAccessKeyId=access_key,
            )

    # -- buckets and records -------------------------------------------------------------------

    def _bucket(self, name: str, *, create: bool = False) -> Path:
        if not _BUCKET_NAME.fullmatch(name):
            raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.")
        path = self.root / name
        if create:
            (path / "objects").mkdir(parents=True, exist_ok=True)
            (path / "uploads").mkdir(exist_ok=True)
        elif not path.is_dir():
            raise OssError(
                404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=name
            )
        return path

    def _bucket_info(self, req: Request) -> Response:
        root = ET.Element("BucketInfo")
        bucket = ET.SubElement(root, "Bucket")
        created = self._bucket(req.bucket).stat().st_mtime
        _fill(bucket, Name=req.bucket, CreationDate=_iso(created), StorageClass="Standard")
        _fill(bucket, ExtranetEndpoint=self.endpoint, IntranetEndpoint=self.endpoint)
        _fill(bucket, Location="oss-test", Comment="")
        _fill(ET.SubElement(bucket, "Owner"), DisplayName=self.access_key, ID=self.access_key)
        _fill(ET.SubElement(bucket, "AccessControlList"), Grant="private")
        return _xml(root)

    def _object_file(self, bucket: str, key: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()
        return self._bucket(bucket) / "objects" / f"{name}.json"

    def _object(self, bucket: str, key: str) -> tuple[_Record, Path]:
        path = self._object_file(bucket, key)
        record = _load(path)
        if record is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        return record, path.parent / record.blob

    def _read_source(self, req: Request) -> tuple[_Record, bytes]:
        """The object `x-oss-copy-source: /bucket/url-encoded-key` names, and its bytes."""
        source = req.headers.get("x-oss-copy-source", "").split("?", 1)[0]
        bucket, _, key = source.lstrip("/").partition("/")
        if not key:
            raise OssError(400, "InvalidArgument", "x-oss-copy-source is malformed")
        record, blob = self._object(unquote(bucket), unquote(key))
        # OSS's x-oss-copy-source-if-match: copy that version of the source only.
        wanted = req.headers.get("x-oss-copy-source-if-match")
        if wanted is not None and wanted.strip('"').upper() != record.etag.upper():
            raise OssError(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            )
        data = blob.read_bytes()
        self._copied += len(data)
        return record, data

    # -- objects ---------------------------------------------------------------------------------

    def _put(self, req: Request) -> Response:
        _check_md5(req)
        etag = hashlib.md5(req.body).hexdigest().upper()
        record = self._save_object(req, self._corrupted(req, req.body), etag)
        return Response(headers=record.headers())

    def _save_object(self, req: Request, data: bytes, etag: str, kind: str = "Normal") -> _Record:
        content_type = req.headers.get("Content-Type") or "application/octet-stream"
        return _save(
            self._object_file(req.bucket, req.key), req.key, data, etag, kind, content_type
        )

    def _get(self, req: Request) -> Response:
        record, blob = self._object(req.bucket, req.key)
        headers = record.headers()
        headers["Content-Type"] = record.content_type
        headers["Last-Modified"] = formatdate(record.mtime, usegmt=True)
        headers["x-oss-object-type"] = record.type
        headers["x-oss-storage-class"] = "Standard"
        headers["Accept-Ranges"] = "bytes"
        if record.type == "Normal":
            headers["Content-MD5"] = base64.b64encode(bytes.fromhex(record.etag)).decode()
        if req.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(record.size)})
        data, status = blob.read_bytes(), 200
        # OSS answers an unusable Range with the whole object, unless asked to be standard.
        wanted = req.headers.get("Range")
        span = _range(wanted, len(data)) if wanted else None
        if span is not None:
            headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{len(data)}"
            data, status = data[span[0] : span[1] + 1], 206
        elif wanted and req.headers.get("x-oss-range-behavior") == "standard":
            raise OssError(416, "InvalidRange", "The requested range cannot be satisfied.")
        return Response(status, self._corrupted(req, data), headers)

    def _delete(self, req: Request) -> Response:
        path = self._object_file(req.bucket, req.key)
        record = _load(path)
        if record is not None:
            path.unlink()
            (path.parent / record.blob).unlink(missing_ok=True)
        return Response(204)

    def _copy(self, req: Request) -> Response:
        self._bucket(req.bucket)
        source, data = self._read_source(req)
        record = self._save_object(req, data, source.etag, source.type)
        root = ET.Element("CopyObjectResult")
        _fill(root, ETag=f'"{record.etag}"', LastModified=_iso(record.mtime))
        return _xml(root, record.headers())

    def _delete_multiple(self, req: Request) -> Response:
        if "Content-MD5" not in req.headers:
            raise OssError(400, "MissingArgument", "Content-MD5 is required", ArgumentName="MD5")
        _check_md5(req)
        request = _parse_xml(req.body)
        encode = req.query.get("encoding-type") == "url"
        root = ET.Element("DeleteResult")
        if encode:
            _fill(root, EncodingType="url")
        for node in request.findall("Object"):
            key = node.findtext("Key") or ""
            self._delete(Request("DELETE", req.bucket, key, {}, req.headers, b""))
            if (request.findtext("Quiet") or "").lower() != "true":
                _fill(ET.SubElement(root, "Deleted"), Key=_encoded(key, encode))
        return _xml(root)

    def _list(self, req: Request) -> Response:
        """ListObjects (v1, `marker`) and ListObjectsV2 (`list-type=2`)."""
        q = req.query
        v2, encode = q.get("list-type") == "2", q.get("encoding-type") == "url"
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        limit = int(q["max-keys"]) if q.get("max-keys", "").isdigit() else 100
        if not 0 < limit <= 1000:
            raise OssError(400, "InvalidArgument", "max-keys must be 1..1000")
        after = q.get("start-after", "") if v2 else q.get("marker", "")
        if v2 and q.get("continuation-token"):
            after = _decode_token(q["continuation-token"])
        # One more than asked for, to learn whether more remain.
        entries = self._scan(req.bucket, prefix, delimiter, after, limit + 1)
        truncated, entries = len(entries) > limit, entries[:limit]
        root = ET.Element("ListBucketResult")
        _fill(root, Name=req.bucket, Prefix=_encoded(prefix, encode), MaxKeys=str(limit))
        _fill(root, Delimiter=_encoded(delimiter, encode), IsTruncated=str(truncated).lower())
        if v2:
            _fill(root, StartAfter=_encoded(q.get("start-after", ""), encode))
            _fill(root, ContinuationToken=q.get("continuation-token", ""))
            _fill(root, KeyCount=str(len(entries)))
        else:
            _fill(root, Marker=_encoded(after, encode))
        if truncated:
            last = entries[-1] if isinstance(entries[-1], str) else entries[-1].key
            if v2:
                _fill(root, NextContinuationToken=_encoded(_encode_token(last), encode))
            else:
                _fill(root, NextMarker=_encoded(last, encode))
        if encode:
            _fill(root, EncodingType="url")
        for entry in entries:
            if isinstance(entry, str):
                _fill(ET.SubElement(root, "CommonPrefixes"), Prefix=_encoded(entry, encode))
                continue
            node = ET.SubElement(root, "Contents")
            _fill(node, Key=_encoded(entry.key, encode), LastModified=_iso(entry.mtime))
            _fill(node, ETag=f'"{entry.etag}"', Type=entry.type, Size=str(entry.size))
            _fill(node, StorageClass="Standard")
            if not v2 or q.get("fetch-owner") == "true":
                _fill(ET.SubElement(node, "Owner"), ID=self.access_key, DisplayName=self.access_key)
        return _xml(root)

    def _scan(
        self, bucket: str, prefix: str, delimiter: str, after: str, limit: int
    ) -> list[_Record | str]:
        """Up to `limit` objects and common prefixes (str) after `after`, in key order."""
        found = (_load(path) for path in (self._bucket(bucket) / "objects").glob("*.json"))
        candidates = sorted(
            (r for r in found if r and r.key.startswith(prefix) and r.key > after),
            key=lambda r: r.key,
        )
        entries: list[_Record | str] = []
        for record in candidates:
            if len(entries) == limit:
                break
            rest = record.key[len(prefix) :]
            if not delimiter or delimiter not in rest:
                entries.append(record)
                continue
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if common != after and common not in entries[-1:]:
                entries.append(common)
        return entries

    # -- multipart uploads -----------------------------------------------------------------------

    def _upload(self, req: Request) -> Path:
        path = self._bucket(req.bucket) / "uploads" / req.query["uploadId"]
        upload = path / "upload.json"
        if not re.fullmatch(r"[0-9A-F]{32}", path.name) or not upload.exists():
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist.")
        if json.loads(upload.read_text())["key"] != req.key:
            raise OssError(404, "NoSuchUpload", "The upload belongs to another key.")
        return path

    def _list_uploads(self, req: Request) -> Response:
        """ListMultipartUploads: the bucket's unfinished uploads below `prefix`, in key order
        (one page: the tests keep few)."""
        prefix = req.query.get("prefix", "")
        root = ET.Element("ListMultipartUploadsResult")
        _fill(
            root,
            Bucket=req.bucket,
            KeyMarker="",
            UploadIdMarker="",
            NextKeyMarker="",
            NextUploadIdMarker="",
            Delimiter="",
            Prefix=prefix,
            MaxUploads="1000",
            IsTruncated="false",
        )
        uploads = []
        for path in (self._bucket(req.bucket) / "uploads").glob("*/upload.json"):
            key = json.loads(path.read_text())["key"]
            if key.startswith(prefix):
                uploads.append((key, path.parent.name, path.stat().st_mtime))
        for key, upload_id, mtime in sorted(uploads):
            node = ET.SubElement(root, "Upload")
            _fill(node, Key=key, UploadId=upload_id, Initiated=_iso(mtime))
        return _xml(root)

    def _initiate(self, req: Request) -> Response:
        upload_id = uuid.uuid4().hex.upper()
        path = self._bucket(req.bucket) / "uploads" / upload_id
        path.mkdir()
        (path / "upload.json").write_text(json.dumps({"key": req.key}))
        root = ET.Element("InitiateMultipartUploadResult")
        _fill(root, Bucket=req.bucket, Key=req.key, UploadId=upload_id)
        return _xml(root)

    def _upload_part(self, req: Request) -> Response:
        path, number = self._upload(req), req.query["partNumber"]
        if not number.isdigit() or not 1 <= int(number) <= 10000:
            raise OssError(400, "InvalidArgument", "partNumber must be 1..10000")
        copying = "x-oss-copy-source" in req.headers
        if copying:  # UploadPartCopy
            data = self._read_source(req)[1]
            wanted = req.headers.get("x-oss-copy-source-range")
            span = _range(wanted, len(data)) if wanted else (0, len(data) - 1)
            if span is None:
                raise OssError(416, "InvalidRange", "The requested range cannot be satisfied.")
            data = data[span[0] : span[1] + 1]
        else:
            _check_md5(req)
            data = req.body
        etag = hashlib.md5(data).hexdigest().upper()
        part = _save(path / f"part-{int(number):05}.json", str(int(number)), data, etag)
        if not copying:
            return Response(headers=part.headers())
        root = ET.Element("CopyPartResult")
        _fill(root, LastModified=_iso(part.mtime), ETag=f'"{etag}"')
        return _xml(root, part.headers())

    def _parts(self, path: Path) -> dict[int, _Record]:
        found = (_load(p) for p in sorted(path.glob("part-*.json")))
        return {int(part.key): part for part in found if part}

    def _list_parts(self, req: Request) -> Response:
        path = self._upload(req)
        marker = int(req.query.get("part-number-marker") or 0)
        limit = int(req.query.get("max-parts") or 1000)
        parts = [p for n, p in self._parts(path).items() if n > marker]
        root = ET.Element("ListPartsResult")
        _fill(root, Bucket=req.bucket, Key=req.key, UploadId=path.name)
        _fill(root, PartNumberMarker=str(marker), MaxParts=str(limit))
        _fill(root, NextPartNumberMarker=parts[:limit][-1].key if parts else "0")
        _fill(root, IsTruncated=str(len(parts) > limit).lower())
        for part in parts[:limit]:
            node = ET.SubElement(root, "Part")
            _fill(node, PartNumber=part.key, LastModified=_iso(part.mtime))
            _fill(node, ETag=f'"{part.etag}"', HashCrc64ecma=part.crc64, Size=str(part.size))
        return _xml(root)

    def _complete(self, req: Request) -> Response:
        path = self._upload(req)
        wanted = [
            (int(node.findtext("PartNumber") or 0), (node.findtext("ETag") or "").strip('"'))
            for node in _parse_xml(req.body).findall("Part")
        ]
        if not wanted:
            raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.")
        if [n for n, _ in wanted] != sorted({n for n, _ in wanted}):
            raise OssError(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        parts, chunks, digests = self._parts(path), [], b""
        for index, (number, etag) in enumerate(wanted):
            part = parts.get(number)
            if part is None or part.etag != etag:
                raise OssError(400, "InvalidPart", "One or more of the specified parts not found.")
            if index < len(wanted) - 1 and part.size < self.min_part_size:
                raise OssError(400, "EntityTooSmall", "Your proposed upload is too small.")
            chunks.append((path / part.blob).read_bytes())
            digests += bytes.fromhex(part.etag)
        etag = f"{hashlib.md5(digests).hexdigest().upper()}-{len(wanted)}"
        record = self._save_object(req, b"".join(chunks), etag, "Multipart")
        shutil.rmtree(path)
        root = ET.Element("CompleteMultipartUploadResult")
        _fill(root, Location=f"{self.endpoint}/{req.bucket}/{quote(req.key)}")
        _fill(root, Bucket=req.bucket, Key=req.key, ETag=f'"{etag}"')
        return _xml(root, record.headers())

    def _abort(self, req: Request) -> Response:
        shutil.rmtree(self._upload(req))
        return Response(204)


def _access_key_of(req: Request) -> str:
    """The access key a request claims: in its Authorization header, or a signed URL's query."""
    auth = req.headers.get("Authorization", "")
    if not auth:
        return req.query.get("OSSAccessKeyId", "")
    return auth.removeprefix("OSS ").partition(":")[0]


def string_to_sign(req: Request, expires: str | None = None) -> str:
    """OSS v1: verb, Content-MD5, Content-Type, Date, the x-oss- headers, the resource. A
    signed URL signs its `expires` (Unix seconds) in the Date's place."""
    oss_headers = sorted(
        (name.lower(), value) for name, value in req.headers.items() if name.lower()[:6] == "x-oss-"
    )
    subresources = "&".join(
        f"{name}={value}" if value else name
        for name, value in sorted(req.query.items())
        if name in _SUBRESOURCES
    )
    resource = f"/{req.bucket}/{req.key}" if req.bucket else "/"
    resource += f"?{subresources}" if subresources else ""
    date = req.headers.get("x-oss-date") or req.headers.get("Date") or ""
    if expires is not None:
        date = expires
    return "\n".join(
        [
            req.method,
            req.headers.get("Content-MD5", ""),
            req.headers.get("Content-Type", ""),
            date,
            "".join(f"{name}:{value}\n" for name, value in oss_headers) + resource,
        ]
    )


def _load(path: Path) -> _Record | None:
    return _Record(**json.loads(path.read_text())) if path.exists() else None


def _save(
    path: Path,
    key: str,
    data: bytes,
    etag: str,
    kind: str = "Normal",
    content_type: str = "application/octet-stream",
) -> _Record:
    """Write `data` to a fresh file, then switch the record at `path` to it atomically."""
    blob = f"{path.stem}.{uuid.uuid4().hex}"
    (path.parent / blob).write_bytes(data)
    old = _load(path)
    record = _Record(key, len(data), etag, str(_crc64(data)), time.time(), blob, kind, content_type)
    path.with_suffix(".tmp").write_text(json.dumps(asdict(record)))
    os.replace(path.with_suffix(".tmp"), path)
    if old is not None:
        (path.parent / old.blob).unlink(missing_ok=True)
    return record


def _check_md5(req: Request) -> None:
    given = req.headers.get("Content-MD5")
    if given is None:
        return
    try:
        matches = base64.b64decode(given, validate=True) == hashlib.md5(req.body).digest()
    except binascii.Error:
        matches = False
    if not matches:
        raise OssError(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")


def _range(value: str, size: int) -> tuple[int, int] | None:
    """The inclusive span `bytes=a-b`, `bytes=a-` or `bytes=-n` names; None when unusable."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", value.strip())
    if not match or not any(match.groups()):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(0, size - int(last)), size - 1
    return (start, end) if start <= end else None


def _encoded(value: str, encode: bool) -> str:
    return quote(value, safe="/") if encode else value


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OssError(400, "InvalidArgument", "continuation-token is invalid") from None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _fill(parent: ET.Element, **children: str) -> None:
    for tag, text in children.items():
        ET.SubElement(parent, tag).text = text


def _parse_xml(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)  # noqa: S314 - a test server, fed by our own tests
    except ET.ParseError:
        raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.") from None


def _xml(root: ET.Element, headers: dict[str, str] | None = None) -> Response:
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(200, body, {**(headers or {}), "Content-Type": "application/xml"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as oss2's connection pool expects
    server_version = "AliyunOSS"
    # Headers and body go out in separate writes: with Nagle's algorithm on, the body waits
    # for the client's delayed ACK (~40 ms per small answer).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        oss: OssTestServer = self.server.oss  # type: ignore[attr-defined]
        request_id = uuid.uuid4().hex[:24].upper()
        try:
            response = oss.handle(self._parse(oss, self._read_body()))
        except OssError as error:
            root = ET.Element("Error")
            _fill(root, Code=error.code, Message=error.message, RequestId=request_id)
            _fill(root, HostId=self.headers.get("Host", ""), **error.extra)
            response = _xml(root, error.headers)
            response.status = error.status
            if self.command == "HEAD":  # no body: OSS puts the error XML in a header
                response.headers["x-oss-err"] = base64.b64encode(response.body).decode()
        self.send_response(response.status)
        headers = {"x-oss-request-id": request_id, **response.headers}
        headers.setdefault("Content-Length", str(len(response.body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and response.status != 204:
            self.wfile.write(response.body)

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _parse(self, oss: OssTestServer, body: bytes) -> Request:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        hostname = self.headers.get("Host", "").rsplit(":", 1)[0].lower()
        if hostname.endswith("." + oss.domain):  # virtual-host style: bucket.domain/key
            bucket, key = hostname[: -len(oss.domain) - 1], unquote(parts.path[1:])
        else:  # path style: /bucket/key
            raw_bucket, _, raw_key = parts.path[1:].partition("/")
            bucket, key = unquote(raw_bucket), unquote(raw_key)
        return Request(self.command, bucket, key, query, self.headers, body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []  # requests sends an empty iterable body (oss2's CRC adapter) chunked
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the folder holding the buckets")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--domain", default="oss-test.localhost", help="virtual-host domain")
    args = parser.parse_args(argv)
    server = OssTestServer(
        args.root,
        args.access_key,
        args.secret_key,
        host=args.host,
        port=args.port,
        domain=args.domain,
    )
    print(f"OSS test server on {server.endpoint} (root {args.root})", flush=True)
    try:
        server._http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._http.server_close()


if __name__ == "__main__":
    main()
