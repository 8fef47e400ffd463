"""Pure planning rules: pairing by stem, shards, destinations, the in-place rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from importer.locations import is_in_place
from importer.rules import (
    PlannedObject,
    destination_key,
    label_key_for,
    plan_page,
    split_into_shards,
)
from storage_adapters.base import ObjectInfo


def test_label_pairs_by_stem_in_a_mirrored_tree() -> None:
    assert (
        label_key_for(
            "data/images/a/b/1.png",
            data_prefix="data/images/",
            label_prefix="data/labels/",
            label_suffix=".json",
        )
        == "data/labels/a/b/1.json"
    )
    # Only the last extension goes; dotfiles keep their name.
    assert (
        label_key_for("i/x.tar.gz", data_prefix="i/", label_prefix="l/", label_suffix=".json")
        == "l/x.tar.json"
    )
    assert (
        label_key_for("i/.hidden", data_prefix="i/", label_prefix="l/", label_suffix=".json")
        == "l/.hidden.json"
    )


def test_plan_page_skips_label_files_below_the_data_prefix() -> None:
    objects = [ObjectInfo("d/img/1.png", 3, "e1"), ObjectInfo("d/lab/1.json", 2, "e2")]
    planned = plan_page(objects, data_prefix="d/", label_prefix="d/lab/", label_suffix=".json")
    assert [p.key for p in planned] == ["d/img/1.png"]
    assert planned[0].label_key == "d/lab/img/1.json"


def test_plan_page_without_labels() -> None:
    planned = plan_page(
        [ObjectInfo("x/1.png", 3)], data_prefix="x/", label_prefix=None, label_suffix=".json"
    )
    assert planned[0].label_key is None


def _objs(sizes: list[int]) -> list[PlannedObject]:
    return [PlannedObject(f"k{i}", s, None, None, None) for i, s in enumerate(sizes)]


def test_shards_respect_count_and_byte_caps() -> None:
    shards = split_into_shards(_objs([1] * 7), shard_size=3, byte_cap=100)
    assert [len(s) for s in shards] == [3, 3, 1]
    shards = split_into_shards(_objs([60, 60, 10, 200]), shard_size=10, byte_cap=100)
    assert [[o.size for o in s] for s in shards] == [[60], [60, 10], [200]]
    assert split_into_shards([], shard_size=3, byte_cap=1) == []


def test_shard_items_round_trip() -> None:
    obj = PlannedObject("a/b.png", 12, "etag", "md5", "l/b.json")
    assert PlannedObject.from_item(obj.to_item()) == obj
    assert len(obj.to_item()) == 5  # shards written before names existed read the same
    named = PlannedObject("a/b.png", None, None, None, None, name="renamed/b.png")
    assert PlannedObject.from_item(named.to_item()) == named
    relabel = PlannedObject("a/b.png", 1, None, None, "l/b.json", action="relabel")
    assert PlannedObject.from_item(relabel.to_item()) == relabel


def test_destination_and_in_place() -> None:
    assert destination_key("ds/", "default", "a/1.png") == "ds/default/a/1.png"
    assert destination_key("", "train", "1.png") == "train/1.png"
    assert destination_key("ds/", "", "1.png") == "ds/1.png"  # TensorBay's default segment
    bucket = Cfg("s3", "https://s3.example.com", "photos")
    assert is_in_place(bucket, "data/images/", bucket, "data/images/")
    assert is_in_place(bucket, "data/images/", bucket, "data/")
    assert not is_in_place(bucket, "data/images/", bucket, "datasets/cats/")
    assert not is_in_place(bucket, "data/", bucket, "data/images/")  # the dataset is below
    assert not is_in_place(bucket, "data/images/", None, "")
    # Another config on the same bucket is the same storage, by location: its file_path
    # counts, its id does not.
    reader = Cfg("s3", "HTTPS://S3.Example.com:443/", "photos")
    at_images = Cfg("s3", "https://s3.example.com", "photos", file_path="data/images")
    assert is_in_place(reader, "data/images/", at_images, "")
    assert is_in_place(at_images, "", reader, "data/")
    assert not is_in_place(reader, "data/", at_images, "")
    assert not is_in_place(bucket, "data/images/", Cfg("s3", "https://other", "photos"), "")
    assert not is_in_place(bucket, "data/images/", Cfg("oss", bucket.endpoint, "photos"), "")
    # AWS without an endpoint: bucket names are global.
    assert is_in_place(Cfg("s3", None, "b", region="eu"), "x/", Cfg("s3", None, "b"), "x/")


@dataclass
class Cfg:
    provider: str
    endpoint: str | None
    bucket_name: str
    file_path: str = ""
    region: str | None = None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("data/images", "data/images/"), ("/data/images/", "data/images/"), ("", "")],
)
def test_prefix_normalization(raw: str, expected: str) -> None:
    from importer.manifest import normalize_prefix

    assert normalize_prefix(raw) == expected
