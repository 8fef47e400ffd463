"""The import logic against a real S3 server (rclone serve s3) and real databases: tasks run
inline, so a test can act between planning and copying."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap import Container, build_container
from devstack.sample import image_key, make_png, populate
from importer import service
from importer.manifest import ImportManifest
from metadata.db import migrate
from metadata.models import ImportJob
from metadata.queries import job_reports, ledger
from storage_adapters.errors import StorageError
from tests.conftest import make_settings
from tests.support import InlineQueue, add_config, add_dataset, new_workspace, seed_manifest

N = 30


@pytest.fixture(params=["sqlite", "postgres"])
def s3_container(
    request: pytest.FixtureRequest, tmp_path: Path, queue: InlineQueue
) -> Iterator[Container]:
    overrides: dict[str, Any] = {"list_page_size": 3}  # many pages from few objects
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_database")
    settings = make_settings(tmp_path / "bayport", **overrides)
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=queue)
    yield container
    container.db.dispose()


def _setup(container: Container, s3: dict[str, Any]) -> tuple[str, ImportManifest]:
    ctx = container.ctx
    workspace, _ = new_workspace(ctx)
    creds = {"accesskey_id": s3["access_key"], "accesskey_secret": s3["secret_key"]}
    add_config(
        ctx,
        container.box,
        workspace_id=workspace.id,
        name="user-bucket",
        provider="s3",
        bucket=s3["source_bucket"],
        endpoint=s3["endpoint"],
        credentials=creds,
    )
    dest = add_config(
        ctx,
        container.box,
        workspace_id=workspace.id,
        name="datasets",
        provider="s3",
        bucket=s3["dest_bucket"],
        endpoint=s3["endpoint"],
        credentials=creds,
    )
    add_dataset(ctx, workspace_id=workspace.id, name="Cats", config=dest, path="cats/")
    manifest = ImportManifest.model_validate(seed_manifest(shard_size=8, concurrency=4))
    return workspace.id, manifest


def _job(container: Container, job_id: str) -> ImportJob:
    with container.db.uow() as uow:
        job = uow.session.get(ImportJob, job_id)
        assert job is not None
        return job


def test_missing_source_object_fails_alone_and_retry_completes(
    s3_container: Container, s3_buckets: dict[str, Any], queue: InlineQueue
) -> None:
    ctx = s3_container.ctx
    source, dest = s3_buckets["source"], s3_buckets["dest"]
    populate(source, N)
    workspace_id, manifest = _setup(s3_container, s3_buckets)
    job = service.submit_import(ctx, workspace_id=workspace_id, manifest=manifest)
    service.plan_import(ctx, queue.tasks.popleft()[1])
    source.delete(image_key(4))  # listed, then gone before its shard runs
    queue.drain(ctx)

    done = _job(s3_container, job.id)
    assert (done.state, done.copied, done.failed) == ("partially_failed", N - 1, 1)
    with ctx.db.uow() as uow:
        (failure,) = job_reports.job_failures(uow.session, job_id=job.id, offset=0, limit=10)
    assert (failure.source_key, failure.error_code) == (image_key(4), "not_found")
    with pytest.raises(StorageError):
        dest.head("cats/default/00004.png")
    # Server-side copies of single-part objects carry the source's MD5.
    assert dest.head("cats/default/00001.png").md5 is not None

    source.put(image_key(4), make_png(4))
    service.retry_import(ctx, workspace_id=workspace_id, job_id=job.id)
    queue.drain(ctx)
    done = _job(s3_container, job.id)
    assert (done.state, done.copied, done.failed, done.run) == ("succeeded", N, 0, 2)
    assert dest.get_bytes("cats/default/00004.png", max_size=1 << 20) == make_png(4)


def test_wrong_credentials_fail_the_job_with_the_reason(
    s3_container: Container, s3_buckets: dict[str, Any], queue: InlineQueue
) -> None:
    ctx = s3_container.ctx
    populate(s3_buckets["source"], 3)
    workspace_id, manifest = _setup(s3_container, {**s3_buckets, "secret_key": "wrong-secret"})
    job = service.submit_import(ctx, workspace_id=workspace_id, manifest=manifest)
    queue.drain(ctx)
    done = _job(s3_container, job.id)
    assert done.state == "failed"
    assert "permission_denied" in (done.error or "")
    assert "wrong-secret" not in (done.error or "")


# Keys whose byte order is not their "natural" order, and whose label files sort
# differently from their images (a.k.png < a.png but a.json < a.k.json).
TRICKY = ["A.png", "a-1.png", "a.k.png", "a.png", "a/b.png", "z z.png", "é.png", "日本.png"]


def test_sync_walks_the_ledger_in_listing_order_on_a_real_server(
    s3_container: Container, s3_buckets: dict[str, Any], queue: InlineQueue
) -> None:
    """Both databases keep keys in the providers' byte order: a sync's walk beside the
    listing finds exactly what is gone, changed, new and relabelled."""
    ctx = s3_container.ctx
    source, dest = s3_buckets["source"], s3_buckets["dest"]

    def put(name: str, label: str) -> None:
        stem = name.rsplit(".", 1)[0]
        source.put(f"data/images/{name}", make_png(len(name)))
        source.put(f"data/labels/{stem}.json", json.dumps({"category": label}).encode())

    for name in TRICKY:
        put(name, "first")
    workspace_id, manifest = _setup(s3_container, s3_buckets)
    first = service.submit_import(ctx, workspace_id=workspace_id, manifest=manifest)
    queue.drain(ctx)
    assert _job(s3_container, first.id).copied == len(TRICKY)

    source.delete("data/images/a.png")
    source.delete("data/images/é.png")
    source.put("data/labels/a.k.json", json.dumps({"category": "second"}).encode())
    put("b.png", "new")
    synced = manifest.model_copy(
        update={
            "options": manifest.options.model_copy(
                update={"delete": True, "max_delete_percent": 50}
            )
        }
    )
    job = service.submit_import(ctx, workspace_id=workspace_id, manifest=synced)
    queue.drain(ctx)
    done = _job(s3_container, job.id)
    assert done.state == "succeeded", done.review_reason or done.error
    assert (done.copied, done.relabelled, done.deleted, done.failed) == (1, 1, 2, 0)
    assert done.unchanged == len(TRICKY) - 3
    with pytest.raises(StorageError):
        dest.head("cats/default/é.png")
    assert dest.head("cats/default/日本.png").size > 0
    with ctx.db.uow() as uow:
        rows = {
            r.remote_path: r
            for r in ledger.ledger_entries_by_path(
                uow.session,
                segment_id=done.segment_id,
                remote_paths=["a.k.png", "a.png", "b.png"],
            ).values()
        }
    assert rows["a.k.png"].label == {"CLASSIFICATION": {"category": "second"}}
    assert rows["a.png"].outcome == "deleted"
    assert rows["b.png"].outcome == "copied"
