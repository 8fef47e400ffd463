"""The ObjectStore contract (tests/contract.py) against OssStore on the OSS test server, and
what OSS adds: v1 signatures really refused, CRC-64 on every answer, faults mapped onto the
error vocabulary."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import oss2
import pytest
from oss2.utils import Crc64

from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.oss import OssStore
from storage_adapters.retry import call_with_retries
from tests.conftest import unavailable
from tests.contract import CredentialsContract, MakeStore, StoreContract, expect
from tests.oss_fixtures import make_oss_bucket, oss_store
from tests.oss_server import OssTestServer

MISSING_BUCKET = "bayport-no-such-bucket"


def crc64(data: bytes) -> str:
    crc = Crc64(0)
    crc.update(data)
    return str(crc.crc)


@pytest.fixture(scope="module")
def buckets(oss_server: dict[str, Any]) -> tuple[str, str]:
    names = (f"contract-{uuid.uuid4().hex[:10]}", f"peer-{uuid.uuid4().hex[:10]}")
    for name in names:
        make_oss_bucket(oss_server, name)
    return names


@pytest.fixture
def server(oss_server: dict[str, Any]) -> OssTestServer:
    if oss_server["server"] is None:
        unavailable("needs the OSS test server's fault switches, not a real OSS")
    test_server: OssTestServer = oss_server["server"]
    return test_server


class TestOssStore(StoreContract, CredentialsContract):
    @pytest.fixture
    def make_store(self, oss_server: dict[str, Any], buckets: tuple[str, str]) -> MakeStore:
        base = uuid.uuid4().hex[:12]  # every test in a fresh prefix of the module's bucket
        return lambda root="": oss_store(oss_server, buckets[0], root=f"{base}/{root}", timeout=10)

    @pytest.fixture
    def peer_store(self, oss_server: dict[str, Any], buckets: tuple[str, str]) -> ObjectStore:
        return oss_store(oss_server, buckets[1], root=uuid.uuid4().hex[:12])

    @pytest.fixture
    def missing_bucket_name(self) -> str:
        return MISSING_BUCKET

    @pytest.fixture
    def missing_bucket_store(self, oss_server: dict[str, Any]) -> ObjectStore:
        return oss_store(oss_server, MISSING_BUCKET)

    @pytest.fixture
    def bad_credentials_store(
        self, oss_server: dict[str, Any], buckets: tuple[str, str]
    ) -> ObjectStore:
        return oss_store(oss_server, buckets[0], secret="not-the-secret")

    # -- what OSS adds to the contract -------------------------------------------------------

    def test_capabilities(self, store: ObjectStore) -> None:
        caps = store.capabilities
        assert caps.max_single_copy_size == 1024**3  # CopyObject's documented 1 GB
        assert (caps.min_part_size, caps.max_list_page) == (100 * 1024, 1000)
        assert caps.multipart_copy and caps.server_side_copy_across_buckets

    def test_the_account_hides_the_key_and_tells_endpoints_apart(
        self, oss_server: dict[str, Any], store: ObjectStore
    ) -> None:
        for secret in (oss_server["access_key"], oss_server["secret_key"]):
            assert secret not in store.account and secret not in store.location
        same = oss_store(oss_server, "another-bucket")
        assert same.account == store.account and store.can_copy_from(same)
        elsewhere = OssStore(
            StorageSpec(
                "oss",
                "b-b",
                endpoint="http://127.0.0.1:1",
                credentials={"accesskey_id": oss_server["access_key"], "accesskey_secret": "x"},
            )
        )
        assert elsewhere.account != store.account
        assert not store.can_copy_from(elsewhere)

    def test_put_head_and_copy_state_md5_and_crc64(
        self, oss_server: dict[str, Any], store: ObjectStore
    ) -> None:
        data = os.urandom(5000)
        put = store.put("k", data)
        head = store.head("k")
        assert put.crc64 == head.crc64 == crc64(data)
        assert put.md5 == head.md5 == put.etag == hashlib.md5(data).hexdigest()
        copied = store.copy_from(store, "k", "copy", size=len(data))
        assert (copied.crc64, copied.md5) == (crc64(data), hashlib.md5(data).hexdigest())
        # OSS itself sends the ETag in upper case; the adapter reports it in lower case.
        assert isinstance(store, OssStore)
        raw = store._bucket.head_object(store._root + "k")
        assert raw.etag == hashlib.md5(data).hexdigest().upper()

    def test_a_multipart_object_states_its_crc64_but_no_md5(self, store: ObjectStore) -> None:
        size = store.capabilities.min_part_size
        chunks = [os.urandom(size), os.urandom(10)]
        upload_id = store.create_multipart("mp")
        parts = [store.upload_part("mp", upload_id, n, c) for n, c in enumerate(chunks, 1)]
        info = store.complete_multipart("mp", upload_id, parts)
        assert info.etag is not None and info.etag.endswith("-2") and info.md5 is None
        assert info.crc64 == crc64(b"".join(chunks))

    def test_parts_below_the_minimum_size_are_refused(self, store: ObjectStore) -> None:
        upload_id = store.create_multipart("k")
        parts = [store.upload_part("k", upload_id, n, b"small") for n in (1, 2)]
        error = expect(
            ErrorKind.PRECONDITION_FAILED,
            lambda: store.complete_multipart("k", upload_id, parts),
        )
        assert error.code == "EntityTooSmall"
        store.abort_multipart("k", upload_id)

    def test_a_wrong_secret_reaches_the_server_and_is_refused(
        self, bad_credentials_store: ObjectStore
    ) -> None:
        for call in (
            lambda: bad_credentials_store.list_page(""),
            lambda: bad_credentials_store.put("k", b"x"),
        ):
            error = expect(ErrorKind.PERMISSION_DENIED, call)
            assert (error.status, error.code, error.transient) == (
                403,
                "SignatureDoesNotMatch",
                False,
            )

    def test_an_unknown_access_key_is_permission_denied(
        self, oss_server: dict[str, Any], buckets: tuple[str, str]
    ) -> None:
        store = oss_store({**oss_server, "access_key": "nobody"}, buckets[0])
        error = expect(ErrorKind.PERMISSION_DENIED, lambda: store.list_page(""))
        assert (error.code, error.transient) == ("InvalidAccessKeyId", False)

    def test_an_unreachable_endpoint_is_a_transient_unavailable(self) -> None:
        store = OssStore(
            StorageSpec("oss", "b-b", endpoint="http://127.0.0.1:9", credentials={}), timeout=2
        )
        error = expect(ErrorKind.UNAVAILABLE, lambda: store.list_page(""))
        assert error.transient

    def test_a_malformed_endpoint_is_invalid_config(self) -> None:
        expect(
            ErrorKind.INVALID_CONFIG,
            lambda: OssStore(StorageSpec("oss", "b-b", endpoint="http://bad host:x")),
        )
        expect(ErrorKind.INVALID_CONFIG, lambda: OssStore(StorageSpec("oss", "b-b")))

    # -- faults of the test server -----------------------------------------------------------

    def test_a_503_is_transient_keeps_retry_after_and_is_retried(
        self, server: OssTestServer, store: ObjectStore
    ) -> None:
        store.put("k", b"data")
        server.fail_next("GET", 503, "ServiceUnavailable", retry_after=2)
        error = expect(ErrorKind.RATE_LIMITED, lambda: store.get_bytes("k", max_size=10))
        assert (error.transient, error.retry_after, error.status) == (True, 2.0, 503)
        assert store.get_bytes("k", max_size=10) == b"data"
        server.fail_next("GET", 503, "ServiceUnavailable", times=2)
        data = call_with_retries(
            lambda: store.get_bytes("k", max_size=10), attempts=3, initial_wait=0, max_wait=0
        )
        assert data == b"data"

    def test_oss2_makes_one_attempt_per_call(
        self, server: OssTestServer, store: ObjectStore
    ) -> None:
        """Only the tenacity layer retries: oss2 does not repeat a failed request itself."""
        server.fail_next("PUT", 500, "InternalError")
        before = len(server.requests)
        error = expect(ErrorKind.UNAVAILABLE, lambda: store.put("k", b"x"))
        assert error.transient
        assert len(server.requests) == before + 1  # had oss2 tried again, it would have worked
        store.put("k", b"x")

    @pytest.mark.parametrize(
        ("status", "code", "kind", "transient"),
        [
            (404, "NoSuchKey", ErrorKind.NOT_FOUND, False),
            (403, "AccessDenied", ErrorKind.PERMISSION_DENIED, False),
            (403, "", ErrorKind.PERMISSION_DENIED, False),
            (412, "PreconditionFailed", ErrorKind.PRECONDITION_FAILED, False),
            (503, "QpsLimitExceeded", ErrorKind.RATE_LIMITED, True),
            (429, "Throttling", ErrorKind.RATE_LIMITED, True),
            (429, "", ErrorKind.RATE_LIMITED, True),
            (500, "InternalError", ErrorKind.UNAVAILABLE, True),
            (400, "RequestTimeout", ErrorKind.UNAVAILABLE, True),
            (502, "", ErrorKind.UNAVAILABLE, True),
            (504, "GatewayTimeout", ErrorKind.UNAVAILABLE, True),
            (400, "InvalidArgument", ErrorKind.UNEXPECTED, False),
        ],
    )
    def test_error_answers_map_onto_the_vocabulary(
        self,
        server: OssTestServer,
        store: ObjectStore,
        status: int,
        code: str,
        kind: ErrorKind,
        transient: bool,
    ) -> None:
        """Through oss2 for real: HEAD answers carry the error in x-oss-err, GET in the body."""
        for method, call in (
            ("HEAD", lambda: store.head("k")),
            ("GET", lambda: store.list_page("")),
        ):
            server.fail_next(method, status, code)
            error = expect(kind, call)
            assert (error.status, error.transient) == (status, transient)

    def test_a_byte_corrupted_in_transit_is_caught(
        self, oss_server: dict[str, Any], server: OssTestServer, store: ObjectStore
    ) -> None:
        assert isinstance(store, OssStore)
        data = os.urandom(3000)
        store.put("k", data)
        full_key = store._root + "k"
        # What the caller sees: the bytes received do not match what HEAD states.
        server.corrupt_next_get(f"{store.bucket}/{full_key}")  # or the key alone
        raw = oss2.Bucket(
            oss2.Auth(oss_server["access_key"], oss_server["secret_key"]),
            oss_server["endpoint"],
            store.bucket,
            enable_crc=False,
        )
        received = raw.get_object(full_key).read()
        head = store.head("k")
        assert len(received) == head.size and received != data
        assert head.md5 != hashlib.md5(received).hexdigest()
        assert head.crc64 != crc64(received)
        # The adapter checks the CRC-64 of every whole download itself.
        server.corrupt_next_get(full_key)
        error = expect(ErrorKind.CHECKSUM_MISMATCH, lambda: store.get_bytes("k", max_size=3000))
        assert "CRC-64" in str(error)
        server.corrupt_next_get(full_key)
        chunks: list[bytes] = []
        with pytest.raises(StorageError) as caught:
            chunks.extend(store.open("k", chunk_size=1000))
        assert caught.value.kind is ErrorKind.CHECKSUM_MISMATCH
        # Raised after the last chunk: a caller commits nothing before the stream ends.
        assert len(b"".join(chunks)) == len(data)
        assert store.get_bytes("k", max_size=3000) == data  # the next read is clean

    def test_a_put_stored_other_than_sent_is_caught(
        self, server: OssTestServer, store: ObjectStore
    ) -> None:
        """oss2 compares the CRC-64 of what it sent with the one OSS answers."""
        assert isinstance(store, OssStore)
        server.corrupt_next_put(store._root + "k")
        error = expect(ErrorKind.CHECKSUM_MISMATCH, lambda: store.put("k", b"0123456789"))
        assert "CRC-64" in str(error)
        store.put("k", b"0123456789")
        assert store.get_bytes("k", max_size=10) == b"0123456789"


def test_client_side_failures_map_onto_the_vocabulary() -> None:
    """What no server answer produces: oss2's own refusals and wrapped network failures."""
    import requests

    from storage_adapters.oss import _translate

    crc = _translate(oss2.exceptions.InconsistentError("crc differs", "rid"), "k")
    assert (crc.kind, crc.transient) == (ErrorKind.CHECKSUM_MISMATCH, False)
    refused = _translate(oss2.exceptions.ClientError("key should not be empty"), "")
    assert (refused.kind, refused.transient) == (ErrorKind.INVALID_CONFIG, False)
    for network in (
        requests.exceptions.ConnectionError("reset"),
        requests.exceptions.ReadTimeout("slow"),
        requests.exceptions.ChunkedEncodingError("cut"),
    ):
        wrapped = _translate(oss2.exceptions.RequestError(network), "k")
        assert (wrapped.kind, wrapped.transient) == (ErrorKind.UNAVAILABLE, True)
        bare = _translate(network, "k")  # raised while streaming a body, outside oss2
        assert (bare.kind, bare.transient) == (ErrorKind.UNAVAILABLE, True)
    bad_tls = _translate(oss2.exceptions.RequestError(requests.exceptions.SSLError("cert")), "k")
    assert bad_tls.kind is ErrorKind.INVALID_CONFIG
    assert _translate(RuntimeError("?"), "k").kind is ErrorKind.UNEXPECTED
