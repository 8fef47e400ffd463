"""Data safety (issue 19): no object lost, no wrong success, under redelivery, resumed
planning, retries and syncs. Memory buckets and a real ledger on SQLite and PostgreSQL,
tasks run inline. Each test is named after the issue's item it shows."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import select

from bootstrap import Container, build_container
from devstack.sample import image_key, populate
from importer import planner, service
from importer.context import ImportContext
from importer.errors import Conflict
from importer.manifest import ImportManifest
from metadata.db import migrate
from metadata.models import ImportJob, LedgerEntry, Shard
from metadata.queries import datasets as datasets_q
from metadata.queries import job_reports
from metadata.queries import ledger as ledger_q
from metadata.queries import notes as notes_q
from storage_adapters.base import StorageSpec
from storage_adapters.memory import MemoryBackend, MemoryStore
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.support import InlineQueue, add_config, add_dataset, new_workspace, seed_manifest

N = 9


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    overrides: dict[str, object] = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_database")
    settings = make_settings(tmp_path / "bayport", **overrides)
    migrate(settings.resolved_database_url)
    queue = InlineQueue()
    container: Container = build_container(settings, enqueuer=queue)
    ctx = container.ctx
    workspace, _ = new_workspace(ctx)
    source = open_store(StorageSpec(provider="memory", bucket="user"))
    populate(source, N)
    add_config(ctx, container.box, workspace_id=workspace.id, name="user-bucket", bucket="user")
    dest = add_config(ctx, container.box, workspace_id=workspace.id, name="ds", bucket="datasets")
    add_dataset(ctx, workspace_id=workspace.id, name="Cats", config=dest)
    yield {
        "ctx": ctx,
        "queue": queue,
        "workspace_id": workspace.id,
        "source": source,
        "db": request.param,
    }
    container.db.dispose()
    MemoryBackend.forget_named()


def manifest(**options: Any) -> ImportManifest:
    return ImportManifest.model_validate(
        seed_manifest(labels=False, **{"shard_size": 4, "concurrency": 2, **options})
    )


def submit(w: dict[str, Any], m: ImportManifest) -> str:
    return service.submit_import(w["ctx"], workspace_id=w["workspace_id"], manifest=m).id


def run(w: dict[str, Any], m: ImportManifest) -> ImportJob:
    job_id = submit(w, m)
    w["queue"].drain(w["ctx"])
    return job(w["ctx"], job_id)


def job(ctx: ImportContext, job_id: str) -> ImportJob:
    with ctx.db.uow() as uow:
        found = uow.session.get(ImportJob, job_id)
        assert found is not None
        return found


def ledger(ctx: ImportContext) -> dict[str, LedgerEntry]:
    with ctx.db.uow() as uow:
        return {e.remote_path: e for e in uow.session.exec(select(LedgerEntry)).all()}


def test_item3_a_failure_from_a_duplicate_delivery_never_overwrites_copied(
    world: dict[str, Any],
) -> None:
    """With `move` the source is gone once copied: a duplicate delivery of the shard that
    then fails (the source is missing) used to turn COPIED into FAILED, and the object
    dropped out of the dataset for good."""
    ctx = world["ctx"]
    done = run(world, manifest(move=True))
    assert (done.state, done.copied) == ("succeeded", N)
    entry = ledger(ctx)["00001.png"]
    late_failure = {
        c: getattr(entry, c)
        for c in LedgerEntry.model_fields
        if c not in ("id", "failed_job_id", "verified_by")
    }
    late_failure.update(outcome="failed", error_code="not_found", error_message="gone", attempts=1)
    with ctx.db.uow() as uow:
        ledger_q.upsert_ledger(uow.session, rows=[late_failure])
        uow.commit()
    kept = ledger(ctx)["00001.png"]
    assert (kept.outcome, kept.error_code, kept.failed_job_id) == ("copied", None, None)
    with ctx.db.uow() as uow:
        assert ledger_q.job_counts(uow.session, job_id=done.id).failed == 0


def test_item4_planning_resumed_after_its_last_page_lists_nothing_again(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planner killed after committing its last page (before the listing is marked done)
    used to list everything again on redelivery: every object in two shards."""
    ctx = world["ctx"]
    job_id = submit(world, manifest())
    world["queue"].tasks.clear()
    real = planner.listing.plan_deletions
    crashed: list[bool] = []

    def crash_once(*args: Any, **kwargs: Any) -> None:
        if not crashed:
            crashed.append(True)
            raise RuntimeError("worker killed after the last page")
        real(*args, **kwargs)

    monkeypatch.setattr(planner.listing, "plan_deletions", crash_once)
    with pytest.raises(RuntimeError):
        service.plan_import(ctx, job_id)
    with ctx.db.uow() as uow:  # its planning lease went stale: the redelivery takes it
        found = uow.session.get(ImportJob, job_id)
        assert found is not None and not found.listing_done
        found.heartbeat_at = found.heartbeat_at - timedelta(hours=1) if found.heartbeat_at else None
        uow.commit()
    service.plan_import(ctx, job_id)
    world["queue"].drain(ctx)
    with ctx.db.uow() as uow:
        shards = uow.session.exec(select(Shard).where(Shard.job_id == job_id)).all()
    keys = [item[0] for s in shards for item in s.items]
    assert sorted(keys) == [image_key(i) for i in range(1, N + 1)]  # each once
    finished = job(ctx, job_id)
    assert (finished.state, finished.listed, finished.copied) == ("succeeded", N, N)


def test_item6_a_retry_waits_for_a_job_running_on_the_segment(world: dict[str, Any]) -> None:
    """A retry used to start while another job ran on the segment: two live jobs on one
    segment, taking each other's objects."""
    ctx = world["ctx"]
    first = run(world, manifest())
    _fail_one(ctx, first.id)  # as a failed copy would have left it
    second = submit(world, manifest(dry_run=True))  # queued: a job running on the segment
    with pytest.raises(Conflict) as caught:
        service.retry_import(ctx, workspace_id=world["workspace_id"], job_id=first.id)
    assert second in str(caught.value) and caught.value.field == "segment"
    world["queue"].drain(ctx)
    retried = service.retry_import(ctx, workspace_id=world["workspace_id"], job_id=first.id)
    assert retried.state == "queued"  # once the other job has ended


def _not_found() -> Exception:
    from storage_adapters.errors import ErrorKind, StorageError

    return StorageError(ErrorKind.NOT_FOUND, "missing")


def _fail_one(ctx: ImportContext, job_id: str) -> None:
    """Mark one of the job's entries failed, as a failed copy would have left it."""
    with ctx.db.uow() as uow:
        entry = uow.session.exec(select(LedgerEntry).where(LedgerEntry.job_id == job_id)).first()
        assert entry is not None
        entry.outcome = "failed"
        uow.session.add(entry)
        uow.commit()


def test_item10_a_failed_sync_keeps_the_object_and_a_later_delete_removes_its_copy(
    world: dict[str, Any],
) -> None:
    """A sync whose copy of a changed object failed used to overwrite the good entry with
    FAILED: the object vanished from the segment's data, and deleting its source later
    left its copy in the dataset for good."""
    ctx, source = world["ctx"], world["source"]
    run(world, manifest())
    source.put(image_key(2), b"changed")
    MemoryBackend.named("datasets").fail_next("copy_from", _not_found(), times=1)
    sync = run(world, manifest(concurrency=1))
    assert (sync.state, sync.failed) == ("partially_failed", 1)
    entry = ledger(ctx)["00002.png"]
    assert (entry.outcome, entry.failed_job_id, entry.error_code) == (
        "copied",
        sync.id,
        "not_found",
    )
    with ctx.db.uow() as uow:
        segment_id = entry.segment_id
        present = datasets_q.count_segment_data(uow.session, segment_id=segment_id)
        failures = job_reports.job_failures(uow.session, job_id=sync.id, offset=0, limit=10)
    assert present == N and [f.remote_path for f in failures] == ["00002.png"]
    dest = open_store(StorageSpec(provider="memory", bucket="datasets"))
    assert dest.head(entry.dest_key).size > 0

    source.delete(image_key(2))
    deleting = run(world, manifest(delete=True, max_delete_percent=50))
    assert (deleting.state, deleting.deleted) == ("succeeded", 1), deleting.review_reason
    assert ledger(ctx)["00002.png"].outcome == "deleted"
    assert entry.dest_key not in [o.key for o in dest.list_page("").objects]


def test_item11_delete_with_overwrite_always_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        manifest(delete=True, overwrite="always")
    assert "options.delete" in str(caught.value)


def test_item12_a_second_delivery_of_a_finished_shard_holds_no_lock(
    world: dict[str, Any],
) -> None:
    """On SQLite the finishing ran inside the redelivery's still-open transaction (BEGIN
    IMMEDIATE), so it waited out the 60 s busy timeout, blocking every writer."""
    ctx = world["ctx"]
    done = run(world, manifest())
    with ctx.db.uow() as uow:
        shard_id = uow.session.exec(select(Shard.id).where(Shard.job_id == done.id)).first()
    assert shard_id is not None
    started = time.monotonic()
    result = service.copy_shard(ctx, shard_id, lease_owner="late-duplicate")
    # Not a speed target: a lock wait is the busy timeout, 60 s, against milliseconds.
    assert time.monotonic() - started < 30
    assert not result.held_elsewhere and job(ctx, done.id).state == "succeeded"


def _plan_only(w: dict[str, Any], m: ImportManifest) -> str:
    """Submit and plan (the listing is read, shards written) without copying yet."""
    job_id = submit(w, m)
    w["queue"].drain(w["ctx"], only={"plan"})
    return job_id


def test_item1_a_move_never_deletes_a_source_version_it_did_not_copy(
    world: dict[str, Any],
) -> None:
    """The destination already holds the listed version (skipped), and the source was
    written again after the listing: the move used to delete the new version unseen."""
    ctx, source = world["ctx"], world["source"]
    dest = open_store(StorageSpec(provider="memory", bucket="datasets"))
    for i in range(1, N + 1):  # copied before by another tool: equal, so skipped
        dest.put(f"default/{i:05d}.png", source.get_bytes(image_key(i), max_size=1 << 20))
    job_id = _plan_only(world, manifest(move=True))
    source.put(image_key(4), b"written after the listing")
    world["queue"].drain(ctx)
    done = job(ctx, job_id)
    assert done.state == "succeeded", done.error
    assert source.get_bytes(image_key(4), max_size=100) == b"written after the listing"
    assert [k for k in [o.key for o in source.list_page("data/images/").objects]] == [
        image_key(4)
    ]  # every other source went, moved
    kept = ledger(ctx)["00004.png"]
    assert (kept.outcome, kept.error_code) == ("skipped", "source_changed")


def test_item7_a_copy_is_pinned_to_the_listed_version_and_says_how_it_was_verified(
    world: dict[str, Any],
) -> None:
    """Changed between listing and copy: the copy is refused (before: copied the new
    version, found its MD5 unlike the listing's, tried again and failed as a mismatch, and a
    multipart part copy could splice two versions). Each copy records its check."""
    ctx, source = world["ctx"], world["source"]
    job_id = _plan_only(world, manifest())
    source.put(image_key(7), b"changed after the listing")
    world["queue"].drain(ctx)
    entries = ledger(ctx)
    changed = entries["00007.png"]
    assert (changed.outcome, changed.error_code) == ("failed", "precondition_failed")
    assert "changed" in (changed.error_message or "")
    assert job(ctx, job_id).failed == 1
    copied = [e for e in entries.values() if e.outcome == "copied"]
    assert len(copied) == N - 1 and {e.verified_by for e in copied} == {"md5"}


def test_item7_a_streamed_copy_from_a_source_without_checksums_is_verified_by_size(
    tmp_path: Path,
) -> None:
    """A local folder states no MD5: the copy's checksum is not an MD5 Bayport computed and
    could compare with nothing, and `verified_by` says what was checked."""
    from importer.copier import CopyLimits, copy_object
    from storage_adapters.local import LocalStore

    (tmp_path / "src").mkdir()
    src = LocalStore(str(tmp_path / "src"))
    src.put("a.png", b"x" * 5000)
    dst = open_store(StorageSpec(provider="memory", bucket="elsewhere"))
    limits = CopyLimits(multipart_threshold=1 << 30, part_size=5 << 20, max_single_copy_size=1)
    result = copy_object(src, dst, src.head("a.png"), "a.png", limits)
    assert result.verified_by == "size"
    assert result.checksum is not None and not result.checksum.startswith("md5:")
    memory_src = MemoryStore()  # another account: streamed, and it states MD5s
    memory_src.put("b.png", b"y" * 5000)
    stated = copy_object(memory_src, dst, memory_src.head("b.png"), "b.png", limits)
    assert (stated.verified_by, stated.method) == ("md5", "stream")


def test_item9_a_same_size_edit_with_its_mtime_kept_changes_the_local_etag(
    tmp_path: Path,
) -> None:
    """`rsync -a` writes a new file and keeps the old mtime: mtime + size saw no change."""
    import os

    from storage_adapters.local import LocalStore

    store = LocalStore(str(tmp_path))
    before = store.put("a.png", b"version one")
    st = os.stat(tmp_path / "a.png")
    replacement = tmp_path / ".a.png.tmp"
    replacement.write_bytes(b"version two")  # the same size
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, tmp_path / "a.png")
    assert store.head("a.png").etag != before.etag


def test_item9_a_sync_without_etags_copies_again_and_says_so(world: dict[str, Any]) -> None:
    """No ETag on one side used to compare as unchanged (None == None)."""
    ctx = world["ctx"]
    run(world, manifest())
    with ctx.db.uow() as uow:  # as a listing without ETags would have left the ledger
        for entry in uow.session.exec(select(LedgerEntry)).all():
            entry.source_etag = None
            uow.session.add(entry)
        uow.commit()
    sync = run(world, manifest())
    assert (sync.state, sync.copied, sync.unchanged) == ("succeeded", N, 0)
    assert (sync.left_out or {}).get("copied_again_without_etag") == N
    assert sync.notice is not None and "no ETag" in sync.notice


def test_item2_a_deletion_keeps_a_mask_another_object_still_uses(
    world: dict[str, Any],
) -> None:
    """`a.png` and `a.jpg` both pair `_masks/a.png`: deleting `a.jpg` used to delete the
    mask `a.png` still names."""
    src = open_store(StorageSpec(provider="memory", bucket="user"))
    src.put("pics/a.png", b"png")
    src.put("pics/a.jpg", b"jpg")
    src.put("pics/b.png", b"b")
    src.put("masks/a.png", b"mask a")
    src.put("masks/b.png", b"mask b")
    m = {
        "dataset": "Cats",
        "source": {
            "config_name": "user-bucket",
            "data_prefix": "pics/",
            "mask_prefix": "masks/",
            "mask_type": "SEMANTIC_MASK",
        },
        "options": {"delete": True, "max_delete_percent": 100},
    }
    first = run(world, ImportManifest.model_validate(m))
    assert first.copied == 3, first.error
    dest = open_store(StorageSpec(provider="memory", bucket="datasets"))
    assert dest.get_bytes("default/_masks/a.png", max_size=100) == b"mask a"
    src.delete("pics/a.jpg")
    src.delete("pics/b.png")
    second = run(world, ImportManifest.model_validate(m))
    assert (second.state, second.deleted) == ("succeeded", 2), second.review_reason
    assert dest.get_bytes("default/_masks/a.png", max_size=100) == b"mask a"  # a.png's
    keys = [o.key for o in dest.list_page("default/").objects]
    assert "default/_masks/b.png" not in keys and "default/a.jpg" not in keys


def test_item15_folder_keys_with_data_and_shared_labels_are_counted_and_listed(
    world: dict[str, Any],
) -> None:
    ctx = world["ctx"]
    src = open_store(StorageSpec(provider="memory", bucket="user"))
    src.put("odd/a.png", b"png")
    src.put("odd/a.jpg", b"jpg")
    src.put("odd/folder/", b"5 bytes of data in a folder key")
    src.put("odd/empty/", b"")  # a plain folder marker: nothing to say
    src.put("lab/a.json", b'{"category": "cat"}')
    m = {
        "dataset": "Cats",
        "source": {
            "config_name": "user-bucket",
            "data_prefix": "odd/",
            "label_prefix": "lab/",
            "label_type": "classification",
        },
    }
    done = run(world, ImportManifest.model_validate(m))
    assert (done.state, done.copied) == ("succeeded", 2), done.error
    assert done.left_out == {"folder_keys_with_data": 1, "objects_sharing_a_label_file": 2}
    assert done.notice is not None and "folder" in done.notice and "share" in done.notice
    with ctx.db.uow() as uow:
        notes = notes_q.job_notes(
            uow.session, job_id=done.id, kind="unimported_key", offset=0, limit=10
        )
    said = sorted(n.key for n in notes)
    assert said[0].startswith("odd/a.jpg: shares the label file lab/a.json with odd/a.png")
    assert said[2] == "odd/folder/: a folder key holding data, not imported"


def test_item13_a_streamed_copy_holds_the_object_once(tmp_path: Path) -> None:
    """`_stream_single` kept the chunks and then joined them: twice the object's size."""
    import tracemalloc

    from importer.copier import CopyLimits, copy_object
    from storage_adapters.base import ObjectInfo

    size = 8 << 20
    src = open_store(StorageSpec(provider="memory", bucket="big-src"))
    src.put("big", os.urandom(size))

    class Discard:  # a destination that keeps nothing: only the copy's own memory counts
        capabilities = src.capabilities

        def can_copy_from(self, _source: object) -> bool:
            return False

        def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
            return ObjectInfo(key=key, size=len(data), md5=hashlib.md5(data).hexdigest())

    limits = CopyLimits(multipart_threshold=1 << 30, part_size=5 << 20, max_single_copy_size=1)
    info = src.head("big")
    tracemalloc.start()
    try:
        copy_object(src, Discard(), info, "big", limits)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.3 * size, f"peak {peak / size:.2f}x the object"


def test_item14_a_job_drops_the_unfinished_uploads_its_killed_copies_left(
    world: dict[str, Any],
) -> None:
    """A copy killed mid-multipart left its upload (and its parts' storage) for good."""
    dest = open_store(StorageSpec(provider="memory", bucket="datasets"))
    left = dest.create_multipart("default/00003.png")  # as a killed copy of it left
    dest.upload_part("default/00003.png", left, 1, b"half of it")
    other = dest.create_multipart("elsewhere/not-ours.bin")
    done = run(world, manifest())
    assert (done.state, done.copied) == ("succeeded", N)
    assert dest.list_uploads("") == [("elsewhere/not-ours.bin", other)]


def test_item8_an_sse_kms_etag_is_not_taken_for_an_md5(moto_s3: dict[str, str]) -> None:
    """moto's S3 with an SSE-KMS object: its ETag is no MD5 (on AWS it is random), so HEAD
    states none, and copies of it are verified without one (before: HEAD called the ETag an
    MD5, and an AWS copy failed as a checksum mismatch)."""
    import boto3

    from importer.copier import CopyLimits, copy_object
    from tests.servers import make_bucket

    bucket = f"kms-{os.urandom(4).hex()}"
    make_bucket(moto_s3, bucket)
    credentials = {
        "accesskey_id": moto_s3["access_key"],
        "accesskey_secret": moto_s3["secret_key"],
    }
    store = open_store(
        StorageSpec("s3", bucket, endpoint=moto_s3["endpoint"], credentials=credentials)
    )
    client = boto3.client(
        "s3",
        endpoint_url=moto_s3["endpoint"],
        aws_access_key_id=moto_s3["access_key"],
        aws_secret_access_key=moto_s3["secret_key"],
        region_name="us-east-1",
    )
    data = os.urandom(4096)
    client.put_object(Bucket=bucket, Key="enc.bin", Body=data, ServerSideEncryption="aws:kms")
    store.put("plain.bin", data)
    assert store.head("plain.bin").md5 == hashlib.md5(data).hexdigest()
    head = store.head("enc.bin")
    assert head.md5 is None and head.etag

    limits = CopyLimits(
        multipart_threshold=1 << 30, part_size=5 << 20, max_single_copy_size=1 << 30
    )
    (listed,) = [o for o in store.list_page("enc").objects]
    # As AWS would list it: an ETag that looks like an MD5 and is not this content's.
    as_aws = dataclasses.replace(listed, md5="0" * 32)
    server = copy_object(store, store, as_aws, "copy.bin", limits)
    assert (server.method, server.verified_by) == ("server", "size")
    streamed = copy_object(store, MemoryStore(), as_aws, "copy.bin", limits)
    assert (streamed.method, streamed.verified_by) == ("stream", "size")
    assert store.get_bytes("copy.bin", max_size=1 << 20) == data
