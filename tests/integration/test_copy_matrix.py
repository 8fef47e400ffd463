"""Every provider pair on real servers: S3 (rclone serve s3, moto), OSS (the OSS-protocol test
server), Azure (Azurite). The seed's example imported for each of the 9 source -> destination
pairs, large objects by multipart, and a byte corrupted in transit caught."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bootstrap import Container, build_container
from devstack.sample import image_key, make_label, make_png, populate
from importer import service
from importer.copier import CopyLimits, copy_object
from importer.manifest import ImportManifest
from metadata.db import migrate
from metadata.models import ImportJob, LedgerEntry
from storage_adapters.base import ObjectStore
from storage_adapters.errors import ErrorKind, StorageError
from tests.azure_fixtures import azure_store, make_container
from tests.conftest import make_settings
from tests.oss_fixtures import make_oss_bucket, oss_store
from tests.servers import make_bucket, s3_store
from tests.support import InlineQueue, add_config, add_dataset, new_workspace, seed_manifest
from tests.unit.test_copier import Recording

PROVIDERS = ("s3", "oss", "azure")
N = 12
MiB = 1024 * 1024


@dataclass
class Bucket:
    """A fresh bucket (or container) on one provider's test server."""

    provider: str
    name: str
    store: ObjectStore
    endpoint: str
    credentials: dict[str, str]


@pytest.fixture
def new_bucket(request: pytest.FixtureRequest) -> Callable[[str], Bucket]:
    def make(provider: str) -> Bucket:
        name = f"{provider}-{uuid.uuid4().hex[:12]}"
        if provider == "s3":
            info = request.getfixturevalue("rclone_s3")
            make_bucket(info, name)
            creds = {"accesskey_id": info["access_key"], "accesskey_secret": info["secret_key"]}
            return Bucket(provider, name, s3_store(info, name), info["endpoint"], creds)
        if provider == "oss":
            info = request.getfixturevalue("oss_server")
            make_oss_bucket(info, name)
            creds = {"accesskey_id": info["access_key"], "accesskey_secret": info["secret_key"]}
            return Bucket(provider, name, oss_store(info, name), info["endpoint"], creds)
        info = request.getfixturevalue("azurite")
        make_container(info, name)
        creds = {"account_name": info["account_name"], "account_key": info["account_key"]}
        return Bucket(provider, name, azure_store(info, name), info["endpoint"], creds)

    return make


@pytest.fixture
def matrix_container(tmp_path: Path, queue: InlineQueue) -> Iterator[Container]:
    settings = make_settings(
        tmp_path / "bayport",
        multipart_threshold=5 * MiB,
        multipart_part_size=5 * MiB,
        max_single_copy_size=5 * MiB,
    )
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=queue)
    yield container
    container.db.dispose()


def _configs(container: Container, source: Bucket, dest: Bucket) -> str:
    ctx = container.ctx
    workspace, _ = new_workspace(ctx)
    for name, bucket in (("user-bucket", source), ("datasets", dest)):
        config = add_config(
            ctx,
            container.box,
            workspace_id=workspace.id,
            name=name,
            provider=bucket.provider,
            bucket=bucket.name,
            endpoint=bucket.endpoint,
            credentials=bucket.credentials,
        )
    add_dataset(ctx, workspace_id=workspace.id, name="Cats", config=config, path="cats/")
    return workspace.id


MANIFEST = seed_manifest(shard_size=5, concurrency=4)


@pytest.mark.parametrize("dst_provider", PROVIDERS)
@pytest.mark.parametrize("src_provider", PROVIDERS)
def test_seed_example_for_every_provider_pair(
    src_provider: str,
    dst_provider: str,
    new_bucket: Callable[[str], Bucket],
    matrix_container: Container,
    queue: InlineQueue,
) -> None:
    source, dest = new_bucket(src_provider), new_bucket(dst_provider)
    populate(source.store, N)
    workspace_id = _configs(matrix_container, source, dest)
    ctx = matrix_container.ctx
    job = service.submit_import(
        ctx, workspace_id=workspace_id, manifest=ImportManifest.model_validate(MANIFEST)
    )
    queue.drain(ctx)
    with ctx.db.uow() as uow:
        done = uow.session.get(ImportJob, job.id)
        rows = {r.remote_path: r for r in uow.session.exec(select(LedgerEntry)).all()}
    assert done is not None and done.state == "succeeded", done and done.error
    assert (done.copied, done.failed) == (N, 0)
    for i in range(1, N + 1):
        data = make_png(i)
        assert dest.store.get_bytes(f"cats/default/{i:05d}.png", max_size=MiB) == data
        row = rows[f"{i:05d}.png"]
        assert row.label == {"CLASSIFICATION": make_label(i)}
        assert row.checksum in (
            f"md5:{hashlib.md5(data).hexdigest()}",
            f"etag:{dest.store.head(row.dest_key).etag}",
            f"crc64:{dest.store.head(row.dest_key).crc64}",
        )


@pytest.mark.parametrize(
    ("src_provider", "dst_provider"), [("s3", "oss"), ("oss", "azure"), ("azure", "s3")]
)
def test_large_objects_stream_by_multipart_into_each_provider(
    src_provider: str, dst_provider: str, new_bucket: Callable[[str], Bucket]
) -> None:
    source, dest = new_bucket(src_provider), new_bucket(dst_provider)
    data = os.urandom(12 * MiB + 7)
    listed = source.store.put("big.bin", data)
    src, dst = Recording(source.store), Recording(dest.store)
    limits = CopyLimits(
        multipart_threshold=5 * MiB, part_size=5 * MiB, max_single_copy_size=5 * MiB
    )
    result = copy_object(src, dst, listed, "copy/big.bin", limits)  # type: ignore[arg-type]
    assert result.method == "stream_multipart"
    # Memory bound: parts of the configured size, the source read in chunks of at most a
    # part (one chunk each where the provider answers so: the part itself, never joined).
    assert dst.part_sizes == [5 * MiB, 5 * MiB, 2 * MiB + 7]
    assert max(src.chunk_sizes) <= 5 * MiB
    assert dest.store.get_bytes("copy/big.bin", max_size=13 * MiB) == data
    assert result.checksum == f"md5:{hashlib.md5(data).hexdigest()}"


@pytest.mark.parametrize("provider", ["s3-moto", "oss", "azure"])
def test_large_objects_copy_within_a_provider_above_the_single_copy_limit(
    provider: str, new_bucket: Callable[[str], Bucket], request: pytest.FixtureRequest
) -> None:
    if provider == "s3-moto":
        # rclone serve s3 has no UploadPartCopy; moto's server does.
        info = request.getfixturevalue("moto_s3")
        names = [f"moto-{uuid.uuid4().hex[:10]}" for _ in range(2)]
        for name in names:
            make_bucket(info, name)
        src_store, dst_store = (s3_store(info, n) for n in names)
    else:
        src_store, dst_store = new_bucket(provider).store, new_bucket(provider).store
    data = os.urandom(11 * MiB)
    listed = src_store.put("big.bin", data)
    limits = CopyLimits(
        multipart_threshold=5 * MiB, part_size=5 * MiB, max_single_copy_size=5 * MiB
    )
    result = copy_object(src_store, dst_store, listed, "big.bin", limits)
    # In parts only where the parts are proven: OSS's CRC-64 spans them. Elsewhere a copy
    # in parts would have a checksum of its own, so the object is copied whole (S3's
    # CopyObject keeps the MD5 ETag, Azure's Copy Blob the Content-MD5), never proven by
    # its size alone.
    expected = ("server_multipart", "crc64") if provider == "oss" else ("server", "md5")
    assert (result.method, result.verified_by) == expected
    assert dst_store.get_bytes("big.bin", max_size=12 * MiB) == data


def test_a_byte_corrupted_in_transit_is_caught(
    new_bucket: Callable[[str], Bucket], request: pytest.FixtureRequest
) -> None:
    source, dest = new_bucket("oss"), new_bucket("s3")
    data = make_png(1)
    listed = source.store.put(image_key(1), data)
    server: Any = request.getfixturevalue("oss_server")["server"]
    server.corrupt_next_get(f"{source.name}/{image_key(1)}")
    limits = CopyLimits(
        multipart_threshold=5 * MiB, part_size=5 * MiB, max_single_copy_size=5 * MiB
    )
    with pytest.raises(StorageError) as err:
        copy_object(source.store, dest.store, listed, image_key(1), limits)
    assert err.value.kind is ErrorKind.CHECKSUM_MISMATCH
    with pytest.raises(StorageError):
        dest.store.head(image_key(1))  # nothing landed
    # The next read is clean again: the one retry the copier gets would succeed.
    assert copy_object(source.store, dest.store, listed, image_key(1), limits).size == len(data)
