"""Where an import's data lands (issue 18): in place by location, never re-importing its
own output, labels beside their objects, and no silent success for a job that lists
objects and plans none. Memory buckets and a real SQLite ledger, tasks run inline."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import select

from bootstrap import Container
from devstack.sample import image_key, label_key, make_label, make_png, populate
from importer import service
from importer.manifest import ImportManifest
from metadata.models import ImportJob, LedgerEntry
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.registry import open_store
from tests.contract import list_all
from tests.support import InlineQueue, add_config, add_dataset

N = 6


def keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return sorted(list_all(store, prefix))


def manifest(data_prefix: str, label_prefix: str | None = "data/labels/", **source: Any) -> Any:
    spec: dict[str, Any] = {"config_name": "reader", "data_prefix": data_prefix, **source}
    if label_prefix is not None:
        spec.update(label_prefix=label_prefix, label_type="classification")
    return ImportManifest.model_validate(
        {"dataset": "Cats", "segment": "default", "source": spec, "options": {"shard_size": 4}}
    )


def run(ctx: Any, queue: InlineQueue, workspace_id: str, m: ImportManifest) -> ImportJob:
    job = service.submit_import(ctx, workspace_id=workspace_id, manifest=m)
    queue.drain(ctx)
    with ctx.db.uow() as uow:
        found = uow.session.get(ImportJob, job.id)
        assert found is not None
        return found


def ledger(ctx: Any) -> list[LedgerEntry]:
    with ctx.db.uow() as uow:
        return list(uow.session.exec(select(LedgerEntry).order_by(LedgerEntry.remote_path)))


@pytest.fixture
def bucket() -> ObjectStore:
    store = open_store(StorageSpec(provider="memory", bucket="photos"))
    populate(store, N)
    return store


def test_two_configs_on_one_bucket_are_one_storage_so_the_import_is_in_place(
    container: Container, queue: InlineQueue, workspace_id: str, bucket: ObjectStore
) -> None:
    """A config reading `data/` and another whose file_path is the dataset at
    `data/images/` name the same bucket: in place, nothing copied (before: N copies under
    data/images/default/)."""
    ctx, box = container.ctx, container.box
    add_config(ctx, box, workspace_id=workspace_id, name="reader", bucket="photos")
    at_images = add_config(
        ctx, box, workspace_id=workspace_id, name="ds", bucket="photos", file_path="data/images/"
    )
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=at_images)
    before = keys(bucket)

    job = run(ctx, queue, workspace_id, manifest("data/images/"))

    assert job.state == "succeeded", job.error
    assert job.in_place and (job.registered, job.copied) == (N, 0)
    assert keys(bucket) == before  # nothing written
    rows = ledger(ctx)
    assert [r.remote_path for r in rows] == [f"{i:05d}.png" for i in range(1, N + 1)]
    for i, row in enumerate(rows, start=1):
        # dest_key is a key of the dataset's config (relative to its file_path).
        assert (row.source_key, row.dest_key) == (image_key(i), f"{i:05d}.png")
        assert row.label == {"CLASSIFICATION": make_label(i)}
    # What /data hands out is read through the dataset's config: the same bytes.
    dataset_store = ctx.stores.for_config(at_images)
    assert dataset_store.get_bytes(rows[0].dest_key, max_size=1 << 20) == make_png(1)


def test_a_dataset_below_the_data_prefix_never_imports_its_own_copies(
    container: Container, queue: InlineQueue, workspace_id: str, bucket: ObjectStore
) -> None:
    """Data prefix '' and the dataset at `ds/` on the same bucket: each run used to import
    the previous run's copies one level deeper (ds/default/ds/default/...). Three runs
    leave the bucket flat, and each re-run succeeds."""
    ctx, box = container.ctx, container.box
    config = add_config(ctx, box, workspace_id=workspace_id, name="reader", bucket="photos")
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=config, path="ds/")
    m = manifest("", label_prefix=None, include=["data/images/**"])

    first = run(ctx, queue, workspace_id, m)
    assert first.state == "succeeded", first.error
    assert first.copied == N
    for _ in range(2):
        again = run(ctx, queue, workspace_id, m)
        assert again.state == "succeeded", again.error
        assert again.copied == 0
        assert (again.left_out or {}).get("dataset_output") == N
    assert keys(bucket, "ds/") == [f"ds/default/{image_key(i)}" for i in range(1, N + 1)]

    # Without a filter too: the listing skips the dataset's folder, whatever it holds.
    plain = run(ctx, queue, workspace_id, manifest("", label_prefix=None))
    assert plain.state == "succeeded", plain.error
    assert not [k for k in keys(bucket, "ds/") if k.startswith("ds/default/ds/")]


def test_a_source_wider_than_the_dataset_registers_what_lies_inside_and_stays_flat(
    container: Container, queue: InlineQueue, workspace_id: str, bucket: ObjectStore
) -> None:
    """Dataset path `data/images/`, data prefix `data/`: the images already lie in the
    dataset's storage path and are registered where they are; the other files are copied
    into `data/images/default/`, a folder of the dataset below the data prefix that the
    next runs never list again (before: each run copied the last one's copies one level
    deeper)."""
    ctx, box = container.ctx, container.box
    config = add_config(ctx, box, workspace_id=workspace_id, name="reader", bucket="photos")
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=config, path="data/images/")
    m = manifest("data/", label_prefix=None)
    jobs = [run(ctx, queue, workspace_id, m) for _ in range(3)]
    assert [j.state for j in jobs] == ["succeeded"] * 3, [j.error for j in jobs]
    assert (jobs[0].registered, jobs[0].copied) == (N, N)
    assert [(j.registered, j.copied) for j in jobs[1:]] == [(0, 0), (0, 0)]
    assert keys(bucket, "data/images/default/") == [
        f"data/images/default/labels/{i:05d}.json" for i in range(1, N + 1)
    ]
    rows = {r.remote_path: r for r in ledger(ctx)}
    assert len(rows) == 2 * N
    assert rows["images/00001.png"].outcome == "registered"
    assert rows["images/00001.png"].dest_key == image_key(1)
    assert rows["labels/00001.json"].dest_key == "data/images/default/labels/00001.json"


def test_labels_beside_their_images_pair_by_stem_in_the_same_folder(
    container: Container, queue: InlineQueue, workspace_id: str
) -> None:
    """`a.png` beside `a.json`: label_prefix equal to data_prefix (before: 0 planned, and
    the job said succeeded)."""
    ctx, box = container.ctx, container.box
    store = open_store(StorageSpec(provider="memory", bucket="beside"))
    for i in range(1, N + 1):
        store.put(f"pics/{i:05d}.png", make_png(i))
        store.put(f"pics/{i:05d}.json", repr_json(make_label(i)))
    add_config(ctx, box, workspace_id=workspace_id, name="reader", bucket="beside")
    dest = add_config(ctx, box, workspace_id=workspace_id, name="out", bucket="out")
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=dest)

    job = run(ctx, queue, workspace_id, manifest("pics/", label_prefix="pics/"))

    assert job.state == "succeeded", job.error
    assert (job.listed, job.planned, job.copied) == (2 * N, N, N)
    assert job.left_out == {"label_files": N}
    rows = ledger(ctx)
    assert [r.remote_path for r in rows] == [f"{i:05d}.png" for i in range(1, N + 1)]
    assert all(r.label == {"CLASSIFICATION": make_label(i)} for i, r in enumerate(rows, 1))


def repr_json(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"data_prefix": "data/images/", "label_prefix": "data/"}, "label_prefix"),
        ({"data_prefix": "data/images/", "label_prefix": ""}, "label_prefix"),
        (
            {"data_prefix": "data/", "mask_prefix": "data/", "mask_type": "SEMANTIC_MASK"},
            "mask_prefix",
        ),
        (
            {
                "data_prefix": "data/images/",
                "label_prefix": "data/labels/",
                "mask_prefix": "data/labels/",
                "mask_type": "SEMANTIC_MASK",
            },
            "mask_prefix",
        ),
    ],
)
def test_label_and_mask_folders_that_cannot_work_are_refused_naming_the_field(
    source: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ImportManifest.model_validate({"dataset": "Cats", "source": {"config_name": "c", **source}})
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [("source", field)]
    assert "folder" in errors[0]["msg"]


def reader_and_out(ctx: Any, box: Any, workspace_id: str) -> None:
    """Config `reader` on the seed's bucket, dataset `Cats` on another bucket (`out`)."""
    add_config(ctx, box, workspace_id=workspace_id, name="reader", bucket="photos")
    dest = add_config(ctx, box, workspace_id=workspace_id, name="out", bucket="out")
    add_dataset(ctx, workspace_id=workspace_id, name="Cats", config=dest)


def test_a_job_that_lists_objects_and_plans_none_says_why(
    container: Container, queue: InlineQueue, workspace_id: str, bucket: ObjectStore
) -> None:
    """The data folder holds nothing but label files: failed, naming why (before:
    succeeded with 0 of N). The user's own filter matching nothing: succeeded, with a
    notice that says so."""
    ctx, box = container.ctx, container.box
    reader_and_out(ctx, box, workspace_id)

    only_labels = run(
        ctx,
        queue,
        workspace_id,
        manifest("data/", label_prefix="data/labels/", include=["labels/**"]),
    )
    assert only_labels.state == "failed"
    assert only_labels.listed == 2 * N
    assert only_labels.error is not None
    assert f"listed {2 * N} keys under 'data/' but imported none" in only_labels.error
    assert f"{N} label files" in only_labels.error

    filtered = run(ctx, queue, workspace_id, manifest("data/images/", include=["*.jpg"]))
    assert filtered.state == "succeeded"
    assert filtered.notice is not None and "include, exclude or modified_since" in filtered.notice


def test_label_files_of_the_job_are_counted_when_objects_are_planned(
    container: Container, queue: InlineQueue, workspace_id: str, bucket: ObjectStore
) -> None:
    ctx, box = container.ctx, container.box
    reader_and_out(ctx, box, workspace_id)
    job = run(
        ctx,
        queue,
        workspace_id,
        manifest("data/", label_prefix="data/labels/", label_suffix=".json"),
    )
    # data/images/00001.png pairs with data/labels/images/00001.json: missing, so failed;
    # what matters here is that the label folder's files were not planned as objects.
    assert job.planned == N
    assert job.left_out == {"label_files": N}
    assert job.notice == f"left out of the listing: {N} label files"
    assert label_key(1) not in {r.source_key for r in ledger(ctx)}
