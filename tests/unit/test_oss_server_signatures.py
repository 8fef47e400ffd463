"""The OSS test server checks v1 signatures as OSS does and answers oss2 as OSS does.

If it let a bad signature through, the adapter's credential tests would prove nothing; if it
answered differently from OSS, the adapter's other tests would prove little more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import subprocess
import sys
from collections.abc import Iterator
from email.message import Message
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import oss2
import pytest

from tests.oss_server import OssTestServer, Request, string_to_sign

AK, SK = "test-access-key", "test-secret-key"
BUCKET = "sig-test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OssTestServer]:
    with OssTestServer(tmp_path_factory.mktemp("oss"), AK, SK) as running:
        running.make_bucket(BUCKET)
        yield running


def bucket(server: OssTestServer, *, ak: str = AK, sk: str = SK, **opts: object) -> oss2.Bucket:
    return oss2.Bucket(oss2.Auth(ak, sk), server.endpoint, BUCKET, **opts)


def signed_headers(
    method: str, key: str, *, params: dict[str, str] | None = None, **headers: str
) -> dict[str, str]:
    """The headers oss2 itself would send, signature included."""
    req = oss2.http.Request(method, "http://unused", params=params, headers=headers)
    oss2.Auth(AK, SK)._sign_request(req, BUCKET, key)
    return {name: value for name, value in req.headers.items() if value is not None}


def send(
    server: OssTestServer,
    method: str,
    key: str,
    headers: dict[str, str],
    *,
    params: dict[str, str] | None = None,
    body: bytes = b"",
    host: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    where = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=5)
    path = f"/{quote(key, safe='')}" if host else f"/{BUCKET}/{quote(key, safe='')}"
    path += f"?{urlencode(params)}" if params else ""
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or where.netloc)
    for name, value in {**headers, "Content-Length": str(len(body))}.items():
        conn.putheader(name, value)
    conn.endheaders(body)
    resp = conn.getresponse()
    answer = (resp.status, dict(resp.getheaders()), resp.read())
    conn.close()
    return answer


def error_code(body: bytes) -> str:
    return oss2.exceptions._parse_error_body(body).get("Code", "")


def test_oss2_requests_are_accepted(server: OssTestServer) -> None:
    b = bucket(server)
    b.put_object("dir/a b+c", b"hello", headers={"x-oss-meta-owner": "me"})
    assert b.get_object("dir/a b+c").read() == b"hello"
    assert [o.key for o in b.list_objects_v2(prefix="dir/").object_list] == ["dir/a b+c"]
    assert b.get_bucket_info().name == BUCKET


def test_a_wrong_secret_is_refused(server: OssTestServer) -> None:
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch) as caught:
        bucket(server, sk="wrong").put_object("k", b"x")
    assert caught.value.status == 403
    assert caught.value.details["StringToSign"].startswith("PUT\n")
    assert caught.value.request_id


def test_an_unknown_access_key_or_no_signature_is_refused(server: OssTestServer) -> None:
    with pytest.raises(oss2.exceptions.ServerError) as caught:
        bucket(server, ak="nobody").get_object("k")
    assert (caught.value.status, caught.value.code) == (403, "InvalidAccessKeyId")
    headers = signed_headers("GET", "k")
    del headers["authorization"]
    status, _, body = send(server, "GET", "k", headers)
    assert (status, error_code(body)) == (403, "AccessDenied")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-oss-meta-owner", "someone-else"),
        ("x-oss-meta-added", "after signing"),
        ("Content-Type", "text/html"),
        ("Content-MD5", base64.b64encode(hashlib.md5(b"other").digest()).decode()),
    ],
)
def test_a_header_changed_after_signing_is_refused(
    server: OssTestServer, header: str, value: str
) -> None:
    body = b"signed content"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers = signed_headers(
        "PUT", "k", **{"x-oss-meta-owner": "me", "Content-Type": "text/plain", "Content-MD5": md5}
    )
    assert send(server, "PUT", "k", headers, body=body)[0] == 200  # as signed: accepted
    tampered = {name: v for name, v in headers.items() if name.lower() != header.lower()}
    status, _, answer = send(server, "PUT", "k", {**tampered, header: value}, body=body)
    assert (status, error_code(answer)) == (403, "SignatureDoesNotMatch")


def test_another_key_or_subresource_than_signed_is_refused(server: OssTestServer) -> None:
    bucket(server).put_object("k", b"x")
    headers = signed_headers("DELETE", "k", params={"uploadId": "A" * 32})
    status, _, body = send(server, "DELETE", "k", headers, params={"uploadId": "B" * 32})
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")
    status, _, body = send(server, "GET", "other", signed_headers("GET", "k"))
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")
    assert send(server, "GET", "k", signed_headers("GET", "k"))[0] == 200


def test_a_stale_date_is_refused(server: OssTestServer) -> None:
    headers = {"Date": formatdate(0, usegmt=True)}
    req = Request("GET", BUCKET, "k", {}, _message(headers), b"")
    digest = hmac.new(SK.encode(), string_to_sign(req).encode(), hashlib.sha1).digest()
    headers["Authorization"] = f"OSS {AK}:{base64.b64encode(digest).decode()}"
    status, _, body = send(server, "GET", "k", headers)
    assert (status, error_code(body)) == (403, "RequestTimeTooSkewed")


def get_url(url: str) -> tuple[int, bytes]:
    """A plain GET, no headers of ours: how a signed URL's holder fetches it."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=5)
    conn.request("GET", f"{where.path}?{where.query}")
    resp = conn.getresponse()
    answer = (resp.status, resp.read())
    conn.close()
    return answer


def test_a_signed_url_is_accepted_until_it_expires(server: OssTestServer) -> None:
    b = bucket(server)
    b.put_object("u/a b+c", b"by url")
    for slash_safe in (False, True):  # '/' in the key escaped or not: one signature
        url = b.sign_url("GET", "u/a b+c", 60, slash_safe=slash_safe)
        assert "Signature=" in url and "Expires=" in url
        assert get_url(url) == (200, b"by url")
    status, body = get_url(b.sign_url("GET", "u/a b+c", -1))  # expired a second ago
    assert (status, error_code(body)) == (403, "AccessDenied")
    assert b"Request has expired" in body


def test_a_signed_url_changed_after_signing_is_refused(server: OssTestServer) -> None:
    b = bucket(server)
    b.put_object("u/mine", b"mine")
    b.put_object("u/other", b"other")
    url = b.sign_url("GET", "u/mine", 60, slash_safe=True)
    expires = urlsplit(url).query.split("Expires=")[1].split("&")[0]
    for tampered in (
        url.replace("u/mine", "u/other"),  # another key
        url.replace(f"Expires={expires}", f"Expires={int(expires) + 3600}"),  # living longer
        url.replace("Signature=", "Signature=A"),
    ):
        status, body = get_url(tampered)
        assert (status, error_code(body)) == (403, "SignatureDoesNotMatch"), tampered
    wrong_secret = bucket(server, sk="wrong").sign_url("GET", "u/mine", 60)
    status, body = get_url(wrong_secret)
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")
    status, body = get_url(bucket(server, ak="nobody").sign_url("GET", "u/mine", 60))
    assert (status, error_code(body)) == (403, "InvalidAccessKeyId")
    status, body = get_url(url.split("&Signature=")[0])  # no signature: anonymous
    assert (status, error_code(body)) == (403, "AccessDenied")


def test_a_signed_url_signs_its_expiry_in_the_dates_place(server: OssTestServer) -> None:
    """The server's string to sign for a URL is the one oss2 signed (checked by hand here,
    so that a server and client wrong in the same way would not pass unnoticed)."""
    url = bucket(server).sign_url("GET", "u/k", 60)
    query = dict(parse_qsl(urlsplit(url).query))
    req = Request("GET", BUCKET, "u/k", query, _message({}), b"")
    to_sign = string_to_sign(req, query["Expires"])
    assert to_sign == f"GET\n\n\n{query['Expires']}\n/{BUCKET}/u/k"
    digest = hmac.new(SK.encode(), to_sign.encode(), hashlib.sha1).digest()
    assert base64.b64encode(digest).decode() == query["Signature"]


def test_virtual_host_style_is_served(server: OssTestServer) -> None:
    bucket(server).put_object("v/key", b"by host")
    host = f"{BUCKET}.{server.domain}:{urlsplit(server.endpoint).port}"
    status, headers, body = send(server, "GET", "v/key", signed_headers("GET", "v/key"), host=host)
    assert (status, body) == (200, b"by host")
    assert headers["ETag"] == f'"{hashlib.md5(b"by host").hexdigest().upper()}"'


def test_answers_carry_etag_crc64_and_request_id(server: OssTestServer) -> None:
    b = bucket(server)
    put = b.put_object("h", b"123456789")
    assert put.etag == hashlib.md5(b"123456789").hexdigest().upper()
    assert put.crc == 0x995DC9BBDF1939FA  # CRC-64/XZ's check value: what OSS calls crc64ecma
    head = b.head_object("h")
    assert (head.server_crc, head.etag, head.request_id) == (put.crc, put.etag, head.request_id)
    assert head.request_id
    part = b.get_object("h", byte_range=(2, 4))
    assert (part.status, part.read(), part.content_range) == (206, b"345", "bytes 2-4/9")
    with pytest.raises(oss2.exceptions.NoSuchKey):  # the HEAD's x-oss-err names the code
        b.head_object("missing")
    with pytest.raises(oss2.exceptions.InvalidDigest):
        b.put_object("h", b"x", headers={"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="})


def test_listings_page_and_url_encode_keys(server: OssTestServer) -> None:
    b = bucket(server)
    keys = ["l/a", "l/b/1", "l/b/2", "l/c d%+é", "l/e\tf"]
    for key in keys:
        b.put_object(key, b"x")
    v2 = [o.key for o in oss2.ObjectIteratorV2(b, prefix="l/", max_keys=1)]
    v1 = [o.key for o in oss2.ObjectIterator(b, prefix="l/", max_keys=2)]
    assert v1 == v2 == sorted(keys)
    folders = oss2.ObjectIteratorV2(b, prefix="l/", delimiter="/", max_keys=1)
    assert [o.key for o in folders] == ["l/a", "l/b/", "l/c d%+é", "l/e\tf"]
    after = b.list_objects_v2(prefix="l/", start_after="l/b/1")
    assert [o.key for o in after.object_list] == ["l/b/2", "l/c d%+é", "l/e\tf"]
    result = b.batch_delete_objects(keys)
    assert sorted(result.deleted_keys) == sorted(keys)
    assert b.list_objects_v2(prefix="l/").object_list == []


def test_multipart_with_part_copy_and_list_parts(server: OssTestServer) -> None:
    b = bucket(server)
    b.put_object("src", b"0123456789")
    upload_id = b.init_multipart_upload("mp").upload_id
    first = b.upload_part("mp", upload_id, 1, b"a" * server.min_part_size)
    second = b.upload_part_copy(BUCKET, "src", (2, 5), "mp", upload_id, 2)
    assert second.etag == hashlib.md5(b"2345").hexdigest().upper()
    listed = b.list_parts("mp", upload_id).parts
    assert [(p.part_number, p.size) for p in listed] == [(1, server.min_part_size), (2, 4)]
    parts = [oss2.models.PartInfo(1, first.etag), oss2.models.PartInfo(2, second.etag)]
    b.complete_multipart_upload("mp", upload_id, parts)
    assert b.get_object("mp").read() == b"a" * server.min_part_size + b"2345"
    assert b.head_object("mp").etag.endswith("-2")


def test_it_runs_as_a_program(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tests.oss_server", "--root", str(tmp_path), "--port", "0"]
    command += ["--access-key", AK, "--secret-key", SK]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().split()[4]
        made = oss2.Bucket(oss2.Auth(AK, SK), endpoint, "from-cli")
        made.create_bucket()
        made.put_object("k", b"on disk")
        assert made.get_object("k").read() == b"on disk"
    finally:
        process.terminate()
        process.wait(timeout=5)
    assert (tmp_path / "from-cli").is_dir()


def _message(headers: dict[str, str]) -> Message:
    message = Message()
    for name, value in headers.items():
        message[name] = value
    return message
