"""A proxy in front of Azurite that adds the two calls Azurite lacks, Put Blob From URL and Put
Block From URL, made as Azure makes them: the proxy (the "service") GETs the source URL itself.

Every other request goes to Azurite unchanged, path and headers included: a SharedKey signature
covers the method, the x-ms-* headers and /account/path?query, not the Host, so Azurite checks
it as if the client had come straight. The two pull calls are answered here and written into
Azurite with the account key (Put Block, then Put Block List for a whole blob: Azurite stores no
Content-MD5 unless told, as Azure does not promise one either).

What Azure does, and so this does (Azure REST "Put Blob From URL", "Put Block From URL"):
- x-ms-copy-source: the URL fetched; x-ms-copy-source-authorization: sent as its Authorization.
- x-ms-source-range (Put Block From URL): the bytes asked for, as a Range of the GET.
- x-ms-source-content-md5: the MD5 of the bytes fetched must be it, else 400 Md5Mismatch and
  nothing is committed. Put Blob From URL answers the fetched bytes' MD5 as Content-MD5.
- x-ms-source-if-match: sent to the source as If-Match (412 SourceConditionNotMet).
- x-ms-blob-content-md5 / -type: the new blob's properties.
- limits: 5000 MiB per Put Blob From URL (409), 4000 MiB per block (413).
- a source that cannot be reached: 500 CannotVerifyCopySource; one answering non-2xx:
  CannotVerifyCopySource with its status (404, 403, 412 ... 5xx as 500), and the
  x-ms-copy-source-status-code / -error-code headers.
Not checked here: the caller's SharedKey signature on the two pull calls (Azurite checks every
other request's).

`counters.pulled` counts the bytes the proxy fetched from sources: what Azure moved, not the
worker; GET /_pull_proxy/counters answers them as JSON (for a proxy in a process of its own:
`python -m tests.azure_pull_proxy AZURITE_URL ACCOUNT KEY [FROM=TO ...]` prints its URL, then
serves).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from azure.storage.blob import BlobBlock, BlobServiceClient, ContentSettings

MiB = 1024 * 1024
MAX_PUT_BLOB_FROM_URL = 5000 * MiB
MAX_BLOCK_FROM_URL = 4000 * MiB
_BLOCK = 32 * MiB  # the proxy stages a pulled blob in blocks of this size (bounded memory)
_READ = 4 * MiB


@dataclass
class _Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pulled: int = 0
    asked_put_blob_from_url: int = 0  # every call, answered or refused
    put_blob_from_url: int = 0
    put_block_from_url: int = 0

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class AzurePullProxy:
    """Listens on 127.0.0.1; `url` is the account URL to give an AzureBlobStore."""

    def __init__(
        self,
        azurite_url: str,
        account_name: str,
        account_key: str,
        *,
        routes: dict[str, str] | None = None,
    ) -> None:
        """`routes` maps a source URL's host:port to the host:port the proxy connects to
        instead (Azure's own way to the source: the Host header, which a presigned URL signs,
        stays as it was)."""
        self._routes = routes or {}
        parts = urlsplit(azurite_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._account = account_name
        self._service = BlobServiceClient(
            azurite_url,
            credential={"account_name": account_name, "account_key": account_key},
            retry_total=0,
            max_single_put_size=_BLOCK,
        )
        self.counters = _Counters()
        self._source = requests.Session()
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self._account}"

    def __enter__(self) -> AzurePullProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._service.close()
        self._source.close()

    # -- the two calls -----------------------------------------------------------------------

    def put_blob_from_url(self, container: str, blob: str, headers: Any) -> dict[str, str]:
        self.counters.add(asked_put_blob_from_url=1)
        answer = self._fetch(headers, None)
        size = _length(answer)
        if size is None or size > MAX_PUT_BLOB_FROM_URL:
            answer.close()
            raise _Refused(
                409,
                "CannotVerifyCopySource",
                "The source must answer a Content-Length of at most 5000 MiB.",
            )
        client = self._service.get_blob_client(container, blob)
        digest = hashlib.md5()
        block_ids: list[str] = []
        pending = bytearray()
        got = 0
        try:
            for chunk in answer.iter_content(_READ):
                digest.update(chunk)
                got += len(chunk)
                pending += chunk
                if len(pending) >= _BLOCK:
                    block_ids.append(self._stage(client, len(block_ids), pending))
                    pending = bytearray()
        except requests.RequestException as exc:
            raise _Refused(500, "CannotVerifyCopySource", "The source read broke.") from exc
        finally:
            answer.close()
        self.counters.add(pulled=got, put_blob_from_url=1)
        if got != size:
            raise _Refused(500, "CannotVerifyCopySource", "The source sent a short body.")
        if pending:
            block_ids.append(self._stage(client, len(block_ids), pending))
        _check_md5(headers, digest.digest())
        stored_md5 = headers.get("x-ms-blob-content-md5")
        settings = ContentSettings(
            content_type=headers.get("x-ms-blob-content-type"),
            content_md5=bytearray(base64.b64decode(stored_md5)) if stored_md5 else None,
        )
        resp = client.commit_block_list(
            [BlobBlock(b) for b in block_ids], content_settings=settings
        )
        return {
            "ETag": str(resp["etag"]),
            "Last-Modified": format_datetime(cast(datetime, resp["last_modified"]), usegmt=True),
            "Content-MD5": base64.b64encode(digest.digest()).decode(),
            "x-ms-request-server-encrypted": "true",
        }

    def put_block_from_url(
        self, container: str, blob: str, block_id: str, headers: Any
    ) -> dict[str, str]:
        wanted = headers.get("x-ms-source-range")
        if wanted:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            if last and int(last) - int(first) + 1 > MAX_BLOCK_FROM_URL:
                raise _Refused(413, "RequestBodyTooLarge", "A block is at most 4000 MiB.")
        answer = self._fetch(headers, wanted)
        try:
            data = answer.content
        except requests.RequestException as exc:
            raise _Refused(500, "CannotVerifyCopySource", "The source read broke.") from exc
        finally:
            answer.close()
        self.counters.add(pulled=len(data), put_block_from_url=1)
        if len(data) > MAX_BLOCK_FROM_URL:
            raise _Refused(413, "RequestBodyTooLarge", "A block is at most 4000 MiB.")
        _check_md5(headers, hashlib.md5(data).digest())
        client = self._service.get_blob_client(container, blob)
        # The block id as the caller encoded it (the SDK's stage_block would encode again).
        client._client.block_blob.stage_block(
            block_id=block_id, content_length=len(data), body=data
        )
        return {
            "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "x-ms-request-server-encrypted": "true",
        }

    def _fetch(self, headers: Any, byte_range: str | None) -> requests.Response:
        url = headers.get("x-ms-copy-source")
        if not url:
            raise _Refused(400, "MissingRequiredHeader", "x-ms-copy-source is required.")
        sent: dict[str, str] = {}
        if byte_range:
            sent["Range"] = byte_range
        if auth := headers.get("x-ms-copy-source-authorization"):
            sent["Authorization"] = auth
        if match := headers.get("x-ms-source-if-match"):
            sent["If-Match"] = match
        where = urlsplit(url)
        if where.netloc in self._routes:
            sent["Host"] = where.netloc
            url = where._replace(netloc=self._routes[where.netloc]).geturl()
        try:
            answer = self._source.get(url, headers=sent, stream=True, timeout=30)
        except requests.RequestException as exc:
            raise _Refused(
                500,
                "CannotVerifyCopySource",
                "Could not verify the copy source within the specified time.",
            ) from exc
        if not 200 <= answer.status_code < 300:
            status = answer.status_code
            answer.close()
            code = "SourceConditionNotMet" if status == 412 else "CannotVerifyCopySource"
            raise _Refused(
                status if 400 <= status < 500 else 500,
                code,
                f"The copy source answered {status}.",
                **{
                    "x-ms-copy-source-status-code": str(status),
                    "x-ms-copy-source-error-code": answer.reason or "",
                },
            )
        return answer

    def _stage(self, client: Any, index: int, data: bytearray) -> str:
        block_id = f"pull-{index:08d}"
        client.stage_block(block_id, bytes(data))
        return block_id

    # -- everything else ---------------------------------------------------------------------

    def forward(self, handler: _Handler, body: bytes) -> None:
        conn = http.client.HTTPConnection(*self._upstream, timeout=120)
        try:
            conn.putrequest(
                handler.command, handler.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in handler.headers.items():
                conn.putheader(name, value)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            handler.send_response_only(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            for name, value in resp.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    handler.send_header(name, value)
            if length is None:
                data = resp.read()
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
                return
            handler.send_header("Content-Length", length)
            handler.end_headers()
            while chunk := resp.read(_READ):
                handler.wfile.write(chunk)
        finally:
            conn.close()


def _length(answer: requests.Response) -> int | None:
    try:
        return int(answer.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _check_md5(headers: Any, digest: bytes) -> None:
    wanted = headers.get("x-ms-source-content-md5")
    if wanted and base64.b64decode(wanted) != digest:
        raise _Refused(
            400,
            "Md5Mismatch",
            "The MD5 value specified in the request did not match with the MD5 value "
            "calculated by the server.",
        )


class _Handler(BaseHTTPRequestHandler):
    proxy: AzurePullProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        comp = query.get("comp", [""])[0]
        if parts.path == "/_pull_proxy/counters":
            self._counters()
            return
        pull = self.command == "PUT" and self.headers.get("x-ms-copy-source")
        is_blob = pull and not comp and self.headers.get("x-ms-blob-type") == "BlockBlob"
        is_block = pull and comp == "block"
        if not (is_blob or is_block):
            self.proxy.forward(self, body)
            return
        # /ACCOUNT/CONTAINER/BLOB...
        _, _, container, blob = parts.path.split("/", 3)

        try:
            if is_block:
                headers = self.proxy.put_block_from_url(
                    container, unquote(blob), query["blockid"][0], self.headers
                )
            else:
                headers = self.proxy.put_blob_from_url(container, unquote(blob), self.headers)
        except _Refused as exc:
            self._error(exc)
            return
        self.send_response_only(201, "Created")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("x-ms-version", self.headers.get("x-ms-version") or "2021-12-02")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _counters(self) -> None:
        c = self.proxy.counters
        body = json.dumps(
            {
                "pulled": c.pulled,
                "put_blob_from_url": c.put_blob_from_url,
                "put_block_from_url": c.put_block_from_url,
            }
        ).encode()
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, exc: _Refused) -> None:
        body = (
            '<?xml version="1.0" encoding="utf-8"?><Error>'
            f"<Code>{exc.code}</Code><Message>{exc.message}</Message></Error>"
        ).encode()
        self.send_response_only(exc.status)
        self.send_header("x-ms-error-code", exc.code)
        for name, value in exc.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _route


def main() -> None:
    azurite_url, account, key, *routes = sys.argv[1:]
    route = dict(r.split("=", 1) for r in routes)  # FROM_HOST:PORT=TO_HOST:PORT
    with AzurePullProxy(azurite_url, account, key, routes=route) as proxy:
        print(proxy.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
