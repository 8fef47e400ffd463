"""The lean path for per-object S3 requests (storage_adapters/s3_wire.py), beyond the contract
every S3 store passes (tests/integration/test_adapter_contract.py runs it both ways)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storage_adapters.base import StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.s3 import S3Store
from tests.servers import make_bucket

pytestmark = pytest.mark.s3


class _Redirecting(BaseHTTPRequestHandler):
    """Answers everything as S3 does a bucket in another region, and notes who asked."""

    agents: list[str] = []

    def _answer(self) -> None:
        type(self).agents.append(self.headers.get("User-Agent", ""))
        body = (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>PermanentRedirect</Code>"
            b"<Message>The bucket is in this region: eu-west-1.</Message></Error>"
        )
        self.send_response(301)
        self.send_header("x-amz-bucket-region", "eu-west-1")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client dropping a redirected connection is expected here


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    _Redirecting.agents = []
    server = _QuietServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_hands_the_store_to_boto3(redirecting_server: str) -> None:
    """A bucket in another region: boto3 knows how to follow, so the store gives the request,
    and every later one, to boto3, whose answer decides the outcome."""
    store = S3Store(
        StorageSpec(
            "s3",
            "bucket",
            endpoint=redirecting_server,
            credentials={"accesskey_id": "AKIDEXAMPLE", "accesskey_secret": "secret"},
        ),
        timeout=5,
    )
    with pytest.raises(StorageError) as caught:
        store.head("k")
    assert caught.value.kind is ErrorKind.INVALID_CONFIG  # boto3's verdict: PermanentRedirect
    agents = list(_Redirecting.agents)
    assert "Botocore" not in agents[0]  # the lean path asked first
    assert any("Botocore" in a for a in agents[1:])  # then boto3

    _Redirecting.agents.clear()
    with pytest.raises(StorageError):
        store.read("k", max_size=10)
    assert _Redirecting.agents and all("Botocore" in a for a in _Redirecting.agents)


def test_a_body_left_unread_does_not_garble_the_next_answer(rclone_s3: dict[str, str]) -> None:
    """A read given up after its first chunk (a copy abandoned) closes its connection; one
    connection in the pool makes every later request reuse or replace it."""
    bucket = f"wire-{uuid.uuid4().hex[:10]}"
    make_bucket(rclone_s3, bucket)
    store = S3Store(
        StorageSpec(
            "s3",
            bucket,
            endpoint=rclone_s3["endpoint"],
            credentials={
                "accesskey_id": rclone_s3["access_key"],
                "accesskey_secret": rclone_s3["secret_key"],
            },
        ),
        max_pool_connections=1,
    )
    big = bytes(range(256)) * 4096 * 3  # 3 MiB
    store.put("big", big)
    store.put("small", b"hello")
    for _ in range(5):
        chunks = store.open("big", chunk_size=64 * 1024)
        assert len(next(chunks)) == 64 * 1024
        chunks.close()  # type: ignore[attr-defined]
        assert store.read("small", max_size=10).data == b"hello"
        assert store.head("big").size == len(big)
        with pytest.raises(StorageError) as caught:  # refused by its size, unread
            store.read("big", max_size=10)
        assert caught.value.kind is ErrorKind.PRECONDITION_FAILED
        assert store.head("small").size == 5
    assert b"".join(store.open("big", chunk_size=1 << 20)) == big


def test_keys_are_signed_and_sent_as_boto3_sends_them(rclone_s3: dict[str, str]) -> None:
    """Keys with spaces, plus signs, percent signs, Unicode and reserved characters go through
    every lean request (rclone serve s3 checks each signature) and copy server-side."""
    bucket = f"wire-{uuid.uuid4().hex[:10]}"
    make_bucket(rclone_s3, bucket)
    spec = StorageSpec(
        "s3",
        bucket,
        root="root dir/",
        endpoint=rclone_s3["endpoint"],
        credentials={
            "accesskey_id": rclone_s3["access_key"],
            "accesskey_secret": rclone_s3["secret_key"],
        },
    )
    lean, boto3_only = S3Store(spec), S3Store(spec, wire=False)
    for key in ("a b/c+d%20e.png", "ünï/cödé 猫.json", "x/!$&'()*,;=@[]~.bin"):
        data = key.encode() * 3
        info = lean.put(key, data)
        assert boto3_only.read(key, max_size=1000).data == data
        assert lean.read(key, max_size=1000).data == data
        assert lean.head(key).etag == info.etag == boto3_only.head(key).etag
        copied = lean.copy_from(lean, key, "copies/" + key, size=len(data))
        assert copied.etag == info.etag
        assert boto3_only.read("copies/" + key, max_size=1000).data == data
        lean.delete("copies/" + key)
        with pytest.raises(StorageError) as caught:
            boto3_only.head("copies/" + key)
        assert caught.value.kind is ErrorKind.NOT_FOUND
