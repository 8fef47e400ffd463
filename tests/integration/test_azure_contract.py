"""The ObjectStore contract (tests/contract.py) against AzureBlobStore on Azurite, plus what only
Azure has: Content-MD5 on every blob, block ids, Copy Blob, and its error codes."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from storage_adapters.azure_blob import AzureBlobStore
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind
from tests.azure_fixtures import azure_spec, azure_store, is_emulator, make_container
from tests.conftest import unavailable
from tests.contract import (
    KEYS,
    CredentialsContract,
    MakeStore,
    StoreContract,
    expect,
    fill,
    list_all,
)

MISSING_CONTAINER = "bayport-no-such-container"
WRONG_KEY = "d3Jvbmcta2V5LW5vdC10aGUtYWNjb3VudHMtb3du"  # base64, not the account's
AZURITE_MD5_MISMATCH = "Provided contentMD5 doesn't match."  # Azurite's word for Md5Mismatch


class TestAzureOnAzurite(StoreContract, CredentialsContract):
    """Azurite (or the account BAYPORT_TEST_AZURE_ENDPOINT names): checks Shared Key
    signatures; has Copy Blob but no Put Block From URL, so `azure_store` opens it as
    production must: without multipart copy."""

    @pytest.fixture(scope="class")
    @classmethod
    def containers(cls, azurite: dict[str, str]) -> tuple[str, str]:
        names = (f"contract-{uuid.uuid4().hex[:10]}", f"peer-{uuid.uuid4().hex[:10]}")
        for name in names:
            make_container(azurite, name)
        return names

    @staticmethod
    def open(info: dict[str, str], container: str, root: str = "", **opts: Any) -> ObjectStore:
        return azure_store(info, container, root=root, timeout=10, **opts)

    @pytest.fixture
    def make_store(self, azurite: dict[str, str], containers: tuple[str, str]) -> MakeStore:
        base = uuid.uuid4().hex[:12]  # every test in a fresh prefix of the class's container
        return lambda root="": self.open(azurite, containers[0], f"{base}/{root}")

    @pytest.fixture
    def peer_store(self, azurite: dict[str, str], containers: tuple[str, str]) -> ObjectStore:
        return self.open(azurite, containers[1], uuid.uuid4().hex[:12])

    @pytest.fixture
    def missing_bucket_name(self) -> str:
        return MISSING_CONTAINER

    @pytest.fixture
    def missing_bucket_store(self, azurite: dict[str, str]) -> ObjectStore:
        return self.open(azurite, MISSING_CONTAINER)

    @pytest.fixture
    def bad_credentials_store(
        self, azurite: dict[str, str], containers: tuple[str, str]
    ) -> ObjectStore:
        return self.open(azurite, containers[0], key=WRONG_KEY)

    # -- listing: Azure's cursor is its own opaque marker ----------------------------------

    def test_a_listing_resumes_after_any_key(self, store: ObjectStore) -> None:
        """Replaced: List Blobs has no StartAfter (its `startFrom` is a preview that Azurite
        ignores), so a listing resumes from the cursors it handed out, which is all the
        planner stores, and not from an arbitrary key."""
        fill(store, KEYS)
        expected = sorted(KEYS)
        page = store.list_page("", limit=3)
        assert [o.key for o in page.objects] == expected[:3]
        assert page.cursor is not None
        # The same cursor, used twice (a redelivered planner), gives the same next page.
        for _ in range(2):
            again = store.list_page("", cursor=page.cursor, limit=3)
            assert [o.key for o in again.objects] == expected[3:6]

    def test_prefix_filters_and_combines_with_cursor(self, store: ObjectStore) -> None:
        """Replaced for the same reason: the cursor comes from a page of the same prefix."""
        fill(store, KEYS)
        assert list_all(store, "a/") == ["a/b", "a/c/d"]
        assert list_all(store, "a") == ["a.b", "a/b", "a/c/d", "a0"]
        assert list_all(store, "a/c/") == ["a/c/d"]
        assert list_all(store, "z/y") == ["z/y/x"]
        assert list_all(store, "nothing/") == []
        first = store.list_page("a", limit=2)
        assert [o.key for o in first.objects] == ["a.b", "a/b"]
        rest = store.list_page("a", cursor=first.cursor)
        assert ([o.key for o in rest.objects], rest.cursor) == (["a/c/d", "a0"], None)

    def test_directories_of_a_hierarchical_namespace_are_not_listed(
        self, azurite: dict[str, str], containers: tuple[str, str]
    ) -> None:
        from azure.storage.blob import ContainerClient

        root = uuid.uuid4().hex
        client = ContainerClient(
            azurite["endpoint"],
            containers[0],
            credential={
                "account_name": azurite["account_name"],
                "account_key": azurite["account_key"],
            },
        )
        # What an ADLS Gen2 account lists for a directory: an empty blob marked as a folder.
        client.upload_blob(f"{root}/dir", b"", metadata={"hdi_isfolder": "true"})
        client.upload_blob(f"{root}/dir/file", b"x")
        assert list_all(self.open(azurite, containers[0], root)) == ["dir/file"]

    # -- Content-MD5 -----------------------------------------------------------------------

    def test_put_head_and_listing_report_the_md5(self, store: ObjectStore) -> None:
        data = os.urandom(5000)
        md5 = hashlib.md5(data).hexdigest()
        assert store.put("k", data).md5 == md5
        assert store.head("k").md5 == md5
        (listed,) = store.list_page("").objects
        assert (listed.md5, listed.etag) == (md5, store.head("k").etag)
        assert listed.etag and not listed.etag.startswith('"')

    def test_complete_multipart_with_content_md5_is_reported_by_head(
        self, store: ObjectStore
    ) -> None:
        chunks = [os.urandom(70_000), os.urandom(70_000), b"tail"]
        whole = b"".join(chunks)
        upload_id = store.create_multipart("big")
        parts = [store.upload_part("big", upload_id, n, c) for n, c in enumerate(chunks, 1)]
        info = store.complete_multipart(
            "big", upload_id, parts, content_md5=hashlib.md5(whole).hexdigest()
        )
        assert info.md5 == store.head("big").md5 == hashlib.md5(whole).hexdigest()
        assert store.get_bytes("big", max_size=len(whole)) == whole

    def test_without_content_md5_a_block_blob_states_none(self, store: ObjectStore) -> None:
        upload_id = store.create_multipart("k")
        part = store.upload_part("k", upload_id, 1, b"data")
        assert store.complete_multipart("k", upload_id, [part]).md5 is None

    def test_a_copy_keeps_the_md5(self, store: ObjectStore, peer_store: ObjectStore) -> None:
        data = os.urandom(4096)
        peer_store.put("src", data)
        info = store.copy_from(peer_store, "src", "dst")
        assert info.md5 == hashlib.md5(data).hexdigest()
        assert store.head("dst").md5 == info.md5

    # -- multipart -------------------------------------------------------------------------

    def test_a_part_sent_again_with_other_bytes_takes_the_etag_given(
        self, store: ObjectStore
    ) -> None:
        upload_id = store.create_multipart("k")
        store.upload_part("k", upload_id, 1, b"first try")
        second = store.upload_part("k", upload_id, 1, b"second try")
        store.complete_multipart("k", upload_id, [second])
        assert store.get_bytes("k", max_size=100) == b"second try"

    def test_abort_leaves_an_existing_object_alone(self, store: ObjectStore) -> None:
        store.put("k", b"committed")
        upload_id = store.create_multipart("k")
        store.upload_part("k", upload_id, 1, b"never committed")
        store.abort_multipart("k", upload_id)
        assert store.get_bytes("k", max_size=100) == b"committed"

    def test_multipart_copy_declared_but_missing_is_unsupported(
        self, azurite: dict[str, str], containers: tuple[str, str]
    ) -> None:
        """Opened with multipart copy, the store reports Azurite's 501 for Put Block From URL."""
        if not is_emulator(azurite):
            unavailable("Azure itself has Put Block From URL: this is an emulator check")
        store = self.open(azurite, containers[0], uuid.uuid4().hex, multipart_copy=True)
        assert store.capabilities.multipart_copy
        store.put("src", b"x" * 100)
        upload_id = store.create_multipart("dst")
        error = expect(
            ErrorKind.UNSUPPORTED,
            lambda: store.copy_part(store, "src", "dst", upload_id, 1, (0, 99)),
        )
        assert error.status == 501
        store.abort_multipart("dst", upload_id)

    # -- identity and configuration --------------------------------------------------------

    def test_the_account_hides_the_key_and_tells_endpoints_apart(
        self, azurite: dict[str, str], store: ObjectStore
    ) -> None:
        key = azurite["account_key"]
        assert key not in store.account and key not in store.location
        assert key not in repr(azure_spec(azurite, "c"))
        other_key = azure_store(azurite, "c", key=WRONG_KEY)
        assert other_key.account == store.account  # one account, whichever key opens it
        elsewhere = azure_store({**azurite, "endpoint": "http://127.0.0.1:1/devstoreaccount1"}, "c")
        assert elsewhere.account != store.account
        assert not store.can_copy_from(elsewhere)

    def test_the_endpoint_defaults_to_the_global_cloud(self) -> None:
        spec = StorageSpec("azure", "c", credentials={"account_name": "myaccount"})
        store = AzureBlobStore.from_spec(spec)
        assert store._blob("k").url == "https://myaccount.blob.core.windows.net/c/k"
        china = AzureBlobStore.from_spec(
            StorageSpec("azure", "c", endpoint="https://myaccount.blob.core.chinacloudapi.cn")
        )
        assert china._blob("k").url == "https://myaccount.blob.core.chinacloudapi.cn/c/k"
        assert china.account != store.account

    @pytest.mark.parametrize(
        "spec",
        [
            StorageSpec("azure", "", credentials={"account_name": "myaccount"}),
            StorageSpec("azure", "c"),
            StorageSpec("azure", "c", credentials={"account_name": "Not An Account"}),
            StorageSpec(
                "azure", "c", credentials={"account_name": "myaccount", "account_key": "no!"}
            ),
        ],
    )
    def test_an_incomplete_spec_is_invalid_config(self, spec: StorageSpec) -> None:
        expect(ErrorKind.INVALID_CONFIG, lambda: AzureBlobStore.from_spec(spec))

    def test_an_unreachable_endpoint_is_a_transient_unavailable(self) -> None:
        spec = StorageSpec("azure", "c", endpoint="http://127.0.0.1:9/devstoreaccount1")
        error = expect(ErrorKind.UNAVAILABLE, lambda: AzureBlobStore(spec, timeout=2).head("k"))
        assert error.transient


# -- what no emulator can be made to answer ---------------------------------------------------


class ScriptedAzure(http.server.BaseHTTPRequestHandler):
    """Answers every request with the error in `answer`, as the Blob service words one."""

    answer: ClassVar[dict[str, Any]] = {}
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.reply(body=True)

    def do_HEAD(self) -> None:
        self.reply(body=False)

    def reply(self, *, body: bool) -> None:
        type(self).requests.append(self.command)
        answer = type(self).answer
        time.sleep(answer.get("delay", 0))
        if answer.get("cut_short"):
            return self.cut_short()
        code, message = answer["code"], answer.get("message", "It went wrong.")
        payload = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        self.send_response(answer["status"])
        if code:
            self.send_header("x-ms-error-code", code)
        for name, value in answer.get("headers", {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload) if body else 0))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def cut_short(self) -> None:
        """A blob's first range whose connection drops after 10 of its 100 bytes."""
        self.send_response(206)
        for name, value in {
            "Content-Length": "100",
            "Content-Range": "bytes 0-99/100",
            "x-ms-blob-type": "BlockBlob",
            "ETag": '"0x8DC0000000000"',
            "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def scripted() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ScriptedAzure)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/devstoreaccount1"
    server.shutdown()
    server.server_close()


def scripted_store(endpoint: str, answer: dict[str, Any], timeout: float = 5) -> AzureBlobStore:
    ScriptedAzure.answer = answer
    ScriptedAzure.requests.clear()
    spec = StorageSpec(
        "azure",
        "photos",
        endpoint=endpoint,
        credentials={"account_name": "devstoreaccount1", "account_key": WRONG_KEY},
    )
    return AzureBlobStore(spec, timeout=timeout)


@pytest.mark.parametrize(
    ("status", "code", "message", "kind", "transient"),
    [
        (404, "BlobNotFound", "", ErrorKind.NOT_FOUND, False),
        (403, "AuthenticationFailed", "", ErrorKind.PERMISSION_DENIED, False),
        (403, "AuthorizationPermissionMismatch", "", ErrorKind.PERMISSION_DENIED, False),
        (409, "BlobAlreadyExists", "", ErrorKind.ALREADY_EXISTS, False),
        (412, "ConditionNotMet", "", ErrorKind.PRECONDITION_FAILED, False),
        (400, "InvalidBlockList", "", ErrorKind.PRECONDITION_FAILED, False),
        (503, "ServerBusy", "", ErrorKind.RATE_LIMITED, True),
        (429, "", "", ErrorKind.RATE_LIMITED, True),
        (500, "InternalError", "", ErrorKind.UNAVAILABLE, True),
        (500, "OperationTimedOut", "", ErrorKind.UNAVAILABLE, True),
        (502, "", "", ErrorKind.UNAVAILABLE, True),
        (504, "", "", ErrorKind.UNAVAILABLE, True),
        (400, "Md5Mismatch", "", ErrorKind.CHECKSUM_MISMATCH, False),
        (400, "InvalidMd5", "", ErrorKind.CHECKSUM_MISMATCH, False),
        (400, "InvalidOperation", AZURITE_MD5_MISMATCH, ErrorKind.CHECKSUM_MISMATCH, False),
        (501, "APINotImplemented", "", ErrorKind.UNSUPPORTED, False),
        (400, "InvalidQueryParameterValue", "", ErrorKind.UNEXPECTED, False),
    ],
)
def test_azure_errors_map_onto_the_vocabulary(
    scripted: str, status: int, code: str, message: str, kind: ErrorKind, transient: bool
) -> None:
    """Through the real SDK against a server scripted to answer as Azure does where Azurite
    cannot be made to (throttling, 5xx, Azure's own codes): each is one request, no SDK retry."""
    answer = {"status": status, "code": code, "message": message or f"{code} happened."}
    store = scripted_store(scripted, answer)
    error = expect(kind, lambda: store.list_page(""))
    assert (error.transient, error.status, error.code) == (transient, status, code or None)
    assert ScriptedAzure.requests == ["GET"]


def test_azure_retry_after_and_container_names_are_kept(scripted: str) -> None:
    answer = {"status": 503, "code": "ServerBusy", "headers": {"Retry-After": "7"}}
    throttled = expect(ErrorKind.RATE_LIMITED, lambda: scripted_store(scripted, answer).head("k"))
    assert throttled.retry_after == 7
    answer = {"status": 404, "code": "ContainerNotFound"}
    missing = expect(ErrorKind.NOT_FOUND, lambda: scripted_store(scripted, answer).head("k"))
    assert "'photos'" in str(missing)


def test_a_read_timeout_is_a_transient_unavailable(scripted: str) -> None:
    answer = {"status": 500, "code": "InternalError", "delay": 1.5}
    store = scripted_store(scripted, answer, timeout=0.5)
    error = expect(ErrorKind.UNAVAILABLE, lambda: store.list_page(""))
    assert error.transient


def test_a_download_cut_short_is_a_transient_unavailable(scripted: str) -> None:
    """A cut body fails the one request (the adapter's transport reads answers whole, so the
    SDK's downloader never re-reads a cut body by itself, three times, uncounted); it maps
    onto UNAVAILABLE for our retry layer."""
    store = scripted_store(scripted, {"cut_short": True})
    error = expect(ErrorKind.UNAVAILABLE, lambda: store.get_bytes("k", max_size=1000))
    assert error.transient
    assert len(ScriptedAzure.requests) == 1
