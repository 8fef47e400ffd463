"""Labels through the whole import: every type round-trips to the API, catalogs fail exactly
the offending objects, unpaired files are reported, VOC and YOLO become BOX2D, and the data
can be filtered and counted by category."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap import Container, build_container
from devstack.sample import make_png
from metadata.db import migrate
from storage_adapters.base import StorageSpec
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.support import InlineQueue, add_seed_configs, api_client, new_workspace

BOXES = [(10.0, 20.0, 110.0, 220.0, "cat"), (5.0, 6.0, 7.0, 8.0, "dog")]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Container, InlineQueue, TestClient]]:
    settings = make_settings(tmp_path / "bayport")
    migrate(settings.resolved_database_url)
    queue = InlineQueue()
    container = build_container(settings, enqueuer=queue)
    workspace, key = new_workspace(container)
    add_seed_configs(container.ctx, container.box, workspace_id=workspace.id)
    client = api_client(container, key)
    assert (
        client.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"}).status_code
        == 201
    )
    yield container, queue, client
    container.db.dispose()
    MemoryBackend.forget_named()


def _import(world: Any, source: dict[str, Any], **options: Any) -> dict[str, Any]:
    container, queue, client = world
    r = client.post(
        "/v1/imports",
        json={
            "dataset": "Cats",
            "source": {"config_name": "user-bucket", "data_prefix": "images/", **source},
            "options": options,
        },
    )
    assert r.status_code == 202, r.text
    queue.drain(container.ctx)
    job: dict[str, Any] = client.get(f"/v1/imports/{r.json()['id']}").json()
    return job


def _store() -> Any:
    return open_store(StorageSpec(provider="memory", bucket="user"))


def _data(client: TestClient, **params: str) -> list[dict[str, Any]]:
    r = client.get("/v1/datasets/Cats/segments/default/data", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_catalog_violations_fail_exactly_the_offending_objects(world: Any) -> None:
    _, _, client = world
    catalog = {
        "BOX2D": {
            "categories": [{"name": "cat"}, {"name": "dog"}],
            "attributes": [{"name": "occluded", "type": "boolean"}],
        }
    }
    r = client.put("/v1/datasets/Cats/catalog", json=catalog)
    assert r.status_code == 200, r.text
    assert client.get("/v1/datasets/Cats/catalog").json()["BOX2D"]["categories"][0] == {
        "name": "cat"
    }
    bad = client.put("/v1/datasets/Cats/catalog", json={"BOX2D": {"categories": "cat"}})
    assert bad.status_code == 422 and "categories" in json.dumps(bad.json()["detail"])

    store = _store()
    labels = {
        1: [{"box2d": {"xmin": 1, "ymin": 1, "xmax": 2, "ymax": 2}, "category": "cat"}],
        2: [{"box2d": {"xmin": 1, "ymin": 1, "xmax": 2, "ymax": 2}, "category": "zebra"}],
        3: [
            {
                "box2d": {"xmin": 1, "ymin": 1, "xmax": 2, "ymax": 2},
                "category": "dog",
                "attributes": {"occluded": "very"},
            }
        ],
    }
    for i, label in labels.items():
        store.put(f"images/{i}.png", make_png(i))
        store.put(f"labels/{i}.json", json.dumps({"BOX2D": label}).encode())
    job = _import(world, {"label_prefix": "labels/"})
    assert (job["state"], job["counts"]["copied"], job["counts"]["failed"]) == (
        "partially_failed",
        1,
        2,
    )
    failures = {
        f["remote_path"]: f for f in client.get(f"/v1/imports/{job['id']}/failures").json()["items"]
    }
    assert set(failures) == {"2.png", "3.png"}
    assert failures["2.png"]["error_code"] == "catalog_violation"
    assert "zebra" in failures["2.png"]["error_message"]
    assert "very" in failures["3.png"]["error_message"]


def test_unpaired_objects_and_labels_are_reported(world: Any) -> None:
    _, _, client = world
    store = _store()
    for i in (1, 2, 3):
        store.put(f"images/a/{i}.png", make_png(i))
    store.put("labels/a/1.json", b'{"CLASSIFICATION": {"category": "cat"}}')
    store.put("labels/a/9.json", b'{"CLASSIFICATION": {"category": "cat"}}')  # no image 9
    store.put("labels/b/1.json", b'{"CLASSIFICATION": {"category": "dog"}}')  # other folder
    job = _import(world, {"label_prefix": "labels/"}, missing_label="import")
    c = job["counts"]
    assert (job["state"], c["copied"], c["unlabelled"], c["labels_without_object"]) == (
        "succeeded",
        3,
        2,
        2,
    )
    orphans = client.get(f"/v1/imports/{job['id']}/unpaired").json()["items"]
    assert [o["key"] for o in orphans] == ["labels/a/9.json", "labels/b/1.json"]
    unlabelled = client.get(
        f"/v1/imports/{job['id']}/unpaired", params={"kind": "object_without_label"}
    ).json()["items"]
    assert sorted(o["key"] for o in unlabelled) == ["images/a/2.png", "images/a/3.png"]

    # With missing_label=fail the unlabelled objects are failures, named as such.
    job = _import(world, {"label_prefix": "labels/"}, overwrite="always")
    assert job["counts"]["failed"] == 2
    codes = {
        f["error_code"] for f in client.get(f"/v1/imports/{job['id']}/failures").json()["items"]
    }
    assert codes == {"label_missing"}


def _voc(boxes: list[tuple[float, float, float, float, str]]) -> bytes:
    objects = "".join(
        f"<object><name>{c}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{x}</xmax>"
        f"<ymax>{y}</ymax></bndbox></object>"
        for a, b, x, y, c in boxes
    )
    size = "<size><width>200</width><height>400</height></size>"
    return f"<annotation>{size}{objects}</annotation>".encode()


def _yolo(boxes: list[tuple[float, float, float, float, str]], w: int, h: int) -> bytes:
    classes = ["cat", "dog"]
    lines = [
        f"{classes.index(c)} {(a + x) / 2 / w} {(b + y) / 2 / h} {(x - a) / w} {(y - b) / h}"
        for a, b, x, y, c in boxes
    ]
    return "\n".join(lines).encode()


def test_voc_and_yolo_become_the_same_box2d_labels(world: Any) -> None:
    _, _, client = world
    store = _store()
    image = make_png(1, side=400)  # YOLO boxes are relative: the importer reads the size
    store.put("images/1.png", image)
    store.put("voc/1.xml", _voc(BOXES))
    store.put("yolo/1.txt", _yolo(BOXES, 400, 400))
    voc = _import(world, {"label_prefix": "voc/", "label_format": "voc"})
    assert voc["state"] == "succeeded", voc
    voc_label = _data(client)[0]["label"]
    yolo = _import(
        world,
        {"label_prefix": "yolo/", "label_format": "yolo", "yolo_classes": ["cat", "dog"]},
        overwrite="always",
    )
    assert yolo["state"] == "succeeded", yolo
    yolo_label = _data(client)[0]["label"]
    expected = [(a, b, x, y, c) for a, b, x, y, c in BOXES]
    for label in (voc_label, yolo_label):
        got = [
            (
                round(e["box2d"]["xmin"], 6),
                round(e["box2d"]["ymin"], 6),
                round(e["box2d"]["xmax"], 6),
                round(e["box2d"]["ymax"], 6),
                e["category"],
            )
            for e in label["BOX2D"]
        ]
        assert got == expected


def test_filters_and_label_statistics(world: Any) -> None:
    _, _, client = world
    store = _store()
    cats = {1: ["cat"], 2: ["cat", "dog"], 3: ["dog"], 4: []}
    for i, categories in cats.items():
        store.put(f"images/{i}.png", make_png(i))
        boxes = [
            {"box2d": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}, "category": c}
            for c in categories
        ]
        label = {"BOX2D": boxes} if boxes else {"CLASSIFICATION": {"category": "empty"}}
        store.put(f"labels/{i}.json", json.dumps(label).encode())
    assert _import(world, {"label_prefix": "labels/"})["state"] == "succeeded"
    assert [d["remote_path"] for d in _data(client, category="cat")] == ["1.png", "2.png"]
    assert [d["remote_path"] for d in _data(client, category="dog", label_type="box2d")] == [
        "2.png",
        "3.png",
    ]
    assert [d["remote_path"] for d in _data(client, label_type="CLASSIFICATION")] == ["4.png"]
    stats = client.get("/v1/datasets/Cats/label-statistics").json()["labels"]
    assert stats["BOX2D"] == {
        "quantity": 4,
        "categories": [{"name": "cat", "quantity": 2}, {"name": "dog", "quantity": 2}],
    }
    assert stats["CLASSIFICATION"]["quantity"] == 1


def test_every_label_type_round_trips_through_an_import(world: Any) -> None:
    """Generated labels of every type, written as files, imported, read back equal."""
    from tests.unit.test_label_roundtrip import any_label

    _, _, client = world
    store = _store()
    examples: list[dict[str, Any]] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        examples.append(data.draw(any_label()))

    collect()
    for i, label in enumerate(examples):
        store.put(f"images/{i:04d}.png", b"x")
        store.put(f"labels/{i:04d}.json", json.dumps(label).encode())
    job = _import(world, {"label_prefix": "labels/"})
    assert job["state"] == "succeeded", client.get(f"/v1/imports/{job['id']}/failures").json()
    got = {d["remote_path"]: d["label"] for d in _data(client, limit="1000")}
    for i, label in enumerate(examples):
        assert got[f"{i:04d}.png"] == label
    types = {t for label in examples for t in label}
    assert len(types) >= 10  # the generator reached (nearly) every type


def test_a_coco_file_labels_the_whole_segment(world: Any) -> None:
    _, _, client = world
    store = _store()
    for i in (1, 2, 3, 4):
        store.put(f"images/{i}.png", make_png(i))
    coco = {
        "images": [
            {"id": i, "file_name": f"{i}.png", "width": 16, "height": 16} for i in (1, 2, 3, 5)
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 8, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0},
            {
                "id": 2,
                "image_id": 2,
                "category_id": 8,
                "iscrowd": 0,
                "bbox": [0, 0, 4, 4],
                "segmentation": [[0, 0, 4, 0, 4, 4]],
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 7,
                "iscrowd": 1,
                "bbox": [0, 0, 2, 2],
                "segmentation": {"counts": [0, 4, 12], "size": [4, 4]},
            },
        ],
    }
    store.put("annotations/instances.json", json.dumps(coco).encode())
    job = _import(
        world,
        {"label_format": "coco", "coco_file": "annotations/instances.json"},
        missing_label="import",
    )
    c = job["counts"]
    assert (job["state"], c["copied"], c["unlabelled"], c["labels_without_object"]) == (
        "succeeded",
        4,
        1,
        1,
    ), job
    labels = {d["remote_path"]: d["label"] for d in _data(client)}
    # the COCO annotation id becomes the TensorBay instance
    assert labels["1.png"] == {
        "BOX2D": [
            {
                "box2d": {"xmin": 1, "ymin": 2, "xmax": 4, "ymax": 6},
                "category": "cat",
                "instance": "1",
            }
        ]
    }
    assert labels["2.png"]["POLYGON"][0]["category"] == "dog"
    assert labels["2.png"]["RLE"] == [
        {"rle": [0, 4, 12], "category": "cat", "attributes": {"iscrowd": True}, "instance": "3"}
    ]
    assert labels["3.png"] is None and labels["4.png"] is None
    orphans = client.get(f"/v1/imports/{job['id']}/unpaired").json()["items"]
    assert [o["key"] for o in orphans] == ["annotations/instances.json#5.png"]
    stats = client.get("/v1/datasets/Cats/label-statistics").json()["labels"]
    assert stats["BOX2D"]["quantity"] == 3  # image 1's box and image 2's two boxes

    # A sync: nothing changed, nothing done; the COCO file changed: every object is
    # relabelled from it, none copied.
    coco_options = {"label_format": "coco", "coco_file": "annotations/instances.json"}
    same = _import(world, coco_options, missing_label="import")["counts"]
    assert (same["copied"], same["relabelled"], same["skipped"]) == (0, 0, 4)
    coco["annotations"].append(  # type: ignore[attr-defined]
        {"id": 9, "image_id": 3, "category_id": 8, "bbox": [0, 0, 1, 1], "iscrowd": 0}
    )
    store.put("annotations/instances.json", json.dumps(coco).encode())
    changed = _import(world, coco_options, missing_label="import")["counts"]
    assert (changed["copied"], changed["relabelled"], changed["skipped"]) == (0, 4, 0)
    labels = {d["remote_path"]: d["label"] for d in _data(client)}
    assert labels["3.png"]["BOX2D"][0]["category"] == "dog"


def test_mask_files_are_paired_copied_and_labelled(world: Any) -> None:
    _, _, client = world
    store = _store()
    for i in (1, 2):
        store.put(f"images/{i}.png", make_png(i))
        store.put(f"masks/{i}.png", make_png(100 + i))
    info = {"SEMANTIC_MASK": {"info": [{"categoryId": 1}, {"categoryId": 2}]}}
    store.put("labels/1.json", json.dumps(info).encode())
    job = _import(
        world,
        {"label_prefix": "labels/", "mask_prefix": "masks/", "mask_type": "semantic_mask"},
        missing_label="import",
    )
    assert (job["state"], job["counts"]["copied"]) == ("succeeded", 2), job
    labels = {d["remote_path"]: d["label"] for d in _data(client)}
    assert labels["1.png"] == {
        "SEMANTIC_MASK": {
            "remotePath": "default/_masks/1.png",
            "info": [{"categoryId": 1}, {"categoryId": 2}],
        }
    }
    assert labels["2.png"] == {"SEMANTIC_MASK": {"remotePath": "default/_masks/2.png"}}
    dest = open_store(StorageSpec(provider="memory", bucket="datasets"))
    assert dest.get_bytes("default/_masks/2.png", max_size=1 << 20) == make_png(102)
    # A sync with nothing changed copies nothing (a mask is image 2's label file); a label
    # file appearing for image 2 relabels it alone.
    source = {"label_prefix": "labels/", "mask_prefix": "masks/", "mask_type": "semantic_mask"}
    same = _import(world, source, missing_label="import")["counts"]
    assert (same["copied"], same["relabelled"], same["skipped"]) == (0, 0, 2)
    label = {"SEMANTIC_MASK": {"info": [{"categoryId": 3}]}}
    store.put("labels/2.json", json.dumps(label).encode())
    changed = _import(world, source, missing_label="import")["counts"]
    assert (changed["copied"], changed["relabelled"], changed["skipped"]) == (0, 1, 1), changed
    labels = {d["remote_path"]: d["label"] for d in _data(client)}
    assert labels["2.png"]["SEMANTIC_MASK"]["info"] == [{"categoryId": 3}]
