"""Job progress over HTTP on a real server (uvicorn): GET /v1/imports/{id}'s `progress`, the
server-sent events of /v1/imports/{id}/events until the final state, on SQLite and
PostgreSQL; and the job page's routes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from bootstrap import Container, build_container
from devstack.sample import label_key, populate
from metadata.db import migrate
from storage_adapters.base import StorageSpec
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.probes import serve_api
from tests.support import InlineQueue, add_seed_configs, api_client, new_workspace, seed_manifest

N = 40
MANIFEST = seed_manifest(shard_size=8, missing_label="fail")


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Container, str]]:
    database_url = None
    if request.param == "postgres":
        database_url = request.getfixturevalue("postgres_database")
    settings = make_settings(tmp_path / "bayport", database_url=database_url)
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    workspace, key = new_workspace(container)
    add_seed_configs(container.ctx, container.box, workspace_id=workspace.id)
    source = open_store(StorageSpec(provider="memory", bucket="user"))
    populate(source, N)
    source.delete(label_key(3))  # missing: fails (missing_label: fail)
    source.put(label_key(9), b"{not json")  # fails as label_invalid
    yield container, key
    container.db.dispose()
    MemoryBackend.forget_named()


def read_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The `data:` of each server-sent event, as it arrives."""
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield json.loads("\n".join(data))
            data = []


def test_events_stream_progress_until_the_final_state(world: tuple[Container, str]) -> None:
    container, key = world
    queue = container.ctx.enqueue
    assert isinstance(queue, InlineQueue)
    with (
        serve_api(container) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
    ):
        assert http.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"})
        submitted = http.post("/v1/imports", json=MANIFEST)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]

        queued = http.get(f"/v1/imports/{job_id}").json()["progress"]
        assert (queued["state"], queued["listing_done"], queued["objects_total"]) == (
            "queued",
            False,
            None,
        )
        assert (queued["eta_seconds"], queued["percent"]) == (None, None)

        queue.drain(container.ctx, only={"plan"})  # listed and sharded; nothing copied yet
        events: list[dict[str, Any]] = []
        started = time.monotonic()
        with http.stream("GET", f"/v1/imports/{job_id}/events", params={"interval": 0.2}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for event in read_events(r):
                events.append(event)
                if len(events) == 1:
                    # The first event arrived while the job runs: it streams. Now copy.
                    assert (event["state"], event["objects_total"], event["objects_done"]) == (
                        "copying",
                        N,
                        0,
                    )
                    queue.drain(container.ctx)
        elapsed = time.monotonic() - started

    assert elapsed < 20
    final = events[-1]
    assert [e["state"] for e in events[:-1]] == ["copying"] * (len(events) - 1)
    assert final["state"] == "partially_failed"
    assert (final["objects_total"], final["objects_done"], final["failed"]) == (N, N, 2)
    assert (final["percent"], final["eta_seconds"], final["listing_done"]) == (100.0, 0.0, True)
    assert final["bytes_total"] == final["bytes_done"] > 0
    assert final["objects_per_second"] > 0 and final["mb_per_second"] > 0
    series = final["throughput"]
    assert sum(p["objects"] for p in series) == N and sum(p["failed"] for p in series) == 2
    assert all(p["objects"] >= 0 for p in series) and final["bucket_seconds"] >= 1
    done = [e["objects_done"] for e in events]
    assert done == sorted(done)  # never goes back


def test_events_need_the_workspace_key(world: tuple[Container, str]) -> None:
    container, key = world
    client = api_client(container, key)
    assert client.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"})
    job_id = client.post("/v1/imports", json=MANIFEST).json()["id"]
    _, other = new_workspace(container, "other")

    assert TestClient(create_app(container)).get(f"/v1/imports/{job_id}/events").status_code == 401
    foreign = client.get(
        f"/v1/imports/{job_id}/events", headers={"Authorization": f"Bearer {other}"}
    )
    assert foreign.status_code == 404
    # A job that has ended sends its final state once, and the stream ends.
    container.ctx.enqueue.drain(container.ctx)  # type: ignore[attr-defined]
    ended = client.get(f"/v1/imports/{job_id}/events")
    blocks = [b for b in ended.text.split("\n\n") if b.strip()]
    assert len(blocks) == 1 and "event: progress" in blocks[0]
    assert json.loads(blocks[0].split("data: ", 1)[1])["state"] == "partially_failed"
    # Lists leave progress out (a ledger query per job); one job has it.
    assert client.get("/v1/imports").json()["items"][0]["progress"] is None
    assert client.get(f"/v1/imports/{job_id}").json()["progress"]["objects_done"] == N


def test_job_page_and_its_assets_are_served_with_a_strict_policy(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "b", flower_url="http://flower.example:5555")
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    client = TestClient(create_app(container))
    job_id = "0123456789abcdef0123456789abcdef"
    page = client.get(f"/jobs/{job_id}")  # no key: the page holds no data
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    # No link to Flower (every workspace's tasks: operators only); the job's own tasks.
    assert "flower" not in page.text.lower() and 'id="tasks"' in page.text
    assert '<script src="/jobs/static/job.js"' in page.text
    js = client.get("/jobs/static/job.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "Authorization" in js.text
    assert client.get("/jobs/static/job.css").status_code == 200
    for bad in ("/jobs/static/job.html", "/jobs/static/..%2Fapp.py", "/jobs/not-a-job"):
        assert client.get(bad).status_code == 404, bad
    container.db.dispose()
