"""Unbounded inputs get caps with clear errors: an object list's endless line, a COCO file
past its size cap, a storage server's endless listing answer, schedules (paged, counted,
not firing every second) and yolo_classes."""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bootstrap import Container, build_container
from devstack.sample import make_png
from importer.object_list import read_object_list
from metadata.db import migrate
from storage_adapters.base import StorageSpec
from storage_adapters.errors import StorageError
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.probes import EndlessListing
from tests.support import InlineQueue, add_seed_configs, api_client, new_workspace

MiB = 1024 * 1024
LISTING_CAP = 64 * MiB


class World:
    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        settings = make_settings(tmp_path / "bayport", **overrides)
        migrate(settings.resolved_database_url)
        self.queue = InlineQueue()
        self.container: Container = build_container(settings, enqueuer=self.queue)
        self.client = self.workspace("w")
        r = self.client.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"})
        assert r.status_code == 201, r.text

    def workspace(self, name: str) -> TestClient:
        workspace, key = new_workspace(self.container, name)
        add_seed_configs(self.container.ctx, self.container.box, workspace_id=workspace.id)
        client = api_client(self.container, key)
        return client

    def run(self, source: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(
            "/v1/imports",
            json={"dataset": "Cats", "source": {"config_name": "user-bucket", **source}},
        )
        assert r.status_code == 202, r.text
        self.queue.drain(self.container.ctx)
        job: dict[str, Any] = self.client.get(f"/v1/imports/{r.json()['id']}").json()
        return job

    def close(self) -> None:
        self.container.db.dispose()
        MemoryBackend.forget_named()


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Any]:
    made: list[World] = []

    def make(**overrides: Any) -> World:
        world = World(tmp_path / str(len(made)), **overrides)
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()


def _user_store() -> Any:
    return open_store(StorageSpec(provider="memory", bucket="user"))


# --- object lists ---------------------------------------------------------------------


def test_a_50_mb_object_list_line_is_refused_in_bounded_memory() -> None:
    line = 50 * MiB

    def chunks() -> Iterator[bytes]:  # one 50 MB line, then two good rows, in 64 KiB chunks
        piece = b"a" * (64 * 1024)
        for _ in range(line // len(piece)):
            yield piece
        yield b"\nimages/1.png\nimages/2.png\n"

    tracemalloc.start()
    try:
        rows = list(read_object_list(chunks, "csv"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows[1:] == [(2, ("images/1.png", None)), (3, ("images/2.png", None))]
    number, reason = rows[0]
    assert number == 1 and isinstance(reason, str)
    assert "longer than 65536 bytes" in reason and "MAX_OBJECT_LIST_LINE_BYTES" in reason
    assert peak < 4 * MiB, f"reading kept {peak / MiB:.0f} MiB"


def test_an_object_list_line_past_the_cap_is_a_rejected_row_the_job_goes_on(
    make_world: Any,
) -> None:
    world = make_world(max_object_list_line_bytes=4096)
    store = _user_store()
    for i in (1, 2):
        store.put(f"images/{i}.png", make_png(i))
    store.put("lists/all.csv", b"images/1.png\n" + b"x" * 10_000 + b"\nimages/2.png\n")
    job = world.run({"data_prefix": "images/", "object_list": "lists/all.csv"})
    assert job["counts"]["copied"] == 2, job
    r = world.client.get(f"/v1/imports/{job['id']}/rejected")
    items = [i["key"] for i in r.json()["items"]]
    assert len(items) == 1 and items[0].startswith("line 2: longer than 4096 bytes"), items


def test_an_object_list_past_its_total_cap_fails_the_job_saying_why(make_world: Any) -> None:
    world = make_world(max_object_list_bytes=2048)
    store = _user_store()
    store.put("images/1.png", make_png(1))
    store.put("lists/all.csv", b"images/1.png\n" * 1000)
    job = world.run({"data_prefix": "images/", "object_list": "lists/all.csv"})
    assert job["state"] == "failed", job
    assert "more than 2048 bytes" in job["error"] and "MAX_OBJECT_LIST_BYTES" in job["error"]


# --- COCO -----------------------------------------------------------------------------


def test_a_coco_file_past_its_size_cap_is_refused_naming_the_file_and_the_cap(
    make_world: Any,
) -> None:
    world = make_world(max_coco_size=4096)
    store = _user_store()
    store.put("images/1.png", make_png(1))
    coco = {
        "images": [{"id": 1, "file_name": "1.png", "width": 16, "height": 16}],
        "categories": [{"id": 1, "name": "cat" * 2000}],
        "annotations": [],
    }
    store.put("annotations/big.json", json.dumps(coco).encode())
    job = world.run(
        {
            "data_prefix": "images/",
            "label_format": "coco",
            "coco_file": "annotations/big.json",
        }
    )
    assert job["state"] == "failed", job
    error = job["error"]
    assert "annotations/big.json" in error and "4096" in error and "MAX_COCO_SIZE" in error


# --- listing answers --------------------------------------------------------------------


@pytest.fixture
def endless_listing() -> Iterator[EndlessListing]:
    server = EndlessListing()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("provider", "options"),
    [("s3", {"wire": True}), ("s3", {"wire": False}), ("oss", {}), ("azure", {})],
    ids=["s3-lean-path", "s3-boto3", "oss", "azure"],
)
def test_an_endless_listing_answer_is_a_permanent_error_not_buffered(
    endless_listing: EndlessListing, provider: str, options: dict[str, Any]
) -> None:
    if provider == "azure":
        endpoint = f"{endless_listing.url}/account1"
        key = base64.b64encode(b"k" * 64).decode()
        credentials = {"account_name": "account1", "account_key": key}
    else:
        endpoint = endless_listing.url
        credentials = {"accesskey_id": "ak", "accesskey_secret": "sk"}
    store = open_store(
        StorageSpec(
            provider=provider,
            bucket="bucket-b",
            endpoint=endpoint,
            credentials=credentials,
        ),
        timeout=30,
        **options,
    )
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        store.list_page("", limit=10)
    assert not caught.value.transient
    assert f"more than {LISTING_CAP} bytes" in str(caught.value)
    # Refused once the cap was read, not after the whole answer.
    assert endless_listing.sent[0] < 96 * MiB
    print(f"\nendless listing refused after {time.monotonic() - started:.1f} s")


# --- schedules --------------------------------------------------------------------------

MANIFEST = {"dataset": "Cats", "source": {"config_name": "user-bucket", "data_prefix": "images/"}}


def _schedule(client: TestClient, name: str, cron: str = "0 2 * * *") -> Any:
    return client.post("/v1/schedules", json={"name": name, "manifest": MANIFEST, "cron": cron})


def test_a_cron_firing_every_second_is_422_naming_cron(make_world: Any) -> None:
    world = make_world()
    for cron in ("* * * * * *", "*/5 * * * * *", "0,30 * * * * *", "0,1 0 0 * * *"):
        r = _schedule(world.client, "fast", cron)
        assert r.status_code == 422, (cron, r.text)
        assert r.json()["field"] == "cron" or "cron" in r.text
    r = _schedule(world.client, "fast", "* * * * * *")
    assert "60" in r.json()["detail"] and "SCHEDULE_MIN_INTERVAL_SECONDS" in r.json()["detail"]
    assert _schedule(world.client, "minutely", "0 * * * * *").status_code == 201
    assert _schedule(world.client, "five", "*/5 * * * *").status_code == 201
    r = world.client.patch("/v1/schedules/five", json={"cron": "*/10 * * * * *"})
    assert r.status_code == 422 and r.json()["field"] == "cron", r.text
    assert world.client.get("/v1/schedules/five").json()["cron"] == "*/5 * * * *"


def test_schedules_per_workspace_are_capped_and_listed_by_page(make_world: Any) -> None:
    world = make_world(max_schedules_per_workspace=3)
    for name in ("a", "b", "c"):
        assert _schedule(world.client, name).status_code == 201
    r = _schedule(world.client, "d")
    assert r.status_code == 409 and "MAX_SCHEDULES_PER_WORKSPACE" in r.json()["detail"], r.text
    # Another workspace has its own count.
    other = world.workspace("other")
    assert (
        other.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"}).status_code
        == 201
    )
    assert _schedule(other, "a").status_code == 201

    r = world.client.get("/v1/schedules", params={"limit": 2})
    assert r.status_code == 200
    assert [s["name"] for s in r.json()] == ["a", "b"]
    assert r.headers["x-next-offset"] == "2"
    r = world.client.get("/v1/schedules", params={"offset": 2, "limit": 2})
    assert [s["name"] for s in r.json()] == ["c"] and "x-next-offset" not in r.headers
    assert world.client.get("/v1/schedules", params={"limit": 5000}).status_code == 422


# --- yolo_classes -------------------------------------------------------------------------


def test_yolo_classes_are_capped_422_naming_the_field(make_world: Any) -> None:
    world = make_world()
    source = {"config_name": "user-bucket", "data_prefix": "images/", "label_prefix": "yolo/"}
    for classes in (["c"] * 10_001, ["cat", "x" * 257]):
        r = world.client.post(
            "/v1/imports",
            json={
                "dataset": "Cats",
                "source": {**source, "label_format": "yolo", "yolo_classes": classes},
            },
        )
        assert r.status_code == 422, r.text
        locations = [e["loc"] for e in r.json()["detail"]]
        assert any("yolo_classes" in loc for loc in locations), locations
