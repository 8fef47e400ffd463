"""Syncs (an import run again): the ledger says what changed, labels are re-read when only
they changed, deletions are guarded, filters and object lists choose what is imported.
Memory buckets, a real SQLite ledger, tasks run inline (in a shuffled order)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from bootstrap import Container
from devstack.sample import image_key, label_key, make_label, make_png, populate
from importer import service
from importer.context import ImportContext
from importer.manifest import ImportManifest
from importer.planner import deletion_guard
from metadata.models import ImportJob, JobNote, JobState, LedgerEntry, Outcome
from metadata.queries import datasets as datasets_q
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tests.support import InlineQueue, add_config, add_dataset, add_seed_configs, seed_manifest

N = 50


def manifest(source: dict[str, Any] | None = None, **options: Any) -> ImportManifest:
    return ImportManifest.model_validate(
        seed_manifest(source=source, **{"shard_size": 7, "concurrency": 4, **options})
    )


@pytest.fixture
def source_store():  # type: ignore[no-untyped-def]
    store = open_store(StorageSpec(provider="memory", bucket="user"))
    populate(store, N)
    return store


@pytest.fixture
def dest_store():  # type: ignore[no-untyped-def]
    return open_store(StorageSpec(provider="memory", bucket="datasets"))


@pytest.fixture
def ctx(container: Container, workspace_id: str, source_store, dest_store):  # type: ignore[no-untyped-def]
    c = container.ctx
    dest = add_seed_configs(c, container.box, workspace_id=workspace_id)
    add_dataset(c, workspace_id=workspace_id, name="Cats", config=dest)
    return c


def run(ctx, queue: InlineQueue, workspace_id: str, m: ImportManifest, seed: int = 0) -> ImportJob:  # type: ignore[no-untyped-def]
    job = service.submit_import(ctx, workspace_id=workspace_id, manifest=m)
    queue.drain(ctx, rng=random.Random(seed))
    with ctx.db.uow() as uow:
        found = uow.session.get(ImportJob, job.id)
        assert found is not None
        return found


def ledger(ctx) -> dict[str, LedgerEntry]:  # type: ignore[no-untyped-def]
    with ctx.db.uow() as uow:
        return {e.remote_path: e for e in uow.session.exec(select(LedgerEntry)).all()}


def notes(ctx, job_id: str, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    with ctx.db.uow() as uow:
        rows = uow.session.exec(
            select(JobNote.key).where(JobNote.job_id == job_id, JobNote.kind == kind)
        ).all()
    return sorted(rows)


def write_label(store, i: int, label: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    store.put(label_key(i), json.dumps(label).encode())


def test_sync_copies_new_objects_and_reparses_changed_labels_only(
    ctx: ImportContext,
    queue: InlineQueue,
    workspace_id: str,
    source_store: ObjectStore,
    dest_store: ObjectStore,
) -> None:
    first = run(ctx, queue, workspace_id, manifest())
    assert (first.state, first.copied, first.failed) == ("succeeded", N, 0)
    before = ledger(ctx)
    assert all(e.label_etag for e in before.values())

    for i in range(N + 1, N + 11):  # 10 new objects with labels
        source_store.put(image_key(i), make_png(i))
        write_label(source_store, i, make_label(i))
    changed = [3, 17, 40]
    for i in changed:  # 3 labels changed; their images did not
        write_label(source_store, i, {"category": "changed", "attributes": {"n": i}})
    dest_calls = MemoryBackend.named("datasets").calls
    dest_calls.clear()
    source_calls = MemoryBackend.named("user").calls
    source_calls.clear()

    sync = run(ctx, queue, workspace_id, manifest(), seed=1)

    assert sync.state == "succeeded", sync.error
    assert (sync.copied, sync.relabelled, sync.failed) == (10, 3, 0)
    assert sync.unchanged == N - 3
    assert sync.skipped == N - 3
    after = ledger(ctx)
    assert len(after) == N + 10
    by_sync = {p for p, e in after.items() if e.job_id == sync.id}
    assert len(by_sync) == 13
    relabelled = {p for p in by_sync if after[p].outcome == Outcome.RELABELLED}
    assert relabelled == {f"{i:05d}.png" for i in changed}
    for i in changed:
        entry = after[f"{i:05d}.png"]
        assert entry.label == {"CLASSIFICATION": {"category": "changed", "attributes": {"n": i}}}
        assert entry.label_etag != before[entry.remote_path].label_etag
        # The image was not copied again: same checksum, no new object write.
        assert entry.checksum == before[entry.remote_path].checksum
    # Everything else is untouched: same row, same job, same time.
    for path, entry in before.items():
        if path not in by_sync:
            assert after[path] == entry
            assert after[path].updated_at == entry.updated_at
    # The sync neither listed nor HEADed the destination: it wrote the 10 new objects.
    assert dest_calls["list_page"] == 0 and dest_calls["head"] == 0
    assert source_calls["get_bytes"] == 13  # 10 new labels + 3 changed, nothing else
    assert source_calls["copy_source"] + source_calls["open"] <= 10


def test_second_sync_with_nothing_changed_copies_and_reads_nothing(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    run(ctx, queue, workspace_id, manifest())
    calls = MemoryBackend.named("user").calls
    calls.clear()
    sync = run(ctx, queue, workspace_id, manifest())
    assert (sync.state, sync.copied, sync.relabelled, sync.skipped) == ("succeeded", 0, 0, N)
    assert calls["get_bytes"] == 0 and calls["head"] == 0 and calls["open"] == 0
    assert {e.job_id for e in ledger(ctx).values()} != {sync.id}


def test_changed_image_is_copied_again_and_a_removed_label_fails_its_object(
    ctx: ImportContext,
    queue: InlineQueue,
    workspace_id: str,
    source_store: ObjectStore,
    dest_store: ObjectStore,
) -> None:
    run(ctx, queue, workspace_id, manifest())
    source_store.put(image_key(5), make_png(5, side=20))
    source_store.delete(label_key(6))
    sync = run(ctx, queue, workspace_id, manifest())
    assert (sync.copied, sync.relabelled, sync.failed) == (1, 0, 1)
    assert sync.state == "partially_failed"
    entries = ledger(ctx)
    assert entries["00005.png"].outcome == Outcome.COPIED
    assert dest_store.get_bytes("default/00005.png", max_size=1 << 20) == make_png(5, side=20)
    # The failed sync keeps the object as the ledger had it (issue 19 item 10: it must not
    # drop out of the dataset), its failure recorded beside it.
    assert entries["00006.png"].error_code == "label_missing"
    assert entries["00006.png"].outcome == Outcome.COPIED
    assert entries["00006.png"].failed_job_id == sync.id
    # With missing_label: import, the object stays, unlabelled (its label file gone: only
    # relabelled, not copied again); its label coming back is noticed by the next sync.
    sync2 = run(ctx, queue, workspace_id, manifest(missing_label="import"))
    assert (sync2.relabelled, sync2.copied, sync2.failed) == (1, 0, 0)
    assert ledger(ctx)["00006.png"].failed_job_id is None
    assert ledger(ctx)["00006.png"].label is None
    write_label(source_store, 6, {"category": "back"})
    sync3 = run(ctx, queue, workspace_id, manifest(missing_label="import"))
    assert (sync3.relabelled, sync3.copied, sync3.skipped) == (1, 0, N - 1)
    assert ledger(ctx)["00006.png"].label == {"CLASSIFICATION": {"category": "back"}}


def test_deletions_within_the_limits_tombstone_and_delete_from_the_dataset(
    ctx: ImportContext,
    queue: InlineQueue,
    workspace_id: str,
    source_store: ObjectStore,
    dest_store: ObjectStore,
) -> None:
    run(ctx, queue, workspace_id, manifest())
    for i in (2, 9, 33):
        source_store.delete(image_key(i))
    # Without `delete`, nothing is deleted (the default).
    plain = run(ctx, queue, workspace_id, manifest())
    assert (plain.state, plain.deleted, plain.delete_planned) == ("succeeded", 0, 0)
    assert dest_store.head("default/00002.png").size > 0

    sync = run(ctx, queue, workspace_id, manifest(delete=True), seed=3)
    assert (sync.state, sync.deleted, sync.copied, sync.failed) == ("succeeded", 3, 0, 0)
    assert notes(ctx, sync.id, "delete_candidate") == ["00002.png", "00009.png", "00033.png"]
    entries = ledger(ctx)
    for i in (2, 9, 33):
        assert entries[f"{i:05d}.png"].outcome == Outcome.DELETED
        assert entries[f"{i:05d}.png"].label is None
        assert not MemoryBackend.named("datasets").exists or not _exists(
            dest_store, f"default/{i:05d}.png"
        )
    assert _exists(dest_store, "default/00003.png")
    # Tombstones are not deleted twice, and the segment's data leaves them out.
    again = run(ctx, queue, workspace_id, manifest(delete=True))
    assert (again.deleted, again.delete_planned, again.skipped) == (0, 0, N - 3)
    with ctx.db.uow() as uow:
        segment_id = next(iter(ledger(ctx).values())).segment_id
        data = datasets_q.segment_data(uow.session, segment_id=segment_id, offset=0, limit=100)
    assert len(data) == N - 3


def _exists(store, key: str) -> bool:  # type: ignore[no-untyped-def]
    from storage_adapters.errors import StorageError

    try:
        store.head(key)
    except StorageError:
        return False
    return True


def test_deleting_60_percent_with_the_default_guard_deletes_nothing_and_says_why(
    ctx: ImportContext,
    queue: InlineQueue,
    workspace_id: str,
    source_store: ObjectStore,
    dest_store: ObjectStore,
) -> None:
    run(ctx, queue, workspace_id, manifest())
    for i in range(1, 31):  # 30 of 50: 60%
        source_store.delete(image_key(i))
    sync = run(ctx, queue, workspace_id, manifest(delete=True))
    assert sync.state == JobState.NEEDS_REVIEW
    assert sync.deleted == 0 and sync.delete_planned == 30
    assert sync.review_reason is not None
    assert "30 of 50 objects (60%)" in sync.review_reason
    assert "max_delete_percent 10%" in sync.review_reason
    assert "nothing was deleted" in sync.review_reason
    assert all(e.outcome != Outcome.DELETED for e in ledger(ctx).values())
    assert len(MemoryBackend.named("datasets")) == N
    # The count limit holds too, and a run with limits that allow it deletes them.
    capped = run(
        ctx, queue, workspace_id, manifest(delete=True, max_delete_percent=100, max_delete=5)
    )
    assert capped.state == JobState.NEEDS_REVIEW and "max_delete 5" in (capped.review_reason or "")
    allowed = run(ctx, queue, workspace_id, manifest(delete=True, max_delete_percent=60))
    assert (allowed.state, allowed.deleted) == ("succeeded", 30)
    assert len(MemoryBackend.named("datasets")) == N - 30


def test_an_empty_source_listing_deletes_nothing(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str, source_store: ObjectStore
) -> None:
    run(ctx, queue, workspace_id, manifest())
    for i in range(1, N + 1):
        source_store.delete(image_key(i))
    sync = run(
        ctx, queue, workspace_id, manifest(delete=True, max_delete_percent=100, max_delete=10**6)
    )
    assert sync.state == JobState.NEEDS_REVIEW
    assert "the source listing was empty" in (sync.review_reason or "")
    assert sync.deleted == 0
    assert len(MemoryBackend.named("datasets")) == N


def test_dry_run_reports_what_a_sync_would_do_and_changes_nothing(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str, source_store: ObjectStore
) -> None:
    run(ctx, queue, workspace_id, manifest())
    before = ledger(ctx)
    source_store.put(image_key(N + 1), make_png(N + 1))
    write_label(source_store, N + 1, make_label(1))
    write_label(source_store, 4, {"category": "x"})
    source_store.delete(image_key(7))
    dest_count = len(MemoryBackend.named("datasets"))
    dry = run(ctx, queue, workspace_id, manifest(delete=True, dry_run=True))
    assert dry.state == "succeeded"
    assert (dry.planned, dry.relabel_planned, dry.delete_planned) == (1, 1, 1)
    assert dry.skipped == dry.unchanged == N - 2
    assert (dry.copied, dry.relabelled, dry.deleted) == (0, 0, 0)
    assert ledger(ctx) == before
    assert len(MemoryBackend.named("datasets")) == dest_count


def test_include_exclude_and_modified_since_choose_objects_and_protect_them_from_deletion(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str, source_store: ObjectStore
) -> None:
    source_store.put("data/images/sub/a.jpg", make_png(1))
    source_store.put("data/labels/sub/a.json", json.dumps(make_label(1)).encode())
    src = {"include": ["*.png", "sub/**"], "exclude": ["0000[1-4].png"]}
    job = run(ctx, queue, workspace_id, manifest(src))
    paths = set(ledger(ctx))
    assert "sub/a.jpg" in paths and "00001.png" not in paths and "00005.png" in paths
    assert job.copied == N - 4 + 1
    # Excluding more later never deletes what was imported.
    narrower = {"include": ["sub/**"]}
    sync = run(ctx, queue, workspace_id, manifest(narrower, delete=True, max_delete_percent=100))
    assert (sync.state, sync.deleted, sync.delete_planned) == ("succeeded", 0, 0)
    # modified_since: only objects written at or after the time.
    cut = datetime.now(UTC) + timedelta(milliseconds=5)
    import time

    time.sleep(0.02)
    source_store.put(image_key(2), make_png(2, side=30))
    later = run(ctx, queue, workspace_id, manifest({"modified_since": cut.isoformat()}))
    assert (later.copied, later.listed, later.planned) == (1, N + 1, 1)


def test_object_lists_in_csv_and_json_lines(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str, source_store: ObjectStore
) -> None:
    rows = [
        "key,label_key",
        f"{image_key(1)}",
        f'"{image_key(2)}",{label_key(3)}',  # an explicit label file
        "data/other/x.png",  # outside data_prefix: refused, alone
        "data/images/../secret.png",
        f"{image_key(4)},,extra",
        "",
        image_key(999),  # missing: fails alone
    ]
    source_store.put("lists/batch.csv", "\n".join(rows).encode())
    write_label(source_store, 999, make_label(9))  # its label exists, the image does not
    job = run(ctx, queue, workspace_id, manifest({"object_list": "lists/batch.csv"}))
    assert job.state == "partially_failed"
    assert (job.copied, job.failed) == (2, 1)
    entries = ledger(ctx)
    assert entries["00002.png"].label_key == label_key(3)
    assert entries["00002.png"].label == {"CLASSIFICATION": make_label(3)}
    assert entries["00999.png"].error_code == "not_found"
    rejected = notes(ctx, job.id, "rejected_row")
    assert len(rejected) == 3
    assert any("line 4" in r and "not below data_prefix" in r for r in rejected)
    assert any("line 5" in r and ".." in r for r in rejected)
    assert any("line 6" in r and "3 columns" in r for r in rejected)

    lines = [json.dumps({"key": image_key(i)}) for i in (1, 5)] + ["{not json"]
    source_store.put("lists/batch.jsonl", "\n".join(lines).encode())
    again = run(ctx, queue, workspace_id, manifest({"object_list": "lists/batch.jsonl"}))
    # 00001 is in the ledger unchanged: skipped without a copy; 00005 is new.
    assert (again.copied, again.skipped, again.failed) == (1, 1, 0)
    assert notes(ctx, again.id, "rejected_row")[0].startswith("line 3: not JSON")


def test_manifest_refuses_delete_with_an_object_list_and_bad_globs() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"options\.delete needs a listing"):
        manifest({"object_list": "l.csv"}, delete=True)
    with pytest.raises(ValidationError, match="include"):
        manifest({"include": [""]})
    with pytest.raises(ValidationError, match="needs a time zone"):
        manifest({"modified_since": "2026-01-01T00:00:00"})


@pytest.mark.parametrize(
    ("gone", "total", "listed", "held"),
    [
        (5, 100, 95, None),
        (11, 100, 89, "max_delete_percent"),
        (1001, 100_000, 98_999, "max_delete 1000"),
        (3, 3, 0, "empty"),
        (1, 1, 5, "max_delete_percent"),
    ],
)
def test_deletion_guard(gone: int, total: int, listed: int, held: str | None) -> None:
    reason = deletion_guard(
        gone=gone, total=total, listed=listed, max_delete=1000, max_delete_percent=10
    )
    assert (reason is None) == (held is None)
    if held is not None:
        assert reason is not None and held in reason


def test_an_object_back_in_the_source_before_its_deletion_is_kept(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str, source_store: ObjectStore
) -> None:
    run(ctx, queue, workspace_id, manifest())
    source_store.delete(image_key(8))
    job = service.submit_import(ctx, workspace_id=workspace_id, manifest=manifest(delete=True))
    _plan, job_id = queue.tasks.popleft()
    service.plan_import(ctx, job_id)  # lists: 00008 is gone, a delete shard is queued
    source_store.put(image_key(8), make_png(8))  # ... and it comes back
    queue.drain(ctx)
    with ctx.db.uow() as uow:
        done = uow.session.get(ImportJob, job.id)
    assert done is not None and (done.state, done.deleted, done.delete_planned) == (
        "succeeded",
        0,
        1,
    )
    assert ledger(ctx)["00008.png"].outcome == Outcome.COPIED
    assert _exists(
        open_store(StorageSpec(provider="memory", bucket="datasets")), "default/00008.png"
    )


def test_in_place_sync_registers_new_objects_and_tombstones_gone_ones(
    container: Container, workspace_id: str, queue: InlineQueue, source_store
) -> None:
    c = container.ctx
    config = add_config(
        c, container.box, workspace_id=workspace_id, name="user-bucket", bucket="user"
    )
    add_dataset(c, workspace_id=workspace_id, name="Cats", config=config, path="data/images/")
    first = run(c, queue, workspace_id, manifest())
    assert (first.in_place, first.registered) == (True, N)
    source_store.delete(image_key(1))
    source_store.put(image_key(N + 1), make_png(1))
    write_label(source_store, N + 1, make_label(1))
    objects = len(MemoryBackend.named("user"))
    sync = run(c, queue, workspace_id, manifest(delete=True))
    assert (sync.state, sync.registered, sync.deleted, sync.skipped) == ("succeeded", 1, 1, N - 1)
    assert len(MemoryBackend.named("user")) == objects  # nothing copied, nothing deleted
    assert ledger(c)["00001.png"].outcome == Outcome.DELETED
