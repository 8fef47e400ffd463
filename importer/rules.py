"""Pure planning rules: which objects a listing page yields, their labels, shards and places."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from storage_adapters.base import ObjectInfo


@dataclass(frozen=True, slots=True)
class PlannedObject:
    """One source object as a shard carries it. `size` None means "look it up" (a retry)."""

    key: str
    size: int | None
    etag: str | None
    md5: str | None
    label_key: str | None

    def to_item(self) -> list[Any]:
        return [self.key, self.size, self.etag, self.md5, self.label_key]

    @classmethod
    def from_item(cls, item: Sequence[Any]) -> PlannedObject:
        key, size, etag, md5, label_key = item
        return cls(key=key, size=size, etag=etag, md5=md5, label_key=label_key)


def remote_path(key: str, data_prefix: str) -> str:
    """The object's name inside its segment: its key below the data prefix."""
    if not key.startswith(data_prefix):
        raise ValueError(f"{key!r} is not under {data_prefix!r}")
    return key[len(data_prefix) :]


def label_key_for(key: str, *, data_prefix: str, label_prefix: str, label_suffix: str) -> str:
    """Pair by stem in a mirrored tree: images/a/1.png -> labels/a/1.json."""
    rel = remote_path(key, data_prefix)
    folder, name = posixpath.split(rel)
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return f"{label_prefix}{posixpath.join(folder, stem)}{label_suffix}"


def destination_key(dataset_path: str, segment: str, rel: str) -> str:
    """Where a copied object lands, relative to the dataset storage's root."""
    return f"{dataset_path}{segment}/{rel}"


def is_in_place(
    *, source_config_id: str, data_prefix: str, dataset_config_id: str | None, dataset_path: str
) -> bool:
    """True when the source folder already lies inside the dataset's storage location:
    the import registers the objects where they are and moves no bytes."""
    return dataset_config_id == source_config_id and data_prefix.startswith(dataset_path)


def plan_page(
    objects: Iterable[ObjectInfo],
    *,
    data_prefix: str,
    label_prefix: str | None,
    label_suffix: str,
) -> list[PlannedObject]:
    """The objects of one listing page to import (label files below the data prefix are
    not data), each with the key of its label file when labels are paired."""
    planned = []
    for obj in objects:
        if label_prefix is not None and obj.key.startswith(label_prefix):
            continue
        label_key = (
            label_key_for(
                obj.key,
                data_prefix=data_prefix,
                label_prefix=label_prefix,
                label_suffix=label_suffix,
            )
            if label_prefix is not None
            else None
        )
        planned.append(
            PlannedObject(
                key=obj.key, size=obj.size, etag=obj.etag, md5=obj.md5, label_key=label_key
            )
        )
    return planned


def split_into_shards(
    objects: Sequence[PlannedObject], *, shard_size: int, byte_cap: int
) -> list[list[PlannedObject]]:
    """Consecutive runs of at most `shard_size` objects and (past the first object)
    at most `byte_cap` bytes."""
    shards: list[list[PlannedObject]] = []
    current: list[PlannedObject] = []
    current_bytes = 0
    for obj in objects:
        size = obj.size or 0
        if current and (len(current) >= shard_size or current_bytes + size > byte_cap):
            shards.append(current)
            current, current_bytes = [], 0
        current.append(obj)
        current_bytes += size
    if current:
        shards.append(current)
    return shards
