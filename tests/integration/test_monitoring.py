"""Monitoring on real parts: /metrics against the ledger (retries counted in the real Redis),
the completion report streamed with flat memory through a real HTTP server, structured logs
with job and shard ids and no secrets."""

from __future__ import annotations

import csv
import io
import json
import logging
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import func, select

from api.app import create_app
from bayport.logs import configure_logging
from bootstrap import Container, build_container
from devstack.sample import image_key, label_key, populate
from importer import service
from importer.manifest import ImportManifest
from metadata.db import migrate
from metadata.models import ImportJob, LedgerEntry, utcnow
from metadata.queries import ledger as ledger_q
from storage_adapters.base import StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.probes import serve_api
from tests.support import (
    InlineQueue,
    add_config,
    add_dataset,
    api_client,
    new_workspace,
    seed_manifest,
)

N = 40
SECRET = "sEcReT-provider-key-0123456789"


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[tuple[Container, InlineQueue, str, str]]:
    namespace = f"bayport-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        tmp_path / "bayport",
        broker_url=redis_url,
        metrics_namespace=namespace,
        metrics_token="scrape-token-123",
    )
    migrate(settings.resolved_database_url)
    queue = InlineQueue()
    container = build_container(settings, enqueuer=queue)
    workspace, key = new_workspace(container)
    ctx = container.ctx
    add_config(
        ctx,
        container.box,
        workspace_id=workspace.id,
        name="user-bucket",
        bucket="user",
        credentials={"accesskey_id": "AKID", "accesskey_secret": SECRET},
    )
    dest = add_config(ctx, container.box, workspace_id=workspace.id, name="ds", bucket="datasets")
    add_dataset(ctx, workspace_id=workspace.id, name="Cats", config=dest)
    populate(open_store(StorageSpec(provider="memory", bucket="user")), N)
    yield container, queue, workspace.id, key
    import redis

    client = redis.Redis.from_url(redis_url)
    for k in client.scan_iter(f"{namespace}:*"):
        client.delete(k)
    container.db.dispose()


def _manifest(**options: Any) -> ImportManifest:
    return ImportManifest.model_validate(
        seed_manifest(**{"shard_size": 9, "concurrency": 4, **options})
    )


def _run(world: Any, **options: Any) -> ImportJob:
    container, queue, workspace_id, _ = world
    job = service.submit_import(
        container.ctx, workspace_id=workspace_id, manifest=_manifest(**options)
    )
    queue.drain(container.ctx)
    with container.db.uow() as uow:
        done = uow.session.get(ImportJob, job.id)
    assert done is not None
    return done


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_counters_match_the_ledger(world: Any) -> None:
    container, _, _, _ = world
    source = MemoryBackend.named("user")
    throttled = StorageError(ErrorKind.RATE_LIMITED, "SlowDown", status=503)
    source.fail_next("get_bytes", throttled, times=3)  # label reads: retried, then fine
    source.fail_next("list_page", StorageError(ErrorKind.UNAVAILABLE, "reset"), times=2)
    MemoryBackend.named("user").fail_next("copy_source", throttled, times=1)
    open_store(StorageSpec(provider="memory", bucket="user")).delete(label_key(7))
    first = _run(world)
    assert (first.state, first.copied, first.failed) == ("partially_failed", N - 1, 1)
    second = _run(world, dry_run=True)  # dry runs count nothing

    client = TestClient(create_app(container))
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)
    with container.db.uow() as uow:
        by_outcome = dict(
            uow.session.exec(
                select(LedgerEntry.outcome, func.count()).group_by(LedgerEntry.outcome)
            ).all()
        )
        copied_bytes = uow.session.exec(
            select(func.sum(LedgerEntry.size)).where(LedgerEntry.outcome == "copied")
        ).one()

    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(
            sorted({"source_provider": "memory", "dest_provider": "memory", **labels}.items())
        )

    assert m[key("bayport_objects_total", outcome="copied")] == by_outcome["copied"] == N - 1
    assert m[key("bayport_objects_total", outcome="failed")] == by_outcome["failed"] == 1
    assert m[key("bayport_bytes_copied_total")] == copied_bytes
    assert m[("bayport_jobs", (("state", "partially_failed"),))] == 1
    assert m[("bayport_jobs", (("state", second.state),))] >= 1
    assert m[("bayport_storage_retries_total", (("kind", "rate_limited"),))] == 4
    assert m[("bayport_storage_retries_total", (("kind", "unavailable"),))] == 2
    assert ("bayport_queue_depth", (("queue", "bayport"),)) in m


def test_report_rows_are_the_ledgers_in_csv_and_json(world: Any) -> None:
    container, _, _, key = world
    open_store(StorageSpec(provider="memory", bucket="user")).delete(label_key(3))
    job = _run(world)
    client = api_client(container, key)
    r = client.get(f"/v1/imports/{job.id}/report", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == N
    failed = [row for row in rows if row["state"] == "failed"]
    assert [(f["source_key"], f["error_code"]) for f in failed] == [(image_key(3), "label_missing")]
    ok = next(row for row in rows if row["source_key"] == image_key(1))
    assert ok["destination"] == "default/00001.png" and ok["checksum"].startswith("md5:")
    assert int(ok["size"]) > 0 and ok["attempts"] == "1"
    body = client.get(f"/v1/imports/{job.id}/report", params={"format": "json"}).json()
    assert len(body) == N and {r["source_key"] for r in body} == {r["source_key"] for r in rows}
    assert client.get(f"/v1/imports/{job.id}/report", params={"format": "xml"}).status_code == 422
    assert client.get("/v1/imports/nope/report").status_code == 404


@pytest.fixture
def served(world: Any) -> Iterator[str]:
    """The API on a real HTTP server (uvicorn, in a thread), so a response streams for real."""
    with serve_api(world[0]) as url:
        yield url


def _fake_rows(container: Container, job: ImportJob, n: int, start: int) -> None:
    for first in range(start, start + n, 5000):
        rows = [
            {
                "dataset_id": job.dataset_id,
                "segment_id": job.segment_id,
                "remote_path": f"bulk/{i:07d}.png",
                "job_id": job.id,
                "outcome": "copied",
                "source_config_id": job.source_config_id,
                "source_key": f"data/images/bulk/{i:07d}.png",
                "source_etag": f"{i:032x}",
                "dest_key": f"default/bulk/{i:07d}.png",
                "size": 1000 + i,
                "checksum": f"md5:{i:032x}",
                "label_key": None,
                "label_etag": None,
                "label_type": None,
                "label": None,
                "attempts": 1,
                "error_code": None,
                "error_message": None,
                "updated_at": utcnow(),
            }
            for i in range(first, min(first + 5000, start + n))
        ]
        with container.db.uow() as uow:
            ledger_q.upsert_ledger(uow.session, rows=rows)
            uow.commit()


def _stream_peak(url: str, key: str) -> tuple[int, int]:
    """Bytes received and the peak of memory traced while streaming the report."""
    tracemalloc.start()
    try:
        received = 0
        with httpx.stream(
            "GET", url, params={"format": "csv"}, headers={"Authorization": f"Bearer {key}"}
        ) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                received += len(chunk)
        return received, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_100000_row_report_streams_with_flat_memory(world: Any, served: str) -> None:
    container, queue, workspace_id, key = world
    job = service.submit_import(container.ctx, workspace_id=workspace_id, manifest=_manifest())
    queue.tasks.clear()
    url = f"{served}/v1/imports/{job.id}/report"
    _fake_rows(container, job, 10_000, 0)
    small_bytes, small_peak = _stream_peak(url, key)
    _fake_rows(container, job, 90_000, 10_000)
    big_bytes, big_peak = _stream_peak(url, key)
    assert big_bytes > 9 * small_bytes  # ten times the rows...
    assert big_bytes > 10_000_000
    # ... and about the same memory: pages of rows, never the report.
    assert big_peak < small_peak + 2_000_000, (small_peak, big_peak)
    assert big_peak < 8_000_000


def test_logs_are_json_lines_with_job_and_shard_ids_and_never_a_secret(world: Any) -> None:
    container, _, _, _ = world
    out = io.StringIO()
    settings = container.settings.model_copy(update={"log_format": "json"})
    handler = configure_logging(settings, stream=out)
    try:
        source = MemoryBackend.named("user")
        # A provider that echoes the key in its error message (it happens): logged masked.
        source.fail_next(
            "copy_source",
            StorageError(ErrorKind.CHECKSUM_MISMATCH, f"digest differs (auth {SECRET})"),
        )
        source.fail_next("list_page", StorageError(ErrorKind.PERMISSION_DENIED, f"key {SECRET}"))
        _run(world)  # listing refused: the job fails, logged with its id
        failed_job = _run(world)  # now the copy mismatch is logged by a copy thread
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines, "nothing was logged"
    assert SECRET not in out.getvalue()
    assert any("***" in line["message"] for line in lines)
    listing = [line for line in lines if "listing" in line["message"]]
    assert listing and all(line["job_id"] for line in listing)
    retried = [line for line in lines if "once more" in line["message"]]
    assert retried and retried[0]["job_id"] == failed_job.id and retried[0]["shard_id"]
    assert {"time", "level", "logger", "message", "process"} <= set(lines[0])
