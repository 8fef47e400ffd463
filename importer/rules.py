"""Pure planning rules: which objects a listing page yields, their labels, shards and places."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from wcmatch import glob

from storage_adapters.base import ObjectInfo

# '*' stays within a folder, '**' crosses folders, {a,b} alternates, and '*' matches
# names starting with a dot too (object keys have no hidden files).
_GLOB_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.DOTGLOB | glob.NEGATE
Action = Literal["copy", "relabel"]


@dataclass(frozen=True, slots=True)
class PlannedObject:
    """One source object as a shard carries it. `size` None means "look it up" (a retry,
    an object list). `action` relabel: the object is unchanged, its label file changed."""

    key: str
    size: int | None
    etag: str | None
    md5: str | None
    label_key: str | None
    action: Action = "copy"
    # Its path in the segment when the client named it (a TensorBay remotePath); None: the
    # key below the data prefix.
    name: str | None = None

    def to_item(self) -> list[Any]:
        item = [self.key, self.size, self.etag, self.md5, self.label_key]
        if self.name is not None:
            return [*item, self.action, self.name]
        return item if self.action == "copy" else [*item, self.action]

    @classmethod
    def from_item(cls, item: Sequence[Any]) -> PlannedObject:
        key, size, etag, md5, label_key = item[:5]
        action: Action = "relabel" if len(item) > 5 and item[5] == "relabel" else "copy"
        name = item[6] if len(item) > 6 else None
        return cls(
            key=key, size=size, etag=etag, md5=md5, label_key=label_key, action=action, name=name
        )

    def relabel(self) -> PlannedObject:
        return replace(self, action="relabel")


def check_globs(patterns: list[str]) -> list[str]:
    """Patterns as given, each checked to compile (a ValueError names the bad one)."""
    for pattern in patterns:
        if not pattern or len(pattern) > 1000:
            raise ValueError(f"glob {pattern!r} must be 1 to 1000 characters")
        try:
            glob.compile(pattern, flags=_GLOB_FLAGS)
        except Exception as exc:
            raise ValueError(f"glob {pattern!r} is not valid: {exc}") from exc
    return patterns


@dataclass(frozen=True)
class KeyFilter:
    """Which listed objects an import takes: include/exclude globs over the key below the
    data prefix, and a modification time."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    modified_since: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_include",
            glob.compile(list(self.include), flags=_GLOB_FLAGS) if self.include else None,
        )
        object.__setattr__(
            self,
            "_exclude",
            glob.compile(list(self.exclude), flags=_GLOB_FLAGS) if self.exclude else None,
        )

    @property
    def is_empty(self) -> bool:
        return not self.include and not self.exclude and self.modified_since is None

    def accepts(self, rel: str, last_modified: datetime | None = None) -> bool:
        inc, exc = self._include, self._exclude  # type: ignore[attr-defined]
        if inc is not None and not inc.match(rel):
            return False
        if exc is not None and exc.match(rel):
            return False
        if self.modified_since is not None and last_modified is not None:
            return last_modified >= self.modified_since
        return True


# Object keys and paths are at most this long (S3's and OSS's limit, in UTF-8 bytes).
MAX_KEY_BYTES = 1024


def is_control(char: str) -> bool:
    """C0 controls (NUL included), DEL and C1 controls."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


# What is_control accepts, and a "." or ".." between slashes or the key's ends: checked for
# every listed key, so by one compiled pattern each rather than character by character.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")


def key_problem(key: str) -> str | None:
    """Why `key` (an object key, a remote path or a folder) is unsafe to read or write, or
    None. Refused: control characters (a NUL ends a C string, a newline forges log lines),
    a leading '/' (an absolute path) and '.' or '..' segments (a path leaving its folder
    once written to a file system; HTTP clients may also fold them into another key).
    Any other Unicode is fine and kept as is (no normalization: NFC and NFD spellings are
    different keys)."""
    if _CONTROL.search(key):
        return "contains control characters (NUL, C0, DEL or C1)"
    if key.startswith("/"):
        return "is an absolute path (starts with '/')"
    if _DOT_SEGMENT.search(key):
        return "has a '.' or '..' segment"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    if size > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    return None


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
    """Where a copied object lands, relative to the dataset storage's root. TensorBay's
    default segment (named '') is the dataset's folder itself."""
    return f"{dataset_path}{segment}/{rel}" if segment else f"{dataset_path}{rel}"


# Why a listed key is not one of the import's objects (JobCounts' `left_out`).
LABEL_FILE = "label_files"
MASK_FILE = "mask_files"
DATASET_OUTPUT = "dataset_output"
FILTERED = "filtered"


@dataclass(frozen=True)
class NotData:
    """The keys a data listing yields that are not data: label and mask files kept in or
    beside the data folder, the COCO file, and the folders the dataset's copies go to when
    they lie below the data prefix (what earlier runs copied there)."""

    folders: tuple[tuple[str, str], ...] = ()  # (key prefix, reason)
    keys: frozenset[str] = frozenset()  # single files (a COCO file, an object list)
    beside: str | None = None  # labels beside their objects: files with this suffix

    def reason(self, key: str) -> str | None:
        for prefix, why in self.folders:
            if key.startswith(prefix):
                return why
        if key in self.keys or (self.beside is not None and key.endswith(self.beside)):
            return LABEL_FILE
        return None

    @classmethod
    def of(
        cls,
        *,
        data_prefix: str,
        label_prefix: str | None,
        label_suffix: str,
        mask_prefix: str | None = None,
        files: Iterable[str | None] = (),
        own_folders: Iterable[str] = (),
    ) -> NotData:
        folders: list[tuple[str, str]] = [(f, DATASET_OUTPUT) for f in own_folders]
        beside = None
        if label_prefix is not None and label_prefix == data_prefix:
            beside = label_suffix
        elif label_prefix is not None and label_prefix.startswith(data_prefix):
            folders.append((label_prefix, LABEL_FILE))
        if mask_prefix is not None and mask_prefix.startswith(data_prefix):
            folders.append((mask_prefix, MASK_FILE))
        return cls(
            folders=tuple(folders),
            keys=frozenset(k for k in files if k is not None and k.startswith(data_prefix)),
            beside=beside,
        )


def plan_page(
    objects: Iterable[ObjectInfo],
    *,
    data_prefix: str,
    label_prefix: str | None,
    label_suffix: str,
    key_filter: KeyFilter | None = None,
    not_data: NotData | None = None,
    left_out: dict[str, int] | None = None,
) -> list[PlannedObject]:
    """The objects of one listing page to import (label files below the data prefix are
    not data; the filter leaves some out), each with the key of its label file when labels
    are paired. `left_out` counts, by reason, the listed keys that are not planned."""
    if not_data is None:
        not_data = NotData.of(
            data_prefix=data_prefix, label_prefix=label_prefix, label_suffix=label_suffix
        )
    planned = []
    for obj in objects:
        why = not_data.reason(obj.key)
        if (
            why is None
            and key_filter is not None
            and not key_filter.accepts(remote_path(obj.key, data_prefix), obj.last_modified)
        ):
            why = FILTERED
        if why is not None:
            if left_out is not None:
                left_out[why] = left_out.get(why, 0) + 1
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
