"""Data safety (issue 19): no object lost, no wrong success, under redelivery, resumed
planning, retries and syncs. Memory buckets and a real ledger on SQLite and PostgreSQL,
tasks run inline. Each test is named after the issue's item it shows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import select

from bayport.sample import image_key, populate
from bayport.wiring import Container, build_container
from importer import planner, service
from importer.context import ImportContext
from importer.errors import Conflict
from importer.manifest import ImportManifest
from metadata import repository as repo
from metadata.db import migrate
from metadata.models import ImportJob, LedgerEntry, Shard
from storage_adapters.base import StorageSpec
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.support import InlineQueue, add_config, add_dataset

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
    with ctx.db.uow() as uow:
        workspace, _ = repo.create_workspace(uow.session, name="w")
        uow.commit()
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
        {
            "dataset": "Cats",
            "source": {"config_name": "user-bucket", "data_prefix": "data/images/"},
            "options": {"shard_size": 4, "concurrency": 2, **options},
        }
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
        repo.upsert_ledger(uow.session, rows=[late_failure])
        uow.commit()
    kept = ledger(ctx)["00001.png"]
    assert (kept.outcome, kept.error_code, kept.failed_job_id) == ("copied", None, None)
    with ctx.db.uow() as uow:
        assert repo.job_counts(uow.session, job_id=done.id).failed == 0


def test_item4_planning_resumed_after_its_last_page_lists_nothing_again(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planner killed after committing its last page (before the listing is marked done)
    used to list everything again on redelivery: every object in two shards."""
    ctx = world["ctx"]
    job_id = submit(world, manifest())
    world["queue"].tasks.clear()
    real = planner._plan_deletions
    crashed: list[bool] = []

    def crash_once(*args: Any, **kwargs: Any) -> None:
        if not crashed:
            crashed.append(True)
            raise RuntimeError("worker killed after the last page")
        real(*args, **kwargs)

    monkeypatch.setattr(planner, "_plan_deletions", crash_once)
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
        present = repo.count_segment_data(uow.session, segment_id=segment_id)
        failures = repo.job_failures(uow.session, job_id=sync.id, offset=0, limit=10)
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
