"""The ObjectStore contract (tests/contract.py) against every adapter and real S3 servers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind
from storage_adapters.memory import MemoryBackend, MemoryStore
from storage_adapters.registry import open_store
from storage_adapters.s3 import S3Store
from tests.contract import CredentialsContract, MakeStore, StoreContract, expect
from tests.servers import make_bucket

MISSING_BUCKET = "bayport-no-such-bucket"


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        backend = MemoryBackend("contract")
        return lambda root="": MemoryStore(backend, root=root)

    @pytest.fixture
    def peer_store(self, make_store: MakeStore) -> ObjectStore:
        return MemoryStore(MemoryBackend("peer"), account=make_store().account)

    @pytest.fixture
    def missing_bucket_name(self) -> str:
        return MISSING_BUCKET

    @pytest.fixture
    def missing_bucket_store(self) -> ObjectStore:
        backend = MemoryBackend(MISSING_BUCKET)
        backend.exists = False
        return MemoryStore(backend)


class TestLocalStore(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        bucket = tmp_path / "bucket"
        bucket.mkdir()
        spec = StorageSpec(provider="local", bucket=str(bucket))
        return lambda root="": open_store(StorageSpec(**{**spec.__dict__, "root": root}))

    @pytest.fixture
    def peer_store(self, tmp_path: Path) -> ObjectStore:
        (tmp_path / "peer").mkdir()
        return open_store(StorageSpec(provider="local", bucket=str(tmp_path / "peer")))

    @pytest.fixture
    def missing_bucket_name(self) -> str:
        return MISSING_BUCKET

    @pytest.fixture
    def missing_bucket_store(self, tmp_path: Path) -> ObjectStore:
        return open_store(StorageSpec(provider="local", bucket=str(tmp_path / MISSING_BUCKET)))

    def test_keys_cannot_leave_the_folder(self, store: ObjectStore) -> None:
        for key in ("../outside", "a/../../outside", "/etc/passwd"):
            expect(ErrorKind.PERMISSION_DENIED, lambda key=key: store.put(key, b"x"))
            expect(ErrorKind.PERMISSION_DENIED, lambda key=key: store.head(key))
        expect(ErrorKind.PERMISSION_DENIED, lambda: store.list_page("../"))

    def test_a_file_in_the_way_of_a_folder_is_already_exists(self, store: ObjectStore) -> None:
        store.put("a", b"file")
        expect(ErrorKind.ALREADY_EXISTS, lambda: store.put("a/b", b"x"))

    def test_files_bayport_did_not_write_are_listed_in_key_order(self, tmp_path: Path) -> None:
        root = tmp_path / "user-folder"
        for name in ("b/2", "b/1", "b.txt", "a", "b-c/x", ".hidden"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"x")
        (root / "empty-folder").mkdir()
        store = open_store(StorageSpec(provider="local", bucket=str(root)))
        keys = [o.key for o in store.list_page("").objects]
        assert keys == [".hidden", "a", "b-c/x", "b.txt", "b/1", "b/2"]


def s3_spec(server: dict[str, str], bucket: str, root: str = "", secret: str = "") -> StorageSpec:
    credentials = {
        "accesskey_id": server["access_key"],
        "accesskey_secret": secret or server["secret_key"],
    }
    return StorageSpec(
        "s3", bucket, root=root, endpoint=server["endpoint"], credentials=credentials
    )


class S3Contract(StoreContract):
    """Runs on the server the subclass's `server` fixture gives, in two buckets of its own."""

    # Whether the server implements UploadPartCopy; declared to the store as an option, so the
    # contract reads it from the capabilities like any caller would.
    multipart_copy = True
    # The per-object requests on the lean path (storage_adapters/s3_wire.py), or all on boto3.
    wire = True

    @pytest.fixture(scope="class")
    @classmethod
    def buckets(cls, server: dict[str, str]) -> tuple[str, str]:
        names = (f"contract-{uuid.uuid4().hex[:10]}", f"peer-{uuid.uuid4().hex[:10]}")
        for name in names:
            make_bucket(server, name)
        return names

    def open(
        self, server: dict[str, str], bucket: str, root: str = "", secret: str = ""
    ) -> S3Store:
        return S3Store(
            s3_spec(server, bucket, root, secret),
            timeout=10,
            multipart_copy=self.multipart_copy,
            wire=self.wire,
        )

    @pytest.fixture
    def make_store(self, server: dict[str, str], buckets: tuple[str, str]) -> MakeStore:
        base = uuid.uuid4().hex[:12]  # every test in a fresh prefix of the class's bucket
        return lambda root="": self.open(server, buckets[0], f"{base}/{root}")

    @pytest.fixture
    def peer_store(self, server: dict[str, str], buckets: tuple[str, str]) -> ObjectStore:
        return self.open(server, buckets[1], uuid.uuid4().hex[:12])

    @pytest.fixture
    def missing_bucket_name(self) -> str:
        return MISSING_BUCKET

    @pytest.fixture
    def missing_bucket_store(self, server: dict[str, str]) -> ObjectStore:
        return self.open(server, MISSING_BUCKET)

    @pytest.fixture
    def bad_credentials_store(
        self, server: dict[str, str], buckets: tuple[str, str]
    ) -> ObjectStore:
        return self.open(server, buckets[0], secret="not-the-secret")

    def test_the_account_hides_the_key_and_tells_endpoints_apart(
        self, server: dict[str, str], store: ObjectStore
    ) -> None:
        for secret in (server["access_key"], server["secret_key"]):
            assert secret not in store.account and secret not in store.location
        elsewhere = S3Store(
            StorageSpec(
                "s3",
                "b",
                endpoint="http://127.0.0.1:1",
                credentials={"accesskey_id": server["access_key"], "accesskey_secret": "x"},
            )
        )
        assert elsewhere.account != store.account
        assert not store.can_copy_from(elsewhere)

    def test_an_unreachable_endpoint_is_a_transient_unavailable(self) -> None:
        store = S3Store(
            StorageSpec("s3", "b", endpoint="http://127.0.0.1:9"), timeout=2, wire=self.wire
        )
        for call in (
            lambda: store.list_page(""),
            lambda: store.head("k"),
            lambda: store.read("k", max_size=10),
            lambda: store.copy_from(store, "k", "k2"),
        ):
            error = expect(ErrorKind.UNAVAILABLE, call)
            assert error.transient


@pytest.mark.s3
class TestS3OnRclone(S3Contract, CredentialsContract):
    """`rclone serve s3`: checks SigV4, so wrong keys are really refused."""

    # rclone serve s3 answers UploadPartCopy with 200 and stores an empty part, so the store
    # is opened as it must be in production against such a server: without multipart copy.
    multipart_copy = False
    # It stores a key 'a/' as an empty object 'a' (a file in its folder), so markers show up.
    folder_markers_stored = False

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, rclone_s3: dict[str, str]) -> dict[str, str]:
        return rclone_s3

    def test_multipart_copy_declared_but_missing_is_caught(
        self, server: dict[str, str], buckets: tuple[str, str]
    ) -> None:
        """Opened with multipart copy, the store notices rclone's empty answer."""
        store = S3Store(s3_spec(server, buckets[0], uuid.uuid4().hex), multipart_copy=True)
        store.put("src", b"x" * 100)
        upload_id = store.create_multipart("dst")
        error = expect(
            ErrorKind.UNSUPPORTED,
            lambda: store.copy_part(store, "src", "dst", upload_id, 1, (0, 99)),
        )
        assert "multipart_copy=False" in str(error)
        store.abort_multipart("dst", upload_id)


@pytest.mark.s3
class TestS3OnRcloneAllBoto3(TestS3OnRclone):
    """The same with every request on boto3: the path a store falls back on when the lean
    one is redirected or an environment proxy is set."""

    wire = False


@pytest.mark.s3
class TestS3OnMoto(S3Contract):
    """moto's server: the whole API, UploadPartCopy included; no signature checks, and no
    check of a part's Content-MD5."""

    checks_part_md5 = False

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, moto_s3: dict[str, str]) -> dict[str, str]:
        return moto_s3


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> Exception:
    from botocore.exceptions import ClientError

    response: Any = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("code", "status", "kind", "transient"),
    [
        ("NoSuchKey", 404, ErrorKind.NOT_FOUND, False),
        ("404", 404, ErrorKind.NOT_FOUND, False),
        ("AccessDenied", 403, ErrorKind.PERMISSION_DENIED, False),
        ("SignatureDoesNotMatch", 403, ErrorKind.PERMISSION_DENIED, False),
        ("InvalidAccessKeyId", 403, ErrorKind.PERMISSION_DENIED, False),
        ("PreconditionFailed", 412, ErrorKind.PRECONDITION_FAILED, False),
        ("SlowDown", 503, ErrorKind.RATE_LIMITED, True),
        ("Throttling", 400, ErrorKind.RATE_LIMITED, True),
        ("RequestLimitExceeded", 400, ErrorKind.RATE_LIMITED, True),
        ("", 429, ErrorKind.RATE_LIMITED, True),
        ("InternalError", 500, ErrorKind.UNAVAILABLE, True),
        ("RequestTimeout", 400, ErrorKind.UNAVAILABLE, True),
        ("SomethingNew", 502, ErrorKind.UNAVAILABLE, True),
        ("BadDigest", 400, ErrorKind.CHECKSUM_MISMATCH, False),  # retried once, by the copier
        ("InvalidArgument", 400, ErrorKind.UNEXPECTED, False),
    ],
)
def test_s3_errors_map_onto_the_vocabulary(
    code: str, status: int, kind: ErrorKind, transient: bool
) -> None:
    """The statuses no local server can be made to send (throttling, 5xx) are checked on the
    error values botocore builds; the rest also run against real servers above."""
    from storage_adapters.s3 import _translate

    error = _translate(client_error(code, status), "k", bucket="b")
    assert (error.kind, error.transient, error.status) == (kind, transient, status)


def test_s3_retry_after_and_bucket_names_are_kept() -> None:
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
    from urllib3.exceptions import ProtocolError

    from storage_adapters.s3 import _translate

    throttled = _translate(client_error("SlowDown", 503, {"retry-after": "7"}), "k")
    assert throttled.retry_after == 7
    missing = _translate(client_error("NoSuchBucket", 404), None, bucket="photos")
    assert (missing.kind, "photos" in str(missing)) == (ErrorKind.NOT_FOUND, True)
    for network in (
        ReadTimeoutError(endpoint_url="http://x"),
        ConnectTimeoutError(endpoint_url="http://x"),
        ProtocolError("Connection broken: IncompleteRead"),
        ConnectionResetError(),
    ):
        error = _translate(network, "k")
        assert (error.kind, error.transient) == (ErrorKind.UNAVAILABLE, True)
