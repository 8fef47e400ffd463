"""Keys against real S3 servers: Unicode keys (CJK, emoji, NFC and NFD spellings, URL
characters) import byte for byte; keys a provider lists that no dataset should hold ('..',
'.', control characters) fail alone, and nothing is written outside the dataset's folder."""

from __future__ import annotations

import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlmodel import select

from bootstrap import Container, build_container
from importer import service
from importer.manifest import ImportManifest
from importer.planner import UNSAFE_KEY
from metadata.db import migrate
from metadata.models import ImportJob, LedgerEntry
from tests.conftest import make_settings
from tests.drills import verify_import
from tests.servers import make_bucket, s3_store
from tests.support import InlineQueue, add_config, add_dataset, new_workspace

UNICODE_KEYS = [
    "猫/画像 1.png",
    "猫/画像 2.png",
    "🐱/😀 smile.png",
    unicodedata.normalize("NFC", "café/crème.png"),
    unicodedata.normalize("NFD", "café/crème.png"),  # the same text, other bytes: other key
    "Ελληνικά/αβγ.png",
    "עברית/שלום.png",
    "url chars/a+b=c&d?e#f%20g;h,i'j(k)!~.png",
    "a..b/..c../x..png",  # dots inside names are fine
]
UNSAFE_KEYS = [
    "../escape.png",
    "a/../../escape-too.png",
    "a/./b.png",
    "bell\x07.png",
    "c1\x85.png",
]


@pytest.fixture
def container(tmp_path: Path, queue: InlineQueue) -> Iterator[Container]:
    settings = make_settings(tmp_path / "bayport")
    migrate(settings.resolved_database_url)
    built = build_container(settings, enqueuer=queue)
    yield built
    built.db.dispose()


def _workspace(container: Container) -> str:
    workspace, _ = new_workspace(container)
    return workspace.id


def _s3_config(
    container: Container, workspace_id: str, server: dict[str, str], name: str, bucket: str
) -> Any:
    creds = {"accesskey_id": server["access_key"], "accesskey_secret": server["secret_key"]}
    return add_config(
        container.ctx,
        container.box,
        workspace_id=workspace_id,
        name=name,
        provider="s3",
        bucket=bucket,
        endpoint=server["endpoint"],
        credentials=creds,
    )


def _import(container: Container, queue: InlineQueue, workspace_id: str) -> ImportJob:
    manifest = ImportManifest.model_validate(
        {
            "dataset": "Cats",
            "source": {"config_name": "src", "data_prefix": "data/"},
            "options": {"shard_size": 4, "concurrency": 4},
        }
    )
    job = service.submit_import(container.ctx, workspace_id=workspace_id, manifest=manifest)
    queue.drain(container.ctx)
    with container.db.uow() as uow:
        done = uow.session.get(ImportJob, job.id)
    assert done is not None
    return done


def _buckets(server: dict[str, str]) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:10]
    names = (f"user-{suffix}", f"datasets-{suffix}")
    for name in names:
        make_bucket(server, name)
    return names


def test_unicode_keys_import_byte_for_byte(
    container: Container, queue: InlineQueue, moto_s3: dict[str, str]
) -> None:
    """On moto: it keeps a key's bytes as sent (rclone serve s3 folds NFD into NFC, its keys
    being file names)."""
    started = time.monotonic()
    source_bucket, dest_bucket = _buckets(moto_s3)
    source, dest = s3_store(moto_s3, source_bucket), s3_store(moto_s3, dest_bucket)
    for i, key in enumerate(UNICODE_KEYS):
        source.put(f"data/{key}", f"object {i}: {key}".encode())
    listed = {o.key for o in source.list_page("data/").objects}
    assert listed == {f"data/{k}" for k in UNICODE_KEYS}  # the server keeps both spellings
    workspace_id = _workspace(container)
    _s3_config(container, workspace_id, moto_s3, "src", source_bucket)
    dest_config = _s3_config(container, workspace_id, moto_s3, "datasets", dest_bucket)
    add_dataset(container.ctx, workspace_id=workspace_id, name="Cats", config=dest_config)
    job = _import(container, queue, workspace_id)
    assert job.state == "succeeded", job.error
    assert job.copied == len(UNICODE_KEYS)
    verdict = verify_import(
        source=source,
        data_prefix="data/",
        dest=dest,
        dest_prefix="default/",
        database_url=container.settings.resolved_database_url,
        job_id=job.id,
    )
    print("\n" + verdict.row("Unicode keys (S3 -> S3)", "none", time.monotonic() - started))
    assert verdict.ok, str(verdict)
    # A second run finds every key in the ledger, under its own spelling.
    again = _import(container, queue, workspace_id)
    assert (again.state, again.copied, again.skipped) == ("succeeded", 0, len(UNICODE_KEYS))


def test_unsafe_keys_a_provider_lists_fail_alone(
    container: Container, queue: InlineQueue, moto_s3: dict[str, str]
) -> None:
    """moto stores and lists any key, '..' and control characters included (rclone cannot:
    its keys are file names). The dataset lives in Bayport's default storage, a folder."""
    bucket = f"unsafe-{uuid.uuid4().hex[:10]}"
    make_bucket(moto_s3, bucket)
    client = boto3.client(
        "s3",
        endpoint_url=moto_s3["endpoint"],
        aws_access_key_id=moto_s3["access_key"],
        aws_secret_access_key=moto_s3["secret_key"],
        region_name="us-east-1",
    )
    good = UNICODE_KEYS[:3]
    for key in good + UNSAFE_KEYS:  # boto3 itself: our adapter refuses nothing it writes
        client.put_object(Bucket=bucket, Key=f"data/{key}", Body=key.encode())
    listed = {o.key for o in s3_store(moto_s3, bucket).list_page("data/").objects}
    assert listed == {f"data/{k}" for k in good + UNSAFE_KEYS}
    workspace_id = _workspace(container)
    _s3_config(container, workspace_id, moto_s3, "src", bucket)
    add_dataset(container.ctx, workspace_id=workspace_id, name="Cats", config=None)
    job = _import(container, queue, workspace_id)
    assert job.state == "partially_failed", job.error
    assert (job.listed, job.copied, job.failed) == (
        len(good) + len(UNSAFE_KEYS),
        len(good),
        len(UNSAFE_KEYS),
    )
    with container.db.uow() as uow:
        rows = {r.source_key: r for r in uow.session.exec(select(LedgerEntry)).all()}
    for key in UNSAFE_KEYS:
        assert rows[f"data/{key}"].error_code == UNSAFE_KEY
    root = container.settings.resolved_default_storage_dir
    for key in good:
        assert (root / rows[f"data/{key}"].dest_key).read_bytes() == key.encode()
    data_dir = container.settings.data_dir.resolve()
    written = [p for p in data_dir.parent.rglob("*") if p.is_file() and "escape" in p.name]
    assert written == []
