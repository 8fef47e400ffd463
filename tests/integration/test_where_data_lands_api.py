"""Where data lands, through the native HTTP API on a real S3 server (rclone serve s3, behind
a proxy that counts the writes Bayport makes) and a real SQLite ledger, tasks run inline
(issue 18): the seed's two modes with one config and with two configs on the same bucket,
a dataset below the data prefix imported three times by a schedule, labels beside their
images, and an Azure endpoint without the account refused naming what it must be."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap import Container, build_container
from devstack.sample import image_key, make_label, make_png, populate
from metadata.db import migrate
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.contract import list_all
from tests.faultproxy import FaultPlan, FaultProxy
from tests.servers import make_bucket
from tests.support import InlineQueue, api_client, new_workspace

N = 4


class World:
    """Alice's API client on one S3 bucket holding the seed's layout."""

    def __init__(self, tmp_path: Path, rclone_s3: dict[str, str], proxy: FaultProxy) -> None:
        settings = make_settings(tmp_path / "bayport")
        migrate(settings.resolved_database_url)
        self.queue = InlineQueue()
        self.container: Container = build_container(settings, enqueuer=self.queue)
        _, key = new_workspace(self.container, "alice")
        self.client = api_client(self.container, key)
        self.bucket = f"lands-{uuid.uuid4().hex[:8]}"
        make_bucket(rclone_s3, self.bucket)
        self.s3, self.proxy = rclone_s3, proxy
        self.store: ObjectStore = open_store(
            StorageSpec(
                "s3",
                self.bucket,
                endpoint=rclone_s3["endpoint"],
                credentials={
                    "accesskey_id": rclone_s3["access_key"],
                    "accesskey_secret": rclone_s3["secret_key"],
                },
            )
        )
        populate(self.store, N)

    def config(self, name: str, file_path: str = "") -> None:
        body = {
            "name": name,
            "provider": "s3",
            "endpoint": self.proxy.endpoint,
            "bucket_name": self.bucket,
            "file_path": file_path,
            "accesskey_id": self.s3["access_key"],
            "accesskey_secret": self.s3["secret_key"],
        }
        r = self.client.post("/v1/storage-configs", json=body)
        assert r.status_code == 201, r.text

    def dataset(self, name: str, config_name: str, path: str = "") -> None:
        r = self.client.post(
            "/v1/datasets", json={"name": name, "config_name": config_name, "path": path}
        )
        assert r.status_code == 201, r.text

    def run(self, dataset: str, **source: Any) -> dict[str, Any]:
        manifest = {"dataset": dataset, "source": {"config_name": "reader", **source}}
        r = self.client.post("/v1/imports", json=manifest)
        assert r.status_code == 202, r.text
        self.queue.drain(self.container.ctx)
        job: dict[str, Any] = self.client.get(f"/v1/imports/{r.json()['id']}").json()
        return job

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(list_all(self.store, prefix))

    def data(self, dataset: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/v1/datasets/{dataset}/segments/default/data")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


@pytest.fixture
def world(tmp_path: Path, rclone_s3: dict[str, str]) -> Iterator[World]:
    with FaultProxy(rclone_s3["endpoint"], flavor="s3", plan=FaultPlan(rate=0.0)) as proxy:
        w = World(tmp_path, rclone_s3, proxy)
        yield w
        w.container.db.dispose()


SEED = {
    "data_prefix": "data/images/",
    "label_prefix": "data/labels/",
    "label_type": "classification",
}


def _labels_ok(items: list[dict[str, Any]]) -> None:
    assert [i["remote_path"] for i in items] == [f"{n:05d}.png" for n in range(1, N + 1)]
    for n, item in enumerate(items, start=1):
        assert item["label"] == {"CLASSIFICATION": make_label(n)}
        assert item["size"] == len(make_png(n))


def test_one_config_a_dataset_path_copies_and_the_original_folder_is_in_place(
    world: World,
) -> None:
    world.config("reader")
    world.dataset("Copied", "reader", path="datasets/cats/")
    world.dataset("InPlace", "reader", path="data/images/")

    copied = world.run("Copied", **SEED)
    assert (copied["state"], copied["in_place"]) == ("succeeded", False), copied["error"]
    assert copied["counts"]["copied"] == N
    assert world.keys("datasets/") == [
        f"datasets/cats/default/{n:05d}.png" for n in range(1, N + 1)
    ]
    for n in range(1, N + 1):
        copy = world.store.get_bytes(f"datasets/cats/default/{n:05d}.png", max_size=1 << 20)
        assert copy == make_png(n)
    _labels_ok(world.data("Copied"))

    before, writes = world.keys(), world.proxy.writes()
    in_place = world.run("InPlace", **SEED)
    assert (in_place["state"], in_place["in_place"]) == ("succeeded", True), in_place["error"]
    assert in_place["counts"]["registered"] == N
    assert (world.keys(), world.proxy.writes() - writes) == (before, 0)
    _labels_ok(world.data("InPlace"))


def test_two_configs_on_one_bucket_import_in_place_by_location(world: World) -> None:
    """A config reading the whole bucket, and another whose file_path is the original folder
    (the seed's advice) holding the dataset: one storage, so nothing is copied."""
    world.config("reader")
    world.config("images", file_path="data/images")
    world.dataset("Cats", "images")
    before, writes = world.keys(), world.proxy.writes()

    job = world.run("Cats", **SEED)

    assert (job["state"], job["in_place"]) == ("succeeded", True), job["error"]
    assert (job["counts"]["registered"], job["counts"]["copied"]) == (N, 0)
    assert (world.keys(), world.proxy.writes() - writes) == (before, 0)
    _labels_ok(world.data("Cats"))


def test_a_dataset_below_the_data_prefix_stays_flat_under_a_nightly_schedule(
    world: World,
) -> None:
    """Data prefix '' and the dataset at `ds/` on the same bucket, imported three times by
    a schedule: the copies are never listed again (before: ds/default/ds/default/...)."""
    world.config("reader")
    world.dataset("Cats", "reader", path="ds/")
    manifest = {"dataset": "Cats", "source": {"config_name": "reader", "data_prefix": ""}}
    r = world.client.post(
        "/v1/schedules", json={"name": "nightly", "manifest": manifest, "cron": "0 2 * * *"}
    )
    assert r.status_code == 201, r.text
    states = []
    for _ in range(3):
        assert world.client.post("/v1/schedules/nightly/run").status_code == 202
        world.queue.drain(world.container.ctx)
        (latest, *_) = world.client.get("/v1/imports").json()["items"]
        states.append((latest["state"], latest["counts"]["copied"]))
    assert states == [("succeeded", 2 * N), ("succeeded", 0), ("succeeded", 0)]
    assert not [k for k in world.keys("ds/") if k.startswith("ds/default/ds/")]
    assert len(world.keys("ds/")) == 2 * N
    assert latest["counts"]["left_out"] == {"dataset_output": 2 * N}


def test_labels_beside_their_images(world: World) -> None:
    for n in range(1, N + 1):
        world.store.put(f"beside/{n:05d}.png", make_png(n))
        world.store.put(f"beside/{n:05d}.json", json.dumps(make_label(n)).encode())
    world.config("reader")
    world.dataset("Cats", "reader", path="datasets/cats/")
    job = world.run(
        "Cats", data_prefix="beside/", label_prefix="beside/", label_type="classification"
    )
    assert job["state"] == "succeeded", job["error"]
    assert (job["counts"]["copied"], job["counts"]["left_out"]) == (N, {"label_files": N})
    _labels_ok(world.data("Cats"))


def test_a_label_folder_holding_the_data_folder_is_refused_naming_the_field(
    world: World,
) -> None:
    world.config("reader")
    world.dataset("Cats", "reader", path="datasets/cats/")
    body = {
        "dataset": "Cats",
        "source": {
            "config_name": "reader",
            "data_prefix": image_key(1).rsplit("/", 1)[0],
            "label_prefix": "data/",
        },
    }
    r = world.client.post("/v1/imports", json=body)
    assert r.status_code == 422, r.text
    assert "label_prefix" in json.dumps(r.json())


def test_an_azure_emulator_url_without_the_account_is_refused_saying_what_it_must_be(
    world: World,
) -> None:
    body = {
        "name": "az",
        "provider": "azure",
        "account_name": "devstoreaccount1",
        "account_key": "a2V5",
        "container_name": "photos",
        "endpoint": "http://127.0.0.1:10000",
    }
    r = world.client.post("/v1/storage-configs", json=body)
    assert r.status_code == 422, r.text
    text = json.dumps(r.json())
    assert "endpoint" in text
    assert "http://127.0.0.1:10000/devstoreaccount1" in text
