"""S3/OSS -> Azure copies Azure makes itself (Put Blob From URL on a presigned GET URL), through
tests/azure_pull_proxy.py in front of Azurite: no byte through the worker, each copy pinned to
the listed version by the source's MD5, and streaming wherever that cannot hold."""

from __future__ import annotations

import hashlib
import logging
import os
import traceback
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from importer.copier import CopyLimits, CopyResult, copy_object
from storage_adapters.base import ObjectInfo, ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.registry import open_store
from tests.azure_fixtures import azure_store, make_container
from tests.azure_pull_proxy import AzurePullProxy
from tests.oss_fixtures import make_oss_bucket, oss_store
from tests.servers import make_bucket, s3_store

pytest_plugins = ["tests.azure_fixtures", "tests.oss_fixtures"]

MiB = 1024 * 1024
LIMITS = CopyLimits(
    multipart_threshold=8 * MiB, part_size=5 * MiB, max_single_copy_size=5 * 1024 * MiB
)


@pytest.fixture(scope="module")
def proxy(azurite: dict[str, str]) -> Iterator[AzurePullProxy]:
    with AzurePullProxy(azurite["endpoint"], azurite["account_name"], azurite["account_key"]) as p:
        yield p


@pytest.fixture
def container(azurite: dict[str, str]) -> str:
    name = f"pull-{uuid.uuid4().hex[:10]}"
    make_container(azurite, name)
    return name


@pytest.fixture
def bucket(rclone_s3: dict[str, str]) -> str:
    name = f"pull-{uuid.uuid4().hex[:10]}"
    make_bucket(rclone_s3, name)
    return name


def through(proxy: AzurePullProxy, azurite: dict[str, str]) -> dict[str, str]:
    return {**azurite, "endpoint": proxy.url}


class WorkerReads:
    """Counts the bytes the worker reads from a source store (its `open` and `read`)."""

    def __init__(self, store: ObjectStore) -> None:
        self.bytes = 0
        opened, read = store.open, store.read

        def counting_open(key: str, **kw: Any) -> Iterator[bytes]:
            for chunk in opened(key, **kw):
                self.bytes += len(chunk)
                yield chunk

        def counting_read(key: str, **kw: Any) -> Any:
            blob = read(key, **kw)
            self.bytes += len(blob.data)
            return blob

        store.open = counting_open  # type: ignore[method-assign]
        store.read = counting_read  # type: ignore[method-assign]


def listed(store: ObjectStore, key: str) -> ObjectInfo:
    page = store.list_page(key)
    (info,) = [o for o in page.objects if o.key == key]
    return info


def stored(azurite: dict[str, str], container: str, key: str) -> tuple[bytes, ObjectInfo]:
    """The blob's bytes and properties, read from Azurite itself (not through the proxy)."""
    store = azure_store(azurite, container)
    return b"".join(store.open(key)), store.head(key)


def copy(src: ObjectStore, dst: ObjectStore, info: ObjectInfo) -> CopyResult:
    return copy_object(src, dst, info, info.key, LIMITS)


def test_single_part_objects_are_pulled_by_azure_with_no_byte_through_the_worker(
    rclone_s3: dict[str, str],
    azurite: dict[str, str],
    proxy: AzurePullProxy,
    bucket: str,
    container: str,
) -> None:
    src = s3_store(rclone_s3, bucket)
    dst = azure_store(through(proxy, azurite), container)
    bodies = {"a/empty.bin": b"", "a/small.jpg": os.urandom(1000), "a/big.bin": os.urandom(9 * MiB)}
    for key, data in bodies.items():
        src.put(key, data)
    reads = WorkerReads(src)
    pulled_before = proxy.counters.pulled
    assert dst.can_copy_from(src) and dst.capabilities.copy_from_url

    for key, data in bodies.items():
        result = copy(src, dst, listed(src, key))
        md5 = hashlib.md5(data).hexdigest()
        assert (result.method, result.verified_by) == ("server", "md5")
        assert result.checksum == f"md5:{md5}"
        got, props = stored(azurite, container, key)
        assert got == data
        assert props.md5 == md5  # the Content-MD5 Azure checked, recorded on the blob

    assert reads.bytes == 0
    assert proxy.counters.pulled - pulled_before == sum(map(len, bodies.values()))


def test_a_source_changed_after_listing_fails_as_changed_not_as_a_wrong_copy(
    rclone_s3: dict[str, str],
    azurite: dict[str, str],
    proxy: AzurePullProxy,
    bucket: str,
    container: str,
) -> None:
    src = s3_store(rclone_s3, bucket)
    dst = azure_store(through(proxy, azurite), container)
    src.put("k.bin", b"version one" * 100)
    info = listed(src, "k.bin")
    src.put("k.bin", b"version two!" * 100)
    reads = WorkerReads(src)
    calls = proxy.counters.put_blob_from_url

    with pytest.raises(StorageError) as caught:
        copy(src, dst, info)

    assert caught.value.kind is ErrorKind.PRECONDITION_FAILED
    assert "changed" in str(caught.value)
    assert proxy.counters.put_blob_from_url == calls + 1  # Azure pulled, and refused to commit
    assert reads.bytes == 0
    with pytest.raises(StorageError) as missing:
        azure_store(azurite, container).head("k.bin")
    assert missing.value.kind is ErrorKind.NOT_FOUND


def test_a_multipart_source_is_streamed_and_verified(
    moto_s3: dict[str, str], azurite: dict[str, str], proxy: AzurePullProxy, container: str
) -> None:
    # moto, not rclone: rclone serve s3 gives a multipart upload its whole MD5 as ETag.
    bucket = f"pull-{uuid.uuid4().hex[:10]}"
    make_bucket(moto_s3, bucket)
    src = s3_store(moto_s3, bucket)
    dst = azure_store(through(proxy, azurite), container)
    parts = [os.urandom(5 * MiB), os.urandom(123)]
    upload = src.create_multipart("mp.bin")
    done = [src.upload_part("mp.bin", upload, n, p) for n, p in enumerate(parts, start=1)]
    src.complete_multipart("mp.bin", upload, done)
    info = listed(src, "mp.bin")
    assert info.etag is not None and "-" in info.etag
    calls = proxy.counters.put_blob_from_url
    assert dst.can_copy_from(src)  # pull is on for this pair, yet not for this object

    result = copy(src, dst, info)

    data = b"".join(parts)
    assert result.method.startswith("stream")
    assert proxy.counters.put_blob_from_url == calls
    got, props = stored(azurite, container, "mp.bin")
    assert got == data and props.md5 == hashlib.md5(data).hexdigest()
    assert dst.capabilities.copy_from_url  # one object's refusal does not turn it off


def test_azurite_without_the_proxy_falls_back_to_streaming_after_one_probe(
    rclone_s3: dict[str, str], azurite: dict[str, str], bucket: str, container: str
) -> None:
    src = s3_store(rclone_s3, bucket)
    dst = azure_store(azurite, container)
    src.put("one.bin", b"1" * 1000)
    src.put("two.bin", b"2" * 2000)
    assert dst.can_copy_from(src)  # advertised until the server says otherwise

    first = copy(src, dst, listed(src, "one.bin"))

    assert first.method == "stream" and first.verified_by == "md5"
    assert not dst.can_copy_from(src) and not dst.capabilities.copy_from_url
    second = copy(src, dst, listed(src, "two.bin"))
    assert second.method == "stream"
    assert stored(azurite, container, "two.bin")[0] == b"2" * 2000


def test_an_unreachable_source_url_fails_the_object_without_the_signature(
    rclone_s3: dict[str, str],
    azurite: dict[str, str],
    proxy: AzurePullProxy,
    container: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The store names an S3 endpoint no server listens on: Azure (the proxy) cannot reach it,
    # so the worker streams the object, and cannot reach it either.
    creds = {"accesskey_id": rclone_s3["access_key"], "accesskey_secret": rclone_s3["secret_key"]}
    src = open_store(StorageSpec("s3", "gone", endpoint="http://127.0.0.1:9", credentials=creds))
    dst = azure_store(through(proxy, azurite), container)
    info = ObjectInfo(key="x.bin", size=10, etag=hashlib.md5(b"0123456789").hexdigest())
    signature = src.presign_get("x.bin", expires_in=3600).partition("?")[2]
    caplog.set_level(logging.DEBUG)

    with pytest.raises(StorageError) as caught:
        copy(src, dst, info)

    error = caught.value
    assert error.kind is ErrorKind.UNAVAILABLE  # the worker's own read of the source
    assert not dst.can_copy_from(src)  # Azure is not asked for this source again
    text = "".join(traceback.format_exception(error)) + repr(error) + caplog.text
    assert "X-Amz-Signature" not in text and "Signature=" not in text
    assert signature not in text and rclone_s3["secret_key"] not in text


def test_a_source_only_the_worker_reaches_is_streamed_and_not_offered_to_azure_again(
    rclone_s3: dict[str, str], azurite: dict[str, str], bucket: str, container: str
) -> None:
    # A private endpoint: the worker reaches the S3 server, "Azure" (the proxy, routed to a
    # port nobody listens on) does not.
    s3_host = urlsplit(rclone_s3["endpoint"]).netloc
    with AzurePullProxy(
        azurite["endpoint"],
        azurite["account_name"],
        azurite["account_key"],
        routes={s3_host: "127.0.0.1:9"},
    ) as blind:
        src = s3_store(rclone_s3, bucket)
        dst = azure_store(through(blind, azurite), container)
        bodies = {f"p/{i}.bin": os.urandom(1000 + i) for i in range(3)}
        for key, data in bodies.items():
            src.put(key, data)
        reads = WorkerReads(src)

        for key, data in bodies.items():
            result = copy(src, dst, listed(src, key))
            assert result.method == "stream" and result.verified_by == "md5"
            assert stored(azurite, container, key)[0] == data

        assert reads.bytes == sum(map(len, bodies.values()))
        assert blind.counters.asked_put_blob_from_url == 1  # asked once, then streamed
        assert blind.counters.put_blob_from_url == 0
        assert not dst.can_copy_from(src)


def test_oss_to_azure_is_pulled_too(
    oss_server: dict[str, Any], azurite: dict[str, str], proxy: AzurePullProxy, container: str
) -> None:
    name = f"pull-{uuid.uuid4().hex[:10]}"
    make_oss_bucket(oss_server, name)
    src = oss_store(oss_server, name)
    data = os.urandom(3 * MiB + 7)
    src.put("o/p.bin", data)
    dst = azure_store(through(proxy, azurite), container)
    reads = WorkerReads(src)

    result = copy(src, dst, listed(src, "o/p.bin"))

    assert (result.method, result.verified_by) == ("server", "md5")
    assert reads.bytes == 0
    got, props = stored(azurite, container, "o/p.bin")
    assert got == data and props.md5 == hashlib.md5(data).hexdigest()


def test_the_setting_turns_pulling_off(
    rclone_s3: dict[str, str], azurite: dict[str, str], proxy: AzurePullProxy, bucket: str
) -> None:
    from bayport.settings import Settings
    from stores.resolver import adapter_options

    spec = StorageSpec("azure", "c", endpoint=proxy.url, credentials={"account_name": "x"})
    assert adapter_options(spec, Settings(azure_pull_from_url=False)) == {"pull_from_url": False}
    assert adapter_options(spec, Settings()) == {"pull_from_url": True}
    off = azure_store(through(proxy, azurite), "c", pull_from_url=False)
    assert not off.can_copy_from(s3_store(rclone_s3, bucket))


def test_objects_over_put_blob_from_urls_limit_are_not_pulled(
    rclone_s3: dict[str, str], azurite: dict[str, str], proxy: AzurePullProxy, bucket: str
) -> None:
    src = s3_store(rclone_s3, bucket)
    dst = azure_store(through(proxy, azurite), "any")
    calls = proxy.counters.put_blob_from_url
    md5 = hashlib.md5(b"x").hexdigest()

    with pytest.raises(StorageError) as caught:
        dst.copy_from(src, "k", "k", size=5000 * MiB + 1, etag=md5)

    assert caught.value.kind is ErrorKind.UNSUPPORTED  # the copier streams it
    assert proxy.counters.put_blob_from_url == calls
    assert dst.capabilities.copy_from_url


def test_the_proxy_serves_put_block_from_url_for_azures_own_multipart_copy(
    azurite: dict[str, str], proxy: AzurePullProxy, container: str
) -> None:
    # Azure -> Azure in one account, above the single-copy limit: Put Block From URL per
    # part (x-ms-source-range, x-ms-source-if-match), then Put Block List.
    info = through(proxy, azurite)
    src = azure_store(info, container, root="src/", multipart_copy=True)
    dst = azure_store(info, container, root="dst/", multipart_copy=True)
    data = os.urandom(3 * MiB + 5)
    # Committed from blocks without a Content-MD5: nothing to prove a whole copy by either,
    # so it is copied in parts (a source with an MD5 is copied whole, by Copy Blob).
    upload = src.create_multipart("m.bin")
    parts = [
        src.upload_part("m.bin", upload, n, data[start : start + 2 * MiB])
        for n, start in enumerate(range(0, len(data), 2 * MiB), start=1)
    ]
    src.complete_multipart("m.bin", upload, parts)
    assert listed(src, "m.bin").md5 is None
    blocks = proxy.counters.put_block_from_url
    limits = CopyLimits(multipart_threshold=MiB, part_size=MiB, max_single_copy_size=MiB)

    result = copy_object(src, dst, listed(src, "m.bin"), "m.bin", limits)

    assert (result.method, result.verified_by) == ("server_multipart", "size")
    assert proxy.counters.put_block_from_url == blocks + 4
    assert stored(azurite, container, "dst/m.bin")[0] == data


def test_a_source_deleted_after_listing_is_not_found(
    rclone_s3: dict[str, str],
    azurite: dict[str, str],
    proxy: AzurePullProxy,
    bucket: str,
    container: str,
) -> None:
    src = s3_store(rclone_s3, bucket)
    dst = azure_store(through(proxy, azurite), container)
    src.put("gone.bin", b"soon gone")
    info = listed(src, "gone.bin")
    src.delete("gone.bin")
    calls = proxy.counters.put_blob_from_url

    with pytest.raises(StorageError) as caught:
        copy(src, dst, info)

    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert caught.value.code == "CannotVerifyCopySource"
    assert proxy.counters.put_blob_from_url == calls  # refused before any byte arrived
