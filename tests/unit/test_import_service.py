"""The import use cases on memory buckets and a real SQLite ledger, tasks run inline."""

from __future__ import annotations

import json
import random

import pytest
from sqlmodel import delete, func, select

from bootstrap import Container
from devstack.sample import image_key, label_key, make_label, make_png, populate
from importer import service
from importer.errors import Conflict, NotFound
from importer.manifest import ImportManifest
from metadata.models import Dataset, ImportJob, LedgerEntry, Shard
from storage_adapters.base import StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tests.support import (
    InlineQueue,
    add_config,
    add_dataset,
    add_seed_configs,
    new_workspace,
    seed_manifest,
)

N = 25


def manifest(**options: object) -> ImportManifest:
    return ImportManifest.model_validate(
        seed_manifest(**{"shard_size": 7, "concurrency": 4, **options})
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
def setup(container: Container, workspace_id: str, source_store, dest_store):  # type: ignore[no-untyped-def]
    ctx = container.ctx
    dest = add_seed_configs(ctx, container.box, workspace_id=workspace_id)
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=dest)
    return ctx


def run(ctx, queue: InlineQueue, workspace_id: str, m: ImportManifest, **kw) -> ImportJob:  # type: ignore[no-untyped-def]
    job = service.submit_import(ctx, workspace_id=workspace_id, manifest=m)
    queue.drain(ctx, **kw)
    with ctx.db.uow() as uow:
        return uow.session.get(ImportJob, job.id)


def ledger_rows(ctx) -> list[LedgerEntry]:  # type: ignore[no-untyped-def]
    with ctx.db.uow() as uow:
        return list(uow.session.exec(select(LedgerEntry).order_by(LedgerEntry.remote_path)).all())


def test_seed_example_copies_every_object_and_stores_labels(
    setup, queue: InlineQueue, workspace_id: str, dest_store
) -> None:
    job = run(setup, queue, workspace_id, manifest())
    assert job.state == "succeeded", job.error
    assert (job.listed, job.copied, job.failed, job.skipped) == (N, N, 0, 0)
    assert job.shards_total == -(-N // 7)
    rows = ledger_rows(setup)
    assert len(rows) == N
    for i, row in enumerate(rows, start=1):
        assert row.remote_path == f"{i:05d}.png"
        assert row.dest_key == f"default/{i:05d}.png"
        assert row.outcome == "copied"
        assert row.label == {"CLASSIFICATION": make_label(i)}
        assert row.checksum and row.checksum.startswith("md5:")
        assert dest_store.get_bytes(row.dest_key, max_size=1 << 20) == make_png(i)


def test_listing_counts_only_the_data_prefix(setup, queue: InlineQueue, workspace_id: str) -> None:
    job = run(setup, queue, workspace_id, manifest())
    assert job.listed == N
    assert job.bytes_listed == sum(len(make_png(i)) for i in range(1, N + 1))


def test_rerun_copies_nothing_and_adds_no_ledger_rows(
    setup, queue: InlineQueue, workspace_id: str, dest_store
) -> None:
    run(setup, queue, workspace_id, manifest())
    before = ledger_rows(setup)
    puts_before = len(MemoryBackend.named("datasets"))
    again = run(setup, queue, workspace_id, manifest())
    assert again.state == "succeeded"
    assert (again.copied, again.skipped, again.failed) == (0, N, 0)
    assert again.shards_total == 0  # skipped from the ledger, without a request
    after = ledger_rows(setup)
    assert [r.id for r in after] == [r.id for r in before]
    assert len(MemoryBackend.named("datasets")) == puts_before


def test_objects_already_at_the_destination_are_skipped(
    setup, queue: InlineQueue, workspace_id: str, dest_store
) -> None:
    # Put one object there by hand, identical; one differs.
    dest_store.put("default/00001.png", make_png(1))
    dest_store.put("default/00002.png", b"stale")
    job = run(setup, queue, workspace_id, manifest())
    assert (job.copied, job.skipped) == (N - 1, 1)
    assert dest_store.get_bytes("default/00002.png", max_size=1 << 20) == make_png(2)


def test_overwrite_always_copies_again(setup, queue: InlineQueue, workspace_id: str) -> None:
    run(setup, queue, workspace_id, manifest())
    again = run(setup, queue, workspace_id, manifest(overwrite="always"))
    assert (again.copied, again.skipped) == (N, 0)
    assert len(ledger_rows(setup)) == N


def test_in_place_import_moves_no_bytes(
    container: Container, workspace_id: str, queue: InlineQueue, source_store
) -> None:
    ctx = container.ctx
    config = add_config(
        ctx, container.box, workspace_id=workspace_id, name="user-bucket", bucket="user"
    )
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=config, path="data/images/")
    objects_before = len(MemoryBackend.named("user"))
    job = run(ctx, queue, workspace_id, manifest())
    assert job.in_place
    assert (job.state, job.registered, job.copied, job.bytes_copied) == ("succeeded", N, 0, 0)
    assert len(MemoryBackend.named("user")) == objects_before
    rows = ledger_rows(ctx)
    assert all(r.dest_key == r.source_key for r in rows)
    assert rows[0].label == {"CLASSIFICATION": make_label(1)}
    again = run(ctx, queue, workspace_id, manifest())
    assert (again.registered, again.skipped) == (0, N)


def test_bad_label_and_missing_object_fail_alone_then_retry_completes(
    setup, queue: InlineQueue, workspace_id: str, source_store, dest_store
) -> None:
    source_store.put(label_key(3), b'{"category": ')
    job = service.submit_import(setup, workspace_id=workspace_id, manifest=manifest())
    # Plan first, then make one listed object vanish before its shard runs.
    _kind, job_id = queue.tasks.popleft()
    service.plan_import(setup, job_id)
    source_store.delete(image_key(5))
    queue.drain(setup)
    with setup.db.uow() as uow:
        job = uow.session.get(ImportJob, job.id)
    assert job.state == "partially_failed"
    assert (job.copied, job.failed) == (N - 2, 2)
    failures = {r.source_key: r for r in ledger_rows(setup) if r.outcome == "failed"}
    assert failures[image_key(3)].error_code == "label_invalid"
    assert label_key(3) in failures[image_key(3)].error_message
    assert failures[image_key(5)].error_code == ErrorKind.NOT_FOUND.value
    # Neither failed object was copied.
    with pytest.raises(StorageError):
        dest_store.head("default/00003.png")

    source_store.put(label_key(3), json.dumps(make_label(3)).encode())
    source_store.put(image_key(5), make_png(5))
    service.retry_import(setup, workspace_id=workspace_id, job_id=job.id)
    queue.drain(setup)
    with setup.db.uow() as uow:
        job = uow.session.get(ImportJob, job.id)
    assert (job.state, job.run, job.failed) == ("succeeded", 2, 0)
    assert job.copied == N  # the job as a whole: run 1 copied N - 2, the retry 2
    assert len(ledger_rows(setup)) == N
    assert dest_store.get_bytes("default/00005.png", max_size=1 << 20) == make_png(5)


def test_missing_label_fails_or_imports_as_asked(
    setup, queue: InlineQueue, workspace_id: str, source_store
) -> None:
    source_store.delete(label_key(2))
    job = run(setup, queue, workspace_id, manifest())
    assert job.failed == 1
    row = next(r for r in ledger_rows(setup) if r.remote_path == "00002.png")
    assert "label file is missing" in row.error_message

    job = run(setup, queue, workspace_id, manifest(missing_label="import"))
    assert (job.state, job.failed) == ("succeeded", 0)
    row = next(r for r in ledger_rows(setup) if r.remote_path == "00002.png")
    assert (row.outcome, row.label) == ("copied", None)


def test_transient_faults_are_retried_and_counted(
    setup, queue: InlineQueue, workspace_id: str
) -> None:
    slow = StorageError(ErrorKind.RATE_LIMITED, "SlowDown", status=503)
    MemoryBackend.named("datasets").fail_next("copy_from", slow, times=2)
    job = run(setup, queue, workspace_id, manifest(concurrency=1))
    assert (job.state, job.copied) == ("succeeded", N)
    assert max(r.attempts for r in ledger_rows(setup)) == 3


def test_permanent_fault_fails_the_object_with_its_reason(
    setup, queue: InlineQueue, workspace_id: str
) -> None:
    denied = StorageError(ErrorKind.PERMISSION_DENIED, "AccessDenied", status=403)
    MemoryBackend.named("datasets").fail_next("copy_from", denied)
    job = run(setup, queue, workspace_id, manifest(concurrency=1))
    assert (job.state, job.copied, job.failed) == ("partially_failed", N - 1, 1)
    failed = [r for r in ledger_rows(setup) if r.outcome == "failed"]
    assert failed[0].error_code == "permission_denied"
    assert failed[0].attempts == 1


def test_finalizes_once_whatever_order_tasks_run_in(
    setup, queue: InlineQueue, workspace_id: str
) -> None:
    jobs = [
        service.submit_import(
            setup,
            workspace_id=workspace_id,
            manifest=manifest(shard_size=size).model_copy(update={"segment": f"s{size}"}),
        )
        for size in (1, 3, 10)
    ]
    queue.drain(setup, rng=random.Random(7))
    with setup.db.uow() as uow:
        for job in jobs:
            fresh = uow.session.get(ImportJob, job.id)
            assert fresh.state == "succeeded"
            assert (fresh.copied, fresh.skipped) == (N, 0)
            done = uow.session.exec(
                select(func.count())
                .select_from(Shard)
                .where(Shard.job_id == job.id, Shard.done == True)  # noqa: E712
            ).one()
            assert done == fresh.shards_total


def test_one_import_at_a_time_per_segment(setup, queue: InlineQueue, workspace_id: str) -> None:
    first = service.submit_import(setup, workspace_id=workspace_id, manifest=manifest())
    with pytest.raises(Conflict) as err:
        service.submit_import(setup, workspace_id=workspace_id, manifest=manifest())
    assert first.id in err.value.message and err.value.field == "segment"
    queue.drain(setup)
    service.submit_import(setup, workspace_id=workspace_id, manifest=manifest())


def test_a_redelivered_shard_redoes_nothing(setup, queue: InlineQueue, workspace_id: str) -> None:
    service.submit_import(setup, workspace_id=workspace_id, manifest=manifest())
    queue.drain(setup)
    with setup.db.uow() as uow:
        shard = uow.session.exec(select(Shard)).first()
        shard.done = False  # as if the worker died after its last ledger batch
        uow.session.add(shard)
        uow.commit()
    result = service.copy_shard(setup, shard.id)
    assert (result.copied, result.failed) == (0, 0)


def test_cancel_before_copying_leaves_a_consistent_ledger(
    setup, queue: InlineQueue, workspace_id: str
) -> None:
    job = service.submit_import(setup, workspace_id=workspace_id, manifest=manifest())
    service.plan_import(setup, queue.tasks.popleft()[1])
    service.cancel_import(setup, workspace_id=workspace_id, job_id=job.id)
    queue.drain(setup)
    with setup.db.uow() as uow:
        job = uow.session.get(ImportJob, job.id)
    assert job.state == "cancelled"
    assert ledger_rows(setup) == []
    with pytest.raises(Conflict):
        service.cancel_import(setup, workspace_id=workspace_id, job_id=job.id)


def test_dry_run_changes_nothing(setup, queue: InlineQueue, workspace_id: str) -> None:
    run(setup, queue, workspace_id, manifest())
    job = run(setup, queue, workspace_id, manifest(dry_run=True, overwrite="skip_existing"))
    assert (job.state, job.listed, job.skipped, job.planned, job.shards_total) == (
        "succeeded",
        N,
        N,
        0,
        0,
    )
    assert all(r.outcome == "copied" for r in ledger_rows(setup))


def test_missing_source_bucket_fails_the_job_with_the_reason(
    setup, queue: InlineQueue, workspace_id: str
) -> None:
    MemoryBackend.named("user").exists = False
    job = run(setup, queue, workspace_id, manifest())
    assert job.state == "failed"
    assert "user-bucket" in job.error and "does not exist" in job.error


def test_unknown_names_are_not_found(setup, workspace_id: str) -> None:
    with pytest.raises(NotFound) as err:
        service.submit_import(
            setup,
            workspace_id=workspace_id,
            manifest=manifest().model_copy(update={"dataset": "Dogs"}),
        )
    assert err.value.field == "dataset"


def test_default_storage_dataset_streams_into_bayports_storage(
    container: Container, workspace_id: str, queue: InlineQueue, source_store
) -> None:
    ctx = container.ctx
    add_config(ctx, container.box, workspace_id=workspace_id, name="user-bucket", bucket="user")
    dataset = add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=None)
    job = run(ctx, queue, workspace_id, manifest())
    assert (job.state, job.copied) == ("succeeded", N)
    folder = container.settings.resolved_default_storage_dir / dataset.path / "default"
    assert (folder / "00007.png").read_bytes() == make_png(7)


def test_large_objects_stream_in_parts(tmp_path, queue: InlineQueue) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from bootstrap import build_container
    from metadata.db import migrate
    from tests.conftest import make_settings

    mib = 1024 * 1024
    settings = make_settings(tmp_path, multipart_threshold=5 * mib, multipart_part_size=5 * mib)
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=queue)
    ctx = container.ctx
    workspace, _ = new_workspace(ctx)
    src = open_store(StorageSpec(provider="memory", bucket="user"))
    big = random.Random(1).randbytes(11 * mib + 5)
    src.put("data/images/big.bin", big)
    add_config(ctx, container.box, workspace_id=workspace.id, name="user-bucket", bucket="user")
    add_dataset(ctx, workspace_id=workspace.id, name="Cats", config=None)
    m = ImportManifest.model_validate(
        {"dataset": "Cats", "source": {"config_name": "user-bucket", "data_prefix": "data/images"}}
    )
    job = run(ctx, queue, workspace.id, m)
    assert (job.state, job.copied, job.bytes_copied) == ("succeeded", 1, len(big))
    row = ledger_rows(ctx)[0]
    assert row.checksum == f"md5:{hashlib.md5(big).hexdigest()}"
    container.db.dispose()


def test_an_abandoned_shard_fails_its_unfinished_objects_and_the_job_ends(
    setup, queue: InlineQueue, workspace_id: str
) -> None:
    job = service.submit_import(setup, workspace_id=workspace_id, manifest=manifest())
    service.plan_import(setup, queue.tasks.popleft()[1])
    first_shard = queue.tasks.popleft()[1]
    queue.drain(setup)  # every other shard
    service.abandon_shard(setup, first_shard, "shard failed: RuntimeError('boom')")
    with setup.db.uow() as uow:
        job = uow.session.get(ImportJob, job.id)
    assert (job.state, job.copied, job.failed) == ("partially_failed", N - 7, 7)
    failed = [r for r in ledger_rows(setup) if r.outcome == "failed"]
    assert {r.error_message for r in failed} == {"shard failed: RuntimeError('boom')"}
    service.abandon_shard(setup, first_shard, "again")  # a second call changes nothing
    assert len([r for r in ledger_rows(setup) if r.outcome == "failed"]) == 7


def test_abandoned_planning_fails_the_job(setup, queue: InlineQueue, workspace_id: str) -> None:
    job = service.submit_import(setup, workspace_id=workspace_id, manifest=manifest())
    service.abandon_planning(setup, job.id, "planning failed: OperationalError()")
    with setup.db.uow() as uow:
        job = uow.session.get(ImportJob, job.id)
    assert (job.state, job.error) == ("failed", "planning failed: OperationalError()")


def test_move_deletes_each_source_object_after_its_verified_copy(
    setup, queue: InlineQueue, workspace_id: str, source_store, dest_store
) -> None:
    job = run(setup, queue, workspace_id, manifest(move=True))
    assert (job.state, job.copied) == ("succeeded", N)
    for i in range(1, N + 1):
        with pytest.raises(StorageError):
            source_store.head(image_key(i))
        assert dest_store.get_bytes(f"default/{i:05d}.png", max_size=1 << 20) == make_png(i)
    # labels stay: they were parsed into the ledger, not moved
    assert source_store.head(label_key(1)).size > 0


def test_move_is_refused_for_an_in_place_import(
    container: Container, workspace_id: str, source_store
) -> None:
    from importer.errors import Invalid

    ctx = container.ctx
    config = add_config(
        ctx, container.box, workspace_id=workspace_id, name="user-bucket", bucket="user"
    )
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=config, path="data/")
    with pytest.raises(Invalid) as err:
        service.submit_import(ctx, workspace_id=workspace_id, manifest=manifest(move=True))
    assert err.value.field == "options.move"


def test_a_checksum_mismatch_is_tried_once_more_then_fails(
    setup, queue: InlineQueue, workspace_id: str
) -> None:
    from importer.copier import mismatch

    backend = MemoryBackend.named("datasets")
    backend.fail_next("copy_from", mismatch("x", "copy has MD5 0, source 1"))
    job = run(setup, queue, workspace_id, manifest(concurrency=1))
    assert (job.state, job.copied) == ("succeeded", N)  # the second try went through

    backend.fail_next("copy_from", mismatch("x", "copy has MD5 0, source 1"), times=2)
    job = run(setup, queue, workspace_id, manifest(concurrency=1, overwrite="always"))
    assert (job.state, job.failed) == ("partially_failed", 1)
    # The object stays as the first job copied it; the failure is recorded beside it.
    (failed,) = [r for r in ledger_rows(setup) if r.failed_job_id == job.id]
    assert (failed.outcome, failed.error_code, failed.attempts) == (
        "copied",
        "checksum_mismatch",
        2,
    )


def test_in_place_bookkeeping_runs_inline_and_label_reads_run_on_threads(
    container: Container,
    workspace_id: str,
    queue: InlineQueue,
    source_store,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An in-place import with nothing to ask the store per object (no label files) is
    registered in the task's own thread; one that reads label files uses the copy threads."""
    from importer import shards

    threaded: list[int] = []
    real = shards._run_bounded

    def counting(fn, items, *args):  # type: ignore[no-untyped-def]
        threaded.append(len(items))
        return real(fn, items, *args)

    monkeypatch.setattr(shards, "_run_bounded", counting)
    ctx = container.ctx
    config = add_config(
        ctx, container.box, workspace_id=workspace_id, name="user-bucket", bucket="user"
    )
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=config, path="data/images/")
    bare = manifest().model_copy(
        update={"source": manifest().source.model_copy(update={"label_prefix": None})}
    )
    job = run(ctx, queue, workspace_id, bare.model_copy(update={"segment": "bare"}))
    assert (job.state, job.registered, job.failed) == ("succeeded", N, 0)
    assert threaded == []
    labelled = run(ctx, queue, workspace_id, manifest())
    assert (labelled.state, labelled.registered) == ("succeeded", N)
    assert sum(threaded) == N


def test_an_in_place_import_needing_no_request_is_registered_by_its_planning(
    container: Container,
    workspace_id: str,
    queue: InlineQueue,
    source_store,  # type: ignore[no-untyped-def]
) -> None:
    """Issue 22: an in-place import whose objects need no request each (no label files; a
    COCO file's labels) writes its ledger rows with each listing page: no shard, no copy
    task. Each row is what a shard writes (a label the catalog refuses fails that object
    alone); an import that reads label files still goes in shards."""
    ctx = container.ctx
    config = add_config(
        ctx, container.box, workspace_id=workspace_id, name="user-bucket", bucket="user"
    )
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=config, path="data/images/")
    labelled = run(ctx, queue, workspace_id, manifest().model_copy(update={"segment": "files"}))
    with ctx.db.uow() as uow:
        shards = uow.session.exec(select(func.count()).select_from(Shard)).one()
    assert (labelled.state, labelled.registered) == ("succeeded", N)
    assert shards == -(-N // 7)  # label files read: in shards

    with ctx.db.uow() as uow:
        uow.session.exec(delete(Shard))  # type: ignore[call-overload]
        dataset = uow.session.exec(select(Dataset).where(Dataset.name == "Cats")).one()
        dataset.catalog = {"BOX2D": {"categories": [{"name": "cat"}]}}
        uow.commit()
    names = [image_key(i).removeprefix("data/images/") for i in range(1, N + 1)]
    coco = {
        "images": [
            {"id": i, "file_name": name, "width": 8, "height": 8} for i, name in enumerate(names)
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 10 + i, "image_id": i, "category_id": 2 if i == 3 else 1, "bbox": [1, 1, 2, 2]}
            for i in range(N - 1)  # the last image has no annotation: labelled {}
        ],
    }
    source_store.put("data/coco.json", json.dumps(coco).encode())
    raw = seed_manifest(shard_size=7, concurrency=4)
    raw["source"] = {
        k: v for k, v in raw["source"].items() if k not in ("label_prefix", "label_type")
    }
    raw["source"].update(label_format="coco", coco_file="data/coco.json")
    job = service.submit_import(
        ctx, workspace_id=workspace_id, manifest=ImportManifest.model_validate(raw)
    )
    assert queue.drain(ctx, only={"plan"}) == 1
    assert [kind for kind, _ in queue.tasks] == []  # planning queued no copy
    with ctx.db.uow() as uow:
        done = uow.session.get(ImportJob, job.id)
        shards = uow.session.exec(select(func.count()).select_from(Shard)).one()
    assert shards == 0
    assert (done.state, done.registered, done.failed) == ("partially_failed", N - 1, 1)
    rows = {r.remote_path: r for r in ledger_rows(ctx) if r.job_id == job.id}
    first = rows[names[0]]
    assert (first.outcome, first.dest_key, first.label_key) == (
        "registered",
        image_key(1),
        "data/coco.json",
    )
    assert first.checksum is not None and first.label_etag is not None
    assert first.label["BOX2D"][0]["category"] == "cat"
    refused = rows[names[3]]
    assert (refused.outcome, refused.error_code) == ("failed", "catalog_violation")
    assert rows[names[-1]].label is None and rows[names[-1]].outcome == "registered"
