"""S3 multipart objects copied on a real S3 server (moto's: rclone serve s3 has no
UploadPartCopy), proven by the multipart ETag S3 computes over the copy's own parts."""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3
import pytest

from importer.copier import CopyLimits, copy_object
from storage_adapters.base import ObjectInfo, ObjectStore, StorageSpec, UploadedPart
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.memory import MemoryStore
from storage_adapters.registry import open_store
from tests.servers import make_bucket, s3_store

MiB = 1024 * 1024
SIZE = 12 * MiB + 5  # three parts of 5 MiB, the last 2 MiB + 5 bytes
LIMITS = CopyLimits(
    multipart_threshold=8 * MiB, part_size=8 * MiB, max_single_copy_size=5 * 1024 * MiB
)


def _client(info: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=info["endpoint"],
        aws_access_key_id=info["access_key"],
        aws_secret_access_key=info["secret_key"],
        region_name="us-east-1",
    )


@pytest.fixture
def buckets(moto_s3: dict[str, str]) -> tuple[str, str]:
    names = (f"lay-{uuid.uuid4().hex[:10]}", f"lay-{uuid.uuid4().hex[:10]}")
    for name in names:
        make_bucket(moto_s3, name)
    return names


def _uploaded_in_parts(
    info: dict[str, str], bucket: str, data: bytes, sizes: list[int] | None = None
) -> None:
    """As the AWS CLI uploads: equal parts of 5 MiB (or parts of `sizes`)."""
    client = _client(info)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="big.bin")["UploadId"]
    parts = []
    if sizes is None:
        sizes = [min(5 * MiB, len(data) - s) for s in range(0, len(data), 5 * MiB)]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    for number, (start, size) in enumerate(zip(starts, sizes, strict=True), start=1):
        body = data[start : start + size]
        answer = client.upload_part(
            Bucket=bucket, Key="big.bin", UploadId=upload_id, PartNumber=number, Body=body
        )
        parts.append({"ETag": answer["ETag"], "PartNumber": number})
    client.complete_multipart_upload(
        Bucket=bucket, Key="big.bin", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def _listed(store: ObjectStore) -> ObjectInfo:
    (listed,) = store.list_page("big").objects
    return listed


@pytest.mark.parametrize("wire", [True, False])
def test_s3_tells_the_part_layout_on_either_path(
    moto_s3: dict[str, str], buckets: tuple[str, str], wire: bool
) -> None:
    bucket = buckets[0]
    _uploaded_in_parts(moto_s3, bucket, os.urandom(SIZE))
    creds = {"accesskey_id": moto_s3["access_key"], "accesskey_secret": moto_s3["secret_key"]}
    spec = StorageSpec("s3", bucket, endpoint=moto_s3["endpoint"], credentials=creds)
    store: Any = open_store(spec, wire=wire)
    assert store.part_layout("big.bin") == (5 * MiB, 3)
    store.put("small.bin", b"abc")
    assert store.part_layout("small.bin") is None
    with pytest.raises(StorageError) as err:
        store.part_layout("missing.bin")
    assert err.value.kind is ErrorKind.NOT_FOUND


@pytest.mark.parametrize("wire", [True, False])
def test_unequal_parts_that_part_one_would_count_are_no_layout(
    moto_s3: dict[str, str], buckets: tuple[str, str], wire: bool
) -> None:
    """Parts of 6, 5 and 6 MiB: part 1's size makes the count (3), but the parts are not cut
    where a layout of 6 MiB cuts them. Taken for one, every copy of the object would fail
    its ETag check; the last part's range tells it apart."""
    data = os.urandom(17 * MiB)
    _uploaded_in_parts(moto_s3, buckets[0], data, [6 * MiB, 5 * MiB, 6 * MiB])
    creds = {"accesskey_id": moto_s3["access_key"], "accesskey_secret": moto_s3["secret_key"]}
    spec = StorageSpec("s3", buckets[0], endpoint=moto_s3["endpoint"], credentials=creds)
    store: Any = open_store(spec, wire=wire)
    assert store.part_layout("big.bin") is None
    dst = s3_store(moto_s3, buckets[1])
    result = copy_object(store, dst, _listed(store), "copy.bin", LIMITS)
    assert result.verified_by == "size"  # no proof to be had: said so, not claimed
    assert dst.get_bytes("copy.bin", max_size=len(data)) == data


def test_a_server_copy_of_a_multipart_object_has_the_sources_etag(
    moto_s3: dict[str, str], buckets: tuple[str, str]
) -> None:
    data = os.urandom(SIZE)
    _uploaded_in_parts(moto_s3, buckets[0], data)
    src, dst = s3_store(moto_s3, buckets[0]), s3_store(moto_s3, buckets[1])
    listed = _listed(src)
    assert listed.md5 is None and listed.etag is not None and listed.etag.endswith("-3")
    # Below the single-copy limit: CopyObject would give the copy a plain MD5 of its own.
    result = copy_object(src, dst, listed, "copy.bin", LIMITS)
    assert (result.method, result.verified_by) == ("server_multipart", "etag")
    assert result.checksum == f"etag:{listed.etag}"
    assert dst.head("copy.bin").etag == listed.etag
    assert dst.get_bytes("copy.bin", max_size=SIZE) == data


def test_a_streamed_copy_of_a_multipart_object_is_verified_by_its_etag(
    moto_s3: dict[str, str], buckets: tuple[str, str]
) -> None:
    data = os.urandom(SIZE)
    _uploaded_in_parts(moto_s3, buckets[0], data)
    src = s3_store(moto_s3, buckets[0])
    dst = MemoryStore()  # another provider: streamed
    result = copy_object(src, dst, _listed(src), "copy.bin", LIMITS)
    assert (result.method, result.verified_by) == ("stream_multipart", "etag")
    assert dst.get_bytes("copy.bin", max_size=SIZE) == data


class ShiftedParts:
    """A destination whose part 2 is copied from the wrong range (a faulty store): the upload
    completes, with other bytes than the source's."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def copy_part(
        self,
        source: ObjectStore,
        src_key: str,
        key: str,
        upload_id: str,
        number: int,
        byte_range: tuple[int, int],
        *,
        etag: str | None = None,
    ) -> UploadedPart:
        first, last = byte_range
        if number == 2:
            first, last = first - 1, last - 1
        return self.inner.copy_part(
            source, src_key, key, upload_id, number, (first, last), etag=etag
        )


def test_a_server_copy_whose_part_differs_fails(
    moto_s3: dict[str, str], buckets: tuple[str, str]
) -> None:
    _uploaded_in_parts(moto_s3, buckets[0], os.urandom(SIZE))
    src, dst = s3_store(moto_s3, buckets[0]), s3_store(moto_s3, buckets[1])
    with pytest.raises(StorageError) as err:
        copy_object(src, ShiftedParts(dst), _listed(src), "copy.bin", LIMITS)  # type: ignore[arg-type]
    assert err.value.kind is ErrorKind.CHECKSUM_MISMATCH
